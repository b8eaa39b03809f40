//! Arbitrary bytes as a heap file: open it, read every value, check it, try a write, a
//! collection and a compaction.
//! Every outcome must be a value or an error: a panic, a crash or a hang is a finding.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    std::fs::write(&path, data).unwrap();
    common::exercise(&path);
});
