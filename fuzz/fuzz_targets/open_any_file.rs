//! Arbitrary bytes as a heap file: open it, read every value, check it, try a write, a
//! collection and a compaction.
//! Every outcome must be a value or an error: a panic, a crash or a hang is a finding.
#![no_main]

mod common;

use common::read_all;
use eterna::{Heap, Input, Key, Options, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    std::fs::write(&path, data).unwrap();
    if let Ok(heap) = Heap::open(&path, Options { readonly: true, ..Options::default() }) {
        if let Ok(r) = heap.read() {
            if let Ok(root) = r.root() {
                read_all(&Value::Dict(root), 0);
            }
        }
    }
    let _ = eterna::check::check(&path);
    if let Ok(heap) = Heap::open(&path, Options { create: false, ..Options::default() }) {
        if let Ok(mut w) = heap.write() {
            let _ = w.set(&[Key::from("fuzz")], &Input::Str("written".into()));
            let _ = w.commit();
        }
        let _ = heap.gc();
        let _ = heap.compact();
    }
});
