//! `bench-gc`: the `gc` benchmark. Traces N objects in an eterna heap and runs CPython's
//! `gc.collect()` over N containers in the same run; reports time per object, metadata per
//! object and object pages written. `--write BENCHMARKS.md` rewrites the text between the
//! `bench-gc` markers.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    eterna_bench::gcbench::main(&args)
}
