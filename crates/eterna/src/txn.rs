//! Layer 4: transactions. A write transaction changes the heap by copying paths; nothing a
//! committed state reaches is ever written. Commit publishes the new root in a meta slot;
//! dropping the transaction aborts and frees everything it allocated. Blocks its changes
//! replaced are freed once no reader can see them (the LMDB rule).

use crate::alloc::{AllocError, Allocator, Durability, FreeError};
use crate::error::Corruption;
use crate::object::store::{Store, StoreError};
use crate::object::{
    build, champ, container_del, container_get, container_set, dict_new, list_splice, set_add, walk,
    ContainerError, Ctx, Input, InputError, Key, Value, Word,
};
use std::collections::VecDeque;

pub use crate::object::OffsetSet;
use std::fmt;
use std::io;

/// Why a transaction operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TxnError {
    /// A key, index or field along the path is not there.
    NotFound { path: String },
    /// A value along the path is not the kind of container the operation needs.
    WrongType { path: String, found: &'static str, wanted: &'static str },
    /// A dict key or set element that cannot be hashed.
    Unhashable { path: String, type_name: &'static str },
    /// A list index out of range.
    IndexOutOfRange { path: String, index: i64, len: u64 },
    /// A value too large for the format.
    TooLarge { path: String },
    /// The heap is open read-only.
    ReadOnly,
    /// An earlier failure left this transaction unusable; drop it (which aborts).
    Poisoned,
    /// The disk is full; the transaction is poisoned, the committed state intact.
    DiskFull,
    /// Another process held the writer lock for longer than the timeout.
    LockTimeout { waited: std::time::Duration },
    /// The heap was opened by another process (this one was forked from it): writing
    /// through the inherited handle is refused; open the heap again.
    Forked { opened_by: u32 },
    /// A transaction or snapshot begun by another process (this one was forked from it)
    /// was used here: its state is that process's. Begin a new one in this process.
    Inherited { what: &'static str, begun_by: u32 },
    /// This thread already runs a write transaction on this heap (waiting for it would
    /// never end): commit or abort it first.
    Nested,
    /// An I/O error.
    Io(io::Error),
    /// The file is inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnError::NotFound { path } => write!(f, "{path} not found"),
            TxnError::WrongType { path, found, wanted } => {
                write!(f, "{path} is {} {found}, not {} {wanted}", article(found), article(wanted))
            }
            TxnError::Unhashable { path, type_name } => write!(f, "unhashable type: '{type_name}' at {path}"),
            TxnError::IndexOutOfRange { path, index, len } => {
                write!(f, "index {index} out of range at {path} (length {len})")
            }
            TxnError::TooLarge { path } => write!(f, "value too large to store at {path}"),
            TxnError::ReadOnly => write!(f, "the heap is open read-only"),
            TxnError::Poisoned => write!(f, "an earlier error left this transaction unusable; abort it"),
            TxnError::DiskFull => write!(f, "no space left on the device"),
            TxnError::LockTimeout { waited } => {
                write!(f, "another process holds the writer lock (waited {:.1} s)", waited.as_secs_f64())
            }
            TxnError::Forked { opened_by } => write!(
                f,
                "this heap was opened by process {opened_by}, not this one (a fork): open it again to write"
            ),
            TxnError::Inherited { what, begun_by } => write!(
                f,
                "this {what} was begun by process {begun_by}, not this one (it came through a fork): \
                 begin a new one in this process"
            ),
            TxnError::Nested => write!(
                f,
                "this thread is already in a write transaction on this heap: commit or abort it first"
            ),
            TxnError::Io(e) => write!(f, "I/O error: {e}"),
            TxnError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for TxnError {}

impl From<Corruption> for TxnError {
    fn from(c: Corruption) -> Self {
        TxnError::Corrupt(c)
    }
}
impl From<io::Error> for TxnError {
    fn from(e: io::Error) -> Self {
        TxnError::Io(e)
    }
}
impl From<StoreError> for TxnError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(c) => TxnError::Corrupt(c),
            StoreError::Alloc(AllocError::DiskFull) => TxnError::DiskFull,
            StoreError::Alloc(AllocError::ReadOnly) => TxnError::ReadOnly,
            StoreError::Alloc(AllocError::Io(e)) => TxnError::Io(e),
            StoreError::Alloc(AllocError::Corrupt(c)) => TxnError::Corrupt(c),
            StoreError::Alloc(e) => TxnError::Io(io::Error::other(e.to_string())),
        }
    }
}

/// "an" before a type name that starts with a vowel ("an int"), else "a".
fn article(name: &str) -> &'static str {
    if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Renders a key path the way Python would index it: `["a"][0]["b"]`.
pub fn render_path(path: &[Key]) -> String {
    let mut s = String::from("root");
    for k in path {
        push_key(&mut s, k);
    }
    s
}

fn push_key(s: &mut String, k: &Key) {
    match k {
        Key::Str(t) => s.push_str(&format!("[{t:?}]")),
        Key::Int(i) => s.push_str(&format!("[{i}]")),
        Key::Bool(b) => s.push_str(if *b { "[True]" } else { "[False]" }),
        Key::None => s.push_str("[None]"),
        Key::Float(f) => s.push_str(&format!("[{f}]")),
        other => s.push_str(&format!("[<{}>]", other.type_name())),
    }
}

/// The error of an operation on the container at `container`, with `key` when the
/// operation was on one of its items. A value that is not the container the operation
/// needs is named by its own path, `container`; a missing or mistyped key by the path
/// through the key.
fn container_error(e: ContainerError, container: &[Key], key: Option<&Key>) -> TxnError {
    let through_key = || {
        let mut p = render_path(container);
        if let Some(k) = key {
            push_key(&mut p, k);
        }
        p
    };
    match e {
        ContainerError::NotFound => TxnError::NotFound { path: through_key() },
        ContainerError::WrongType { found, wanted } => {
            TxnError::WrongType { path: render_path(container), found, wanted }
        }
        ContainerError::KeyType { found, wanted } => {
            TxnError::WrongType { path: through_key(), found, wanted }
        }
        ContainerError::Unhashable(t) => TxnError::Unhashable { path: through_key(), type_name: t },
        ContainerError::IndexOutOfRange { index, len } => {
            TxnError::IndexOutOfRange { path: through_key(), index, len }
        }
        ContainerError::Input(e) => match key {
            Some(k) => {
                let mut full = container.to_vec();
                full.push(k.clone());
                input_error(e, &full)
            }
            None => input_error(e, container),
        },
        ContainerError::Store(e) => e.into(),
    }
}

fn input_error(e: InputError, path: &[Key]) -> TxnError {
    match e {
        InputError::Unhashable { type_name, path: inner } => {
            TxnError::Unhashable { path: format!("{}{inner}", render_path(path)), type_name }
        }
        InputError::TooLarge { path: inner } => {
            TxnError::TooLarge { path: format!("{}{inner}", render_path(path)) }
        }
        InputError::Store(e) => e.into(),
    }
}

/// Blocks freed by committed transactions, waiting for readers to move past them.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<(u64, Vec<u64>)>, // (transaction that freed them, blocks)
    count: usize,                     // blocks in `queue`
}

impl Pending {
    /// Queues the blocks transaction `txn` replaced.
    pub fn push(&mut self, txn: u64, blocks: Vec<u64>) {
        if !blocks.is_empty() {
            self.count += blocks.len();
            self.queue.push_back((txn, blocks));
        }
    }

    /// Frees every queued block no reader can see: those replaced by a transaction at or
    /// before `oldest`, the oldest state a live reader pins (`u64::MAX` for none).
    pub fn free_up_to(&mut self, alloc: &mut Allocator, oldest: u64) -> Result<(), TxnError> {
        while self.queue.front().is_some_and(|(t, _)| *t <= oldest) {
            let (_, blocks) = self.queue.pop_front().expect("front exists");
            self.count -= blocks.len();
            for b in blocks {
                match alloc.free(b) {
                    Ok(()) => {}
                    Err(FreeError::Io(e)) => return Err(TxnError::Io(e)),
                    Err(e) => return Err(Corruption::new(b, format!("freeing a replaced block: {e}")).into()),
                }
            }
        }
        Ok(())
    }

    /// Every block waiting.
    pub fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.queue.iter().flat_map(|(_, b)| b.iter().copied())
    }

    /// Blocks still waiting.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The write side of a transaction as the persistent structures see it.
pub struct Tx<'a> {
    pub alloc: &'a mut Allocator,   // the heap's allocator
    pub fresh: &'a mut OffsetSet,   // blocks created here and still private: mutable in place
    pub born_log: &'a mut Vec<u64>, // every block created here, in order (freed again on abort)
    pub retired: &'a mut Vec<u64>,  // committed blocks this transaction replaced
    pub shared: &'a mut Word,       // root of the shared-object set
    pub seed: u64,                  // the file's hash seed
}

fn shared_key(off: u64) -> Key<'static> {
    Key::Int(off as i64)
}

impl Tx<'_> {
    /// Removes `w`'s subtree from the fresh set, so that no change in place can reach it
    /// through either of its places.
    fn freeze(&mut self, w: Word) -> Result<(), StoreError> {
        let mut stack = vec![w];
        while let Some(w) = stack.pop() {
            let Some(off) = w.as_ref() else { continue };
            if !self.fresh.remove(off) {
                continue; // committed: nothing under it is fresh
            }
            stack.extend(walk::children(self.mem(), off)?);
        }
        Ok(())
    }
}

impl Store for Tx<'_> {
    fn mem(&self) -> &[u8] {
        self.alloc.region().as_slice()
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn alloc(&mut self, size: usize) -> Result<u64, StoreError> {
        let off = self.alloc.alloc(size)?;
        self.fresh.insert(off);
        self.born_log.push(off);
        Ok(off)
    }
    fn write_at(&mut self, block: u64, at: usize, bytes: &[u8]) -> Result<(), StoreError> {
        debug_assert!(self.fresh.contains(block), "write to a block not created in this transaction");
        self.alloc.bytes_mut(block + at as u64, bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }
    fn is_fresh(&self, off: u64) -> bool {
        self.fresh.contains(off)
    }
    fn retire(&mut self, off: u64, owned: bool) -> Result<(), StoreError> {
        if self.fresh.remove(off) {
            self.alloc.free(off).map_err(|e| StoreError::Corrupt(Corruption::new(off, e.to_string())))?;
        } else if owned && !self.is_shared(off)? {
            self.retired.push(off);
        }
        Ok(())
    }
    fn share(&mut self, w: Word) -> Result<(), StoreError> {
        let Some(off) = w.as_ref() else { return Ok(()) };
        self.freeze(w)?;
        let key = shared_key(off);
        let h = key.hash(self.seed);
        let root = *self.shared;
        let new = champ::upsert(self, root, h, &key, false, true, &mut |_, e| {
            Ok(e.unwrap_or([Word::int(off as i64).expect("offsets fit an inline int").0, 0, 0]))
        })?;
        *self.shared = new;
        Ok(())
    }
    fn is_shared(&self, off: u64) -> Result<bool, StoreError> {
        if *self.shared == Word::EMPTY {
            return Ok(false);
        }
        let key = shared_key(off);
        Ok(champ::lookup(self.mem(), *self.shared, key.hash(self.seed), &key, false)?.is_some())
    }
}

/// The in-progress state of one write transaction.
#[derive(Debug)]
pub struct WriteState {
    pub root: Word,         // the root dict as changed so far
    pub shared: Word,       // the shared-object set as changed so far
    pub fresh: OffsetSet,   // see `Tx::fresh`
    pub born_log: Vec<u64>, // see `Tx::born_log`
    pub retired: Vec<u64>,  // see `Tx::retired`
    pub poisoned: bool,     // a structural change failed half-way
}

impl WriteState {
    /// A transaction starting from a committed root and shared set.
    pub fn new(root: Word, shared: Word) -> WriteState {
        WriteState {
            root,
            shared,
            fresh: OffsetSet::default(),
            born_log: Vec::new(),
            retired: Vec::new(),
            poisoned: false,
        }
    }

    pub(crate) fn tx<'a>(&'a mut self, alloc: &'a mut Allocator, seed: u64) -> Tx<'a> {
        Tx {
            alloc,
            fresh: &mut self.fresh,
            born_log: &mut self.born_log,
            retired: &mut self.retired,
            shared: &mut self.shared,
            seed,
        }
    }

    /// The value at `path`.
    pub fn get<'a>(
        &self,
        alloc: &'a Allocator,
        seed: u64,
        path: &[Key],
    ) -> Result<Option<Value<'a>>, TxnError> {
        get_at(Ctx { mem: alloc.region().as_slice(), seed }, self.root, path)
    }

    /// The word at `path`, to store again elsewhere (structural sharing).
    pub fn word_at(&self, alloc: &Allocator, seed: u64, path: &[Key]) -> Result<Option<Word>, TxnError> {
        word_at(alloc.region().as_slice(), seed, self.root, path)
    }

    /// Applies `f` to the container at `path` and copies the path above it. `f` gets the
    /// container and whether this transaction owns it (nothing shared lies above it).
    fn modify<R>(
        &mut self,
        alloc: &mut Allocator,
        seed: u64,
        path: &[Key],
        f: impl FnOnce(&mut Tx<'_>, Word, bool) -> Result<(Word, R), TxnError>,
    ) -> Result<R, TxnError> {
        if self.poisoned {
            return Err(TxnError::Poisoned);
        }
        let root = self.root;
        if root == Word::EMPTY {
            return Err(Corruption::new(0, "the heap has no root dict").into());
        }
        let mut tx = self.tx(alloc, seed);
        let result = (|| {
            let mut c = root;
            let mut owned = !tx.is_shared(c.0)?;
            let mut chain = Vec::with_capacity(path.len());
            for (i, k) in path.iter().enumerate() {
                let child = container_get(tx.mem(), seed, c, k)
                    .map_err(|e| container_error(e, &path[..i], Some(k)))?
                    .ok_or_else(|| TxnError::NotFound { path: render_path(&path[..=i]) })?;
                chain.push((c, owned, child));
                c = child;
                owned = owned && !tx.is_shared(c.0)?;
            }
            let (mut new, r) = f(&mut tx, c, owned)?;
            for (i, (parent, powned, old)) in chain.into_iter().enumerate().rev() {
                if new == old {
                    return Ok((None, r));
                }
                let (np, _) = container_set(&mut tx, parent, &path[i], new, powned)
                    .map_err(|e| container_error(e, &path[..i], Some(&path[i])))?;
                new = np;
            }
            Ok((Some(new), r))
        })();
        match result {
            Ok((new_root, r)) => {
                if let Some(w) = new_root {
                    self.root = w;
                }
                Ok(r)
            }
            Err(e) => {
                if !matches!(
                    e,
                    TxnError::NotFound { .. } | TxnError::WrongType { .. } | TxnError::IndexOutOfRange { .. }
                ) {
                    self.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// Stores `value` at `path` (a key of a dict, an index of a list, a field of a record).
    /// With `create`, missing dicts along the path are created.
    pub fn set(
        &mut self,
        alloc: &mut Allocator,
        seed: u64,
        path: &[Key],
        value: &Input,
        create: bool,
    ) -> Result<(), TxnError> {
        let Some((last, parent)) = path.split_last() else {
            return self.set_root(alloc, seed, value);
        };
        if create {
            self.make_dicts(alloc, seed, parent)?;
        }
        let w = self.build(alloc, seed, value, path)?;
        self.modify(alloc, seed, parent, |tx, c, owned| {
            let (nc, old) =
                container_set(tx, c, last, w, owned).map_err(|e| container_error(e, parent, Some(last)))?;
            if let (Some(old), true) = (old, owned) {
                walk::release(tx, old)?;
            }
            Ok((nc, ()))
        })
    }

    /// Replaces the whole root (which must be a dict).
    fn set_root(&mut self, alloc: &mut Allocator, seed: u64, value: &Input) -> Result<(), TxnError> {
        if !matches!(value, Input::Dict(_) | Input::StrDict(_)) {
            return Err(TxnError::WrongType {
                path: "root".into(),
                found: value.type_name(),
                wanted: "dict",
            });
        }
        let w = self.build(alloc, seed, value, &[])?;
        let old = self.root;
        self.root = w;
        let mut tx = self.tx(alloc, seed);
        walk::release(&mut tx, old)?;
        Ok(())
    }

    /// Creates empty dicts for every missing key along `path`.
    fn make_dicts(&mut self, alloc: &mut Allocator, seed: u64, path: &[Key]) -> Result<(), TxnError> {
        for i in 0..path.len() {
            if self.word_at(alloc, seed, &path[..=i])?.is_none() {
                self.set(alloc, seed, &path[..=i], &Input::Dict(vec![]), false)?;
            }
        }
        Ok(())
    }

    /// Builds `value`; on failure frees whatever the build allocated.
    fn build(
        &mut self,
        alloc: &mut Allocator,
        seed: u64,
        value: &Input,
        path: &[Key],
    ) -> Result<Word, TxnError> {
        if self.poisoned {
            return Err(TxnError::Poisoned);
        }
        let mark = self.born_log.len();
        let mut tx = self.tx(alloc, seed);
        match build(&mut tx, value) {
            Ok(w) => Ok(w),
            Err(e) => {
                let new: Vec<u64> =
                    tx.born_log[mark..].iter().copied().filter(|&b| tx.fresh.contains(b)).collect();
                for b in new {
                    tx.retire(b, true)?;
                }
                tx.born_log.truncate(mark);
                Err(input_error(e, path))
            }
        }
    }

    /// Deletes `path` (a dict key, a list index, or a set element when the last key names
    /// one); returns the removed value as a detached copy.
    pub fn del(&mut self, alloc: &mut Allocator, seed: u64, path: &[Key]) -> Result<(), TxnError> {
        let Some((last, parent)) = path.split_last() else {
            return Err(TxnError::WrongType { path: "root".into(), found: "dict", wanted: "deletable item" });
        };
        self.modify(alloc, seed, parent, |tx, c, owned| {
            let (nc, removed) =
                container_del(tx, c, last, owned).map_err(|e| container_error(e, parent, Some(last)))?;
            if owned {
                for w in removed {
                    walk::release(tx, w)?;
                }
            }
            Ok((nc, ()))
        })
    }

    /// Replaces `del` items of the list at `path` from `start` with `items`.
    pub fn splice(
        &mut self,
        alloc: &mut Allocator,
        seed: u64,
        path: &[Key],
        start: u64,
        del: u64,
        items: &[Input],
    ) -> Result<(), TxnError> {
        let mut ws = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let mut p = path.to_vec();
            p.push(Key::Int((start + i as u64) as i64));
            ws.push(self.build(alloc, seed, it, &p)?);
        }
        self.modify(alloc, seed, path, |tx, c, owned| {
            let (nc, removed) =
                list_splice(tx, c, start, del, &ws, owned).map_err(|e| container_error(e, path, None))?;
            if owned {
                for w in removed {
                    walk::release(tx, w)?;
                }
            }
            Ok((nc, ()))
        })
    }

    /// Adds `key` to the set at `path`; returns whether it was new.
    pub fn set_add(
        &mut self,
        alloc: &mut Allocator,
        seed: u64,
        path: &[Key],
        key: &Key,
    ) -> Result<bool, TxnError> {
        self.modify(alloc, seed, path, |tx, c, owned| {
            set_add(tx, c, key, owned).map_err(|e| container_error(e, path, None))
        })
    }

    /// Commits: publishes the new root and queues the replaced blocks.
    pub fn finish(&mut self, alloc: &mut Allocator, durability: Durability) -> Result<u64, TxnError> {
        if self.poisoned {
            return Err(TxnError::Poisoned);
        }
        let txn = alloc.publish(self.root.0, self.shared.0, crate::format::META_WRITER, durability)?;
        self.fresh.clear();
        self.born_log.clear();
        Ok(txn)
    }

    /// Aborts: frees every block this transaction created. (A block freed and allocated
    /// again within the transaction is logged twice; freeing it the second time fails
    /// harmlessly.)
    pub fn abort(&mut self, alloc: &mut Allocator) {
        for &b in self.born_log.iter() {
            let _ = alloc.free(b);
        }
        self.born_log.clear();
        self.fresh.clear();
        self.retired.clear();
    }
}

/// The value at `path` under `root`.
pub fn get_at<'a>(cx: Ctx<'a>, root: Word, path: &[Key]) -> Result<Option<Value<'a>>, TxnError> {
    match word_at(cx.mem, cx.seed, root, path)? {
        Some(w) => Ok(Some(crate::object::value::decode(cx, w)?)),
        None => Ok(None),
    }
}

/// The word at `path` under `root`: `None` when the last key is absent from the container
/// the rest of the path reaches; `NotFound` naming the first missing key when the path
/// stops before that container.
pub fn word_at(mem: &[u8], seed: u64, root: Word, path: &[Key]) -> Result<Option<Word>, TxnError> {
    if root == Word::EMPTY {
        return Ok(None);
    }
    let mut w = root;
    for (i, k) in path.iter().enumerate() {
        match container_get(mem, seed, w, k).map_err(|e| container_error(e, &path[..i], Some(k)))? {
            Some(c) => w = c,
            None if i + 1 == path.len() => return Ok(None),
            None => return Err(TxnError::NotFound { path: render_path(&path[..=i]) }),
        }
    }
    Ok(Some(w))
}

/// A new empty root dict, for a heap being created.
pub fn new_root(tx: &mut Tx<'_>) -> Result<Word, TxnError> {
    Ok(dict_new(tx)?)
}
