//! Layer 1: the heap file and its mapping. The only module that holds pointers into a
//! mapping; every layer above addresses the file by offset.

mod locktable;
mod map;
mod os;

pub use locktable::{process_start, table_path, LockTable, SlotInfo, SLOTS};
pub use map::{Access, OutOfBounds, ReadMap, Region, View};
pub use os::page_size;
