//! A full disk is an error at allocation time, never a SIGBUS when a block is written:
//! the heap lives on an 8 MiB tmpfs mounted for the test, and the test fills it.

use eterna::{Access, AllocError, Allocator};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path) -> SmallFs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "this test mounts a small tmpfs and needs root (CI runs as root)");
        SmallFs(dir.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_an_allocation_error() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(dir.path());
    let path = fs.0.join("heap");
    let mut heap = Allocator::create(&path).unwrap();
    let mut offs = Vec::new();
    let mut size = 0usize;
    let err = loop {
        // Mixed sizes reach small pools, page runs and whole arenas.
        size = (size * 7 + 13) % 3000 + 1;
        match heap.alloc(size) {
            Ok(o) => {
                // Writing every byte would SIGBUS here if the blocks were not reserved.
                heap.bytes_mut(o, size).unwrap().fill(0xab);
                offs.push((o, size));
            }
            Err(e) => break e,
        }
        assert!(offs.len() < 1_000_000, "an 8 MiB filesystem never filled up");
    };
    assert!(matches!(err, AllocError::DiskFull), "{err}");
    assert!(err.to_string().contains("no space"));
    println!("disk full after {} blocks", offs.len());
    // Nothing was lost: every block is intact, frees work, and the freed space is usable.
    for &(o, s) in &offs {
        assert!(heap.bytes(o, s).unwrap().iter().all(|&b| b == 0xab));
    }
    let before = heap.stats().unwrap().blocks_live;
    for &(o, _) in offs.iter().step_by(2) {
        heap.free(o).unwrap();
    }
    heap.flush().unwrap();
    let o = heap.alloc(100).unwrap();
    heap.bytes_mut(o, 100).unwrap().fill(1);
    assert_eq!(heap.stats().unwrap().blocks_live, before - offs.len().div_ceil(2) as u64 + 1);
    heap.verify().unwrap();
    heap.close().unwrap();
    Allocator::open(&path, Access::ReadOnly).unwrap().verify().unwrap();
}

#[test]
fn compaction_on_a_full_disk_fails_cleanly() {
    use eterna::{Heap, Input, Key, Options, TxnError, Value};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(dir.path());
    let path = fs.0.join("heap");
    let l = [Key::Str("l".into())];
    let n = 40_000u64;
    {
        let heap = Heap::open(&path, Options { auto_compact: false, ..Options::default() }).unwrap();
        let mut w = heap.write().unwrap();
        w.set(&l, &Input::List((0..n).map(|i| Input::Str(format!("string number {i:08}"))).collect()))
            .unwrap();
        w.commit().unwrap();
        let mut w = heap.write().unwrap();
        for i in (0..n).rev().step_by(2) {
            w.splice(&l, i, 1, &[]).unwrap();
        }
        w.commit().unwrap();
        // Fill what is left of the filesystem.
        let mut filler = std::fs::File::create(fs.0.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
        match heap.compact() {
            Err(TxnError::DiskFull) => {}
            other => panic!("compacting on a full disk: {other:?}"),
        }
        // The committed state is intact and the heap still works.
        let snap = heap.read().unwrap();
        let Some(Value::List(list)) = snap.get(&l).unwrap() else { panic!("no list") };
        assert_eq!(list.len().unwrap(), n / 2);
        match snap.get(&[l[0].clone(), Key::Int(0)]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), "string number 00000000"),
            other => panic!("{other:?}"),
        }
        drop(snap);
        heap.gc().unwrap();
    }
    let r = eterna::check::check(&path).unwrap();
    assert_eq!(r.unreachable_blocks, 0, "{r:?}");
}
