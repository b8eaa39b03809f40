//! Where the allocator's side metadata sits inside an arena, and the size classes.
//! Object pages never hold allocator state: every bit of it lives here.

use crate::format::{ARENA, PAGE, PAGES_PER_ARENA, POOL, POOLS_PER_ARENA};

/// Largest size served from small pools.
pub const SMALL_MAX: usize = 512;
/// Size-class granularity.
pub const GRAIN: usize = 16;
/// Number of small size classes: 16, 32, ..., 512 bytes.
pub const NCLASSES: usize = SMALL_MAX / GRAIN;
/// Largest run of pages a large arena serves (page 0 holds its metadata).
pub const LARGE_MAX_PAGES: u64 = PAGES_PER_ARENA - 1;

/// Block size of class `c`.
#[inline]
pub const fn class_size(c: usize) -> u64 {
    ((c + 1) * GRAIN) as u64
}
/// Blocks a pool of class `c` holds.
#[inline]
pub const fn class_cap(c: usize) -> u32 {
    (POOL / class_size(c)) as u32
}
/// The class serving `size` bytes (`1..=SMALL_MAX`).
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= GRAIN {
        0
    } else {
        size.div_ceil(GRAIN) - 1
    }
}

/// Arena kinds, as stored in the arena header's first byte. A punched arena reads as zeros,
/// that is as `FREE`.
pub mod kind {
    pub const FREE: u8 = 0; // unused; all of it may be a hole
    pub const SMALL: u8 = 1; // 63 pools of small blocks
    pub const LARGE: u8 = 2; // runs of pages
    pub const HUGE: u8 = 3; // the first arena of an object spanning whole arenas
}

/// Small-pool states, as stored in a pool descriptor.
pub mod state {
    pub const HOLE: u8 = 0; // no disk blocks (never used, or punched)
    pub const SPARE: u8 = 1; // empty but its disk blocks are kept (the spare)
    pub const IN_USE: u8 = 2; // holds at least one live block, or is being filled
    pub const FRESH: u8 = 3; // reserved with its arena and never used since
}

// Arena header, at the start of every non-free arena.
pub const A_KIND: u64 = 0; // u8, see `kind`
pub const A_SPAN: u64 = 4; // u32, HUGE only: arenas the object spans
pub const A_LEN: u64 = 8; // u64, HUGE only: the object's length in bytes

// Small arena: one record per pool in pool 0, a descriptor followed by the block bitmap,
// so that an allocation or a free touches one contiguous run of metadata.
const S_RECORDS: u64 = 64; // 64 records of 144 bytes (index 0 unused)
/// Bytes of one pool record: the descriptor and the bitmap.
pub const RECORD_LEN: u64 = 16 + BITMAP_LEN;
pub const D_CLASS: u64 = 0; // u8: 0 none, c + 1 for class c
pub const D_STATE: u64 = 1; // u8, see `state`
pub const D_NLIVE: u64 = 2; // u16 live blocks
pub const D_BIRTH: u64 = 8; // u64 transaction id that took the pool into use
pub const D_BITMAP: u64 = 16; // the block bitmap
/// Bytes of one pool's block bitmap (enough for 1,024 blocks of 16 bytes).
pub const BITMAP_LEN: u64 = 128;
/// Bytes of a small arena's pool 0 that hold metadata: three pages.
pub const SMALL_META_LEN: u64 = (S_RECORDS + 64 * RECORD_LEN).div_ceil(PAGE) * PAGE;

// Large arena: page bitmaps and the run-length table in page 0.
pub const L_INUSE: u64 = 64; // 256-bit bitmap: page belongs to a live run (bit 0: metadata)
pub const L_RESIDENT: u64 = 96; // 256-bit bitmap: free page whose disk blocks are still held
pub const L_RUNLEN: u64 = 512; // 256 u16: run length in pages at a run's first page, else 0

/// Base offset of arena `a`.
#[inline]
pub const fn arena_base(a: u32) -> u64 {
    a as u64 * ARENA
}
/// Arena holding offset `off`.
#[inline]
pub const fn arena_of(off: u64) -> u64 {
    off / ARENA
}
/// Global pool id (offset / POOL) of pool `i` in arena `a`.
#[inline]
pub const fn pool_id(a: u32, i: u64) -> u32 {
    (a as u64 * POOLS_PER_ARENA + i) as u32
}
/// Base offset of pool `p`.
#[inline]
pub const fn pool_base(p: u32) -> u64 {
    p as u64 * POOL
}
/// Arena and in-arena index of pool `p`.
#[inline]
pub const fn pool_split(p: u32) -> (u32, u64) {
    ((p as u64 / POOLS_PER_ARENA) as u32, p as u64 % POOLS_PER_ARENA)
}
/// Offset of the record (descriptor, then bitmap) of pool `p`.
#[inline]
pub const fn record_off(p: u32) -> u64 {
    let (a, i) = pool_split(p);
    arena_base(a) + S_RECORDS + i * RECORD_LEN
}
/// Offset of page `i` of arena `a`.
#[inline]
pub const fn page_base(a: u32, i: u64) -> u64 {
    arena_base(a) + i * PAGE
}

/// The usable size of the block `alloc(size)` returns.
pub fn block_size(size: usize) -> u64 {
    let size = size.max(1) as u64;
    if size <= SMALL_MAX as u64 {
        class_size(class_of(size as usize))
    } else if size.div_ceil(crate::format::PAGE) <= LARGE_MAX_PAGES {
        size.div_ceil(crate::format::PAGE) * crate::format::PAGE
    } else {
        (size + crate::format::PAGE).div_ceil(crate::format::ARENA) * crate::format::ARENA
            - crate::format::PAGE
    }
}
