//! The fragmentation workload (pymalloc's experiment): allocate N blocks of string-like
//! sizes, free a random half, the first half, or all but 47, and measure what comes back.

use crate::procmem::{peak_rss_kib, rss_kib, Series};
use crate::rng::Rng;
use eterna::Allocator;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// Which blocks survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Each block survives with probability 1/2.
    Random,
    /// The first half (in allocation order) is freed.
    Prefix,
    /// All but 47 blocks, spread evenly, are freed.
    Keep47,
}

impl Pattern {
    /// Parses `random`, `prefix` or `keep47`.
    pub fn parse(s: &str) -> Option<Pattern> {
        match s {
            "random" => Some(Pattern::Random),
            "prefix" => Some(Pattern::Prefix),
            "keep47" => Some(Pattern::Keep47),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Random => "random",
            Pattern::Prefix => "prefix",
            Pattern::Keep47 => "keep47",
        }
    }

    /// Whether block `i` of `n` survives; `rng` is consulted for `Random` only.
    pub fn keeps(self, i: usize, n: usize, rng: &mut Rng) -> bool {
        match self {
            Pattern::Random => rng.below(2) == 0,
            Pattern::Prefix => i >= n / 2,
            Pattern::Keep47 => i % (n / 47).max(1) == 0 && i / (n / 47).max(1) < 47,
        }
    }
}

/// The sizes of the N blocks, the same for every allocator.
pub fn sizes(n: usize) -> Vec<usize> {
    let mut rng = Rng::new(1);
    (0..n).map(|_| rng.string_size()).collect()
}

/// The share of `before` that is gone in `after`, in per cent.
pub fn pct(before: u64, after: u64) -> f64 {
    if before == 0 {
        0.0
    } else {
        100.0 * before.saturating_sub(after) as f64 / before as f64
    }
}

/// Runs the workload on an eterna heap file at `path` (which must not exist) and returns
/// the result object of `eterna bench fragmentation --json`.
///
/// The timed phases cover `alloc`, `free` and the release pass that gives memory back;
/// the two `flush`es (msync of the file, for durability) are timed apart as
/// `flush_seconds`. `peak_rss_kib` is meaningful only in a fresh process (`VmHWM` is
/// process-wide).
pub fn run_eterna(pattern: Pattern, n: usize, path: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let sizes = sizes(n);
    // Filled with a non-zero value so that its pages are resident before the baseline.
    let mut offs = vec![u64::MAX; n];
    let base_rss = rss_kib();
    let mut series = Series::new(2 * n as u64, base_rss);
    let mut heap = Allocator::create(path)?;
    let t = Instant::now();
    for (o, &s) in offs.iter_mut().zip(&sizes) {
        *o = heap.alloc(s)?;
        // Touch the block as a program storing a string would.
        heap.bytes_mut(*o, 8)?.copy_from_slice(&(s as u64).to_le_bytes());
        series.tick();
    }
    let alloc_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    heap.flush()?;
    let mut flush_s = t.elapsed().as_secs_f64();
    let before = heap.stats()?;
    let full_rss = rss_kib();

    let mut rng = Rng::new(2);
    let mut kept = 0;
    let t = Instant::now();
    for (i, &o) in offs.iter().enumerate() {
        if pattern.keeps(i, n, &mut rng) {
            kept += 1;
        } else {
            heap.free(o)?;
        }
        series.tick();
    }
    heap.release()?;
    let free_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    heap.flush()?;
    flush_s += t.elapsed().as_secs_f64();
    let after = heap.stats()?;
    let after_rss = rss_kib();
    let peak_rss = peak_rss_kib().saturating_sub(base_rss);
    heap.verify()?;
    heap.close()?;
    let parse = |s: String| serde_json::from_str::<Value>(&s);
    let ops = (n + (n - kept)) as f64;
    Ok(json!({
        "workload": "fragmentation",
        "allocator": "eterna",
        "pattern": pattern.name(),
        "n": n,
        "kept": kept,
        "before": parse(before.to_json())?,
        "after": parse(after.to_json())?,
        "disk_full_kib": before.disk_bytes / 1024,
        "disk_after_kib": after.disk_bytes / 1024,
        "disk_returned_pct": pct(before.disk_bytes, after.disk_bytes),
        "arenas_reclaimed_pct": pct(before.arenas_current, after.arenas_current),
        "rss_full_kib": full_rss.saturating_sub(base_rss),
        "rss_after_kib": after_rss.saturating_sub(base_rss),
        "rss_returned_pct": pct(full_rss.saturating_sub(base_rss), after_rss.saturating_sub(base_rss)),
        "peak_rss_kib": peak_rss,
        "alloc_seconds": alloc_s,
        "free_seconds": free_s,
        "flush_seconds": flush_s,
        "ops_per_sec": ops / (alloc_s + free_s),
        "series": series.json(),
    }))
}

/// Runs the workload on the process's global allocator (glibc malloc, mimalloc or
/// jemalloc, whichever the binary installed) and returns a result object with the same
/// RSS and timing keys as [`run_eterna`]. Blocks are `Box<[u8]>` of the same sizes, each
/// touched the same way.
pub fn run_global(pattern: Pattern, n: usize, allocator: &str) -> Value {
    let sizes = sizes(n);
    let mut blocks: Vec<Option<Box<[u8]>>> = Vec::with_capacity(n);
    blocks.resize_with(n, || None);
    let base_rss = rss_kib();
    let mut series = Series::new(2 * n as u64, base_rss);
    let t = Instant::now();
    for (b, &s) in blocks.iter_mut().zip(&sizes) {
        let mut v = vec![0u8; s].into_boxed_slice();
        v[..8].copy_from_slice(&(s as u64).to_le_bytes());
        *b = Some(v);
        series.tick();
    }
    let alloc_s = t.elapsed().as_secs_f64();
    let full_rss = rss_kib();
    let mut rng = Rng::new(2);
    let mut kept = 0;
    let t = Instant::now();
    for (i, b) in blocks.iter_mut().enumerate() {
        if pattern.keeps(i, n, &mut rng) {
            kept += 1;
        } else {
            *b = None;
        }
        series.tick();
    }
    let free_s = t.elapsed().as_secs_f64();
    let after_rss = rss_kib();
    let peak_rss = peak_rss_kib().saturating_sub(base_rss);
    let checksum: u64 = blocks.iter().flatten().map(|b| b[0] as u64).sum();
    json!({
        "workload": "fragmentation",
        "allocator": allocator,
        "pattern": pattern.name(),
        "n": n,
        "kept": kept,
        "checksum": checksum,
        "rss_full_kib": full_rss.saturating_sub(base_rss),
        "rss_after_kib": after_rss.saturating_sub(base_rss),
        "rss_returned_pct": pct(full_rss.saturating_sub(base_rss), after_rss.saturating_sub(base_rss)),
        "alloc_seconds": alloc_s,
        "free_seconds": free_s,
        "peak_rss_kib": peak_rss,
        "ops_per_sec": (n + (n - kept)) as f64 / (alloc_s + free_s),
        "series": series.json(),
    })
}
