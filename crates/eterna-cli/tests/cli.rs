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

#[test]
fn get_set_del_dump_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h");
    let p = p.to_str().unwrap();
    assert!(eterna(&["set", p, "users", "alice", r#"{"age": 30, "tags": ["a", "b"], "z": 1, "m": 2}"#])
        .status
        .success());
    assert!(eterna(&["set", p, "users", "bob", r#"{"age": 25}"#]).status.success());
    let tag = eterna(&["get", p, "users", "alice", "tags", "1"]);
    assert_eq!(String::from_utf8_lossy(&tag.stdout).trim(), "\"b\"");
    let alice = json(&eterna(&["get", p, "users", "alice"]));
    // Insertion order survives the round trip.
    let keys: Vec<&String> = alice.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["age", "tags", "z", "m"]);
    assert!(eterna(&["del", p, "users", "bob"]).status.success());
    let all = json(&eterna(&["dump", p]));
    assert_eq!(all["users"].as_object().unwrap().len(), 1);
    let missing = eterna(&["get", p, "users", "bob"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad = eterna(&["set", p, "x", "{not json"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(eterna(&["check", p]).status.success());
}

#[test]
fn check_on_damaged_files_exits_0_or_1_and_never_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h");
    for i in 0..200 {
        let out = eterna(&[
            "set",
            p.to_str().unwrap(),
            &format!("k{i}"),
            &format!(r#"{{"n": {i}, "s": "{}", "l": [1, 2, 3]}}"#, "text ".repeat(i % 7)),
        ]);
        assert!(out.status.success());
    }
    let pristine = std::fs::read(&p).unwrap();
    let used: Vec<usize> =
        (0..pristine.len()).step_by(64).filter(|&i| pristine[i..i + 64].iter().any(|&b| b != 0)).collect();
    let mut seed = 11u64;
    let mut corrupt = 0;
    for round in 0..40 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut bytes = pristine.clone();
        let at = used[(seed >> 33) as usize % used.len()] + (seed % 64) as usize;
        bytes[at] ^= 1 << (round % 8);
        let d = dir.path().join("damaged");
        std::fs::write(&d, &bytes).unwrap();
        let out = eterna(&["check", d.to_str().unwrap()]);
        let code = out.status.code();
        assert!(matches!(code, Some(0) | Some(1)), "check exited {:?} (killed by a signal?)", out.status);
        if code == Some(1) {
            corrupt += 1;
            assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
        }
        let dump = eterna(&["dump", d.to_str().unwrap()]);
        assert!(dump.status.code().is_some(), "dump was killed by a signal");
    }
    assert!(corrupt > 0, "no damage was found in 40 damaged files");
}

#[test]
fn demo_runs_every_step_and_passes() {
    let out = eterna(&["demo", "--n", "20000", "--readers", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "readers sharing the data",
        "delete a random half",
        "restart, then read one entry",
        "writer killed mid-transaction",
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no summary row for {step}:\n{text}"));
        assert!(!row.contains("failed"), "{row}");
    }
    assert!(text.contains("nothing leaked"), "{text}");
}

#[test]
fn gc_and_compact_report_what_they_freed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    let items: Vec<String> = (0..3000).map(|i| format!("\"a string long enough number {i}\"")).collect();
    assert!(eterna(&["set", p, "l", &format!("[{}]", items.join(","))]).status.success());
    let r = json(&eterna(&["gc", p, "--json"]));
    assert_eq!(r["garbage_blocks"], 0);
    assert!(r["objects_traced"].as_u64().unwrap() > 3000);
    let r = json(&eterna(&["compact", p, "--json"]));
    assert_eq!(r["compacted"], true);
    let s = json(&eterna(&["stats", p, "--json"]));
    assert_eq!(s["gc_collections"], 2);
    assert_eq!(s["gc_compactions"], 1);
    let text = String::from_utf8_lossy(&eterna(&["gc", p]).stdout).to_string();
    assert!(text.contains("collected") && text.contains("garbage freed"), "{text}");
    assert!(eterna(&["check", p]).status.success());
}

#[test]
fn writing_commands_give_up_on_a_held_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    assert!(eterna(&["set", p, "k", "1"]).status.success());
    // This process writes once, which takes the writer lock until the heap is closed.
    let heap = eterna::Heap::open(&path, eterna::Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[eterna::Key::from("mine")], &eterna::Input::Int(2)).unwrap();
    w.commit().unwrap();
    for args in [vec!["--wait", "0.2", "set", p, "k", "3"], vec!["gc", p, "--wait", "0.2"]] {
        let out = eterna(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("writer lock"), "{args:?}: {err}");
    }
    heap.close().unwrap();
    assert!(eterna(&["--wait", "0.2", "set", p, "k", "3"]).status.success());
    assert_eq!(String::from_utf8_lossy(&eterna(&["get", p, "k"]).stdout).trim(), "3");
}

#[test]
fn check_warns_of_a_meta_slot_a_crash_can_explain_and_fails_on_one_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h");
    let p = p.to_str().unwrap();
    assert!(eterna(&["set", p, "a", "[1, 2, 3]"]).status.success());
    assert!(eterna(&["set", p, "b", r#""some text""#]).status.success());
    let pristine = std::fs::read(p).unwrap();
    let txn = |slot: usize| u64::from_le_bytes(pristine[4096 * (1 + slot) + 8..][..8].try_into().unwrap());
    let cur = if txn(1) > txn(0) { 1 } else { 0 };
    let damaged = dir.path().join("d");
    let d = damaged.to_str().unwrap();
    // A counter byte of the current slot: it could be a torn publish.
    let mut bytes = pristine.clone();
    bytes[4096 * (1 + cur) + 80] ^= 2;
    std::fs::write(d, &bytes).unwrap();
    let out = eterna(&["check", d]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("warning: meta slot {cur} ")), "{text}");
    assert!(text.contains("consistent"), "{text}");
    // A high byte of its transaction id: no torn write leaves that.
    let mut bytes = pristine.clone();
    bytes[4096 * (1 + cur) + 8 + 6] ^= 2;
    std::fs::write(d, &bytes).unwrap();
    let out = eterna(&["check", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("meta slot {cur} ")));
}

#[test]
fn a_list_whose_length_lies_is_an_error_not_a_panic() {
    // The audit's reproducer: a list of 3 whose header says 40.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h");
    let p = p.to_str().unwrap();
    assert!(eterna(&["set", p, "l", "[11, 22, 33]"]).status.success());
    let mut bytes = std::fs::read(p).unwrap();
    let list = (1 << 20..bytes.len() - 24)
        .step_by(16)
        .find(|&o| {
            bytes[o] == 8 && bytes[o + 2..o + 8] == [0; 6] && bytes[o + 8..o + 16] == 3u64.to_le_bytes()
        })
        .expect("the list object");
    bytes[list + 8..list + 16].copy_from_slice(&40u64.to_le_bytes());
    let damaged = dir.path().join("d");
    let d = damaged.to_str().unwrap();
    for args in [
        vec!["del", d, "l", "35"],
        vec!["del", d, "l", "5"],
        vec!["del", d, "l", "0"],
        vec!["set", d, "l", "2", "7"],
        vec!["get", d, "l", "1"],
        vec!["dump", d],
        vec!["check", d],
    ] {
        std::fs::write(d, &bytes).unwrap();
        let out = eterna(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("corrupt") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
