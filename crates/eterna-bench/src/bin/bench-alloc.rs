//! `bench-alloc`: runs the allocator-level workloads (fragmentation, churn) on eterna,
//! glibc malloc, mimalloc and jemalloc, each run in a fresh `peer-*` process found next to
//! this executable; prints medians and optionally writes them into BENCHMARKS.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bins = match std::env::current_exe() {
        Ok(exe) => eterna_bench::harness::Peers::next_to(&exe),
        Err(e) => {
            eprintln!("bench-alloc: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    eterna_bench::harness::main(&args, &bins, "target/release/bench-alloc")
}
