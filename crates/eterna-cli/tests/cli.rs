//! The `eterna` binary as users run it: real processes, real files.

use std::path::Path;
use std::process::{Command, Output};

fn eterna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eterna")).args(args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "eterna failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const STATS_KEYS: [&str; 14] = [
    "arenas_allocated_total",
    "arenas_reclaimed",
    "arenas_highwater",
    "arenas_current",
    "pools_current",
    "blocks_live",
    "bytes_live",
    "bytes_free",
    "file_bytes",
    "disk_bytes",
    "txn_id",
    "readers",
    "size_classes",
    "spare_target",
];

fn make_heap(dir: &Path, n: usize) -> String {
    let path = dir.join("heap");
    let out = eterna(&[
        "bench",
        "fragmentation",
        "--pattern",
        "prefix",
        "--n",
        &n.to_string(),
        "--json",
        "--path",
        path.to_str().unwrap(),
    ]);
    json(&out);
    path.to_str().unwrap().to_string()
}

#[test]
fn bench_fragmentation_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h").to_str().unwrap().to_string();
    let out = eterna(&[
        "bench",
        "fragmentation",
        "--pattern",
        "keep47",
        "--n",
        "1000000",
        "--json",
        "--path",
        &path,
    ]);
    let r = json(&out);
    assert_eq!(r["pattern"], "keep47");
    assert_eq!(r["n"], 1_000_000);
    assert_eq!(r["kept"], 47);
    assert_eq!(r["before"]["blocks_live"], 1_000_000);
    assert_eq!(r["after"]["blocks_live"], 47);
    let returned = r["disk_returned_pct"].as_f64().unwrap();
    assert!(returned >= 95.0, "keep47 gave back only {returned} % of the disk");
    // The file stays behind for inspection and is consistent.
    assert!(eterna(&["check", &path]).status.success());
}

#[test]
fn stats_json_has_the_brief_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_heap(dir.path(), 50_000);
    let s = json(&eterna(&["stats", &path, "--json"]));
    for k in STATS_KEYS {
        assert!(s.get(k).is_some(), "stats --json lacks {k}");
    }
    assert_eq!(s["blocks_live"], 25_000);
    let classes = s["size_classes"].as_array().unwrap();
    let live: u64 = classes.iter().map(|c| c["blocks_live"].as_u64().unwrap()).sum();
    assert_eq!(live, 25_000);
    for c in classes {
        for k in ["size", "pools", "blocks_live", "blocks_free"] {
            assert!(c.get(k).is_some());
        }
    }
    let table = eterna(&["stats", &path]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("arenas_reclaimed"));
}

#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_heap(dir.path(), 20_000);
    let ok = eterna(&["check", &path]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("consistent"));

    // Corruption: exit 1 with a message naming it.
    let bad = dir.path().join("bad");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(1 << 20) + 64 + 144] = 200; // pool 1's size class in arena 1
    std::fs::write(&bad, &bytes).unwrap();
    let out = eterna(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));

    // Not a heap at all is corruption of the input too; a missing file is an I/O error.
    let text = dir.path().join("text");
    std::fs::write(&text, "not a heap").unwrap();
    assert_eq!(eterna(&["check", text.to_str().unwrap()]).status.code(), Some(1));
    let missing = dir.path().join("missing");
    assert_eq!(eterna(&["check", missing.to_str().unwrap()]).status.code(), Some(2));
    // Usage errors: exit 2.
    assert_eq!(eterna(&["check"]).status.code(), Some(2));
    assert_eq!(eterna(&["stats", missing.to_str().unwrap()]).status.code(), Some(2));
}
