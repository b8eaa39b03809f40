//! Space of nodes replaced by a path copy is reused: overwriting one key 1,000,000 times,
//! one committed transaction each, leaves the file within 2x of its size after the first
//! write, with other data around it.

use eterna::{Durability, Heap, Input, Key, Options};

#[test]
fn overwriting_one_key_a_million_times_reuses_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = Heap::open(&path, Options { durability: Durability::None, ..Options::default() }).unwrap();
    let mut w = heap.write().unwrap();
    for i in 0..2000i64 {
        w.set(&[Key::Int(i)], &Input::Str(format!("neighbour {i} with some text"))).unwrap();
    }
    w.commit().unwrap();
    let key = [Key::from("hot")];
    let value = |i: i64| Input::Str(format!("value of the hot key, version {i}"));
    let mut w = heap.write().unwrap();
    w.set(&key, &value(0)).unwrap();
    w.commit().unwrap();
    let first = heap.stats().unwrap();
    for i in 1..1_000_000 {
        let mut w = heap.write().unwrap();
        w.set(&key, &value(i)).unwrap();
        w.commit().unwrap();
    }
    let last = heap.stats().unwrap();
    println!(
        "after the first write: {} bytes in the file, {} on disk, {} blocks; after 1M: {}, {}, {}",
        first.file_bytes,
        first.disk_bytes,
        first.blocks_live,
        last.file_bytes,
        last.disk_bytes,
        last.blocks_live
    );
    assert!(last.file_bytes <= 2 * first.file_bytes);
    assert!(last.disk_bytes <= 2 * first.disk_bytes);
    // Live blocks: the data, plus at most one transaction's worth waiting for reuse.
    assert!(last.blocks_live <= first.blocks_live + 16, "{} vs {}", last.blocks_live, first.blocks_live);
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}
