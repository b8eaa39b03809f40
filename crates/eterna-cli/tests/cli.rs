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
    assert_eq!(stderr(&missing), "eterna: root[\"users\"][\"bob\"] not found");
    // A path that stops early names the first key that is missing.
    for cmd in ["get", "del"] {
        let missing = eterna(&[cmd, p, "users", "bob", "tags", "0"]);
        assert_eq!(missing.status.code(), Some(2));
        assert_eq!(stderr(&missing), "eterna: root[\"users\"][\"bob\"] not found", "{cmd}");
    }
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
        // Damage found while reading is reported like damage found at open.
        if !dump.status.success() {
            let err = String::from_utf8_lossy(&dump.stderr);
            assert_eq!(dump.status.code(), Some(2), "{err}");
            assert!(err.starts_with(&format!("eterna: {}: ", d.display())), "{err}");
        }
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
    // This process is in a write transaction, which holds the writer lock while it runs.
    let heap = eterna::Heap::open(&path, eterna::Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[eterna::Key::from("mine")], &eterna::Input::Int(2)).unwrap();
    for args in [vec!["--wait", "0.2", "set", p, "k", "3"], vec!["gc", p, "--wait", "0.2"]] {
        let out = eterna(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("writer lock"), "{args:?}: {err}");
    }
    w.commit().unwrap();
    // Between its transactions it hands the lock to whoever asks, heap still open.
    assert!(eterna(&["--wait", "5", "set", p, "k", "3"]).status.success());
    assert_eq!(String::from_utf8_lossy(&eterna(&["get", p, "k"]).stdout).trim(), "3");
    assert_eq!(String::from_utf8_lossy(&eterna(&["get", p, "mine"]).stdout).trim(), "2");
    heap.close().unwrap();
}

/// Runs eterna with its stdout a pipe whose reading end is already closed (`| head` that
/// has all it wanted): the command must end quietly, not panic.
fn eterna_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eterna"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    // More than a pipe holds, so that the writes cannot all land in its buffer.
    let items: Vec<String> = (0..15_000).map(|i| i.to_string()).collect();
    for k in ["l", "m", "n"] {
        assert!(eterna(&["set", p, k, &format!("[{}]", items.join(","))]).status.success());
    }
    for args in [
        vec!["dump", p],
        vec!["get", p, "l"],
        vec!["stats", p],
        vec!["stats", p, "--json"],
        vec!["check", p],
        vec!["gc", p],
        vec!["compact", p, "--json"],
    ] {
        let out = eterna_closed_stdout(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
    // A stdout that fails otherwise is an I/O error, said once.
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = Command::new(env!("CARGO_BIN_EXE_eterna")).args(["dump", p]).stdout(full).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write to standard output"));
    }
}

fn text(out: &Output) -> String {
    assert!(out.status.success(), "eterna failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn keys_and_values_may_start_with_a_hyphen_and_options_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    assert!(eterna(&["set", p, "l", "[1, 2, 3]"]).status.success());
    // A negative list index, with and without `--`, with options before and after it.
    assert_eq!(text(&eterna(&["get", p, "l", "-1"])), "3");
    assert_eq!(text(&eterna(&["get", p, "l", "--", "-2"])), "2");
    assert_eq!(text(&eterna(&["get", p, "l", "-1", "--wait", "1"])), "3");
    assert_eq!(text(&eterna(&["--wait", "1", "get", p, "l", "-3"])), "1");
    // A negative JSON value and keys that start with '-'.
    assert!(eterna(&["set", p, "n", "-5"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "n"])), "-5");
    assert!(eterna(&["set", p, "-k", "-x", "-1.5"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "-k", "-x"])), "-1.5");
    assert!(eterna(&["set", p, "l", "-1", "-7"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "l"])), "[1,2,-7]");
    // An option after the keys is an option, not a key.
    assert!(eterna(&["set", p, "w", "3", "--wait", "0.5"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "w"])), "3");
    assert!(eterna(&["del", p, "-k", "-x", "--wait=0.5"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "-k"])), "{}");
    let help = eterna(&["get", p, "l", "--help"]);
    assert!(text(&help).contains("Usage: eterna get"));
    // A key spelled like an option goes after `--`; a mistyped option is refused, not
    // taken for a key.
    assert!(eterna(&["set", p, "--", "--wait", "1"]).status.success());
    assert_eq!(text(&eterna(&["get", p, "--", "--wait"])), "1");
    let typo = eterna(&["set", p, "w", "4", "--wiat", "1"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("--wiat"));
    assert_eq!(text(&eterna(&["get", p, "w"])), "3");
    let dump = json(&eterna(&["dump", p]));
    assert_eq!(dump.as_object().unwrap().keys().collect::<Vec<_>>(), ["l", "n", "-k", "w", "--wait"]);
}

/// `PATH-lock`, the reader table the core keeps beside a heap.
fn lock_file(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    name.into()
}

#[test]
fn a_failed_open_leaves_no_lock_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("heap");
    let g = good.to_str().unwrap();
    assert!(eterna(&["set", g, "k", "[1, 2, 3]"]).status.success());
    let bytes = std::fs::read(&good).unwrap();
    // Cut inside the header page, after the control pages, and a file that is no heap.
    for (name, content) in [
        ("short", bytes[..5000].to_vec()),
        ("truncated", bytes[..100_000].to_vec()),
        ("text", b"not a heap at all".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["get", p, "k"],
            vec!["dump", p],
            vec!["stats", p],
            vec!["check", p],
            vec!["gc", p],
            vec!["compact", p],
            vec!["del", p, "k"],
            vec!["set", p, "k", "1"],
        ] {
            let out = eterna(&args);
            assert_ne!(out.status.code(), Some(0), "{args:?}");
            assert!(!lock_file(&path).exists(), "{args:?} left {}-lock behind", name);
            assert_eq!(std::fs::read(&path).unwrap(), content, "{args:?} changed the file");
        }
    }
    // A lock file that was there before stays.
    let path = dir.path().join("short");
    std::fs::copy(lock_file(&good), lock_file(&path)).unwrap();
    assert_ne!(eterna(&["get", path.to_str().unwrap()]).status.code(), Some(0));
    assert!(lock_file(&path).exists());
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn open_errors_name_the_path_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    let text = dir.path().join("text");
    std::fs::write(&text, "not a heap, only words, long enough for a header to be read from it").unwrap();
    let t = text.to_str().unwrap();
    let nodir = dir.path().join("nodir").join("heap");
    let n = nodir.to_str().unwrap();
    let reading: [&[&str]; 7] =
        [&["get"], &["dump"], &["stats"], &["del", "k"], &["gc"], &["compact"], &["stats", "--json"]];
    for args in reading.iter().chain([&["set", "k", "1"][..]].iter()) {
        let run = |path: &str| {
            let mut a = vec![args[0], path];
            a.extend(&args[1..]);
            eterna(&a)
        };
        let out = run(d);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), format!("eterna: {d}: is a directory, not a heap file"), "{args:?}");
        let out = run(t);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), format!("eterna: {t}: not an eterna heap (bad magic)"), "{args:?}");
        let out = run(n);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let parent = nodir.parent().unwrap().display();
        assert_eq!(stderr(&out), format!("eterna: {n}: there is no directory {parent}"), "{args:?}");
        if args[0] != "set" {
            let out = run(m);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert_eq!(stderr(&out), format!("eterna: {m}: no such file"), "{args:?}");
        }
    }
    // `check` words them the same, with its own exit codes: 2 for what it cannot read, 1
    // for what is not a heap.
    let out = eterna(&["check", d]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(2), format!("eterna: {d}: is a directory, not a heap file"))
    );
    let out = eterna(&["check", m]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(2), format!("eterna: {m}: no such file")));
    let out = eterna(&["check", t]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("eterna: {t}: not an eterna heap")), "{}", stderr(&out));
}

#[test]
fn a_damaged_file_says_so_and_points_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("heap");
    assert!(eterna(&["set", good.to_str().unwrap(), "k", "[1, 2, 3]"]).status.success());
    let bytes = std::fs::read(&good).unwrap();
    let mut bad_header = bytes.clone();
    bad_header[40] ^= 0x10; // inside the checksummed header
    for (name, content, what) in [
        ("bad-header", bad_header, "file header checksum mismatch"),
        ("cut", bytes[..5000].to_vec(), "5000 bytes"),
        ("truncated", bytes[..100_000].to_vec(), "truncated"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).unwrap();
        let p = path.to_str().unwrap();
        let check = eterna(&["check", p]);
        assert_eq!(check.status.code(), Some(1), "check {name}: {}", stderr(&check));
        assert!(stderr(&check).starts_with(&format!("eterna: {p}: ")), "{}", stderr(&check));
        for args in
            [vec!["get", p, "k"], vec!["dump", p], vec!["stats", p], vec!["set", p, "k", "1"], vec!["gc", p]]
        {
            let out = eterna(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.starts_with(&format!("eterna: {p}: the file is damaged (")), "{args:?}: {err}");
            assert!(err.contains(what), "{args:?}: {err}");
            assert!(err.ends_with(&format!("run `eterna check {p}` for details")), "{args:?}: {err}");
            assert!(!err.contains("Checksum"), "{args:?}: {err}");
        }
    }
    let help = text(&eterna(&["--help"]));
    assert!(help.contains("Exit codes:") && help.contains("eterna check PATH"), "{help}");
}

#[test]
fn json_numbers_beyond_a_float_are_stored_as_infinity_not_nan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    // Python: json.loads('1e400') == inf, json.loads('-1e400') == -inf.
    assert!(eterna(&["set", p, "n", "f", "1e400"]).status.success());
    assert!(eterna(&["set", p, "n", "g", "-1e400"]).status.success());
    assert!(eterna(&["set", p, "n", "l", "[1e400, 1e-400, 1.5]"]).status.success());
    let n = json(&eterna(&["get", p, "n"]));
    assert_eq!(
        n,
        serde_json::json!({"f": {"$float": "inf"}, "g": {"$float": "-inf"}, "l": [{"$float": "inf"}, 0.0, 1.5]})
    );
    assert!(!text(&eterna(&["dump", p])).contains("nan"));
    let help = text(&eterna(&["set", "--help"]));
    assert!(help.contains("inf, as in Python's json"), "{help}");
}

#[test]
fn a_wrong_type_error_names_the_path_of_the_value_that_is_not_a_dict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let p = path.to_str().unwrap();
    assert!(eterna(&["set", p, "a", "b", "c", "1"]).status.success());
    for args in [vec!["set", p, "a", "b", "c", "d", "1"], vec!["set", p, "a", "b", "c", "d", "e", "1"]] {
        let out = eterna(&args);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stderr(&out), "eterna: root[\"a\"][\"b\"][\"c\"] is an int, not a container", "{args:?}");
    }
    for args in [vec!["get", p, "a", "b", "c", "d"], vec!["del", p, "a", "b", "c", "d"]] {
        let out = eterna(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).starts_with("eterna: root[\"a\"][\"b\"][\"c\"] is an int, not a "), "{args:?}");
    }
    assert_eq!(json(&eterna(&["dump", p])), serde_json::json!({"a": {"b": {"c": 1}}}));
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
        let text = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        // `check` reports corruption with exit 1; the other commands refuse the damaged
        // file with exit 2 and point at `check`.
        let want = if args[0] == "check" { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {text}");
        assert!(text.contains("corrupt") && !text.contains("panicked"), "{args:?}: {text}");
    }
}
