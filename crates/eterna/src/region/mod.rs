//! Layer 1: the heap file and its mapping. The only module that holds pointers into a
//! mapping; every layer above addresses the file by offset.

mod locktable;
mod map;
mod os;

pub use locktable::{process_start, table_path, LockTable, SlotInfo, SLOTS};
pub use map::{Access, OutOfBounds, ReadMap, Region, View};
pub use os::{page_size, pid, resident_in_mappings};

/// Hints the processor to start loading the cache line at `off` of `mem`, so that the
/// miss overlaps other work. Out-of-range offsets are ignored; this never faults.
#[inline]
pub fn prefetch(mem: &[u8], off: u64) {
    #[cfg(target_arch = "x86_64")]
    if (off as usize) < mem.len() {
        let p = mem.as_ptr().wrapping_add(off as usize) as *const i8;
        // SAFETY: a prefetch never faults or writes, whatever the address; `p` is inside
        // `mem` anyway, and SSE (which provides the instruction) is part of every x86_64.
        unsafe { core::arch::x86_64::_mm_prefetch(p, core::arch::x86_64::_MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (mem, off);
}
