//! This process's memory as the kernel reports it.

use std::fs;

fn field_kib(file: &str, key: &str) -> u64 {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident set size now, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    field_kib("/proc/self/status", "VmRSS:")
}

/// Peak resident set size, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    field_kib("/proc/self/status", "VmHWM:")
}

/// Private dirty memory, in KiB, from `/proc/self/smaps_rollup`.
pub fn private_dirty_kib() -> u64 {
    field_kib("/proc/self/smaps_rollup", "Private_Dirty:")
}

/// Resident memory sampled while a workload runs, for memory-over-time charts: about 100
/// points per `ops` operations, each `[operations so far, RSS in KiB above a baseline]`.
/// A sample reads `/proc/self/status` (a few microseconds), so sampling adds well under
/// 1 % to a phase of a million operations.
#[derive(Debug, Clone)]
pub struct Series {
    every: u64,
    base: u64,
    op: u64,
    points: Vec<[u64; 2]>,
}

impl Series {
    /// A series for a run of about `ops` operations above `base` KiB.
    pub fn new(ops: u64, base: u64) -> Series {
        Series { every: (ops / 100).max(1), base, op: 0, points: vec![[0, 0]] }
    }

    /// Counts one operation, sampling every `ops / 100`.
    #[inline]
    pub fn tick(&mut self) {
        self.op += 1;
        if self.op % self.every == 0 {
            self.points.push([self.op, rss_kib().saturating_sub(self.base)]);
        }
    }

    /// The points as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!(self.points)
    }
}
