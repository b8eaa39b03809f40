//! `cargo bench -p eterna-bench --bench alloc [-- --quick | --n N | --runs R | --write PATH]`:
//! the allocator harness of `bench-alloc`, on the peer binaries Cargo built for this bench.

use eterna_bench::harness::{self, Peers};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let peers = Peers([
        PathBuf::from(env!("CARGO_BIN_EXE_peer-eterna")),
        PathBuf::from(env!("CARGO_BIN_EXE_peer-system")),
        PathBuf::from(env!("CARGO_BIN_EXE_peer-mimalloc")),
        PathBuf::from(env!("CARGO_BIN_EXE_peer-jemalloc")),
        harness::cpython_peer(),
    ]);
    harness::main(&args, &peers, "cargo bench -p eterna-bench --bench alloc --")
}
