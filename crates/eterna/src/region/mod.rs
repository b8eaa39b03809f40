//! Layer 1: the heap file and its mapping. The only module that holds pointers into a
//! mapping; every layer above addresses the file by offset.

mod map;
mod os;

pub use map::{Access, OutOfBounds, ReadMap, Region, View};
pub use os::page_size;
