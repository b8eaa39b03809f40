//! Bad input gets a clear error, never a panic: truncated files, wrong magic, a file of
//! zeros, a newer format version, torn meta slots, and random damage to the metadata.

mod common;

use common::mix;
use eterna::format::{meta_slot_offset, ARENA, FORMAT_VERSION, POOL};
use eterna::{Access, Allocator, OpenError};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A heap with small, large and huge blocks, closed cleanly.
fn sample(path: &Path) {
    let mut heap = Allocator::create(path).unwrap();
    for i in 0..5000 {
        heap.alloc(16 + i % 400).unwrap();
    }
    for i in 0..20 {
        heap.alloc(1000 + i * 3000).unwrap();
    }
    heap.alloc(2 * ARENA as usize).unwrap();
    heap.close().unwrap();
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn open(path: &Path) -> Result<Allocator, OpenError> {
    Allocator::open(path, Access::ReadOnly)
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let full = std::fs::metadata(&path).unwrap().len();
    for len in [0, 7, 10, 64, 4096, 3 * 4096 - 1, ARENA, ARENA + 5, full - ARENA, full - 1] {
        let cut = dir.path().join(format!("cut{len}"));
        std::fs::copy(&path, &cut).unwrap();
        OpenOptions::new().write(true).open(&cut).unwrap().set_len(len).unwrap();
        let err = open(&cut).err().unwrap_or_else(|| panic!("a file cut to {len} bytes opened"));
        match err {
            OpenError::NotEterna if len < 8 => {}
            OpenError::Truncated { .. } => {}
            other => panic!("cut to {len}: unexpected error {other}"),
        }
        assert!(err_text(&cut).contains(if len < 8 { "not an eterna heap" } else { "truncated" }));
    }
}

fn err_text(path: &Path) -> String {
    open(path).err().expect("should fail").to_string()
}

#[test]
fn wrong_magic_zeros_and_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);

    let magic = dir.path().join("magic");
    std::fs::copy(&path, &magic).unwrap();
    write_at(&magic, 0, b"X");
    assert!(matches!(open(&magic), Err(OpenError::NotEterna)));

    let zeros = dir.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 2 * ARENA as usize]).unwrap();
    assert!(matches!(open(&zeros), Err(OpenError::NotEterna)));
    assert!(matches!(Allocator::open(&zeros, Access::ReadWrite), Err(OpenError::NotEterna)));

    let text = dir.path().join("text");
    std::fs::write(&text, "hello, I am a text file\n").unwrap();
    assert!(matches!(open(&text), Err(OpenError::NotEterna)));

    let newer = dir.path().join("newer");
    std::fs::copy(&path, &newer).unwrap();
    write_at(&newer, 8, &(FORMAT_VERSION + 1).to_le_bytes());
    match open(&newer) {
        Err(OpenError::UnsupportedVersion { found, supported }) => {
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("newer version: {:?}", other.err()),
    }
    assert!(err_text(&newer).contains("not supported"));

    let missing = dir.path().join("missing");
    assert!(matches!(open(&missing), Err(OpenError::Io(_))));
}

#[test]
fn torn_meta_slots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    // One torn slot: the other one is used.
    for slot in 0..2 {
        let one = dir.path().join(format!("one{slot}"));
        std::fs::copy(&path, &one).unwrap();
        write_at(&one, meta_slot_offset(slot) + 20, &[0xff; 4]);
        let res = open(&one);
        // The slot left may be the older state, whose arenas no longer match: an error,
        // not a panic, is what matters; a clean open must verify.
        if let Ok(h) = res {
            let _ = h.verify();
        }
    }
    let both = dir.path().join("both");
    std::fs::copy(&path, &both).unwrap();
    write_at(&both, meta_slot_offset(0) + 20, &[0xff; 4]);
    write_at(&both, meta_slot_offset(1) + 20, &[0xff; 4]);
    assert!(matches!(open(&both), Err(OpenError::Corrupt(_))));
}

#[test]
fn damaged_pool_descriptor_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    // Arena 1 is the first small arena; pool 1's record sits at 64 + 144.
    let bad = dir.path().join("bad");
    std::fs::copy(&path, &bad).unwrap();
    write_at(&bad, ARENA + 64 + 144, &[200]);
    assert!(matches!(open(&bad), Err(OpenError::Corrupt(_))));
    // A bit flipped in a block bitmap disagrees with the pool's live count.
    let bits = dir.path().join("bits");
    std::fs::copy(&path, &bits).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&bits).unwrap();
    let mut b = [0u8; 1];
    let at = ARENA + 64 + 144 + 16 + 10;
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    let e = open(&bits).err().expect("a flipped bitmap bit must be found");
    assert!(e.to_string().contains("corrupt heap"), "{e}");
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let len = pristine.len() as u64;
    let mut seed = 42u64;
    let mut errors = 0;
    for round in 0..300 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + mix(&mut seed) % 8 {
            // Mostly metadata: the control pages and the first pool of each arena.
            let off = match mix(&mut seed) % 3 {
                0 => mix(&mut seed) % (3 * 4096),
                1 => (1 + mix(&mut seed) % (len / ARENA - 1)) * ARENA + mix(&mut seed) % POOL,
                _ => mix(&mut seed) % len,
            };
            bytes[off as usize] ^= 1 << (mix(&mut seed) % 8);
        }
        let p = dir.path().join("damaged");
        std::fs::write(&p, &bytes).unwrap();
        match Allocator::open(&p, Access::ReadWrite) {
            Err(_) => errors += 1,
            Ok(mut h) => {
                if h.verify().is_err() {
                    errors += 1;
                }
                // Whatever opened must survive use without a panic.
                for i in 0..200 {
                    if let Ok(o) = h.alloc(16 + (round * 7 + i) % 700) {
                        let _ = h.free(o);
                    }
                }
                let _ = h.flush();
            }
        }
    }
    println!("{errors} of 300 damaged files were refused or failed verification");
    assert!(errors > 0);
}
