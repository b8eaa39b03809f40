//! `bench-rustops`: the `rust-ops` workload (build, random gets, single-key commits) on
//! eterna, heed, redb and `HashMap`, each store run in a fresh child process (this binary
//! re-executed with `--one STORE`); prints medians and optionally writes them into
//! BENCHMARKS.md between the `bench-rustops` markers.

use eterna_bench::report::{self, fixed, ratio, ChildError, Machine, DASH};
use eterna_bench::rustops::{self, Params, STORES};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const BEGIN: &str = "<!-- bench-rustops: begin -->";
const END: &str = "<!-- bench-rustops: end -->";

#[derive(Debug, Clone)]
struct Args {
    n: usize,
    runs: usize,
    set_runs: usize,
    timeout: Option<f64>,
    txns: Option<usize>,
    write: Option<PathBuf>,
    one: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut n, mut runs, mut quick, mut txns, mut write, mut one) = (None, None, false, None, None, None);
    let (mut set_runs, mut timeout) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--n" => n = Some(value()?.parse().map_err(|e| format!("--n: {e}"))?),
            "--runs" => runs = Some(value()?.parse().map_err(|e| format!("--runs: {e}"))?),
            "--set-runs" => set_runs = Some(value()?.parse().map_err(|e| format!("--set-runs: {e}"))?),
            "--timeout" => timeout = Some(value()?.parse().map_err(|e| format!("--timeout: {e}"))?),
            "--txns" => txns = Some(value()?.parse().map_err(|e| format!("--txns: {e}"))?),
            "--quick" => quick = true,
            "--write" => write = Some(PathBuf::from(value()?)),
            "--one" => one = Some(value()?.clone()),
            "-h" | "--help" => {
                return Err("usage: bench-rustops [--n N | --quick] [--runs R] [--set-runs S] [--txns T] \
                     [--timeout SECS]
                     [--write BENCHMARKS.md]"
                    .into())
            }
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    let n = n.unwrap_or(if quick { rustops::QUICK_N } else { rustops::DEFAULT_N });
    let runs = runs.unwrap_or(3);
    if n < 100 || runs == 0 {
        return Err("--n must be at least 100 and --runs at least 1".into());
    }
    let set_runs = set_runs.unwrap_or(runs).min(runs);
    Ok(Args { n, runs, set_runs, timeout, txns, write, one })
}

fn params(a: &Args) -> Params {
    let mut p = Params::for_n(a.n);
    if let Some(t) = a.txns {
        p.txns = t;
    }
    p
}

/// Runs one store in a child process and parses its JSON; with `--timeout`, kills the
/// child (by its own handle) when it runs longer.
fn child(exe: &Path, store: &str, a: &Args) -> Result<Value, String> {
    let p = params(a);
    let mut cmd = Command::new(exe);
    cmd.args(["--one", store, "--n", &p.n.to_string(), "--txns", &p.txns.to_string()]);
    let done = report::run_child(&mut cmd, a.timeout).map_err(|e| match e {
        ChildError::Spawn(e) => format!("{}: {e}", exe.display()),
        ChildError::Wait(e) => format!("{store}: {e}"),
        killed => killed.to_string(),
    })?;
    if !done.status.success() {
        return Err(format!("{} after {:.0} s: {}", done.status, done.seconds, done.stderr_text()));
    }
    serde_json::from_slice(&done.stdout).map_err(|e| format!("bad JSON: {e}"))
}

/// Per store: key → median over the runs that reported it, and how many runs succeeded.
type Medians = BTreeMap<String, (usize, BTreeMap<String, f64>)>;

fn medians(results: &BTreeMap<String, Vec<Value>>) -> Medians {
    results.iter().map(|(store, runs)| (store.clone(), (runs.len(), report::key_medians(runs)))).collect()
}

fn get(m: &Medians, store: &str, key: &str) -> Option<f64> {
    m.get(store).and_then(|(_, k)| k.get(key).copied())
}

fn rate(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 1e6 => format!("{:.2} M", x / 1e6),
        Some(x) if x >= 1e3 => format!("{:.1} k", x / 1e3),
        Some(x) => format!("{x:.0}"),
        None => DASH.into(),
    }
}

/// Bytes as MiB with one decimal, or [`DASH`].
fn mib(bytes: Option<f64>) -> String {
    report::mib(bytes.map(|b| b / 1024.0))
}

/// The eterna source measured: `ETERNA_COMMIT` if set (a build from an exported tree),
/// else the repository's HEAD, marked when the core crate has uncommitted changes.
fn eterna_commit() -> String {
    std::env::var("ETERNA_COMMIT").ok().or_else(report::eterna_commit).unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let m = Machine::read();
    let version = |krate| report::lock_version(krate).unwrap_or_else(|| "?".into());
    format!(
        "- date: {}\n- machine: {}; shared with other work, so absolute figures drift: compare \
         ratios\n\
         - peers: heed {} (lmdb-master-sys {}), redb {}; eterna at {}; database files \
         in fresh temporary directories under `{}` ({})\n",
        m.date,
        m.summary(),
        version("heed"),
        version("lmdb-master-sys"),
        version("redb"),
        eterna_commit(),
        m.tmp.display(),
        m.tmp_fs,
    )
}

fn verdict(r: Option<f64>, target: f64) -> String {
    match r {
        Some(r) if r >= target => format!("**met** ({r:.2}×)"),
        Some(r) => format!("**missed** ({r:.2}×)"),
        None => "not measured".into(),
    }
}

const PHASES: [(&str, &str); 6] = [
    ("build", "bulk build, one txn, keys in order"),
    ("build_random", "bulk build, one txn, keys in random order"),
    ("gets_first", "random gets, first pass"),
    ("gets", "random gets, second pass"),
    ("txn_none", "1-key txns, no sync"),
    ("txn_commit", "1-key txns, sync per commit"),
];

fn report(a: &Args, m: &Medians, failures: &[(String, usize, String)], command: &str, wall: f64) -> String {
    let p = params(a);
    let mut s = String::new();
    let _ = writeln!(s, "## Rust operations (`rust-ops`): eterna, heed (LMDB), redb, HashMap\n");
    let _ = writeln!(s, "Command: `{command}` (wall time {wall:.0} s)\n");
    s.push_str(&machine());
    let _ = writeln!(
        s,
        "- N = {} entries; {} random gets per pass; {} single-key transactions per durability \
         mode; medians of {} run(s) ({} for `eterna-set`), each store in a fresh process per \
         run (the binary re-executes itself with `--one STORE`), stores interleaved within \
         each run{}\n",
        p.n,
        p.gets,
        p.txns,
        a.runs,
        a.set_runs,
        a.timeout.map_or(String::new(), |t| format!("; a child still running after {t:.0} s is killed"))
    );
    s.push_str(
        "Keys are `key{i:08}` (11 bytes), values `value-{i}-xxxxxxxxxx` (22–26 bytes), the same \
         strings for every store, handed over as `&str` from prebuilt vectors (stores whose API \
         takes owned values, `HashMap` and eterna's `Input::Str`, clone them inside the timed \
         loop; eterna's bulk build copies them into one `StrPairs` buffer, also timed).\n\n\
         - **Build**: N inserts in key order (which favours the B-trees of LMDB and redb: every \
         insert lands in the rightmost leaf) in one write transaction, committed with the \
         store's default durability (one sync), timed through the commit. `eterna` builds the \
         map as one dict of all N entries (`Input::StrDict`: str keys and values packed in \
         one buffer, the form the Python binding makes of a dict of str) stored by one \
         `WriteTxn::set` at `root[\"data\"]` (making the `Input` is timed too); `eterna-set` calls \
         `WriteTxn::set` once per key on the root dict. heed: one `put` per key into a \
         `Database<Str, Str>`; redb: one `insert` per key into a `TableDefinition<&str, &str>`. \
         After the other phases each store builds the same N entries again, into a fresh \
         database, in a random order (the B-trees' worst case): \"build, random order\".\n\
         - **Gets**: N gets of random existing keys (a fixed splitmix64 sequence) from one read \
         snapshot, summing the value lengths (checked against the expected total); two passes \
         over the same keys, the first right after the build (the files are in the page cache, \
         but the snapshot's mapping has not touched them yet), the second warm. eterna looks up \
         the dict once and calls `Dict::get` per key; \"gets via path\" is the second pass \
         again through `ReadTxn::get(&[\"data\", key])`.\n\
         - **1-key txns**: begin, store one random key (1 in 11 a new key, the rest \
         overwrites), commit; first with no sync (eterna `Durability::None`; heed \
         `EnvFlags::NO_SYNC`, an `unsafe` flag, set with `Env::set_flags`; redb \
         `Durability::None`), then with a sync per commit (eterna `Durability::Commit`, one \
         `fdatasync`; heed's default, which syncs the data file and then writes the meta page \
         through an `O_DSYNC` descriptor, so two syncs; redb `Durability::Immediate`). eterna \
         writes `root[\"data\"][key]` and is reopened between the phases (untimed), since its \
         durability is set at open.\n\
         - After the run every store's contents are checked (every written key and every 97th \
         built key). Disk is `st_blocks × 512` of the database file (eterna: \
         `stats().disk_bytes`) after the build and at the end; peak RSS is the child's \
         `VmHWM` (it counts the benchmark's own key and value vectors and, for the mmap-based \
         stores, file pages mapped in).\n\n",
    );

    let _ = writeln!(
        s,
        "| store | build ops/s | build s | build, random order, ops/s | gets ops/s, 1st pass | gets ops/s, 2nd pass | gets via path ops/s | 1-key txns, no sync, ops/s | 1-key txns, sync, ops/s | disk after build MiB | disk at end MiB | peak RSS MiB | runs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, _) in STORES {
        let runs = m.get(name).map_or(0, |(r, _)| *r);
        if runs == 0 {
            let _ = writeln!(s, "| {name} | failed (below) | | | | | | | | | | | 0 |");
            continue;
        }
        let g = |k| get(m, name, k);
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {runs} |",
            rate(g("build_ops")),
            fixed(g("build_s"), 2),
            rate(g("build_random_ops")),
            rate(g("gets_first_ops")),
            rate(g("gets_ops")),
            rate(g("gets_path_ops")),
            rate(g("txn_none_ops")),
            rate(g("txn_commit_ops")),
            mib(g("disk_build_bytes")),
            mib(g("disk_end_bytes")),
            fixed(g("peak_rss_kib").map(|k| k / 1024.0), 0),
        );
    }

    if !failures.is_empty() {
        let _ = writeln!(s, "\nRuns that failed:\n");
        for (store, run, e) in failures {
            let _ = writeln!(s, "- `{store}`, run {run}: {e}");
        }
    }

    let _ = writeln!(s, "\nRatios of throughput (above 1: eterna faster):\n");
    let _ = writeln!(
        s,
        "| phase | eterna / heed | eterna / redb | eterna-set / heed | eterna-set / redb | eterna / HashMap |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    let f = |x: Option<f64>| fixed(x, 2);
    for (key, label) in PHASES {
        let k = format!("{key}_ops");
        let e = get(m, "eterna", &k);
        let es = get(m, "eterna-set", &k);
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {} |",
            f(ratio(e, get(m, "heed", &k))),
            f(ratio(e, get(m, "redb", &k))),
            f(ratio(es, get(m, "heed", &k))),
            f(ratio(es, get(m, "redb", &k))),
            f(ratio(e, get(m, "hashmap", &k))),
        );
    }
    let disk = |e: &str, st: &str| ratio(get(m, e, "disk_build_bytes"), get(m, st, "disk_build_bytes"));
    let _ = writeln!(
        s,
        "| disk after build (size ratio; below 1: eterna smaller) | {} | {} | {} | {} | |",
        f(disk("eterna", "heed")),
        f(disk("eterna", "redb")),
        f(disk("eterna-set", "heed")),
        f(disk("eterna-set", "redb")),
    );

    let _ = writeln!(s, "\n### Targets\n");
    let r = |st: &str, k: &str| ratio(get(m, st, k), get(m, "heed", k));
    let _ = writeln!(
        s,
        "- random gets ≥ 1.5 × heed (second pass): {} (first pass: {}; `eterna-set`, second \
         pass: {})",
        verdict(r("eterna", "gets_ops"), 1.5),
        verdict(r("eterna", "gets_first_ops"), 1.5),
        verdict(r("eterna-set", "gets_ops"), 1.5),
    );
    let set_build = match (r("eterna-set", "build_ops"), failures.iter().find(|f| f.0 == "eterna-set")) {
        (None, Some((_, _, e))) if e.starts_with("did not finish") => format!(
            "**missed** ({e}; heed's build took {} s)",
            get(m, "heed", "build_s").map_or("?".into(), |t| format!("{t:.2}"))
        ),
        (x, _) => verdict(x, 1.0),
    };
    let _ = writeln!(
        s,
        "- bulk build ≥ heed, keys in order: one `Input::StrDict` (`eterna`) {}; one `set` per key (`eterna-set`) {set_build}",
        verdict(r("eterna", "build_ops"), 1.0),
    );
    let _ = writeln!(
        s,
        "- bulk build ≥ heed, keys in random order: one `Input::StrDict` (`eterna`) {}; one `set` per key (`eterna-set`) {}",
        verdict(r("eterna", "build_random_ops"), 1.0),
        verdict(r("eterna-set", "build_random_ops"), 1.0),
    );
    s
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-rustops: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(store) = &a.one {
        return match rustops::run(store, &params(&a)) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench-rustops --one {store}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench-rustops: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    let mut results: BTreeMap<String, Vec<Value>> =
        STORES.iter().map(|(s, _)| (s.to_string(), vec![])).collect();
    let mut failures: Vec<(String, usize, String)> = Vec::new();
    for run in 1..=a.runs {
        for (store, _) in STORES {
            if store == "eterna-set" && run > a.set_runs {
                continue;
            }
            let t = Instant::now();
            match child(&exe, store, &a) {
                Ok(v) => {
                    eprintln!("run {run}/{} {store}: {:.1} s", a.runs, t.elapsed().as_secs_f64());
                    results.get_mut(store).expect("every store has a slot").push(v);
                }
                Err(e) => {
                    eprintln!("run {run}/{} {store} FAILED: {e}", a.runs);
                    failures.push((store.to_string(), run, e));
                }
            }
        }
    }
    let m = medians(&results);
    report::save_data("rustops", &serde_json::json!(results));
    let command = report::command_line("target/release/bench-rustops", &argv);
    let body = report(&a, &m, &failures, &command, t0.elapsed().as_secs_f64());
    print!("{body}");
    if let Some(path) = &a.write {
        if let Err(e) = report::write_section(path, BEGIN, END, &body, Some("")) {
            eprintln!("bench-rustops: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote the rust-ops section of {}", path.display());
    }
    if !failures.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
