//! The persistent vector behind lists and a dict's insertion order: a radix trie of
//! 32-slot nodes (Bagwell; Clojure's PersistentVector without the tail). Leaves hold 32
//! items of one word (lists) or 16 of two words (a dict's key and value). A change copies
//! the path from the root to one leaf; nodes created in the running transaction change in
//! place.
//!
//! A vector is `(root, count, depth)`: depth 0 is a single leaf; each level above
//! multiplies the capacity by 32.

use super::layout::{get_u64, put_u64, slice, ty, VEC_NODE, VEC_SLOTS};
use super::store::{put, Store, StoreError};
use super::word::Word;
use crate::error::Corruption;

/// Called with each item's index and words.
pub type ItemFn<'a> = dyn FnMut(u64, &[u64]) -> Result<(), Corruption> + 'a;
/// Called with each node's offset.
pub type NodeFn<'a> = dyn FnMut(u64) -> Result<(), Corruption> + 'a;

/// A vector's handle, kept in its container's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vector {
    pub root: Word, // EMPTY when the vector is empty
    pub count: u64, // items
    pub depth: u8,  // levels of inner nodes above the leaves
    pub width: u8,  // words per item: 1 or 2
}

impl Vector {
    /// An empty vector of items `width` words wide.
    pub fn empty(width: u8) -> Vector {
        Vector { root: Word::EMPTY, count: 0, depth: 0, width }
    }

    /// The vector a container's header at `at` describes, refused if the header alone
    /// shows it damaged: more items than its depth or the file could hold, or a root or
    /// depth that disagrees with the count (an empty vector has neither).
    pub fn checked(self, mem: &[u8], at: u64) -> Result<Vector, Corruption> {
        if !(1..=2).contains(&self.width) {
            return Err(Corruption::new(at, format!("vector of items {} words wide", self.width)));
        }
        // Every leaf is a block of its own.
        let most = (mem.len() / VEC_NODE) as u64 * self.leaf_items();
        if self.count > most || self.count > self.capacity(self.depth) {
            return Err(Corruption::new(
                at,
                format!("vector of {} items at depth {} cannot be in this file", self.count, self.depth),
            ));
        }
        if (self.count == 0) != (self.root == Word::EMPTY) || (self.count == 0 && self.depth != 0) {
            return Err(Corruption::new(
                at,
                format!(
                    "vector of {} items with root {:#x} at depth {}",
                    self.count, self.root.0, self.depth
                ),
            ));
        }
        Ok(self)
    }

    fn leaf_items(&self) -> u64 {
        VEC_SLOTS / self.width as u64
    }

    /// Items a vector of this depth can hold.
    fn capacity(&self, depth: u8) -> u64 {
        self.leaf_items().saturating_mul(VEC_SLOTS.saturating_pow(depth as u32))
    }

    /// Items under one child of a node at `level` (1 = just above the leaves).
    fn span(&self, level: u8) -> u64 {
        self.capacity(level - 1)
    }

    fn check(&self, mem: &[u8], off: u64, want: u8) -> Result<(), Corruption> {
        let head = slice(mem, off, VEC_NODE)?;
        if head[0] != want || (want == ty::VEC_LEAF && head[1] != self.width) {
            return Err(Corruption::new(
                off,
                format!("expected a vector node of type {want}, found {}", head[0]),
            ));
        }
        Ok(())
    }

    /// The item at `i` (`width` words).
    pub fn get(&self, mem: &[u8], i: u64) -> Result<[u64; 2], Corruption> {
        if i >= self.count {
            return Err(Corruption::new(
                self.root.0,
                format!("vector index {i} past its count {}", self.count),
            ));
        }
        let (off, base) = self.leaf_of(mem, i)?;
        let at = off + 8 + 8 * (i - base) * self.width as u64;
        let b = slice(mem, at, 8 * self.width as usize)?;
        let mut item = [0u64; 2];
        for (k, w) in item.iter_mut().take(self.width as usize).enumerate() {
            *w = get_u64(b, 8 * k);
        }
        Ok(item)
    }

    /// The leaf holding item `i` and the index of its first item.
    fn leaf_of(&self, mem: &[u8], i: u64) -> Result<(u64, u64), Corruption> {
        let mut node = self.root;
        for level in (1..=self.depth).rev() {
            let off = node.as_ref().ok_or_else(|| Corruption::new(node.0, "vector path ends early"))?;
            self.check(mem, off, ty::VEC_INNER)?;
            let slot = (i / self.span(level)) % VEC_SLOTS;
            node = Word(get_u64(slice(mem, off + 8 + 8 * slot, 8)?, 0));
        }
        let off = node.as_ref().ok_or_else(|| Corruption::new(node.0, "vector path ends early"))?;
        self.check(mem, off, ty::VEC_LEAF)?;
        Ok((off, i - i % self.leaf_items()))
    }

    /// The items in order, one leaf descent per leaf.
    pub fn iter<'m>(&self, mem: &'m [u8]) -> Iter<'m> {
        self.iter_from(mem, 0)
    }

    /// The items from index `start` on.
    pub fn iter_from<'m>(&self, mem: &'m [u8], start: u64) -> Iter<'m> {
        Iter { mem, v: *self, i: start, leaf: None }
    }

    /// Calls `f` with every item in order, and `node` with every node's offset.
    pub fn walk(&self, mem: &[u8], f: &mut ItemFn<'_>, node: &mut NodeFn<'_>) -> Result<(), Corruption> {
        if self.count > self.capacity(self.depth) {
            return Err(Corruption::new(self.root.0, "vector holds more than its depth allows"));
        }
        if self.count == 0 {
            return if self.root == Word::EMPTY {
                Ok(())
            } else {
                Err(Corruption::new(self.root.0, "empty vector has a root"))
            };
        }
        self.walk_node(mem, self.root, self.depth, 0, f, node)
    }

    fn walk_node(
        &self,
        mem: &[u8],
        w: Word,
        level: u8,
        first: u64,
        f: &mut ItemFn<'_>,
        node: &mut NodeFn<'_>,
    ) -> Result<(), Corruption> {
        let off = w.as_ref().ok_or_else(|| Corruption::new(w.0, "vector path ends early"))?;
        node(off)?;
        let b = slice(mem, off, VEC_NODE)?;
        if level == 0 {
            self.check(mem, off, ty::VEC_LEAF)?;
            let n = (self.count - first).min(self.leaf_items());
            let wd = self.width as usize;
            for k in 0..n as usize {
                let item: Vec<u64> = (0..wd).map(|j| get_u64(b, 8 + 8 * (k * wd + j))).collect();
                f(first + k as u64, &item)?;
            }
            return Ok(());
        }
        self.check(mem, off, ty::VEC_INNER)?;
        let span = self.span(level);
        for slot in 0..VEC_SLOTS {
            let start = first + slot * span;
            if start >= self.count {
                break;
            }
            self.walk_node(mem, Word(get_u64(b, 8 + 8 * slot as usize)), level - 1, start, f, node)?;
        }
        Ok(())
    }

    fn blank(&self, level: u8) -> Vec<u8> {
        let mut b = vec![0u8; VEC_NODE];
        if level == 0 {
            b[0] = ty::VEC_LEAF;
            b[1] = self.width;
        } else {
            b[0] = ty::VEC_INNER;
        }
        b
    }

    /// Replaces the item at `i` (which must exist, or be the one past the end when
    /// appending) along a copied path; creates missing nodes.
    fn put_item<S: Store>(&mut self, s: &mut S, i: u64, item: &[u64], owned: bool) -> Result<(), StoreError> {
        self.root = self.put_at(s, self.root, self.depth, i, item, owned)?;
        Ok(())
    }

    fn put_at<S: Store>(
        &self,
        s: &mut S,
        w: Word,
        level: u8,
        i: u64,
        item: &[u64],
        owned: bool,
    ) -> Result<Word, StoreError> {
        let old = w.as_ref();
        let owned = match old {
            // Below a node something else also references, nothing is this change's alone.
            Some(off) => owned && !s.is_shared(off)?,
            None => owned,
        };
        if let Some(off) = old {
            self.check(s.mem(), off, if level == 0 { ty::VEC_LEAF } else { ty::VEC_INNER })?;
            if s.is_fresh(off) {
                // Created in this transaction: change just the words that change.
                if level == 0 {
                    let at = 8 + 8 * ((i % self.leaf_items()) as usize) * self.width as usize;
                    let mut bytes = [0u8; 16];
                    for (k, &x) in item.iter().enumerate() {
                        bytes[8 * k..8 * k + 8].copy_from_slice(&x.to_le_bytes());
                    }
                    s.write_at(off, at, &bytes[..8 * item.len()])?;
                } else {
                    let slot = ((i / self.span(level)) % VEC_SLOTS) as usize;
                    let child = Word(get_u64(slice(s.mem(), off + 8 + 8 * slot as u64, 8)?, 0));
                    let nc = self.put_at(s, child, level - 1, i, item, owned)?;
                    if nc != child {
                        s.write_at(off, 8 + 8 * slot, &nc.0.to_le_bytes())?;
                    }
                }
                return Ok(w);
            }
        }
        let mut b = match old {
            Some(off) => slice(s.mem(), off, VEC_NODE)?.to_vec(),
            None => self.blank(level),
        };
        if level == 0 {
            let at = 8 + 8 * ((i % self.leaf_items()) as usize) * self.width as usize;
            for (k, &x) in item.iter().enumerate() {
                put_u64(&mut b, at + 8 * k, x);
            }
        } else {
            let slot = ((i / self.span(level)) % VEC_SLOTS) as usize;
            let child = Word(get_u64(&b, 8 + 8 * slot));
            let nc = self.put_at(s, child, level - 1, i, item, owned)?;
            if nc == child && old.is_some() {
                return Ok(w);
            }
            put_u64(&mut b, 8 + 8 * slot, nc.0);
        }
        Ok(Word(put(s, old, &b, owned)?))
    }

    /// Sets the item at `i`.
    pub fn set<S: Store>(&mut self, s: &mut S, i: u64, item: &[u64], owned: bool) -> Result<(), StoreError> {
        if i >= self.count {
            return Err(Corruption::new(
                self.root.0,
                format!("vector index {i} past its count {}", self.count),
            )
            .into());
        }
        self.put_item(s, i, item, owned)
    }

    /// Appends an item.
    pub fn push<S: Store>(&mut self, s: &mut S, item: &[u64], owned: bool) -> Result<(), StoreError> {
        let count = self
            .count
            .checked_add(1)
            .ok_or_else(|| Corruption::new(self.root.0, "vector count past any count"))?;
        if self.count == self.capacity(self.depth) && self.count > 0 {
            // Full: a new root above the old one.
            let depth = self
                .depth
                .checked_add(1)
                .ok_or_else(|| Corruption::new(self.root.0, "vector deeper than any count"))?;
            let mut b = self.blank(depth);
            put_u64(&mut b, 8, self.root.0);
            self.root = Word(put(s, None, &b, true)?);
            self.depth = depth;
        }
        let i = self.count;
        self.count = count;
        self.put_item(s, i, item, owned)
    }

    /// Removes the last item and returns it.
    pub fn pop<S: Store>(&mut self, s: &mut S, owned: bool) -> Result<Option<[u64; 2]>, StoreError> {
        if self.count == 0 {
            return Ok(None);
        }
        let i = self.count - 1;
        let item = self.get(s.mem(), i)?;
        let zero = [0u64; 2];
        if i % self.leaf_items() == 0 {
            // The last leaf empties: drop it (and any inner node left empty).
            self.root = self.drop_last(s, self.root, self.depth, i, owned)?;
        } else {
            self.put_item(s, i, &zero[..self.width as usize], owned)?;
        }
        self.count = i;
        while self.depth > 0 && self.count <= self.capacity(self.depth - 1) {
            let off = self.root.as_ref().ok_or_else(|| Corruption::new(0, "vector root missing"))?;
            let child = Word(get_u64(slice(s.mem(), off + 8, 8)?, 0));
            s.retire(off, owned)?;
            self.root = child;
            self.depth -= 1;
        }
        if self.count == 0 {
            if let Some(off) = self.root.as_ref() {
                s.retire(off, owned)?;
            }
            self.root = Word::EMPTY;
            self.depth = 0;
        }
        Ok(Some(item))
    }

    /// Removes the subtree holding only item `i` (the first of its leaf).
    fn drop_last<S: Store>(
        &self,
        s: &mut S,
        w: Word,
        level: u8,
        i: u64,
        owned: bool,
    ) -> Result<Word, StoreError> {
        let off = w.as_ref().ok_or_else(|| Corruption::new(w.0, "vector path ends early"))?;
        let owned = owned && !s.is_shared(off)?;
        if level == 0 {
            s.retire(off, owned)?;
            return Ok(Word::EMPTY);
        }
        let mut b = slice(s.mem(), off, VEC_NODE)?.to_vec();
        let slot = ((i / self.span(level)) % VEC_SLOTS) as usize;
        let nc = self.drop_last(s, Word(get_u64(&b, 8 + 8 * slot)), level - 1, i, owned)?;
        put_u64(&mut b, 8 + 8 * slot, nc.0);
        if slot == 0 && nc == Word::EMPTY {
            s.retire(off, owned)?;
            return Ok(Word::EMPTY);
        }
        Ok(Word(put(s, Some(off), &b, owned)?))
    }

    /// Retires every node of the vector (not the items), except below a node something
    /// else also references.
    pub fn retire_nodes<S: Store>(&self, s: &mut S, owned: bool) -> Result<(), StoreError> {
        let mut nodes = Vec::new();
        self.walk(s.mem(), &mut |_, _| Ok(()), &mut |off| {
            nodes.push(off);
            Ok(())
        })?;
        // `walk` lists parents before children: skip every node under a shared one.
        let mut skip = super::OffsetSet::default();
        for off in nodes {
            if skip.contains(off) || !owned || s.is_shared(off)? {
                for c in super::walk::children(s.mem(), off)? {
                    if let Some(c) = c.as_ref() {
                        skip.insert(c);
                    }
                }
                continue;
            }
            s.retire(off, true)?;
        }
        Ok(())
    }

    /// Builds a vector of `items` (each `width` words) from scratch, bottom up: every node
    /// is written once.
    pub fn build<S: Store>(s: &mut S, width: u8, items: &[u64]) -> Result<Vector, StoreError> {
        let mut v = Vector::empty(width);
        let w = width as usize;
        v.count = (items.len() / w) as u64;
        if v.count == 0 {
            return Ok(v);
        }
        let mut level: Vec<u64> = Vec::with_capacity(items.len().div_ceil(VEC_SLOTS as usize));
        for chunk in items.chunks(VEC_SLOTS as usize / w * w) {
            let mut b = v.blank(0);
            for (k, &x) in chunk.iter().enumerate() {
                put_u64(&mut b, 8 + 8 * k, x);
            }
            level.push(put(s, None, &b, true)?);
        }
        while level.len() > 1 || v.count > v.capacity(v.depth) {
            v.depth += 1;
            let mut up = Vec::with_capacity(level.len().div_ceil(VEC_SLOTS as usize));
            for chunk in level.chunks(VEC_SLOTS as usize) {
                let mut b = v.blank(v.depth);
                for (k, &c) in chunk.iter().enumerate() {
                    put_u64(&mut b, 8 + 8 * k, c);
                }
                up.push(put(s, None, &b, true)?);
            }
            level = up;
        }
        v.root = Word(level[0]);
        Ok(v)
    }
}

/// An iterator over a vector's items (each `width` words, padded to two).
pub struct Iter<'m> {
    mem: &'m [u8],
    v: Vector,
    i: u64,
    leaf: Option<(u64, u64)>, // the current leaf and its first item's index
}

impl Iterator for Iter<'_> {
    type Item = Result<[u64; 2], Corruption>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.i >= self.v.count {
            return None;
        }
        if self.leaf.is_none() && self.v.count > self.v.capacity(self.v.depth) {
            self.i = self.v.count;
            return Some(Err(Corruption::new(self.v.root.0, "vector holds more than its depth allows")));
        }
        let (off, base) = match self.leaf {
            Some((off, base)) if self.i < base + self.v.leaf_items() => (off, base),
            _ => match self.v.leaf_of(self.mem, self.i) {
                Ok(l) => {
                    self.leaf = Some(l);
                    l
                }
                Err(e) => {
                    self.i = self.v.count;
                    return Some(Err(e));
                }
            },
        };
        let wd = self.v.width as u64;
        let at = off + 8 + 8 * (self.i - base) * wd;
        self.i += 1;
        Some(slice(self.mem, at, 8 * wd as usize).map(|b| {
            let mut item = [0u64; 2];
            for (k, w) in item.iter_mut().take(wd as usize).enumerate() {
                *w = get_u64(b, 8 * k);
            }
            item
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.v.count - self.i.min(self.v.count)) as usize;
        (n, Some(n))
    }
}
