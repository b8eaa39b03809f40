//! Layer 7: the invariant walker behind `eterna check` and the tests. It checks the
//! header and meta slots, the allocator's side metadata, every object reachable from the
//! committed root (bounds, types, UTF-8, each hash trie's placement of its keys, each
//! dict's agreement between its trie and its order vector), and that every reachable
//! object is a live block of the right size. Blocks allocated but unreachable are
//! reported (a running writer's pending frees, or what the collector will reclaim), not
//! treated as corruption. While a writer runs, the file's pool bits may lag its last
//! commits (it writes them back in batches): then a reachable object must lie at a block
//! of its size in a pool in use, and its bit is not required. When the last writer died,
//! the same holds, and the side metadata is checked only as far as a crash cannot break
//! it. A meta slot whose checksum fails is a warning when a torn write can explain it,
//! corruption when it cannot (`docs/design.md`, "Checking").

use crate::alloc::{block_size, Allocator, LARGE_MAX_PAGES};
use crate::error::{Corruption, OpenError};
use crate::format::{meta_slot_offset, raw_txn_id, torn_write_possible, Meta, META_LEN, META_WRITER, PAGE};
use crate::object::key::{bytes_to_i64, combine_frozen, decode_key, minimal_int_bytes};
use crate::object::layout::*;
use crate::object::value::{dict_order, header_word, list_rope};
use crate::object::vector::Vector;
use crate::object::walk::{children, for_each_slot, reachable};
use crate::object::word::{Imm, Word};
use crate::region::Access;
use rustix::fs::{flock, FlockOperation};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// What a check found in a consistent heap.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub txn_id: u64,             // the committed state checked
    pub objects: u64,            // objects reachable from the root
    pub bytes: u64,              // their allocation sizes
    pub unreachable_blocks: u64, // live blocks no committed state reaches
    pub unreachable_bytes: u64,  // their sizes
    /// The last writer died in a transaction: the allocator's metadata was checked only
    /// for what a crash cannot leave inconsistent, and blocks were not counted against
    /// the objects (the next writer rebuilds the metadata).
    pub interrupted: bool,
    /// Findings that are not corruption by themselves, one line each: a meta slot whose
    /// checksum fails in a way a crash during its write can explain.
    pub warnings: Vec<String>,
}

/// Why a check failed.
#[derive(Debug)]
pub enum CheckError {
    /// The file could not be read (exit code 2).
    Io(std::io::Error),
    /// The file is inconsistent (exit code 1). The first line says where and how; any
    /// further lines are warnings (see [`Report::warnings`]).
    Corrupt(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Io(e) => write!(f, "cannot read heap: {e}"),
            CheckError::Corrupt(m) => write!(f, "{m}"),
        }
    }
}

impl From<Corruption> for CheckError {
    fn from(c: Corruption) -> Self {
        CheckError::Corrupt(c.to_string())
    }
}

/// Whether a writer process holds the heap now.
fn writer_alive(path: &Path) -> Result<bool, CheckError> {
    let f = File::open(path).map_err(CheckError::Io)?;
    match flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(false),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(true),
        Err(e) => Err(CheckError::Io(e.into())),
    }
}

/// Checks the heap at `path` without writing to it.
///
/// A writer working while the check runs can make its state look inconsistent for a
/// moment (a pool record half updated, a block freed under the walk); if so and a writer
/// is alive, the check runs again, up to three times, before it reports corruption.
pub fn check(path: &Path) -> Result<Report, CheckError> {
    let mut attempt = 0;
    loop {
        match check_once(path) {
            Err(CheckError::Corrupt(_)) if attempt < 2 && writer_alive(path)? => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// What the meta slots say besides the current state: warnings, and damage that no crash
/// explains. A slot whose checksum fails while the other is valid is either a write torn
/// by a crash (the other slot then holds the state before it, which is what the heap
/// opens) or damage; [`torn_write_possible`] tells the cases apart where the slot's
/// bytes allow it.
fn meta_slots(mem: &[u8]) -> (Vec<String>, Option<String>) {
    let raw = [0, 1].map(|i| {
        let at = meta_slot_offset(i) as usize;
        mem.get(at..at + META_LEN)
    });
    let decoded = raw.map(|r| r.and_then(Meta::decode));
    let (bad, good) = match decoded {
        [Some(g), None] => (1, g),
        [None, Some(g)] => (0, g),
        _ => return (Vec::new(), None),
    };
    let Some(slot) = raw[bad] else { return (Vec::new(), None) };
    let t = good.txn_id;
    if t == 1 && slot.iter().all(|&b| b == 0) {
        return (Vec::new(), None); // never written: a heap that has published one state
    }
    let at = meta_slot_offset(bad);
    let id = raw_txn_id(slot);
    if !torn_write_possible(slot, t) {
        let what = format!(
            "meta slot {bad} at {at:#x} fails its checksum and is no write torn by a crash: \
             its magic or transaction id ({id}) is neither the state before nor after \
             transaction {t}, in slot {}",
            1 - bad
        );
        return (Vec::new(), Some(Corruption::new(at, what).to_string()));
    }
    let lost = if id == t + 1 {
        format!("; if transaction {} had been committed, it is lost", t + 1)
    } else {
        String::new()
    };
    let warning = format!(
        "warning: meta slot {bad} at {at:#x} fails its checksum (its transaction id reads {id}): \
         a crash while it was written leaves it so, and so can damage; checked the state in \
         slot {}, transaction {t}{lost}",
        1 - bad
    );
    (vec![warning], None)
}

/// The error for a check that found `first`, followed by `more` lines.
fn corrupt(first: String, more: &[String]) -> CheckError {
    let mut m = first;
    for line in more {
        m.push('\n');
        m.push_str(line);
    }
    CheckError::Corrupt(m)
}

fn check_once(path: &Path) -> Result<Report, CheckError> {
    let open_err = |e: OpenError| match e {
        OpenError::Io(e) => CheckError::Io(e),
        other => CheckError::Corrupt(other.to_string()),
    };
    let probe = Allocator::open_for_recovery_readonly(path).map_err(open_err)?;
    let (warnings, meta_damage) = meta_slots(probe.region().as_slice());
    let writing = probe.meta().flags & META_WRITER != 0;
    drop(probe);
    let with_meta = |e: CheckError| match e {
        CheckError::Corrupt(m) => {
            let more: Vec<String> = meta_damage.iter().chain(&warnings).cloned().collect();
            corrupt(m, &more)
        }
        io => io,
    };
    // A writer that died in a transaction leaves side metadata that only partly holds
    // (see `State::scan_interrupted`); a running one, pool bits that lag its commits.
    let interrupted = writing && !writer_alive(path)?;
    let lagging = writing && !interrupted;
    let alloc = if interrupted {
        Allocator::open_interrupted_readonly(path)
    } else {
        Allocator::open(path, Access::ReadOnly)
    }
    .map_err(open_err)
    .map_err(with_meta)?;
    let meta = *alloc.meta();
    let mut report = Report { txn_id: meta.txn_id, interrupted, ..Report::default() };
    verify(&alloc, &meta, interrupted, lagging, &mut report).map_err(with_meta)?;
    if let Some(m) = meta_damage {
        return Err(corrupt(m, &warnings));
    }
    report.warnings = warnings;
    Ok(report)
}

/// Checks everything the state `meta` reaches, and the side metadata, into `report`.
fn verify(
    alloc: &Allocator,
    meta: &Meta,
    interrupted: bool,
    lagging: bool,
    report: &mut Report,
) -> Result<(), CheckError> {
    if !interrupted {
        alloc.verify()?;
    }
    let mem = alloc.region().as_slice();
    let seed = alloc.header().seed;
    let roots = [Word(meta.root), Word(meta.shared)];
    match Word(meta.root).decode() {
        Imm::Ref(off) if slice(mem, off, 1)?[0] == ty::DICT => {}
        // A heap used through the allocator alone (the allocator benchmarks) has no root.
        Imm::Empty => {}
        _ => return Err(Corruption::new(meta.root, "the root is not a dict").into()),
    }
    let objects = reachable(mem, &roots)?;
    let sizes: HashMap<u64, u64> = objects.iter().copied().collect();
    single_parents(mem, &objects, Word(meta.shared))?;
    for &(off, size) in &objects {
        report.objects += 1;
        report.bytes += size;
        check_object(mem, seed, off, size)?;
        // Every reachable object starts a block of the size its header implies. A writer
        // that runs (or died) may not have written the block's bit yet: then the block
        // must lie in a pool in use of its size class (or be a live run or huge object).
        let want = block_size(size as usize);
        let found = if lagging || interrupted { alloc.slot_size(off) } else { alloc.usable_size(off) };
        if want > LARGE_MAX_PAGES * PAGE {
            // A huge object's length is in its arena's header too.
            let head = off.checked_sub(PAGE).ok_or_else(|| Corruption::new(off, "huge object in arena 0"))?;
            let len = get_u64(slice(mem, head, 16)?, 8);
            if len != size {
                return Err(Corruption::new(
                    off,
                    format!("huge object of {size} bytes, its arena says {len}"),
                )
                .into());
            }
        }
        match found {
            Some(u) if u == want => {}
            Some(u) => {
                return Err(
                    Corruption::new(off, format!("object of {size} bytes sits in a block of {u}")).into()
                )
            }
            None => return Err(Corruption::new(off, "reachable object is not an allocated block").into()),
        }
    }
    if !interrupted {
        // With a writer running this also counts blocks it freed since its last write-back.
        for (off, usable) in alloc.live_blocks()? {
            if !sizes.contains_key(&off) {
                report.unreachable_blocks += 1;
                report.unreachable_bytes += usable;
            }
        }
    }
    Ok(())
}

/// Checks that every internal node of a container (a trie, rope or vector node) that two
/// reachable objects refer to is in the shared set: a change copies the path to what it
/// changes and refers to a node from a second place only after marking it shared (layer
/// 4), so a node with two parents outside the set is a reference that damage redirected.
fn single_parents(mem: &[u8], objects: &[(u64, u64)], shared: Word) -> Result<(), Corruption> {
    let mut parents: HashMap<u64, u32> = HashMap::with_capacity(objects.len());
    for &(off, _) in objects {
        for_each_slot(mem, off, |_, w| {
            if let Some(c) = w.as_ref() {
                *parents.entry(c).or_default() += 1;
            }
        })?;
    }
    let mut in_set: Option<crate::object::OffsetSet> = None;
    for &(off, _) in objects {
        if parents.get(&off).copied().unwrap_or(0) < 2 || slice(mem, off, 1)?[0] < ty::MAP_NODE {
            continue;
        }
        let set = match &mut in_set {
            Some(s) => s,
            None => {
                let mut s = crate::object::OffsetSet::default();
                crate::object::champ::for_each_entry(mem, shared, false, &mut |e| {
                    if let Imm::Int(o) = Word(e[0]).decode() {
                        s.insert(o as u64);
                    }
                    Ok(())
                })?;
                in_set.insert(s)
            }
        };
        if !set.contains(off) {
            return Err(Corruption::new(off, "a container's node has two parents and is not shared"));
        }
    }
    Ok(())
}

fn words(b: &[u8], from: usize, n: usize) -> Vec<Word> {
    (0..n).map(|i| Word(get_u64(b, from + 8 * i))).collect()
}

/// A value slot of the object at `at` holds `w`: an inline value, or a reference to a
/// value object (not an internal node of some container).
fn check_value_word(mem: &[u8], w: Word, at: u64) -> Result<(), Corruption> {
    match w.decode() {
        Imm::Invalid => Err(Corruption::new(at, format!("invalid word {:#x}", w.0))),
        Imm::Empty => Err(Corruption::new(at, "empty value slot")),
        Imm::Ref(o) => match slice(mem, o, 1)?[0] {
            ty::STR..=ty::BYTES_SHORT => Ok(()),
            t => Err(Corruption::new(at, format!("a value slot refers to an object of type {t}"))),
        },
        _ => Ok(()),
    }
}

/// Checks one object's own invariants (its children are checked when the walk reaches
/// them).
fn check_object(mem: &[u8], seed: u64, off: u64, size: u64) -> Result<(), Corruption> {
    let b = slice(mem, off, size as usize)?;
    for &(from, to) in padding(b[0]) {
        if b[from..to].iter().any(|&x| x != 0) {
            return Err(Corruption::new(off, format!("object of type {} has bytes in its padding", b[0])));
        }
    }
    canonical(b, off)?;
    match b[0] {
        ty::STR | ty::STR_SHORT => {
            let text = if b[0] == ty::STR { &b[8..] } else { &b[2..] };
            std::str::from_utf8(text).map_err(|_| Corruption::new(off, "str is not UTF-8"))?;
        }
        ty::TUPLE => {
            for w in words(b, 8, get_u32(b, 4) as usize) {
                check_value_word(mem, w, off)?;
            }
        }
        ty::RECORD => {
            let n = get_u32(b, 4) as usize;
            let names = Word(get_u64(b, 16));
            let noff = names.as_ref().ok_or_else(|| Corruption::new(off, "record names are not a tuple"))?;
            let nb = slice(mem, noff, 8)?;
            if nb[0] != ty::TUPLE || get_u32(nb, 4) as usize != n {
                return Err(Corruption::new(off, "record names do not match its fields"));
            }
            let nb = slice(mem, noff, 8 + 8 * n)?;
            if !is_str(mem, Word(get_u64(b, 8))) || !words(nb, 8, n).into_iter().all(|w| is_str(mem, w)) {
                return Err(Corruption::new(off, "record type name or field names are not strs"));
            }
            for w in words(b, 24, n) {
                check_value_word(mem, w, off)?;
            }
        }
        ty::DICT => check_dict(mem, seed, off)?,
        ty::LIST => {
            // The walk checks every child's count against its items, and the total.
            list_rope(mem, off)?.walk(mem, &mut |w| check_value_word(mem, w, off), &mut |_| Ok(()))?;
        }
        t @ (ty::SET | ty::FROZENSET) => {
            let entries = check_trie(mem, seed, header_word(mem, off, SET_ROOT)?, false)?;
            if entries.len() as u64 != get_u64(b, SET_LEN) {
                return Err(Corruption::new(off, "set length disagrees with its elements"));
            }
            if t == ty::FROZENSET && combine_frozen(entries.iter().map(|e| e.3), seed) != get_u64(b, SET_HASH)
            {
                return Err(Corruption::new(off, "frozenset hash does not match its elements"));
            }
            if t == ty::SET && get_u64(b, SET_HASH) != 0 {
                return Err(Corruption::new(off, "a set (not frozen) has a hash"));
            }
        }
        t @ (ty::ROPE_LEAF | ty::ROPE_INNER) => {
            // Slots past the node's count hold nothing (a node is written whole).
            let n = get_u16(b, 2) as usize;
            let used = 8 + n * if t == ty::ROPE_LEAF { 8 } else { 16 };
            if b.get(used..).is_some_and(|rest| rest.iter().any(|&x| x != 0)) {
                return Err(Corruption::new(off, "rope node has words past its count"));
            }
        }
        _ => {
            // Blobs, floats and internal nodes: bounds were checked when sized; nodes are
            // checked from their container.
            children(mem, off)?;
        }
    }
    Ok(())
}

fn check_dict(mem: &[u8], seed: u64, off: u64) -> Result<(), Corruption> {
    let b = slice(mem, off, DICT_SIZE)?;
    let len = get_u64(b, DICT_LEN);
    let entries = check_trie(mem, seed, header_word(mem, off, DICT_MAP)?, true)?;
    if entries.len() as u64 != len {
        return Err(Corruption::new(
            off,
            format!("dict says {len} entries, its trie holds {}", entries.len()),
        ));
    }
    let order = dict_order(mem, off)?;
    let mut items: Vec<[u64; 2]> = Vec::new();
    order.walk(
        mem,
        &mut |_, item| {
            items.push([item[0], item[1]]);
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    let live = items.iter().filter(|i| i[0] != 0).count() as u64;
    if live != len {
        return Err(Corruption::new(off, "dict order vector disagrees with its length"));
    }
    if items.iter().any(|i| i[0] == 0 && i[1] != 0) {
        return Err(Corruption::new(off, "dict order vector has a tombstone with a value"));
    }
    check_vector_tail(mem, &order, off)?;
    for (k, v, seq, _) in entries {
        check_value_word(mem, Word(v), off)?;
        match items.get(seq as usize) {
            Some(&[ik, iv]) if ik == k && iv == v => {}
            _ => {
                return Err(Corruption::new(
                    off,
                    format!("dict entry at order {seq} disagrees with its trie"),
                ))
            }
        }
    }
    Ok(())
}

/// Bytes of an object's header that every writer leaves zero, by type: `(from, to)`.
fn padding(t: u8) -> &'static [(usize, usize)] {
    match t {
        ty::STR | ty::BYTES | ty::BIGINT | ty::TUPLE | ty::RECORD | ty::MAP_COLLISION | ty::SET_COLLISION => {
            &[(1, 4)]
        }
        ty::FLOAT | ty::SET | ty::FROZENSET | ty::VEC_INNER => &[(1, 8)],
        ty::DICT | ty::LIST | ty::VEC_LEAF => &[(2, 8)],
        ty::MAP_NODE | ty::SET_NODE => &[(1, 2), (6, 8)],
        ty::ROPE_LEAF | ty::ROPE_INNER => &[(1, 2), (4, 8)],
        _ => &[],
    }
}

/// Values are stored in one form only (`docs/design.md`, "Heap objects"): a str or bytes
/// object of 256 bytes or more in the long form and of 8 to 255 in the short one (shorter
/// ones are inline words), an int object only beyond the inline range and in minimal two's
/// complement, a boxed float only when no inline word holds it.
fn canonical(b: &[u8], off: u64) -> Result<(), Corruption> {
    let ok = match b[0] {
        ty::STR | ty::BYTES => get_u32(b, 4) >= 256,
        ty::STR_SHORT | ty::BYTES_SHORT => b[1] >= 8,
        ty::BIGINT => {
            let v = &b[8..];
            minimal_int_bytes(v) == v && bytes_to_i64(v).and_then(Word::int).is_none()
        }
        ty::FLOAT => Word::float(f64::from_bits(get_u64(b, 8))).is_none(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Corruption::new(off, format!("object of type {} is not in the one form its value has", b[0])))
    }
}

/// Whether `w` is a str: inline, or a str object.
fn is_str(mem: &[u8], w: Word) -> bool {
    match w.decode() {
        Imm::Str(..) => true,
        Imm::Ref(o) => matches!(slice(mem, o, 1).map(|h| h[0]), Ok(ty::STR | ty::STR_SHORT)),
        _ => false,
    }
}

/// Checks that an order vector (already walked) holds nothing past its count: the slots
/// after the last item's, on the path to it, are zero (invariant 5 of layer 3).
fn check_vector_tail(mem: &[u8], v: &Vector, dict: u64) -> Result<(), Corruption> {
    let Some(last) = v.count.checked_sub(1) else { return Ok(()) };
    let leaf_items = VEC_SLOTS / v.width as u64;
    let (mut node, mut level) = (v.root, v.depth);
    loop {
        let off = node.as_ref().ok_or_else(|| Corruption::new(dict, "order vector path ends early"))?;
        let b = slice(mem, off, VEC_NODE)?;
        let used = if level == 0 {
            (last % leaf_items + 1) * v.width as u64
        } else {
            let span = leaf_items.saturating_mul(VEC_SLOTS.saturating_pow(level as u32 - 1));
            (last / span) % VEC_SLOTS + 1
        };
        if b[8 + 8 * used as usize..].iter().any(|&x| x != 0) {
            return Err(Corruption::new(off, "order vector holds words past its count"));
        }
        if level == 0 {
            return Ok(());
        }
        node = Word(get_u64(b, 8 + 8 * (used as usize - 1)));
        level -= 1;
    }
}

/// Walks a hash trie checking that every key sits where its hash puts it; returns the
/// entries as (key, value, order index, hash).
fn check_trie(mem: &[u8], seed: u64, root: Word, map: bool) -> Result<Vec<(u64, u64, u64, u64)>, Corruption> {
    let mut out = Vec::new();
    // Each node is a block of 16 bytes or more: a walk entering more nodes than that meets
    // damaged references that repeat nodes, and stops rather than take 16^16 steps.
    let mut budget = mem.len() as u64 / 16;
    trie_node(mem, seed, root, map, 0, 0, &mut budget, &mut out)?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn trie_node(
    mem: &[u8],
    seed: u64,
    node: Word,
    map: bool,
    level: u32,
    prefix: u64,
    budget: &mut u64,
    out: &mut Vec<(u64, u64, u64, u64)>,
) -> Result<(), Corruption> {
    let Some(off) = node.as_ref() else {
        return if node == Word::EMPTY {
            Ok(())
        } else {
            Err(Corruption::new(node.0, "bad hash-trie child"))
        };
    };
    *budget = budget.checked_sub(1).ok_or_else(|| Corruption::new(off, "hash trie repeats its nodes"))?;
    let ew = entry_words(map);
    let b = slice(mem, off, object_size(mem, off)?)?;
    let mask = if level == 0 { 0 } else { u64::MAX >> (64 - 4 * level.min(16)) };
    let mut entry = |at: usize, want_frag: Option<u32>| -> Result<(), Corruption> {
        let k = Word(get_u64(b, at));
        let h = decode_key(mem, k)?.hash(seed);
        if h & mask != prefix & mask || want_frag.is_some_and(|f| (h >> (4 * level)) & 15 != f as u64) {
            return Err(Corruption::new(off, "a key sits where its hash does not lead"));
        }
        let (v, seq) = if map { (get_u64(b, at + 8), get_u64(b, at + 16)) } else { (0, 0) };
        out.push((k.0, v, seq, h));
        Ok(())
    };
    let want = if map { ty::MAP_NODE } else { ty::SET_NODE };
    let coll = if map { ty::MAP_COLLISION } else { ty::SET_COLLISION };
    if b[0] == coll {
        if level != 16 {
            return Err(Corruption::new(off, "collision node above the last level"));
        }
        let n = get_u32(b, 4) as usize;
        if n == 0 {
            return Err(Corruption::new(off, "empty collision node"));
        }
        for i in 0..n {
            entry(16 + 8 * ew * i, None)?;
        }
        if out.last().is_some_and(|e| e.3 != get_u64(b, 8)) {
            return Err(Corruption::new(off, "collision node's hash is not its keys'"));
        }
        return Ok(());
    }
    if b[0] != want || level >= 16 {
        return Err(Corruption::new(
            off,
            format!("expected a hash-trie node at level {level}, found type {}", b[0]),
        ));
    }
    let (datamap, nodemap) = (get_u16(b, 2), get_u16(b, 4));
    if datamap & nodemap != 0 {
        return Err(Corruption::new(off, "hash-trie slot is both entry and child"));
    }
    if datamap == 0 && nodemap == 0 {
        return Err(Corruption::new(off, "empty hash-trie node (an empty trie is the empty word)"));
    }
    let nn = nodemap.count_ones() as usize;
    let mut i = 0;
    for f in 0..16u32 {
        if datamap & (1 << f) != 0 {
            entry(8 + 8 * (nn + ew * i), Some(f))?;
            i += 1;
        }
    }
    let mut j = 0;
    for f in 0..16u32 {
        if nodemap & (1 << f) != 0 {
            let child = Word(get_u64(b, 8 + 8 * j));
            trie_node(mem, seed, child, map, level + 1, prefix | (f as u64) << (4 * level), budget, out)?;
            j += 1;
        }
    }
    Ok(())
}
