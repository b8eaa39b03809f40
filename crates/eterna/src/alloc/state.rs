//! The allocator's in-memory index of the file: which arenas and pools are free, partly
//! full or full. Everything here is derived from the side metadata in the file by
//! [`State::scan`]; the allocator keeps it up to date as it goes, and `verify` compares the
//! two.

use super::layout::*;
use super::overlay::Overlay;
use crate::error::Corruption;
use crate::format::{ARENA, PAGE};
use crate::region::Region;
use std::collections::BTreeSet;

/// In-memory kind of the second and later arenas of a huge object (they have no header).
pub const TAIL: u8 = 0xff;
/// In-memory kind of arena 0, the control arena.
pub const CONTROL: u8 = 0xfe;
/// Pools available in a small arena (pool 0 holds the metadata).
pub const SMALL_POOLS: u8 = 63;
/// Pages available in a large arena (page 0 holds the metadata).
pub const LARGE_PAGES: u16 = LARGE_MAX_PAGES as u16;

/// What the allocator knows of one arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arena {
    pub kind: u8,        // layout::kind, TAIL or CONTROL
    pub free_pools: u8,  // SMALL: pools not in use (spare or hole)
    pub spare_pools: u8, // SMALL: pools in the SPARE state
    pub free_pages: u16, // LARGE: pages not in a live run
    pub span: u32,       // HUGE: arenas the object spans
}

/// Live-data counters, kept incrementally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    pub blocks: u64,                   // live blocks of every kind
    pub bytes: u64,                    // their sizes
    pub class_blocks: [u64; NCLASSES], // live small blocks per class
    pub class_pools: [u64; NCLASSES],  // in-use pools per class
    pub large_runs: u64,               // live page runs
    pub huge: u64,                     // live huge objects
    pub arenas: u64,                   // arenas not FREE
}

/// The index. Two states are equal when they describe the same allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub arenas: Vec<Arena>,                // [a] for arena a; [0] is the control arena
    pub free_arenas: BTreeSet<u32>,        // FREE arenas
    pub small_by_free: Vec<BTreeSet<u32>>, // [k]: small arenas with k free pools, k in 1..=63
    pub partial: Vec<BTreeSet<u32>>,       // per class: in-use pools with a free block
    pub spare: BTreeSet<u32>,              // pools in the SPARE state
    pub large_free: BTreeSet<(u16, u32)>,  // (free pages, arena) for large arenas with room
    pub live: Live,
}

/// Bits set in a little-endian bitmap.
pub fn popcount(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| b.count_ones() as u64).sum()
}

fn bit(bytes: &[u8], i: u64) -> bool {
    bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
}

impl State {
    /// An index of `arenas` arenas, all free.
    pub fn empty(arenas: u32) -> State {
        let mut s = State {
            arenas: vec![Arena::default(); arenas as usize + 1],
            free_arenas: (1..=arenas).collect(),
            small_by_free: vec![BTreeSet::new(); SMALL_POOLS as usize + 1],
            partial: vec![BTreeSet::new(); NCLASSES],
            spare: BTreeSet::new(),
            large_free: BTreeSet::new(),
            live: Live::default(),
        };
        s.arenas[0].kind = CONTROL;
        s
    }

    /// Rebuilds the index from the side metadata of `arenas` arenas, checking every field.
    pub fn scan(region: &Region, arenas: u32) -> Result<State, Corruption> {
        Self::scan_with(region, arenas, &Overlay::default())
    }

    /// [`scan`](Self::scan) with the writer's newer pool records in `overlay`.
    pub fn scan_with(region: &Region, arenas: u32, overlay: &Overlay) -> Result<State, Corruption> {
        let mut s = State::empty(arenas);
        let mut a = 1u32;
        while a <= arenas {
            let base = arena_base(a);
            match region.u8_at(base + A_KIND)? {
                kind::FREE => {}
                kind::SMALL => s.scan_small(region, overlay, a)?,
                kind::LARGE => s.scan_large(region, a)?,
                kind::HUGE => {
                    let (span, len) = huge_header(region, a)?;
                    if !huge_header_fits(a, arenas, span, len) {
                        return Err(Corruption::new(
                            base,
                            format!("huge object of {len} bytes cannot span {span} arenas here"),
                        ));
                    }
                    s.take_huge(a, span);
                    s.live.huge += 1;
                    s.live.blocks += 1;
                    s.live.bytes += huge_usable(span);
                    s.live.arenas += span as u64;
                    a += span;
                    continue;
                }
                k => return Err(Corruption::new(base, format!("unknown arena kind {k}"))),
            }
            a += 1;
        }
        Ok(s)
    }

    /// What can still be checked of the side metadata when the last writer died in a
    /// transaction (see `docs/design.md`, "Checking"): a writer changes a record's class,
    /// state and live count in one store, and a field such as a run length or an arena
    /// kind in one store, but a record's bitmap, a large arena's bitmaps and a huge
    /// object's header in several. So this checks arena kinds, each pool's class and
    /// state and live count against each other, and that each run lies in its arena;
    /// a huge header it cannot make sense of is taken as an arena being activated
    /// (nothing in it is allocated). The index it returns is good for telling where
    /// blocks of which size may lie (`Allocator::slot_size`), not for allocating.
    pub fn scan_interrupted(region: &Region, arenas: u32) -> Result<State, Corruption> {
        let mut s = State::empty(arenas);
        let mut a = 1u32;
        while a <= arenas {
            let base = arena_base(a);
            let k = region.u8_at(base + A_KIND)?;
            match k {
                kind::FREE => {}
                kind::SMALL => {
                    for i in 1..SMALL_POOLS as u64 + 1 {
                        let d = record_off(pool_id(a, i));
                        let rec = region.bytes(d, 4)?;
                        let (class, st, nlive) = (rec[0], rec[1], u16::from_le_bytes([rec[2], rec[3]]));
                        let ok = match st {
                            state::HOLE | state::SPARE | state::FRESH => class == 0 && nlive == 0,
                            state::IN_USE => {
                                (1..=NCLASSES).contains(&(class as usize))
                                    && nlive as u32 <= class_cap(class as usize - 1)
                            }
                            _ => false,
                        };
                        if !ok {
                            return Err(Corruption::new(
                                d,
                                format!("pool record of state {st}, class {class}, {nlive} live blocks"),
                            ));
                        }
                    }
                }
                kind::LARGE => {
                    if region.u16_at(base + L_RUNLEN)? != 0 {
                        return Err(Corruption::new(base + L_RUNLEN, "a run starts at the metadata page"));
                    }
                    for p in 1..LARGE_PAGES as u64 + 1 {
                        let n = region.u16_at(base + L_RUNLEN + 2 * p)? as u64;
                        if p + n > LARGE_PAGES as u64 + 1 {
                            return Err(Corruption::new(
                                base + L_RUNLEN + 2 * p,
                                format!("run of {n} pages at page {p} leaves its arena"),
                            ));
                        }
                    }
                }
                kind::HUGE => {
                    let (span, len) = huge_header(region, a)?;
                    if huge_header_fits(a, arenas, span, len) {
                        s.take_huge(a, span);
                        a += span;
                        continue;
                    }
                    a += 1;
                    continue;
                }
                k => return Err(Corruption::new(base, format!("unknown arena kind {k}"))),
            }
            if k != kind::FREE {
                s.free_arenas.remove(&a);
                s.arenas[a as usize].kind = k;
            }
            a += 1;
        }
        Ok(s)
    }

    /// Marks arena `a` as the head of a huge object of `span` arenas, and the rest as its tail.
    fn take_huge(&mut self, a: u32, span: u32) {
        self.free_arenas.remove(&a);
        self.arenas[a as usize] = Arena { kind: kind::HUGE, span, ..Arena::default() };
        for t in a + 1..a + span {
            self.free_arenas.remove(&t);
            self.arenas[t as usize].kind = TAIL;
        }
    }

    fn scan_small(&mut self, region: &Region, overlay: &Overlay, a: u32) -> Result<(), Corruption> {
        let mut ar = Arena { kind: kind::SMALL, ..Arena::default() };
        for i in 1..SMALL_POOLS as u64 + 1 {
            let p = pool_id(a, i);
            let d = record_off(p);
            let rec = match overlay.get(p) {
                Some(r) => &r[..],
                None => region.bytes(d, RECORD_LEN as usize)?,
            };
            let n = D_NLIVE as usize;
            let (class, st, nlive) =
                (rec[D_CLASS as usize], rec[D_STATE as usize], u16::from_le_bytes([rec[n], rec[n + 1]]));
            let bits = &rec[D_BITMAP as usize..];
            let ones = popcount(bits);
            match st {
                state::HOLE | state::SPARE | state::FRESH => {
                    if class != 0 || nlive != 0 || ones != 0 {
                        return Err(Corruption::new(d, "empty pool with a class or live blocks"));
                    }
                    ar.free_pools += 1;
                    if st == state::SPARE {
                        ar.spare_pools += 1;
                        self.spare.insert(p);
                    }
                }
                state::IN_USE => {
                    if class == 0 || class as usize > NCLASSES {
                        return Err(Corruption::new(d, format!("pool of unknown size class {class}")));
                    }
                    let c = class as usize - 1;
                    let cap = class_cap(c) as u64;
                    if nlive as u64 > cap || ones != nlive as u64 || (cap..1024).any(|b| bit(bits, b)) {
                        return Err(Corruption::new(
                            d,
                            format!("pool counts {nlive} live blocks, its bitmap {ones} (capacity {cap})"),
                        ));
                    }
                    if (nlive as u64) < cap {
                        self.partial[c].insert(p);
                    }
                    self.live.class_pools[c] += 1;
                    self.live.class_blocks[c] += nlive as u64;
                    self.live.blocks += nlive as u64;
                    self.live.bytes += nlive as u64 * class_size(c);
                }
                _ => return Err(Corruption::new(d, format!("unknown pool state {st}"))),
            }
        }
        self.free_arenas.remove(&a);
        self.live.arenas += 1;
        if ar.free_pools > 0 {
            self.small_by_free[ar.free_pools as usize].insert(a);
        }
        self.arenas[a as usize] = ar;
        Ok(())
    }

    fn scan_large(&mut self, region: &Region, a: u32) -> Result<(), Corruption> {
        let base = arena_base(a);
        let inuse = region.bytes(base + L_INUSE, 32)?;
        let resident = region.bytes(base + L_RESIDENT, 32)?;
        if !bit(inuse, 0) || bit(resident, 0) || region.u16_at(base + L_RUNLEN)? != 0 {
            return Err(Corruption::new(base + L_INUSE, "large arena metadata page not marked"));
        }
        let mut used = 0u16;
        let mut p = 1u64;
        while p < 256 {
            let n = region.u16_at(base + L_RUNLEN + 2 * p)? as u64;
            if n == 0 {
                if bit(inuse, p) {
                    return Err(Corruption::new(base + L_INUSE, format!("page {p} in use outside any run")));
                }
                p += 1;
                continue;
            }
            if p + n > 256 || (p..p + n).any(|q| !bit(inuse, q) || bit(resident, q)) {
                return Err(Corruption::new(
                    base + L_RUNLEN + 2 * p,
                    format!("bad run of {n} pages at page {p}"),
                ));
            }
            for q in p + 1..p + n {
                if region.u16_at(base + L_RUNLEN + 2 * q)? != 0 {
                    return Err(Corruption::new(base + L_RUNLEN + 2 * q, "overlapping runs"));
                }
            }
            self.live.large_runs += 1;
            self.live.blocks += 1;
            self.live.bytes += n * PAGE;
            used += n as u16;
            p += n;
        }
        let free = LARGE_PAGES - used;
        self.free_arenas.remove(&a);
        self.live.arenas += 1;
        if free > 0 {
            self.large_free.insert((free, a));
        }
        self.arenas[a as usize] = Arena { kind: kind::LARGE, free_pages: free, ..Arena::default() };
        Ok(())
    }

    /// Moves small arena `a` to the bucket for `free_pools` free pools.
    pub fn set_free_pools(&mut self, a: u32, free_pools: u8) {
        let ar = &mut self.arenas[a as usize];
        if ar.free_pools > 0 {
            self.small_by_free[ar.free_pools as usize].remove(&a);
        }
        ar.free_pools = free_pools;
        if free_pools > 0 {
            self.small_by_free[free_pools as usize].insert(a);
        }
    }

    /// Sets the free page count of large arena `a`, keeping `large_free` in step.
    pub fn set_free_pages(&mut self, a: u32, free_pages: u16) {
        let ar = &mut self.arenas[a as usize];
        if ar.free_pages > 0 {
            self.large_free.remove(&(ar.free_pages, a));
        }
        ar.free_pages = free_pages;
        if free_pages > 0 {
            self.large_free.insert((free_pages, a));
        }
    }

    /// Small pools in use, over all classes.
    pub fn pools_in_use(&self) -> u64 {
        self.live.class_pools.iter().sum()
    }
}

/// Usable bytes of a huge object spanning `span` arenas.
pub fn huge_usable(span: u32) -> u64 {
    span as u64 * ARENA - PAGE
}

/// A huge object's header in arena `a`: its span in arenas and its length in bytes.
fn huge_header(region: &Region, a: u32) -> Result<(u32, u64), Corruption> {
    let base = arena_base(a);
    let span = u32::from_le_bytes(region.bytes(base + A_SPAN, 4)?.try_into().expect("4"));
    Ok((span, region.u64_at(base + A_LEN)?))
}

/// Whether a huge object of `len` bytes starting at arena `a` may span `span` of the
/// file's `arenas` arenas: it stays inside the file and needs every arena it spans.
fn huge_header_fits(a: u32, arenas: u32, span: u32, len: u64) -> bool {
    let fits = span >= 1 && a as u64 + span as u64 - 1 <= arenas as u64;
    let minimal = len > 0 && len <= span as u64 * ARENA - PAGE && len + PAGE > (span as u64 - 1) * ARENA;
    fits && minimal
}
