//! eterna: an embedded object heap in a memory-mapped file.
//!
//! The crate is built in layers, each calling only those below it (see `docs/design.md`):
//! [`region`] (the file and its mapping) and [`alloc`] (the size-class allocator inside
//! it) exist today; values, transactions, the collector and the public heap API come next.

pub mod alloc;
pub mod error;
pub mod format;
pub mod region;

pub use alloc::{Allocator, Stats};
pub use error::{AllocError, Corruption, FreeError, OpenError};
pub use region::Access;
