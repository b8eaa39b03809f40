//! The body of the `peer-*` binaries: parse `fragmentation --pattern P --n N` or
//! `churn --n N`, run that workload once on one allocator, print one JSON object.

use crate::{churn, frag};
use serde_json::Value;
use std::process::ExitCode;

/// One workload run, as the peer binaries take it on their command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `fragmentation --pattern P --n N`.
    Fragmentation(frag::Pattern, usize),
    /// `churn --n N`.
    Churn(usize),
}

impl Workload {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> Result<Workload, String> {
        let mut n = None;
        let mut pattern = None;
        let mut it = args.iter().skip(1);
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--n" => n = Some(value()?.parse().map_err(|e| format!("--n: {e}"))?),
                "--pattern" => {
                    let v = value()?;
                    pattern = Some(frag::Pattern::parse(v).ok_or(format!("unknown pattern {v:?}"))?)
                }
                _ => return Err(format!("unexpected argument {a:?}")),
            }
        }
        match args.first().map(String::as_str) {
            Some("fragmentation") => {
                Ok(Workload::Fragmentation(pattern.unwrap_or(frag::Pattern::Random), n.unwrap_or(1_000_000)))
            }
            Some("churn") if pattern.is_none() => Ok(Workload::Churn(n.unwrap_or(churn::DEFAULT_N))),
            Some("churn") => Err("churn takes no --pattern".into()),
            _ => Err("the workload must be `fragmentation` or `churn`".into()),
        }
    }

    /// The arguments [`parse`](Self::parse) reads back.
    pub fn args(self) -> Vec<String> {
        match self {
            Workload::Fragmentation(p, n) => {
                vec!["fragmentation".into(), "--pattern".into(), p.name().into(), "--n".into(), n.to_string()]
            }
            Workload::Churn(n) => vec!["churn".into(), "--n".into(), n.to_string()],
        }
    }
}

fn usage(program: &str, err: &str) -> ExitCode {
    eprintln!(
        "{program}: {err}\nusage: {program} fragmentation --pattern random|prefix|keep47 --n N\n       \
         {program} churn --n N"
    );
    ExitCode::from(2)
}

fn finish(r: Result<Value, Box<dyn std::error::Error>>, program: &str) -> ExitCode {
    match r {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `main` of binary `program`, which installed `allocator` (a name for the report) as its
/// global allocator.
pub fn main_global(program: &str, allocator: &str) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w = match Workload::parse(&args) {
        Ok(w) => w,
        Err(e) => return usage(program, &e),
    };
    let v = match w {
        Workload::Fragmentation(p, n) => frag::run_global(p, n, allocator),
        Workload::Churn(n) => churn::run_global(n, allocator),
    };
    finish(Ok(v), program)
}

/// `main` of `peer-eterna`: the heap file lives in a temporary directory (under `$TMPDIR`)
/// removed at the end.
pub fn main_eterna() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w = match Workload::parse(&args) {
        Ok(w) => w,
        Err(e) => return usage("peer-eterna", &e),
    };
    let run = || -> Result<Value, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.eterna");
        match w {
            Workload::Fragmentation(p, n) => frag::run_eterna(p, n, &path),
            Workload::Churn(n) => churn::run_eterna(n, &path),
        }
    };
    finish(run(), "peer-eterna")
}
