//! Memory and disk come back: the pymalloc fragmentation experiment at allocator level,
//! on a real file. Bounds from the foundation issue: freeing the first half of 1M small
//! blocks reclaims at least 45 % of the arenas and drops `st_blocks` by at least 40 %;
//! freeing everything leaves at most two arenas' worth of the file on disk.

use eterna::format::ARENA;
use eterna::{Access, Allocator};

/// splitmix64: a small deterministic generator, so every run sees the same sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A size like a short Python string object's: 24 to 88 bytes.
    fn string_size(&mut self) -> usize {
        24 + (self.next() % 65) as usize
    }
}

#[test]
fn first_half_and_all_freed_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let mut heap = Allocator::create(&path).unwrap();
    let mut rng = Rng(1);
    let n = 1_000_000;
    let offs: Vec<u64> = (0..n).map(|_| heap.alloc(rng.string_size()).unwrap()).collect();
    heap.flush().unwrap();
    let full = heap.stats().unwrap();
    println!("full: arenas {} disk {} MiB", full.arenas_current, full.disk_bytes >> 20);
    assert_eq!(full.blocks_live, n as u64);

    for &o in &offs[..n / 2] {
        heap.free(o).unwrap();
    }
    heap.flush().unwrap();
    let half = heap.stats().unwrap();
    let reclaimed = half.arenas_reclaimed as f64 / full.arenas_current as f64;
    let disk_drop = 1.0 - half.disk_bytes as f64 / full.disk_bytes as f64;
    println!(
        "first half freed: {} of {} arenas reclaimed ({:.1} %), disk {} -> {} MiB ({:.1} % returned)",
        half.arenas_reclaimed,
        full.arenas_current,
        100.0 * reclaimed,
        full.disk_bytes >> 20,
        half.disk_bytes >> 20,
        100.0 * disk_drop
    );
    assert!(reclaimed >= 0.45, "reclaimed {reclaimed}");
    assert!(disk_drop >= 0.40, "disk dropped {disk_drop}");
    heap.verify().unwrap();

    for &o in &offs[n / 2..] {
        heap.free(o).unwrap();
    }
    heap.flush().unwrap();
    let empty = heap.stats().unwrap();
    println!("all freed: disk {} KiB, arenas current {}", empty.disk_bytes >> 10, empty.arenas_current);
    assert_eq!(empty.blocks_live, 0);
    assert!(empty.disk_bytes <= 2 * ARENA, "disk {}", empty.disk_bytes);
    heap.verify().unwrap();
    heap.close().unwrap();

    // The state survives a reopen, counters included.
    let again = Allocator::open(&path, Access::ReadOnly).unwrap();
    let s = again.stats().unwrap();
    assert_eq!(s.arenas_reclaimed, empty.arenas_reclaimed);
    assert_eq!(s.arenas_allocated_total, empty.arenas_allocated_total);
    assert_eq!(s.blocks_live, 0);
    again.verify().unwrap();
}
