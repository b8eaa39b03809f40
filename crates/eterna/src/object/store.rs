//! What the persistent structures need from a write transaction: read the file, allocate,
//! write blocks created in this transaction, and retire blocks a path copy replaced.

use super::layout::object_size;
use super::word::Word;
use crate::alloc::{class_of, SMALL_MAX};
use crate::error::{AllocError, Corruption};

/// Why a structural write failed. The transaction turns these into its own error.
#[derive(Debug)]
pub enum StoreError {
    Corrupt(Corruption),
    Alloc(AllocError),
}

impl From<Corruption> for StoreError {
    fn from(c: Corruption) -> Self {
        StoreError::Corrupt(c)
    }
}
impl From<AllocError> for StoreError {
    fn from(e: AllocError) -> Self {
        StoreError::Alloc(e)
    }
}

/// A write transaction's view of the heap.
pub trait Store {
    /// The mapped file, for reading.
    fn mem(&self) -> &[u8];
    /// The file's hash seed.
    fn seed(&self) -> u64;
    /// Allocates a block of `size` bytes, created in (and owned by) this transaction.
    fn alloc(&mut self, size: usize) -> Result<u64, StoreError>;
    /// Writes `bytes` at `off`, a block created in this transaction.
    fn write(&mut self, off: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_at(off, 0, bytes)
    }
    /// Writes `bytes` at `at` bytes into `block`, a block created in this transaction.
    fn write_at(&mut self, block: u64, at: usize, bytes: &[u8]) -> Result<(), StoreError>;
    /// Whether `off` was created in this transaction (and so may change in place).
    fn is_fresh(&self, off: u64) -> bool;
    /// The block at `off` is no longer reachable from this transaction's state: a fresh
    /// block is freed at once, a committed one once no reader can see it. `owned` is false
    /// when something else may still reference the block (and a shared block is never
    /// owned); it is then left to the collector.
    fn retire(&mut self, off: u64, owned: bool) -> Result<(), StoreError>;
    /// Records that the value `w` (already stored) is being stored in a second place: it
    /// becomes immutable and is never freed by a path copy, only by the collector.
    fn share(&mut self, w: Word) -> Result<(), StoreError>;
    /// Whether the object at `off` may be referenced from more than one place.
    fn is_shared(&self, off: u64) -> Result<bool, StoreError>;
}

/// Stores `image` as the new version of the object at `old` (if any): in place when `old`
/// is fresh and the image fits its size class, else in a new block, retiring `old`.
pub fn put<S: Store>(s: &mut S, old: Option<u64>, image: &[u8], owned: bool) -> Result<u64, StoreError> {
    if let Some(o) = old {
        if s.is_fresh(o) {
            let old_size = object_size(s.mem(), o)?;
            let same_class = if old_size <= SMALL_MAX && image.len() <= SMALL_MAX {
                class_of(old_size) == class_of(image.len())
            } else {
                old_size == image.len()
            };
            if same_class {
                s.write(o, image)?;
                return Ok(o);
            }
        }
    }
    if let Some(o) = old {
        if !owned && !s.is_fresh(o) {
            // The old version stays reachable from elsewhere, and the copy refers to its
            // children too: they now have two parents.
            for c in super::walk::children(s.mem(), o)? {
                s.share(c)?;
            }
        }
    }
    let n = s.alloc(image.len())?;
    s.write(n, image)?;
    if let Some(o) = old {
        s.retire(o, owned)?;
    }
    Ok(n)
}
