//! The `gc` benchmark: trace N objects. eterna marks a heap holding a list of N 2-tuples
//! (`Heap::gc`, marks in side bitmaps); CPython runs `gc.collect()` over a list of N
//! one-item lists (lists, because CPython stops tracking tuples of atomic values). Both in
//! the same run. Reported: time per traced object, metadata per object, and object pages
//! the collection wrote: eterna by hashing every object page of the file before and after,
//! CPython by the `Private_Dirty` a forked child gains while it collects (every page a
//! collection writes is copied on write).

use crate::report::{self, fixed, Machine, DASH};
use eterna::{Durability, Heap, Input, Key, Options};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The line that opens this benchmark's section of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench-gc: begin -->";
/// The line that closes it.
pub const END: &str = "<!-- bench-gc: end -->";

/// The CPython side: prints one JSON object.
const CPYTHON: &str = r#"
import gc, json, os, sys, time
n = int(sys.argv[1]); runs = int(sys.argv[2])
x = [[i] for i in range(n)]
gc.collect()
times = []
for _ in range(runs):
    t = time.perf_counter(); gc.collect(); times.append(time.perf_counter() - t)
def dirty():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    before = dirty(); gc.collect(); after = dirty()
    os.write(w, json.dumps({"dirty_kib": after - before}).encode()); os._exit(0)
os.close(w)
child = json.loads(os.read(r, 4096)); os.waitpid(pid, 0)
times.sort()
print(json.dumps({"objects": len(gc.get_objects()), "containers": n, "seconds": times[len(times) // 2],
                  "pages_written": child["dirty_kib"] // 4, "gc_header_bytes": sys.getsizeof([]) - [].__sizeof__(),
                  "python": sys.version.split()[0]}))
"#;

/// xxh3 of every 4 KiB page of the data arenas outside their first 16 KiB (the side
/// metadata).
fn object_pages(path: &Path) -> std::io::Result<HashMap<u64, u64>> {
    let bytes = std::fs::read(path)?;
    let arena = eterna::format::ARENA;
    Ok(bytes
        .chunks(4096)
        .enumerate()
        .map(|(i, p)| (i as u64 * 4096, p))
        .filter(|&(off, _)| off >= arena && off % arena >= 16384)
        .map(|(off, p)| (off, xxhash_rust::xxh3::xxh3_64(p)))
        .collect())
}

/// One eterna run: build, then collect; returns the figures as JSON.
fn eterna_run(n: usize, dir: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let path = dir.join("gc.eterna");
    let _ = std::fs::remove_file(&path);
    let opts = Options { durability: Durability::None, auto_compact: false, ..Options::default() };
    let heap = Heap::open(&path, opts)?;
    let mut w = heap.write()?;
    let items = (0..n as i64).map(|i| Input::Tuple(vec![Input::Int(i), Input::Int(-i)])).collect();
    w.set(&[Key::Str("l".into())], &Input::List(items))?;
    w.commit()?;
    let stats = heap.stats()?;
    let before = object_pages(&path)?;
    let started = Instant::now();
    let r = heap.gc()?;
    let wall = started.elapsed().as_secs_f64();
    let after = object_pages(&path)?;
    let written = before.iter().filter(|(off, sum)| after.get(off) != Some(sum)).count();
    // The young generation: 100 small commits on top of the collected heap.
    for i in 0..100i64 {
        let mut w = heap.write()?;
        w.set(
            &[Key::Str(format!("k{i}").into())],
            &Input::Tuple(vec![Input::Int(i), Input::Str("young value".into())]),
        )?;
        w.commit()?;
    }
    let y = heap.gc_young()?;
    heap.close()?;
    let _ = std::fs::remove_file(&path);
    // Side metadata written for small arenas: three pages per arena (design.md).
    let side = stats.arenas_current * 3 * 4096;
    Ok(json!({
        "objects": r.objects_traced,
        "young_objects": y.objects_traced,
        "young_trace_seconds": y.trace_seconds,
        "young_seconds": y.seconds,
        "trace_seconds": r.trace_seconds,
        "gc_seconds": wall,
        "pages_written": written,
        "garbage_blocks": r.garbage_blocks,
        "mark_bits_per_object": r.mark_bytes as f64 * 8.0 / r.objects_traced.max(1) as f64,
        "side_bytes_per_object": side as f64 / stats.blocks_live.max(1) as f64,
    }))
}

/// The CPython side of the object-level fragmentation experiment: N small strings in a
/// list, keep a pattern's share, `gc.collect()`; prints the RSS returned.
const CPYTHON_FRAG: &str = r#"
import gc, json, random, sys
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
pattern = sys.argv[1]; n = int(sys.argv[2])
random.seed(1)
base = rss()
strings = [str(random.random()) for _ in range(n)]
full = rss()
if pattern == "random":
    strings = [s for s in strings if random.random() < 0.5]
elif pattern == "prefix":
    strings = strings[: n // 2]
else:
    keep = set(random.sample(range(n), 47))
    strings = [s for i, s in enumerate(strings) if i in keep]
gc.collect()
after = rss()
print(json.dumps({"kept": len(strings), "rss_returned_pct": 100.0 * (full - after) / (full - base)}))
"#;

/// Reads every string of `root["l"]` through a fresh read-only mapping; returns the
/// mapping's resident bytes afterwards.
fn reader_rss(path: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let heap = Heap::open(path, Options { readonly: true, ..Options::default() })?;
    let snap = heap.read()?;
    let Some(eterna::Value::List(l)) = snap.get(&[Key::Str("l".into())])? else {
        return Err("no list at root[\"l\"]".into());
    };
    let mut bytes = 0usize;
    for v in l.iter()? {
        if let eterna::Value::Str(s) = v? {
            bytes += s.as_str().len();
        }
    }
    std::hint::black_box(bytes);
    Ok(heap.resident_bytes()?)
}

/// One object-level fragmentation run on eterna: disk and reader RSS returned after the
/// deletions and a `gc`, then after a `compact`.
pub fn eterna_frag(pattern: &str, n: usize, dir: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let path = dir.join(format!("frag-{pattern}.eterna"));
    let _ = std::fs::remove_file(&path);
    let opts = Options { durability: Durability::None, auto_compact: false, ..Options::default() };
    let l = [Key::Str("l".into())];
    let mut rng = crate::rng::Rng::new(1);
    {
        let heap = Heap::open(&path, opts)?;
        let mut w = heap.write()?;
        let items = (0..n)
            .map(|_| Input::Str(format!("0.{:016}", rng.next_u64() % 10_000_000_000_000_000)))
            .collect();
        w.set(&l, &Input::List(items))?;
        w.commit()?;
        heap.close()?;
    }
    let disk = |p: &Path| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(eterna::Allocator::open(p, eterna::Access::ReadOnly)?.stats()?.disk_bytes)
    };
    let (disk0, rss0) = (disk(&path)?, reader_rss(&path)?);
    let keep: std::collections::HashSet<usize> = (0..47).map(|_| rng.below(n as u64) as usize).collect();
    let doomed = |i: usize| match pattern {
        "random" => rng_bit(i),
        "prefix" => i >= n / 2,
        _ => !keep.contains(&i),
    };
    let heap = Heap::open(&path, opts)?;
    let mut w = heap.write()?;
    let mut i = n;
    while i > 0 {
        let end = i;
        while i > 0 && doomed(i - 1) {
            i -= 1;
        }
        if i < end {
            w.splice(&l, i as u64, (end - i) as u64, &[])?;
        }
        while i > 0 && !doomed(i - 1) {
            i -= 1;
        }
    }
    w.commit()?;
    heap.gc()?;
    heap.close()?; // its read-write mapping would count in this process's RSS
    let (disk1, rss1) = (disk(&path)?, reader_rss(&path)?);
    let heap = Heap::open(&path, opts)?;
    let r = heap.compact()?;
    heap.close()?;
    let (disk2, rss2) = (disk(&path)?, reader_rss(&path)?);
    let _ = std::fs::remove_file(&path);
    let pct = |a: u64, b: u64| 100.0 * (a as f64 - b as f64) / a as f64;
    Ok(json!({
        "disk_full": disk0, "rss_full": rss0,
        "disk_gc_pct": pct(disk0, disk1), "rss_gc_pct": pct(rss0, rss1),
        "disk_compact_pct": pct(disk0, disk2), "rss_compact_pct": pct(rss0, rss2),
        "compact_seconds": r.seconds, "moved_blocks": r.moved_blocks,
    }))
}

/// A fixed pseudo-random half of the indices.
fn rng_bit(i: usize) -> bool {
    crate::rng::Rng::new(i as u64 ^ 0x5eed).next_u64() % 2 == 0
}

fn cpython_frag(pattern: &str, n: usize) -> Result<Value, String> {
    let out = Command::new("python3")
        .args(["-c", CPYTHON_FRAG, pattern, &n.to_string()])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("python3 printed no JSON: {e}"))
}

fn cpython_run(n: usize, runs: usize) -> Result<Value, String> {
    let out = Command::new("python3")
        .args(["-c", CPYTHON, &n.to_string(), &runs.to_string()])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("python3 printed no JSON: {e}"))
}

/// `bench-gc [--n N] [--runs R] [--quick] [--write BENCHMARKS.md]`.
pub fn main(args: &[String]) -> ExitCode {
    let (mut n, mut runs, mut write) = (1_000_000usize, 3usize, None::<PathBuf>);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--n" => n = value().parse().unwrap_or(0),
            "--runs" => runs = value().parse().unwrap_or(0),
            "--quick" => (n, runs) = (200_000, 1),
            "--write" => write = Some(PathBuf::from(value())),
            other => {
                eprintln!("bench-gc: unexpected argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    if n < 1000 || runs == 0 {
        eprintln!("bench-gc: --n must be at least 1000 and --runs at least 1");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench-gc: {e}");
            return ExitCode::from(2);
        }
    };
    let mut et = Vec::new();
    for run in 0..runs {
        eprintln!("bench-gc: eterna run {}/{runs}, n = {n}", run + 1);
        match eterna_run(n, dir.path()) {
            Ok(v) => et.push(v),
            Err(e) => {
                eprintln!("bench-gc: eterna: {e}");
                return ExitCode::from(1);
            }
        }
    }
    eprintln!("bench-gc: CPython, n = {n}, {runs} collections");
    let py = cpython_run(n, runs);
    report::save_data("gc", &json!({"eterna": et, "cpython": py.as_ref().ok()}));
    let m = report::key_medians(&et);
    let get = |k: &str| m.get(k).copied();
    let mut out = String::new();
    let _ = writeln!(out, "## gc: tracing {n} objects\n");
    let _ = writeln!(
        out,
        "Command: `target/release/bench-gc --runs {runs}{}` (wall time WALL_TIME s). {}\n",
        if write.is_some() { " --write BENCHMARKS.md" } else { "" },
        Machine::read().summary()
    );
    let _ = writeln!(
        out,
        "| | objects traced | time | ns per object | metadata per object | object pages written |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|");
    let et_ns = get("trace_seconds").zip(get("objects")).map(|(s, o)| s * 1e9 / o);
    let _ = writeln!(
        out,
        "| eterna (mark) | {} | {} ms | {} | {} mark bits in collector memory (one per block, with the row index) + {} bytes of side metadata in the file (pool records: one live bit per block slot); no header | {} |",
        fixed(get("objects"), 0),
        fixed(get("trace_seconds").map(|s| s * 1e3), 1),
        fixed(et_ns, 1),
        fixed(get("mark_bits_per_object"), 2),
        fixed(get("side_bytes_per_object"), 3),
        fixed(get("pages_written"), 0),
    );
    let _ = writeln!(
        out,
        "| eterna (whole `Heap::gc`: mark, sweep, commit) | | {} ms | | | |",
        fixed(get("gc_seconds").map(|s| s * 1e3), 1)
    );
    let _ = writeln!(
        out,
        "| eterna young collection (`Heap::gc_young` after 100 one-key commits) | {} | {} ms (whole call {} ms) | | | |",
        fixed(get("young_objects"), 0),
        fixed(get("young_trace_seconds").map(|s| s * 1e3), 3),
        fixed(get("young_seconds").map(|s| s * 1e3), 1),
    );
    let verdict = match &py {
        Ok(p) => {
            let secs = p["seconds"].as_f64();
            let objs = p["objects"].as_f64();
            let py_ns = secs.zip(objs).map(|(s, o)| s * 1e9 / o);
            let _ = writeln!(
                out,
                "| CPython {} `gc.collect()` | {} tracked ({} lists) | {} ms | {} | {} bytes of GC header in every object | {} |",
                p["python"].as_str().unwrap_or("?"),
                fixed(objs, 0),
                p["containers"],
                fixed(secs.map(|s| s * 1e3), 1),
                fixed(py_ns, 1),
                p["gc_header_bytes"],
                p["pages_written"],
            );
            let speed = report::ratio(py_ns, et_ns);
            format!(
                "\nPer traced object eterna's mark is **{}x** CPython's `gc.collect()` (target: at least 2x; {}).\n",
                fixed(speed, 2),
                match speed {
                    Some(x) if x >= 2.0 => "met",
                    Some(_) => "missed",
                    None => "not measured",
                }
            )
        }
        Err(e) => {
            let _ = writeln!(out, "| CPython `gc.collect()` | {DASH} | {DASH} | {DASH} | {DASH} | {DASH} |");
            format!("\nCPython was not measured: {e}\n")
        }
    };
    out.push_str(&verdict);
    let _ = writeln!(
        out,
        "\n- eterna: a heap holding `root[\"l\"]`, a list of {n} tuples `(i, -i)` (one 32-byte block each, plus the list's rope nodes), built in one transaction by the process that then collects (as a long-running writer would); `Heap::gc` marks from the root into bitmaps in its own memory (one bit per block slot of every pool), reading objects and side metadata only. The whole `Heap::gc` adds the sweep and two fully synced commits, which here also write back the just-built data (it was committed with `Durability::None`). Pages written: every 4 KiB object page of the file hashed before and after the collection.\n- CPython: `x = [[i] for i in range(n)]`, one warm-up `gc.collect()`, then the median of {runs} timed `gc.collect()` calls over every tracked object. Pages written: a child forked after the build runs `gc.collect()`; the `Private_Dirty` it gains is the pages the collection wrote (reference counts and GC headers live in the objects).\n- Medians of {runs} eterna runs."
    );
    // Fragmentation at object level, with the collector and compaction.
    let _ = writeln!(out, "\n### fragmentation with gc and compaction: {n} small strings in a list\n");
    let _ = writeln!(out, "| pattern | eterna disk returned after gc | after compact | eterna reader RSS returned after gc | after compact | compact time | CPython RSS returned (after `gc.collect()`) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (pattern, label) in
        [("random", "random half deleted"), ("prefix", "first half kept"), ("keep47", "all but 47 deleted")]
    {
        let mut runs_et = Vec::new();
        for run in 0..runs {
            eprintln!("bench-gc: fragmentation {pattern}, eterna run {}/{runs}", run + 1);
            match eterna_frag(pattern, n, dir.path()) {
                Ok(v) => runs_et.push(v),
                Err(e) => {
                    eprintln!("bench-gc: eterna fragmentation {pattern}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        let fm = report::key_medians(&runs_et);
        let f = |k: &str| fm.get(k).copied();
        let py = cpython_frag(pattern, n).ok().and_then(|v| v["rss_returned_pct"].as_f64());
        let _ = writeln!(
            out,
            "| {label} | {} % | {} % | {} % | {} % | {} s | {} % |",
            fixed(f("disk_gc_pct"), 1),
            fixed(f("disk_compact_pct"), 1),
            fixed(f("rss_gc_pct"), 1),
            fixed(f("rss_compact_pct"), 1),
            fixed(f("compact_seconds"), 2),
            fixed(py, 1),
        );
    }
    let _ = writeln!(
        out,
        "\n- eterna: `root[\"l\"]` = a list of {n} strings like `str(random.random())` (a 32-byte block each), built in one transaction; the pattern's items deleted in one transaction (runs of items, one splice each); then `Heap::gc`, then `Heap::compact`. Disk: the file's `st_blocks`. Reader RSS: a fresh read-only mapping that reads every string, its resident size from `/proc/self/smaps`. Medians of {runs} runs. Targets (issue 6): random half at least 45 % after compaction, all but 47 at least 99 %, first half kept at least 45 % without compaction.\n- CPython: the same strings in a list, the same share deleted, `gc.collect()`; the process's `VmRSS` returned, as `../shared/anchors/py_frag.py` measures it. CPython has no compaction."
    );
    let out = out.replacen("WALL_TIME", &format!("{:.0}", started.elapsed().as_secs_f64()), 1);
    print!("{out}");
    if let Some(path) = write {
        if let Err(e) = report::write_section(&path, BEGIN, END, &out, None) {
            eprintln!("bench-gc: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
