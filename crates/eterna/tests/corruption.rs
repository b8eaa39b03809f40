//! Corruption: random byte flips and truncations of a heap file. Opening, reading every
//! value, writing, collecting, compacting and checking each return errors, never panic or
//! hang; and the checker finds the damage that matters.

mod common;

use common::mix;
use eterna::{Heap, Input, Key, Options, Value};
use std::path::Path;
use std::time::Duration;

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

fn sample(path: &Path) {
    let heap = Heap::open(path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    for i in 0..300i64 {
        let rec = Input::Record {
            type_name: "Point".into(),
            fields: vec![
                ("x".into(), Input::Int(i)),
                ("label".into(), Input::Str(format!("point number {i}"))),
            ],
        };
        w.set(
            &[k(&format!("key{i}"))],
            &Input::Dict(vec![
                (Input::Str("n".into()), Input::Int(i * 1_000_000_007)),
                (Input::Str("s".into()), Input::Str("some text ".repeat((i % 9) as usize))),
                (Input::Str("l".into()), Input::List((0..(i % 40)).map(Input::Int).collect())),
                (Input::Str("t".into()), Input::Tuple(vec![Input::Float(i as f64 / 3.0), Input::None])),
                (
                    Input::Str("set".into()),
                    Input::Set((0..(i % 5)).map(|j| Input::Str(format!("e{j}"))).collect()),
                ),
                (Input::Str("r".into()), rec),
            ]),
        )
        .unwrap();
    }
    w.set(&[k("blob")], &Input::Bytes(vec![7u8; 200_000])).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
}

/// Reads every value under `v`; returns how many it saw, or the first error.
fn read_all(v: &Value<'_>, depth: usize) -> Result<u64, String> {
    if depth > 200 {
        return Err("too deep".into());
    }
    let e = |e: eterna::Corruption| e.to_string();
    let mut n = 1;
    match v {
        Value::Dict(d) => {
            for (key, val) in d.items().map_err(e)? {
                n += read_all(&key, depth + 1)? + read_all(&val, depth + 1)?;
            }
        }
        Value::List(l) => {
            for x in l.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        Value::Set(s) | Value::FrozenSet(s) => {
            for x in s.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        Value::Tuple(t) => {
            for x in t.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        Value::Record(r) => {
            r.type_name().map_err(e)?;
            for (_, x) in r.fields().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(n)
}

/// Everything a program might do with a damaged file; returns whether any step reported
/// the damage.
fn exercise(path: &Path) -> bool {
    let mut found = false;
    match Heap::open(path, Options { readonly: true, ..Options::default() }) {
        Err(_) => found = true,
        Ok(heap) => match heap.read() {
            Err(_) => found = true,
            Ok(r) => match r.root() {
                Err(_) => found = true,
                Ok(root) => found |= read_all(&Value::Dict(root), 0).is_err(),
            },
        },
    }
    let checked = eterna::check::check(path);
    found |= checked.is_err();
    // A writer may open it (recovering if it must) and try to change it.
    if let Ok(heap) = Heap::open(path, Options::default()) {
        if let Ok(mut w) = heap.write() {
            let _ = w.set(&[k("key5"), k("n")], &Input::Str("changed after damage".into()));
            let _ = w.del(&[k("key7")]);
            let _ = w.commit();
        }
        // The collector and compaction trace everything: damage is an error there too.
        found |= heap.gc().is_err();
        found |= heap.compact().is_err();
        let _ = heap.close();
    }
    found
}

#[test]
fn flips_and_truncations_are_errors_not_crashes() {
    // A hang is a failure too: give up loudly rather than wait for CI's limit.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        eprintln!("corruption test hung");
        std::process::abort();
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    assert!(eterna::check::check(&path).is_ok());
    let pristine = std::fs::read(&path).unwrap();
    // Where the live data is: flips there are the interesting ones.
    let used: Vec<usize> =
        (0..pristine.len()).step_by(64).filter(|&i| pristine[i..i + 64].iter().any(|&b| b != 0)).collect();
    let mut seed = 7u64;
    let (mut rounds, mut found) = (0, 0);
    for _ in 0..300 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + mix(&mut seed) % 6 {
            let base = used[(mix(&mut seed) % used.len() as u64) as usize];
            let at = base + (mix(&mut seed) % 64) as usize;
            bytes[at] ^= 1 << (mix(&mut seed) % 8);
        }
        let damaged = dir.path().join("damaged");
        std::fs::write(&damaged, &bytes).unwrap();
        rounds += 1;
        found += exercise(&damaged) as u32;
    }
    for cut in [
        8u64,
        4096,
        3 * 4096,
        1 << 20,
        (1 << 20) + 5000,
        pristine.len() as u64 / 2,
        pristine.len() as u64 - 1,
    ] {
        let damaged = dir.path().join("cut");
        std::fs::write(&damaged, &pristine[..cut as usize]).unwrap();
        assert!(exercise(&damaged), "a file cut to {cut} bytes was not noticed");
    }
    println!("{found} of {rounds} damaged files were reported as damaged");
    assert!(found > rounds / 2, "most flips in live data must be noticed ({found} of {rounds})");
}
