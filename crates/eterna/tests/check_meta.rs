//! `check` and damaged meta slots. A slot whose checksum fails is either a publish torn
//! by a crash (legitimate: the heap opens the other slot's state) or damage; check reports
//! it as a warning when a torn write can explain its bytes, as corruption when it cannot,
//! and in both cases still verifies everything the state it falls back to reaches,
//! including when that state was published while a writer ran.

use eterna::check::{check, CheckError, Report};
use eterna::format::{meta_slot_offset, Meta, META_LEN, POOL};
use eterna::{Heap, Input, Key, Options};
use std::path::{Path, PathBuf};

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

/// A heap after three commits and a clean close: the current slot is the close's state
/// (no writer), the other the last commit's (published while the writer ran).
fn sample(path: &Path) {
    let heap = Heap::open(path, Options::default()).unwrap();
    for i in 0..3i64 {
        let mut w = heap.write().unwrap();
        w.set(&[k(&format!("k{i}"))], &Input::List((0..100).map(Input::Int).collect())).unwrap();
        w.set(&[k(&format!("s{i}"))], &Input::Str(format!("some text {i}").repeat(10))).unwrap();
        w.commit().unwrap();
    }
    heap.close().unwrap();
}

struct Slots {
    current: usize,
    metas: [Meta; 2],
}

fn slots(b: &[u8]) -> Slots {
    let metas = [0, 1].map(|i| {
        let at = meta_slot_offset(i) as usize;
        Meta::decode(&b[at..at + META_LEN]).expect("both slots valid")
    });
    let current = if metas[1].txn_id > metas[0].txn_id { 1 } else { 0 };
    Slots { current, metas }
}

fn damaged(dir: &Path, name: &str, pristine: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = pristine.to_vec();
    patch(&mut b);
    let p = dir.join(name);
    std::fs::write(&p, &b).unwrap();
    p
}

fn flip(b: &mut [u8], slot: usize, at: usize, mask: u8) {
    b[meta_slot_offset(slot) as usize + at] ^= mask;
}

#[track_caller]
fn corrupt(r: Result<Report, CheckError>) -> String {
    match r {
        Err(CheckError::Corrupt(m)) => m,
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Byte offsets within a meta slot (docs/design.md, "Meta slot").
const M_TXN: usize = 8;
const M_RELEASES: usize = 80;

#[test]
fn a_damaged_current_slot_and_a_damaged_pool_record_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let s = slots(&pristine);
    let (cur, old) = (s.current, 1 - s.current);
    assert_eq!(s.metas[cur].flags, 0, "a clean close");
    assert_ne!(s.metas[old].flags, 0, "the last commit was published by a running writer");
    // The pool record of the block holding the root dict.
    let root = s.metas[cur].root;
    let pool = root / POOL;
    let record = (pool / 64) * (1 << 20) + 64 + 144 * (pool % 64);
    assert_eq!(pristine[record as usize + 1], 2, "the root's pool is in use");

    // The current slot alone: the heap falls back to the last commit's state, which a
    // running writer published; check still passes, with a warning naming the slot.
    let p = damaged(dir.path(), "slot", &pristine, |b| flip(b, cur, M_RELEASES, 0x04));
    let r = check(&p).unwrap();
    assert!(r.interrupted);
    assert_eq!(r.txn_id, s.metas[old].txn_id);
    assert!(r.objects > 0);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains(&format!("meta slot {cur} ")), "{}", r.warnings[0]);

    // ... plus a pool record of an impossible class.
    let p = damaged(dir.path(), "class", &pristine, |b| {
        flip(b, cur, M_RELEASES, 0x04);
        b[record as usize] = 40;
    });
    let m = corrupt(check(&p));
    assert!(m.contains("class 40"), "{m}");
    assert!(m.contains(&format!("warning: meta slot {cur} ")), "the warning goes with the error: {m}");

    // ... plus a pool record that says the pool holding the root is empty (consistent in
    // itself, but a reachable object is then no allocated block).
    let p = damaged(dir.path(), "spare", &pristine, |b| {
        flip(b, cur, M_RELEASES, 0x04);
        let r = record as usize;
        b[r..r + 4].copy_from_slice(&[0, 1, 0, 0]);
        b[r + 16..r + 144].fill(0);
    });
    let m = corrupt(check(&p));
    assert!(m.contains("not an allocated block"), "{m}");

    // ... plus a state byte no pool has.
    let p = damaged(dir.path(), "state", &pristine, |b| {
        flip(b, cur, M_RELEASES, 0x04);
        b[record as usize + 1] = 9;
    });
    corrupt(check(&p));

    // Without the damaged slot the same records are corruption too, of course.
    let p = damaged(dir.path(), "class-only", &pristine, |b| b[record as usize] = 40);
    corrupt(check(&p));
}

#[test]
fn a_damaged_slot_alone_is_a_warning_when_a_torn_write_explains_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let s = slots(&pristine);
    let (cur, old) = (s.current, 1 - s.current);
    let t = s.metas[cur].txn_id;
    let clean = check(&path).unwrap();
    assert!(clean.warnings.is_empty());
    assert!(!clean.interrupted);

    // A counter byte of the older slot: the current state is intact.
    let p = damaged(dir.path(), "old-counter", &pristine, |b| flip(b, old, M_RELEASES, 0x01));
    let r = check(&p).unwrap();
    assert_eq!(r.txn_id, t);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains(&format!("meta slot {old} ")));

    // A real torn write: the publish of t + 1 over the older slot stopped after 40 bytes.
    let p = damaged(dir.path(), "torn", &pristine, |b| {
        let mut next = [0u8; META_LEN];
        Meta { txn_id: t + 1, ..s.metas[cur] }.encode(&mut next);
        let at = meta_slot_offset(old) as usize;
        b[at..at + 40].copy_from_slice(&next[..40]);
    });
    let r = check(&p).unwrap();
    assert_eq!(r.txn_id, t);
    assert!(r.warnings[0].contains(&format!("reads {}", t + 1)), "{}", r.warnings[0]);
    assert!(r.warnings[0].contains("lost"), "{}", r.warnings[0]);
    // The heap opens that state and writes on.
    let heap = Heap::open(&p, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("after")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
    let r = check(&p).unwrap();
    assert!(r.warnings.is_empty(), "the next publish rewrote the torn slot: {:?}", r.warnings);

    // A high byte of a transaction id, or the magic: no write of the state before or
    // after the other slot's leaves those bytes, so that is corruption.
    for (name, slot, at) in [("cur-txn", cur, M_TXN + 5), ("old-txn", old, M_TXN + 6), ("old-magic", old, 3)]
    {
        let p = damaged(dir.path(), name, &pristine, |b| flip(b, slot, at, 0x20));
        let m = corrupt(check(&p));
        assert!(m.contains(&format!("meta slot {slot} ")) && m.contains("no write torn"), "{name}: {m}");
    }
}
