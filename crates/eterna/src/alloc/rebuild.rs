//! Rebuilding the side metadata from the set of live blocks: crash recovery. A writer
//! killed in the middle of a transaction leaves allocations no committed state reaches
//! (and possibly a half-written pool record); the layers above trace the committed state,
//! hand the blocks it reaches to [`Allocator::rebuild`], and every other block is free.

use super::allocator::Allocator;
use super::layout::*;
use super::overlay::Overlay;
use super::state::{State, LARGE_PAGES, SMALL_POOLS};
use crate::error::Corruption;
use crate::format::{ARENA, PAGE, POOL};
use std::collections::BTreeMap;
use std::io;

/// What one arena holds, according to the live blocks.
enum Plan {
    Free,
    /// Per pool index: class and live block indices.
    Small(BTreeMap<u64, (usize, Vec<u64>)>),
    /// Runs: first page and length in pages.
    Large(Vec<(u64, u64)>),
    Huge {
        span: u32,
        len: u64,
    },
    Tail,
}

/// Why the rebuild failed.
#[derive(Debug)]
pub enum RebuildError {
    Corrupt(Corruption),
    Io(io::Error),
}

impl From<Corruption> for RebuildError {
    fn from(c: Corruption) -> Self {
        RebuildError::Corrupt(c)
    }
}
impl From<io::Error> for RebuildError {
    fn from(e: io::Error) -> Self {
        RebuildError::Io(e)
    }
}
impl From<crate::region::OutOfBounds> for RebuildError {
    fn from(e: crate::region::OutOfBounds) -> Self {
        RebuildError::Corrupt(e.into())
    }
}

fn plan(arenas: u32, blocks: &[(u64, u64)]) -> Result<Vec<Plan>, Corruption> {
    let mut plans: Vec<Plan> = (0..=arenas).map(|_| Plan::Free).collect();
    let mut end = 0u64;
    for &(off, size) in blocks {
        if off < end {
            return Err(Corruption::new(off, "two live objects overlap"));
        }
        end = off + size;
        let a = off / ARENA;
        if a == 0 || a > arenas as u64 {
            return Err(Corruption::new(off, "live object outside the data arenas"));
        }
        let rel = off % ARENA;
        let bad = |what: &str| Corruption::new(off, format!("live object of {size} bytes {what}"));
        if size as usize <= SMALL_MAX {
            let c = class_of(size as usize);
            let (pool, in_pool) = (rel / POOL, rel % POOL);
            if pool == 0 || in_pool % class_size(c) != 0 {
                return Err(bad("is not at a block boundary"));
            }
            let plan = &mut plans[a as usize];
            if matches!(plan, Plan::Free) {
                *plan = Plan::Small(BTreeMap::new());
            }
            let Plan::Small(pools) = plan else {
                return Err(bad("shares an arena with objects of another kind"));
            };
            let entry = pools.entry(pool).or_insert((c, Vec::new()));
            if entry.0 != c {
                return Err(bad("shares a pool with objects of another size class"));
            }
            entry.1.push(in_pool / class_size(c));
        } else if size.div_ceil(PAGE) <= LARGE_MAX_PAGES {
            let (page, pages) = (rel / PAGE, size.div_ceil(PAGE));
            if rel % PAGE != 0 || page == 0 || page + pages > 256 {
                return Err(bad("is not a run of pages inside its arena"));
            }
            let plan = &mut plans[a as usize];
            if matches!(plan, Plan::Free) {
                *plan = Plan::Large(Vec::new());
            }
            let Plan::Large(runs) = plan else {
                return Err(bad("shares an arena with objects of another kind"));
            };
            runs.push((page, pages));
        } else {
            let span = (size + PAGE).div_ceil(ARENA);
            if rel != PAGE || a + span - 1 > arenas as u64 {
                return Err(bad("is not a huge object at the start of its arenas"));
            }
            for x in a..a + span {
                if !matches!(plans[x as usize], Plan::Free) {
                    return Err(bad("spans arenas holding other objects"));
                }
                plans[x as usize] = Plan::Tail;
            }
            plans[a as usize] = Plan::Huge { span: span as u32, len: size };
        }
    }
    Ok(plans)
}

impl Allocator {
    /// Rewrites every arena's side metadata so that exactly `blocks` (offset, object size;
    /// in any order) are live, punches everything else out of the file, and rebuilds the
    /// in-memory index. Used after a writer died mid-transaction.
    pub fn rebuild(&mut self, mut blocks: Vec<(u64, u64)>) -> Result<(), RebuildError> {
        blocks.sort_unstable();
        blocks.dedup();
        let arenas = self.meta.arenas as u32;
        let plans = plan(arenas, &blocks)?;
        self.overlay = Overlay::default(); // every record is rewritten below
        for (a, p) in plans.iter().enumerate().skip(1) {
            let a = a as u32;
            let base = arena_base(a);
            match p {
                Plan::Tail => {}
                Plan::Free => {
                    if !self.region.punch(base, ARENA)? {
                        self.region.bytes_mut(base, PAGE as usize)?.fill(0);
                    }
                }
                Plan::Small(pools) => {
                    self.region.reserve(base, SMALL_META_LEN)?;
                    self.region.bytes_mut(base, SMALL_META_LEN as usize)?.fill(0);
                    self.region.set_u8(base + A_KIND, kind::SMALL)?;
                    for i in 1..=SMALL_POOLS as u64 {
                        let p = pool_id(a, i);
                        let rec = record_off(p);
                        match pools.get(&i) {
                            Some((c, idx)) => {
                                self.region.set_u8(rec + D_CLASS, *c as u8 + 1)?;
                                self.region.set_u8(rec + D_STATE, state::IN_USE)?;
                                self.region.set_u16(rec + D_NLIVE, idx.len() as u16)?;
                                for &k in idx {
                                    let at = rec + D_BITMAP + k / 8;
                                    let b = self.region.u8_at(at)?;
                                    self.region.set_u8(at, b | 1 << (k % 8))?;
                                }
                            }
                            None => {
                                // Unknown whether it holds disk blocks: make it a hole.
                                self.region.punch(pool_base(p), POOL)?;
                                self.region.set_u8(rec + D_STATE, state::HOLE)?;
                            }
                        }
                    }
                }
                Plan::Large(runs) => {
                    self.region.reserve(base, PAGE)?;
                    self.region.bytes_mut(base, PAGE as usize)?.fill(0);
                    self.region.set_u8(base + A_KIND, kind::LARGE)?;
                    let mut used = [false; 256];
                    used[0] = true;
                    for &(page, pages) in runs {
                        self.region.set_u16(base + L_RUNLEN + 2 * page, pages as u16)?;
                        for q in page..page + pages {
                            used[q as usize] = true;
                        }
                    }
                    let mut q = 1usize;
                    while q < 256 {
                        if used[q] {
                            let at = base + L_INUSE + q as u64 / 8;
                            let b = self.region.u8_at(at)?;
                            self.region.set_u8(at, b | 1 << (q % 8))?;
                            q += 1;
                            continue;
                        }
                        let start = q;
                        while q < 256 && !used[q] {
                            q += 1;
                        }
                        self.region.punch(page_base(a, start as u64), (q - start) as u64 * PAGE)?;
                    }
                    self.region.set_u8(base + L_INUSE, 1 | self.region.u8_at(base + L_INUSE)?)?;
                }
                Plan::Huge { span, len } => {
                    self.region.set_u8(base + A_KIND, kind::HUGE)?;
                    self.region.bytes_mut(base + A_SPAN, 4)?.copy_from_slice(&span.to_le_bytes());
                    self.region.set_u64(base + A_LEN, *len)?;
                }
            }
        }
        let _ = LARGE_PAGES;
        self.st = State::scan(&self.region, arenas)?;
        for c in 0..NCLASSES {
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
        self.touched.clear();
        self.large_dirty.clear();
        self.pending = 0;
        self.dirty = true;
        Ok(())
    }
}

impl Allocator {
    /// Marks every block of every small pool in use as live, in the file and the index.
    ///
    /// For a writer that takes over from one that died while another process's snapshot
    /// pins an older state: pool states in the file are current, but an in-use pool's bits
    /// may lag what the dead writer allocated since its last write-back, and a trace of the
    /// current state cannot find the blocks only the pinned state reaches. Taking all of
    /// them as live is safe; a collection then retires what the current state does not
    /// reach, freed once those snapshots move on.
    pub fn assume_in_use_pools_full(&mut self) -> Result<(), RebuildError> {
        self.write_back()?;
        let arenas = self.meta.arenas as u32;
        for a in 1..=arenas {
            if self.st.arenas[a as usize].kind != kind::SMALL {
                continue;
            }
            for i in 1..=SMALL_POOLS as u64 {
                let p = pool_id(a, i);
                let rec = self.region.bytes_mut(record_off(p), RECORD_LEN as usize)?;
                let class = rec[D_CLASS as usize] as usize;
                if rec[D_STATE as usize] != state::IN_USE || class == 0 || class > NCLASSES {
                    continue;
                }
                let cap = class_cap(class - 1) as u64;
                let bits = &mut rec[D_BITMAP as usize..];
                bits.fill(0);
                for k in 0..cap {
                    bits[(k / 8) as usize] |= 1 << (k % 8);
                }
                rec[D_NLIVE as usize..D_NLIVE as usize + 2].copy_from_slice(&(cap as u16).to_le_bytes());
            }
        }
        self.st = State::scan(&self.region, arenas)?;
        for c in 0..NCLASSES {
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
        self.dirty = true;
        Ok(())
    }
}
