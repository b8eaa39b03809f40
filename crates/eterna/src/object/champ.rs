//! The persistent hash trie behind dicts and sets: a CHAMP (Steindorfer and Vinju, 2015)
//! with 16-way nodes. A node holds its inline entries first and its children after, each
//! group located by a 16-bit bitmap, so a lookup reads one header and one slot per level.
//! Map entries are three words (key, value, position in the dict's order vector); set
//! entries are one word (key). Four hash bits pick the slot at each level; after 16
//! levels, keys whose whole 64-bit hashes collide share a collision node.

use super::key::{decode_key, eq_stored, Key};
use super::layout::{entry_words, get_u16, get_u32, get_u64, put_u64, slice, ty};
use super::store::{put, Store, StoreError};
use super::word::Word;
use crate::error::Corruption;

const LEVELS: u32 = 16;

#[inline]
fn frag(h: u64, level: u32) -> u32 {
    ((h >> (4 * level)) & 15) as u32
}

#[inline]
fn index(map: u16, bit: u16) -> usize {
    (map & (bit - 1)).count_ones() as usize
}

/// Most entries a collision node holds (keys whose whole 64-bit hashes agree: in
/// practice two at most).
const MAX_COLLISIONS: usize = 16;

/// A decoded node, on the stack: room for 16 map entries and 16 children.
struct Node {
    coll: bool,          // a collision node
    hash: u64,           // collision nodes: the shared hash
    datamap: u16,        // which slots hold inline entries
    nodemap: u16,        // which slots hold children
    ew: usize,           // words per entry
    nd: usize,           // inline entries
    nn: usize,           // children
    entries: [u64; 48],  // inline entries, ew words each
    children: [u64; 16], // child words
}

impl Node {
    fn read(mem: &[u8], off: u64, map: bool) -> Result<Node, Corruption> {
        let head = slice(mem, off, 16)?;
        let ew = entry_words(map);
        let (node_ty, coll_ty) =
            if map { (ty::MAP_NODE, ty::MAP_COLLISION) } else { (ty::SET_NODE, ty::SET_COLLISION) };
        let mut n = Node {
            coll: false,
            hash: 0,
            datamap: 0,
            nodemap: 0,
            ew,
            nd: 0,
            nn: 0,
            entries: [0; 48],
            children: [0; 16],
        };
        let base;
        if head[0] == coll_ty {
            n.coll = true;
            n.hash = get_u64(head, 8);
            n.nd = get_u32(head, 4) as usize;
            if n.nd > MAX_COLLISIONS {
                return Err(Corruption::new(off, format!("collision node of {} entries", n.nd)));
            }
            base = 16;
        } else if head[0] == node_ty {
            n.datamap = get_u16(head, 2);
            n.nodemap = get_u16(head, 4);
            if n.datamap & n.nodemap != 0 {
                return Err(Corruption::new(off, "hash-trie slot is both entry and child"));
            }
            n.nd = n.datamap.count_ones() as usize;
            n.nn = n.nodemap.count_ones() as usize;
            base = 8;
        } else {
            return Err(Corruption::new(off, format!("expected a hash-trie node, found type {}", head[0])));
        }
        // Children first: a descent then finds its pointer in the header's cache line.
        let b = slice(mem, off + base, 8 * (ew * n.nd + n.nn))?;
        for i in 0..n.nn {
            n.children[i] = get_u64(b, 8 * i);
        }
        for i in 0..ew * n.nd {
            n.entries[i] = get_u64(b, 8 * (n.nn + i));
        }
        Ok(n)
    }

    /// The node's bytes, in `buf`; returns their length.
    fn image(&self, map: bool, buf: &mut [u8; 16 + 8 * 64]) -> usize {
        let words = self.ew * self.nd;
        if self.coll {
            buf[..16].fill(0);
            buf[0] = if map { ty::MAP_COLLISION } else { ty::SET_COLLISION };
            buf[4..8].copy_from_slice(&(self.nd as u32).to_le_bytes());
            put_u64(buf, 8, self.hash);
            for (i, &w) in self.entries[..words].iter().enumerate() {
                put_u64(buf, 16 + 8 * i, w);
            }
            return 16 + 8 * words;
        }
        buf[..8].fill(0);
        buf[0] = if map { ty::MAP_NODE } else { ty::SET_NODE };
        buf[2..4].copy_from_slice(&self.datamap.to_le_bytes());
        buf[4..6].copy_from_slice(&self.nodemap.to_le_bytes());
        for (i, &w) in self.children[..self.nn].iter().chain(&self.entries[..words]).enumerate() {
            put_u64(buf, 8 + 8 * i, w);
        }
        8 + 8 * (words + self.nn)
    }

    /// Stores the node as the new version of `old`.
    fn store<S: Store>(
        &self,
        s: &mut S,
        old: Option<u64>,
        map: bool,
        owned: bool,
    ) -> Result<Word, StoreError> {
        let mut buf = [0u8; 16 + 8 * 64];
        let len = self.image(map, &mut buf);
        Ok(Word(put(s, old, &buf[..len], owned)?))
    }

    fn entry(&self, i: usize) -> [u64; 3] {
        let mut e = [0u64; 3];
        e[..self.ew].copy_from_slice(&self.entries[i * self.ew..(i + 1) * self.ew]);
        e
    }

    fn set_entry(&mut self, i: usize, e: &[u64; 3]) {
        let ew = self.ew;
        self.entries[i * ew..(i + 1) * ew].copy_from_slice(&e[..ew]);
    }

    fn insert_entry(&mut self, i: usize, e: &[u64; 3]) -> Result<(), Corruption> {
        if self.nd >= if self.coll { MAX_COLLISIONS } else { 16 } {
            return Err(Corruption::new(0, "hash-trie node overflows"));
        }
        let ew = self.ew;
        let end = ew * self.nd;
        self.entries.copy_within(i * ew..end, (i + 1) * ew);
        self.entries[i * ew..(i + 1) * ew].copy_from_slice(&e[..ew]);
        self.nd += 1;
        Ok(())
    }

    fn remove_entry(&mut self, i: usize) -> [u64; 3] {
        let e = self.entry(i);
        let ew = self.ew;
        let end = ew * self.nd;
        self.entries.copy_within((i + 1) * ew..end, i * ew);
        self.nd -= 1;
        e
    }

    fn insert_child(&mut self, j: usize, w: u64) {
        self.children.copy_within(j..self.nn, j + 1);
        self.children[j] = w;
        self.nn += 1;
    }

    fn remove_child(&mut self, j: usize) {
        self.children.copy_within(j + 1..self.nn, j);
        self.nn -= 1;
    }

    fn count(&self) -> usize {
        self.nd
    }
}

/// Cache lines of a child node fetched together on the way down a lookup.
const NODE_PREFETCH_LINES: u64 = 6;

/// Looks `probe` (hashing to `h`) up in the trie at `root`; returns its entry.
pub fn lookup(
    mem: &[u8],
    root: Word,
    h: u64,
    probe: &Key,
    map: bool,
) -> Result<Option<[u64; 3]>, Corruption> {
    let ew = entry_words(map);
    let mut node = root;
    let mut level = 0;
    loop {
        let Some(off) = node.as_ref() else {
            return if node == Word::EMPTY {
                Ok(None)
            } else {
                Err(Corruption::new(node.0, "bad hash-trie child"))
            };
        };
        let head = slice(mem, off, 8)?;
        shape(head[0], off, map, level)?;
        if head[0] == ty::MAP_COLLISION || head[0] == ty::SET_COLLISION {
            let n = Node::read(mem, off, map)?;
            for i in 0..n.count() {
                let e = n.entry(i);
                if eq_stored(mem, Word(e[0]), probe)? {
                    return Ok(Some(e));
                }
            }
            return Ok(None);
        }
        let (datamap, nodemap) = (get_u16(head, 2), get_u16(head, 4));
        let bit = 1u16 << frag(h, level);
        let nn = nodemap.count_ones() as u64;
        if datamap & bit != 0 {
            let at = off + 8 + 8 * (nn + (ew * index(datamap, bit)) as u64);
            let b = slice(mem, at, 8 * ew)?;
            let mut e = [0u64; 3];
            for (i, w) in e.iter_mut().take(ew).enumerate() {
                *w = get_u64(b, 8 * i);
            }
            // Start fetching the value while the key is compared: two misses in flight
            // instead of one after the other.
            if map && Word(e[1]).is_ref() {
                crate::region::prefetch(mem, e[1]);
            }
            return Ok(if eq_stored(mem, Word(e[0]), probe)? { Some(e) } else { None });
        }
        if nodemap & bit == 0 {
            return Ok(None);
        }
        let at = off + 8 + 8 * index(nodemap, bit) as u64;
        node = Word(get_u64(slice(mem, at, 8)?, 0));
        if let Some(child) = node.as_ref() {
            // The child's header and the slot the probe needs are on different cache lines
            // of a node up to a few hundred bytes long: ask for its first lines at once.
            for line in 0..NODE_PREFETCH_LINES {
                crate::region::prefetch(mem, child + 64 * line);
            }
        }
        level += 1;
    }
}

/// Checks that a trie node of type `t` at `off` may stand at `level` of a map (or set)
/// trie: a node above the last level, a collision node at it. Every index a walk derives
/// from a node relies on this (four hash bits per level run out after 16 levels).
fn shape(t: u8, off: u64, map: bool, level: u32) -> Result<(), Corruption> {
    let (node_ty, coll_ty) =
        if map { (ty::MAP_NODE, ty::MAP_COLLISION) } else { (ty::SET_NODE, ty::SET_COLLISION) };
    let want = if level < LEVELS { node_ty } else { coll_ty };
    if t != want || level > LEVELS {
        return Err(Corruption::new(
            off,
            format!("expected a hash-trie node of type {want} at level {level}, found {t}"),
        ));
    }
    Ok(())
}

/// Calls `f` with every entry (its words) of the trie at `root`.
pub fn for_each_entry(
    mem: &[u8],
    root: Word,
    map: bool,
    f: &mut dyn FnMut(&[u64]) -> Result<(), Corruption>,
) -> Result<(), Corruption> {
    walk(mem, root, map, 0, f, &mut |_| Ok(()))
}

/// Calls `f` with every entry and `node` with every node offset of the trie at `root`
/// (a trie's root is at `level` 0).
pub fn walk(
    mem: &[u8],
    root: Word,
    map: bool,
    level: u32,
    f: &mut dyn FnMut(&[u64]) -> Result<(), Corruption>,
    node: &mut dyn FnMut(u64) -> Result<(), Corruption>,
) -> Result<(), Corruption> {
    let mut budget = node_budget(mem);
    walk_at(mem, root, map, level, &mut budget, f, node)
}

/// Trie nodes a walk of one trie may visit: each node is a block of at least 16 bytes of
/// its own, so more visits mean that damaged references repeat nodes (which could
/// otherwise make a walk of 16 levels take 16^16 steps).
fn node_budget(mem: &[u8]) -> u64 {
    mem.len() as u64 / 16
}

fn walk_at(
    mem: &[u8],
    root: Word,
    map: bool,
    level: u32,
    budget: &mut u64,
    f: &mut dyn FnMut(&[u64]) -> Result<(), Corruption>,
    node: &mut dyn FnMut(u64) -> Result<(), Corruption>,
) -> Result<(), Corruption> {
    let Some(off) = root.as_ref() else {
        return if root == Word::EMPTY {
            Ok(())
        } else {
            Err(Corruption::new(root.0, "bad hash-trie child"))
        };
    };
    *budget = budget.checked_sub(1).ok_or_else(|| Corruption::new(off, "hash trie repeats its nodes"))?;
    shape(slice(mem, off, 1)?[0], off, map, level)?;
    node(off)?;
    let n = Node::read(mem, off, map)?;
    if n.nd == 0 && n.nn == 0 {
        return Err(Corruption::new(off, "empty hash-trie node (an empty trie is the empty word)"));
    }
    for e in n.entries[..n.ew * n.nd].chunks(n.ew) {
        f(e)?;
    }
    for &c in &n.children[..n.nn] {
        walk_at(mem, Word(c), map, level + 1, budget, f, node)?;
    }
    Ok(())
}

/// Entry maker for [`upsert`]: given the entry already stored for the key (if any),
/// returns the entry to store.
pub type Make<'a, S> = dyn FnMut(&mut S, Option<[u64; 3]>) -> Result<[u64; 3], StoreError> + 'a;

/// Inserts or replaces the entry for `probe` (hashing to `h`) in the trie at `root`,
/// copying the path; returns the new root.
pub fn upsert<S: Store>(
    s: &mut S,
    root: Word,
    h: u64,
    probe: &Key,
    map: bool,
    owned: bool,
    make: &mut Make<'_, S>,
) -> Result<Word, StoreError> {
    upsert_at(s, root, h, probe, map, 0, owned, make)
}

#[allow(clippy::too_many_arguments)]
fn upsert_at<S: Store>(
    s: &mut S,
    node: Word,
    h: u64,
    probe: &Key,
    map: bool,
    level: u32,
    owned: bool,
    make: &mut Make<'_, S>,
) -> Result<Word, StoreError> {
    let seed = s.seed();
    let Some(off) = node.as_ref() else {
        if node != Word::EMPTY {
            return Err(Corruption::new(node.0, "bad hash-trie child").into());
        }
        let e = make(s, None)?;
        return single(s, &e, h, level, map);
    };
    // Below a node something else also references, nothing is this change's alone.
    let owned = owned && !s.is_shared(off)?;
    // Passing through to a child (most levels of a large trie): read only the header and
    // the child's word, and touch this node again only if the child moved.
    let head = slice(s.mem(), off, 8)?;
    shape(head[0], off, map, level)?;
    if level >= LEVELS {
        return upsert_collision(s, node, off, probe, map, owned, make);
    }
    let bit = 1u16 << frag(h, level);
    let (datamap, nodemap) = (get_u16(head, 2), get_u16(head, 4));
    if head[0] == if map { ty::MAP_NODE } else { ty::SET_NODE } && nodemap & bit != 0 && datamap & bit == 0 {
        let j = index(nodemap, bit);
        let at = 8 + 8 * j as u64;
        let child = Word(get_u64(slice(s.mem(), off + at, 8)?, 0));
        let nc = upsert_at(s, child, h, probe, map, level + 1, owned, make)?;
        if nc == child {
            return Ok(node);
        }
        if s.is_fresh(off) {
            s.write_at(off, at as usize, &nc.0.to_le_bytes())?;
            return Ok(node);
        }
        let mut n = Node::read(s.mem(), off, map)?;
        n.children[j] = nc.0;
        return n.store(s, Some(off), map, owned);
    }
    let mut n = Node::read(s.mem(), off, map)?;
    if n.datamap & bit != 0 {
        let i = index(n.datamap, bit);
        let old = n.entry(i);
        if eq_stored(s.mem(), Word(old[0]), probe)? {
            let new = make(s, Some(old))?;
            if new == old {
                return Ok(node);
            }
            n.set_entry(i, &new);
        } else {
            let old_hash = decode_key(s.mem(), Word(old[0]))?.hash(seed);
            let new = make(s, None)?;
            let child = pair(s, &old, old_hash, &new, h, level + 1, map)?;
            n.remove_entry(i);
            n.datamap &= !bit;
            n.nodemap |= bit;
            n.insert_child(index(n.nodemap, bit), child.0);
        }
    } else if n.nodemap & bit != 0 {
        let j = index(n.nodemap, bit);
        let child = Word(n.children[j]);
        let nc = upsert_at(s, child, h, probe, map, level + 1, owned, make)?;
        if nc == child {
            return Ok(node);
        }
        n.children[j] = nc.0;
    } else {
        let e = make(s, None)?;
        n.insert_entry(index(n.datamap, bit), &e)?;
        n.datamap |= bit;
    }
    n.store(s, Some(off), map, owned)
}

/// [`upsert`] at the collision node `off` (the last level).
fn upsert_collision<S: Store>(
    s: &mut S,
    node: Word,
    off: u64,
    probe: &Key,
    map: bool,
    owned: bool,
    make: &mut Make<'_, S>,
) -> Result<Word, StoreError> {
    let mut n = Node::read(s.mem(), off, map)?;
    for i in 0..n.count() {
        let old = n.entry(i);
        if eq_stored(s.mem(), Word(old[0]), probe)? {
            let new = make(s, Some(old))?;
            if new == old {
                return Ok(node);
            }
            n.set_entry(i, &new);
            return n.store(s, Some(off), map, owned);
        }
    }
    let e = make(s, None)?;
    n.insert_entry(n.count(), &e)?;
    n.store(s, Some(off), map, owned)
}

impl Node {
    /// An empty node (or collision node) of the right kind.
    fn empty(map: bool, coll: bool, hash: u64) -> Node {
        Node {
            coll,
            hash,
            datamap: 0,
            nodemap: 0,
            ew: entry_words(map),
            nd: 0,
            nn: 0,
            entries: [0; 48],
            children: [0; 16],
        }
    }
}

/// A new node holding one entry.
fn single<S: Store>(s: &mut S, e: &[u64; 3], h: u64, level: u32, map: bool) -> Result<Word, StoreError> {
    let mut n = Node::empty(map, level >= LEVELS, h);
    if !n.coll {
        n.datamap = 1 << frag(h, level);
    }
    n.insert_entry(0, e)?;
    n.store(s, None, map, true)
}

/// A new subtree holding two entries whose hashes agree on the levels above `level`.
fn pair<S: Store>(
    s: &mut S,
    a: &[u64; 3],
    ha: u64,
    b: &[u64; 3],
    hb: u64,
    level: u32,
    map: bool,
) -> Result<Word, StoreError> {
    if level >= LEVELS {
        let mut n = Node::empty(map, true, ha);
        n.insert_entry(0, a)?;
        n.insert_entry(1, b)?;
        return n.store(s, None, map, true);
    }
    let (fa, fb) = (frag(ha, level), frag(hb, level));
    let mut n = Node::empty(map, false, 0);
    if fa == fb {
        let child = pair(s, a, ha, b, hb, level + 1, map)?;
        n.nodemap = 1 << fa;
        n.insert_child(0, child.0);
    } else {
        let (first, second) = if fa < fb { (a, b) } else { (b, a) };
        n.insert_entry(0, first)?;
        n.insert_entry(1, second)?;
        n.datamap = 1 << fa | 1 << fb;
    }
    n.store(s, None, map, true)
}

/// Removes the entry for `probe`; returns the new root and the removed entry.
pub fn remove<S: Store>(
    s: &mut S,
    root: Word,
    h: u64,
    probe: &Key,
    map: bool,
    owned: bool,
) -> Result<(Word, Option<[u64; 3]>), StoreError> {
    remove_at(s, root, h, probe, map, 0, owned)
}

fn remove_at<S: Store>(
    s: &mut S,
    node: Word,
    h: u64,
    probe: &Key,
    map: bool,
    level: u32,
    owned: bool,
) -> Result<(Word, Option<[u64; 3]>), StoreError> {
    let Some(off) = node.as_ref() else {
        return if node == Word::EMPTY {
            Ok((node, None))
        } else {
            Err(Corruption::new(node.0, "bad hash-trie child").into())
        };
    };
    let owned = owned && !s.is_shared(off)?;
    shape(slice(s.mem(), off, 1)?[0], off, map, level)?;
    let mut n = Node::read(s.mem(), off, map)?;
    let removed;
    if n.coll {
        let mut found = None;
        for i in 0..n.count() {
            if eq_stored(s.mem(), Word(n.entry(i)[0]), probe)? {
                found = Some(i);
                break;
            }
        }
        let Some(i) = found else { return Ok((node, None)) };
        removed = n.remove_entry(i);
    } else {
        let bit = 1u16 << frag(h, level);
        if n.datamap & bit != 0 {
            let i = index(n.datamap, bit);
            if !eq_stored(s.mem(), Word(n.entry(i)[0]), probe)? {
                return Ok((node, None));
            }
            removed = n.remove_entry(i);
            n.datamap &= !bit;
        } else if n.nodemap & bit != 0 {
            let j = index(n.nodemap, bit);
            let child = Word(n.children[j]);
            let (nc, r) = remove_at(s, child, h, probe, map, level + 1, owned)?;
            let Some(r) = r else { return Ok((node, None)) };
            removed = r;
            match inlinable(s.mem(), nc, map)? {
                Some(e) => {
                    // The child shrank to one entry: pull it up into this node.
                    s.retire(nc.0, owned)?;
                    n.remove_child(j);
                    n.nodemap &= !bit;
                    n.insert_entry(index(n.datamap, bit), &e)?;
                    n.datamap |= bit;
                }
                None if nc == Word::EMPTY => {
                    n.remove_child(j);
                    n.nodemap &= !bit;
                }
                None => n.children[j] = nc.0,
            }
        } else {
            return Ok((node, None));
        }
    }
    if n.nd == 0 && n.nn == 0 {
        s.retire(off, owned)?;
        return Ok((Word::EMPTY, Some(removed)));
    }
    Ok((n.store(s, Some(off), map, owned)?, Some(removed)))
}

/// The single entry of `node` if it holds exactly one entry and no children (and so may
/// be inlined into its parent).
fn inlinable(mem: &[u8], node: Word, map: bool) -> Result<Option<[u64; 3]>, Corruption> {
    let Some(off) = node.as_ref() else { return Ok(None) };
    let n = Node::read(mem, off, map)?;
    Ok((!n.coll && n.count() == 1 && n.nn == 0).then(|| n.entry(0)))
}

/// An iterator over a trie's entries, depth first, without allocating per entry.
pub struct Iter<'m> {
    mem: &'m [u8],
    map: bool,
    stack: Vec<(u64, usize, usize)>, // (node, next entry, next child)
    budget: u64,                     // nodes it may still enter (see `node_budget`)
    failed: bool,
}

/// The entries of the trie at `root`.
pub fn iter(mem: &[u8], root: Word, map: bool) -> Iter<'_> {
    Iter {
        mem,
        map,
        stack: root.as_ref().map(|o| vec![(o, 0, 0)]).unwrap_or_default(),
        budget: node_budget(mem),
        failed: false,
    }
}

impl Iter<'_> {
    /// Checks the node on top of the stack when the iteration enters it: its type for its
    /// level, its maps (no node is empty: an empty trie is the empty word), and that the
    /// iteration has not entered more nodes than the file holds.
    fn enter(&mut self, off: u64, head: &[u8]) -> Result<(), Corruption> {
        let level = self.stack.len() as u32 - 1;
        self.budget =
            self.budget.checked_sub(1).ok_or_else(|| Corruption::new(off, "hash trie repeats its nodes"))?;
        shape(head[0], off, self.map, level)?;
        let (nd, nn) = if level >= LEVELS {
            (get_u32(head, 4) as usize, 0)
        } else {
            let (datamap, nodemap) = (get_u16(head, 2), get_u16(head, 4));
            if datamap & nodemap != 0 {
                return Err(Corruption::new(off, "hash-trie slot is both entry and child"));
            }
            (datamap.count_ones() as usize, nodemap.count_ones() as usize)
        };
        if nd > MAX_COLLISIONS || (nd == 0 && nn == 0) {
            return Err(Corruption::new(off, format!("hash-trie node of {nd} entries and {nn} children")));
        }
        Ok(())
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<[u64; 3], Corruption>;

    fn next(&mut self) -> Option<Self::Item> {
        let ew = entry_words(self.map);
        loop {
            if self.failed {
                return None;
            }
            let &(off, e, c) = self.stack.last()?;
            if self.stack.len() > LEVELS as usize + 1 {
                self.failed = true;
                return Some(Err(Corruption::new(off, "hash trie deeper than 16 levels")));
            }
            let head = match slice(self.mem, off, 16) {
                Ok(h) => h,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            };
            if e == 0 && c == 0 {
                if let Err(err) = self.enter(off, head) {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
            let coll = head[0] == ty::MAP_COLLISION || head[0] == ty::SET_COLLISION;
            let (nd, nn, base) = if coll {
                (get_u32(head, 4) as usize, 0, 16)
            } else {
                (get_u16(head, 2).count_ones() as usize, get_u16(head, 4).count_ones() as usize, 8)
            };
            let top = self.stack.last_mut().expect("non-empty");
            if e < nd {
                top.1 += 1;
                let at = off + base + (8 * (nn + ew * e)) as u64;
                return Some(slice(self.mem, at, 8 * ew).map(|b| {
                    let mut out = [0u64; 3];
                    for (k, w) in out.iter_mut().take(ew).enumerate() {
                        *w = get_u64(b, 8 * k);
                    }
                    out
                }));
            }
            if c < nn {
                top.2 += 1;
                let at = off + base + (8 * c) as u64;
                match slice(self.mem, at, 8) {
                    Ok(b) => match Word(get_u64(b, 0)).as_ref() {
                        Some(child) => self.stack.push((child, 0, 0)),
                        None => {
                            self.failed = true;
                            return Some(Err(Corruption::new(off, "hash-trie child is not a reference")));
                        }
                    },
                    Err(err) => {
                        self.failed = true;
                        return Some(Err(err));
                    }
                }
                continue;
            }
            self.stack.pop();
        }
    }
}

/// Builds a trie bottom up from `entries` (hash, entry words), sorted so that entries
/// sharing a slot at each level are adjacent (by nibble-reversed hash) and with no two
/// equal keys. Every node is written once.
pub fn build<S: Store>(s: &mut S, entries: &[(u64, [u64; 3])], map: bool) -> Result<Word, StoreError> {
    if entries.is_empty() {
        return Ok(Word::EMPTY);
    }
    build_level(s, entries, map, 0)
}

fn build_level<S: Store>(
    s: &mut S,
    entries: &[(u64, [u64; 3])],
    map: bool,
    level: u32,
) -> Result<Word, StoreError> {
    if level >= LEVELS {
        let mut n = Node::empty(map, true, entries[0].0);
        for (i, (_, e)) in entries.iter().enumerate() {
            n.insert_entry(i, e)?;
        }
        return n.store(s, None, map, true);
    }
    let mut n = Node::empty(map, false, 0);
    let mut i = 0;
    while i < entries.len() {
        let f = frag(entries[i].0, level);
        let mut j = i + 1;
        while j < entries.len() && frag(entries[j].0, level) == f {
            j += 1;
        }
        if j - i == 1 {
            n.insert_entry(n.nd, &entries[i].1)?;
            n.datamap |= 1 << f;
        } else {
            let child = build_level(s, &entries[i..j], map, level + 1)?;
            n.insert_child(n.nn, child.0);
            n.nodemap |= 1 << f;
        }
        i = j;
    }
    n.store(s, None, map, true)
}
