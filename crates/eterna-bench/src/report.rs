//! What the three harnesses (`bench-alloc`, `bench-rustops`, `bench-shared`) share: the
//! machine's facts, medians, crate versions from Cargo.lock, the eterna commit measured,
//! running a child process under a time limit, formatting figures, and writing a section
//! of BENCHMARKS.md between two marker lines.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a report shows for a figure that was not measured.
pub const DASH: &str = "–";

// ---------------------------------------------------------------------------------------
// The machine and software

/// The trimmed stdout of `cmd args`, if it ran and succeeded.
pub fn shell(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The rest of the first line of `file` that starts with `key`, without the blanks and
/// colons after the key (`/proc/cpuinfo`, `/proc/meminfo`).
pub fn file_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
}

/// The machine a run saw; `?` for what could not be read.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `date -u`, to the minute.
    pub date: String,
    /// `nproc`.
    pub cpus: String,
    /// The CPU's model name.
    pub model: String,
    /// Total memory, as `7.8 GiB`.
    pub memory: String,
    /// `uname -srm`.
    pub kernel: String,
    /// The temporary directory the benchmarks' files go to.
    pub tmp: PathBuf,
    /// Its filesystem type.
    pub tmp_fs: String,
}

impl Machine {
    /// Reads the machine's facts now.
    pub fn read() -> Machine {
        let unknown = || "?".to_string();
        let memory = file_field("/proc/meminfo", "MemTotal")
            .and_then(|m| m.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(unknown, |k| format!("{:.1} GiB", k / 1024.0 / 1024.0));
        let tmp = std::env::temp_dir();
        let tmp_fs = shell("df", &["--output=fstype", &tmp.to_string_lossy()])
            .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_string()))
            .unwrap_or_else(unknown);
        Machine {
            date: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(unknown),
            cpus: shell("nproc", &[]).unwrap_or_else(unknown),
            model: file_field("/proc/cpuinfo", "model name").unwrap_or_else(unknown),
            memory,
            kernel: shell("uname", &["-srm"]).unwrap_or_else(unknown),
            tmp,
            tmp_fs,
        }
    }

    /// The machine as the reports' `- machine:` line gives it: `` `nproc` = CPUS (MODEL),
    /// MEMORY memory, kernel KERNEL``.
    pub fn summary(&self) -> String {
        format!("`nproc` = {} ({}), {} memory, kernel {}", self.cpus, self.model, self.memory, self.kernel)
    }
}

/// The version of `krate` in the workspace's Cargo.lock (its first entry of that name).
pub fn lock_version(krate: &str) -> Option<String> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(lock).ok()?;
    let at = text.find(&format!("name = \"{krate}\"\nversion = \""))?;
    let v = text[at..].lines().nth(1)?.strip_prefix("version = \"")?;
    Some(v.trim_end_matches('"').to_string())
}

/// The eterna source this binary was built from, by git: `commit HEAD`, with `plus
/// uncommitted changes to crates/eterna` when the core crate has them; `None` without git.
pub fn eterna_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let head = shell("git", &["-C", dir, "rev-parse", "--short", "HEAD"])?;
    let dirty =
        shell("git", &["-C", dir, "status", "--porcelain", "--", "../eterna"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("commit {head} plus uncommitted changes to crates/eterna")
    } else {
        format!("commit {head}")
    })
}

/// The command line a report quotes: `invoked_as` followed by `args`.
pub fn command_line<S: AsRef<str>>(invoked_as: &str, args: &[S]) -> String {
    std::iter::once(invoked_as).chain(args.iter().map(AsRef::as_ref)).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// Medians and figures

/// The median of `v` (the mean of the middle two if their number is even); `None` if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// Key → median over the JSON objects `runs` of every numeric value under that key (over
/// the runs that reported it).
pub fn key_medians(runs: &[Value]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (k, v) in r.as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64() {
                all.entry(k.clone()).or_default().push(x);
            }
        }
    }
    all.into_iter().filter_map(|(k, v)| Some((k, median(v)?))).collect()
}

/// `a / b`, if both are known and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `x` with `decimals` decimals, or [`DASH`].
pub fn fixed(x: Option<f64>, decimals: usize) -> String {
    x.map_or(DASH.into(), |x| format!("{x:.decimals$}"))
}

/// KiB as MiB with one decimal, or [`DASH`].
pub fn mib(kib: Option<f64>) -> String {
    fixed(kib.map(|k| k / 1024.0), 1)
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A child process that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// All it wrote to stdout.
    pub stdout: Vec<u8>,
    /// All it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Seconds from its start until its output was all read.
    pub seconds: f64,
}

impl Finished {
    /// Its stderr as text, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why [`run_child`] has no [`Finished`] child to give.
#[derive(Debug)]
pub enum ChildError {
    /// The child could not be started.
    Spawn(std::io::Error),
    /// Asking whether it had exited failed.
    Wait(std::io::Error),
    /// It ran longer than the time limit (seconds) and was killed.
    Killed(f64),
}

impl std::fmt::Display for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildError::Spawn(e) | ChildError::Wait(e) => write!(f, "{e}"),
            ChildError::Killed(t) => write!(f, "did not finish within {t:.0} s (killed)"),
        }
    }
}

/// Runs `cmd` with its stdout and stderr captured (read by two threads, so that neither
/// pipe fills up) and waits for it; with a `timeout` (seconds), kills the child, by its
/// own handle, once it has run longer.
pub fn run_child(cmd: &mut Command, timeout: Option<f64>) -> Result<Finished, ChildError> {
    let mut ch = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(ChildError::Spawn)?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(ch.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(ch.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let t0 = Instant::now();
    let status = loop {
        match ch.try_wait().map_err(ChildError::Wait)? {
            Some(st) => break st,
            None if timeout.is_some_and(|t| t0.elapsed().as_secs_f64() > t) => {
                let _ = ch.kill();
                let _ = ch.wait();
                return Err(ChildError::Killed(timeout.unwrap_or(0.0)));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    Ok(Finished { status, stdout, stderr, seconds: t0.elapsed().as_secs_f64() })
}

// ---------------------------------------------------------------------------------------
// BENCHMARKS.md

/// `text` with `body` between its lines `begin` and `end`: the old text between them
/// replaced, followed by one blank line if anything follows; if `text` lacks the markers,
/// the section appended after one blank line.
pub fn splice_section(text: &str, begin: &str, end: &str, body: &str) -> String {
    let block = format!("{begin}\n{body}{end}\n");
    match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) if e > b => {
            let after = text[e + end.len()..].trim_start_matches('\n');
            format!("{}{block}{}{after}", &text[..b], if after.is_empty() { "" } else { "\n" })
        }
        _ => match text.trim_end_matches('\n') {
            "" => block,
            before => format!("{before}\n\n{block}"),
        },
    }
}

/// Puts `body` between the marker lines `begin` and `end` of the file `path` (see
/// [`splice_section`]); the rest of the file is left as it is. A file that does not exist
/// is created from `new_file` followed by the section, or is an error if `new_file` is
/// `None`.
pub fn write_section(
    path: &Path,
    begin: &str,
    end: &str,
    body: &str,
    new_file: Option<&str>,
) -> std::io::Result<()> {
    let text = match (std::fs::read_to_string(path), new_file) {
        (Ok(t), _) => t,
        (Err(e), Some(start)) if e.kind() == std::io::ErrorKind::NotFound => start.to_string(),
        (Err(e), _) => return Err(e),
    };
    std::fs::write(path, splice_section(&text, begin, end, body))
}

/// The environment variable naming a directory where each harness also saves its raw
/// results as `NAME.json` (the charts script reads them); unset, nothing is saved.
pub const DATA_ENV: &str = "ETERNA_BENCH_DATA";

/// Saves `data` as `$ETERNA_BENCH_DATA/NAME.json` when that variable is set.
pub fn save_data(name: &str, data: &Value) {
    let Some(dir) = std::env::var_os(DATA_ENV) else { return };
    let path = Path::new(&dir).join(format!("{name}.json"));
    let result = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, data.to_string()));
    if let Err(e) = result {
        eprintln!("cannot save {}: {e}", path.display());
    }
}
