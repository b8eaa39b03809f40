//! One workload run on the system allocator (glibc malloc on Linux); prints one JSON object.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() -> ExitCode {
    eterna_bench::peer::main_global("peer-system", "glibc")
}
