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
