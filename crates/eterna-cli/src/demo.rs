//! `eterna demo`: the problems eterna solves, measured live, side by side with CPython.
//!
//! Today it shows the fragmentation problem: N small strings, then a random half, the first
//! half, or all but 47 of them freed; what each side gives back. Later layers add the
//! fork, persistence and crash experiments.

use crate::Failure;
use eterna_bench::frag::{self, Pattern};
use serde_json::Value;
use std::process::Command;
use std::time::Instant;

/// CPython's side: the same experiment on `str` objects, reporting pymalloc's arenas and
/// the process's RSS. Written for this demo; run with the machine's `python3`.
const CPYTHON_FRAG: &str = r##"
import gc, json, os, random, re, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
def arenas():
    r, w = os.pipe(); saved = os.dup(2); os.dup2(w, 2)
    sys._debugmallocstats()
    os.dup2(saved, 2); os.close(w); os.close(saved)
    out = b""
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk: break
        out += chunk
    os.close(r)
    m = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", out.decode())
    return int(m.group(1).replace(",", ""))
pattern, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
base = rss()
s = [str(random.random()) for _ in range(n)]
full, a_full = rss(), arenas()
if pattern == "random":
    s = [x for x in s if random.random() < 0.5]
elif pattern == "prefix":
    s = s[n // 2:]
else:
    step = max(n // 47, 1)
    s = s[::step][:47]
gc.collect()
after, a_after = rss(), arenas()
print(json.dumps({"kept": len(s), "arenas_full": a_full, "arenas_after": a_after,
    "rss_full_kib": full - base, "rss_after_kib": after - base}))
"##;

fn pct(before: f64, after: f64) -> f64 {
    if before <= 0.0 {
        0.0
    } else {
        100.0 * (before - after).max(0.0) / before
    }
}

fn cpython(pattern: Pattern, n: usize) -> Option<Value> {
    let out =
        Command::new("python3").args(["-c", CPYTHON_FRAG, pattern.name(), &n.to_string()]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Runs the demo with `n` blocks per experiment.
pub fn run(n: usize) -> Result<(), Failure> {
    let patterns = [Pattern::Random, Pattern::Prefix, Pattern::Keep47];
    let dir = tempfile::tempdir()?;
    println!("eterna demo: memory and disk given back after deleting data ({n} small strings)\n");
    let mut rows = Vec::new();
    for (i, &p) in patterns.iter().enumerate() {
        let label = match p {
            Pattern::Random => "delete a random half",
            Pattern::Prefix => "delete the first half",
            Pattern::Keep47 => "keep 47, delete the rest",
        };
        println!("[{}/{}] {label}", i + 1, patterns.len());
        let t = Instant::now();
        let path = dir.path().join(format!("{}.eterna", p.name()));
        let e = frag::run_eterna(p, n, &path)?;
        std::fs::remove_file(&path)?;
        println!("      eterna done in {:.1} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let py = cpython(p, n);
        match &py {
            Some(_) => println!("      CPython done in {:.1} s", t.elapsed().as_secs_f64()),
            None => println!("      CPython not measured (no working python3 on PATH)"),
        }
        rows.push((label, e, py));
    }
    println!(
        "\n{:<26} | {:>20} {:>16} | {:>20} {:>16}",
        "", "eterna arenas back", "eterna disk back", "pymalloc arenas back", "CPython RSS back"
    );
    println!("{}", "-".repeat(106));
    for (label, e, py) in &rows {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        let e_arenas = f(&e["before"], "arenas_current");
        let e_after = f(&e["after"], "arenas_current");
        let (py_arenas, py_rss) = match py {
            Some(py) => (
                format!(
                    "{:.0} of {:.0} ({:.0} %)",
                    f(py, "arenas_full") - f(py, "arenas_after"),
                    f(py, "arenas_full"),
                    pct(f(py, "arenas_full"), f(py, "arenas_after"))
                ),
                format!("{:.1} %", pct(f(py, "rss_full_kib"), f(py, "rss_after_kib"))),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<26} | {:>20} {:>16} | {:>20} {:>16}",
            label,
            format!("{:.0} of {:.0} ({:.0} %)", e_arenas - e_after, e_arenas, pct(e_arenas, e_after)),
            format!("{:.1} %", f(e, "disk_returned_pct")),
            py_arenas,
            py_rss
        );
    }
    println!(
        "\neterna punches emptied pools and arenas out of its file (fallocate PUNCH_HOLE);\n\
         pymalloc can free an arena only when every object in it is gone."
    );
    Ok(())
}
