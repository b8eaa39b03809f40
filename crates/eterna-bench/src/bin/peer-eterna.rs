//! One workload run on an eterna heap file in a temporary directory; prints one JSON
//! object. The process's own allocations go to the system allocator (glibc malloc).

use std::process::ExitCode;

fn main() -> ExitCode {
    eterna_bench::peer::main_eterna()
}
