//! Layer 2: the size-class allocator inside the heap file.

mod allocator;
mod layout;
mod spare;
mod state;
mod stats;

pub use allocator::Allocator;
pub use layout::{class_of, class_size, GRAIN, LARGE_MAX_PAGES, NCLASSES, SMALL_MAX};
pub use spare::{MAX_SPARE, MIN_SPARE};
pub use stats::{ClassStats, Stats};
