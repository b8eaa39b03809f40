//! The persistent sequence behind lists: a counted B-tree ("rope"). Leaves hold up to 32
//! item words; inner nodes up to 16 children, each with the number of items under it, so
//! that indexing, inserting and removing anywhere copy one root-to-leaf path (plus a split
//! or a removed child), never the whole list.
//!
//! Layouts (264 bytes each):
//! - leaf:  `[22][0][count u16][0 u32][32 item words]`
//! - inner: `[23][0][count u16][0 u32][16 x (child word, items u64)]`

use super::layout::{get_u16, get_u64, put_u64, slice, ty};
use super::store::{put, Store, StoreError};
use super::word::Word;
use crate::error::Corruption;

/// Items a leaf holds.
pub const LEAF_ITEMS: usize = 32;
/// Children an inner node holds.
pub const FANOUT: usize = 16;
/// Bytes of a rope node.
pub const NODE: usize = 8 + 32 * 8;
/// Deepest rope a read follows (a deeper one is corrupt: 16^12 items would not fit a file).
const MAX_HEIGHT: u8 = 12;

/// A rope's handle, kept in its list's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rope {
    pub root: Word, // EMPTY for the empty list
    pub len: u64,   // items
    pub height: u8, // inner levels above the leaves
}

/// A decoded node.
#[derive(Clone)]
struct Node {
    leaf: bool,
    n: usize,          // items (leaf) or children (inner)
    words: [u64; 33],  // items, or child words; one spare for an insert before a split
    counts: [u64; 33], // inner: items under each child
}

impl Node {
    fn empty(leaf: bool) -> Node {
        Node { leaf, n: 0, words: [0; 33], counts: [0; 33] }
    }

    fn read(mem: &[u8], off: u64, leaf: bool) -> Result<Node, Corruption> {
        let b = slice(mem, off, NODE)?;
        let want = if leaf { ty::ROPE_LEAF } else { ty::ROPE_INNER };
        let n = get_u16(b, 2) as usize;
        // A stored node is never empty: a removal drops a node it empties.
        if b[0] != want || n == 0 || n > if leaf { LEAF_ITEMS } else { FANOUT } {
            return Err(Corruption::new(
                off,
                format!("expected a rope node of type {want}, found {} with {n}", b[0]),
            ));
        }
        let mut node = Node::empty(leaf);
        node.n = n;
        if leaf {
            for i in 0..n {
                node.words[i] = get_u64(b, 8 + 8 * i);
            }
        } else {
            for i in 0..n {
                node.words[i] = get_u64(b, 8 + 16 * i);
                node.counts[i] = get_u64(b, 16 + 16 * i);
            }
        }
        Ok(node)
    }

    fn image(&self) -> [u8; NODE] {
        let mut b = [0u8; NODE];
        b[0] = if self.leaf { ty::ROPE_LEAF } else { ty::ROPE_INNER };
        b[2..4].copy_from_slice(&(self.n as u16).to_le_bytes());
        for i in 0..self.n {
            if self.leaf {
                put_u64(&mut b, 8 + 8 * i, self.words[i]);
            } else {
                put_u64(&mut b, 8 + 16 * i, self.words[i]);
                put_u64(&mut b, 16 + 16 * i, self.counts[i]);
            }
        }
        b
    }

    fn store<S: Store>(&self, s: &mut S, old: Option<u64>, owned: bool) -> Result<Word, StoreError> {
        Ok(Word(put(s, old, &self.image(), owned)?))
    }

    /// Items under this node (at `off`, for the error): the counts come from the file, so
    /// their sum may overflow.
    fn total(&self, off: u64) -> Result<u64, Corruption> {
        if self.leaf {
            return Ok(self.n as u64);
        }
        self.counts[..self.n]
            .iter()
            .try_fold(0u64, |t, &c| t.checked_add(c))
            .ok_or_else(|| Corruption::new(off, "rope counts add up past any length"))
    }

    /// The child holding item `i`, and `i` within it.
    fn locate(&self, i: u64) -> Option<(usize, u64)> {
        let mut rest = i;
        for j in 0..self.n {
            if rest < self.counts[j] {
                return Some((j, rest));
            }
            rest -= self.counts[j];
        }
        None
    }

    fn insert_word(&mut self, at: usize, w: u64, count: u64) {
        self.words.copy_within(at..self.n, at + 1);
        self.counts.copy_within(at..self.n, at + 1);
        self.words[at] = w;
        if !self.leaf {
            self.counts[at] = count;
        }
        self.n += 1;
    }

    fn remove_word(&mut self, at: usize) {
        self.words.copy_within(at + 1..self.n, at);
        if !self.leaf {
            self.counts.copy_within(at + 1..self.n, at);
        }
        self.n -= 1;
    }

    /// Splits a full node in two halves; `self` keeps the first.
    fn split(&mut self) -> Node {
        let half = self.n / 2;
        let mut right = Node::empty(self.leaf);
        right.n = self.n - half;
        right.words[..right.n].copy_from_slice(&self.words[half..self.n]);
        if !self.leaf {
            right.counts[..right.n].copy_from_slice(&self.counts[half..self.n]);
        }
        self.n = half;
        right
    }
}

/// What a change to a subtree left in its place: one node, or two after a split.
enum Changed {
    One(Word, u64),
    Two((Word, u64), (Word, u64)),
    Gone,
}

impl Rope {
    /// The empty list.
    pub fn empty() -> Rope {
        Rope { root: Word::EMPTY, len: 0, height: 0 }
    }

    /// The rope a list's header at `at` describes, refused if the header alone shows it
    /// damaged: deeper than any file could need, more items than the file could hold, or
    /// a root or height that disagrees with the length (an empty list has neither).
    pub fn checked(self, mem: &[u8], at: u64) -> Result<Rope, Corruption> {
        if self.height > MAX_HEIGHT {
            return Err(Corruption::new(
                at,
                format!("rope of height {} is deeper than any file needs", self.height),
            ));
        }
        // Every leaf is a block of its own holding at most LEAF_ITEMS items.
        let most = (mem.len() / NODE) as u64 * LEAF_ITEMS as u64;
        if self.len > most {
            return Err(Corruption::new(at, format!("list of {} items is larger than its file", self.len)));
        }
        if (self.len == 0) != (self.root == Word::EMPTY) || (self.len == 0 && self.height != 0) {
            return Err(Corruption::new(
                at,
                format!("list of {} items with root {:#x} at height {}", self.len, self.root.0, self.height),
            ));
        }
        Ok(self)
    }

    fn node(&self, mem: &[u8], w: Word, level: u8) -> Result<(u64, Node), Corruption> {
        let off = w.as_ref().ok_or_else(|| Corruption::new(w.0, "rope path ends early"))?;
        if self.height > MAX_HEIGHT {
            return Err(Corruption::new(off, "rope deeper than any file could hold"));
        }
        Ok((off, Node::read(mem, off, level == 0)?))
    }

    /// The node at `w` on `level`, whose parent (or, for the root, the list's length) says
    /// it holds `items` items. Checking this on every node a change or a lookup passes
    /// through keeps each index it derives within the node it indexes.
    fn node_holding(&self, mem: &[u8], w: Word, level: u8, items: u64) -> Result<(u64, Node), Corruption> {
        let (off, n) = self.node(mem, w, level)?;
        let total = n.total(off)?;
        if total != items {
            return Err(Corruption::new(
                off,
                format!("rope node holds {total} items, its parent says {items}"),
            ));
        }
        Ok((off, n))
    }

    /// The item at `i`.
    pub fn get(&self, mem: &[u8], i: u64) -> Result<Word, Corruption> {
        if i >= self.len {
            return Err(Corruption::new(self.root.0, format!("list index {i} past its length {}", self.len)));
        }
        let (mut w, mut i, mut items) = (self.root, i, self.len);
        for level in (1..=self.height).rev() {
            let (off, n) = self.node_holding(mem, w, level, items)?;
            let (j, rest) = n.locate(i).ok_or_else(|| Corruption::new(off, "rope counts disagree"))?;
            w = Word(n.words[j]);
            items = n.counts[j];
            i = rest;
        }
        let (off, leaf) = self.node_holding(mem, w, 0, items)?;
        if i >= leaf.n as u64 {
            return Err(Corruption::new(off, "rope counts disagree"));
        }
        Ok(Word(leaf.words[i as usize]))
    }

    /// Calls `f` with every item in order and `node` with every node's offset; checks
    /// that the counts add up. Stops at the first item past the list's length, so that a
    /// damaged rope whose nodes repeat costs no more than a whole one.
    pub fn walk(
        &self,
        mem: &[u8],
        f: &mut dyn FnMut(Word) -> Result<(), Corruption>,
        node: &mut dyn FnMut(u64) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        if self.len == 0 {
            return if self.root == Word::EMPTY {
                Ok(())
            } else {
                Err(Corruption::new(self.root.0, "empty list has a root"))
            };
        }
        let mut seen = 0;
        let n = self.walk_node(mem, self.root, self.height, &mut seen, f, node)?;
        if n != self.len {
            return Err(Corruption::new(
                self.root.0,
                format!("list says {} items, its rope holds {n}", self.len),
            ));
        }
        Ok(())
    }

    fn walk_node(
        &self,
        mem: &[u8],
        w: Word,
        level: u8,
        seen: &mut u64,
        f: &mut dyn FnMut(Word) -> Result<(), Corruption>,
        node: &mut dyn FnMut(u64) -> Result<(), Corruption>,
    ) -> Result<u64, Corruption> {
        let (off, n) = self.node(mem, w, level)?;
        node(off)?;
        if level == 0 {
            // At most `len` + 32: no overflow.
            *seen += n.n as u64;
            if *seen > self.len {
                return Err(Corruption::new(
                    off,
                    format!("rope holds more items than its list's {}", self.len),
                ));
            }
            for &x in &n.words[..n.n] {
                f(Word(x))?;
            }
            return Ok(n.n as u64);
        }
        let mut total = 0;
        for j in 0..n.n {
            let got = self.walk_node(mem, Word(n.words[j]), level - 1, seen, f, node)?;
            if got != n.counts[j] {
                return Err(Corruption::new(off, "rope child count disagrees with its items"));
            }
            // Every item counted here was also counted in `seen`, which stays within `len`.
            total += got;
        }
        Ok(total)
    }

    /// The items in order, one leaf at a time.
    pub fn iter<'m>(&self, mem: &'m [u8]) -> Iter<'m> {
        let stack = if self.len == 0 { vec![] } else { vec![(self.root, self.height, 0usize, self.len)] };
        Iter { mem, rope: *self, stack, leaf: Vec::new(), pos: 0, loaded: 0, failed: false }
    }

    /// Sets the item at `i`.
    pub fn set<S: Store>(&mut self, s: &mut S, i: u64, item: Word, owned: bool) -> Result<(), StoreError> {
        if i >= self.len {
            return Err(Corruption::new(self.root.0, "list index past its length").into());
        }
        self.root = self.set_at(s, self.root, self.height, i, self.len, item, owned)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn set_at<S: Store>(
        &self,
        s: &mut S,
        w: Word,
        level: u8,
        i: u64,
        items: u64,
        item: Word,
        owned: bool,
    ) -> Result<Word, StoreError> {
        let (off, mut n) = self.node_holding(s.mem(), w, level, items)?;
        let owned = owned && !s.is_shared(off)?;
        if level == 0 {
            if i >= n.n as u64 {
                return Err(Corruption::new(off, "rope counts disagree").into());
            }
            n.words[i as usize] = item.0;
        } else {
            let (j, rest) = n.locate(i).ok_or_else(|| Corruption::new(off, "rope counts disagree"))?;
            let child = Word(n.words[j]);
            let nc = self.set_at(s, child, level - 1, rest, n.counts[j], item, owned)?;
            if nc == child {
                return Ok(w);
            }
            n.words[j] = nc.0;
        }
        n.store(s, Some(off), owned)
    }

    /// Inserts `item` before index `i` (`i == len` appends).
    pub fn insert<S: Store>(&mut self, s: &mut S, i: u64, item: Word, owned: bool) -> Result<(), StoreError> {
        if i > self.len {
            return Err(Corruption::new(self.root.0, "list index past its length").into());
        }
        if self.root == Word::EMPTY {
            if self.len != 0 {
                return Err(Corruption::new(0, format!("list of {} items has no rope", self.len)).into());
            }
            let mut leaf = Node::empty(true);
            leaf.insert_word(0, item.0, 0);
            self.root = leaf.store(s, None, true)?;
            self.len = 1;
            self.height = 0;
            return Ok(());
        }
        let len = self
            .len
            .checked_add(1)
            .ok_or_else(|| Corruption::new(self.root.0, "list length past any count"))?;
        match self.insert_at(s, self.root, self.height, i, self.len, item, owned)? {
            Changed::One(w, _) => self.root = w,
            Changed::Two((a, ca), (b, cb)) => {
                let mut root = Node::empty(false);
                root.insert_word(0, a.0, ca);
                root.insert_word(1, b.0, cb);
                self.root = root.store(s, None, true)?;
                self.height += 1;
            }
            Changed::Gone => unreachable!("an insert never empties a subtree"),
        }
        self.len = len;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_at<S: Store>(
        &self,
        s: &mut S,
        w: Word,
        level: u8,
        i: u64,
        items: u64,
        item: Word,
        owned: bool,
    ) -> Result<Changed, StoreError> {
        // `i <= items` holds: the caller checked it against the list's length, and each
        // level below passes an index within (or just past) the child's count.
        let (off, mut n) = self.node_holding(s.mem(), w, level, items)?;
        let owned = owned && !s.is_shared(off)?;
        if level == 0 {
            if i > n.n as u64 {
                return Err(Corruption::new(off, "rope counts disagree").into());
            }
            n.insert_word(i as usize, item.0, 0);
            return self.finish(s, off, n, owned);
        }
        // Find the child; an index at the very end goes to the last child (a stored node
        // is never empty).
        let (j, rest) = match n.locate(i) {
            Some(x) => x,
            None => (n.n - 1, n.counts[n.n - 1]),
        };
        match self.insert_at(s, Word(n.words[j]), level - 1, rest, n.counts[j], item, owned)? {
            Changed::One(c, cnt) => {
                n.words[j] = c.0;
                n.counts[j] = cnt;
            }
            Changed::Two((a, ca), (b, cb)) => {
                n.words[j] = a.0;
                n.counts[j] = ca;
                n.insert_word(j + 1, b.0, cb);
            }
            Changed::Gone => unreachable!("an insert never empties a subtree"),
        }
        self.finish(s, off, n, owned)
    }

    /// Stores a changed node, splitting it if it overflowed.
    fn finish<S: Store>(&self, s: &mut S, off: u64, mut n: Node, owned: bool) -> Result<Changed, StoreError> {
        let cap = if n.leaf { LEAF_ITEMS } else { FANOUT };
        if n.n <= cap {
            let total = n.total(off)?;
            return Ok(Changed::One(n.store(s, Some(off), owned)?, total));
        }
        let right = n.split();
        let (ca, cb) = (n.total(off)?, right.total(off)?);
        let a = n.store(s, Some(off), owned)?;
        let b = right.store(s, None, true)?;
        Ok(Changed::Two((a, ca), (b, cb)))
    }

    /// Removes and returns the item at `i`.
    pub fn remove<S: Store>(&mut self, s: &mut S, i: u64, owned: bool) -> Result<Word, StoreError> {
        if i >= self.len {
            return Err(Corruption::new(self.root.0, "list index past its length").into());
        }
        let mut removed = Word::EMPTY;
        match self.remove_at(s, self.root, self.height, i, self.len, owned, &mut removed)? {
            Changed::One(w, _) => self.root = w,
            Changed::Gone => self.root = Word::EMPTY,
            Changed::Two(..) => unreachable!("a removal never splits"),
        }
        self.len -= 1;
        // A root with one child gives way to the child.
        while self.height > 0 {
            let (off, n) = self.node(s.mem(), self.root, self.height)?;
            if n.n != 1 {
                break;
            }
            s.retire(off, owned)?;
            self.root = Word(n.words[0]);
            self.height -= 1;
        }
        if self.len == 0 {
            if let Some(off) = self.root.as_ref() {
                s.retire(off, owned)?;
            }
            self.root = Word::EMPTY;
            self.height = 0;
        }
        Ok(removed)
    }

    #[allow(clippy::too_many_arguments)]
    fn remove_at<S: Store>(
        &self,
        s: &mut S,
        w: Word,
        level: u8,
        i: u64,
        items: u64,
        owned: bool,
        removed: &mut Word,
    ) -> Result<Changed, StoreError> {
        let (off, mut n) = self.node_holding(s.mem(), w, level, items)?;
        let owned = owned && !s.is_shared(off)?;
        if level == 0 {
            if i >= n.n as u64 {
                return Err(Corruption::new(off, "rope counts disagree").into());
            }
            *removed = Word(n.words[i as usize]);
            n.remove_word(i as usize);
        } else {
            let (j, rest) = n.locate(i).ok_or_else(|| Corruption::new(off, "rope counts disagree"))?;
            match self.remove_at(s, Word(n.words[j]), level - 1, rest, n.counts[j], owned, removed)? {
                Changed::One(c, cnt) => {
                    n.words[j] = c.0;
                    n.counts[j] = cnt;
                }
                Changed::Gone => n.remove_word(j),
                Changed::Two(..) => unreachable!("a removal never splits"),
            }
        }
        if n.n == 0 {
            s.retire(off, owned)?;
            return Ok(Changed::Gone);
        }
        let total = n.total(off)?;
        Ok(Changed::One(n.store(s, Some(off), owned)?, total))
    }

    /// Builds a rope of `items` bottom up, every node written once.
    pub fn build<S: Store>(s: &mut S, items: &[u64]) -> Result<Rope, StoreError> {
        let mut rope = Rope::empty();
        rope.len = items.len() as u64;
        if items.is_empty() {
            return Ok(rope);
        }
        let mut level: Vec<(u64, u64)> = Vec::with_capacity(items.len().div_ceil(LEAF_ITEMS));
        for chunk in items.chunks(LEAF_ITEMS) {
            let mut leaf = Node::empty(true);
            leaf.words[..chunk.len()].copy_from_slice(chunk);
            leaf.n = chunk.len();
            level.push((leaf.store(s, None, true)?.0, chunk.len() as u64));
        }
        while level.len() > 1 {
            rope.height += 1;
            let mut up = Vec::with_capacity(level.len().div_ceil(FANOUT));
            for chunk in level.chunks(FANOUT) {
                let mut inner = Node::empty(false);
                for (k, &(w, c)) in chunk.iter().enumerate() {
                    inner.words[k] = w;
                    inner.counts[k] = c;
                }
                inner.n = chunk.len();
                up.push((inner.store(s, None, true)?.0, inner.total(0)?));
            }
            level = up;
        }
        rope.root = Word(level[0].0);
        Ok(rope)
    }
}

/// An iterator over a rope's items. It yields exactly the list's length in items or ends
/// with an error: a damaged rope whose nodes repeat cannot make it run longer.
pub struct Iter<'m> {
    mem: &'m [u8],
    rope: Rope,
    stack: Vec<(Word, u8, usize, u64)>, // (node, level, next child, items its parent says)
    leaf: Vec<u64>,                     // the current leaf's items
    pos: usize,                         // next item of `leaf`
    loaded: u64,                        // items of the leaves read so far
    failed: bool,
}

impl Iter<'_> {
    fn fail(&mut self, e: Corruption) -> Option<Result<Word, Corruption>> {
        self.failed = true;
        Some(Err(e))
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<Word, Corruption>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if self.pos < self.leaf.len() {
                self.pos += 1;
                return Some(Ok(Word(self.leaf[self.pos - 1])));
            }
            let Some((w, level, next, items)) = self.stack.pop() else {
                if self.loaded != self.rope.len {
                    let what = format!("list says {} items, its rope holds {}", self.rope.len, self.loaded);
                    return self.fail(Corruption::new(self.rope.root.0, what));
                }
                return None;
            };
            // A node is checked against its parent's count when first entered.
            let node = if next == 0 {
                self.rope.node_holding(self.mem, w, level, items)
            } else {
                self.rope.node(self.mem, w, level)
            };
            match node {
                Err(e) => return self.fail(e),
                Ok((off, n)) if level == 0 => {
                    // At most `len` + 32: no overflow.
                    self.loaded += n.n as u64;
                    if self.loaded > self.rope.len {
                        let what = format!("rope holds more items than its list's {}", self.rope.len);
                        return self.fail(Corruption::new(off, what));
                    }
                    self.leaf = n.words[..n.n].to_vec();
                    self.pos = 0;
                }
                Ok((_, n)) => {
                    if next < n.n {
                        self.stack.push((w, level, next + 1, items));
                        if self.stack.len() > MAX_HEIGHT as usize + 1 {
                            return self.fail(Corruption::new(w.0, "rope deeper than any file could hold"));
                        }
                        self.stack.push((Word(n.words[next]), level - 1, 0, n.counts[next]));
                    }
                }
            }
        }
    }
}
