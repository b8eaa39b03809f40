//! [`OffsetSet`]: a set of block offsets, for the running transaction's fresh blocks and
//! for walks that must visit each object once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A set of block offsets (multiples of 16), as a bitmap per 16 KiB granule: the granule's
/// bitmap is found among the last few used (a transaction allocates from a handful of
/// pools at a time) or by one hash lookup, and a bit says the rest.
#[derive(Debug, Clone)]
pub struct OffsetSet {
    index: HashMap<u64, u32, BuildHasherDefault<OffsetHasher>>, // granule -> its bitmap in `words`
    words: Vec<[u64; 16]>,                                      // one bitmap per granule
    hot: [(u64, u32); HOT],                                     // recently used (granule, bitmap)
    next_hot: usize,                                            // the `hot` entry to replace next
    len: usize,
}

/// Granules remembered as recently used.
const HOT: usize = 4;
/// No granule (offsets are below 2^64, so granules are below 2^50).
const NO_GRANULE: u64 = u64::MAX;

impl Default for OffsetSet {
    fn default() -> OffsetSet {
        OffsetSet {
            index: HashMap::default(),
            words: Vec::new(),
            hot: [(NO_GRANULE, 0); HOT],
            next_hot: 0,
            len: 0,
        }
    }
}

/// Hashes block offsets and granule numbers, for tables keyed by them: a folded multiply
/// (the high and low halves of a 128-bit product), so that keys with a regular stride
/// (offsets are multiples of 16) still spread over the low bits a table indexes by.
#[derive(Default)]
pub struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        let m = (v as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = (m as u64) ^ (m >> 64) as u64;
    }
}

impl OffsetSet {
    #[inline]
    fn split(off: u64) -> (u64, usize, u64) {
        let bit = (off & 16383) >> 4;
        (off >> 14, (bit / 64) as usize, 1 << (bit % 64))
    }

    /// The bitmap of granule `g`, if it has one.
    #[inline]
    fn find(&self, g: u64) -> Option<usize> {
        match self.hot.iter().find(|h| h.0 == g) {
            Some(&(_, i)) => Some(i as usize),
            None => self.index.get(&g).map(|&i| i as usize),
        }
    }

    /// The bitmap of granule `g`, made if it has none, and remembered as recently used.
    #[inline]
    fn bitmap(&mut self, g: u64) -> usize {
        if let Some(&(_, i)) = self.hot.iter().find(|h| h.0 == g) {
            return i as usize;
        }
        let i = match self.index.get(&g) {
            Some(&i) => i,
            None => {
                let i = self.words.len() as u32;
                self.words.push([0; 16]);
                self.index.insert(g, i);
                i
            }
        };
        self.hot[self.next_hot] = (g, i);
        self.next_hot = (self.next_hot + 1) % HOT;
        i as usize
    }

    /// Adds `off`; returns whether it was new.
    pub fn insert(&mut self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        let i = self.bitmap(g);
        let words = &mut self.words[i];
        let new = words[w] & m == 0;
        words[w] |= m;
        self.len += new as usize;
        new
    }

    /// Whether `off` is in the set.
    #[inline]
    pub fn contains(&self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        self.find(g).is_some_and(|i| self.words[i][w] & m != 0)
    }

    /// Removes `off`; returns whether it was there.
    pub fn remove(&mut self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        match self.find(g) {
            Some(i) if self.words[i][w] & m != 0 => {
                self.words[i][w] &= !m;
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        *self = OffsetSet::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Inserts, removes and lookups over a few granules (where the recently-used cache
    /// hits) and many (where it misses and evicts) agree with a `HashSet`.
    #[test]
    fn agrees_with_a_hash_set() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for granules in [1u64, 3, 5, 40, 5000] {
            let (mut set, mut model) = (OffsetSet::default(), HashSet::new());
            for _ in 0..20_000 {
                let off = (next() % granules) * 16384 + (next() % 1024) * 16;
                match next() % 3 {
                    0 => assert_eq!(set.insert(off), model.insert(off), "insert {off}"),
                    1 => assert_eq!(set.remove(off), model.remove(&off), "remove {off}"),
                    _ => assert_eq!(set.contains(off), model.contains(&off), "contains {off}"),
                }
                assert_eq!(set.len(), model.len());
            }
            set.clear();
            assert!(set.is_empty() && model.iter().all(|&o| !set.contains(o)));
        }
    }
}
