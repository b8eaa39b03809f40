//! Layer 7: the invariant walker behind `eterna check` and the tests. It checks the
//! header and meta slots, the allocator's side metadata, every object reachable from the
//! committed root (bounds, types, UTF-8, each hash trie's placement of its keys, each
//! dict's agreement between its trie and its order vector), and that every reachable
//! object is a live block of the right size. Blocks allocated but unreachable are
//! reported (a running writer's pending frees, or what the collector will reclaim), not
//! treated as corruption. While a writer runs, the file's pool bits may lag its last
//! commits (it writes them back in batches): then a reachable object must lie at a block
//! of its size in a pool in use, and its bit is not required.

use crate::alloc::{block_size, Allocator};
use crate::error::{Corruption, OpenError};
use crate::format::META_WRITER;
use crate::object::key::{combine_frozen, decode_key};
use crate::object::layout::*;
use crate::object::value::{dict_order, header_word, list_rope};
use crate::object::walk::{children, reachable};
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
    /// The last writer died in a transaction: the allocator's metadata was not checked
    /// (the next writer rebuilds it).
    pub interrupted: bool,
}

/// Why a check failed.
#[derive(Debug)]
pub enum CheckError {
    /// The file could not be read (exit code 2).
    Io(std::io::Error),
    /// The file is inconsistent (exit code 1).
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

fn check_once(path: &Path) -> Result<Report, CheckError> {
    let open_err = |e: OpenError| match e {
        OpenError::Io(e) => CheckError::Io(e),
        other => CheckError::Corrupt(other.to_string()),
    };
    let probe = Allocator::open_for_recovery_readonly(path).map_err(open_err)?;
    let meta = *probe.meta();
    let writing = meta.flags & META_WRITER != 0;
    let interrupted = writing && !writer_alive(path)?;
    // A running writer writes the pool bits of blocks it allocates and frees back in
    // batches: a reachable block must lie in a pool of its size, but its bit may lag.
    let lagging = writing && !interrupted;
    let alloc =
        if interrupted { probe } else { Allocator::open(path, Access::ReadOnly).map_err(open_err)? };
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
    let mut report = Report { txn_id: meta.txn_id, interrupted, ..Report::default() };
    let sizes: HashMap<u64, u64> = objects.iter().copied().collect();
    for &(off, size) in &objects {
        report.objects += 1;
        report.bytes += size;
        check_object(mem, seed, off, size)?;
        if !interrupted {
            let want = block_size(size as usize);
            let found = if lagging { alloc.slot_size(off) } else { alloc.usable_size(off) };
            match found {
                Some(u) if u == want => {}
                Some(u) => {
                    return Err(Corruption::new(
                        off,
                        format!("object of {size} bytes sits in a block of {u}"),
                    )
                    .into())
                }
                None => return Err(Corruption::new(off, "reachable object is not an allocated block").into()),
            }
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
    Ok(report)
}

fn words(b: &[u8], from: usize, n: usize) -> Vec<Word> {
    (0..n).map(|i| Word(get_u64(b, from + 8 * i))).collect()
}

fn check_value_word(w: Word, at: u64) -> Result<(), Corruption> {
    match w.decode() {
        Imm::Invalid => Err(Corruption::new(at, format!("invalid word {:#x}", w.0))),
        Imm::Empty => Err(Corruption::new(at, "empty value slot")),
        _ => Ok(()),
    }
}

/// Checks one object's own invariants (its children are checked when the walk reaches
/// them).
fn check_object(mem: &[u8], seed: u64, off: u64, size: u64) -> Result<(), Corruption> {
    let b = slice(mem, off, size as usize)?;
    match b[0] {
        ty::STR | ty::STR_SHORT => {
            let text = if b[0] == ty::STR { &b[8..] } else { &b[2..] };
            std::str::from_utf8(text).map_err(|_| Corruption::new(off, "str is not UTF-8"))?;
        }
        ty::TUPLE => {
            for w in words(b, 8, get_u32(b, 4) as usize) {
                check_value_word(w, off)?;
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
            for w in words(b, 24, n) {
                check_value_word(w, off)?;
            }
        }
        ty::DICT => check_dict(mem, seed, off)?,
        ty::LIST => {
            // The walk checks every child's count against its items, and the total.
            list_rope(mem, off)?.walk(mem, &mut |w| check_value_word(w, off), &mut |_| Ok(()))?;
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
    for (k, v, seq, _) in entries {
        check_value_word(Word(v), off)?;
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

/// Walks a hash trie checking that every key sits where its hash puts it; returns the
/// entries as (key, value, order index, hash).
fn check_trie(mem: &[u8], seed: u64, root: Word, map: bool) -> Result<Vec<(u64, u64, u64, u64)>, Corruption> {
    let mut out = Vec::new();
    trie_node(mem, seed, root, map, 0, 0, &mut out)?;
    Ok(out)
}

fn trie_node(
    mem: &[u8],
    seed: u64,
    node: Word,
    map: bool,
    level: u32,
    prefix: u64,
    out: &mut Vec<(u64, u64, u64, u64)>,
) -> Result<(), Corruption> {
    let Some(off) = node.as_ref() else {
        return if node == Word::EMPTY {
            Ok(())
        } else {
            Err(Corruption::new(node.0, "bad hash-trie child"))
        };
    };
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
        for i in 0..get_u32(b, 4) as usize {
            entry(16 + 8 * ew * i, None)?;
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
            trie_node(mem, seed, child, map, level + 1, prefix | (f as u64) << (4 * level), out)?;
            j += 1;
        }
    }
    Ok(())
}
