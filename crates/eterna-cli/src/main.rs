//! `eterna`: inspect, check and benchmark eterna heap files.

mod demo;

use clap::{Parser, Subcommand, ValueEnum};
use eterna::{Access, Allocator, OpenError, Stats};
use eterna_bench::frag::{self, Pattern};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "eterna", version, about = "An embedded object heap in a memory-mapped file")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Run a benchmark workload on eterna.
    Bench {
        #[command(subcommand)]
        workload: Workload,
    },
    /// Show the problems eterna solves, measured live, side by side with CPython.
    Demo {
        /// Blocks per experiment.
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
    },
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
        Command::Bench { workload } => bench(workload),
        Command::Demo { n } => demo::run(n),
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
    let heap = Allocator::open(&path, Access::ReadOnly)?;
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
    if !s.size_classes.is_empty() {
        println!("\n{:>6} {:>8} {:>12} {:>12}", "size", "pools", "blocks_live", "blocks_free");
        for c in &s.size_classes {
            println!("{:>6} {:>8} {:>12} {:>12}", c.size, c.pools, c.blocks_live, c.blocks_free);
        }
    }
}

fn check(path: PathBuf) -> Result<(), Failure> {
    let corrupt = |m: String| Failure { code: 1, message: m };
    let heap = match Allocator::open(&path, Access::ReadOnly) {
        Ok(h) => h,
        Err(OpenError::Io(e)) => return Err(e.into()),
        Err(e) => return Err(corrupt(e.to_string())),
    };
    heap.verify().map_err(|e| corrupt(e.to_string()))?;
    let s = heap.stats()?;
    println!(
        "{}: consistent ({} live blocks in {} arenas, transaction {})",
        path.display(),
        s.blocks_live,
        s.arenas_current,
        s.txn_id
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
