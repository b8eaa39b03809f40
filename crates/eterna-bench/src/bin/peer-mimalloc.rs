//! One workload run on mimalloc as the global allocator; prints one JSON object.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    eterna_bench::peer::main_global("peer-mimalloc", "mimalloc")
}
