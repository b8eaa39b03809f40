//! Layer 2: the size-class allocator inside the heap file.

mod allocator;
mod layout;
mod marks;
mod overlay;
mod rebuild;
mod spare;
mod state;
mod stats;

pub use crate::error::{AllocError, FreeError};
pub use allocator::{Allocator, Durability};
pub use layout::{block_size, class_of, class_size, GRAIN, LARGE_MAX_PAGES, NCLASSES, SMALL_MAX};
pub use marks::Marks;
pub use rebuild::RebuildError;
pub use spare::{MAX_SPARE, MIN_SPARE};
pub use stats::{ClassStats, Stats};
