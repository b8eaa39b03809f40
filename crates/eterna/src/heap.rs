//! Layer 6: the public API. [`Heap::open`] a file; [`Heap::read`] a snapshot whose views
//! borrow it; [`Heap::write`] a transaction that commits or, dropped, aborts (heed's
//! style).

use crate::alloc::{Allocator, Durability, Stats};
use crate::error::{Corruption, OpenError};
use crate::format::{
    meta_slot_offset, Header, Meta, ARENA, CONTROL_RESERVED, HEADER_LEN, META_LEN, META_WRITER,
};
use crate::object::{walk, Ctx, Dict, Input, Key, Value, Word};
use crate::region::{Access, ReadMap, View};
use crate::txn::{self, get_at, OffsetSet, Pending, TxnError, WriteState};
use rustix::fs::{flock, FlockOperation};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// How to open a heap.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Open for reading only: no writer lock, no writes to the file, ever.
    pub readonly: bool,
    /// Create the file if it does not exist (writers only).
    pub create: bool,
    /// How much each commit syncs.
    pub durability: Durability,
}

impl Default for Options {
    fn default() -> Options {
        Options { readonly: false, create: true, durability: Durability::Commit }
    }
}

/// The writer's side of an open heap.
struct Writer {
    alloc: Allocator, // the allocator, owning the read-write mapping
    pending: Pending, // blocks replaced by commits, waiting for readers
    last_txn: u64,    // the last committed transaction
    _lock: File,      // holds the writer lock (flock) while open
}

/// An open heap file. Share it between threads by reference; snapshots and the write
/// transaction borrow it.
pub struct Heap {
    path: PathBuf,                        // the file
    seed: u64,                            // the hash seed from the header
    durability: Durability,               // commits sync this much
    readmap: ReadMap,                     // the read-only mapping snapshots use
    readers: Mutex<BTreeMap<u64, usize>>, // live snapshots of this process, by state
    writer: Mutex<Option<Writer>>,        // None when read-only or closed
}

fn lock_writer(path: &Path) -> Result<File, OpenError> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(OpenError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is open for writing by another process", path.display()),
        ))),
        Err(e) => Err(OpenError::Io(e.into())),
    }
}

impl Heap {
    /// Opens (or with `options.create`, creates) the heap at `path`.
    ///
    /// A writer whose predecessor died in the middle of a transaction recovers first: it
    /// traces the last committed state and rebuilds the allocator from it, so that the
    /// dead transaction's allocations are freed.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Heap, OpenError> {
        let path = path.as_ref();
        let writer = if options.readonly {
            None
        } else if !path.exists() && options.create {
            Some(Self::create(path)?)
        } else {
            let lock = lock_writer(path)?;
            let mut alloc = Allocator::open_for_recovery(path)?;
            let meta = *alloc.meta();
            if meta.flags & META_WRITER != 0 {
                Self::recover(&mut alloc)?;
            } else {
                drop(alloc);
                alloc = Allocator::open(path, Access::ReadWrite)?;
            }
            Some(Writer { last_txn: alloc.meta().txn_id, alloc, pending: Pending::default(), _lock: lock })
        };
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
                other => OpenError::Corrupt(Corruption::new(0, format!("bad header: {other:?}"))),
            })?
        };
        let heap = Heap {
            path: path.to_path_buf(),
            seed: header.seed,
            durability: options.durability,
            readmap,
            readers: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(writer),
        };
        // A reader checks the committed state once up front, so that a bad file is an
        // error here rather than at the first read.
        heap.current_meta()?;
        Ok(heap)
    }

    fn create(path: &Path) -> Result<Writer, OpenError> {
        let mut alloc = Allocator::create(path)?;
        let lock = lock_writer(path)?;
        let seed = alloc.header().seed;
        let mut st = WriteState::new(Word::EMPTY, Word::EMPTY);
        let mut fresh = OffsetSet::default();
        let mut born = OffsetSet::default();
        let mut retired = Vec::new();
        let mut shared = Word::EMPTY;
        let mut tx = txn::Tx {
            alloc: &mut alloc,
            fresh: &mut fresh,
            born: &mut born,
            retired: &mut retired,
            shared: &mut shared,
            seed,
        };
        st.root = txn::new_root(&mut tx).map_err(|e| OpenError::Io(io::Error::other(e.to_string())))?;
        alloc.publish(st.root.0, 0, 0, Durability::Full)?;
        Ok(Writer { last_txn: alloc.meta().txn_id, alloc, pending: Pending::default(), _lock: lock })
    }

    /// Frees what a dead writer's transaction left allocated: traces the committed state
    /// and rebuilds the side metadata from it.
    fn recover(alloc: &mut Allocator) -> Result<(), OpenError> {
        let meta = *alloc.meta();
        let blocks = walk::reachable(alloc.region().as_slice(), &[Word(meta.root), Word(meta.shared)])?;
        alloc.rebuild(blocks).map_err(|e| match e {
            crate::alloc::RebuildError::Corrupt(c) => OpenError::Corrupt(c),
            crate::alloc::RebuildError::Io(e) => OpenError::Io(e),
        })?;
        alloc.publish(meta.root, meta.shared, META_WRITER, Durability::Full)?;
        Ok(())
    }

    /// The file this heap lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The committed state as the file says now.
    fn current_meta(&self) -> Result<Meta, OpenError> {
        let v = self.readmap.view(CONTROL_RESERVED)?;
        let m = v.as_slice();
        let slots = [0, 1].map(|i| {
            let at = meta_slot_offset(i) as usize;
            Meta::decode(&m[at..at + META_LEN])
        });
        let (_, meta) = Meta::current(slots)
            .ok_or_else(|| Corruption::new(meta_slot_offset(0), "neither meta slot is valid"))?;
        let need = (meta.arenas + 1) * ARENA;
        let len = self.readmap.file_len()?;
        if len < need {
            return Err(OpenError::Truncated { len, expected: need });
        }
        Ok(meta)
    }

    fn readers(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A consistent snapshot of the last committed state. It never changes, whatever is
    /// committed later, and what it reaches is not reused while it lives.
    pub fn read(&self) -> Result<ReadTxn<'_>, TxnError> {
        let mut readers = self.readers();
        let meta = self.current_meta().map_err(|e| match e {
            OpenError::Io(e) => TxnError::Io(e),
            OpenError::Corrupt(c) => TxnError::Corrupt(c),
            other => TxnError::Corrupt(Corruption::new(0, other.to_string())),
        })?;
        let view = self.readmap.view((meta.arenas + 1) * ARENA)?;
        *readers.entry(meta.txn_id).or_default() += 1;
        Ok(ReadTxn { heap: self, view, root: Word(meta.root), txn: meta.txn_id })
    }

    /// Begins the write transaction: waits for another thread's to end. Fails on a
    /// read-only heap.
    pub fn write(&self) -> Result<WriteTxn<'_>, TxnError> {
        let mut guard = self.writer();
        let w = guard.as_mut().ok_or(TxnError::ReadOnly)?;
        let meta = *w.alloc.meta();
        if meta.flags & META_WRITER == 0 {
            // Mark the heap as being written before the first allocation, so that a crash
            // from here on is recovered at the next open.
            w.alloc.publish(meta.root, meta.shared, META_WRITER, Durability::Full)?;
        }
        let st = WriteState::new(Word(meta.root), Word(meta.shared));
        Ok(WriteTxn { heap: self, guard, st, done: false })
    }

    /// The allocator's counters (`stats --json` keys), with `readers` the live snapshots
    /// of this process.
    pub fn stats(&self) -> Result<Stats, OpenError> {
        let guard = self.writer();
        let mut s = match guard.as_ref() {
            Some(w) => w.alloc.stats()?,
            None => Allocator::open(&self.path, Access::ReadOnly)?.stats()?,
        };
        s.readers = self.readers().values().map(|&n| n as u64).sum();
        Ok(s)
    }

    /// Frees every replaced block no reader needs, publishes a clean state, syncs and
    /// closes. Dropping the heap does the same, ignoring errors.
    pub fn close(self) -> Result<(), TxnError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), TxnError> {
        let mut guard = self.writer();
        if let Some(mut w) = guard.take() {
            w.pending.free_up_to(&mut w.alloc, u64::MAX)?;
            let meta = *w.alloc.meta();
            w.alloc.publish(meta.root, meta.shared, 0, Durability::Full)?;
        }
        Ok(())
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
}

impl ReadTxn<'_> {
    fn cx(&self) -> Ctx<'_> {
        Ctx { mem: self.view.as_slice(), seed: self.heap.seed }
    }

    /// The transaction id of the state this snapshot reads.
    pub fn txn_id(&self) -> u64 {
        self.txn
    }

    /// The root dict.
    pub fn root(&self) -> Result<Dict<'_>, TxnError> {
        match get_at(self.cx(), self.root, &[])? {
            Some(Value::Dict(d)) => Ok(d),
            _ => Err(Corruption::new(self.root.0, "the root is not a dict").into()),
        }
    }

    /// The value at `path` (dict keys, list indices, record field names), if present.
    pub fn get(&self, path: &[Key]) -> Result<Option<Value<'_>>, TxnError> {
        get_at(self.cx(), self.root, path)
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        let mut readers = self.heap.readers();
        if let Some(n) = readers.get_mut(&self.txn) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.txn);
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
    /// The value at `path` as this transaction sees it.
    pub fn get(&self, path: &[Key]) -> Result<Option<Value<'_>>, TxnError> {
        let w = self.guard.as_ref().expect("a write transaction holds a writer");
        self.st.get(&w.alloc, self.heap.seed, path)
    }

    /// The value at `path` as an [`Input`] that stores it again by reference (structural
    /// sharing with value semantics).
    pub fn share(&self, path: &[Key]) -> Result<Option<Input>, TxnError> {
        let w = self.guard.as_ref().expect("a write transaction holds a writer");
        Ok(self.st.word_at(&w.alloc, self.heap.seed, path)?.map(Input::Stored))
    }

    /// Stores `value` at `path`: a dict key (new or replaced), a list index, or a record
    /// field. The container must exist.
    pub fn set(&mut self, path: &[Key], value: &Input) -> Result<(), TxnError> {
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set(&mut w.alloc, seed, path, value, false)
    }

    /// Like [`set`](Self::set), creating empty dicts for missing keys along the path.
    pub fn set_creating(&mut self, path: &[Key], value: &Input) -> Result<(), TxnError> {
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set(&mut w.alloc, seed, path, value, true)
    }

    /// Deletes a dict key, a list item, or (when the path ends in a set) a set element.
    pub fn del(&mut self, path: &[Key]) -> Result<(), TxnError> {
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
        let seed = self.heap.seed;
        let w = self.guard.as_mut().expect("writer");
        self.st.set_add(&mut w.alloc, seed, path, key)
    }

    /// Commits: the changes become the heap's state, visible to every snapshot begun
    /// after this returns. Returns the new transaction id.
    pub fn commit(mut self) -> Result<u64, TxnError> {
        let durability = self.heap.durability;
        let heap = self.heap;
        let w = self.guard.as_mut().expect("writer");
        let txn = self.st.finish(&mut w.alloc, durability)?;
        let retired = std::mem::take(&mut self.st.retired);
        w.pending.push(txn, retired);
        w.last_txn = txn;
        // Blocks replaced by transaction t are reachable from states before t; they are
        // reused once no snapshot pins such a state and the state before t is no longer
        // a meta slot a power cut could fall back to.
        let oldest = heap.readers().keys().next().copied().unwrap_or(u64::MAX);
        let limit = oldest.min(txn.saturating_sub(1));
        w.pending.free_up_to(&mut w.alloc, limit)?;
        self.done = true;
        Ok(txn)
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(w) = self.guard.as_mut() {
                self.st.abort(&mut w.alloc);
            }
        }
    }
}
