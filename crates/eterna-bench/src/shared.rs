//! The `shared-read` benchmark behind `bench-shared`: N entries of str→str built once, then
//! R = 1, 2, 4, 8 reader processes each read all of them; while every reader of a round is
//! alive and done, each one's `Private_Dirty` and `Pss` come from `/proc/PID/smaps_rollup`.
//!
//! eterna's side runs in this crate's binary re-executed with a role flag (`--build PATH`,
//! `--reader PATH`); the Python peers (CPython fork of a dict, with and without
//! `gc.freeze()`, `multiprocessing.Manager().dict()`, py-lmdb) run in `py/shared_read.py`,
//! which prints the same JSON shape.

use crate::report::{self, median, mib, ChildError, Machine, DASH};
use eterna::{Durability, Heap, Input, Key, Options as HeapOptions, Value as EtValue};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::Instant;

/// The line that opens the benchmark's section of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench-shared: begin -->";
/// The line that closes it.
pub const END: &str = "<!-- bench-shared: end -->";

/// Entries in a full run.
pub const DEFAULT_N: usize = 1_000_000;
/// Entries under `--quick`.
pub const QUICK_N: usize = 50_000;
/// Keys a `manager-get` reader reads (one proxy round trip each).
pub const DEFAULT_SAMPLE: usize = 20_000;
/// The dict key eterna's map lives under.
pub const DATA: &str = "data";
/// The Python side, embedded so that the binary also runs away from the source tree.
pub const PY_SCRIPT: &str = include_str!("../py/shared_read.py");

/// The stores, in report order: (name, what its readers do).
pub const STORES: [(&str, &str); 6] = [
    (
        "eterna",
        "built in one write transaction (one `WriteTxn::set` of an `Input::Dict` at \
         `root[\"data\"]`, `Durability::None`) by a builder process that then exits; each \
         reader is a fresh process (`bench-shared --reader`) that opens the heap read-only, \
         takes one snapshot and iterates the dict, reading every byte of every key and value",
    ),
    (
        "fork",
        "CPython: the parent builds the `dict` and forks the readers; each iterates \
         `d.items()` summing `len(k) + len(v)`, then runs `gc.collect()` (as the anchor does)",
    ),
    ("fork-freeze", "the same with `gc.freeze()` after the build, before forking"),
    (
        "manager-items",
        "`multiprocessing.Manager().dict()` (server started before the data exists, filled \
         with one `mgr.dict(d)`); each reader (a forked `multiprocessing.Process`) calls \
         `proxy.items()` once, which copies **every** entry into the reader, iterates the copy \
         and keeps it while measured",
    ),
    (
        "manager-get",
        "the same server; each reader reads only a **sample** of random keys, one proxy \
         round trip (`proxy[k]`) per key: reading all 1M this way takes about a minute per \
         reader",
    ),
    (
        "lmdb",
        "py-lmdb: the parent builds the environment (one write transaction, `put(append=True)` \
         in key order, `sync=False`, then `env.sync()`) and closes it, then forks the readers; \
         each opens it `readonly=True`, begins one read transaction and iterates all entries \
         with a cursor (`len(k) + len(v)` of the copied `bytes`), keeping the transaction open \
         while measured",
    ),
];

/// The key of entry `i`.
pub fn key(i: usize) -> String {
    format!("key:{i:010}")
}

/// The value of entry `i` (about 30 bytes).
pub fn value(i: usize) -> String {
    format!("value number {i} {}", "v".repeat(12))
}

/// Σ (len(key) + len(value)) over entries `0..n`: what every full reader must report.
pub fn expected_total(n: usize) -> u64 {
    (0..n).map(|i| (key(i).len() + value(i).len()) as u64).sum()
}

/// The `kB` fields of `/proc/PID/smaps_rollup` the report uses, as a JSON object (KiB).
pub fn rollup(pid: &str) -> std::io::Result<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let mut m = serde_json::Map::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() >= 3 && parts[2] == "kB" {
            if let Ok(v) = parts[1].parse::<u64>() {
                m.insert(parts[0].trim_end_matches(':').to_string(), json!(v));
            }
        }
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------
// eterna's builder and reader processes

/// `--build PATH --n N`: builds the heap and prints one JSON line (build time, sizes).
pub fn build(path: &Path, n: usize) -> Result<Value, Box<dyn Error>> {
    let t = Instant::now();
    let heap = Heap::open(path, HeapOptions { durability: Durability::None, ..HeapOptions::default() })?;
    let pairs: Vec<(Input, Input)> = (0..n).map(|i| (Input::Str(key(i)), Input::Str(value(i)))).collect();
    let mut w = heap.write()?;
    w.set(&[Key::from(DATA)], &Input::Dict(pairs))?;
    w.commit()?;
    heap.close()?;
    // Written-back pages only: a page cache page still dirty would count as "dirty" in
    // every reader's smaps although no reader copied it.
    std::fs::File::open(path)?.sync_all()?;
    let build_s = t.elapsed().as_secs_f64();
    let heap = Heap::open(path, HeapOptions { readonly: true, ..HeapOptions::default() })?;
    let st = heap.stats()?;
    heap.close()?;
    Ok(json!({
        "build_s": build_s,
        "bytes_live": st.bytes_live,
        "blocks_live": st.blocks_live,
        "disk_bytes": st.disk_bytes,
        "file_bytes": st.file_bytes,
    }))
}

/// `--reader PATH`: opens the heap read-only, reads every entry, prints one JSON line,
/// then keeps the snapshot (and its mapping) until a line or EOF arrives on stdin.
pub fn reader(path: &Path) -> Result<(), Box<dyn Error>> {
    let before = rollup("self")?;
    let heap = Heap::open(path, HeapOptions { readonly: true, ..HeapOptions::default() })?;
    let snap = heap.read()?;
    let t = Instant::now();
    let (mut total, mut entries, mut checksum) = (0u64, 0u64, 0u64);
    match snap.get(&[Key::from(DATA)])? {
        Some(EtValue::Dict(d)) => {
            for item in d.iter()? {
                match item? {
                    (EtValue::Str(k), EtValue::Str(v)) => {
                        let (k, v) = (k.as_str(), v.as_str());
                        total += (k.len() + v.len()) as u64;
                        checksum += k.bytes().chain(v.bytes()).map(u64::from).sum::<u64>();
                        entries += 1;
                    }
                    (k, v) => return Err(format!("entry {k:?}: {v:?} is not str -> str").into()),
                }
            }
        }
        other => return Err(format!("root[{DATA:?}] is {other:?}, not a dict").into()),
    }
    let read_s = t.elapsed().as_secs_f64();
    let line = json!({
        "total": total,
        "entries": entries,
        "checksum": std::hint::black_box(checksum),
        "read_s": read_s,
        "pd_before_kib": before.get("Private_Dirty"),
        "rss_before_kib": before.get("Rss"),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    drop(snap);
    heap.close()?;
    Ok(())
}

/// Readers of one round still running: each child with its stdin (closing it lets the
/// reader exit).
struct Round(Vec<(Child, Option<ChildStdin>)>);

impl Round {
    /// Releases every reader and reaps it; `Err` if one failed.
    fn finish(&mut self) -> Result<(), String> {
        let mut err = Ok(());
        for (ch, stdin) in &mut self.0 {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(b"go\n");
            }
            match ch.wait() {
                Ok(st) if st.success() => {}
                Ok(st) => err = Err(format!("reader {} exited with {st}", ch.id())),
                Err(e) => err = Err(format!("reader {}: {e}", ch.id())),
            }
        }
        self.0.clear();
        err
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The heap file's size, modification time and a hash of its bytes (read with `read`, not
/// mapped, so that the harness adds nothing to the readers' PSS).
fn fingerprint(path: &Path) -> std::io::Result<(u64, std::time::SystemTime, u64)> {
    use std::hash::Hasher;
    let md = std::fs::metadata(path)?;
    let mut f = std::fs::File::open(path)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.write(&buf[..k]);
    }
    Ok((md.len(), md.modified()?, h.finish()))
}

/// One run of eterna's side: a builder process, then for each reader count a round of
/// reader processes. Returns the same JSON shape as `shared_read.py`.
fn eterna_run(exe: &Path, o: &Args) -> Result<Value, String> {
    let dir = tempfile::Builder::new().prefix("bench-shared").tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("shared-read.eterna");
    let out = Command::new(exe)
        .arg("--build")
        .arg(&path)
        .args(["--n", &o.n.to_string()])
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!("builder: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut run: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("builder: bad JSON: {e}"))?;
    let disk_kib = run["disk_bytes"].as_f64().unwrap_or(0.0) / 1024.0;
    run["store"] = json!("eterna");
    run["n"] = json!(o.n);
    run["data_kib"] = json!(disk_kib);
    run["expected_total"] = json!(expected_total(o.n));
    let before = fingerprint(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rounds = Vec::new();
    for &r in &o.readers {
        let mut round = Round(Vec::new());
        let mut lines = Vec::new();
        for _ in 0..r {
            let mut ch = Command::new(exe)
                .arg("--reader")
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{}: {e}", exe.display()))?;
            let stdin = ch.stdin.take();
            lines.push(ch.stdout.take().map(BufReader::new));
            round.0.push((ch, stdin));
        }
        let mut per = Vec::new();
        for (i, l) in lines.iter_mut().enumerate() {
            let mut line = String::new();
            if let Some(l) = l {
                l.read_line(&mut line).map_err(|e| format!("reader: {e}"))?;
            }
            // On failure, dropping `round` releases and reaps the other readers.
            let v: Value = serde_json::from_str(&line)
                .map_err(|_| format!("reader {} of {r} reported nothing (failed)", i + 1))?;
            per.push(v);
        }
        // Every reader has read and still holds its snapshot: measure them all now.
        for (v, (ch, _)) in per.iter_mut().zip(&round.0) {
            let m = rollup(&ch.id().to_string()).map_err(|e| format!("smaps_rollup: {e}"))?;
            for (k, x) in m {
                v[k] = x;
            }
            v["pid"] = json!(ch.id());
        }
        let seen = Heap::open(&path, HeapOptions { readonly: true, ..HeapOptions::default() })
            .and_then(|h| h.stats())
            .map(|s| s.readers)
            .ok();
        round.finish()?;
        rounds.push(json!({"readers": r, "per_reader": per, "holders": [], "readers_seen": seen}));
    }
    run["rounds"] = json!(rounds);
    let after = fingerprint(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    run["file_unchanged"] = json!(before == after);
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// The Python peers

/// Runs `python3 shared_read.py ARGS` with a time limit and parses its last stdout line.
fn python(o: &Args, script: &Path, args: &[String]) -> Result<Value, String> {
    let done =
        report::run_child(Command::new(&o.python).arg(script).args(args), Some(o.timeout)).map_err(|e| {
            match e {
                ChildError::Spawn(e) => format!("{}: {e}", o.python),
                e => e.to_string(),
            }
        })?;
    let text = String::from_utf8_lossy(&done.stdout);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    match serde_json::from_str::<Value>(last) {
        Ok(v) if v.get("error").is_some() => Err(v["error"].as_str().unwrap_or("?").to_string()),
        Ok(v) if done.status.success() => Ok(v),
        _ => Err(format!("{}: {}", done.status, done.stderr_text())),
    }
}

fn python_run(o: &Args, script: &Path, store: &str) -> Result<Value, String> {
    let dir = tempfile::Builder::new().prefix("bench-shared").tempdir().map_err(|e| e.to_string())?;
    let readers: Vec<String> = o.readers.iter().map(|r| r.to_string()).collect();
    let args = [
        store.to_string(),
        "--n".into(),
        o.n.to_string(),
        "--readers".into(),
        readers.join(","),
        "--dir".into(),
        dir.path().to_string_lossy().into_owned(),
        "--sample".into(),
        o.sample.to_string(),
    ];
    python(o, script, &args)
}

// ---------------------------------------------------------------------------------------
// Options, measurement, medians

/// What to run.
#[derive(Debug, Clone)]
pub struct Args {
    /// Entries.
    pub n: usize,
    /// Runs; the report shows medians over them.
    pub runs: usize,
    /// Reader counts, one round each.
    pub readers: Vec<usize>,
    /// Stores to run (names from [`STORES`]).
    pub stores: Vec<String>,
    /// Keys per `manager-get` reader.
    pub sample: usize,
    /// Seconds after which a Python run is killed.
    pub timeout: f64,
    /// The Python interpreter.
    pub python: String,
    /// The Markdown file to write the section into.
    pub write: Option<PathBuf>,
}

const USAGE: &str = "usage: bench-shared [--quick | --n N] [--runs R] [--readers 1,2,4,8] \
                     [--stores eterna,fork,...] [--sample S] [--timeout SECS] [--python CMD] \
                     [--write BENCHMARKS.md]";

impl Args {
    /// Parses the harness's flags.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let (mut n, mut runs, mut quick, mut write) = (None, None, false, None);
        let (mut readers, mut stores, mut sample, mut timeout, mut py) = (None, None, None, None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            let num = |s: &String| s.parse::<usize>().map_err(|e| format!("{a}: {e}"));
            match a.as_str() {
                "--n" => n = Some(num(value()?)?),
                "--runs" => runs = Some(num(value()?)?),
                "--sample" => sample = Some(num(value()?)?),
                "--timeout" => timeout = Some(value()?.parse::<f64>().map_err(|e| format!("{a}: {e}"))?),
                "--readers" => {
                    readers = Some(
                        value()?.split(',').map(|s| num(&s.to_string())).collect::<Result<Vec<_>, _>>()?,
                    )
                }
                "--stores" => stores = Some(value()?.split(',').map(str::to_string).collect::<Vec<_>>()),
                "--python" => py = Some(value()?.clone()),
                "--quick" => quick = true,
                "--write" => write = Some(PathBuf::from(value()?)),
                "-h" | "--help" => return Err(USAGE.into()),
                _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
            }
        }
        let stores = stores.unwrap_or_else(|| STORES.iter().map(|s| s.0.to_string()).collect());
        if let Some(s) = stores.iter().find(|s| !STORES.iter().any(|k| k.0 == s.as_str())) {
            return Err(format!("unknown store {s:?}"));
        }
        let o = Args {
            n: n.unwrap_or(if quick { QUICK_N } else { DEFAULT_N }),
            runs: runs.unwrap_or(if quick { 1 } else { 3 }),
            readers: readers.unwrap_or_else(|| vec![1, 2, 4, 8]),
            stores,
            sample: sample.unwrap_or(DEFAULT_SAMPLE),
            timeout: timeout.unwrap_or(600.0),
            python: py.unwrap_or_else(|| "python3".into()),
            write,
        };
        if o.n < 10 || o.runs == 0 || o.readers.iter().any(|&r| r == 0 || r > 64) {
            return Err("--n must be at least 10, --runs at least 1, readers 1 to 64".into());
        }
        Ok(o)
    }
}

/// The medians of one (store, reader count) cell.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Runs that measured it.
    pub runs: usize,
    /// Metric → median over the runs.
    pub m: BTreeMap<&'static str, f64>,
}

fn field(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// The metrics of one round of one run: per-reader medians and maxima, holders, group.
fn round_metrics(run: &Value, round: &Value) -> Result<BTreeMap<&'static str, f64>, String> {
    let per = round["per_reader"].as_array().cloned().unwrap_or_default();
    let holders = round["holders"].as_array().cloned().unwrap_or_default();
    let data = field(run, "data_kib");
    let store = run["store"].as_str().unwrap_or("?");
    // Every full reader must have read every entry.
    if let Some(want) = run["expected_total"].as_u64() {
        if let Some(bad) = per.iter().find(|p| p["total"].as_u64() != Some(want)) {
            return Err(format!("{store}: a reader summed {} bytes, expected {want}", bad["total"]));
        }
    }
    let col = |k: &str| per.iter().map(|p| field(p, k)).collect::<Vec<f64>>();
    let max = |v: Vec<f64>| v.into_iter().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let mut m = BTreeMap::new();
    let mut put = |k: &'static str, x: Option<f64>| {
        if let Some(x) = x {
            m.insert(k, x);
        }
    };
    put("pd_med", median(col("Private_Dirty")));
    put("pd_max", max(col("Private_Dirty")));
    put("pss_med", median(col("Pss")));
    put("rss_med", median(col("Rss")));
    put("read_s_max", max(col("read_s")));
    let hold_pss: f64 = holders.iter().map(|h| field(h, "Pss")).sum();
    let hold_pd: f64 = holders.iter().map(|h| field(h, "Private_Dirty")).sum();
    if !holders.is_empty() {
        put("holder_pss", Some(hold_pss));
        put("holder_pd", Some(hold_pd));
        put("holder_rss", Some(holders.iter().map(|h| field(h, "Rss")).sum()));
    }
    put("group_pss", Some(col("Pss").iter().sum::<f64>() + hold_pss));
    put("data_kib", Some(data));
    if data > 0.0 {
        put("pd_pct_med", median(col("Private_Dirty")).map(|x| 100.0 * x / data));
        put("pd_pct_max", max(col("Private_Dirty")).map(|x| 100.0 * x / data));
    }
    if store == "eterna" {
        put(
            "pd_growth_max",
            max(per.iter().map(|p| field(p, "Private_Dirty") - field(p, "pd_before_kib")).collect()),
        );
        put("readers_seen", round["readers_seen"].as_f64());
        put("pd_before_med", median(col("pd_before_kib")));
    }
    if let Some(p) = run["parent_rss_kib"].as_f64() {
        put("pd_pct_of_parent_rss", median(col("Private_Dirty")).map(|x| 100.0 * x / p));
    }
    Ok(m)
}

/// Everything measured: store → runs' JSON, store → failures.
#[derive(Debug, Default)]
pub struct Results {
    /// Successful runs per store.
    pub runs: BTreeMap<String, Vec<Value>>,
    /// Failure messages per store.
    pub failed: BTreeMap<String, Vec<String>>,
}

impl Results {
    /// The medians of (store, readers).
    pub fn cell(&self, store: &str, readers: usize) -> Cell {
        let mut all: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        let mut runs = 0;
        for run in self.runs.get(store).into_iter().flatten() {
            for round in run["rounds"].as_array().into_iter().flatten() {
                if round["readers"].as_u64() == Some(readers as u64) {
                    if let Ok(m) = round_metrics(run, round) {
                        runs += 1;
                        for (k, x) in m {
                            all.entry(k).or_default().push(x);
                        }
                    }
                }
            }
        }
        Cell { runs, m: all.into_iter().filter_map(|(k, v)| Some((k, median(v)?))).collect() }
    }

    /// The median of a run-level number of `store`.
    pub fn run_median(&self, store: &str, key: &str) -> Option<f64> {
        median(self.runs.get(store)?.iter().filter_map(|r| r[key].as_f64()).collect())
    }
}

/// Runs every store `o.runs` times, interleaved. Failures go to stderr and `failed`.
pub fn measure(o: &Args, exe: &Path, script: &Path) -> Results {
    let mut res = Results::default();
    let t = Instant::now();
    for run in 0..o.runs {
        for store in &o.stores {
            eprint!("[run {}/{} {:>5.0} s] {store:<14}", run + 1, o.runs, t.elapsed().as_secs_f64());
            let t1 = Instant::now();
            let r = if store == "eterna" { eterna_run(exe, o) } else { python_run(o, script, store) };
            // A run whose readers did not all read everything counts as failed.
            let r = r.and_then(|v| {
                for round in v["rounds"].as_array().into_iter().flatten() {
                    round_metrics(&v, round)?;
                }
                Ok(v)
            });
            match r {
                Ok(v) => {
                    let pd: Vec<String> = v["rounds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|rd| {
                            let m = round_metrics(&v, rd).ok()?;
                            Some(format!("R={} {:.1}", rd["readers"], m.get("pd_med")? / 1024.0))
                        })
                        .collect();
                    eprintln!(
                        " {:>5.1} s; per-reader Private_Dirty MiB: {}",
                        t1.elapsed().as_secs_f64(),
                        pd.join(", ")
                    );
                    res.runs.entry(store.clone()).or_default().push(v);
                }
                Err(e) => {
                    eprintln!(" FAILED: {e}");
                    res.failed.entry(store.clone()).or_default().push(e);
                }
            }
        }
    }
    res
}

// ---------------------------------------------------------------------------------------
// The report

fn pct(x: Option<f64>) -> String {
    match x {
        Some(x) if x < 10.0 => format!("{x:.2} %"),
        Some(x) => format!("{x:.0} %"),
        None => DASH.into(),
    }
}

/// The eterna source measured: HEAD, marked when the core crate has uncommitted changes.
fn eterna_commit() -> String {
    report::eterna_commit().unwrap_or_else(|| "an unknown commit".into())
}

fn machine(versions: &Value) -> String {
    let m = Machine::read();
    let mut s = String::new();
    let _ = writeln!(s, "- date: {}", m.date);
    let _ = writeln!(
        s,
        "- machine: {}; shared with other work, so read times drift (memory figures do not)",
        m.summary()
    );
    let _ = writeln!(
        s,
        "- software: CPython {}; {}; eterna at {}; heap and LMDB files in fresh temporary \
         directories under `{}` ({})",
        versions["python"].as_str().unwrap_or("?"),
        versions["lmdb"].as_str().map_or_else(
            || format!("py-lmdb not importable ({})", versions["lmdb_error"].as_str().unwrap_or("?")),
            str::to_string
        ),
        versions["eterna"].as_str().unwrap_or("?"),
        m.tmp.display(),
        m.tmp_fs
    );
    s
}

/// The Markdown section.
pub fn report(o: &Args, res: &Results, versions: &Value, command: &str, wall_s: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Shared reads (`shared-read`): eterna, CPython fork, Manager().dict(), py-lmdb\n");
    let _ = writeln!(s, "Command: `{command}` (wall time {wall_s:.0} s)\n");
    s.push_str(&machine(versions));
    let _ = writeln!(
        s,
        "- N = {} entries, str → str: keys `key:{{i:010}}` (14 bytes), values `value number {{i}} \
         vvvvvvvvvvvv` (27–32 bytes); reader counts R = {:?}; medians of {} run(s), stores \
         interleaved within each run; in each run every store builds its data once and then \
         runs one round per R with fresh reader processes\n",
        o.n, o.readers, o.runs
    );
    s.push_str(
        "**Method.** When every reader of a round has finished reading (and still holds what \
         it read: the snapshot, transaction or copy), the harness reads `/proc/PID/smaps_rollup` \
         of every reader and of the process that holds the data, if any (the fork parent, the \
         Manager server), then lets the readers exit. `Private_Dirty` is memory the reader \
         wrote privately (its own copy); `Pss` splits every shared page among the processes \
         mapping it, so the group's total PSS is the memory the whole group costs. Figures are \
         whole-process: they include each reader's interpreter or binary and stack (an \
         eterna reader's own `Private_Dirty` before it opens the heap is given below). \
         The builders write their files back (`fsync`) and the harness its own binary before \
         any reader starts, so that no page is counted dirty only because writeback had not \
         yet happened. \
         **Data** is what the data occupies in each store: eterna's heap file on disk \
         (`stats().disk_bytes`), the growth of the fork parent's RSS from building the dict, \
         the growth of the Manager server's RSS from receiving it, LMDB's `data.mdb` on disk. \
         \"private % of data\" is per-reader `Private_Dirty` over that. The CPython anchor \
         (`anchors/py_fork.py 4`) divides by the parent's whole RSS instead (76 %); that ratio \
         for this run's fork rows is given below the tables.\n\n",
    );
    for (name, what) in STORES.iter().filter(|(n, _)| o.stores.iter().any(|s| s == n)) {
        let what =
            what.replace("a **sample** of random keys", &format!("a **sample** of {} random keys", o.sample));
        let _ = writeln!(s, "- **{name}**: {what}.");
    }
    if let Some(live) = res.run_median("eterna", "bytes_live") {
        let _ = writeln!(
            s,
            "\neterna's heap: `bytes_live` {}, `disk_bytes` {}, `file_bytes` {}; built in {:.2} s. \
             An eterna reader's `Private_Dirty` before it opens the heap (binary, libc, stack): \
             {} KiB. py-lmdb's `data.mdb`: {} on disk. CPython's dict: {} (parent RSS {}). All MiB.",
            mib(Some(live / 1024.0)),
            mib(res.run_median("eterna", "disk_bytes").map(|b| b / 1024.0)),
            mib(res.run_median("eterna", "file_bytes").map(|b| b / 1024.0)),
            res.run_median("eterna", "build_s").unwrap_or(f64::NAN),
            report::fixed(res.cell("eterna", o.readers[0]).m.get("pd_before_med").copied(), 0),
            mib(res.run_median("lmdb", "data_kib")),
            mib(res.run_median("fork", "data_kib")),
            mib(res.run_median("fork", "parent_rss_kib")),
        );
    }
    // Summary first: private % of the data per store and R.
    let _ = writeln!(s, "\nPer-reader `Private_Dirty` as % of the data (median reader / largest reader):\n");
    let _ = write!(s, "| store |");
    for r in &o.readers {
        let _ = write!(s, " R = {r} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &o.readers {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    for store in &o.stores {
        let _ = write!(s, "| {store} |");
        for &r in &o.readers {
            let c = res.cell(store, r);
            if c.runs == 0 {
                let _ = write!(s, " not measured |");
            } else {
                let _ = write!(
                    s,
                    " {} / {} |",
                    pct(c.m.get("pd_pct_med").copied()),
                    pct(c.m.get("pd_pct_max").copied())
                );
            }
        }
        s.push('\n');
    }
    for &r in &o.readers {
        let _ = writeln!(s, "\n**R = {r} reader(s)** (MiB; medians over runs)\n");
        let _ = writeln!(
            s,
            "| store | reader Private_Dirty median / max | reader PSS | reader RSS | holder PSS (Private_Dirty) | group PSS | data | private % of data, median / max | slowest read s | runs |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for store in &o.stores {
            let c = res.cell(store, r);
            if c.runs == 0 {
                let why = res.failed.get(store).and_then(|f| f.first()).map_or("", String::as_str);
                let why = why.lines().last().unwrap_or("").replace('|', "/");
                let _ = writeln!(s, "| {store} | not measured: {why} | | | | | | | | 0 |");
                continue;
            }
            let g = |k: &str| c.m.get(k).copied();
            let holder = match g("holder_pss") {
                Some(p) => format!("{} ({})", mib(Some(p)), mib(g("holder_pd"))),
                None => DASH.into(),
            };
            let _ = writeln!(
                s,
                "| {store} | {} / {} | {} | {} | {holder} | {} | {} | {} / {} | {} | {} |",
                mib(g("pd_med")),
                mib(g("pd_max")),
                mib(g("pss_med")),
                mib(g("rss_med")),
                mib(g("group_pss")),
                mib(g("data_kib")),
                pct(g("pd_pct_med")),
                pct(g("pd_pct_max")),
                report::fixed(g("read_s_max"), 2),
                c.runs
            );
        }
    }
    // Notes computed from the run.
    s.push_str("\n### Targets\n\n");
    if o.stores.iter().any(|s| s == "eterna") {
        let cells: Vec<(usize, Cell)> = o.readers.iter().map(|&r| (r, res.cell("eterna", r))).collect();
        let measured: Vec<&(usize, Cell)> = cells.iter().filter(|(_, c)| c.runs > 0).collect();
        let worst = measured
            .iter()
            .filter_map(|(r, c)| Some((*r, *c.m.get("pd_pct_max")?, *c.m.get("pd_max")?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let growth =
            measured.iter().filter_map(|(_, c)| c.m.get("pd_growth_max").copied()).fold(f64::NAN, f64::max);
        match worst {
            Some((r, p, kib)) if measured.len() == cells.len() => {
                let _ = writeln!(
                    s,
                    "- eterna's per-reader private memory ≤ 1 % of the data (CPython anchor: 76 %): \
                     **{}** (largest reader over all R: {} = {}, at R = {r}; of that, {} KiB \
                     appeared after the reader opened the heap, the rest is the process's own \
                     baseline)",
                    if p <= 1.0 { "PASS" } else { "FAIL" },
                    pct(Some(p)),
                    format_args!("{:.0} KiB", kib),
                    format_args!("{growth:.0}"),
                );
            }
            _ => {
                let _ =
                    writeln!(s, "- eterna's per-reader private memory ≤ 1 % of the data: **not measured**");
            }
        }
        let runs = res.runs.get("eterna").map_or(&[][..], Vec::as_slice);
        let same = runs.iter().filter(|r| r["file_unchanged"] == json!(true)).count();
        let _ = writeln!(
            s,
            "- reading writes nothing to the heap file (same bytes and modification time before \
             the first round and after the last): **{}** ({same} of {} run(s))",
            if same == runs.len() && same > 0 { "PASS" } else { "FAIL" },
            runs.len()
        );
        let seen: Vec<String> =
            cells.iter().filter_map(|(r, c)| Some(format!("{}/{r}", c.m.get("readers_seen")?))).collect();
        let _ = writeln!(
            s,
            "- eterna's reader table (`stats().readers`, read while each round's readers held their \
             snapshots) counted: {} (counted / started)",
            if seen.is_empty() { DASH.into() } else { seen.join(", ") }
        );
    }
    for store in ["fork", "fork-freeze"] {
        let parts: Vec<String> = o
            .readers
            .iter()
            .filter_map(|&r| {
                let x = res.cell(store, r).m.get("pd_pct_of_parent_rss").copied()?;
                Some(format!("R = {r}: {}", pct(Some(x))))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "- {store}, per-reader `Private_Dirty` over the parent's whole RSS (the anchor's \
                 ratio; anchor: 76 % at R = 4, CPython 3.11.7, slightly different strings): {}",
                parts.join("; ")
            );
        }
    }
    for (store, errs) in &res.failed {
        let _ =
            writeln!(s, "- {store}: {} failed run(s): {}", errs.len(), errs[0].lines().last().unwrap_or(""));
    }
    s
}

/// Puts `section` between the markers of `path`'s text, appending the markers at the end
/// if it lacks them; the rest of the file is left as it is.
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    report::write_section(path, BEGIN, END, section, None)
}

/// The Python script: the source tree's copy if present, else the embedded one written
/// into `dir`.
fn script_path(dir: &Path) -> std::io::Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/shared_read.py");
    if src.is_file() {
        return Ok(src);
    }
    let p = dir.join("shared_read.py");
    std::fs::write(&p, PY_SCRIPT)?;
    Ok(p)
}

/// The whole of `bench-shared`, including its builder and reader roles.
pub fn main(args: &[String]) -> ExitCode {
    let role =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(PathBuf::from);
    if let Some(path) = role("--reader") {
        return match reader(&path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-shared --reader: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(path) = role("--build") {
        let n = args
            .iter()
            .position(|a| a == "--n")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(DEFAULT_N);
        return match build(&path, n) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench-shared --build: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let o = match Args::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-shared: {e}");
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench-shared: where am I? {e}");
            return ExitCode::FAILURE;
        }
    };
    // A freshly linked binary's pages may still be dirty in the page cache, and smaps
    // would count them as the readers' Private_Dirty: write them back first.
    if let Err(e) = std::fs::File::open(&exe).and_then(|f| f.sync_all()) {
        eprintln!("bench-shared: syncing {}: {e}", exe.display());
    }
    let scratch = match tempfile::Builder::new().prefix("bench-shared").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench-shared: {e}");
            return ExitCode::FAILURE;
        }
    };
    let script = match script_path(scratch.path()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench-shared: writing the Python script: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut versions = python(&o, &script, &["versions".into()]).unwrap_or_else(|e| json!({"python": e}));
    // Taken before the run: the core crate may be committed to while it runs.
    versions["eterna"] = json!(eterna_commit());
    if versions["lmdb"].is_null() && o.stores.iter().any(|s| s == "lmdb") {
        eprintln!(
            "bench-shared: py-lmdb is not importable ({}); the lmdb row will be marked not measured \
             (pip install lmdb)",
            versions["lmdb_error"].as_str().unwrap_or("?")
        );
    }
    let t = Instant::now();
    let res = measure(&o, &exe, &script);
    report::save_data("shared", &json!(res.runs));
    let command = report::command_line("target/release/bench-shared", args);
    let section = report(&o, &res, &versions, command.trim_end(), t.elapsed().as_secs_f64());
    println!("{section}");
    if let Some(path) = &o.write {
        if let Err(e) = write_section(path, &section) {
            eprintln!("bench-shared: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("bench-shared: wrote the shared-read section of {}", path.display());
    }
    if res.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
