//! The workloads of the benchmark list, written once and run against eterna and against
//! each peer. `eterna bench WORKLOAD` runs eterna's side; the harness binaries run the
//! peers in their own processes (each Rust allocator needs its own binary).

pub mod churn;
pub mod frag;
pub mod gcbench;
pub mod harness;
pub mod peer;
pub mod procmem;
pub mod report;
pub mod rng;
pub mod rustops;
pub mod shared;
