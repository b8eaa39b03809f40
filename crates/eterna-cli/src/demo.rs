//! `eterna demo`: the problems eterna solves, measured live, side by side with CPython.
//!
//! Four steps, each on data made for it in a temporary directory:
//! 1. the fork problem: reader processes share a dataset of N entries (private memory each);
//! 2. the fragmentation problem: N small strings, a random half deleted (disk and memory back);
//! 3. the persistence problem: a new process reads one entry of the saved dataset;
//! 4. a writer killed halfway through a transaction leaves nothing behind.
//!
//! The `eterna` binary runs its own helper processes (`eterna demo-child ...`, hidden).

use crate::{outln, Failure};
use eterna::{Durability, Heap, Input, Key, Options, Value};
use eterna_bench::shared;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line of the summary: the step, eterna's figure, CPython's, and whether eterna's
/// side did what it must.
struct Row {
    step: &'static str,
    eterna: String,
    cpython: String,
    ok: bool,
}

fn fail(step: &str, e: impl std::fmt::Display) -> Failure {
    Failure { code: 1, message: format!("{step}: {e}") }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// Runs `python3 -c CODE ARGS...` and parses the last line of its output as JSON; `None`
/// when there is no working `python3`.
fn python(code: &str, args: &[&str]) -> Result<Json, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("python3 printed no JSON: {e}"))
}

fn progress(msg: &str) {
    // Progress is a courtesy: a closed stderr does not stop the demo.
    let _ = writeln!(std::io::stderr(), "      {msg}");
}

/// The CPython cell of a step whose CPython side could not run, saying why on the way.
fn not_measured(why: impl std::fmt::Display) -> String {
    progress(&format!("CPython not measured: {why}"));
    "not measured".into()
}

// ----- step 1: the fork problem -------------------------------------------------------

fn fork_step(dir: &Path, n: usize, readers: usize) -> Result<Row, Failure> {
    const STEP: &str = "readers sharing the data";
    let path = dir.join("shared.eterna");
    let t = Instant::now();
    let built = shared::build(&path, n).map_err(|e| fail(STEP, e))?;
    progress(&format!(
        "eterna: {n} entries built in {:.1} s; starting {readers} reader processes",
        t.elapsed().as_secs_f64()
    ));
    let exe = std::env::current_exe()?;
    let mut kids = Vec::new();
    for _ in 0..readers {
        let mut ch = Command::new(&exe)
            .args(["demo-child", "reader"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = ch.stdout.take().map(BufReader::new);
        kids.push((ch, out));
    }
    let mut private = Vec::new();
    let mut result = Ok(());
    for (ch, out) in &mut kids {
        let mut line = String::new();
        if let Some(o) = out {
            let _ = o.read_line(&mut line);
        }
        match serde_json::from_str::<Json>(&line) {
            Ok(v) if v["entries"].as_u64() == Some(n as u64) => {
                let m = shared::rollup(&ch.id().to_string())?;
                private.push(m.get("Private_Dirty").and_then(|x| x.as_f64()).unwrap_or(0.0));
            }
            _ => result = Err(fail(STEP, format!("reader {} did not read {n} entries", ch.id()))),
        }
    }
    for (ch, _) in &mut kids {
        if let Some(mut s) = ch.stdin.take() {
            let _ = s.write_all(b"go\n");
        }
        let _ = ch.wait();
    }
    result?;
    let data_kib = built["disk_bytes"].as_f64().unwrap_or(0.0) / 1024.0;
    let each = private.iter().sum::<f64>() / private.len().max(1) as f64;
    progress(&format!("eterna: each reader read all {n} entries; private memory {} each", mib(each)));
    let t = Instant::now();
    let py = (|| {
        let script = dir.join("shared_read.py");
        std::fs::write(&script, shared::PY_SCRIPT).map_err(|e| e.to_string())?;
        let out = Command::new("python3")
            .arg(&script)
            .args(["fork", "--n", &n.to_string(), "--readers", &readers.to_string(), "--dir"])
            .arg(dir)
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Json = serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|e| e.to_string())?;
        if let Some(e) = v.get("error") {
            return Err(e.to_string());
        }
        Ok(v)
    })();
    let cpython = match &py {
        Ok(v) => {
            let per = v["rounds"][0]["per_reader"].as_array().cloned().unwrap_or_default();
            let each_py =
                per.iter().filter_map(|r| r["Private_Dirty"].as_f64()).sum::<f64>() / per.len().max(1) as f64;
            let data_py = v["data_kib"].as_f64().unwrap_or(0.0);
            progress(&format!(
                "CPython: forked {readers} readers of a {n}-entry dict in {:.1} s; private memory {} each",
                t.elapsed().as_secs_f64(),
                mib(each_py)
            ));
            format!("{} each ({:.0} % of {})", mib(each_py), 100.0 * each_py / data_py.max(1.0), mib(data_py))
        }
        Err(e) => not_measured(e),
    };
    std::fs::remove_file(&path)?;
    Ok(Row {
        step: STEP,
        eterna: format!(
            "{} each ({:.2} % of {})",
            mib(each),
            100.0 * each / data_kib.max(1.0),
            mib(data_kib)
        ),
        cpython,
        // Fixed costs (the mapping's page tables, the process) stay under 1 MiB.
        ok: each < (data_kib * 0.05).max(1024.0),
    })
}

/// `eterna demo-child reader PATH`: reads every entry, prints one line, waits for stdin.
pub fn reader(path: &Path) -> Result<(), Failure> {
    shared::reader(path).map_err(|e| fail("reader", e))
}

// ----- step 2: the fragmentation problem ----------------------------------------------

const CPYTHON_FRAG: &str = r#"
import gc, json, random, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
n = int(sys.argv[1])
random.seed(1)
base = rss()
strings = [str(random.random()) for _ in range(n)]
full = rss()
strings = [s for s in strings if random.random() < 0.5]
gc.collect()
after = rss()
print(json.dumps({"returned_pct": 100.0 * (full - after) / (full - base)}))
"#;

/// Below this many strings the fixed costs of a heap file (its first arena, reserved
/// whole, and the spare pools) outweigh half of the data, and the step is not judged.
const JUDGE_FRAG_FROM: usize = 200_000;

fn frag_step(dir: &Path, n: usize) -> Result<Row, Failure> {
    const STEP: &str = "delete a random half";
    if n < JUDGE_FRAG_FROM {
        progress(&format!(
            "(with fewer than {JUDGE_FRAG_FROM} strings fixed costs dominate: shown, not judged)"
        ));
    }
    let t = Instant::now();
    let r = eterna_bench::gcbench::eterna_frag("random", n, dir).map_err(|e| fail(STEP, e))?;
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    progress(&format!(
        "eterna: {n} strings, a random half deleted: disk back {:.1} % after gc, {:.1} % after compact ({:.1} s)",
        f("disk_gc_pct"),
        f("disk_compact_pct"),
        t.elapsed().as_secs_f64()
    ));
    let cpython = match python(CPYTHON_FRAG, &[&n.to_string()]) {
        Ok(v) => {
            let p = v["returned_pct"].as_f64().unwrap_or(0.0);
            progress(&format!("CPython: RSS back after gc.collect(): {p:.1} %"));
            format!("RSS {p:.1} % back (no compaction exists)")
        }
        Err(e) => not_measured(e),
    };
    Ok(Row {
        step: STEP,
        eterna: format!(
            "disk {:.1} %, reader RSS {:.1} % back after compact",
            f("disk_compact_pct"),
            f("rss_compact_pct")
        ),
        cpython,
        ok: n < JUDGE_FRAG_FROM || (f("disk_compact_pct") >= 45.0 && f("rss_compact_pct") >= 45.0),
    })
}

// ----- step 3: the persistence problem ------------------------------------------------

const CPYTHON_RESTART: &str = r#"
import json, pickle, subprocess, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
data = {f"key:{i:010d}": f"value number {i} {'v' * 12}" for i in range(n)}
with open(path, "wb") as f:
    pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
del data
def run(code):
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, out.stdout.strip()
bare, _ = run("pass")
full, v = run("import pickle, sys\nd = pickle.load(open(sys.argv[1], 'rb'))\nprint(d['key:0000000001'])")
print(json.dumps({"seconds": full, "bare_seconds": bare, "value": v}))
"#;

/// Wall time of one process run of `exe ARGS`, and its stdout.
fn timed(cmd: &mut Command) -> Result<(f64, String), Failure> {
    let t = Instant::now();
    let out = cmd.output()?;
    let s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Failure { code: 1, message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok((s, String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

fn restart_step(dir: &Path, n: usize) -> Result<Row, Failure> {
    const STEP: &str = "restart, then read one entry";
    let path = dir.join("persist.eterna");
    shared::build(&path, n).map_err(|e| fail(STEP, e))?;
    let exe = std::env::current_exe()?;
    let key = shared::key(1);
    let (secs, got) = timed(Command::new(&exe).arg("get").arg(&path).args([shared::DATA, key.as_str()]))?;
    let want = format!("{:?}", shared::value(1));
    progress(&format!("eterna: a new process opened {n} entries and read one in {:.0} ms", secs * 1e3));
    let cpython = match python(
        CPYTHON_RESTART,
        &[&n.to_string(), &dir.join("persist.pickle").to_string_lossy()],
    ) {
        Ok(v) => {
            let s = v["seconds"].as_f64().unwrap_or(0.0);
            let bare = v["bare_seconds"].as_f64().unwrap_or(0.0);
            progress(&format!(
                "CPython: a new process unpickled the dict and read one entry in {:.0} ms (bare interpreter start {:.0} ms)",
                s * 1e3,
                bare * 1e3
            ));
            format!(
                "{:.0} ms: pickle.load of the whole dict (interpreter start {:.0} ms)",
                s * 1e3,
                bare * 1e3
            )
        }
        Err(e) => not_measured(e),
    };
    std::fs::remove_file(&path)?;
    Ok(Row {
        step: STEP,
        eterna: format!("{:.0} ms: open the file and read (`eterna get`)", secs * 1e3),
        cpython,
        ok: got == want,
    })
}

// ----- step 4: a killed transaction ---------------------------------------------------

const CPYTHON_KILLED: &str = r#"
import json, os, pickle, signal, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
data = {f"key:{i:010d}": f"value number {i} {'v' * 12}" for i in range(n)}
with open(path, "wb") as f:
    pickle.dump(data, f)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    data["new"] = "x"
    with open(path, "wb") as f:           # the usual way to save: rewrite the file
        f.write(pickle.dumps(data)[: len(pickle.dumps(data)) // 2])
        f.flush()
        os.write(w, b"half\n")
        time.sleep(60)
    os._exit(0)
os.close(w)
os.read(r, 5)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
try:
    with open(path, "rb") as f:
        got = len(pickle.load(f))
    print(json.dumps({"entries_after": got}))
except Exception as e:
    print(json.dumps({"error_after": f"{type(e).__name__}: {e}"}))
"#;

fn killed_step(dir: &Path, n: usize) -> Result<Row, Failure> {
    const STEP: &str = "writer killed mid-transaction";
    let path = dir.join("killed.eterna");
    let small = (n / 10).max(1000);
    shared::build(&path, small).map_err(|e| fail(STEP, e))?;
    let exe = std::env::current_exe()?;
    let mut ch =
        Command::new(&exe).args(["demo-child", "writer"]).arg(&path).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    if let Some(o) = ch.stdout.take() {
        BufReader::new(o).read_line(&mut line)?;
    }
    ch.kill()?;
    let _ = ch.wait();
    let halfway: u64 = line.trim().parse().unwrap_or(0);
    progress(&format!("eterna: killed the writer {halfway} changes into a transaction of {WRITER_CHANGES}"));
    // Reopen: the data is the committed state, a new writer recovers the dead one's blocks.
    let heap = Heap::open(&path, Options::default())?;
    let count = {
        let r = heap.read().map_err(|e| fail(STEP, e))?;
        let len = match r.get(&[Key::from(shared::DATA)]).map_err(|e| fail(STEP, e))? {
            Some(Value::Dict(d)) => d.len().map_err(|e| fail(STEP, e))?,
            other => return Err(fail(STEP, format!("no dict after the kill: {other:?}"))),
        };
        let leftover = r.get(&[Key::from("half-done")]).map_err(|e| fail(STEP, e))?.is_some();
        if leftover {
            return Err(fail(STEP, "the killed transaction's key is visible"));
        }
        len
    };
    drop(heap.write().map_err(|e| fail(STEP, e))?); // the first write recovers
    heap.close().map_err(|e| fail(STEP, e))?;
    let check = eterna::check::check(&path).map_err(|e| fail(STEP, e))?;
    progress(&format!(
        "eterna: reopened with all {count} committed entries, none of the killed ones; check: {} unreachable blocks",
        check.unreachable_blocks
    ));
    let cpython =
        match python(CPYTHON_KILLED, &[&small.to_string(), &dir.join("killed.pickle").to_string_lossy()]) {
            Ok(v) if v.get("error_after").is_some() => {
                let e = v["error_after"].as_str().unwrap_or("?").to_string();
                progress(&format!("CPython: a pickle file rewritten by a killed process: {e}"));
                format!(
                    "file rewrite killed halfway: unreadable ({})",
                    e.split(':').next().unwrap_or("error")
                )
            }
            Ok(v) => format!("{} entries readable", v["entries_after"]),
            Err(e) => not_measured(e),
        };
    std::fs::remove_file(&path)?;
    let ok = count == small as u64 && check.unreachable_blocks == 0;
    Ok(Row {
        step: STEP,
        eterna: format!("all {count} committed entries, nothing of the killed one, nothing leaked"),
        cpython,
        ok,
    })
}

/// Changes the killed writer's transaction would make.
const WRITER_CHANGES: u64 = 200_000;

/// `eterna demo-child writer PATH`: one transaction that adds entries, reporting halfway
/// (then the parent kills it), never committing on its own.
pub fn writer(path: &Path) -> Result<(), Failure> {
    let heap = Heap::open(path, Options { durability: Durability::None, ..Options::default() })?;
    let mut w = heap.write().map_err(|e| fail("writer", e))?;
    w.set(&[Key::from("half-done")], &Input::Dict(vec![])).map_err(|e| fail("writer", e))?;
    for i in 0..WRITER_CHANGES {
        let k = format!("killed:{i}");
        w.set(&[Key::from(shared::DATA), Key::from(k.as_str())], &Input::Str(format!("never committed {i}")))
            .map_err(|e| fail("writer", e))?;
        if i == WRITER_CHANGES / 2 {
            outln!("{i}")?;
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    Err(Failure { code: 1, message: "the writer was not killed".into() })
}

// ----- the demo ---------------------------------------------------------------------

/// Runs the demo: `n` entries per step, `readers` reader processes; a non-zero exit if
/// eterna's side of a step does not do what it must.
pub fn run(n: usize, readers: usize, keep: Option<PathBuf>) -> Result<(), Failure> {
    let tmp = tempfile::tempdir()?;
    let dir = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    outln!("eterna demo: {n} entries per step, measured live against CPython in the same run\n")?;
    type Step = fn(&Path, usize, usize) -> Result<Row, Failure>;
    let steps: [(&str, Step); 4] = [
        ("the fork problem: reader processes share a dataset", |d, n, r| fork_step(d, n, r)),
        ("the fragmentation problem: delete a random half", |d, n, _| frag_step(d, n)),
        ("the persistence problem: restart and read", |d, n, _| restart_step(d, n)),
        ("a transaction killed halfway", |d, n, _| killed_step(d, n)),
    ];
    let mut rows = Vec::new();
    for (i, (title, step)) in steps.iter().enumerate() {
        outln!("[{}/{}] {title}", i + 1, steps.len())?;
        let t = Instant::now();
        match step(&dir, n, readers) {
            Ok(row) => rows.push(row),
            Err(f) => {
                outln!("      failed: {}", f.message)?;
                rows.push(Row { step: title, eterna: "failed".into(), cpython: String::new(), ok: false });
            }
        }
        outln!("      ({:.1} s)", t.elapsed().as_secs_f64())?;
    }
    let w = rows.iter().map(|r| r.eterna.len()).max().unwrap_or(10).max(6);
    outln!("\n{:<30} | {:<w$} | CPython", "", "eterna")?;
    outln!("{}", "-".repeat(30 + w + 40))?;
    for r in &rows {
        outln!("{:<30} | {:<w$} | {}", r.step, r.eterna, r.cpython)?;
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.ok).map(|r| r.step).collect();
    outln!("\n{} steps in {:.0} s.", rows.len(), started.elapsed().as_secs_f64())?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure { code: 1, message: format!("eterna's side failed: {}", failed.join(", ")) })
    }
}

/// Parses `demo-child` arguments: a role and a path.
pub fn child(role: &str, path: &Path) -> Result<(), Failure> {
    match role {
        "reader" => reader(path),
        "writer" => writer(path),
        other => Err(Failure { code: 2, message: format!("unknown demo child role {other:?}") }),
    }
}
