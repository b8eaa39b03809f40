//! Layer 5: the tracing collector and compaction.
//!
//! Path copies free what they replace as they go (layer 4); what they cannot free is
//! garbage the collector finds: objects stored in two places and then dropped from both
//! (the shared set keeps them from the path copy), what a writer left allocated when it
//! closed or died while another process pinned an old state, and anything a damaged run
//! leaked. The collector marks every block reachable from the current root in side
//! bitmaps held in its own memory ([`Marks`]), reading objects and side metadata only:
//! it writes no byte of any object page. Every live block it did not mark is retired
//! like a block a path copy replaced, so a reader pinning an older state keeps reading
//! it until that reader moves on.
//!
//! Compaction is a collection that also rewrites the live graph: objects in sparsely used
//! small pools, and every object above a moved one, are copied into other pools as a new
//! version of the heap; the old blocks are retired, and the emptied pools are given back
//! once no reader pins the old version.

use crate::alloc::{class_size, Allocator, Marks};
use crate::error::Corruption;
use crate::object::champ;
use crate::object::layout::{object_size, put_u64};
use crate::object::store::Store;
use crate::object::word::Imm;
use crate::object::{trie_order, walk, Key, OffsetHasher, OffsetSet, Word};
use crate::txn::{Pending, TxnError, WriteState};
use std::collections::HashMap;
use std::time::Instant;

/// A small pool is evacuated by compaction when fewer than `EVACUATE_NUM / EVACUATE_DEN`
/// of its blocks are reachable.
const EVACUATE_NUM: u64 = 7;
const EVACUATE_DEN: u64 = 8;

/// How often progress is reported, in objects.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Which collection to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Trace only what was allocated since the last collection (the young generation):
    /// committed objects are immutable, so an older object never refers to a younger
    /// one, and nothing older needs tracing. Frees young garbage only.
    Young,
    /// Trace everything the root reaches; free every unreachable block.
    Full,
    /// A full collection that also rewrites sparse pools and lists densely.
    Compact,
}

/// The step a collection is in, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Marking what the current root reaches.
    Trace,
    /// Copying objects out of sparse pools (compaction only).
    Move,
    /// Retiring what was not marked.
    Sweep,
}

/// Receives `(phase, objects done, objects in the heap)` now and then.
pub type Progress<'a> = &'a mut dyn FnMut(Phase, u64, u64);

/// What a collection (or compaction) did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// Whether the live graph was also rewritten.
    pub compacted: bool,
    /// Whether only the young generation was traced.
    pub young: bool,
    /// Blocks the current root reaches (marked).
    pub objects_traced: u64,
    /// Their usable bytes.
    pub bytes_traced: u64,
    /// Bytes of collector memory the mark bitmaps took (one bit per block slot).
    pub mark_bytes: u64,
    /// Live blocks nothing reaches, retired.
    pub garbage_blocks: u64,
    /// Their usable bytes.
    pub garbage_bytes: u64,
    /// Objects compaction copied (their old blocks retired).
    pub moved_blocks: u64,
    /// Their usable bytes.
    pub moved_bytes: u64,
    /// Small pools compaction chose to empty.
    pub pools_evacuated: u64,
    /// Entries dropped from the shared-object set (shared objects nothing reaches).
    pub shared_dropped: u64,
    /// Retired blocks still waiting for readers of older states when the call returned.
    pub blocks_deferred: u64,
    /// `disk_bytes` before and after.
    pub disk_before: u64,
    /// See `disk_before`.
    pub disk_after: u64,
    /// Seconds spent marking.
    pub trace_seconds: f64,
    /// Seconds for the whole call, commits included.
    pub seconds: f64,
    /// The transaction that published the result.
    pub txn_id: u64,
}

impl Report {
    /// The report as one JSON object (for `eterna gc --json`).
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"compacted\":{},\"young\":{},\"objects_traced\":{},\"bytes_traced\":{},\"mark_bytes\":{},",
                "\"garbage_blocks\":{},\"garbage_bytes\":{},\"moved_blocks\":{},\"moved_bytes\":{},",
                "\"pools_evacuated\":{},\"shared_dropped\":{},\"blocks_deferred\":{},",
                "\"disk_before\":{},\"disk_after\":{},\"trace_seconds\":{:.6},\"seconds\":{:.6},\"txn_id\":{}}}"
            ),
            self.compacted,
            self.young,
            self.objects_traced,
            self.bytes_traced,
            self.mark_bytes,
            self.garbage_blocks,
            self.garbage_bytes,
            self.moved_blocks,
            self.moved_bytes,
            self.pools_evacuated,
            self.shared_dropped,
            self.blocks_deferred,
            self.disk_before,
            self.disk_after,
            self.trace_seconds,
            self.seconds,
            self.txn_id,
        )
    }

    /// Bytes this collection released (now or once readers move on).
    pub fn bytes_released(&self) -> u64 {
        self.garbage_bytes + self.moved_bytes
    }
}

/// Marks every block reachable from `roots` in `marks`. Reads objects and side metadata,
/// writes nothing but `marks`. A reference to anything that is not a live block, or an
/// invalid word, is corruption.
pub fn trace(
    alloc: &Allocator,
    roots: &[Word],
    marks: &mut Marks,
    progress: Progress<'_>,
) -> Result<(), Corruption> {
    trace_within(alloc, roots, None, marks, progress)
}

/// [`trace`], descending only into blocks in `young` when it is given: everything else is
/// older than all of them, so it refers to nothing young.
fn trace_within(
    alloc: &Allocator,
    roots: &[Word],
    young: Option<&OffsetSet>,
    marks: &mut Marks,
    progress: Progress<'_>,
) -> Result<(), Corruption> {
    let mem = alloc.region().as_slice();
    let total = alloc.live_block_count();
    let mut stack: Vec<u64> = Vec::with_capacity(1024);
    let mut bad = None;
    let push = |stack: &mut Vec<u64>, w: Word, bad: &mut Option<u64>| match w.decode() {
        Imm::Ref(off) => stack.push(off),
        Imm::Invalid => *bad = Some(w.0),
        _ => {}
    };
    for &r in roots {
        push(&mut stack, r, &mut bad);
    }
    let mut done = 0u64;
    while let Some(off) = stack.pop() {
        if young.is_some_and(|y| !y.contains(off)) || !alloc.mark(marks, off)? {
            continue;
        }
        walk::for_each_slot(mem, off, |_, w| push(&mut stack, w, &mut bad))?;
        if let Some(w) = bad {
            return Err(Corruption::new(off, format!("invalid word {w:#x}")));
        }
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            progress(Phase::Trace, done, total);
        }
    }
    progress(Phase::Trace, done, total);
    Ok(())
}

/// The offsets in the shared-object set at `root`.
fn shared_offsets(mem: &[u8], root: Word) -> Result<Vec<u64>, Corruption> {
    let mut out = Vec::new();
    for e in champ::iter(mem, root, false) {
        let w = Word(e?[0]);
        match w.decode() {
            Imm::Int(off) if off > 0 && off % 16 == 0 => out.push(off as u64),
            _ => return Err(Corruption::new(w.0, "shared-set entry is not an offset")),
        }
    }
    Ok(out)
}

/// The nodes of the shared-object set at `root` (its entries are integers, not references).
fn shared_nodes(mem: &[u8], root: Word) -> Result<Vec<u64>, Corruption> {
    let mut out = Vec::new();
    let mut seen = OffsetSet::default(); // a damaged trie may reach a node twice
    let mut stack: Vec<u64> = root.as_ref().into_iter().collect();
    while let Some(off) = stack.pop() {
        if !seen.insert(off) {
            continue;
        }
        out.push(off);
        walk::for_each_slot(mem, off, |_, w| stack.extend(w.as_ref()))?;
    }
    Ok(out)
}

/// One object being copied: its slots are `slots[start..end]`, the next to visit `next`.
/// A list is opened as its items, so that its rope can be rebuilt full: `rope` then holds
/// the rope's nodes, and whether they hold fewer items than full nodes would.
struct Frame {
    off: u64,
    size: usize,
    start: usize,
    end: usize,
    next: usize,
    changed: bool,
    rope: Option<(Vec<u64>, bool)>,
}

type Memo = HashMap<u64, u64, std::hash::BuildHasherDefault<OffsetHasher>>; // old -> new offset

/// What the copying pass knows.
struct Mover<'a> {
    evacuate: &'a OffsetSet, // base offsets of the pools being emptied
    shared: &'a OffsetSet,   // objects in the shared set (a rope holding one is left as is)
    memo: Memo,              // every object visited -> its new offset (or itself)
    moved_blocks: u64,
    moved_bytes: u64,
}

impl Mover<'_> {
    fn moves(&self, off: u64) -> bool {
        self.evacuate.contains(off & !(crate::format::POOL - 1))
    }

    /// Rewrites the graph under `root`: every object in an evacuated pool, and every
    /// object above one, is copied; returns the new root. Old blocks of copied objects
    /// are pushed to `retired`. Iterative: nesting depth costs heap, not stack.
    fn relocate<S: Store>(
        &mut self,
        s: &mut S,
        root: Word,
        retired: &mut Vec<u64>,
        total: u64,
        progress: Progress<'_>,
    ) -> Result<Word, TxnError> {
        let Some(r) = root.as_ref() else { return Ok(root) };
        let mut slots: Vec<(usize, Word)> = Vec::new();
        let mut frames: Vec<Frame> = Vec::new();
        let mut done = 0u64;
        let shared = self.shared;
        let open = |s: &S, off: u64, slots: &mut Vec<(usize, Word)>| -> Result<Frame, TxnError> {
            let start = slots.len();
            if let Some(f) = open_list(s.mem(), off, shared, slots)? {
                return Ok(f);
            }
            let size = walk::for_each_slot(s.mem(), off, |at, w| slots.push((at, w)))?;
            Ok(Frame { off, size, start, end: slots.len(), next: start, changed: false, rope: None })
        };
        // Objects with an open frame: meeting one again means the graph has a cycle, which
        // only damage can make (a post-order copy of a cycle would never end).
        let mut onstack = OffsetSet::default();
        frames.push(open(s, r, &mut slots)?);
        onstack.insert(r);
        loop {
            let top = frames.last_mut().expect("a frame is open");
            if top.next < top.end {
                let i = top.next;
                top.next += 1;
                let Some(c) = slots[i].1.as_ref() else { continue };
                if let Some(&n) = self.memo.get(&c) {
                    if n != c {
                        slots[i].1 = Word::reference(n);
                        top.changed = true;
                    }
                    continue;
                }
                if !onstack.insert(c) {
                    return Err(Corruption::new(c, "reference cycle: an object reaches itself").into());
                }
                let f = open(s, c, &mut slots)?;
                frames.push(f);
                continue;
            }
            let f = frames.pop().expect("a frame is open");
            onstack.remove(f.off);
            let new = if let Some((nodes, sparse)) = &f.rope {
                if f.changed || *sparse || self.moves(f.off) || nodes.iter().any(|&n| self.moves(n)) {
                    let items: Vec<u64> = slots[f.start..f.end].iter().map(|&(_, w)| w.0).collect();
                    let rope = crate::object::rope::Rope::build(s, &items)?;
                    let image = crate::object::list_image(&rope);
                    let n = s.alloc(image.len())?;
                    s.write(n, &image)?;
                    for &old in nodes.iter().chain(std::iter::once(&f.off)) {
                        retired.push(old);
                        self.moved_blocks += 1;
                        self.moved_bytes += crate::alloc::block_size(object_size(s.mem(), old)?);
                    }
                    n
                } else {
                    f.off
                }
            } else if f.changed || self.moves(f.off) {
                let mut image = crate::object::layout::slice(s.mem(), f.off, f.size)?.to_vec();
                for &(at, w) in &slots[f.start..f.end] {
                    put_u64(&mut image, at, w.0);
                }
                let n = s.alloc(f.size)?;
                s.write(n, &image)?;
                retired.push(f.off);
                self.moved_blocks += 1;
                self.moved_bytes += crate::alloc::block_size(f.size);
                n
            } else {
                f.off
            };
            // Every object is remembered, not only those in the shared set: a dict's keys
            // and values have two parents by design (its trie and its order vector).
            self.memo.insert(f.off, new);
            slots.truncate(f.start);
            done += 1;
            if done % PROGRESS_EVERY == 0 {
                progress(Phase::Move, done, total);
            }
            match frames.last_mut() {
                Some(parent) => {
                    if new != f.off {
                        slots[parent.next - 1].1 = Word::reference(new);
                        parent.changed = true;
                    }
                }
                None => {
                    progress(Phase::Move, done, total);
                    return Ok(Word::reference(new));
                }
            }
        }
    }
}

/// Opens a list as a frame of its items, with its rope's nodes, unless it is not a list or
/// a node of its rope is shared with another list (then it is copied node by node).
fn open_list(
    mem: &[u8],
    off: u64,
    shared: &OffsetSet,
    slots: &mut Vec<(usize, Word)>,
) -> Result<Option<Frame>, Corruption> {
    if crate::object::layout::slice(mem, off, 1)?[0] != crate::object::layout::ty::LIST {
        return Ok(None);
    }
    let rope = crate::object::value::list_rope(mem, off)?;
    let start = slots.len();
    let mut nodes = Vec::new();
    let mut i = 0usize;
    rope.walk(
        mem,
        &mut |w| {
            slots.push((i, w));
            i += 1;
            Ok(())
        },
        &mut |n| {
            nodes.push(n);
            Ok(())
        },
    )?;
    if nodes.iter().any(|&n| shared.contains(n)) {
        slots.truncate(start);
        return Ok(None);
    }
    let leaves = rope.len.div_ceil(crate::object::rope::LEAF_ITEMS as u64);
    let full =
        if leaves <= 1 { leaves } else { leaves + leaves.div_ceil(crate::object::rope::FANOUT as u64 - 1) };
    let sparse = nodes.len() as u64 * 7 > full * 8;
    let size = object_size(mem, off)?;
    Ok(Some(Frame {
        off,
        size,
        start,
        end: slots.len(),
        next: start,
        changed: false,
        rope: Some((nodes, sparse)),
    }))
}

/// Chooses the small pools to empty: those with fewer than 7/8 of their blocks reached.
fn choose_pools(alloc: &Allocator, marks: &Marks) -> Result<Vec<u32>, Corruption> {
    let mut out = Vec::new();
    for (p, c, _live) in alloc.small_pools()? {
        let cap = Allocator::pool_capacity(c);
        if marks.in_pool(p) * EVACUATE_DEN < cap * EVACUATE_NUM {
            out.push(p);
        }
    }
    Ok(out)
}

/// Runs a collection (and with `compact`, a compaction) inside the write transaction
/// `st`, which must have made no change yet. Sets `st.root` and `st.shared` to the new
/// version and pushes everything to free onto `st.retired`; the caller commits.
///
/// `young` holds every block allocated since the last collection; a young collection
/// traces and frees only those.
pub(crate) fn collect(
    alloc: &mut Allocator,
    st: &mut WriteState,
    pending: &Pending,
    seed: u64,
    kind: Kind,
    young: &OffsetSet,
    progress: Progress<'_>,
) -> Result<Report, TxnError> {
    let compact = kind == Kind::Compact;
    let young = (kind == Kind::Young).then_some(young);
    let mut report = Report { compacted: compact, young: young.is_some(), ..Report::default() };
    let total = alloc.live_block_count();
    let started = Instant::now();
    let mut marks = alloc.new_marks();
    trace_within(alloc, &[st.root], young, &mut marks, progress)?;
    report.trace_seconds = started.elapsed().as_secs_f64();
    report.objects_traced = marks.marked();
    report.bytes_traced = marks.marked_bytes();
    report.mark_bytes = marks.footprint();

    let old_shared = shared_offsets(alloc.region().as_slice(), st.shared)?;
    // An old object a young collection did not trace is taken as live.
    let live_shared: Vec<u64> = old_shared
        .iter()
        .copied()
        .filter(|&o| alloc.is_marked(&marks, o) || young.is_some_and(|y| !y.contains(o)))
        .collect();
    report.shared_dropped = (old_shared.len() - live_shared.len()) as u64;

    let mut memo = Memo::default();
    if compact {
        let pools = choose_pools(alloc, &marks)?;
        report.pools_evacuated = pools.len() as u64;
        let mut evacuate = OffsetSet::default();
        for &p in &pools {
            evacuate.insert(p as u64 * crate::format::POOL);
        }
        let mut shared = OffsetSet::default();
        for &o in &live_shared {
            shared.insert(o);
        }
        let mut mover = Mover {
            evacuate: &evacuate,
            shared: &shared,
            memo: Memo::with_capacity_and_hasher(report.objects_traced as usize, Default::default()),
            moved_blocks: 0,
            moved_bytes: 0,
        };
        alloc.exclude(&pools);
        let mut retired = Vec::new();
        let moved = {
            let root = st.root;
            let mut tx = st.tx(alloc, seed);
            mover.relocate(&mut tx, root, &mut retired, total, progress)
        };
        alloc.readmit();
        st.root = moved?;
        st.retired.extend(retired);
        report.moved_blocks = mover.moved_blocks;
        report.moved_bytes = mover.moved_bytes;
        memo = mover.memo;
    }

    // The shared set: rebuilt when entries died or objects moved (its old nodes retired),
    // else kept. Either way its old nodes are marked, so that the sweep leaves them alone.
    let renumbered = live_shared.iter().any(|o| memo.get(o).is_some_and(|n| n != o));
    let old_nodes = shared_nodes(alloc.region().as_slice(), st.shared)?;
    for &n in &old_nodes {
        alloc.mark(&mut marks, n)?;
    }
    if report.shared_dropped > 0 || renumbered {
        st.retired.extend(old_nodes);
        let mut entries: Vec<(u64, [u64; 3])> = Vec::with_capacity(live_shared.len());
        for &o in &live_shared {
            let n = memo.get(&o).copied().unwrap_or(o);
            let w = Word::int(n as i64).ok_or_else(|| Corruption::new(n, "offset too large"))?;
            entries.push((Key::Int(n as i64).hash(seed), [w.0, 0, 0]));
        }
        entries.sort_unstable_by_key(|&(h, _)| trie_order(h));
        let mut tx = st.tx(alloc, seed);
        let new = champ::build(&mut tx, &entries, false)?;
        st.shared = new;
    }

    // Sweep: whatever is live, unmarked, not created here and not already queued.
    let mut queued = OffsetSet::default();
    for b in pending.blocks() {
        queued.insert(b);
    }
    let unmarked = alloc.unmarked(&marks)?;
    progress(Phase::Sweep, 0, unmarked.len() as u64);
    for b in unmarked {
        if st.fresh.contains(b) || queued.contains(b) || young.is_some_and(|y| !y.contains(b)) {
            continue;
        }
        report.garbage_blocks += 1;
        report.garbage_bytes += alloc.usable_size(b).unwrap_or(0);
        st.retired.push(b);
    }
    progress(Phase::Sweep, report.garbage_blocks, report.garbage_blocks);
    alloc.count_collection(compact, report.bytes_released());
    Ok(report)
}

/// Bytes of small-pool space holding no live block, and bytes of live small blocks: the
/// measure automatic compaction watches.
pub fn small_fragmentation(alloc: &Allocator) -> (u64, u64) {
    let s = alloc.class_counts();
    let (mut free, mut live) = (0, 0);
    for (c, (pools, blocks)) in s.iter().enumerate() {
        let cap = Allocator::pool_capacity(c);
        free += (pools * cap - blocks) * class_size(c);
        live += blocks * class_size(c);
    }
    (free, live)
}
