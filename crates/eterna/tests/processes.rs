//! Real processes: a reader maps the heap, another process grows it, and the reader's
//! mapping is extended to see the new data.

use eterna::region::{Access as RegionAccess, Region};
use eterna::{Access, Allocator};
use std::process::Command;

const CHILD: &str = "ETERNA_TEST_CHILD_PATH";

/// Run in a child process: grows the heap by several arenas, stamps each block with its
/// own offset, and prints the offsets.
fn child(path: &str) {
    let mut heap = Allocator::open(path.as_ref(), Access::ReadWrite).unwrap();
    let mut offs = Vec::new();
    for _ in 0..40_000 {
        let o = heap.alloc(200).unwrap();
        heap.bytes_mut(o, 8).unwrap().copy_from_slice(&o.to_le_bytes());
        offs.push(o);
    }
    let big = heap.alloc(3 << 20).unwrap();
    heap.bytes_mut(big, 8).unwrap().copy_from_slice(&big.to_le_bytes());
    offs.push(big);
    heap.close().unwrap();
    // libtest may have printed the test's name on this line already: start a new one.
    println!("\nOFFSETS {}", offs.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(","));
}

#[test]
fn growth_by_another_process_extends_the_mapping() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    Allocator::create(&path).unwrap().close().unwrap();
    let mut reader = Region::open(&path, RegionAccess::ReadOnly).unwrap();
    let before = reader.len();

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "growth_by_another_process_extends_the_mapping", "--nocapture", "--test-threads=1"])
        .env(CHILD, &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let offs: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.split_once("OFFSETS ").map(|(_, rest)| rest))
        .expect("child printed its offsets")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();

    // The reader still sees the old length and cannot read past it...
    let last = *offs.last().unwrap();
    assert!(last >= before);
    assert!(reader.bytes(last, 8).is_err());
    // ...until it refreshes: then every block the child wrote is visible.
    assert!(reader.refresh().unwrap());
    assert!(reader.len() > before + (10 << 20));
    for &o in &offs {
        assert_eq!(reader.u64_at(o).unwrap(), o);
    }
}
