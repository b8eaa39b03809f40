//! The churn workload (Evan Jones' worst case for pymalloc): allocate N small records,
//! free them all, allocate N again; time it and watch what memory comes back in between.

use crate::frag::pct;
use crate::procmem::{peak_rss_kib, rss_kib, Series};
use eterna::Allocator;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// The size of every record, in bytes: a small Python object (a float is 24 bytes, a short
/// str 50 to 90, a small tuple 56 to 64).
pub const RECORD: usize = 64;

/// The default number of records.
pub const DEFAULT_N: usize = 1_000_000;

/// What one allocator needs to take part: allocate a record (and touch its first 8
/// bytes, as a program storing data would) and free one.
trait Records {
    type Handle;
    fn alloc(&mut self, tag: u64) -> Result<Self::Handle, Box<dyn std::error::Error>>;
    fn free(&mut self, h: Self::Handle) -> Result<(), Box<dyn std::error::Error>>;
    /// An explicit pass giving memory back, timed with the frees; none by default.
    fn give_back(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        Ok(())
    }
    /// Bytes on disk in KiB, for allocators with a file.
    fn disk_kib(&self) -> Result<Option<u64>, Box<dyn std::error::Error>> {
        Ok(None)
    }
}

/// Timings and RSS (in KiB above the baseline) of the three phases.
struct Phases {
    alloc1_s: f64,
    free_s: f64,
    alloc2_s: f64,
    rss_full: u64,
    rss_freed: u64,
    rss_again: u64,
    peak: u64,
    /// Disk in KiB after each phase, for eterna.
    disk: Option<[u64; 3]>,
    /// RSS through the three phases.
    series: Series,
}

/// Runs the three phases, reading RSS (and disk) after each, untimed.
fn phases<R: Records>(r: &mut R, n: usize) -> Result<Phases, Box<dyn std::error::Error>> {
    let mut hs: Vec<Option<R::Handle>> = Vec::with_capacity(n);
    // Two passes over the bookkeeping vector so that its pages are resident before the
    // baseline is read.
    hs.resize_with(n, || None);
    let base = rss_kib();
    let mut series = Series::new(3 * n as u64, base);

    let t = Instant::now();
    for (i, h) in hs.iter_mut().enumerate() {
        *h = Some(r.alloc(i as u64)?);
        series.tick();
    }
    let alloc1_s = t.elapsed().as_secs_f64();
    let rss_full = rss_kib().saturating_sub(base);
    let disk_full = r.disk_kib()?;

    let t = Instant::now();
    for h in hs.iter_mut() {
        if let Some(h) = h.take() {
            r.free(h)?;
        }
        series.tick();
    }
    r.give_back()?;
    let free_s = t.elapsed().as_secs_f64();
    let rss_freed = rss_kib().saturating_sub(base);
    let disk_freed = r.disk_kib()?;

    let t = Instant::now();
    for (i, h) in hs.iter_mut().enumerate() {
        *h = Some(r.alloc(i as u64)?);
        series.tick();
    }
    let alloc2_s = t.elapsed().as_secs_f64();
    let rss_again = rss_kib().saturating_sub(base);
    let peak = peak_rss_kib().saturating_sub(base);
    let disk_again = r.disk_kib()?;
    for h in hs.iter_mut() {
        if let Some(h) = h.take() {
            r.free(h)?;
        }
    }
    Ok(Phases {
        alloc1_s,
        free_s,
        alloc2_s,
        rss_full,
        rss_freed,
        rss_again,
        peak,
        disk: match (disk_full, disk_freed, disk_again) {
            (Some(a), Some(b), Some(c)) => Some([a, b, c]),
            _ => None,
        },
        series,
    })
}

impl Phases {
    fn json(&self, allocator: &str, n: usize) -> Value {
        let total = self.alloc1_s + self.free_s + self.alloc2_s;
        let mut v = json!({
            "workload": "churn",
            "allocator": allocator,
            "n": n,
            "record_bytes": RECORD,
            "alloc1_seconds": self.alloc1_s,
            "free_seconds": self.free_s,
            "alloc2_seconds": self.alloc2_s,
            "total_seconds": total,
            "ops_per_sec": (3 * n) as f64 / total,
            "rss_full_kib": self.rss_full,
            "rss_after_kib": self.rss_freed,
            "rss_again_kib": self.rss_again,
            "rss_returned_pct": pct(self.rss_full, self.rss_freed),
            "peak_rss_kib": self.peak,
            "series": self.series.json(),
        });
        if let Some(d) = self.disk {
            v["disk_full_kib"] = json!(d[0]);
            v["disk_after_kib"] = json!(d[1]);
            v["disk_again_kib"] = json!(d[2]);
            v["disk_returned_pct"] = json!(pct(d[0], d[1]));
        }
        v
    }
}

struct Global {
    sum: u64,
}

impl Records for Global {
    type Handle = Box<[u8]>;
    fn alloc(&mut self, tag: u64) -> Result<Box<[u8]>, Box<dyn std::error::Error>> {
        let mut b = vec![0u8; RECORD].into_boxed_slice();
        b[..8].copy_from_slice(&tag.to_le_bytes());
        Ok(b)
    }
    fn free(&mut self, h: Box<[u8]>) -> Result<(), Box<dyn std::error::Error>> {
        self.sum = self.sum.wrapping_add(h[0] as u64);
        drop(h);
        Ok(())
    }
}

/// Runs the workload on the process's global allocator; `allocator` names it in the
/// result. `peak_rss_kib` is meaningful only in a fresh process.
pub fn run_global(n: usize, allocator: &str) -> Value {
    let mut g = Global { sum: 0 };
    let p = phases(&mut g, n).expect("the global allocator does not fail");
    let mut v = p.json(allocator, n);
    v["checksum"] = json!(g.sum);
    v
}

struct Heap {
    heap: Allocator,
}

impl Records for Heap {
    type Handle = u64;
    fn alloc(&mut self, tag: u64) -> Result<u64, Box<dyn std::error::Error>> {
        let off = self.heap.alloc(RECORD)?;
        self.heap.bytes_mut(off, 8)?.copy_from_slice(&tag.to_le_bytes());
        Ok(off)
    }
    fn free(&mut self, off: u64) -> Result<(), Box<dyn std::error::Error>> {
        self.heap.free(off)?;
        Ok(())
    }
    fn give_back(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        self.heap.release()?;
        Ok(())
    }
    fn disk_kib(&self) -> Result<Option<u64>, Box<dyn std::error::Error>> {
        Ok(Some(self.heap.stats()?.disk_bytes / 1024))
    }
}

/// Runs the workload on an eterna heap file at `path` (which must not exist). The free
/// phase includes one explicit release pass; no phase includes a flush (msync), which is
/// timed apart as `flush_seconds` after the end. Disk figures are `st_blocks` of the file.
/// `peak_rss_kib` is meaningful only in a fresh process.
pub fn run_eterna(n: usize, path: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let mut h = Heap { heap: Allocator::create(path)? };
    let p = phases(&mut h, n)?;
    let t = Instant::now();
    h.heap.flush()?;
    let flush_s = t.elapsed().as_secs_f64();
    h.heap.verify()?;
    let stats = h.heap.stats()?;
    h.heap.close()?;
    let mut v = p.json("eterna", n);
    v["flush_seconds"] = json!(flush_s);
    v["blocks_live_at_end"] = json!(stats.blocks_live);
    Ok(v)
}
