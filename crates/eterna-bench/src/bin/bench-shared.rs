//! `bench-shared`: the `shared-read` benchmark. N str→str entries built once; R = 1, 2, 4, 8
//! reader processes each read all of them; per-reader `Private_Dirty` and `Pss` from
//! `/proc/PID/smaps_rollup` for eterna, CPython fork of a dict (plain and `gc.freeze()`),
//! `multiprocessing.Manager().dict()` and py-lmdb. Re-executes itself as eterna's builder
//! (`--build PATH`) and readers (`--reader PATH`); `--write BENCHMARKS.md` rewrites the text
//! between the `bench-shared` markers.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    eterna_bench::shared::main(&args)
}
