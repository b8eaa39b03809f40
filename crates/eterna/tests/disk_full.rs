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
