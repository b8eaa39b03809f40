//! One workload run on jemalloc as the global allocator; prints one JSON object.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    eterna_bench::peer::main_global("peer-jemalloc", "jemalloc")
}
