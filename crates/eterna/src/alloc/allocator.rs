//! [`Allocator`]: pymalloc's design inside a file, with the fixes pymalloc never got.
//!
//! - Blocks of up to 512 bytes come from 16 KiB pools of one size class (16-byte steps);
//!   pools live in 1 MiB arenas. Larger objects are runs of 4 KiB pages in large arenas;
//!   objects larger than a large arena span whole arenas.
//! - Allocation state is in side bitmaps and descriptors at the start of each arena, never
//!   in the pages that hold blocks.
//! - A class fills its lowest-addressed partly-full pool first; a new pool comes from the
//!   most-full arena (Evan Jones, 2005), so that emptier arenas drain and can be given back.
//! - Empty pools, freed page runs and empty arenas are punched out of the file, less a
//!   self-tuned spare (see [`super::spare`]).

use super::layout::{self, *};
use super::overlay::{Overlay, Record};
use super::spare::{SparePolicy, MIN_SPARE};
use super::state::{huge_usable, Arena, State, CONTROL, LARGE_PAGES, SMALL_POOLS, TAIL};
use super::stats::{ClassStats, Stats};
use crate::error::{AllocError, Corruption, FreeError, OpenError};
use crate::format::{
    meta_slot_offset, Header, HeaderError, Meta, ARENA, CONTROL_RESERVED, FORMAT_VERSION, HEADER_LEN, MAGIC,
    META_LEN, PAGE, POOL,
};
use crate::region::{Access, OutOfBounds, Region};
use std::collections::BTreeSet;
use std::io;
use std::path::Path;

/// Pools emptied (or page runs freed) between two automatic release passes.
const RELEASE_BATCH: u32 = 64;

/// How much a publish syncs; see [`Allocator::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Never sync: survives a process crash, not a power cut.
    None,
    /// One `fdatasync` per publish (the default).
    #[default]
    Commit,
    /// Two: the state is durable when `publish` returns.
    Full,
}

/// A heap file's allocator. Offsets it hands out are file offsets; they stay valid across
/// reopening and in every process that maps the file.
pub struct Allocator {
    pub(super) region: Region,              // the file and its mapping
    pub(super) header: Header,              // the immutable header
    pub(super) meta: Meta,                  // the state to publish at the next flush
    pub(super) meta_slot: usize,            // the slot holding the last published meta
    pub(super) st: State,                   // the in-memory index of the side metadata
    pub(super) current: [u32; NCLASSES],    // per class: the pool to allocate from next, or 0
    pub(super) policy: SparePolicy,         // how many empty pools to keep
    pub(super) pending: u32,                // pools emptied or runs freed since the last release
    pub(super) touched: BTreeSet<u32>,      // small arenas that emptied a pool since the last release
    pub(super) large_dirty: BTreeSet<u32>,  // large arenas with freed pages still holding disk blocks
    pub(super) dirty: bool,                 // changed since the last flush
    pub(super) excluded: Vec<(u32, usize)>, // (pool, class) kept out of `partial` by compaction
    pub(super) overlay: Overlay,            // in-use pools' records whose bits the file lags
}

fn not_eterna(b: &[u8]) -> bool {
    b.len() < MAGIC.len() || b[..MAGIC.len()] != MAGIC
}

impl Allocator {
    /// Creates a new, empty heap file at `path`; fails if the file exists.
    pub fn create(path: &Path) -> Result<Allocator, OpenError> {
        let mut region = Region::create_new(path, ARENA, CONTROL_RESERVED)?;
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let header = Header { version: FORMAT_VERSION, seed: u64::from_le_bytes(seed) };
        header.encode(region.bytes_mut(0, HEADER_LEN)?);
        let meta = Meta { txn_id: 1, spare_target: MIN_SPARE, ..Meta::default() };
        meta.encode(region.bytes_mut(meta_slot_offset(1), META_LEN)?);
        region.sync()?;
        Ok(Self::assemble(region, header, meta, 1, State::empty(0)))
    }

    /// Opens an existing heap file. A read-only allocator reads and reports but never
    /// writes the file.
    pub fn open(path: &Path, access: Access) -> Result<Allocator, OpenError> {
        Self::open_with(path, access, true)
    }

    /// Opens a heap whose side metadata may be inconsistent (its writer died): the header
    /// and meta are checked, the arenas are not scanned, and the allocator must be
    /// [`rebuild`](Self::rebuild)t before it allocates.
    pub fn open_for_recovery(path: &Path) -> Result<Allocator, OpenError> {
        Self::open_with(path, Access::ReadWrite, false)
    }

    /// Opens a heap read-only without scanning its arenas (for the checker, which decides
    /// whether the metadata can be trusted).
    pub fn open_for_recovery_readonly(path: &Path) -> Result<Allocator, OpenError> {
        Self::open_with(path, Access::ReadOnly, false)
    }

    /// Opens a heap read-only whose last writer died in a transaction, for the checker:
    /// the side metadata is scanned only for what a crash cannot leave inconsistent (see
    /// `State::scan_interrupted`). The allocator answers [`slot_size`](Self::slot_size)
    /// and reads; it must not be used to allocate.
    pub fn open_interrupted_readonly(path: &Path) -> Result<Allocator, OpenError> {
        let mut a = Self::open_with(path, Access::ReadOnly, false)?;
        a.st = State::scan_interrupted(&a.region, a.meta.arenas as u32)?;
        Ok(a)
    }

    fn open_with(path: &Path, access: Access, scan: bool) -> Result<Allocator, OpenError> {
        let region = Region::open(path, access)?;
        let len = region.len();
        let head = region.bytes(0, (len.min(HEADER_LEN as u64)) as usize)?;
        if not_eterna(head) {
            return Err(OpenError::NotEterna);
        }
        if len < CONTROL_RESERVED {
            return Err(OpenError::Truncated { len, expected: ARENA });
        }
        let header = Header::decode(region.bytes(0, HEADER_LEN)?).map_err(|e| match e {
            HeaderError::NotEterna => OpenError::NotEterna,
            HeaderError::Version(found) => OpenError::UnsupportedVersion { found, supported: FORMAT_VERSION },
            HeaderError::Geometry { .. } => {
                OpenError::UnsupportedVersion { found: FORMAT_VERSION, supported: FORMAT_VERSION }
            }
            HeaderError::Checksum => OpenError::Corrupt(Corruption::new(0, "file header checksum mismatch")),
        })?;
        let slots = [0, 1].map(|i| Meta::decode(region.bytes(meta_slot_offset(i), META_LEN).ok()?));
        let (slot, meta) = Meta::current(slots)
            .ok_or_else(|| Corruption::new(meta_slot_offset(0), "neither meta slot is valid"))?;
        let expected = meta
            .arenas
            .checked_add(1)
            .and_then(|n| n.checked_mul(ARENA))
            .filter(|_| meta.arenas < u32::MAX as u64)
            .ok_or_else(|| Corruption::new(meta_slot_offset(slot), "impossible arena count"))?;
        if len < expected {
            return Err(OpenError::Truncated { len, expected });
        }
        let st =
            if scan { State::scan(&region, meta.arenas as u32)? } else { State::empty(meta.arenas as u32) };
        Ok(Self::assemble(region, header, meta, slot, st))
    }

    fn assemble(region: Region, header: Header, meta: Meta, slot: usize, st: State) -> Allocator {
        let mut a = Allocator {
            region,
            header,
            policy: SparePolicy::new(meta.spare_target),
            meta,
            meta_slot: slot,
            st,
            current: [0; NCLASSES],
            pending: 0,
            touched: BTreeSet::new(),
            large_dirty: BTreeSet::new(),
            dirty: false,
            excluded: Vec::new(),
            overlay: Overlay::default(),
        };
        for c in 0..NCLASSES {
            a.current[c] = a.st.partial[c].first().copied().unwrap_or(0);
        }
        a.large_dirty = (1..a.st.arenas.len() as u32)
            .filter(|&x| a.st.arenas[x as usize].kind == kind::LARGE && a.large_resident_any(x))
            .collect();
        a
    }

    fn large_resident_any(&self, a: u32) -> bool {
        self.region.bytes(arena_base(a) + L_RESIDENT, 32).map(|b| b.iter().any(|&x| x != 0)).unwrap_or(false)
    }

    /// The file header (format version, hash seed).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The region, for the layers above to read and write block contents.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Borrows the `len` bytes of a block at `off`.
    pub fn bytes(&self, off: u64, len: usize) -> Result<&[u8], Corruption> {
        Ok(self.region.bytes(off, len)?)
    }

    /// Borrows the `len` bytes at `off` for writing. Only blocks this allocator handed out
    /// and that no reader can see may be written.
    pub fn bytes_mut(&mut self, off: u64, len: usize) -> Result<&mut [u8], AllocError> {
        if !self.region.writable() {
            return Err(AllocError::ReadOnly);
        }
        Ok(self.region.bytes_mut(off, len)?)
    }

    fn writable(&self) -> bool {
        self.region.writable()
    }

    // ----- pool records -----------------------------------------------------------------

    /// Pool `p`'s record (descriptor, then bitmap) as the allocator knows it: the writer's
    /// copy if its bits changed since the last write-back, else the file's.
    #[inline]
    pub(super) fn record(&self, p: u32) -> Result<&[u8], OutOfBounds> {
        match self.overlay.get(p) {
            Some(r) => Ok(&r[..]),
            None => self.region.bytes(record_off(p), RECORD_LEN as usize),
        }
    }

    /// Pool `p`'s record for a change that the file may learn later (see [`Overlay`]).
    #[inline]
    fn record_mut(&mut self, p: u32) -> Result<&mut Record, OutOfBounds> {
        let file = self.region.bytes(record_off(p), RECORD_LEN as usize)?;
        Ok(self.overlay.get_or_load(p, file))
    }

    /// Writes pool `p`'s record to the file now (a change of the pool's state).
    fn write_record(&mut self, p: u32) -> Result<(), OutOfBounds> {
        if let Some(rec) = self.overlay.take(p) {
            self.region.bytes_mut(record_off(p), RECORD_LEN as usize)?.copy_from_slice(&rec);
        }
        Ok(())
    }

    /// Writes every pool record whose bits changed since the last write-back to the file
    /// (through the mapping; the next sync makes it durable). A fully synced publish does
    /// this first; the transaction layer also calls it after freeing a batch of replaced
    /// blocks, which bounds how far the file lags.
    pub fn write_back(&mut self) -> io::Result<()> {
        let mut recs = self.overlay.drain();
        recs.sort_unstable_by_key(|&(p, _)| p);
        for (p, rec) in recs {
            self.region
                .bytes_mut(record_off(p), RECORD_LEN as usize)
                .map_err(|e| io::Error::other(format!("{e:?}")))?
                .copy_from_slice(&rec);
        }
        Ok(())
    }

    /// Pool records the file lags (their bits changed since the last write-back).
    pub fn records_lagging(&self) -> usize {
        self.overlay.len()
    }

    // ----- allocation -------------------------------------------------------------------

    /// Allocates a block of at least `size` bytes and returns its file offset. The block's
    /// contents are unspecified.
    pub fn alloc(&mut self, size: usize) -> Result<u64, AllocError> {
        if !self.writable() {
            return Err(AllocError::ReadOnly);
        }
        self.dirty = true;
        if size <= SMALL_MAX {
            return self.alloc_small(class_of(size));
        }
        let pages = (size as u64).div_ceil(PAGE);
        if pages <= LARGE_MAX_PAGES {
            self.alloc_large(pages as u16)
        } else {
            self.alloc_huge(size)
        }
    }

    fn alloc_small(&mut self, c: usize) -> Result<u64, AllocError> {
        let mut p = self.current[c];
        if p == 0 {
            p = self.take_pool(c)?;
        }
        let cap = class_cap(c) as u64;
        let rec = self.record_mut(p)?;
        let (desc, bits) = rec.split_at_mut(D_BITMAP as usize);
        let words = cap.div_ceil(64) as usize;
        let mut found = None;
        for (w, chunk) in bits[..words * 8].chunks_exact_mut(8).enumerate() {
            let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let valid = if (w as u64 + 1) * 64 <= cap { !0u64 } else { (1u64 << (cap % 64)) - 1 };
            let free = !v & valid;
            if free != 0 {
                let b = free.trailing_zeros() as u64;
                chunk.copy_from_slice(&(v | 1 << b).to_le_bytes());
                found = Some(w as u64 * 64 + b);
                break;
            }
        }
        let idx =
            found.ok_or_else(|| Corruption::new(record_off(p), "partly-full pool has no free block"))?;
        let n = D_NLIVE as usize;
        let nlive = u16::from_le_bytes([desc[n], desc[n + 1]]) + 1;
        desc[n..n + 2].copy_from_slice(&nlive.to_le_bytes());
        if nlive as u64 == cap {
            self.st.partial[c].remove(&p);
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
        let size = class_size(c);
        self.st.live.blocks += 1;
        self.st.live.bytes += size;
        self.st.live.class_blocks[c] += 1;
        Ok(pool_base(p) + idx * size)
    }

    /// Takes an empty pool into use for class `c`: a spare pool if there is one (in the
    /// most-full arena holding spares), else a fresh pool or a hole in the most-full small
    /// arena, else a pool of a newly activated arena.
    fn take_pool(&mut self, c: usize) -> Result<u32, AllocError> {
        let spare = self
            .st
            .spare
            .iter()
            .copied()
            .min_by_key(|&p| (self.st.arenas[pool_split(p).0 as usize].free_pools, p));
        let (p, was) = match spare {
            Some(p) => (p, state::SPARE),
            None => {
                let a = match (1..=SMALL_POOLS as usize)
                    .find_map(|k| self.st.small_by_free[k].first().copied())
                {
                    Some(a) => a,
                    None => self.activate(kind::SMALL, 1)?,
                };
                let mut best = None;
                for i in 1..=SMALL_POOLS as u64 {
                    let st = self.record(pool_id(a, i))?[D_STATE as usize];
                    if st == state::FRESH {
                        best = Some((pool_id(a, i), st));
                        break;
                    }
                    if st == state::HOLE && best.is_none() {
                        best = Some((pool_id(a, i), st));
                    }
                }
                let (p, st) =
                    best.ok_or_else(|| Corruption::new(arena_base(a), "arena counts a free pool it lacks"))?;
                if st == state::HOLE {
                    self.region.reserve(pool_base(p), POOL)?;
                    self.region.populate(pool_base(p), POOL);
                }
                (p, st)
            }
        };
        let (a, _) = pool_split(p);
        let birth = self.meta.txn_id;
        let rec = self.record_mut(p)?;
        rec[D_CLASS as usize] = c as u8 + 1;
        rec[D_STATE as usize] = state::IN_USE;
        rec[D_NLIVE as usize..D_NLIVE as usize + 2].fill(0);
        rec[D_BIRTH as usize..D_BIRTH as usize + 8].copy_from_slice(&birth.to_le_bytes());
        self.write_record(p)?;
        if was == state::SPARE {
            self.st.spare.remove(&p);
            self.st.arenas[a as usize].spare_pools -= 1;
        }
        let free = self.st.arenas[a as usize].free_pools - 1;
        self.st.set_free_pools(a, free);
        self.st.partial[c].insert(p);
        self.st.live.class_pools[c] += 1;
        self.current[c] = self.st.partial[c].first().copied().unwrap_or(p);
        self.policy.on_take(p, was == state::HOLE);
        self.meta.pools_total += 1;
        Ok(p)
    }

    /// Activates `span` consecutive free arenas as `kind` (growing the file if needed) and
    /// reserves their metadata; returns the first.
    fn activate(&mut self, kind: u8, span: u32) -> Result<u32, AllocError> {
        let a = match self.find_free_run(span) {
            Some(a) => a,
            None => self.grow_for(span)?,
        };
        let base = arena_base(a);
        // A small or huge arena is reserved whole, in one call; a large arena reserves its
        // metadata page now and each run's pages as they are used.
        let reserve = match kind {
            kind::LARGE => PAGE,
            _ => span as u64 * ARENA,
        };
        self.region.reserve(base, reserve)?;
        self.region.set_u8(base + A_KIND, kind)?;
        if kind == kind::SMALL {
            // Fault the arena in with one call: small arenas fill pool after pool.
            self.region.populate(base, ARENA);
            for i in 1..=SMALL_POOLS as u64 {
                self.overlay.take(pool_id(a, i));
                self.region.set_u8(record_off(pool_id(a, i)) + D_STATE, state::FRESH)?;
            }
        }
        for x in a..a + span {
            self.st.free_arenas.remove(&x);
            self.st.arenas[x as usize] = Arena { kind: TAIL, ..Arena::default() };
        }
        self.st.arenas[a as usize].kind = kind;
        match kind {
            kind::SMALL => self.st.set_free_pools(a, SMALL_POOLS),
            kind::LARGE => {
                self.region.set_u8(base + L_INUSE, 1)?;
                self.st.set_free_pages(a, LARGE_PAGES);
            }
            _ => self.st.arenas[a as usize].span = span,
        }
        self.st.live.arenas += span as u64;
        self.meta.arenas_total += span as u64;
        self.meta.arenas_highwater = self.meta.arenas_highwater.max(self.st.live.arenas);
        Ok(a)
    }

    /// The first of `span` consecutive free arenas, if there are any.
    fn find_free_run(&self, span: u32) -> Option<u32> {
        let mut start = 0u32;
        let mut len = 0u32;
        for &a in &self.st.free_arenas {
            if len > 0 && a == start + len {
                len += 1;
            } else {
                start = a;
                len = 1;
            }
            if len == span {
                return Some(start);
            }
        }
        None
    }

    /// Grows the file so that `span` free arenas end it, reusing free arenas already at the
    /// end; returns the first of them.
    fn grow_for(&mut self, span: u32) -> Result<u32, AllocError> {
        let n = self.meta.arenas as u32;
        let mut first = n + 1;
        while first > 1 && self.st.free_arenas.contains(&(first - 1)) {
            first -= 1;
        }
        let need = (first + span - 1).saturating_sub(n);
        if n as u64 + need as u64 >= u32::MAX as u64 {
            return Err(AllocError::TooLarge { size: span as usize * ARENA as usize });
        }
        let new_n = n + need;
        self.region.grow((new_n as u64 + 1) * ARENA)?;
        self.meta.arenas = new_n as u64;
        self.st.arenas.resize(new_n as usize + 1, Arena::default());
        self.st.free_arenas.extend(n + 1..=new_n);
        Ok(first)
    }

    fn alloc_large(&mut self, pages: u16) -> Result<u64, AllocError> {
        let mut chosen = None;
        for &(free, a) in &self.st.large_free {
            if free < pages {
                continue;
            }
            if let Some(start) = self.find_run(a, pages)? {
                chosen = Some((a, start));
                break;
            }
        }
        let (a, start) = match chosen {
            Some(x) => x,
            None => {
                let a = self.activate(kind::LARGE, 1)?;
                (a, 1)
            }
        };
        let base = arena_base(a);
        let run = start as u64..start as u64 + pages as u64;
        let resident = self.region.bytes(base + L_RESIDENT, 32)?;
        if run.clone().any(|q| resident[(q / 8) as usize] & (1 << (q % 8)) == 0) {
            self.region.reserve(page_base(a, run.start), pages as u64 * PAGE)?;
        }
        for q in run.clone() {
            let (byte, mask) = ((q / 8), 1u8 << (q % 8));
            let r = self.region.u8_at(base + L_RESIDENT + byte)?;
            self.region.set_u8(base + L_RESIDENT + byte, r & !mask)?;
            let u = self.region.u8_at(base + L_INUSE + byte)?;
            self.region.set_u8(base + L_INUSE + byte, u | mask)?;
        }
        self.region.set_u16(base + L_RUNLEN + 2 * start as u64, pages)?;
        let free = self.st.arenas[a as usize].free_pages - pages;
        self.st.set_free_pages(a, free);
        self.st.live.large_runs += 1;
        self.st.live.blocks += 1;
        self.st.live.bytes += pages as u64 * PAGE;
        Ok(page_base(a, start as u64))
    }

    /// First run of `n` free pages in large arena `a`, lowest address first.
    fn find_run(&self, a: u32, n: u16) -> Result<Option<u16>, AllocError> {
        let inuse = self.region.bytes(arena_base(a) + L_INUSE, 32)?;
        let mut run = 0u16;
        for q in 1..256u16 {
            if inuse[(q / 8) as usize] & (1 << (q % 8)) == 0 {
                run += 1;
                if run == n {
                    return Ok(Some(q + 1 - n));
                }
            } else {
                run = 0;
            }
        }
        Ok(None)
    }

    fn alloc_huge(&mut self, size: usize) -> Result<u64, AllocError> {
        let span = (size as u64 + PAGE).div_ceil(ARENA);
        let span = u32::try_from(span).map_err(|_| AllocError::TooLarge { size })?;
        let a = self.activate(kind::HUGE, span)?;
        let base = arena_base(a);
        self.region.bytes_mut(base + A_SPAN, 4)?.copy_from_slice(&span.to_le_bytes());
        self.region.set_u64(base + A_LEN, size as u64)?;
        self.st.live.huge += 1;
        self.st.live.blocks += 1;
        self.st.live.bytes += huge_usable(span);
        Ok(base + PAGE)
    }

    // ----- freeing ----------------------------------------------------------------------

    /// Frees the block at `off`. An offset that is not a live block is an error and changes
    /// nothing.
    pub fn free(&mut self, off: u64) -> Result<(), FreeError> {
        if !self.writable() {
            return Err(FreeError::ReadOnly);
        }
        let not = FreeError::NotAllocated { offset: off };
        let a = arena_of(off);
        if a == 0 || a >= self.st.arenas.len() as u64 {
            return Err(not);
        }
        let a = a as u32;
        self.dirty = true;
        match self.st.arenas[a as usize].kind {
            kind::SMALL => self.free_small(off),
            kind::LARGE => self.free_large(a, off),
            kind::HUGE if off == arena_base(a) + PAGE => self.free_huge(a),
            _ => Err(not),
        }
    }

    fn free_small(&mut self, off: u64) -> Result<(), FreeError> {
        let not = FreeError::NotAllocated { offset: off };
        let p = (off / POOL) as u32;
        let (a, i) = pool_split(p);
        if i == 0 {
            return Err(not);
        }
        let rec = self.record_mut(p)?;
        let class = rec[D_CLASS as usize];
        if rec[D_STATE as usize] != state::IN_USE {
            return Err(not);
        }
        if class == 0 || class as usize > NCLASSES {
            return Err(Corruption::new(record_off(p), format!("pool of unknown size class {class}")).into());
        }
        let c = class as usize - 1;
        let size = class_size(c);
        let rel = off - pool_base(p);
        let cap = class_cap(c) as u64;
        if rel % size != 0 || rel / size >= cap {
            return Err(not);
        }
        let idx = rel / size;
        let byte = (D_BITMAP + idx / 8) as usize;
        let mask = 1u8 << (idx % 8);
        if rec[byte] & mask == 0 {
            return Err(not);
        }
        let n = D_NLIVE as usize;
        let nlive = u16::from_le_bytes([rec[n], rec[n + 1]]);
        if nlive == 0 {
            return Err(Corruption::new(record_off(p), "pool with a live block counts none").into());
        }
        rec[byte] &= !mask;
        let nlive = nlive - 1;
        rec[n..n + 2].copy_from_slice(&nlive.to_le_bytes());
        self.st.live.blocks -= 1;
        self.st.live.bytes -= size;
        self.st.live.class_blocks[c] -= 1;
        if nlive as u64 == cap - 1 {
            self.st.partial[c].insert(p);
            if self.current[c] == 0 || p < self.current[c] {
                self.current[c] = p;
            }
        }
        if nlive == 0 {
            self.pool_emptied(a, p, c)?;
        }
        Ok(())
    }

    /// Pool `p` of class `c` (in arena `a`) holds no block any more: it joins the spare.
    fn pool_emptied(&mut self, a: u32, p: u32, c: usize) -> Result<(), FreeError> {
        self.st.partial[c].remove(&p);
        if self.current[c] == p {
            self.current[c] = self.st.partial[c].first().copied().unwrap_or(0);
        }
        let rec = self.record_mut(p)?;
        rec[D_CLASS as usize] = 0;
        rec[D_STATE as usize] = state::SPARE;
        self.write_record(p)?;
        self.st.live.class_pools[c] -= 1;
        self.st.spare.insert(p);
        self.st.arenas[a as usize].spare_pools += 1;
        let free = self.st.arenas[a as usize].free_pools + 1;
        self.st.set_free_pools(a, free);
        self.touched.insert(a);
        self.pending += 1;
        let spare_elsewhere = (self.st.spare.len() - self.st.arenas[a as usize].spare_pools as usize) as u64;
        if free == SMALL_POOLS && spare_elsewhere >= self.policy.target() {
            // The arena is empty and the spare is full without it: give it back whole now,
            // rather than punching its pools one by one in the next pass.
            for i in 1..=SMALL_POOLS as u64 {
                if self.st.spare.remove(&pool_id(a, i)) {
                    self.meta.pools_punched += 1;
                }
            }
            self.st.arenas[a as usize].spare_pools = 0;
            self.reclaim(a, 1)?;
        } else if self.pending >= RELEASE_BATCH || free == SMALL_POOLS {
            self.release()?;
        }
        Ok(())
    }

    fn free_large(&mut self, a: u32, off: u64) -> Result<(), FreeError> {
        let not = FreeError::NotAllocated { offset: off };
        let base = arena_base(a);
        let rel = off - base;
        let q = rel / PAGE;
        if rel % PAGE != 0 || q == 0 {
            return Err(not);
        }
        let n = self.region.u16_at(base + L_RUNLEN + 2 * q)?;
        if n == 0 {
            return Err(not);
        }
        if q + n as u64 > 256 {
            return Err(Corruption::new(base + L_RUNLEN + 2 * q, "run past the arena's end").into());
        }
        for x in q..q + n as u64 {
            let (byte, mask) = (x / 8, 1u8 << (x % 8));
            let u = self.region.u8_at(base + L_INUSE + byte)?;
            self.region.set_u8(base + L_INUSE + byte, u & !mask)?;
            let r = self.region.u8_at(base + L_RESIDENT + byte)?;
            self.region.set_u8(base + L_RESIDENT + byte, r | mask)?;
        }
        self.region.set_u16(base + L_RUNLEN + 2 * q, 0)?;
        let free = self.st.arenas[a as usize].free_pages + n;
        self.st.set_free_pages(a, free);
        self.st.live.large_runs -= 1;
        self.st.live.blocks -= 1;
        self.st.live.bytes -= n as u64 * PAGE;
        self.large_dirty.insert(a);
        self.pending += 1;
        if self.pending >= RELEASE_BATCH || free == LARGE_PAGES {
            self.release()?;
        }
        Ok(())
    }

    fn free_huge(&mut self, a: u32) -> Result<(), FreeError> {
        let span = self.st.arenas[a as usize].span;
        self.st.live.huge -= 1;
        self.st.live.blocks -= 1;
        self.st.live.bytes -= huge_usable(span);
        self.reclaim(a, span)?;
        Ok(())
    }

    /// Gives `span` arenas starting at `a` back to the filesystem; they become free.
    fn reclaim(&mut self, a: u32, span: u32) -> io::Result<()> {
        let base = arena_base(a);
        if !self.region.punch(base, span as u64 * ARENA)? {
            // No hole punching here: at least make the arenas read as free.
            let meta_len = match self.st.arenas[a as usize].kind {
                kind::SMALL => layout::SMALL_META_LEN,
                _ => PAGE,
            };
            self.region
                .bytes_mut(base, meta_len as usize)
                .map_err(|e| io::Error::other(format!("{e:?}")))?
                .fill(0);
        }
        match self.st.arenas[a as usize].kind {
            kind::SMALL => self.st.set_free_pools(a, 0),
            kind::LARGE => self.st.set_free_pages(a, 0),
            _ => {}
        }
        for x in a..a + span {
            self.st.arenas[x as usize] = Arena::default();
            self.st.free_arenas.insert(x);
        }
        self.st.live.arenas -= span as u64;
        self.meta.arenas_reclaimed += span as u64;
        Ok(())
    }

    // ----- giving memory back -----------------------------------------------------------

    /// Runs a release pass: punches empty pools beyond the spare target, freed page runs,
    /// and arenas left with nothing in them. Runs by itself every 64 emptied pools or freed
    /// runs and whenever an arena empties; [`flush`](Self::flush) runs one too.
    pub fn release(&mut self) -> io::Result<()> {
        if !self.writable() {
            return Ok(());
        }
        let keep = self.policy.begin_pass(self.st.pools_in_use()) as usize;
        let mut punched = BTreeSet::new();
        if self.st.spare.len() > keep {
            // Keep spares in arenas still in use, lowest address first, then the others.
            let in_use = |s: &State, p: u32| s.arenas[pool_split(p).0 as usize].free_pools < SMALL_POOLS;
            let mut order: Vec<u32> =
                self.st.spare.iter().copied().filter(|&p| in_use(&self.st, p)).collect();
            order.extend(self.st.spare.iter().copied().filter(|&p| !in_use(&self.st, p)));
            let mut drop: Vec<u32> = order[keep..].to_vec();
            drop.sort_unstable();
            let mut i = 0;
            while i < drop.len() {
                let mut j = i + 1;
                while j < drop.len()
                    && drop[j] == drop[j - 1] + 1
                    && pool_split(drop[j]).0 == pool_split(drop[i]).0
                {
                    j += 1;
                }
                self.region.punch(pool_base(drop[i]), (j - i) as u64 * POOL)?;
                i = j;
            }
            for &p in &drop {
                let (a, _) = pool_split(p);
                let oob = |e| io::Error::other(format!("{e:?}"));
                self.record_mut(p).map_err(oob)?[D_STATE as usize] = state::HOLE;
                self.write_record(p).map_err(oob)?;
                self.st.spare.remove(&p);
                self.st.arenas[a as usize].spare_pools -= 1;
                self.touched.insert(a);
                punched.insert(p);
            }
            self.meta.pools_punched += drop.len() as u64;
        }
        for a in std::mem::take(&mut self.large_dirty) {
            self.punch_free_pages(a)?;
        }
        let candidates: Vec<u32> = std::mem::take(&mut self.touched).into_iter().collect();
        for a in candidates {
            let ar = self.st.arenas[a as usize];
            let empty = match ar.kind {
                kind::SMALL => ar.free_pools == SMALL_POOLS && ar.spare_pools == 0,
                kind::LARGE => ar.free_pages == LARGE_PAGES,
                _ => false,
            };
            if empty {
                self.reclaim(a, 1)?;
            }
        }
        self.policy.end_pass(punched);
        self.meta.spare_target = self.policy.target();
        self.meta.releases += 1;
        self.pending = 0;
        Ok(())
    }

    /// Punches the free pages of large arena `a` that still hold disk blocks.
    fn punch_free_pages(&mut self, a: u32) -> io::Result<()> {
        if self.st.arenas[a as usize].kind != kind::LARGE {
            return Ok(());
        }
        let base = arena_base(a);
        let oob = |e| io::Error::other(format!("{e:?}"));
        let resident: Vec<u8> = self.region.bytes(base + L_RESIDENT, 32).map_err(oob)?.to_vec();
        let is = |q: u64| resident[(q / 8) as usize] & (1 << (q % 8)) != 0;
        let mut q = 1u64;
        while q < 256 {
            if !is(q) {
                q += 1;
                continue;
            }
            let start = q;
            while q < 256 && is(q) {
                q += 1;
            }
            self.region.punch(page_base(a, start), (q - start) * PAGE)?;
        }
        self.region.bytes_mut(base + L_RESIDENT, 32).map_err(oob)?.fill(0);
        self.touched.insert(a);
        Ok(())
    }

    // ----- durability and reporting -----------------------------------------------------

    /// The state last published, with the counters as they are now.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Counts a finished collection (or compaction) that freed `bytes`, for the next
    /// published state.
    pub fn count_collection(&mut self, compaction: bool, bytes: u64) {
        self.meta.collections = self.meta.collections.wrapping_add(1);
        self.meta.compactions = self.meta.compactions.wrapping_add(compaction as u32);
        self.meta.gc_freed_bytes = self.meta.gc_freed_bytes.wrapping_add(bytes);
        self.dirty = true;
    }

    /// Runs a release pass (if anything was freed since the last) and publishes a new state: `root` and `shared` (words of the
    /// layers above), `flags`, the geometry and the counters, in the meta slot that is not
    /// current. Returns the new state's transaction id.
    ///
    /// `Durability::Commit` syncs once, before writing the slot: that makes this state's
    /// data and the previous slot durable, so a power cut loses at most this state and
    /// never tears one. `Full` syncs again after the slot; `None` never syncs (a process
    /// crash loses nothing, a power cut may).
    pub fn publish(&mut self, root: u64, shared: u64, flags: u64, durability: Durability) -> io::Result<u64> {
        if !self.writable() {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the heap is open read-only"));
        }
        if self.pending > 0 || !self.touched.is_empty() || !self.large_dirty.is_empty() {
            self.release()?;
        }
        self.meta.txn_id += 1;
        self.meta.root = root;
        self.meta.shared = shared;
        self.meta.flags = flags;
        if durability == Durability::Full {
            self.write_back()?;
        }
        let slot = 1 - self.meta_slot;
        if durability != Durability::None {
            self.region.sync()?;
        }
        let oob = |e| io::Error::other(format!("{e:?}"));
        self.meta.encode(self.region.bytes_mut(meta_slot_offset(slot), META_LEN).map_err(oob)?);
        if durability == Durability::Full {
            self.region.sync()?;
        }
        self.meta_slot = slot;
        self.dirty = false;
        Ok(self.meta.txn_id)
    }

    /// Publishes the allocator's state (the last root and flags, the current counters),
    /// fully synced.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.writable() {
            return Ok(());
        }
        let (root, shared, flags) = (self.meta.root, self.meta.shared, self.meta.flags);
        self.publish(root, shared, flags, Durability::Full)?;
        Ok(())
    }

    /// Flushes what changed since the last flush, and closes the heap.
    pub fn close(mut self) -> io::Result<()> {
        if self.dirty {
            self.flush()?;
        }
        Ok(())
    }

    /// Blocks allocated now (the live-blocks counter, without a scan).
    pub fn blocks_allocated(&self) -> u64 {
        self.st.live.blocks
    }

    /// Every live block: (offset, usable size), in address order.
    pub fn live_blocks(&self) -> Result<Vec<(u64, u64)>, Corruption> {
        let mut out = Vec::new();
        for (a, ar) in self.st.arenas.iter().enumerate() {
            let a = a as u32;
            match ar.kind {
                kind::SMALL => {
                    for i in 1..=SMALL_POOLS as u64 {
                        let p = pool_id(a, i);
                        let rec = self.record(p)?;
                        if rec[D_STATE as usize] != state::IN_USE || rec[D_CLASS as usize] == 0 {
                            continue;
                        }
                        let c = rec[D_CLASS as usize] as usize - 1;
                        for k in 0..class_cap(c) as u64 {
                            if rec[(D_BITMAP + k / 8) as usize] & (1 << (k % 8)) != 0 {
                                out.push((pool_base(p) + k * class_size(c), class_size(c)));
                            }
                        }
                    }
                }
                kind::LARGE => {
                    for q in 1..256u64 {
                        let n = self.region.u16_at(arena_base(a) + L_RUNLEN + 2 * q)? as u64;
                        if n > 0 {
                            out.push((page_base(a, q), n * PAGE));
                        }
                    }
                }
                kind::HUGE => out.push((arena_base(a) + PAGE, huge_usable(ar.span))),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The usable size of the live block at `off`.
    pub fn usable_size(&self, off: u64) -> Option<u64> {
        self.block_size_at(off, true)
    }

    /// The usable size of a block at `off`, live or not: `off` starts a block of a small
    /// pool in use, or a live page run or huge object. A checker reading the file while a
    /// writer runs uses it, since the file's pool bits may lag the writer's.
    pub fn slot_size(&self, off: u64) -> Option<u64> {
        self.block_size_at(off, false)
    }

    fn block_size_at(&self, off: u64, live_only: bool) -> Option<u64> {
        let a = arena_of(off);
        let ar = *self.st.arenas.get(a as usize)?;
        match ar.kind {
            kind::SMALL => {
                let p = (off / POOL) as u32;
                let rec = self.record(p).ok()?;
                let class = rec[D_CLASS as usize] as usize;
                if rec[D_STATE as usize] != state::IN_USE || class == 0 || class > NCLASSES {
                    return None;
                }
                let size = class_size(class - 1);
                let rel = off - pool_base(p);
                let idx = rel / size;
                let live = !live_only || rec.get((D_BITMAP + idx / 8) as usize)? & (1 << (idx % 8)) != 0;
                (rel % size == 0 && idx < class_cap(class - 1) as u64 && live).then_some(size)
            }
            kind::LARGE => {
                let rel = off - arena_base(a as u32);
                let n = self.region.u16_at(arena_base(a as u32) + L_RUNLEN + 2 * (rel / PAGE)).ok()?;
                (rel % PAGE == 0 && rel > 0 && n > 0).then_some(n as u64 * PAGE)
            }
            kind::HUGE => (off == arena_base(a as u32) + PAGE).then_some(huge_usable(ar.span)),
            _ => None,
        }
    }

    /// The allocator's counters.
    pub fn stats(&self) -> io::Result<Stats> {
        let (file_bytes, disk_bytes) = self.region.sizes()?;
        let live = &self.st.live;
        let mut size_classes = Vec::new();
        let mut bytes_free = 0;
        for c in 0..NCLASSES {
            let pools = live.class_pools[c];
            let free = pools * class_cap(c) as u64 - live.class_blocks[c];
            bytes_free += free * class_size(c);
            if pools > 0 {
                size_classes.push(ClassStats {
                    size: class_size(c),
                    pools,
                    blocks_live: live.class_blocks[c],
                    blocks_free: free,
                });
            }
        }
        bytes_free += self.st.large_free.iter().map(|&(f, _)| f as u64 * PAGE).sum::<u64>();
        Ok(Stats {
            arenas_allocated_total: self.meta.arenas_total,
            arenas_reclaimed: self.meta.arenas_reclaimed,
            arenas_highwater: self.meta.arenas_highwater,
            arenas_current: live.arenas,
            pools_current: self.st.pools_in_use(),
            pools_spare: self.st.spare.len() as u64,
            pools_allocated_total: self.meta.pools_total,
            pools_reclaimed: self.meta.pools_punched,
            blocks_live: live.blocks,
            bytes_live: live.bytes,
            bytes_free,
            large_runs: live.large_runs,
            huge_objects: live.huge,
            file_bytes,
            disk_bytes,
            txn_id: self.meta.txn_id,
            readers: 0,
            blocks_pending: 0,
            spare_target: self.policy.target(),
            releases: self.meta.releases,
            gc_collections: self.meta.collections as u64,
            gc_compactions: self.meta.compactions as u64,
            gc_bytes_freed: self.meta.gc_freed_bytes,
            size_classes,
            reader_list: Vec::new(),
        })
    }

    /// Checks that the in-memory index agrees with a fresh scan of the side metadata, and
    /// that the control arena is the only one of its kind.
    pub fn verify(&self) -> Result<(), Corruption> {
        let fresh = State::scan_with(&self.region, self.meta.arenas as u32, &self.overlay)?;
        if fresh != self.st {
            return Err(Corruption::new(0, "allocator index disagrees with the side metadata"));
        }
        if self.st.arenas[0].kind != CONTROL {
            return Err(Corruption::new(0, "arena 0 is not the control arena"));
        }
        for c in 0..NCLASSES {
            if self.current[c] != self.st.partial[c].first().copied().unwrap_or(0) {
                return Err(Corruption::new(
                    pool_base(self.current[c]),
                    "class cursor is not its first partial pool",
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        if self.dirty {
            // Best effort: `close` reports errors; a drop cannot.
            let _ = self.flush();
        }
    }
}
