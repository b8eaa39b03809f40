//! eterna: an embedded object heap in a memory-mapped file.
//!
//! The crate is built in layers, each calling only those below it (see `docs/design.md`):
//! [`region`] (the file and its mapping), [`alloc`] (the size-class allocator inside it),
//! [`object`] (values), [`txn`] (transactions), [`gc`] (the collector and compaction),
//! [`heap`] (the public API: [`Heap`], [`ReadTxn`], [`WriteTxn`]) and [`check`].

pub mod alloc;
pub mod check;
pub mod error;
pub mod format;
pub mod gc;
pub mod heap;
pub mod object;
pub mod region;
pub mod txn;

pub use alloc::{Allocator, Durability, Stats};
pub use error::{AllocError, Corruption, FreeError, OpenError};
pub use heap::{Heap, Options, ReadTxn, WriteTxn};
pub use object::{Input, Key, Value};
pub use region::Access;
pub use txn::TxnError;

/// The deepest nesting of containers the front ends write (Python's own recursion limit)
/// and follow when they convert a whole value recursively; a stored value nested deeper
/// can only come from a damaged file (a reference cycle) and is reported as corrupt.
pub const MAX_NESTING: usize = 1000;
