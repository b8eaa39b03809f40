//! Crash: a child process commits in a loop (collecting and compacting now and then) and is
//! killed with SIGKILL at random moments, 200 times over the test. After each kill the heap
//! reopens (recovering the dead writer's transaction) to exactly a committed prefix of the
//! writes, and `check` passes, before the recovery and after it.

use eterna::{Durability, Heap, Input, Key, Options, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD: &str = "ETERNA_CRASH_CHILD";
const SLOTS: i64 = 40;

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

/// What transaction `i` writes into slot `i % SLOTS`: long enough to live in the heap.
fn payload(i: i64) -> String {
    format!("written by transaction {i}: {}", "x".repeat((i % 300) as usize))
}

/// The child: continues from the committed counter, one transaction per step, printing
/// each counter value after its commit returns.
fn child(path: &str, durability: Durability) {
    let heap = Heap::open(path, Options { durability, ..Options::default() }).unwrap();
    let start = match heap.read().unwrap().get(&[k("counter")]).unwrap() {
        Some(Value::Int(i)) => i + 1,
        _ => 0,
    };
    let mut out = std::io::stdout();
    for i in start.. {
        let mut w = heap.write().unwrap();
        w.set(&[k("counter")], &Input::Int(i)).unwrap();
        w.set(&[k("slots"), Key::Int(i % SLOTS)], &Input::Str(payload(i))).unwrap();
        if i % 7 == 0 {
            // Some churn of nested containers too.
            w.set(&[k("nested")], &Input::List((0..(i % 50)).map(Input::Int).collect())).unwrap();
        }
        w.commit().unwrap();
        writeln!(out, "\nC {i}").unwrap();
        out.flush().unwrap();
        // Collections and compactions get killed half-way too.
        if i % 13 == 0 {
            heap.compact().unwrap();
        } else if i % 11 == 0 {
            heap.gc().unwrap();
        } else if i % 5 == 0 {
            heap.gc_young().unwrap();
        }
    }
}

/// The state after `c` committed transactions' worth of counter values (0..=c).
fn verify(path: &Path, printed: Option<i64>) -> i64 {
    // Right after the kill, before anything recovers: what the dead writer left checks
    // consistent (its side metadata as far as a crash cannot break it).
    eterna::check::check(path).unwrap_or_else(|e| panic!("check after a kill: {e}"));
    let heap = Heap::open(path, Options::default()).unwrap();
    let r = heap.read().unwrap();
    let c = match r.get(&[k("counter")]).unwrap() {
        Some(Value::Int(i)) => i,
        other => panic!("counter missing: {other:?}"),
    };
    // The last commit the child printed is durable; one more may have committed unprinted.
    if let Some(p) = printed {
        assert!(c == p || c == p + 1, "counter {c}, last printed {p}");
    }
    for slot in 0..SLOTS.min(c + 1) {
        let latest = c - ((c - slot) % SLOTS + SLOTS) % SLOTS;
        match r.get(&[k("slots"), Key::Int(slot)]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), payload(latest), "slot {slot} at counter {c}"),
            other => panic!("slot {slot} missing at counter {c}: {other:?}"),
        }
    }
    let latest7 = c - c % 7;
    match r.get(&[k("nested")]).unwrap() {
        Some(Value::List(l)) => assert_eq!(l.len().unwrap() as i64, latest7 % 50),
        other => panic!("nested missing: {other:?}"),
    }
    drop(r);
    // The first write transaction recovers what the killed writer left.
    drop(heap.write().unwrap());
    heap.close().unwrap();
    let report = eterna::check::check(path).unwrap_or_else(|e| panic!("check after recovery: {e}"));
    assert!(!report.interrupted);
    assert_eq!(report.unreachable_blocks, 0, "recovery and close leave nothing unreachable");
    c
}

#[test]
fn sigkill_at_random_moments_leaves_a_committed_prefix() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (mode, path) = spec.split_once(':').unwrap();
        child(path, if mode == "none" { Durability::None } else { Durability::Commit });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    {
        // Seed the heap with the containers the child writes into.
        let heap = Heap::open(&path, Options::default()).unwrap();
        let mut w = heap.write().unwrap();
        w.set(&[k("counter")], &Input::Int(-1)).unwrap();
        w.set(&[k("slots")], &Input::Dict(vec![])).unwrap();
        w.set(&[k("nested")], &Input::List(vec![])).unwrap();
        w.commit().unwrap();
        heap.close().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut last = -1;
    let kills = 200;
    for round in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mode = if round % 4 == 3 { "commit" } else { "none" };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_at_random_moments_leaves_a_committed_prefix",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{mode}:{}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2_000 + seed % 40_000));
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("C ").and_then(|n| n.trim().parse::<i64>().ok()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "child panicked: {stderr}");
        let c = verify(&path, printed);
        assert!(c >= last, "a committed transaction was lost: {c} < {last}");
        last = c;
    }
    println!("{kills} kills; {} transactions committed in all", last + 1);
    assert!(last > kills as i64, "the children should commit more than one transaction per run on average");
}
