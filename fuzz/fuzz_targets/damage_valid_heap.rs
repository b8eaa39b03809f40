//! A valid heap, damaged: the input is a list of patches (a 4-byte little-endian offset
//! into the file and a byte to XOR there, five bytes each) applied to a copy of a heap
//! with dicts, lists, sets, records and shared values. Then everything a program may do:
//! open, read every value, check, write, collect, compact. A panic, a crash or a hang is a
//! finding. (Random bytes rarely make a file that passes the header checksum; this target
//! starts past it.)
#![no_main]

mod common;

use eterna::{Heap, Input, Key, Options};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The pristine heap's bytes, built once per fuzzing process.
fn pristine() -> &'static [u8] {
    static HEAP: OnceLock<Vec<u8>> = OnceLock::new();
    HEAP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heap");
        let heap = Heap::open(&path, Options::default()).unwrap();
        let mut w = heap.write().unwrap();
        for i in 0..60i64 {
            let v = Input::Dict(vec![
                (Input::Str("n".into()), Input::Int(i * 1_000_000_007)),
                (
                    Input::Str("l".into()),
                    Input::List((0..(i % 40)).map(|j| Input::Str(format!("item {j} of {i}"))).collect()),
                ),
                (Input::Str("s".into()), Input::Set((0..(i % 5)).map(Input::Int).collect())),
                (
                    Input::Str("r".into()),
                    Input::Record {
                        type_name: "P".into(),
                        fields: vec![("x".into(), Input::Float(i as f64 / 3.0))],
                    },
                ),
            ]);
            w.set(&[Key::from(format!("k{i}").as_str())], &v).unwrap();
        }
        let shared = w.share(&[Key::from("k7")]).unwrap().unwrap();
        w.set(&[Key::from("again")], &shared).unwrap();
        w.commit().unwrap();
        heap.close().unwrap();
        std::fs::read(&path).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = pristine().to_vec();
    // Patches land in the pages that hold something: the file is mostly holes.
    let used: Vec<usize> = (0..bytes.len() / 4096)
        .filter(|&p| bytes[p * 4096..(p + 1) * 4096].iter().any(|&b| b != 0))
        .collect();
    for patch in data.chunks_exact(5) {
        let at = u32::from_le_bytes([patch[0], patch[1], patch[2], patch[3]]) as usize;
        let page = used[(at >> 12) % used.len()];
        bytes[page * 4096 + (at & 4095)] ^= patch[4];
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    std::fs::write(&path, &bytes).unwrap();
    common::exercise(&path);
});
