//! Mark bits for the tracing collector: a side bitmap in the collector's memory, one bit
//! per block, laid out like the allocator's live bitmaps (a row per pool, bit *k* for
//! block *k*), so that a sweep is `live & !marked`, a word at a time. A row is as long as
//! its pool's class needs (512 bits for 32-byte blocks), so the marks cost one bit per
//! block. Marking reads the side metadata to validate an offset and never touches an
//! object page.

use super::allocator::Allocator;
use super::layout::*;
use super::state::popcount;
use crate::error::Corruption;
use crate::format::{PAGE, POOLS_PER_ARENA};

/// A pool with no row (not in use when the marks were made).
const NO_ROW: u32 = u32::MAX;

/// The collector's mark bits for one trace. Rows: a small pool's blocks; a large arena's
/// pages (bit *p* for the run starting at page *p*, in the row of its pool 0); a huge
/// object (bit 0 of the row of its first arena's pool 0).
pub struct Marks {
    start: Vec<u32>, // [pool id]: the row's first word in `words`, or NO_ROW
    width: Vec<u8>,  // [pool id]: the row's words (0 for none)
    words: Vec<u64>, // every row, one after another
    marked: u64,     // bits set
    bytes: u64,      // usable bytes of the marked blocks
}

impl Marks {
    /// Blocks marked so far.
    pub fn marked(&self) -> u64 {
        self.marked
    }

    /// Usable bytes of the blocks marked so far.
    pub fn marked_bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of memory the mark bitmaps occupy (the rows, and one index entry per pool).
    pub fn footprint(&self) -> u64 {
        (self.words.len() * 8 + self.start.len() * 5) as u64
    }

    /// Bytes of the mark bits alone.
    pub fn bits_bytes(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// The row of pool `row`, empty if it has none.
    #[inline]
    fn row(&self, row: u32) -> &[u64] {
        match self.start.get(row as usize) {
            Some(&s) if s != NO_ROW => {
                &self.words[s as usize..s as usize + self.width[row as usize] as usize]
            }
            _ => &[],
        }
    }

    #[inline]
    fn set(&mut self, row: u32, bit: u64) -> bool {
        let Some(&s) = self.start.get(row as usize).filter(|&&s| s != NO_ROW) else { return false };
        let w = &mut self.words[s as usize + (bit / 64) as usize];
        let m = 1u64 << (bit % 64);
        let new = *w & m == 0;
        *w |= m;
        new
    }

    #[inline]
    fn get(&self, row: u32, bit: u64) -> bool {
        match self.start.get(row as usize) {
            Some(&s) if s != NO_ROW => self.words[s as usize + (bit / 64) as usize] & (1 << (bit % 64)) != 0,
            _ => false,
        }
    }

    /// Whether pool `row` had a row when these marks were made (blocks elsewhere were
    /// created since, which the caller accounts for).
    #[inline]
    fn has_row(&self, row: u32) -> bool {
        self.start.get(row as usize).is_some_and(|&s| s != NO_ROW)
    }

    /// Marked blocks in small pool `p`.
    pub fn in_pool(&self, p: u32) -> u64 {
        self.row(p).iter().map(|w| w.count_ones() as u64).sum()
    }
}

/// `ceil(2^32 / (c + 1))` for each class `c`: `(n * RECIPROCAL[c]) >> 32` is `n / (c + 1)`
/// exactly for every `n` below 2^16, and a pool has at most 1,024 granules of 16 bytes.
const RECIPROCAL: [u64; NCLASSES] = {
    let mut t = [0u64; NCLASSES];
    let mut c = 0;
    while c < NCLASSES {
        t[c] = (1u64 << 32).div_ceil(c as u64 + 1);
        c += 1;
    }
    t
};

/// The size class of the pool whose record (descriptor first) is `rec`, if it is in use.
fn in_use_class(rec: &[u8]) -> Option<usize> {
    let class = rec[D_CLASS as usize] as usize;
    (rec[D_STATE as usize] == state::IN_USE && (1..=NCLASSES).contains(&class)).then(|| class - 1)
}

fn not_live(off: u64) -> Corruption {
    Corruption::new(off, "reference to a block that is not allocated")
}

impl Allocator {
    /// Empty mark bits for every block live now: a row per small pool in use (as many
    /// bits as its class has blocks), per large arena and per huge object.
    pub fn new_marks(&self) -> Marks {
        let pools = self.st.arenas.len() * POOLS_PER_ARENA as usize;
        let (mut start, mut width) = (vec![NO_ROW; pools], vec![0u8; pools]);
        let mut len = 0usize;
        let mut row = |p: u32, words: usize| {
            start[p as usize] = len as u32;
            width[p as usize] = words as u8;
            len += words;
        };
        for (a, ar) in self.st.arenas.iter().enumerate() {
            let a = a as u32;
            match ar.kind {
                kind::SMALL => {
                    for (p, c, _) in self.pools_in_use(a).flatten() {
                        row(p, (class_cap(c) as usize).div_ceil(64));
                    }
                }
                kind::LARGE => row(pool_id(a, 0), 4),
                kind::HUGE => row(pool_id(a, 0), 1),
                _ => {}
            }
        }
        Marks { start, width, words: vec![0; len], marked: 0, bytes: 0 }
    }

    /// Marks the live block starting at `off`; returns whether it was unmarked. An offset
    /// that is not the start of a live block is corruption (a reference into free space).
    #[inline]
    pub fn mark(&self, m: &mut Marks, off: u64) -> Result<bool, Corruption> {
        let a = arena_of(off);
        let kind = self.st.arenas.get(a as usize).ok_or_else(|| not_live(off))?.kind;
        let (row, bit, size) = match kind {
            kind::SMALL => {
                let p = (off / crate::format::POOL) as u32;
                if p as u64 % POOLS_PER_ARENA == 0 {
                    return Err(not_live(off));
                }
                let rec = self.record(p).map_err(|_| not_live(off))?;
                let class = in_use_class(rec).ok_or_else(|| not_live(off))?;
                let size = class_size(class);
                let rel = off - pool_base(p);
                // rel / size without a division (the trace does this once per object).
                let k = ((rel >> 4) * RECIPROCAL[class]) >> 32;
                if k * size != rel || rec[(D_BITMAP + k / 8) as usize] & (1 << (k % 8)) == 0 {
                    return Err(not_live(off));
                }
                (p, k, size)
            }
            kind::LARGE => {
                let rel = off - arena_base(a as u32);
                let q = rel / PAGE;
                let n =
                    self.region.u16_at(arena_base(a as u32) + L_RUNLEN + 2 * q).map_err(|_| not_live(off))?;
                if rel % PAGE != 0 || q == 0 || n == 0 {
                    return Err(not_live(off));
                }
                (pool_id(a as u32, 0), q, n as u64 * PAGE)
            }
            kind::HUGE if off == arena_base(a as u32) + PAGE => {
                let span = self.st.arenas[a as usize].span;
                (pool_id(a as u32, 0), 0, super::state::huge_usable(span))
            }
            _ => return Err(not_live(off)),
        };
        if !m.has_row(row) {
            return Err(not_live(off)); // a block created after the marks were made
        }
        let new = m.set(row, bit);
        if new {
            m.marked += 1;
            m.bytes += size;
        }
        Ok(new)
    }

    /// Whether the block at `off` is marked (false for anything not a block).
    pub fn is_marked(&self, m: &Marks, off: u64) -> bool {
        let a = arena_of(off);
        match self.st.arenas.get(a as usize).map(|ar| ar.kind) {
            Some(kind::SMALL) => {
                let p = (off / crate::format::POOL) as u32;
                let class = self.record(p).map_or(0, |r| r[D_CLASS as usize]) as usize;
                if class == 0 || class > NCLASSES {
                    return false;
                }
                m.get(p, (off - pool_base(p)) / class_size(class - 1))
            }
            Some(kind::LARGE) => m.get(pool_id(a as u32, 0), (off - arena_base(a as u32)) / PAGE),
            Some(kind::HUGE) => m.get(pool_id(a as u32, 0), 0),
            _ => false,
        }
    }

    /// The sweep: every live block that is not marked, in address order.
    pub fn unmarked(&self, m: &Marks) -> Result<Vec<u64>, Corruption> {
        let mut out = Vec::new();
        for (a, ar) in self.st.arenas.iter().enumerate() {
            let a = a as u32;
            match ar.kind {
                kind::SMALL => {
                    for pool in self.pools_in_use(a) {
                        let (p, c, rec) = pool?;
                        let size = class_size(c);
                        let bits = &rec[D_BITMAP as usize..];
                        let marks = m.row(p);
                        for (w, chunk) in bits.chunks_exact(8).enumerate() {
                            let live = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                            let mut dead = live & !marks.get(w).copied().unwrap_or(0);
                            while dead != 0 {
                                let k = w as u64 * 64 + dead.trailing_zeros() as u64;
                                out.push(pool_base(p) + k * size);
                                dead &= dead - 1;
                            }
                        }
                    }
                }
                kind::LARGE => {
                    for q in 1..256u64 {
                        let n = self.region.u16_at(arena_base(a) + L_RUNLEN + 2 * q)?;
                        if n > 0 && !m.get(pool_id(a, 0), q) {
                            out.push(page_base(a, q));
                        }
                    }
                }
                kind::HUGE if !m.get(pool_id(a, 0), 0) => out.push(arena_base(a) + PAGE),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Small pools in use, each with its class and its live blocks (from the side bitmap),
    /// for compaction to choose which to evacuate.
    pub fn small_pools(&self) -> Result<Vec<(u32, usize, u64)>, Corruption> {
        let mut out = Vec::new();
        for (a, ar) in self.st.arenas.iter().enumerate() {
            if ar.kind == kind::SMALL {
                for pool in self.pools_in_use(a as u32) {
                    let (p, c, rec) = pool?;
                    out.push((p, c, popcount(&rec[D_BITMAP as usize..])));
                }
            }
        }
        Ok(out)
    }

    /// The pools of small arena `a` that are in use: (pool, class, its record).
    fn pools_in_use(&self, a: u32) -> impl Iterator<Item = Result<(u32, usize, &[u8]), Corruption>> + '_ {
        (1..POOLS_PER_ARENA).filter_map(move |i| {
            let p = pool_id(a, i);
            match self.record(p) {
                Err(e) => Some(Err(e.into())),
                Ok(rec) => in_use_class(rec).map(|c| Ok((p, c, rec))),
            }
        })
    }

    /// Live blocks of every kind.
    pub fn live_block_count(&self) -> u64 {
        self.st.live.blocks
    }

    /// Per size class: (pools in use, live blocks).
    pub fn class_counts(&self) -> [(u64, u64); NCLASSES] {
        std::array::from_fn(|c| (self.st.live.class_pools[c], self.st.live.class_blocks[c]))
    }

    /// Blocks a pool of class `c` holds.
    pub fn pool_capacity(c: usize) -> u64 {
        class_cap(c) as u64
    }

    /// Stops allocating from the given small pools (compaction empties them): they leave
    /// the partly-full lists until [`readmit`](Self::readmit). Pools that are full or not
    /// in use are ignored.
    pub fn exclude(&mut self, pools: &[u32]) {
        for &p in pools {
            for c in 0..NCLASSES {
                if self.st.partial[c].remove(&p) {
                    self.excluded.push((p, c));
                }
            }
        }
        for c in 0..NCLASSES {
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
    }

    /// Undoes [`exclude`](Self::exclude).
    pub fn readmit(&mut self) {
        for (p, c) in std::mem::take(&mut self.excluded) {
            // A pool that emptied meanwhile became spare; only one still partly full returns.
            let rec = self.record(p);
            let partly = rec.is_ok_and(|r| {
                let nlive = u16::from_le_bytes([r[D_NLIVE as usize], r[D_NLIVE as usize + 1]]) as u32;
                in_use_class(r) == Some(c) && nlive > 0 && nlive < class_cap(c)
            });
            if partly {
                self.st.partial[c].insert(p);
            }
        }
        for c in 0..NCLASSES {
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocals_divide_exactly() {
        for c in 0..NCLASSES as u64 {
            for n in 0..(1u64 << 16) {
                assert_eq!((n * RECIPROCAL[c as usize]) >> 32, n / (c + 1), "class {c}, n {n}");
            }
        }
    }
}
