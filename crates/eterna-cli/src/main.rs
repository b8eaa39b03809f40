//! `eterna`: inspect, check and benchmark eterna heap files.

mod demo;
mod json;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use eterna::{Heap, Key, OpenError, Options, Stats, TxnError, Value};
use eterna_bench::frag::{self, Pattern};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit codes, for `eterna --help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success; also when the reader of the output (say `head`) stops early
  1  `check` found corruption; a step of `demo` failed
  2  a usage or I/O error, a key not found, or a damaged file met by any command but
     `check` (the message names the file and says to run `eterna check PATH`)";

#[derive(Parser)]
#[command(
    name = "eterna",
    version,
    about = "An embedded object heap in a memory-mapped file",
    after_help = EXIT_CODES
)]
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
    /// Print root[KEY1][KEY2]... as JSON (list indices are numbers, -1 the last item).
    Get {
        path: PathBuf,
        /// Keys. One may start with '-' (`-1`, `-x`); one spelled like an option
        /// (`--wait`, `-h`) goes after `--`.
        keys: Vec<String>,
    },
    /// Set root[KEY1]...[KEYn] = JSON in one committed transaction; creates the heap and
    /// missing dicts along the way.
    ///
    /// JSON objects become dicts, arrays lists; a number too large for a float (1e400)
    /// becomes inf, as in Python's json.
    Set {
        path: PathBuf,
        /// Keys, then the JSON value. Either may start with '-' (`-1`, `-x`); a key
        /// spelled like an option (`--wait`, `-h`) goes after `--`.
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
    },
    /// Delete root[KEY1]...[KEYn] in one committed transaction.
    Del {
        path: PathBuf,
        /// Keys. One may start with '-' (`-1`, `-x`); one spelled like an option
        /// (`--wait`, `-h`) goes after `--`.
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

impl Failure {
    /// A failed write to stdout. A closed pipe (the reader, say `head`, has all it wanted)
    /// ends the command quietly with exit 0, as if killed by SIGPIPE; anything else (a
    /// full disk behind a redirect) is an I/O error.
    fn stdout(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure { code: 0, message: String::new() }
        } else {
            Failure { code: 2, message: format!("cannot write to standard output: {e}") }
        }
    }
}

/// `println!` that returns a [`Failure`] instead of panicking when stdout is closed or
/// fails; use it with `?` for everything a command prints.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::Failure::stdout)
    }};
}
pub(crate) use outln;

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure { code: 2, message: e.to_string() }
    }
}

/// The commands whose KEY and JSON arguments may start with '-' (see [`hyphen_values`]).
const HYPHEN_VALUES: [&str; 3] = ["get", "set", "del"];

/// Rewrites the arguments of `get`, `set` and `del` so that a KEY or JSON argument may
/// start with '-' (the list index `-1`, the number `-5`, the key `-x`) while the real
/// options still work anywhere on the line: the options are moved before a `--` and every
/// other argument after it. clap's `allow_hyphen_values` cannot do this: after the first
/// KEY it takes `--wait 5`, `--help` and `--` for keys too, so `set F K 1 --wait 5` would
/// write to root["K"]["1"]["--wait"]. A long option the command does not have (`--wiat`)
/// stays an option for clap to reject, so that a typo does not become a key; after a
/// `--` of the user's, everything is a value.
fn hyphen_values(args: Vec<OsString>) -> Vec<OsString> {
    let mut cli = Cli::command();
    cli.build();
    // The global options before the command, which one they name, and what follows it.
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match option(&cli, a) {
            Some(takes_value) => i += 1 + usize::from(takes_value && !a.contains('=')),
            None => break,
        }
    }
    let Some(cmd) = args.get(i).and_then(|a| a.to_str()).filter(|c| HYPHEN_VALUES.contains(c)) else {
        return args;
    };
    let sub = cli.find_subcommand(cmd).expect("a command of HYPHEN_VALUES");
    let mut rest = args[i + 1..].iter().cloned();
    let (mut options, mut values) = (Vec::new(), Vec::new());
    while let Some(a) = rest.next() {
        let text = a.to_str().unwrap_or("").to_owned();
        let text = text.as_str();
        if text == "--" {
            values.extend(rest.by_ref());
        } else if let Some(takes_value) = option(sub, text) {
            options.push(a);
            if takes_value && !text.contains('=') {
                options.extend(rest.next());
            }
        } else if text.starts_with("--") && text.parse::<f64>().is_err() {
            options.push(a); // an unknown long option: clap says so
        } else {
            values.push(a);
        }
    }
    let mut out = args[..=i].to_vec();
    out.extend(options);
    out.push("--".into());
    out.extend(values);
    out
}

/// Whether `text` names an option of `cmd` (`--long`, `--long=VALUE` or `-s`), and if so
/// whether the option takes a value.
fn option(cmd: &clap::Command, text: &str) -> Option<bool> {
    let arg = if let Some(long) = text.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or("");
        cmd.get_arguments().find(|a| a.get_long_and_visible_aliases().is_some_and(|l| l.contains(&name)))
    } else {
        let mut chars = text.strip_prefix('-')?.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else { return None };
        cmd.get_arguments().find(|a| a.get_short_and_visible_aliases().is_some_and(|s| s.contains(&c)))
    }?;
    Some(arg.get_action().takes_values())
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(hyphen_values(std::env::args_os().collect()));
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
    // What is still buffered goes out now, so that a failure to write it is reported.
    let result = result.and_then(|()| {
        use std::io::Write as _;
        std::io::stdout().flush().map_err(Failure::stdout)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                use std::io::Write as _;
                // Nothing is left to tell a closed stderr.
                let _ = writeln!(std::io::stderr(), "eterna: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn stats(path: PathBuf, json: bool) -> Result<(), Failure> {
    let heap = Heap::open(&path, Options { readonly: true, ..Options::default() })
        .map_err(|e| open_failure(&path, e))?;
    let s = heap.stats().map_err(|e| open_failure(&path, e))?;
    if json {
        outln!("{}", s.to_json())?;
    } else {
        print_stats(&s)?;
    }
    Ok(())
}

/// The counters as a table, then one line per size class in use.
fn print_stats(s: &Stats) -> Result<(), Failure> {
    for (name, v) in s.counters() {
        outln!("{name:<24} {v:>16}")?;
    }
    for (pid, txn) in &s.reader_list {
        outln!("reader: process {pid} pins transaction {txn}")?;
    }
    if !s.size_classes.is_empty() {
        outln!("\n{:>6} {:>8} {:>12} {:>12}", "size", "pools", "blocks_live", "blocks_free")?;
        for c in &s.size_classes {
            outln!("{:>6} {:>8} {:>12} {:>12}", c.size, c.pools, c.blocks_live, c.blocks_free)?;
        }
    }
    Ok(())
}

fn check(path: PathBuf) -> Result<(), Failure> {
    match eterna::check::check(&path) {
        Ok(r) => {
            for w in &r.warnings {
                outln!("{}: {w}", path.display())?;
            }
            outln!(
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
            )?;
            Ok(())
        }
        Err(eterna::check::CheckError::Io(e)) => {
            Err(Failure { code: 2, message: format!("{}: {}", path.display(), io_words(&path, &e)) })
        }
        Err(e) => Err(Failure { code: 1, message: format!("{}: {e}", path.display()) }),
    }
}

/// What is wrong with the file or directory at `path`, in plain words, given the error
/// opening it gave.
fn io_words(path: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    if path.is_dir() {
        return "is a directory, not a heap file".into();
    }
    match e.kind() {
        ErrorKind::NotFound => match path.parent() {
            Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => {
                format!("there is no directory {}", d.display())
            }
            _ => "no such file".into(),
        },
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot open: {e}"),
    }
}

/// A damaged heap file: exit 2 for every command but `check`, pointing at `check`.
fn damaged(path: &Path, what: impl std::fmt::Display) -> Failure {
    let p = path.display();
    Failure {
        code: 2,
        message: format!("{p}: the file is damaged ({what}); run `eterna check {p}` for details"),
    }
}

/// Why the heap at `path` could not be opened, naming the path.
fn open_failure(path: &Path, e: OpenError) -> Failure {
    match e {
        // The file ends before the state its header or meta slot describes.
        OpenError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => damaged(path, e),
        OpenError::Io(e) => {
            Failure { code: 2, message: format!("{}: {}", path.display(), io_words(path, &e)) }
        }
        OpenError::NotEterna => {
            Failure { code: 2, message: format!("{}: not an eterna heap (bad magic)", path.display()) }
        }
        e @ (OpenError::Truncated { .. } | OpenError::Corrupt(_)) => damaged(path, e),
        e => Failure { code: 2, message: format!("{}: {e}", path.display()) },
    }
}

/// Turns an error of an operation on the heap at `path` into a failure: a damaged file
/// says so and points at `eterna check`, an I/O error names the path.
fn txn_failure(path: &Path) -> impl Fn(TxnError) -> Failure + Copy + '_ {
    move |e| match e {
        TxnError::Corrupt(c) => damaged(path, c),
        TxnError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => damaged(path, e),
        TxnError::Io(e) => {
            Failure { code: 2, message: format!("{}: {}", path.display(), io_words(path, &e)) }
        }
        e => Failure { code: 2, message: e.to_string() },
    }
}

/// Turns command-line keys into a path: a key indexing a list or tuple is a number, any
/// other key a str.
fn resolve(
    read: impl Fn(&[Key]) -> Result<Option<bool>, TxnError>,
    keys: &[String],
) -> Result<Vec<Key<'static>>, TxnError> {
    let mut path: Vec<Key<'static>> = Vec::new();
    for k in keys {
        // A path that stops early reads as a dict: `set` creates it, `get` and `del`
        // report the first missing key.
        let sequence = match read(&path) {
            Ok(s) => s.unwrap_or(false),
            Err(TxnError::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
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
    let heap = Heap::open(&path, Options { readonly: true, ..Options::default() })
        .map_err(|e| open_failure(&path, e))?;
    let fail = txn_failure(&path);
    let r = heap.read().map_err(fail)?;
    let p = resolve(|p| Ok(is_sequence(r.get(p)?)), &keys).map_err(fail)?;
    match r.get(&p).map_err(fail)? {
        Some(v) => {
            outln!("{}", json::to_json(&v).map_err(fail)?)?;
            Ok(())
        }
        None => Err(Failure { code: 2, message: format!("{} not found", eterna::txn::render_path(&p)) }),
    }
}

fn set(path: PathBuf, mut args: Vec<String>, options: Options) -> Result<(), Failure> {
    let text = args.pop().expect("clap requires a value");
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure { code: 2, message: format!("the value is not JSON: {e}") })?;
    let input = json::to_input(&value).map_err(|message| Failure { code: 2, message })?;
    let heap = Heap::open(&path, options).map_err(|e| open_failure(&path, e))?;
    let fail = txn_failure(&path);
    let mut w = heap.write().map_err(fail)?;
    let p = resolve(|p| Ok(is_sequence(w.get(p)?)), &args).map_err(fail)?;
    w.set_creating(&p, &input).map_err(fail)?;
    w.commit().map_err(fail)?;
    heap.close().map_err(fail)?;
    Ok(())
}

fn del(path: PathBuf, keys: Vec<String>, options: Options) -> Result<(), Failure> {
    let heap = Heap::open(&path, Options { create: false, ..options }).map_err(|e| open_failure(&path, e))?;
    let fail = txn_failure(&path);
    let mut w = heap.write().map_err(fail)?;
    let p = resolve(|p| Ok(is_sequence(w.get(p)?)), &keys).map_err(fail)?;
    w.del(&p).map_err(fail)?;
    w.commit().map_err(fail)?;
    heap.close().map_err(fail)?;
    Ok(())
}

/// `eterna gc` and `eterna compact`: progress on stderr (when it is a terminal), then what
/// was freed.
fn collect(path: PathBuf, compact: bool, json: bool, options: Options) -> Result<(), Failure> {
    use eterna::gc::Phase;
    use indicatif::{ProgressBar, ProgressStyle};
    let heap = Heap::open(&path, Options { create: false, auto_compact: false, ..options })
        .map_err(|e| open_failure(&path, e))?;
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
    let fail = txn_failure(&path);
    let r = heap.collect(kind, &mut progress).map_err(fail)?;
    bar.finish_and_clear();
    heap.close().map_err(fail)?;
    if json {
        outln!("{}", r.to_json())?;
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    outln!(
        "{}: {} in {:.2} s (marking {:.2} s): {} objects ({:.1} MiB) reachable",
        path.display(),
        if compact { "compacted" } else { "collected" },
        r.seconds,
        r.trace_seconds,
        r.objects_traced,
        mib(r.bytes_traced),
    )?;
    outln!(
        "  garbage freed: {} blocks ({:.1} MiB), {} shared entries dropped",
        r.garbage_blocks,
        mib(r.garbage_bytes),
        r.shared_dropped
    )?;
    if compact {
        outln!(
            "  moved: {} objects ({:.1} MiB) out of {} sparse pools",
            r.moved_blocks,
            mib(r.moved_bytes),
            r.pools_evacuated
        )?;
    }
    outln!(
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
    )?;
    Ok(())
}

fn bench(workload: Workload) -> Result<(), Failure> {
    match workload {
        Workload::Fragmentation { pattern, n, json, path } => {
            let dir = tempfile::tempdir()?;
            let path = path.unwrap_or_else(|| dir.path().join("fragmentation.eterna"));
            let r = frag::run_eterna(pattern.into(), n, &path)?;
            if json {
                outln!("{r}")?;
            } else {
                outln!(
                    "fragmentation {}: n {} kept {}; disk returned {:.1} %, arenas reclaimed {:.1} %, \
                     RSS returned {:.1} %",
                    r["pattern"].as_str().unwrap_or(""),
                    r["n"],
                    r["kept"],
                    r["disk_returned_pct"].as_f64().unwrap_or(0.0),
                    r["arenas_reclaimed_pct"].as_f64().unwrap_or(0.0),
                    r["rss_returned_pct"].as_f64().unwrap_or(0.0),
                )?;
            }
            Ok(())
        }
    }
}
