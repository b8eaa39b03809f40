//! Many processes: snapshot isolation against a committing writer, memory sharing of a
//! large dataset, a reader killed while it pins a snapshot, and a fork.

use eterna::{Heap, Input, Key, Options, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "ETERNA_MP_ROLE";
const PATH: &str = "ETERNA_MP_PATH";
const ACCOUNTS: i64 = 16;
const TOTAL: i64 = ACCOUNTS * 1000;

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

fn readonly(path: &Path) -> Heap {
    Heap::open(path, Options { readonly: true, ..Options::default() }).unwrap()
}

/// Re-runs this test binary as a child playing `role` on the heap at `path`.
fn spawn(test: &str, role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PATH, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The value the child printed after `tag`.
fn report(out: &std::process::Output, tag: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
    text.lines().filter_map(|l| l.split_once(tag).map(|(_, v)| v.trim().to_string())).collect()
}

fn role() -> Option<(String, PathBuf)> {
    Some((std::env::var(ROLE).ok()?, PathBuf::from(std::env::var(PATH).ok()?)))
}

// ----- snapshot isolation ---------------------------------------------------------------

fn sum_reader(path: &Path) {
    let heap = readonly(path);
    let stop = path.with_extension("stop");
    let mut snapshots = 0u64;
    while !stop.exists() {
        let r = heap.read().unwrap();
        let mut sum = 0;
        for a in 0..ACCOUNTS {
            match r.get(&[k("accounts"), Key::Int(a)]).unwrap() {
                Some(Value::Int(v)) => sum += v,
                other => panic!(
                    "account {a}: {other:?} in snapshot {} (root keys {:?})",
                    r.txn_id(),
                    r.root().unwrap().keys().unwrap()
                ),
            }
        }
        assert_eq!(sum, TOTAL, "snapshot {} sums to {sum}", r.txn_id());
        snapshots += 1;
    }
    println!("\nSNAPSHOTS {snapshots}");
}

#[test]
fn snapshots_of_four_reader_processes_always_sum_to_the_invariant() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "sum");
        return sum_reader(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank");
    let heap =
        Heap::open(&path, Options { durability: eterna::Durability::None, ..Options::default() }).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("accounts")], &Input::Dict((0..ACCOUNTS).map(|a| (Input::Int(a), Input::Int(1000))).collect()))
        .unwrap();
    w.commit().unwrap();
    let readers: Vec<Child> = (0..4)
        .map(|_| spawn("snapshots_of_four_reader_processes_always_sum_to_the_invariant", "sum", &path))
        .collect();
    let mut seed = 88172645463325252u64;
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (from, to) = ((seed % ACCOUNTS as u64) as i64, ((seed >> 20) % ACCOUNTS as u64) as i64);
        let amount = ((seed >> 40) % 50) as i64;
        let mut w = heap.write().unwrap();
        let bal = |w: &eterna::WriteTxn, a: i64| match w.get(&[k("accounts"), Key::Int(a)]).unwrap() {
            Some(Value::Int(v)) => v,
            other => panic!("{other:?}"),
        };
        let (fb, tb) = (bal(&w, from), bal(&w, to));
        w.set(&[k("accounts"), Key::Int(from)], &Input::Int(fb - amount)).unwrap();
        let tb = if from == to { fb - amount } else { tb };
        w.set(&[k("accounts"), Key::Int(to)], &Input::Int(tb + amount)).unwrap();
        w.commit().unwrap();
    }
    std::fs::write(path.with_extension("stop"), b"").unwrap();
    for child in readers {
        let out = child.wait_with_output().unwrap();
        let n: u64 = report(&out, "SNAPSHOTS").last().unwrap().parse().unwrap();
        println!("a reader process took {n} consistent snapshots");
        assert!(n > 0);
    }
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}

// ----- memory sharing ------------------------------------------------------------------

fn private_dirty_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn scan_reader(path: &Path) {
    let before = private_dirty_kib();
    let heap = readonly(path);
    let r = heap.read().unwrap();
    let data = match r.get(&[k("data")]).unwrap() {
        Some(Value::Dict(d)) => d,
        other => panic!("{other:?}"),
    };
    let (mut n, mut bytes) = (0u64, 0u64);
    for item in data.iter().unwrap() {
        let (key, value) = item.unwrap();
        if let (Value::Str(a), Value::Str(b)) = (key, value) {
            bytes += (a.as_str().len() + b.as_str().len()) as u64;
            n += 1;
        }
    }
    let after = private_dirty_kib();
    println!("\nREAD {n} {bytes} {before} {after}");
}

#[test]
fn four_reader_processes_share_one_copy_of_a_million_entries() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "scan");
        return scan_reader(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared");
    let n = 1_000_000i64;
    {
        let heap = Heap::open(&path, Options { durability: eterna::Durability::None, ..Options::default() })
            .unwrap();
        let mut w = heap.write().unwrap();
        let entries = (0..n)
            .map(|i| {
                (
                    Input::Str(format!("key:{i:010}")),
                    Input::Str(format!("value number {i} {}", "v".repeat(20))),
                )
            })
            .collect();
        w.set(&[k("data")], &Input::Dict(entries)).unwrap();
        w.commit().unwrap();
        let s = heap.stats().unwrap();
        println!("heap: {} live bytes, {} MiB on disk", s.bytes_live, s.disk_bytes >> 20);
        assert!(s.bytes_live > 50 << 20, "the dataset must exceed 50 MiB");
        heap.close().unwrap();
    }
    let children: Vec<Child> = (0..4)
        .map(|_| spawn("four_reader_processes_share_one_copy_of_a_million_entries", "scan", &path))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let line = report(&out, "READ").pop().unwrap();
        let f: Vec<u64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
        let (entries, bytes, before, after) = (f[0], f[1], f[2], f[3]);
        println!(
            "reader read {entries} entries ({} MiB of keys and values): Private_Dirty {before} KiB before, {after} KiB after",
            bytes >> 20
        );
        assert_eq!(entries, n as u64);
        assert!(after <= 5 * 1024, "a reader's private dirty memory grew to {after} KiB");
    }
}

// ----- a reader killed while it pins a snapshot -----------------------------------------

fn pinning_reader(path: &Path) {
    let heap = readonly(path);
    let r = heap.read().unwrap();
    println!("\nPINNED {}", r.txn_id());
    std::thread::sleep(Duration::from_secs(600));
    drop(r);
}

#[test]
fn a_killed_readers_slot_is_reaped_and_its_space_reused() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "pin");
        return pinning_reader(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinned");
    let heap =
        Heap::open(&path, Options { durability: eterna::Durability::None, ..Options::default() }).unwrap();
    let big =
        |i: i64| Input::List((0..2000).map(|j| Input::Str(format!("item {j} of version {i}"))).collect());
    let mut w = heap.write().unwrap();
    w.set(&[k("doc")], &big(0)).unwrap();
    w.commit().unwrap();
    let base = heap.stats().unwrap().blocks_live;

    let mut child = spawn("a_killed_readers_slot_is_reaped_and_its_space_reused", "pin", &path);
    // Wait until the child has pinned its snapshot.
    let started = Instant::now();
    while heap.stats().unwrap().readers == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the reader never pinned");
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = heap.stats().unwrap();
    assert_eq!(s.reader_list.len(), 1);
    assert_eq!(s.reader_list[0].0, child.id() as u64, "stats names the pinning process");
    for i in 1..=5 {
        let mut w = heap.write().unwrap();
        w.set(&[k("doc")], &big(i)).unwrap();
        w.commit().unwrap();
    }
    let s = heap.stats().unwrap();
    let held = s.blocks_live;
    assert!(held > base + 2000, "the pinned version must stay allocated ({held} vs {base})");
    assert!(s.blocks_pending >= 2000, "stats shows what waits for the reader ({})", s.blocks_pending);

    child.kill().unwrap();
    child.wait().unwrap();
    // The next commits reap the dead reader's slot and reuse what it pinned.
    for i in 6..=8 {
        let mut w = heap.write().unwrap();
        w.set(&[k("doc")], &big(i)).unwrap();
        w.commit().unwrap();
    }
    let after = heap.stats().unwrap();
    println!(
        "blocks live: {base} alone, {held} while a reader pinned an old version, {} after it was killed",
        after.blocks_live
    );
    assert_eq!(after.readers, 0);
    // Only the last commit's replaced version waits (one commit, for the fallback slot).
    assert!(after.blocks_pending <= 2200, "{} blocks still wait", after.blocks_pending);
    assert!(after.blocks_live < base + 2 * 2100, "space pinned by the dead reader was not reused");
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}

// ----- fork ----------------------------------------------------------------------------

#[test]
fn a_forked_child_reads_and_is_refused_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forked");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("greeting")], &Input::Str("hello from the parent".into())).unwrap();
    w.commit().unwrap();
    // SAFETY: the child only reads the heap, writes one line to a pipe-less file and calls
    // `_exit`; no lock the parent's other threads might hold is needed on that path beyond
    // the allocator, which the test harness's idle threads do not hold while we fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            let r = heap.read().ok()?;
            let ok_read = matches!(r.get(&[k("greeting")]).ok()?, Some(Value::Str(s)) if s.as_str() == "hello from the parent");
            drop(r);
            let refused = matches!(heap.write(), Err(eterna::TxnError::Forked { .. }));
            Some(if ok_read && refused { 0 } else { 1 })
        })()
        .unwrap_or(2);
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    // The parent still writes; the child's reader slot does not pin anything.
    let mut w = heap.write().unwrap();
    w.set(&[k("greeting")], &Input::Str("still writing".into())).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}

// ----- the writer lock -----------------------------------------------------------------

fn stuck_writer(path: &Path) {
    let heap = Heap::open(path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    // Half a transaction: allocated, never committed.
    for i in 0..1000 {
        w.set(&[k(&format!("uncommitted {i}"))], &Input::Str("x".repeat(100))).unwrap();
    }
    println!("\nLOCKED");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_second_writer_times_out_then_proceeds_when_the_first_is_killed() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "stuck");
        return stuck_writer(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked");
    {
        let heap = Heap::open(&path, Options::default()).unwrap();
        let mut w = heap.write().unwrap();
        w.set(&[k("committed")], &Input::Int(1)).unwrap();
        w.commit().unwrap();
        heap.close().unwrap();
    }
    let mut child = spawn("a_second_writer_times_out_then_proceeds_when_the_first_is_killed", "stuck", &path);
    wait_for(&mut child, "LOCKED");
    let opts = Options { lock_timeout: Some(Duration::from_millis(300)), ..Options::default() };
    let heap = Heap::open(&path, opts).unwrap();
    let started = Instant::now();
    match heap.write() {
        Err(eterna::TxnError::LockTimeout { waited }) => {
            assert!(waited >= Duration::from_millis(300));
            println!(
                "second writer gave up after {:?}: {}",
                started.elapsed(),
                eterna::TxnError::LockTimeout { waited }
            );
        }
        Err(e) => panic!("expected a lock timeout, got {e}"),
        Ok(_) => panic!("a second writer got the lock"),
    }
    // Readers are not blocked by the writer.
    assert!(matches!(heap.read().unwrap().get(&[k("committed")]).unwrap(), Some(Value::Int(1))));
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel dropped the dead writer's lock: this writer proceeds, recovering first.
    let mut w = heap.write().unwrap();
    assert!(w.get(&[k("uncommitted 0")]).unwrap().is_none());
    w.set(&[k("committed")], &Input::Int(2)).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
    let report = eterna::check::check(&path).unwrap();
    assert_eq!(report.unreachable_blocks, 0, "recovery freed the dead writer's allocations");
}

/// Reads stdout of `child` until `tag` appears.
fn wait_for(child: &mut Child, tag: &str) {
    let stdout = child.stdout.as_mut().unwrap();
    let mut seen = String::new();
    while !seen.contains(tag) {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(stdout, &mut buf).unwrap();
        assert!(n > 0, "the child ended before printing {tag}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn after_a_writer_dies_an_old_snapshot_does_not_block_the_next_writer() {
    if let Some((role, path)) = role() {
        return match role.as_str() {
            "pin" => pinning_reader(&path),
            _ => stuck_writer(&path),
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinned-crash");
    {
        let heap = Heap::open(&path, Options::default()).unwrap();
        let mut w = heap.write().unwrap();
        w.set(
            &[k("doc")],
            &Input::List((0..500).map(|i| Input::Str(format!("item {i} of the first version"))).collect()),
        )
        .unwrap();
        w.commit().unwrap();
        heap.close().unwrap();
    }
    let test = "after_a_writer_dies_an_old_snapshot_does_not_block_the_next_writer";
    let mut reader = spawn(test, "pin", &path);
    wait_for(&mut reader, "PINNED");
    let mut writer = spawn(test, "stuck", &path);
    wait_for(&mut writer, "LOCKED");
    writer.kill().unwrap();
    writer.wait().unwrap();
    // The reader still pins the state from before the dead writer started: the next writer
    // must not rebuild from the current state (it would free what the reader reads) and
    // must not wait for the reader either.
    let heap =
        Heap::open(&path, Options { lock_timeout: Some(Duration::from_secs(10)), ..Options::default() })
            .unwrap();
    let started = Instant::now();
    let mut w = heap.write().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the writer waited for an old snapshot");
    w.set(&[k("doc"), Key::Int(0)], &Input::Str("changed".into())).unwrap();
    w.commit().unwrap();
    reader.kill().unwrap();
    reader.wait().unwrap();
    heap.close().unwrap();
    let report = eterna::check::check(&path).unwrap();
    println!("left for the collector: {} blocks", report.unreachable_blocks);
}

// ----- a writer that dies with pool bits it has not written back ------------------------

const DOC: i64 = 500;
const LAGGED: i64 = 300;

/// Pins the current state until `PATH.stop` appears, then reads its whole snapshot.
fn pin_then_read(path: &Path) {
    let heap = readonly(path);
    let r = heap.read().unwrap();
    println!("\nPINNED {}", r.txn_id());
    let stop = path.with_extension("stop");
    let started = Instant::now();
    while !stop.exists() {
        // A parent that failed never writes the stop file: do not outlive it for long.
        assert!(started.elapsed() < Duration::from_secs(120), "never told to stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 0..DOC {
        match r.get(&[k("doc"), Key::Int(i)]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), format!("item {i} of the first version")),
            other => panic!("the pinned snapshot's item {i} became {other:?}"),
        }
    }
    println!("\nREAD {DOC}");
}

/// Commits `LAGGED` one-key transactions (too few to reach a reuse batch, so the pool
/// bits of what they allocate stay in this process), then stalls until killed.
fn commit_then_stall(path: &Path) {
    let heap = Heap::open(path, Options::default()).unwrap();
    for i in 0..LAGGED {
        let mut w = heap.write().unwrap();
        w.set(&[k("doc"), Key::Int(i % DOC)], &Input::Str(format!("changed {i}"))).unwrap();
        w.set(&[k(&format!("new {i}"))], &Input::Str(format!("value {i} ").repeat(1 + i as usize % 20)))
            .unwrap();
        w.commit().unwrap();
    }
    println!("\nCOMMITTED");
    std::thread::sleep(Duration::from_secs(600));
}

/// What `commit_then_stall` committed must read back unchanged.
fn assert_lagged_commits(w: &eterna::WriteTxn<'_>) {
    for i in 0..LAGGED {
        let want = format!("value {i} ").repeat(1 + i as usize % 20);
        match w.get(&[k(&format!("new {i}"))]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), want, "key new {i}"),
            other => panic!("key new {i}: {other:?}"),
        }
        match w.get(&[k("doc"), Key::Int(i)]).unwrap() {
            Some(Value::Str(s)) => assert_eq!(s.as_str(), format!("changed {i}"), "doc item {i}"),
            other => panic!("doc item {i}: {other:?}"),
        }
    }
}

/// The file's pool bits lag a running writer (it writes them back once per reuse batch).
/// If it dies while another process pins an older state, the next writer cannot rebuild
/// them by tracing (the pinned state reaches blocks the current one does not): it must
/// take every block of every pool in use as live, so that nothing the dead writer
/// committed, nor anything the pinned snapshot reads, is handed out again.
#[test]
fn a_writer_killed_with_unwritten_pool_bits_loses_nothing_committed_or_pinned() {
    let test = "a_writer_killed_with_unwritten_pool_bits_loses_nothing_committed_or_pinned";
    if let Some((role, path)) = role() {
        return match role.as_str() {
            "pin" => pin_then_read(&path),
            _ => commit_then_stall(&path),
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lagging");
    {
        let heap = Heap::open(&path, Options::default()).unwrap();
        let mut w = heap.write().unwrap();
        let items = (0..DOC).map(|i| Input::Str(format!("item {i} of the first version"))).collect();
        w.set(&[k("doc")], &Input::List(items)).unwrap();
        w.commit().unwrap();
        heap.close().unwrap();
    }
    let mut reader = spawn(test, "pin", &path);
    wait_for(&mut reader, "PINNED");
    let mut writer = spawn(test, "stall", &path);
    wait_for(&mut writer, "COMMITTED");
    writer.kill().unwrap();
    writer.wait().unwrap();

    let heap = Heap::open(&path, Options::default()).unwrap();
    let w = heap.write().unwrap();
    assert_lagged_commits(&w);
    drop(w);
    // Allocate plenty: with the dead writer's bits lost, these would land on its blocks.
    for round in 0..10 {
        let mut w = heap.write().unwrap();
        for j in 0..300 {
            let text = format!("filler {round}-{j} ").repeat(1 + j % 25);
            w.set(&[k(&format!("filler {round}-{j}"))], &Input::Str(text)).unwrap();
        }
        w.commit().unwrap();
    }
    let w = heap.write().unwrap();
    assert_lagged_commits(&w);
    drop(w);
    std::fs::write(path.with_extension("stop"), b"").unwrap();
    let out = reader.wait_with_output().unwrap();
    assert_eq!(report(&out, "READ"), vec![DOC.to_string()], "the pinned snapshot read back intact");
    heap.close().unwrap();
    let report = eterna::check::check(&path).unwrap();
    assert_eq!(report.unreachable_blocks, 0, "the recovery's collection retired every unreachable block");
}

// ----- writers of several processes take turns -------------------------------------------

/// Writes `b` while the parent holds the writer's role between its transactions, then
/// keeps the heap open (and the role) until `PATH.stop` appears.
fn turn_taker(path: &Path) {
    let heap =
        Heap::open(path, Options { lock_timeout: Some(Duration::from_secs(20)), ..Options::default() })
            .unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("b")], &Input::Int(2)).unwrap();
    w.commit().unwrap();
    println!("\nWROTE");
    let stop = path.with_extension("stop");
    while !stop.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    heap.close().unwrap();
}

#[test]
fn writers_of_two_processes_take_turns_while_both_keep_the_heap_open() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "turn");
        return turn_taker(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turns");
    let heap =
        Heap::open(&path, Options { lock_timeout: Some(Duration::from_secs(20)), ..Options::default() })
            .unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("a")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    // This process holds the writer's role and sits between transactions: the child's
    // request makes it hand the role over.
    let mut child = spawn("writers_of_two_processes_take_turns_while_both_keep_the_heap_open", "turn", &path);
    wait_for(&mut child, "WROTE");
    // Now the child holds it between its transactions; this write asks for it back.
    let mut w = heap.write().unwrap();
    assert!(matches!(w.get(&[k("b")]).unwrap(), Some(Value::Int(2))), "the child's commit is seen");
    w.set(&[k("c")], &Input::Int(3)).unwrap();
    // A transaction in progress keeps the role until it ends: the child, asking again,
    // waits for the commit.
    std::fs::write(path.with_extension("stop"), b"").unwrap();
    w.commit().unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let r = heap.read().unwrap();
    for (key, want) in [("a", 1), ("b", 2), ("c", 3)] {
        assert!(matches!(r.get(&[k(key)]).unwrap(), Some(Value::Int(v)) if v == want), "{key}");
    }
    drop(r);
    heap.close().unwrap();
    let report = eterna::check::check(&path).unwrap();
    assert_eq!(report.unreachable_blocks, 0, "each handover freed what no snapshot pinned");
}

#[test]
fn a_write_waiting_for_another_process_gets_the_lock_when_its_transaction_ends() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "turn");
        return turn_taker(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid-txn");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("a")], &Input::Int(1)).unwrap();
    let mut child =
        spawn("a_write_waiting_for_another_process_gets_the_lock_when_its_transaction_ends", "turn", &path);
    // The child waits while this transaction runs, however long.
    std::thread::sleep(Duration::from_millis(300));
    let mut probe = [0u8; 4096];
    let stdout = child.stdout.as_mut().unwrap();
    // SAFETY: makes reads of the child's stdout pipe, which this process owns, non-blocking.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(stdout);
        libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
    }
    let early = std::io::Read::read(stdout, &mut probe).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&probe[..early]).contains("WROTE"),
        "the child wrote while this process was in a transaction"
    );
    w.commit().unwrap();
    // SAFETY: back to blocking reads on the same pipe.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(stdout);
        libc::fcntl(fd, libc::F_SETFL, 0);
    }
    wait_for(&mut child, "WROTE");
    std::fs::write(path.with_extension("stop"), b"").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let r = heap.read().unwrap();
    assert!(matches!(r.get(&[k("a")]).unwrap(), Some(Value::Int(1))));
    assert!(matches!(r.get(&[k("b")]).unwrap(), Some(Value::Int(2))));
    drop(r);
    heap.close().unwrap();
    eterna::check::check(&path).unwrap();
}

// ----- fork: what began in the parent stays the parent's ---------------------------------

#[test]
fn a_transaction_or_snapshot_begun_before_fork_is_refused_in_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inherited");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("old")], &Input::Str("committed".into())).unwrap();
    w.commit().unwrap();
    let r = heap.read().unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("items")], &Input::List((0..200).map(|i| Input::Str(format!("parent {i}"))).collect()))
        .unwrap();
    // SAFETY: the child only calls into the heap it inherited and `_exit`s; the heap's
    // mutexes are held by this thread (the transaction) or by nobody.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let refused_set = matches!(
            w.set(&[k("items")], &Input::Str("child".into())),
            Err(eterna::TxnError::Inherited { .. })
        );
        let refused_get = matches!(w.get(&[k("old")]), Err(eterna::TxnError::Inherited { .. }));
        let refused_read = matches!(r.get(&[k("old")]), Err(eterna::TxnError::Inherited { .. }));
        let refused_commit = matches!(w.commit(), Err(eterna::TxnError::Inherited { .. }));
        let code = refused_set && refused_get && refused_read && refused_commit;
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(if code { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    w.commit().unwrap();
    drop(r);
    let r = heap.read().unwrap();
    match r.get(&[k("items")]).unwrap() {
        Some(Value::List(l)) => assert_eq!(l.len().unwrap(), 200),
        other => panic!("items: {other:?}"),
    }
    drop(r);
    heap.close().unwrap();
    let report = eterna::check::check(&path).unwrap();
    assert_eq!(report.unreachable_blocks, 0);
}

#[test]
fn a_forked_child_lets_go_of_the_inherited_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockfd");
    let heap = Heap::open(&path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    w.set(&[k("x")], &Input::Int(1)).unwrap();
    w.commit().unwrap();
    // This process holds the writer lock between transactions; a child inherits the lock
    // file's descriptor, and with it the lock, unless it closes its copy.
    let go = path.with_extension("go");
    // SAFETY: the child calls `Heap::after_fork`, polls for a file and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        heap.after_fork();
        std::fs::write(&go, b"").unwrap();
        std::thread::sleep(Duration::from_secs(30));
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    heap.close().unwrap();
    // The child still lives; a new handle (its own open file description) can write.
    let again =
        Heap::open(&path, Options { lock_timeout: Some(Duration::from_secs(5)), ..Options::default() })
            .unwrap();
    let got = again.write().map(|mut w| {
        w.set(&[k("x")], &Input::Int(2)).unwrap();
        w.commit().unwrap()
    });
    // SAFETY: ends and reaps the child forked above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    got.expect("the writer lock was free once the parent closed");
    again.close().unwrap();
}
