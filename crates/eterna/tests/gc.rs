//! The collector and compaction on real files: shared garbage is found and freed, a
//! collection writes no object page, readers of an old snapshot read right through a
//! compaction, and the pymalloc fragmentation experiment (1M small strings in a list)
//! gives disk and resident memory back: a random half deleted then compacted, all but 47
//! deleted then compacted, the first half deleted and only collected.

mod common;

use common::mix;
use eterna::check::check;
use eterna::{Access, Allocator, Durability, Heap, Input, Key, Options, Value};
use std::collections::HashMap;
use std::path::Path;

fn k(s: &str) -> Key<'_> {
    Key::Str(s.into())
}

fn open(path: &Path) -> Heap {
    Heap::open(path, Options { durability: Durability::None, auto_compact: false, ..Options::default() })
        .unwrap()
}

/// A heap whose every commit is fully synced, which also writes the writer's pool records
/// back: the file's side metadata is then exact after each commit, for tests that read it
/// while the heap is open.
fn open_exact(path: &Path) -> Heap {
    Heap::open(path, Options { durability: Durability::Full, auto_compact: false, ..Options::default() })
        .unwrap()
}

fn assert_clean(path: &Path) -> eterna::check::Report {
    check(path).unwrap_or_else(|e| panic!("check failed: {e}"))
}

fn text(v: Result<Value<'_>, eterna::Corruption>) -> String {
    match v.unwrap() {
        Value::Str(s) => s.as_str().to_string(),
        other => panic!("not a str: {other:?}"),
    }
}

/// A string of 8 to 60 bytes (a heap object, not an inline word), different for every i.
fn string(i: u64, seed: &mut u64) -> String {
    let len = 8 + (mix(seed) % 53) as usize;
    let mut s = format!("{i:08}-");
    while s.len() < len {
        s.push((b'a' + (mix(seed) % 26) as u8) as char);
    }
    s
}

#[test]
fn shared_garbage_is_collected_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = open(&path);
    let big: Vec<Input> = (0..2000).map(|i| Input::Str(format!("shared value number {i}"))).collect();
    let mut w = heap.write().unwrap();
    w.set(&[k("a")], &Input::List(big)).unwrap();
    w.set(&[k("keep")], &Input::Str("still here after the collection".into())).unwrap();
    let a = w.share(&[k("a")]).unwrap().unwrap();
    w.set(&[k("b")], &a).unwrap();
    w.commit().unwrap();
    // Deleting both places leaves the list to the collector: path copies never free a
    // shared object.
    let mut w = heap.write().unwrap();
    w.del(&[k("a")]).unwrap();
    w.del(&[k("b")]).unwrap();
    w.commit().unwrap();
    drop(heap);
    let before = assert_clean(&path);
    assert!(before.unreachable_blocks > 2000, "the dropped list stays allocated: {before:?}");

    let heap = open(&path);
    let report = heap.gc().unwrap();
    assert!(report.garbage_blocks >= before.unreachable_blocks, "{report:?}");
    assert_eq!(report.shared_dropped, 1);
    assert_eq!(report.blocks_deferred, 0);
    assert_eq!(heap.stats().unwrap().gc_collections, 1);
    let snap = heap.read().unwrap();
    match snap.get(&[k("keep")]).unwrap() {
        Some(Value::Str(s)) => assert_eq!(s.as_str(), "still here after the collection"),
        other => panic!("lost a live value: {other:?}"),
    }
    drop(snap);
    drop(heap);
    let after = assert_clean(&path);
    assert_eq!(after.unreachable_blocks, 0, "{after:?}");
    // A second collection finds nothing.
    let heap = open(&path);
    assert_eq!(heap.gc().unwrap().garbage_blocks, 0);
}

/// xxh3 of every 4 KiB page of the data arenas outside their first 16 KiB (where the side
/// metadata lives).
fn object_pages(path: &Path) -> HashMap<u64, u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = HashMap::new();
    for (i, page) in bytes.chunks(4096).enumerate() {
        let off = i as u64 * 4096;
        if off < eterna::format::ARENA || off % eterna::format::ARENA < 16384 {
            continue;
        }
        out.insert(off, xxhash_rust::xxh3::xxh3_64(page));
    }
    out
}

#[test]
fn a_collection_writes_no_object_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = open_exact(&path);
    let mut w = heap.write().unwrap();
    for i in 0..50 {
        let items: Vec<Input> = (0..200).map(|j| Input::Str(format!("list {i} item {j}"))).collect();
        w.set(&[k(&format!("l{i}"))], &Input::List(items)).unwrap();
        if i % 2 == 0 {
            let s = w.share(&[k(&format!("l{i}"))]).unwrap().unwrap();
            w.set(&[k(&format!("copy{i}"))], &s).unwrap();
        }
    }
    w.commit().unwrap();
    let mut w = heap.write().unwrap();
    for i in (0..50).step_by(2) {
        w.del(&[k(&format!("l{i}"))]).unwrap();
        if i % 4 == 0 {
            w.del(&[k(&format!("copy{i}"))]).unwrap();
        }
    }
    w.commit().unwrap();
    // A snapshot pins this state, so nothing replaced after it (by the next commit or the
    // collection) is freed or punched: every page that changes can only have been written.
    // What the deletions replaced waits to be freed in a batch (docs/design.md, "Reuse in
    // batches"); nothing pins it, so the collection may free it.
    let pin = heap.read().unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("tick")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    let live_before = Allocator::open(&path, Access::ReadOnly).unwrap().live_blocks().unwrap();
    let pages_before = object_pages(&path);
    let report = heap.gc().unwrap();
    assert!(report.garbage_blocks > 13 * 200, "{report:?}");
    assert!(report.blocks_deferred >= report.garbage_blocks, "{report:?}");
    let pages_after = object_pages(&path);
    let live_after = Allocator::open(&path, Access::ReadOnly).unwrap().live_blocks().unwrap();
    let after: std::collections::HashSet<u64> = live_after.iter().map(|b| b.0).collect();
    let before: std::collections::HashSet<u64> = live_before.iter().map(|b| b.0).collect();
    let pages_of = |blocks: &mut dyn Iterator<Item = &(u64, u64)>| {
        let mut pages = std::collections::HashSet::new();
        for &(off, size) in blocks {
            for p in (off / 4096)..(off + size).div_ceil(4096) {
                pages.insert(p * 4096);
            }
        }
        pages
    };
    // Object pages: those holding a block allocated before the collection and still
    // allocated after it, which includes every block the pinned snapshot can read and all
    // the garbage the collection found (deferred, because the snapshot pins it). Blocks
    // that the last commits replaced and no reader pins may be freed by the collection
    // (it releases waiting blocks) and their pools punched: those pages may change.
    // (Pages of empty spare pools hold stale bytes until a release pass punches them.)
    let holding = pages_of(&mut live_before.iter().filter(|b| after.contains(&b.0)));
    assert!(holding.len() > 20, "only {} object pages to watch", holding.len());
    // Blocks the collection's commit created (the pruned shared set) are the only writes.
    let written_by_commit = pages_of(&mut live_after.iter().filter(|b| !before.contains(&b.0)));
    let changed: Vec<u64> = pages_before
        .iter()
        .filter(|(off, sum)| {
            holding.contains(off) && pages_after.get(off) != Some(sum) && !written_by_commit.contains(off)
        })
        .map(|(off, _)| *off)
        .collect();
    assert!(
        changed.is_empty(),
        "the collection wrote {} object pages: {changed:x?} ({report:?})",
        changed.len()
    );
    assert!(written_by_commit.len() <= 4, "the new shared set took {} pages", written_by_commit.len());
    // The pinned snapshot still reads every list it could see.
    for i in 0..50 {
        let name = if i % 2 == 0 { format!("copy{i}") } else { format!("l{i}") };
        if i % 4 == 0 {
            continue;
        }
        match pin.get(&[k(&name), Key::Int(199)]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), format!("list {i} item 199")),
            other => panic!("{name}: {other:?}"),
        }
    }
    drop(pin);
    drop(heap);
    assert_clean(&path);
}

#[test]
fn readers_of_an_old_snapshot_read_through_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = open(&path);
    let mut seed = 7;
    let n = 20_000u64;
    let items: Vec<Input> = (0..n).map(|i| Input::Str(string(i, &mut seed))).collect();
    let mut w = heap.write().unwrap();
    w.set(&[k("l")], &Input::List(items)).unwrap();
    w.set(
        &[k("d")],
        &Input::Dict((0..1000).map(|i| (Input::Int(i), Input::Str(format!("value {i:06}")))).collect()),
    )
    .unwrap();
    w.commit().unwrap();
    // Delete every other item: every pool half empty.
    let mut w = heap.write().unwrap();
    for i in (0..n).rev().step_by(2) {
        w.splice(&[k("l")], i, 1, &[]).unwrap();
    }
    w.commit().unwrap();
    let old = heap.read().unwrap();
    let expect: Vec<String> = match old.get(&[k("l")]).unwrap() {
        Some(Value::List(l)) => l.iter().unwrap().map(text).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(expect.len() as u64, n / 2);
    let report = heap.compact().unwrap();
    assert!(report.moved_blocks >= n / 2, "{report:?}");
    assert!(report.blocks_deferred >= report.moved_blocks, "the old snapshot pins the moved blocks");
    // The old snapshot and a new one read the same values.
    let new = heap.read().unwrap();
    for (snap, name) in [(&old, "old"), (&new, "new")] {
        let Some(Value::List(l)) = snap.get(&[k("l")]).unwrap() else { panic!("{name}: no list") };
        let got: Vec<String> = l.iter().unwrap().map(text).collect();
        assert!(got == expect, "{name} snapshot reads different items");
        for i in [0, 500, 999] {
            match snap.get(&[k("d"), Key::Int(i)]).unwrap() {
                Some(Value::Str(s)) => assert_eq!(s.as_str(), format!("value {i:06}")),
                other => panic!("{name}: d[{i}] = {other:?}"),
            }
        }
    }
    drop(old);
    drop(new);
    // With the old snapshot gone, the next commit frees the old blocks.
    let mut w = heap.write().unwrap();
    w.set(&[k("x")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("x")], &Input::Int(2)).unwrap();
    w.commit().unwrap();
    // Only the last commit's own replaced path waits now.
    let pending = heap.stats().unwrap().blocks_pending;
    assert!(pending < 16, "{pending} blocks still pending");
    drop(heap);
    let r = assert_clean(&path);
    assert_eq!(r.unreachable_blocks, 0);
}

/// Reads every string of root["l"] through a fresh read-only mapping and returns the
/// resident size of that mapping afterwards, and the item count.
fn read_all_rss(path: &Path) -> (u64, u64) {
    let heap = Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap();
    let snap = heap.read().unwrap();
    let Some(Value::List(l)) = snap.get(&[k("l")]).unwrap() else { panic!("no list") };
    let mut n = 0;
    let mut bytes = 0;
    for v in l.iter().unwrap() {
        bytes += text(v).len();
        n += 1;
    }
    assert!(bytes > 0 || n == 0);
    let rss = heap.resident_bytes().unwrap();
    let file = std::fs::metadata(path).unwrap().len();
    assert!(rss > 0 && rss <= file, "{rss} bytes resident of a {file}-byte file after reading it");
    (rss, n)
}

fn disk(path: &Path) -> u64 {
    Allocator::open(path, Access::ReadOnly).unwrap().stats().unwrap().disk_bytes
}

/// Builds the experiment's heap: 1M small strings in root["l"].
fn build_million(path: &Path) -> (u64, u64) {
    const N: u64 = 1_000_000;
    let heap = open(path);
    let mut seed = 1;
    let items: Vec<Input> = (0..N).map(|i| Input::Str(string(i, &mut seed))).collect();
    let mut w = heap.write().unwrap();
    w.set(&[k("l")], &Input::List(items)).unwrap();
    w.commit().unwrap();
    drop(heap);
    let (rss, n) = read_all_rss(path);
    assert_eq!(n, N);
    (disk(path), rss)
}

/// Deletes the items of root["l"] where `doomed(i)` holds, in runs, one transaction.
fn delete_where(heap: &Heap, n: u64, doomed: impl Fn(u64) -> bool) -> u64 {
    let mut w = heap.write().unwrap();
    let mut deleted = 0;
    let mut i = n;
    while i > 0 {
        let end = i;
        while i > 0 && doomed(i - 1) {
            i -= 1;
        }
        if i < end {
            w.splice(&[k("l")], i, end - i, &[]).unwrap();
            deleted += end - i;
        }
        while i > 0 && !doomed(i - 1) {
            i -= 1;
        }
    }
    w.commit().unwrap();
    deleted
}

fn dropped(before: u64, after: u64) -> f64 {
    100.0 * (before as f64 - after as f64) / before as f64
}

/// Prints what came back (`(disk, rss)` before and after) and asserts both dropped by at
/// least `min` per cent.
fn assert_dropped(what: &str, before: (u64, u64), after: (u64, u64), min: f64) {
    let (disk, rss) = (dropped(before.0, after.0), dropped(before.1, after.1));
    println!(
        "{what}: disk {} -> {} KiB ({disk:.2} %); rss {} -> {} KiB ({rss:.2} %)",
        before.0 >> 10,
        after.0 >> 10,
        before.1 >> 10,
        after.1 >> 10
    );
    assert!(disk >= min, "{what}: disk dropped only {disk:.2} %");
    assert!(rss >= min, "{what}: resident memory dropped only {rss:.2} %");
}

#[test]
fn fragmentation_random_half_comes_back_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let (disk0, rss0) = build_million(&path);
    let heap = open(&path);
    let deleted = delete_where(&heap, 1_000_000, |i| {
        let mut x = i ^ 0x5eed;
        mix(&mut x) % 2 == 0
    });
    heap.gc().unwrap();
    drop(heap);
    assert_clean(&path);
    let collected = disk(&path);
    let heap = open(&path);
    let report = heap.compact().unwrap();
    drop(heap);
    let disk1 = disk(&path);
    let (rss1, n) = read_all_rss(&path);
    assert_eq!(n, 1_000_000 - deleted);
    println!("random half: deleted {deleted}; disk after gc {} KiB; {report:?}", collected >> 10);
    assert_dropped("random half, compacted", (disk0, rss0), (disk1, rss1), 45.0);
    assert_clean(&path);
}

#[test]
fn fragmentation_keep_47_comes_back_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let (disk0, rss0) = build_million(&path);
    let heap = open(&path);
    let keep: std::collections::HashSet<u64> = {
        let mut x = 47;
        (0..47).map(|_| mix(&mut x) % 1_000_000).collect()
    };
    delete_where(&heap, 1_000_000, |i| !keep.contains(&i));
    heap.compact().unwrap();
    drop(heap);
    let disk1 = disk(&path);
    let (rss1, n) = read_all_rss(&path);
    assert_eq!(n, keep.len() as u64);
    assert_dropped("keep 47, compacted", (disk0, rss0), (disk1, rss1), 99.0);
    assert_clean(&path);
}

#[test]
fn fragmentation_first_half_comes_back_without_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let (disk0, rss0) = build_million(&path);
    let heap = open(&path);
    delete_where(&heap, 1_000_000, |i| i < 500_000);
    let report = heap.gc().unwrap();
    assert_eq!(heap.stats().unwrap().gc_compactions, 0);
    drop(heap);
    let disk1 = disk(&path);
    let (rss1, n) = read_all_rss(&path);
    assert_eq!(n, 500_000);
    println!("first half: {report:?}");
    assert_dropped("first half, collected", (disk0, rss0), (disk1, rss1), 45.0);
    assert_clean(&path);
}

#[test]
fn a_commit_that_leaves_pools_mostly_empty_compacts_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = Heap::open(&path, Options { durability: Durability::None, ..Options::default() }).unwrap();
    let n = 600_000u64;
    let mut seed = 3;
    let items: Vec<Input> = (0..n).map(|i| Input::Str(string(i, &mut seed))).collect();
    let mut w = heap.write().unwrap();
    w.set(&[k("l")], &Input::List(items)).unwrap();
    w.commit().unwrap();
    let full = heap.stats().unwrap().disk_bytes;
    // Keep every tenth item: nine in ten blocks of every pool become free (once the next
    // commit reuses what this one replaced).
    delete_where(&heap, n, |i| i % 10 != 0);
    assert_eq!(heap.stats().unwrap().gc_compactions, 0);
    let mut w = heap.write().unwrap();
    w.set(&[k("tick")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    let s = heap.stats().unwrap();
    assert_eq!(s.gc_compactions, 1, "the commit that freed the blocks compacts");
    assert!(s.disk_bytes < full / 4, "disk {} of {full}", s.disk_bytes);
    // The pools are dense now: more commits do not compact again.
    for t in 2..5 {
        let mut w = heap.write().unwrap();
        w.set(&[k("tick")], &Input::Int(t)).unwrap();
        w.commit().unwrap();
    }
    assert_eq!(heap.stats().unwrap().gc_compactions, 1);
    let snap = heap.read().unwrap();
    let Some(Value::List(l)) = snap.get(&[k("l")]).unwrap() else { panic!("no list") };
    assert_eq!(l.len().unwrap(), n / 10);
    drop(snap);
    drop(heap);
    assert_clean(&path);
}

/// Stores a list of `n` strings at `a`, the same list at `b` (shared), commits, then
/// deletes both and commits: the list becomes shared garbage.
fn make_shared_garbage(heap: &Heap, tag: &str, n: usize) {
    let mut w = heap.write().unwrap();
    let items: Vec<Input> = (0..n).map(|i| Input::Str(format!("{tag} garbage item {i}"))).collect();
    w.set(&[k(&format!("{tag}-a"))], &Input::List(items)).unwrap();
    let a = w.share(&[k(&format!("{tag}-a"))]).unwrap().unwrap();
    w.set(&[k(&format!("{tag}-b"))], &a).unwrap();
    w.commit().unwrap();
    let mut w = heap.write().unwrap();
    w.del(&[k(&format!("{tag}-a"))]).unwrap();
    w.del(&[k(&format!("{tag}-b"))]).unwrap();
    w.commit().unwrap();
}

#[test]
fn a_young_collection_traces_and_frees_only_the_young() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = open(&path);
    let mut seed = 5;
    let old: Vec<Input> = (0..50_000).map(|i| Input::Str(string(i, &mut seed))).collect();
    let mut w = heap.write().unwrap();
    w.set(&[k("old")], &Input::List(old)).unwrap();
    w.commit().unwrap();
    make_shared_garbage(&heap, "old", 1000);
    drop(heap);
    // A new process (here: a new handle) starts with everything old.
    let heap = open_exact(&path);
    make_shared_garbage(&heap, "young", 3000);
    let unreachable = check(&path).unwrap().unreachable_blocks;
    let r = heap.gc_young().unwrap();
    assert!(r.young);
    assert!(r.objects_traced < 100, "a young collection traced {} objects", r.objects_traced);
    assert!(r.garbage_blocks >= 3000, "{r:?}");
    assert!(r.garbage_blocks < unreachable, "the old garbage is not young: {r:?}");
    assert_eq!(r.shared_dropped, 1);
    drop(heap);
    let after = assert_clean(&path);
    assert!(after.unreachable_blocks >= 1000, "{after:?}");
    // The old list is intact, and a full collection frees the old garbage.
    let heap = open(&path);
    let full = heap.gc().unwrap();
    assert!(full.objects_traced > 50_000);
    assert!(full.garbage_blocks >= 1000);
    assert_eq!(full.shared_dropped, 1);
    let snap = heap.read().unwrap();
    let Some(Value::List(l)) = snap.get(&[k("old")]).unwrap() else { panic!("no list") };
    assert_eq!(l.len().unwrap(), 50_000);
    drop(snap);
    drop(heap);
    assert_eq!(assert_clean(&path).unreachable_blocks, 0);
}

/// Writes `bytes` at `off` of the file (damage, as a bad disk or a stray write would do).
fn patch(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, off).unwrap();
}

/// Offset of the container at `key` in the committed state.
fn container_offset(path: &Path, key: &str) -> u64 {
    let heap = Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap();
    let snap = heap.read().unwrap();
    match snap.get(&[k(key)]).unwrap() {
        Some(Value::List(l)) => l.offset(),
        Some(Value::Dict(d)) => d.offset(),
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn damage_makes_collection_and_compaction_fail_cleanly() {
    // Found by fuzz/damage_valid_heap: a reference cycle made compaction's copy recurse
    // without end, and a dict whose length was damaged to 0 underflowed on delete.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let heap = open(&path);
    let mut w = heap.write().unwrap();
    w.set(&[k("l")], &Input::List((0..10).map(|i| Input::Str(format!("item number {i}"))).collect()))
        .unwrap();
    w.set(&[k("d")], &Input::Dict(vec![(Input::Str("a".into()), Input::Int(1))])).unwrap();
    w.commit().unwrap();
    drop(heap);
    // The list's only rope leaf gets its first item pointed back at the list: a cycle.
    let list = container_offset(&path, "l");
    let bytes = std::fs::read(&path).unwrap();
    let leaf = u64::from_le_bytes(bytes[list as usize + 16..list as usize + 24].try_into().unwrap());
    patch(&path, leaf + 8, &list.to_le_bytes());
    let heap = open(&path);
    match heap.compact() {
        Err(eterna::TxnError::Corrupt(c)) => assert!(c.to_string().contains("cycle"), "{c}"),
        other => panic!("compacting a cycle: {other:?}"),
    }
    drop(heap);
    // A dict whose length says 0 while it holds an entry (the failed compaction wrote
    // nothing, so the same file serves).
    let dict = container_offset(&path, "d");
    patch(&path, dict + 8, &0u64.to_le_bytes());
    let heap = open(&path);
    let mut w = heap.write().unwrap();
    match w.del(&[k("d"), k("a")]) {
        Err(eterna::TxnError::Corrupt(_)) => {}
        other => panic!("deleting from a dict of damaged length: {other:?}"),
    }
}
