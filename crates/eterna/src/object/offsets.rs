//! [`OffsetSet`]: a set of block offsets, for the running transaction's fresh blocks and
//! for walks that must visit each object once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A set of block offsets (multiples of 16), as a bitmap per 16 KiB granule: one hash
/// lookup finds the granule, a bit says the rest. Dense where a transaction allocates.
#[derive(Debug, Default, Clone)]
pub struct OffsetSet {
    granules: HashMap<u64, Box<[u64; 16]>, BuildHasherDefault<OffsetHasher>>,
    len: usize,
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

    /// Adds `off`; returns whether it was new.
    pub fn insert(&mut self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        let words = self.granules.entry(g).or_insert_with(|| Box::new([0; 16]));
        let new = words[w] & m == 0;
        words[w] |= m;
        self.len += new as usize;
        new
    }

    /// Whether `off` is in the set.
    #[inline]
    pub fn contains(&self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        self.granules.get(&g).is_some_and(|words| words[w] & m != 0)
    }

    /// Removes `off`; returns whether it was there.
    pub fn remove(&mut self, off: u64) -> bool {
        let (g, w, m) = Self::split(off);
        match self.granules.get_mut(&g) {
            Some(words) if words[w] & m != 0 => {
                words[w] &= !m;
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
        self.granules.clear();
        self.len = 0;
    }
}
