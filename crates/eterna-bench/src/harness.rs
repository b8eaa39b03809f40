//! The allocator benchmark harness behind `bench-alloc` and `cargo bench --bench alloc`:
//! runs every workload on every peer binary in fresh processes, takes medians, prints a
//! Markdown report and can write it into BENCHMARKS.md between two marker lines.

use crate::frag::Pattern;
use crate::peer::Workload;
use crate::report::{self, fixed, lock_version, mib, ratio, shell, Machine, DASH};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The line that opens the harness's section of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench-alloc: begin (generated; rewritten by --write) -->";
/// The line that closes it.
pub const END: &str = "<!-- bench-alloc: end -->";

/// N under `--quick`.
pub const QUICK_N: usize = 200_000;

/// The peer binaries, in the order [`Peers`] holds them.
pub const BINARIES: [&str; 4] = ["peer-eterna", "peer-system", "peer-mimalloc", "peer-jemalloc"];

/// The allocators, in report order: (name in the report, index into [`BINARIES`], the
/// `TMPDIR` eterna's heap file goes to, if not the default). eterna runs twice: on the
/// default temporary directory (a disk filesystem) and on tmpfs, which shows what the
/// filesystem's page-fault and `fallocate` paths cost apart from the allocator itself.
pub const ALLOCATORS: [(&str, usize, Option<&str>); 6] = [
    ("eterna", 0, None),
    ("glibc", 1, None),
    ("mimalloc", 2, None),
    ("jemalloc", 3, None),
    ("eterna on tmpfs", 0, Some("/dev/shm")),
    ("CPython (pymalloc)", 4, None),
];

/// The CPython peer: a script run by `python3` (Python objects through pymalloc), next to
/// the Rust peers in [`Peers`] (index 4).
pub fn cpython_peer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join("peer_cpython.py")
}

/// Where the four peer binaries are, in the order of [`BINARIES`], then the CPython peer
/// script ([`cpython_peer`]).
#[derive(Debug, Clone)]
pub struct Peers(pub [PathBuf; 5]);

impl Peers {
    /// The peer binaries in the directory of `exe`, or in its parent when `exe` lives in
    /// Cargo's `deps/` directory.
    pub fn next_to(exe: &Path) -> Peers {
        let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !dir.join(BINARIES[0]).exists() && dir.ends_with("deps") {
            dir.pop();
        }
        let [a, b, c, d] = BINARIES.map(|bin| dir.join(bin));
        Peers([a, b, c, d, cpython_peer()])
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Records per workload.
    pub n: usize,
    /// Runs of every (workload, allocator) pair; the report shows medians.
    pub runs: usize,
    /// The Markdown file to write the section into.
    pub write: Option<PathBuf>,
}

impl Options {
    /// Parses `--n N`, `--runs R`, `--quick`, `--write PATH`; ignores `--bench`, which
    /// `cargo bench` passes.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let (mut n, mut runs, mut quick, mut write) = (None, None, false, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--n" => n = Some(value()?.parse().map_err(|e| format!("--n: {e}"))?),
                "--runs" => runs = Some(value()?.parse().map_err(|e| format!("--runs: {e}"))?),
                "--quick" => quick = true,
                "--write" => write = Some(PathBuf::from(value()?)),
                "--bench" => {}
                _ => return Err(format!("unexpected argument {a:?}")),
            }
        }
        let (dn, dr) = if quick { (QUICK_N, 1) } else { (crate::churn::DEFAULT_N, 3) };
        let o = Options { n: n.unwrap_or(dn), runs: runs.unwrap_or(dr), write };
        if o.n < 100 || o.runs == 0 {
            return Err("--n must be at least 100 and --runs at least 1".into());
        }
        Ok(o)
    }

    /// The workloads, in report order.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut w: Vec<Workload> = [Pattern::Random, Pattern::Prefix, Pattern::Keep47]
            .into_iter()
            .map(|p| Workload::Fragmentation(p, self.n))
            .collect();
        w.push(Workload::Churn(self.n));
        w
    }
}

/// Medians of the numeric keys of the runs of one (workload, allocator) pair.
#[derive(Debug, Clone, Default)]
pub struct Medians {
    /// How many runs succeeded.
    pub runs: usize,
    /// Key → median over the runs that reported it.
    pub m: BTreeMap<String, f64>,
}

impl Medians {
    fn of(runs: &[Value]) -> Medians {
        Medians { runs: runs.len(), m: report::key_medians(runs) }
    }

    /// The median of `key`, if any run reported it.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.m.get(key).copied()
    }
}

/// Runs `bin` on `w` once and parses its JSON.
fn run_one(bin: &Path, tmpdir: Option<&str>, w: Workload) -> Result<Value, String> {
    let mut cmd = if bin.extension().is_some_and(|e| e == "py") {
        let mut c = Command::new("python3");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(w.args());
    if let Some(t) = tmpdir {
        cmd.env("TMPDIR", t);
    }
    let out = cmd.output().map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}: {}",
            bin.display(),
            w.args().join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON: {e}", bin.display()))
}

fn workload_label(w: Workload) -> String {
    match w {
        Workload::Fragmentation(p, _) => format!("fragmentation {}", p.name()),
        Workload::Churn(_) => "churn".into(),
    }
}

/// Runs everything: `runs` rounds, each running every workload on every allocator once
/// (interleaved, so that drift in the machine's load hits all alike). Failures are
/// reported on stderr and leave the pair with fewer runs.
pub fn measure(o: &Options, peers: &Peers) -> (Vec<Workload>, Vec<Vec<Medians>>, bool) {
    let ws = o.workloads();
    let mut raw: Vec<Vec<Vec<Value>>> = vec![vec![Vec::new(); ALLOCATORS.len()]; ws.len()];
    let mut ok = true;
    let t = Instant::now();
    for run in 0..o.runs {
        for (wi, &w) in ws.iter().enumerate() {
            for (ai, &(name, bi, tmpdir)) in ALLOCATORS.iter().enumerate() {
                if tmpdir.is_some_and(|t| !Path::new(t).is_dir()) {
                    continue;
                }
                eprint!(
                    "[run {}/{} {:>6.0} s] {:<24} {:<9}",
                    run + 1,
                    o.runs,
                    t.elapsed().as_secs_f64(),
                    workload_label(w),
                    name
                );
                match run_one(&peers.0[bi], tmpdir, w) {
                    Ok(v) => {
                        eprintln!(" {:>12.0} ops/s", v["ops_per_sec"].as_f64().unwrap_or(0.0));
                        raw[wi][ai].push(v);
                    }
                    Err(e) => {
                        eprintln!(" FAILED\n{e}");
                        ok = false;
                    }
                }
            }
        }
    }
    let med = raw.iter().map(|per| per.iter().map(|r| Medians::of(r)).collect()).collect();
    let data: Vec<Value> = ws
        .iter()
        .zip(&raw)
        .map(|(&w, per)| {
            let by: serde_json::Map<String, Value> = ALLOCATORS
                .iter()
                .zip(per)
                .map(|(&(name, _, _), runs)| (name.to_string(), Value::from(runs.clone())))
                .collect();
            serde_json::json!({"workload": workload_label(w), "allocators": by})
        })
        .collect();
    report::save_data("alloc", &Value::from(data));
    (ws, med, ok)
}

fn pct(x: Option<f64>) -> String {
    x.map_or(DASH.into(), |x| format!("{x:.1} %"))
}

fn rate(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 1e6 => format!("{:.2} M", x / 1e6),
        Some(x) => format!("{:.0} k", x / 1e3),
        None => DASH.into(),
    }
}

/// The machine and software the run saw, as Markdown bullet lines.
fn machine() -> String {
    let mut s = String::new();
    let m = Machine::read();
    let glibc = shell("ldd", &["--version"])
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(s, "- date: {}", m.date);
    let _ = writeln!(s, "- machine: {}", m.summary());
    let _ = writeln!(
        s,
        "- allocators: {glibc}; mimalloc crate {} (libmimalloc-sys {}); tikv-jemallocator {} \
         (jemalloc {}); eterna at this commit",
        lock_version("mimalloc").unwrap_or("?".into()),
        lock_version("libmimalloc-sys").unwrap_or("?".into()),
        lock_version("tikv-jemallocator").unwrap_or("?".into()),
        lock_version("tikv-jemalloc-sys").map_or("?".into(), |v| v
            .split_once('+')
            .map_or(v.clone(), |(_, j)| j.split('-').next().unwrap_or("").to_string())),
    );
    let _ = writeln!(
        s,
        "- eterna's heap files: `{}` ({}); the row \"eterna on tmpfs\" puts them in `/dev/shm`",
        m.tmp.display(),
        m.tmp_fs
    );
    s
}

/// A pass/fail line.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**PASS**",
        Some(false) => "**FAIL**",
        None => "not measured",
    }
}

/// The Markdown section: method, medians, targets, CPython reference.
pub fn report(o: &Options, ws: &[Workload], med: &[Vec<Medians>], command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Allocator level: fragmentation and churn\n");
    let _ = writeln!(s, "Command: `{command}`\n");
    s.push_str(&machine());
    let _ = writeln!(
        s,
        "- N = {} per workload; medians of {} run(s) per cell, each run a fresh process \
         (`peer-eterna`, `peer-system`, `peer-mimalloc`, `peer-jemalloc`, and `python3 \
         peer_cpython.py` for CPython)\n",
        o.n, o.runs
    );
    s.push_str(
        "**fragmentation P**: allocate N blocks of 24 to 88 bytes (uniform; a short Python \
         string), touching the first 8 bytes of each, then free a random half (`random`), the \
         first half in allocation order (`prefix`), or all but 47 spread evenly (`keep47`). \
         **churn** (Evan Jones' worst case): allocate N records of 64 bytes (a small Python \
         object), touching 8 bytes of each, free them all, allocate N again. Peers allocate \
         `Box<[u8]>` of the same sizes through Rust's global allocator; eterna allocates in a \
         heap file. ops/s counts every alloc and free over the timed phases; eterna's timed \
         phases include its release pass (punching emptied pools and arenas out of the file) \
         but not `flush` (msync, for durability), shown apart. RSS figures are growth above \
         a baseline taken after the benchmark's own bookkeeping vectors are resident; peak \
         is `VmHWM` minus that baseline. \"given back\" is the share of the full RSS (or \
         eterna's file's disk blocks) gone after the free phase, read right after the last \
         free: mimalloc and jemalloc purge on a delay (jemalloc's default `dirty_decay_ms` \
         is 10 s), so what they would return later does not show.\n\n",
    );
    let _ = writeln!(
        s,
        "| workload | allocator | ops/s | × glibc | time s | flush s | peak RSS MiB | RSS full → after free MiB | RSS given back | disk full → after free MiB | disk given back |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (wi, &w) in ws.iter().enumerate() {
        let glibc_ops = med[wi][1].get("ops_per_sec");
        for (ai, (name, _, _)) in ALLOCATORS.iter().enumerate() {
            let m = &med[wi][ai];
            if m.runs == 0 && ALLOCATORS[ai].2.is_some() {
                continue; // no tmpfs here: the row is left out
            }
            if m.runs == 0 {
                let _ = writeln!(s, "| {} | {name} | failed | | | | | | | | |", workload_label(w));
                continue;
            }
            let ops = m.get("ops_per_sec");
            let ratio = fixed(ratio(ops, glibc_ops), 2);
            let time =
                m.get("total_seconds").or_else(|| Some(m.get("alloc_seconds")? + m.get("free_seconds")?));
            let disk = if m.get("disk_full_kib").is_some() {
                format!("{} → {}", mib(m.get("disk_full_kib")), mib(m.get("disk_after_kib")))
            } else {
                DASH.into()
            };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {ratio} | {} | {} | {} | {} → {} | {} | {disk} | {} |",
                workload_label(w),
                rate(ops),
                fixed(time, 3),
                fixed(m.get("flush_seconds"), 3),
                mib(m.get("peak_rss_kib")),
                mib(m.get("rss_full_kib")),
                mib(m.get("rss_after_kib")),
                pct(m.get("rss_returned_pct")),
                pct(m.get("disk_returned_pct")),
            );
        }
    }
    if let Some(ci) = ws.iter().position(|w| matches!(w, Workload::Churn(_))) {
        let _ = writeln!(s, "\nchurn, after the second allocation of N (memory reused rather than grown):\n");
        let _ = writeln!(s, "| allocator | 1st alloc s | free all s | 2nd alloc s | RSS after 1st → 2nd alloc MiB | disk after 1st → 2nd alloc MiB |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for (ai, (name, _, _)) in ALLOCATORS.iter().enumerate() {
            let m = &med[ci][ai];
            let sec = |k| fixed(m.get(k), 3);
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} → {} | {} |",
                sec("alloc1_seconds"),
                sec("free_seconds"),
                sec("alloc2_seconds"),
                mib(m.get("rss_full_kib")),
                mib(m.get("rss_again_kib")),
                if m.get("disk_full_kib").is_some() {
                    format!("{} → {}", mib(m.get("disk_full_kib")), mib(m.get("disk_again_kib")))
                } else {
                    DASH.into()
                }
            );
        }
    }

    // Targets.
    let _ = writeln!(s, "\n### Targets\n");
    let find = |want: Workload| ws.iter().position(|&w| w == want);
    for (wi, &w) in ws.iter().enumerate() {
        let (e, g) = (&med[wi][0], &med[wi][1]);
        let r = ratio(e.get("ops_per_sec"), g.get("ops_per_sec"));
        let _ = writeln!(
            s,
            "- alloc+free speed ≥ 0.5 × glibc, {}: {} ({})",
            workload_label(w),
            verdict(r.map(|r| r >= 0.5)),
            r.map_or(DASH.into(), |r| format!("{r:.2} ×")),
        );
    }
    let back = |wi: Option<usize>, ai: usize, k: &str| wi.and_then(|wi| med[wi][ai].get(k));
    let both = |wi: Option<usize>, min: f64| -> Option<bool> {
        let d = back(wi, 0, "disk_returned_pct")?;
        let r = back(wi, 0, "rss_returned_pct")?;
        Some(d >= min && r >= min)
    };
    for (pattern, target, min) in [
        (Pattern::Prefix, "\"first half freed\" gives back ≥ 45 % (disk and RSS)", 45.0),
        (Pattern::Keep47, "\"keep 47\" gives back ≥ 95 % (disk and RSS; pymalloc: 50 %)", 95.0),
    ] {
        let wi = find(Workload::Fragmentation(pattern, o.n));
        let _ = writeln!(
            s,
            "- {target}: {} (eterna disk {}, RSS {}; glibc RSS {}, mimalloc {}, jemalloc {})",
            verdict(both(wi, min)),
            pct(back(wi, 0, "disk_returned_pct")),
            pct(back(wi, 0, "rss_returned_pct")),
            pct(back(wi, 1, "rss_returned_pct")),
            pct(back(wi, 2, "rss_returned_pct")),
            pct(back(wi, 3, "rss_returned_pct")),
        );
    }
    let ri = find(Workload::Fragmentation(Pattern::Random, o.n));
    let _ = writeln!(
        s,
        "- \"random half\" has no target at this level (eterna disk {}, RSS {}): freeing a \
         random half leaves nearly every pool partly used, so no allocator can give pages \
         back; moving the survivors together is compaction's job, at object level (the `gc` \
         section: 49.5 % of the disk back after compacting a random half of 1M strings).",
        pct(back(ri, 0, "disk_returned_pct")),
        pct(back(ri, 0, "rss_returned_pct")),
    );

    s.push_str(
        "\n- The CPython (pymalloc) rows are measured in the same run by \
         `crates/eterna-bench/py/peer_cpython.py` on Python objects (`str` of 57-88 bytes, \
         `bytes` of 64), so their speed includes the interpreter's work per object and is \
         shown for the memory columns; the `× glibc` ratio does not compare like with like \
         there.\n",
    );
    s
}

/// Puts `section` between the markers of `path`'s text (creating the file, with its
/// opening paragraph, if it does not exist; appending the markers if it lacks them).
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    report::write_section(path, BEGIN, END, section, Some(INTRO))
}

/// The opening paragraph of a new BENCHMARKS.md.
pub const INTRO: &str = "# Benchmarks\n\n\
This file records eterna's benchmarks against its peers. Every figure in a section comes \
from one harness run on one machine and is the median of several runs, each in a fresh \
process; compare ratios within a run, not absolute figures across machines. The \
allocator section is generated: reproduce it with `cargo build --release -p eterna-bench \
&& target/release/bench-alloc --write BENCHMARKS.md` (`--quick` for one run of 200,000 \
records; `--n N`, `--runs R`; `cargo bench -p eterna-bench --bench alloc` runs the same \
harness), which rewrites the text between the two marker lines and leaves the rest of \
the file alone.\n";

/// The whole of `bench-alloc`: parse `args`, run, print, maybe write. `invoked_as` is how
/// the report names the command (the arguments are appended).
pub fn main(args: &[String], peers: &Peers, invoked_as: &str) -> ExitCode {
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-alloc: {e}\nusage: bench-alloc [--quick] [--n N] [--runs R] [--write PATH]");
            return ExitCode::from(2);
        }
    };
    for p in &peers.0 {
        if !p.exists() {
            eprintln!(
                "bench-alloc: {} not found; build it with `cargo build --release -p eterna-bench`",
                p.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let shown: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--bench").collect();
    let command = report::command_line(invoked_as, &shown);
    let (ws, med, ok) = measure(&o, peers);
    let section = report(&o, &ws, &med, &command);
    println!("{section}");
    if let Some(path) = &o.write {
        if let Err(e) = write_section(path, &section) {
            eprintln!("bench-alloc: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("bench-alloc: wrote the allocator section of {}", path.display());
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
