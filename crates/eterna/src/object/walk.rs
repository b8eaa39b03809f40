//! Walking the object graph: the words an object refers to (for the checker and crash
//! recovery), and releasing a subtree that a change made unreachable.

use super::layout::*;
use super::store::{Store, StoreError};
use super::word::Word;
use crate::error::Corruption;

/// Every word the object at `off` refers to: its values and its internal nodes. Integer
/// fields (lengths, a map entry's order index) are not words and are left out; empty
/// slots are included as [`Word::EMPTY`].
pub fn children(mem: &[u8], off: u64) -> Result<Vec<Word>, Corruption> {
    let mut out = Vec::new();
    for_each_slot(mem, off, |_, w| out.push(w))?;
    Ok(out)
}

/// Calls `f(at, word)` for every word slot of the object at `off` (the words
/// [`children`] returns), with the slot's byte position inside the object; returns the
/// object's size. Allocates nothing: the collector and compaction call it once per object.
#[inline]
pub fn for_each_slot(mem: &[u8], off: u64, mut f: impl FnMut(usize, Word)) -> Result<usize, Corruption> {
    let size = object_size(mem, off)?;
    let b = slice(mem, off, size)?;
    let words = |from: usize, to: usize, f: &mut dyn FnMut(usize, Word)| {
        for at in (from..to).step_by(8) {
            f(at, Word(get_u64(b, at)));
        }
    };
    match b[0] {
        ty::STR | ty::BYTES | ty::BIGINT | ty::FLOAT | ty::STR_SHORT | ty::BYTES_SHORT => {}
        ty::TUPLE | ty::RECORD | ty::VEC_LEAF | ty::VEC_INNER => words(8, size, &mut f),
        ty::DICT => {
            f(DICT_MAP, Word(get_u64(b, DICT_MAP)));
            f(DICT_ORDER, Word(get_u64(b, DICT_ORDER)));
        }
        ty::LIST => f(LIST_ROOT, Word(get_u64(b, LIST_ROOT))),
        ty::SET | ty::FROZENSET => f(SET_ROOT, Word(get_u64(b, SET_ROOT))),
        t @ (ty::MAP_NODE | ty::SET_NODE) => {
            let map = t == ty::MAP_NODE;
            let ew = entry_words(map);
            let first = 8 + 8 * get_u16(b, 4).count_ones() as usize;
            words(8, first, &mut f);
            for at in (first..size).step_by(8 * ew) {
                f(at, Word(get_u64(b, at)));
                if map {
                    f(at + 8, Word(get_u64(b, at + 8)));
                }
            }
        }
        t @ (ty::MAP_COLLISION | ty::SET_COLLISION) => {
            let map = t == ty::MAP_COLLISION;
            let ew = entry_words(map);
            for e in 0..get_u32(b, 4) as usize {
                let at = 16 + 8 * ew * e;
                f(at, Word(get_u64(b, at)));
                if map {
                    f(at + 8, Word(get_u64(b, at + 8)));
                }
            }
        }
        ty::ROPE_LEAF => words(8, 8 + 8 * get_u16(b, 2).min(32) as usize, &mut f),
        ty::ROPE_INNER => {
            for i in 0..get_u16(b, 2).min(16) as usize {
                f(8 + 16 * i, Word(get_u64(b, 8 + 16 * i)));
            }
        }
        t => return Err(Corruption::new(off, format!("unknown object type {t}"))),
    }
    Ok(size)
}

/// Releases the value `w` and everything under it that nobody else references: each
/// object is retired (freed at once if created in this transaction, once readers move on
/// otherwise). Shared objects, and everything under them, stay for the collector.
pub fn release<S: Store>(s: &mut S, w: Word) -> Result<(), StoreError> {
    let mut seen = super::OffsetSet::default();
    let mut stack = vec![w];
    let mut doomed = Vec::new();
    while let Some(w) = stack.pop() {
        let Some(off) = w.as_ref() else { continue };
        if !seen.insert(off) || s.is_shared(off)? {
            continue;
        }
        stack.extend(children(s.mem(), off)?);
        doomed.push(off);
    }
    for off in doomed {
        s.retire(off, true)?;
    }
    Ok(())
}

/// Every object reachable from `roots`, as (offset, allocation size), each once.
pub fn reachable(mem: &[u8], roots: &[Word]) -> Result<Vec<(u64, u64)>, Corruption> {
    let mut seen = super::OffsetSet::default();
    let mut out = Vec::new();
    let mut stack: Vec<Word> = roots.to_vec();
    while let Some(w) = stack.pop() {
        let Some(off) = w.as_ref() else {
            if let super::word::Imm::Invalid = w.decode() {
                return Err(Corruption::new(w.0, "invalid word"));
            }
            continue;
        };
        if !seen.insert(off) {
            continue;
        }
        out.push((off, object_size(mem, off)? as u64));
        stack.extend(children(mem, off)?);
    }
    Ok(out)
}
