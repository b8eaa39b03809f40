//! Damage aimed at the counts and indices inside containers: a list's length, a rope
//! node's counts, its height, a record's field count, a dict entry's order index, a trie
//! child that leads back up. Every read and change that meets the damage returns
//! `TxnError::Corrupt`, never panics; and `check` reports it.

use eterna::{Heap, Input, Key, Options, TxnError, Value};
use std::path::{Path, PathBuf};

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

fn sample(path: &Path) {
    let heap = Heap::open(path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("short")], &Input::List(vec![Input::Int(11), Input::Int(22), Input::Int(33)])).unwrap();
    w.set(&[k("long")], &Input::List((0..1000).map(Input::Int).collect())).unwrap();
    let rec = Input::Record {
        type_name: "Point".into(),
        fields: vec![("x".into(), Input::Int(1)), ("label".into(), Input::Str("a label".into()))],
    };
    w.set(&[k("rec")], &rec).unwrap();
    let pairs = (0..100).map(|i| (Input::Str(format!("k{i}")), Input::Int(i))).collect();
    w.set(&[k("d")], &Input::Dict(pairs)).unwrap();
    w.set(&[k("s")], &Input::Set((0..100).map(|i| Input::Str(format!("e{i}"))).collect())).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
}

/// The offset of the container at `key` of the root.
fn offset_of(path: &Path, key: &str) -> u64 {
    let heap = Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap();
    let r = heap.read().unwrap();
    match r.get(&[k(key)]).unwrap().unwrap() {
        Value::List(l) => l.offset(),
        Value::Dict(d) => d.offset(),
        Value::Set(s) => s.offset(),
        Value::Record(x) => x.offset(),
        other => panic!("{key} is a {}", other.type_name()),
    }
}

fn u64_at(b: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

/// A copy of `pristine` with `patch` applied, written next to it.
fn damaged(dir: &Path, pristine: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = pristine.to_vec();
    patch(&mut b);
    let p = dir.join("damaged");
    let _ = std::fs::remove_file(dir.join("damaged-lock"));
    std::fs::write(&p, &b).unwrap();
    p
}

#[track_caller]
fn corrupt<T: std::fmt::Debug>(r: Result<T, TxnError>, what: &str) {
    match r {
        Err(TxnError::Corrupt(_)) => {}
        other => panic!("{what}: expected a corruption error, got {other:?}"),
    }
}

/// Reads every item of the list at `key`; returns how many there were.
fn read_list(path: &Path, key: &str) -> Result<usize, TxnError> {
    let heap = Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap();
    let r = heap.read()?;
    match r.get(&[k(key)])? {
        Some(Value::List(l)) => Ok(l.items()?.len()),
        other => panic!("not a list: {other:?}"),
    }
}

/// Runs `op` in a write transaction of its own, which is then dropped (aborted).
fn write_op<T>(
    path: &Path,
    op: impl FnOnce(&mut eterna::WriteTxn<'_>) -> Result<T, TxnError>,
) -> Result<T, TxnError> {
    let heap = Heap::open(path, Options { auto_compact: false, ..Options::default() }).unwrap();
    let mut w = heap.write()?;
    op(&mut w)
}

/// Every list operation at index `i` of the list at `key` reports corruption.
fn list_ops_fail(path: &Path, key: &str, i: i64, what: &str) {
    let at = |i: i64| vec![k(key), Key::Int(i)];
    corrupt(
        (|| {
            let heap = Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap();
            let r = heap.read()?;
            r.get(&at(i)).map(|v| v.map(|v| format!("{v:?}")))
        })(),
        &format!("{what}: get [{i}]"),
    );
    corrupt(write_op(path, |w| w.get(&at(i)).map(|v| v.is_some())), &format!("{what}: writer get [{i}]"));
    corrupt(write_op(path, |w| w.set(&at(i), &Input::Int(-5))), &format!("{what}: set [{i}]"));
    corrupt(write_op(path, |w| w.del(&at(i))), &format!("{what}: del [{i}]"));
    corrupt(
        write_op(path, |w| w.splice(&[k(key)], i.max(0) as u64, 0, &[Input::Int(7)])),
        &format!("{what}: insert at {i}"),
    );
    corrupt(
        write_op(path, |w| w.splice(&[k(key)], i.max(0) as u64, 1, &[])),
        &format!("{what}: splice out {i}"),
    );
    assert!(eterna::check::check(path).is_err(), "{what}: check passed");
}

#[test]
fn a_list_header_whose_length_lies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let list = offset_of(&path, "short");
    assert_eq!(u64_at(&pristine, list + 8), 3);
    for len in [0u64, 2, 4, 40, 1 << 40, u64::MAX] {
        let p = damaged(dir.path(), &pristine, |b| {
            b[list as usize + 8..list as usize + 16].copy_from_slice(&len.to_le_bytes())
        });
        let what = format!("short list of length {len}");
        corrupt(read_list(&p, "short"), &what);
        corrupt(write_op(&p, |w| w.append(&[k("short")], &Input::Int(1))), &format!("{what}: append"));
        // Indices the header allows (the reproducer: 35 and 5 of 40), and the end.
        for i in [0, 1, 2, 5, 35, -1] {
            if len > 0 && (i < 0 || (i as u64) < len) {
                list_ops_fail(&p, "short", i, &what);
            }
        }
        if len == 0 {
            list_ops_fail(&p, "short", 0, &what);
        }
    }
}

#[test]
fn rope_counts_heights_and_node_sizes_that_lie() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let list = offset_of(&path, "long") as usize;
    let height = pristine[list + 1];
    assert!(height >= 2, "a list of 1000 has inner levels");
    let root = u64_at(&pristine, list as u64 + 16) as usize;
    assert_eq!(pristine[root], 23, "the root is an inner rope node");
    // The first leaf: follow the first child down.
    let mut leaf = root;
    for _ in 0..height {
        leaf = u64_at(&pristine, leaf as u64 + 8) as usize;
    }
    assert_eq!(pristine[leaf], 22);
    let first_count = u64_at(&pristine, root as u64 + 16);
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(String, Patch, Vec<i64>)> = vec![
        (
            "root count + 1".into(),
            Box::new(move |b| b[root + 16..root + 24].copy_from_slice(&(first_count + 1).to_le_bytes())),
            vec![0, 500, 999],
        ),
        (
            "root count u64::MAX (the sum overflows)".into(),
            Box::new(move |b| b[root + 16..root + 24].copy_from_slice(&u64::MAX.to_le_bytes())),
            vec![0, 500, 999],
        ),
        ("root count 0".into(), Box::new(move |b| b[root + 16..root + 24].fill(0)), vec![0, 999]),
        ("root of 0 children".into(), Box::new(move |b| b[root + 2..root + 4].fill(0)), vec![0, 999]),
        ("root of 17 children".into(), Box::new(move |b| b[root + 2] = 17), vec![0, 999]),
        ("first leaf of 31 items".into(), Box::new(move |b| b[leaf + 2] = 31), vec![0]),
        ("first leaf of 0 items".into(), Box::new(move |b| b[leaf + 2] = 0), vec![0]),
        ("first leaf of 33 items".into(), Box::new(move |b| b[leaf + 2] = 33), vec![0]),
        ("first leaf an inner node".into(), Box::new(move |b| b[leaf] = 23), vec![0]),
        ("height 0".into(), Box::new(move |b| b[list + 1] = 0), vec![0, 999]),
        ("height - 1".into(), Box::new(move |b| b[list + 1] = height - 1), vec![0, 999]),
        ("height + 1".into(), Box::new(move |b| b[list + 1] = height + 1), vec![0, 999]),
        ("height 200".into(), Box::new(move |b| b[list + 1] = 200), vec![0, 999]),
        (
            "root's first child is the root".into(),
            Box::new(move |b| b[root + 8..root + 16].copy_from_slice(&(root as u64).to_le_bytes())),
            vec![0],
        ),
    ];
    for (what, patch, indices) in cases {
        let p = damaged(dir.path(), &pristine, patch);
        corrupt(read_list(&p, "long"), &what);
        for i in indices {
            list_ops_fail(&p, "long", i, &what);
        }
    }
}

#[test]
fn a_record_with_fewer_fields_than_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let rec = offset_of(&path, "rec") as usize;
    assert_eq!(pristine[rec + 4], 2);
    let p = damaged(dir.path(), &pristine, |b| b[rec + 4] = 1);
    let label = [k("rec"), k("label")];
    corrupt(write_op(&p, |w| w.set(&label, &Input::Int(3))), "set the missing field");
    corrupt(write_op(&p, |w| w.get(&label).map(|v| v.is_some())), "get the missing field");
    assert!(eterna::check::check(&p).is_err());
}

#[test]
fn a_dict_entry_naming_the_wrong_order_slot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    // The trie entry of "k5": its key word (an inline str), its value word (int 5), its
    // order index 5. In the order vector the pair is followed by the next key instead.
    let key = 0x7u64 | 2 << 4 | (b'k' as u64) << 8 | (b'5' as u64) << 16;
    let val = 5u64 << 2 | 1;
    let at = (0..pristine.len() - 24)
        .step_by(8)
        .find(|&i| {
            u64_at(&pristine, i as u64) == key
                && u64_at(&pristine, i as u64 + 8) == val
                && u64_at(&pristine, i as u64 + 16) == 5
        })
        .expect("the trie entry of k5")
        + 16;
    for seq in [6u64, 99, 100, 1 << 40, u64::MAX] {
        let p = damaged(dir.path(), &pristine, |b| b[at..at + 8].copy_from_slice(&seq.to_le_bytes()));
        let what = format!("order index {seq}");
        corrupt(write_op(&p, |w| w.set(&[k("d"), k("k5")], &Input::Int(55))), &format!("{what}: set"));
        corrupt(write_op(&p, |w| w.del(&[k("d"), k("k5")])), &format!("{what}: del"));
        assert!(eterna::check::check(&p).is_err(), "{what}: check passed");
    }
}

#[test]
fn a_trie_child_leading_back_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let set = offset_of(&path, "s");
    let root = u64_at(&pristine, set + 16) as usize;
    assert_eq!(pristine[root], 17, "a set node");
    let nodemap = u16::from_le_bytes([pristine[root + 4], pristine[root + 5]]);
    assert!(nodemap != 0, "the root of a 100-element set has children");
    let p = damaged(dir.path(), &pristine, |b| {
        b[root + 8..root + 16].copy_from_slice(&(root as u64).to_le_bytes())
    });
    // Iterating meets the loop; lookups and changes may or may not pass through it, but
    // never panic.
    let heap = Heap::open(&p, Options { readonly: true, ..Options::default() }).unwrap();
    let r = heap.read().unwrap();
    match r.get(&[k("s")]).unwrap().unwrap() {
        Value::Set(s) => {
            assert!(s.items().is_err());
            for i in 0..100 {
                let _ = s.contains(&k(&format!("e{i}")));
            }
        }
        other => panic!("{other:?}"),
    }
    drop(r);
    drop(heap);
    for i in 0..100 {
        let _ = write_op(&p, |w| w.del(&[k("s"), k(&format!("e{i}"))]));
        let _ = write_op(&p, |w| w.set_add(&[k("s")], &k(&format!("new{i}"))));
    }
    assert!(eterna::check::check(&p).is_err());
}
