//! Layer 6: the public API. [`Heap::open`] a file; [`Heap::read`] a snapshot whose views
//! borrow it; [`Heap::write`] a transaction that commits or, dropped, aborts (heed's
//! style).

use crate::alloc::{Allocator, Durability, Stats};
use crate::error::{Corruption, OpenError};
use crate::format::{
    meta_slot_offset, Header, Meta, ARENA, CONTROL_RESERVED, HEADER_LEN, META_LEN, META_WRITER,
};
use crate::gc;
use crate::object::{walk, Ctx, Dict, Input, Key, Value, Word};
use crate::region::{process_start, Access, LockTable, ReadMap, SlotInfo, View};
use crate::txn::{self, get_at, OffsetSet, Pending, TxnError, WriteState};
use rustix::fs::{flock, FlockOperation};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How to open a heap.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Open for reading only: never take the writer lock, never write the heap file.
    pub readonly: bool,
    /// Create the file if it does not exist (writers only).
    pub create: bool,
    /// How much each commit syncs.
    pub durability: Durability,
    /// How long `write` waits for another process's writer lock; `None` waits for good.
    pub lock_timeout: Option<Duration>,
    /// Compact automatically after a commit that leaves too much free space inside small
    /// pools (see `docs/design.md`, "Automatic compaction").
    pub auto_compact: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            readonly: false,
            create: true,
            durability: Durability::Commit,
            lock_timeout: None,
            auto_compact: true,
        }
    }
}

/// Automatic compaction starts when free space inside small pools exceeds both this many
/// bytes and `ratio` times the live bytes in them.
const AUTO_COMPACT_MIN_FREE: u64 = 8 << 20;
/// The starting (and lowest) `ratio`: pools half empty on average.
const AUTO_COMPACT_RATIO: u64 = 1;
/// The highest `ratio` the back-off reaches.
const AUTO_COMPACT_MAX_RATIO: u64 = 16;

/// Blocks replaced by commits are freed once this many wait (and no snapshot pins
/// them): at least `REUSE_BATCH_MIN`, or 1/256 of the blocks allocated, so that a batch
/// covers more of a large heap's pool records. What waits is garbage the file holds for a
/// while: at most 0.4 % of the blocks beyond the minimum.
fn reuse_batch(blocks_allocated: u64) -> u64 {
    REUSE_BATCH_MIN.max(blocks_allocated / 256)
}
/// The smallest batch of replaced blocks freed at once.
const REUSE_BATCH_MIN: u64 = 4096;

/// The writer's side of an open heap, set up by a write transaction when this process
/// does not hold the writer's role, and kept until the heap closes or another process asks
/// for the role (see "Writer handover" in docs/design.md).
struct Writer {
    alloc: Allocator,    // the allocator, owning the read-write mapping
    pending: Pending,    // blocks replaced by commits, waiting for readers
    auto_ratio: u64,     // automatic compaction's current threshold, see `AUTO_COMPACT_RATIO`
    young: OffsetSet,    // blocks committed since the last collection (the young generation)
    collect: bool,       // a full collection is due before the first transaction (see `start_writer`)
    _releaser: Releaser, // stops the thread that hands the role over between transactions
    lock: File,          // holds the writer lock (flock) while the role is this process's
}

/// How often a writer between transactions looks whether another process waits for the
/// writer lock.
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// Stops its writer's release thread when the writer is dropped.
struct Releaser(Arc<AtomicBool>);

impl Drop for Releaser {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Gives the writer's role up: frees the queued blocks no snapshot pins (the rest, pinned
/// by other processes' snapshots, are left to the collector), publishes a clean state,
/// fully synced, and closes the lock file, which releases the writer lock.
fn release_writer(mut w: Writer, table: &LockTable) -> Result<(), TxnError> {
    let oldest = table.oldest(u64::MAX);
    w.pending.free_up_to(&mut w.alloc, oldest)?;
    let meta = *w.alloc.meta();
    w.alloc.publish(meta.root, meta.shared, 0, Durability::Full)?;
    Ok(())
}

/// Starts the thread that hands the writer's role over while this process is between
/// transactions: it wakes every `RELEASE_POLL`, and when another process asks for the
/// lock it takes the writer mutex (waiting for a running transaction, whose end hands
/// over itself) and releases. It ends with its writer.
fn spawn_releaser(writer: Weak<Mutex<Option<Writer>>>, table: Arc<LockTable>) -> Releaser {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let run = move || loop {
        std::thread::sleep(RELEASE_POLL);
        if flag.load(Ordering::SeqCst) {
            return;
        }
        if !table.writer_wanted() {
            continue;
        }
        let Some(writer) = writer.upgrade() else { return };
        let mut guard = writer.lock().unwrap_or_else(|p| p.into_inner());
        // The writer this thread serves may have been released meanwhile.
        if flag.load(Ordering::SeqCst) {
            return;
        }
        if let Some(w) = guard.take() {
            let _ = release_writer(w, &table);
        }
        return;
    };
    // Without the thread (threads exhausted) the role is still handed over at the end of
    // each transaction.
    let _ = std::thread::Builder::new().name("eterna-writer".into()).spawn(run);
    Releaser(stop)
}

/// A number that tells the calling thread from every other thread alive.
fn thread_key() -> usize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.with(|k| k as *const u8 as usize)
}

/// This process's snapshots, and the reader-table slot that publishes the oldest.
#[derive(Default)]
struct Readers {
    pins: BTreeMap<u64, usize>, // live snapshots by state
    slot: Option<usize>,        // our slot in the reader table, once claimed
    pid: u32,                   // the process that claimed it (a forked child claims its own)
}

/// An open heap file. Share it between threads by reference; snapshots and the write
/// transaction borrow it.
pub struct Heap {
    path: PathBuf,                      // the file
    seed: u64,                          // the hash seed from the header
    options: Options,                   // as opened
    pid: u32,                           // the process that opened it
    readmap: ReadMap,                   // the read-only mapping snapshots use
    table: Arc<LockTable>,              // the reader table shared by every process
    readers: Mutex<Readers>,            // this process's snapshots
    writer: Arc<Mutex<Option<Writer>>>, // this process's writer's role, while it holds it
    in_txn: AtomicUsize,                // `thread_key` of the thread in a write transaction, or 0
}

/// Takes the writer lock, asking its holder (through the reader table) to hand it over.
fn lock_writer(path: &Path, timeout: Option<Duration>, table: &LockTable) -> Result<File, TxnError> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let started = Instant::now();
    loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                table.writer_got();
                return Ok(f);
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                if timeout.is_some_and(|t| started.elapsed() >= t) {
                    return Err(TxnError::LockTimeout { waited: started.elapsed() });
                }
                table.want_writer();
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(TxnError::Io(e.into())),
        }
    }
}

fn rebuild_error(e: crate::alloc::RebuildError) -> TxnError {
    match e {
        crate::alloc::RebuildError::Corrupt(c) => TxnError::Corrupt(c),
        crate::alloc::RebuildError::Io(e) => TxnError::Io(e),
    }
}

/// The committed state as the file behind `readmap` says now.
fn committed_meta(readmap: &ReadMap) -> Result<Meta, OpenError> {
    let v = readmap.view(CONTROL_RESERVED)?;
    let m = v.as_slice();
    let slots = [0, 1].map(|i| {
        let at = meta_slot_offset(i) as usize;
        Meta::decode(&m[at..at + META_LEN])
    });
    let (_, meta) = Meta::current(slots)
        .ok_or_else(|| Corruption::new(meta_slot_offset(0), "neither meta slot is valid"))?;
    let need = (meta.arenas + 1) * ARENA;
    let len = readmap.file_len()?;
    if len < need {
        return Err(OpenError::Truncated { len, expected: need });
    }
    Ok(meta)
}

fn open_error(e: OpenError) -> TxnError {
    match e {
        OpenError::Io(e) => TxnError::Io(e),
        OpenError::Corrupt(c) => TxnError::Corrupt(c),
        other => TxnError::Corrupt(Corruption::new(0, other.to_string())),
    }
}

impl Heap {
    /// Opens (or with `options.create`, creates) the heap at `path`, and the reader table
    /// beside it (`PATH-lock`). Any number of processes may open a heap; a
    /// [`write`](Self::write) takes the writer lock, which the process keeps between its
    /// transactions until the heap closes or another process asks for it.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Heap, OpenError> {
        let path = path.as_ref();
        if !options.readonly && options.create && !path.exists() {
            match Self::create(path) {
                Ok(()) => {}
                // Another process created it first: open what it made.
                Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let readmap = ReadMap::open(path)?;
        let header = {
            let v = readmap.view(CONTROL_RESERVED.min(readmap.file_len()?))?;
            if v.as_slice().len() < HEADER_LEN {
                return Err(OpenError::NotEterna);
            }
            Header::decode(&v.as_slice()[..HEADER_LEN]).map_err(|e| match e {
                crate::format::HeaderError::NotEterna => OpenError::NotEterna,
                crate::format::HeaderError::Version(found) => {
                    OpenError::UnsupportedVersion { found, supported: crate::format::FORMAT_VERSION }
                }
                // Worded as `Allocator::open` and `eterna check` word it.
                crate::format::HeaderError::Checksum => {
                    OpenError::Corrupt(Corruption::new(0, "file header checksum mismatch"))
                }
                other => OpenError::Corrupt(Corruption::new(0, format!("bad header: {other:?}"))),
            })?
        };
        // Check the committed state once up front, so that a bad file is an error here
        // rather than at the first read, and before the reader table is created: a file
        // that does not open leaves no `PATH-lock` behind.
        committed_meta(&readmap)?;
        let table = LockTable::open(path)?;
        let heap = Heap {
            path: path.to_path_buf(),
            seed: header.seed,
            options,
            pid: crate::region::pid(),
            readmap,
            table: Arc::new(table),
            readers: Mutex::new(Readers::default()),
            writer: Arc::new(Mutex::new(None)),
            in_txn: AtomicUsize::new(0),
        };
        Ok(heap)
    }

    /// Creates the file with an empty root dict.
    fn create(path: &Path) -> Result<(), OpenError> {
        let mut alloc = Allocator::create(path)?;
        let seed = alloc.header().seed;
        let mut fresh = OffsetSet::default();
        let (mut retired, mut shared, mut born_log) = (Vec::new(), Word::EMPTY, Vec::new());
        let mut tx = txn::Tx {
            alloc: &mut alloc,
            fresh: &mut fresh,
            born_log: &mut born_log,
            retired: &mut retired,
            shared: &mut shared,
            seed,
        };
        let root = txn::new_root(&mut tx).map_err(|e| OpenError::Io(io::Error::other(e.to_string())))?;
        alloc.publish(root.0, 0, 0, Durability::Full)?;
        Ok(())
    }

    /// Takes the writer lock and opens the allocator, recovering first if the last
    /// writer died in a transaction.
    fn start_writer(&self) -> Result<Writer, TxnError> {
        let lock = lock_writer(&self.path, self.options.lock_timeout, &self.table)?;
        let mut alloc = Allocator::open_for_recovery(&self.path).map_err(open_error)?;
        let txn = alloc.meta().txn_id;
        let mut collect = false;
        if alloc.meta().flags & META_WRITER != 0 {
            // Another process's snapshot of an older state may read blocks only that state
            // reaches, which a rebuild from the current state would free. If the side
            // metadata is consistent, go on without a rebuild: the dead writer's pool bits
            // may lag what it allocated (see `Allocator::write_back`), so every block of a
            // pool in use is taken as live, and a full collection before the first
            // transaction retires what the current state does not reach. Rebuild only when
            // nobody pins an older state, or the metadata needs it (then wait for those
            // readers).
            match Allocator::open(&self.path, Access::ReadWrite) {
                Ok(strict) if self.table.oldest(txn) < txn => {
                    alloc = strict;
                    alloc.assume_in_use_pools_full().map_err(rebuild_error)?;
                    collect = true;
                }
                _ => self.recover(&mut alloc)?,
            }
        } else {
            drop(alloc);
            alloc = Allocator::open(&self.path, Access::ReadWrite).map_err(open_error)?;
        }
        // Mark the heap as being written before the first allocation, so that a crash
        // from here on is recovered at the next writer's start.
        let meta = *alloc.meta();
        alloc.publish(meta.root, meta.shared, META_WRITER, Durability::Full)?;
        Ok(Writer {
            alloc,
            pending: Pending::default(),
            auto_ratio: AUTO_COMPACT_RATIO,
            young: OffsetSet::default(),
            collect,
            _releaser: spawn_releaser(Arc::downgrade(&self.writer), self.table.clone()),
            lock,
        })
    }

    /// Frees what a dead writer's transaction left allocated: traces the committed state
    /// and rebuilds the side metadata from it. Snapshots of other processes that pin
    /// older states may still read blocks only those states reach; recovery waits for
    /// them to move on rather than free what they read.
    fn recover(&self, alloc: &mut Allocator) -> Result<(), TxnError> {
        let meta = *alloc.meta();
        let started = Instant::now();
        while self.table.oldest(meta.txn_id) < meta.txn_id {
            if self.options.lock_timeout.is_some_and(|t| started.elapsed() >= t) {
                return Err(TxnError::LockTimeout { waited: started.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let blocks = walk::reachable(alloc.region().as_slice(), &[Word(meta.root), Word(meta.shared)])?;
        alloc.rebuild(blocks).map_err(rebuild_error)?;
        alloc.publish(meta.root, meta.shared, META_WRITER, Durability::Full)?;
        Ok(())
    }

    /// The file this heap lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of this heap's file resident in this process's mappings of it (Linux
    /// `/proc/self/smaps`): what this process has mapped of the shared page cache, its
    /// snapshots' reads and (in the writer) its writes.
    pub fn resident_bytes(&self) -> io::Result<u64> {
        crate::region::resident_in_mappings(&self.path)
    }

    /// The committed state as the file says now.
    fn current_meta(&self) -> Result<Meta, OpenError> {
        committed_meta(&self.readmap)
    }

    /// This process's snapshot registry; in a child forked after `open`, a fresh one (the
    /// parent's snapshots are not the child's).
    fn readers(&self) -> MutexGuard<'_, Readers> {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        let me = crate::region::pid();
        if r.pid != me {
            *r = Readers { pins: BTreeMap::new(), slot: None, pid: me };
        }
        r
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the oldest state this process's snapshots pin.
    fn publish_pin(&self, r: &Readers) {
        if let Some(slot) = r.slot {
            self.table.pin(slot, r.pins.keys().next().copied().unwrap_or(0));
        }
    }

    /// A consistent snapshot of the last committed state. It never changes, whatever is
    /// committed later (by any process), and what it reaches is not reused while it lives.
    pub fn read(&self) -> Result<ReadTxn<'_>, TxnError> {
        let mut readers = self.readers();
        let slot = match readers.slot {
            Some(s) => s,
            None => {
                let pid = crate::region::pid() as u64;
                let s = self.table.claim(pid, process_start(pid).unwrap_or(0))?;
                readers.slot = Some(s);
                s
            }
        };
        let meta = loop {
            let meta = self.current_meta().map_err(open_error)?;
            if !readers.pins.is_empty() {
                break meta; // an older pin already protects this state
            }
            // Pin, then make sure the state did not move on before the pin was visible:
            // a writer that published later than our re-read will see the pin.
            self.table.pin(slot, meta.txn_id);
            fence(Ordering::SeqCst);
            if self.current_meta().map_err(open_error)?.txn_id == meta.txn_id {
                break meta;
            }
        };
        let view = match self.readmap.view((meta.arenas + 1) * ARENA) {
            Ok(v) => v,
            Err(e) => {
                self.publish_pin(&readers);
                return Err(e.into());
            }
        };
        *readers.pins.entry(meta.txn_id).or_default() += 1;
        Ok(ReadTxn { heap: self, view, root: Word(meta.root), txn: meta.txn_id, pid: crate::region::pid() })
    }

    /// Begins the write transaction: waits for another thread's to end. If this process
    /// does not hold the writer's role it takes the cross-process writer lock (waiting up
    /// to `Options::lock_timeout` for another process's transaction to end), and keeps it
    /// between transactions until the heap is closed or another process asks for it.
    /// Fails on a read-only heap, in a thread already in a write transaction on this heap
    /// (`TxnError::Nested`), and in a child process forked after `open` (open the heap
    /// again there).
    pub fn write(&self) -> Result<WriteTxn<'_>, TxnError> {
        if self.options.readonly {
            return Err(TxnError::ReadOnly);
        }
        if crate::region::pid() != self.pid {
            return Err(TxnError::Forked { opened_by: self.pid });
        }
        if self.in_txn.load(Ordering::SeqCst) == thread_key() {
            return Err(TxnError::Nested);
        }
        loop {
            let mut guard = self.writer();
            match guard.as_mut() {
                None => *guard = Some(self.start_writer()?),
                Some(w) if w.collect => {
                    // A recovery took every block of every pool in use as live: collect
                    // before the first transaction (the collection is one itself).
                    w.collect = false;
                    drop(guard);
                    self.gc()?;
                    continue;
                }
                Some(_) => return Ok(self.begin(guard).expect("set up")),
            }
        }
    }

    /// A transaction on the last commit, holding `guard`; `None` if no writer is set up.
    fn begin<'h>(&'h self, guard: MutexGuard<'h, Option<Writer>>) -> Option<WriteTxn<'h>> {
        let meta = *guard.as_ref()?.alloc.meta();
        let st = WriteState::new(Word(meta.root), Word(meta.shared));
        self.in_txn.store(thread_key(), Ordering::SeqCst);
        Some(WriteTxn { heap: self, guard, st, done: false })
    }

    /// Hands the writer's role over if another process asked for it: called when a
    /// transaction of this process has ended.
    fn yield_writer(&self) -> Result<(), TxnError> {
        if !self.table.writer_wanted() {
            return Ok(());
        }
        let mut guard = self.writer();
        match guard.take() {
            Some(w) => release_writer(w, &self.table),
            None => Ok(()),
        }
    }

    /// A write transaction if one can begin at once without taking anything new: this
    /// process already holds the writer's role (an earlier write set it up) and no other
    /// thread is in a transaction. `None` otherwise: it never waits and never takes the
    /// cross-process writer lock. A front end reads the last committed state through it
    /// (and then aborts it) to skip a snapshot's pin in the reader table, whose pages the
    /// next commit would otherwise find mapped twice.
    pub fn try_write_now(&self) -> Option<WriteTxn<'_>> {
        if self.options.readonly || crate::region::pid() != self.pid {
            return None;
        }
        let guard = match self.writer.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        self.begin(guard)
    }

    /// Runs the tracing collector: every block the current state does not reach, and that
    /// no earlier commit already queued, is freed once no snapshot pins an older state.
    /// Never writes an object page. One committed transaction (fully synced).
    pub fn gc(&self) -> Result<gc::Report, TxnError> {
        self.collect(gc::Kind::Full, &mut |_, _, _| {})
    }

    /// A young collection: traces only what this process committed since its last
    /// collection (committed objects never refer to younger ones, so nothing older needs
    /// tracing and no write barrier exists), and frees the young garbage. Cheap when most
    /// of the heap is old; [`gc`](Self::gc) frees the rest.
    pub fn gc_young(&self) -> Result<gc::Report, TxnError> {
        self.collect(gc::Kind::Young, &mut |_, _, _| {})
    }

    /// Compacts: a collection that also copies the objects of sparsely used small pools
    /// (and everything above them) densely into other pools, as a new version. Readers of
    /// older states keep reading the old blocks, which are freed (and their pools given
    /// back) once those readers move on.
    pub fn compact(&self) -> Result<gc::Report, TxnError> {
        self.collect(gc::Kind::Compact, &mut |_, _, _| {})
    }

    /// A collection of the given kind, reporting progress.
    pub fn collect(&self, kind: gc::Kind, progress: gc::Progress<'_>) -> Result<gc::Report, TxnError> {
        let started = Instant::now();
        let mut t = self.write()?;
        let seed = self.seed;
        let w = t.guard.as_mut().expect("a write transaction holds a writer");
        let disk_before = w.alloc.region().sizes()?.1;
        let mut report = gc::collect(&mut w.alloc, &mut t.st, &w.pending, seed, kind, &w.young, progress)?;
        report.disk_before = disk_before;
        let txn = t.commit_with(Durability::Full, false)?;
        // The state is fully synced, so a power cut falls back to no state older than
        // `txn`: what it retired may be freed as soon as no snapshot pins an older state.
        let mut guard = self.writer();
        let w = guard.as_mut().expect("the writer stays set up");
        // Everything committed so far is old now: what survived was traced or is older.
        w.young.clear();
        fence(Ordering::SeqCst);
        w.pending.free_up_to(&mut w.alloc, self.table.oldest(txn).min(txn))?;
        let meta = *w.alloc.meta();
        report.txn_id = w.alloc.publish(meta.root, meta.shared, META_WRITER, Durability::Full)?;
        report.blocks_deferred = w.pending.len() as u64;
        report.disk_after = w.alloc.region().sizes()?.1;
        report.seconds = started.elapsed().as_secs_f64();
        drop(guard);
        self.yield_writer()?;
        Ok(report)
    }

    /// Automatic compaction, with its self-tuning: a compaction that leaves the small pools
    /// still above the threshold (readers pin the old blocks, or the free space is in
    /// pools that stay) doubles the threshold's ratio, so that the next commits do not
    /// compact again for nothing; one that brings them under it resets the ratio.
    ///
    /// It runs after the user's commit has been published, so it never fails that commit:
    /// a compaction that fails (a full disk, say) aborts, writes nothing, and pushes the
    /// ratio to its highest; the error shows again at the next explicit operation if the
    /// cause persists.
    fn auto_compact(&self) {
        let ok = self.compact().is_ok();
        let mut guard = self.writer();
        if let Some(w) = guard.as_mut() {
            let (free, live) = gc::small_fragmentation(&w.alloc);
            w.auto_ratio = if !ok {
                AUTO_COMPACT_MAX_RATIO
            } else if free > AUTO_COMPACT_MIN_FREE && free > live.saturating_mul(w.auto_ratio) {
                (w.auto_ratio * 2).min(AUTO_COMPACT_MAX_RATIO)
            } else {
                AUTO_COMPACT_RATIO
            };
        }
    }

    /// The allocator's counters (`stats --json` keys); `readers` counts the processes
    /// whose snapshots pin a state, listed in `reader_list`. In a process that is not the
    /// writer they are read from the file, whose live-block counts lag a running writer by
    /// up to one reuse batch (see `docs/design.md`, "Pool bits lag a running writer").
    pub fn stats(&self) -> Result<Stats, OpenError> {
        // The calling thread's own transaction holds the writer: read the file instead of
        // waiting for it.
        let own = self.in_txn.load(Ordering::SeqCst) == thread_key();
        let guard = if own { None } else { Some(self.writer()) };
        let mut s = match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(w) if crate::region::pid() == self.pid => {
                let mut s = w.alloc.stats()?;
                s.blocks_pending = w.pending.len() as u64;
                s
            }
            _ => {
                // Another process may be writing: a scan that meets a half-updated pool
                // record is retried before it is reported.
                let mut attempt = 0;
                loop {
                    match Allocator::open(&self.path, Access::ReadOnly) {
                        Ok(a) => break a.stats()?,
                        Err(OpenError::Corrupt(_)) if attempt < 2 => {
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        drop(guard);
        self.table.reap();
        let pinning: Vec<SlotInfo> = self.table.slots().into_iter().filter(|s| s.txn != 0).collect();
        s.readers = pinning.len() as u64;
        s.reader_list = pinning.iter().map(|r| (r.pid, r.txn)).collect();
        Ok(s)
    }

    /// Frees every replaced block no reader needs, publishes a clean state, syncs and
    /// closes. Dropping the heap does the same, ignoring errors.
    pub fn close(self) -> Result<(), TxnError> {
        self.shutdown()
    }

    /// What [`close`](Self::close) does, for a heap shared by reference (a binding's
    /// handle): publishes a clean state, releases the writer lock and this process's reader
    /// slot. Using the heap again afterwards takes them again.
    pub fn shutdown(&self) -> Result<(), TxnError> {
        let forked = crate::region::pid() != self.pid;
        if !forked && self.in_txn.load(Ordering::SeqCst) == thread_key() {
            return Err(TxnError::Nested);
        }
        {
            // In a forked child, the child's own slot (the parent's is not in its registry).
            let mut r = self.readers();
            if let Some(slot) = r.slot.take() {
                self.table.release(slot);
            }
        }
        if forked {
            self.after_fork();
            return Ok(());
        }
        let mut guard = self.writer();
        match guard.take() {
            Some(w) => release_writer(w, &self.table),
            None => Ok(()),
        }
    }

    /// In a child forked after `open`: lets go of the parent's writer without touching the
    /// file (the parent's writer state must not be published or freed from here), closing
    /// only this process's copy of the lock file. A lock shared through `fork` is released
    /// when every copy is closed, so keeping it would hold the writer lock for as long as
    /// the child lives, after the parent let it go. The parent keeps its own copy.
    fn forget_inherited(&self, guard: &mut MutexGuard<'_, Option<Writer>>) {
        if let Some(w) = guard.take() {
            let Writer { alloc, lock, _releaser, .. } = w;
            drop(lock);
            // Its drop would flush the parent's allocator state into the file.
            std::mem::forget(alloc);
            // The thread it would stop lives only in the parent.
            std::mem::forget(_releaser);
        }
    }

    /// For a front end, in a child process right after `fork`: closes this process's copy
    /// of the parent's writer lock (see `forget_inherited`). The heap stays usable for
    /// reading; writing needs a heap opened in the child. Does nothing in the process that
    /// opened the heap.
    pub fn after_fork(&self) {
        if crate::region::pid() == self.pid {
            return;
        }
        // The parent's writer mutex may have been held by one of its threads at the fork:
        // the child's copy stays locked for good, so only try it.
        let mut guard = match self.writer.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        self.forget_inherited(&mut guard);
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A read-only snapshot. Views borrow it.
pub struct ReadTxn<'h> {
    heap: &'h Heap, // for unregistering
    view: View,     // the mapping, up to this state's length
    root: Word,     // this state's root dict
    txn: u64,       // this state's transaction id
    pid: u32,       // the process whose reader slot pins the state
}

impl ReadTxn<'_> {
    fn cx(&self) -> Ctx<'_> {
        Ctx { mem: self.view.as_slice(), seed: self.heap.seed }
    }

    /// Refuses a snapshot inherited through `fork`: its state is pinned by the parent,
    /// which may end it at any time and let the writer reuse what it reads.
    fn this_process(&self) -> Result<(), TxnError> {
        if crate::region::pid() == self.pid {
            return Ok(());
        }
        Err(TxnError::Inherited { what: "snapshot", begun_by: self.pid })
    }

    /// The transaction id of the state this snapshot reads.
    pub fn txn_id(&self) -> u64 {
        self.txn
    }

    /// The root dict.
    pub fn root(&self) -> Result<Dict<'_>, TxnError> {
        self.this_process()?;
        match get_at(self.cx(), self.root, &[])? {
            Some(Value::Dict(d)) => Ok(d),
            _ => Err(Corruption::new(self.root.0, "the root is not a dict").into()),
        }
    }

    /// The container whose object starts at `offset` (a view's `offset()` from this same
    /// snapshot): containers of a snapshot never move, so a binding can hold on to one by
    /// its offset. Any other offset is an error, never undefined behaviour.
    pub fn container_at(&self, offset: u64) -> Result<Value<'_>, TxnError> {
        self.this_process()?;
        let v = crate::object::value::decode(self.cx(), Word(offset))?;
        match v {
            Value::Dict(_)
            | Value::List(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Record(_)
            | Value::Tuple(_)
                if Word(offset).is_ref() =>
            {
                Ok(v)
            }
            _ => Err(Corruption::new(offset, "not the offset of a container").into()),
        }
    }

    /// The value at `path` (dict keys, list indices, record field names): `None` when the
    /// last key is absent; [`TxnError::NotFound`] when a container above it is.
    pub fn get(&self, path: &[Key]) -> Result<Option<Value<'_>>, TxnError> {
        self.this_process()?;
        get_at(self.cx(), self.root, path)
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        let mut readers = self.heap.readers();
        if let Some(n) = readers.pins.get_mut(&self.txn) {
            *n -= 1;
            if *n == 0 {
                readers.pins.remove(&self.txn);
                self.heap.publish_pin(&readers);
            }
        }
    }
}

/// The write transaction. Views borrow it; changes take it mutably; `commit` consumes it;
/// dropping it aborts.
pub struct WriteTxn<'h> {
    heap: &'h Heap,                        // the heap
    guard: MutexGuard<'h, Option<Writer>>, // the writer, held for the transaction
    st: WriteState,                        // the changes so far
    done: bool,                            // committed or aborted
}

impl WriteTxn<'_> {
    /// Refuses a transaction inherited through `fork`: its writer state is the parent's,
    /// and changing the file from here would corrupt what the parent writes.
    fn this_process(&self) -> Result<(), TxnError> {
        if crate::region::pid() == self.heap.pid {
            return Ok(());
        }
        Err(TxnError::Inherited { what: "write transaction", begun_by: self.heap.pid })
    }

    /// The value at `path` as this transaction sees it (absent keys as [`ReadTxn::get`]).
    pub fn get(&self, path: &[Key]) -> Result<Option<Value<'_>>, TxnError> {
        self.this_process()?;
        let w = self.guard.as_ref().expect("a write transaction holds a writer");
        self.st.get(&w.alloc, self.heap.seed, path)
    }

    /// The value at `path` as an [`Input`] that stores it again by reference (structural
    /// sharing with value semantics).
    pub fn share(&self, path: &[Key]) -> Result<Option<Input>, TxnError> {
        self.this_process()?;
        let w = self.guard.as_ref().expect("a write transaction holds a writer");
        Ok(self.st.word_at(&w.alloc, self.heap.seed, path)?.map(Input::Stored))
    }

    /// Stores `value` at `path`: a dict key (new or replaced), a list index, or a record
    /// field. The container must exist.
    pub fn set(&mut self, path: &[Key], value: &Input) -> Result<(), TxnError> {
        self.this_process()?;
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set(&mut w.alloc, seed, path, value, false)
    }

    /// Like [`set`](Self::set), creating empty dicts for missing keys along the path.
    pub fn set_creating(&mut self, path: &[Key], value: &Input) -> Result<(), TxnError> {
        self.this_process()?;
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set(&mut w.alloc, seed, path, value, true)
    }

    /// Deletes a dict key, a list item, or (when the path ends in a set) a set element.
    pub fn del(&mut self, path: &[Key]) -> Result<(), TxnError> {
        self.this_process()?;
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.del(&mut w.alloc, seed, path)
    }

    /// Appends `value` to the list at `path`.
    pub fn append(&mut self, path: &[Key], value: &Input) -> Result<(), TxnError> {
        let len = self.list_len(path)?;
        self.splice(path, len, 0, std::slice::from_ref(value))
    }

    /// Replaces `del` items of the list at `path` from index `start` with `items`.
    pub fn splice(&mut self, path: &[Key], start: u64, del: u64, items: &[Input]) -> Result<(), TxnError> {
        self.this_process()?;
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.splice(&mut w.alloc, seed, path, start, del, items)
    }

    /// Length of the list at `path`.
    pub fn list_len(&self, path: &[Key]) -> Result<u64, TxnError> {
        match self.get(path)? {
            Some(Value::List(l)) => Ok(l.len()?),
            Some(v) => Err(TxnError::WrongType {
                path: txn::render_path(path),
                found: v.type_name(),
                wanted: "list",
            }),
            None => Err(TxnError::NotFound { path: txn::render_path(path) }),
        }
    }

    /// Adds `key` to the set at `path`; returns whether it was new.
    pub fn set_add(&mut self, path: &[Key], key: &Key) -> Result<bool, TxnError> {
        self.this_process()?;
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set_add(&mut w.alloc, seed, path, key)
    }

    /// Commits: the changes become the heap's state, visible to every snapshot begun
    /// after this returns. Returns the new transaction id. A commit that leaves too much
    /// free space inside small pools compacts afterwards (`Options::auto_compact`).
    pub fn commit(self) -> Result<u64, TxnError> {
        let heap = self.heap;
        let txn = self.commit_with(heap.options.durability, heap.options.auto_compact)?;
        heap.yield_writer()?;
        Ok(txn)
    }

    fn commit_with(mut self, durability: Durability, auto: bool) -> Result<u64, TxnError> {
        self.this_process()?;
        let heap = self.heap;
        let w = self.guard.as_mut().expect("writer");
        if !self.st.poisoned {
            for &b in &self.st.born_log {
                w.young.insert(b);
            }
        }
        let txn = self.st.finish(&mut w.alloc, durability)?;
        let retired = std::mem::take(&mut self.st.retired);
        w.pending.push(txn, retired);
        // Blocks replaced by transaction t are reachable from states before t; they are
        // reused once no snapshot (of any process) pins such a state, and the state before
        // t is no longer a meta slot a power cut could fall back to.
        fence(Ordering::SeqCst);
        // They are freed in batches, not after every commit: freeing a block writes its
        // pool's record, and one commit's replaced blocks sit in pools all over the file,
        // so freeing them at once made the next commit's sync write a dozen record pages
        // (and steered its new blocks into those scattered holes).
        if w.pending.len() as u64 >= reuse_batch(w.alloc.blocks_allocated()) {
            let limit = txn.saturating_sub(1);
            let limit = heap.table.oldest(limit).min(limit);
            w.pending.free_up_to(&mut w.alloc, limit)?;
            // The frees changed pool records all over the file: write them now, once per
            // batch, rather than let the file lag further.
            w.alloc.write_back()?;
        }
        self.done = true;
        if auto {
            let (free, live) = gc::small_fragmentation(&w.alloc);
            if free > AUTO_COMPACT_MIN_FREE && free > live.saturating_mul(w.auto_ratio) {
                drop(self);
                heap.auto_compact();
            }
        }
        Ok(txn)
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        self.heap.in_txn.store(0, Ordering::SeqCst);
        // In a forked child the writer state is the parent's: leave the file alone.
        if self.this_process().is_err() {
            return;
        }
        if !self.done {
            if let Some(w) = self.guard.as_mut() {
                self.st.abort(&mut w.alloc);
            }
            // Ended: hand the role over if another process waits (a commit does this
            // after the guard is gone).
            if self.heap.table.writer_wanted() {
                if let Some(w) = self.guard.take() {
                    let _ = release_writer(w, &self.heap.table);
                }
            }
        }
    }
}
