//! `eterna`: inspect, check and benchmark eterna heap files.

mod demo;
mod json;

use clap::{Parser, Subcommand, ValueEnum};
use eterna::{Heap, Key, Options, Stats, TxnError, Value};
use eterna_bench::frag::{self, Pattern};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "eterna", version, about = "An embedded object heap in a memory-mapped file")]
struct Cli {
    /// Seconds a writing command (set, del, gc, compact) waits for another process that
    /// holds the writer lock before it gives up.
    #[arg(long, global = true, default_value_t = 30.0)]
    wait: f64,
    #[command(subcommand)]
    command: Command,
}

/// Options for a command that writes: waits at most `wait` seconds for the writer lock.
fn writing(wait: f64) -> Options {
    Options { lock_timeout: Some(std::time::Duration::from_secs_f64(wait.max(0.0))), ..Options::default() }
}

#[derive(Subcommand)]
enum Command {
    /// Print the allocator's counters, like sys._debugmallocstats.
    Stats {
        path: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a heap file: exit 0 if consistent, 1 if corruption is found, 2 on usage or I/O errors.
    Check { path: PathBuf },
    /// Print root[KEY1][KEY2]... as JSON (list indices are numbers).
    Get { path: PathBuf, keys: Vec<String> },
    /// Set root[KEY1]...[KEYn] = JSON in one committed transaction; creates the heap and
    /// missing dicts along the way.
    Set {
        path: PathBuf,
        /// Keys, then the JSON value.
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
    },
    /// Delete root[KEY1]...[KEYn] in one committed transaction.
    Del {
        path: PathBuf,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the whole root as JSON (types JSON lacks are marked, see the README).
    Dump { path: PathBuf },
    /// Free every block the current state does not reach (shared and cyclic garbage,
    /// what dead writers left); readers of older states keep what they read.
    Gc {
        path: PathBuf,
        /// One JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Collect, and rewrite sparsely used pools and lists densely as a new version; the
    /// old pools are given back once no reader pins them.
    Compact {
        path: PathBuf,
        /// One JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Run a benchmark workload on eterna.
    Bench {
        #[command(subcommand)]
        workload: Workload,
    },
    /// Show the problems eterna solves, measured live, side by side with CPython.
    Demo {
        /// Entries (or strings) per step.
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        /// Reader processes in the fork step.
        #[arg(long, default_value_t = 4)]
        readers: usize,
        /// Keep the demo's files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A helper process of `eterna demo`.
    #[command(hide = true)]
    DemoChild { role: String, path: PathBuf },
}

#[derive(Subcommand)]
enum Workload {
    /// Allocate N string-sized blocks, free some, and measure the disk and memory returned.
    Fragmentation {
        #[arg(long, value_enum, default_value_t = PatternArg::Random)]
        pattern: PatternArg,
        /// Number of blocks.
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Keep the heap file at this path (it must not exist) instead of a temporary one.
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PatternArg {
    Random,
    Prefix,
    Keep47,
}

impl From<PatternArg> for Pattern {
    fn from(p: PatternArg) -> Pattern {
        match p {
            PatternArg::Random => Pattern::Random,
            PatternArg::Prefix => Pattern::Prefix,
            PatternArg::Keep47 => Pattern::Keep47,
        }
    }
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure { code: 2, message: e.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stats { path, json } => stats(path, json),
        Command::Check { path } => check(path),
        Command::Get { path, keys } => get(path, keys),
        Command::Set { path, args } => set(path, args, writing(cli.wait)),
        Command::Del { path, keys } => del(path, keys, writing(cli.wait)),
        Command::Dump { path } => get(path, vec![]),
        Command::Gc { path, json } => collect(path, false, json, writing(cli.wait)),
        Command::Compact { path, json } => collect(path, true, json, writing(cli.wait)),
        Command::Bench { workload } => bench(workload),
        Command::Demo { n, readers, dir } => demo::run(n, readers, dir),
        Command::DemoChild { role, path } => demo::child(&role, &path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("eterna: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn stats(path: PathBuf, json: bool) -> Result<(), Failure> {
    let heap = Heap::open(&path, Options { readonly: true, ..Options::default() })?;
    let s = heap.stats()?;
    if json {
        println!("{}", s.to_json());
    } else {
        print_stats(&s);
    }
    Ok(())
}

/// The counters as a table, then one line per size class in use.
pub fn print_stats(s: &Stats) {
    for (name, v) in s.counters() {
        println!("{name:<24} {v:>16}");
    }
    for (pid, txn) in &s.reader_list {
        println!("reader: process {pid} pins transaction {txn}");
    }
    if !s.size_classes.is_empty() {
        println!("\n{:>6} {:>8} {:>12} {:>12}", "size", "pools", "blocks_live", "blocks_free");
        for c in &s.size_classes {
            println!("{:>6} {:>8} {:>12} {:>12}", c.size, c.pools, c.blocks_live, c.blocks_free);
        }
    }
}

fn check(path: PathBuf) -> Result<(), Failure> {
    match eterna::check::check(&path) {
        Ok(r) => {
            for w in &r.warnings {
                println!("{}: {w}", path.display());
            }
            println!(
                "{}: consistent: transaction {}, {} objects ({} bytes) reachable, {} unreachable blocks ({} bytes){}",
                path.display(),
                r.txn_id,
                r.objects,
                r.bytes,
                r.unreachable_blocks,
                r.unreachable_bytes,
                if r.interrupted {
                    "; the last writer died in a transaction: its pool bits were not counted, \
                     the next writer frees what it left"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Err(eterna::check::CheckError::Io(e)) => Err(e.into()),
        Err(e) => Err(Failure { code: 1, message: format!("{}: {e}", path.display()) }),
    }
}

fn txn_failure(e: TxnError) -> Failure {
    let code = if matches!(e, TxnError::Corrupt(_)) { 1 } else { 2 };
    Failure { code, message: e.to_string() }
}

/// Turns command-line keys into a path: a key indexing a list or tuple is a number, any
/// other key a str.
fn resolve(
    read: impl Fn(&[Key]) -> Result<Option<bool>, TxnError>,
    keys: &[String],
) -> Result<Vec<Key<'static>>, Failure> {
    let mut path: Vec<Key<'static>> = Vec::new();
    for k in keys {
        let sequence = read(&path).map_err(txn_failure)?.unwrap_or(false);
        match (sequence, k.parse::<i64>()) {
            (true, Ok(i)) => path.push(Key::Int(i)),
            _ => path.push(Key::Str(k.clone().into())),
        }
    }
    Ok(path)
}

fn is_sequence(v: Option<Value<'_>>) -> Option<bool> {
    v.map(|v| matches!(v, Value::List(_) | Value::Tuple(_)))
}

fn get(path: PathBuf, keys: Vec<String>) -> Result<(), Failure> {
    let heap = Heap::open(&path, Options { readonly: true, ..Options::default() })?;
    let r = heap.read().map_err(txn_failure)?;
    let p = resolve(|p| Ok(is_sequence(r.get(p)?)), &keys)?;
    match r.get(&p).map_err(txn_failure)? {
        Some(v) => {
            println!("{}", json::to_json(&v).map_err(txn_failure)?);
            Ok(())
        }
        None => Err(Failure { code: 2, message: format!("{} not found", eterna::txn::render_path(&p)) }),
    }
}

fn set(path: PathBuf, mut args: Vec<String>, options: Options) -> Result<(), Failure> {
    let text = args.pop().expect("clap requires a value");
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure { code: 2, message: format!("the value is not JSON: {e}") })?;
    let heap = Heap::open(&path, options)?;
    let mut w = heap.write().map_err(txn_failure)?;
    let p = resolve(|p| Ok(is_sequence(w.get(p)?)), &args)?;
    w.set_creating(&p, &json::to_input(&value)).map_err(txn_failure)?;
    w.commit().map_err(txn_failure)?;
    heap.close().map_err(txn_failure)?;
    Ok(())
}

fn del(path: PathBuf, keys: Vec<String>, options: Options) -> Result<(), Failure> {
    let heap = Heap::open(&path, Options { create: false, ..options })?;
    let mut w = heap.write().map_err(txn_failure)?;
    let p = resolve(|p| Ok(is_sequence(w.get(p)?)), &keys)?;
    w.del(&p).map_err(txn_failure)?;
    w.commit().map_err(txn_failure)?;
    heap.close().map_err(txn_failure)?;
    Ok(())
}

/// `eterna gc` and `eterna compact`: progress on stderr (when it is a terminal), then what
/// was freed.
fn collect(path: PathBuf, compact: bool, json: bool, options: Options) -> Result<(), Failure> {
    use eterna::gc::Phase;
    use indicatif::{ProgressBar, ProgressStyle};
    let heap = Heap::open(&path, Options { create: false, auto_compact: false, ..options })?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:32}] {pos}/{len} objects ({elapsed})")
            .map_err(|e| Failure { code: 2, message: e.to_string() })?
            .progress_chars("=> "),
    );
    let mut progress = |phase: Phase, done: u64, total: u64| {
        bar.set_message(match phase {
            Phase::Trace => "marking",
            Phase::Move => "moving",
            Phase::Sweep => "sweeping",
        });
        bar.set_length(total.max(done));
        bar.set_position(done);
    };
    let kind = if compact { eterna::gc::Kind::Compact } else { eterna::gc::Kind::Full };
    let r = heap.collect(kind, &mut progress).map_err(txn_failure)?;
    bar.finish_and_clear();
    heap.close().map_err(txn_failure)?;
    if json {
        println!("{}", r.to_json());
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{}: {} in {:.2} s (marking {:.2} s): {} objects ({:.1} MiB) reachable",
        path.display(),
        if compact { "compacted" } else { "collected" },
        r.seconds,
        r.trace_seconds,
        r.objects_traced,
        mib(r.bytes_traced),
    );
    println!(
        "  garbage freed: {} blocks ({:.1} MiB), {} shared entries dropped",
        r.garbage_blocks,
        mib(r.garbage_bytes),
        r.shared_dropped
    );
    if compact {
        println!(
            "  moved: {} objects ({:.1} MiB) out of {} sparse pools",
            r.moved_blocks,
            mib(r.moved_bytes),
            r.pools_evacuated
        );
    }
    println!(
        "  disk: {:.1} MiB -> {:.1} MiB{}",
        mib(r.disk_before),
        mib(r.disk_after),
        if r.blocks_deferred > 0 {
            format!(
                "; {} blocks wait for readers of older states (freed by the next commit after they move on)",
                r.blocks_deferred
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

fn bench(workload: Workload) -> Result<(), Failure> {
    match workload {
        Workload::Fragmentation { pattern, n, json, path } => {
            let dir = tempfile::tempdir()?;
            let path = path.unwrap_or_else(|| dir.path().join("fragmentation.eterna"));
            let r = frag::run_eterna(pattern.into(), n, &path)?;
            if json {
                println!("{r}");
            } else {
                println!(
                    "fragmentation {}: n {} kept {}; disk returned {:.1} %, arenas reclaimed {:.1} %, \
                     RSS returned {:.1} %",
                    r["pattern"].as_str().unwrap_or(""),
                    r["n"],
                    r["kept"],
                    r["disk_returned_pct"].as_f64().unwrap_or(0.0),
                    r["arenas_reclaimed_pct"].as_f64().unwrap_or(0.0),
                    r["rss_returned_pct"].as_f64().unwrap_or(0.0),
                );
            }
            Ok(())
        }
    }
}
