//! Dict keys and set elements: Python's hashing and equality rules with a keyed hash that
//! is the same in every process and every version (the seed is in the file header).
//!
//! As in Python, `1`, `1.0` and `True` are one key (numbers compare by value), `"a"` and
//! `b"a"` are two, tuples compare element by element and frozensets as sets. Unlike
//! Python, every NaN is equal to every other NaN as a key (a file has no object identity
//! to tell two NaNs apart).

use super::layout::{get_u32, slice, ty};
use super::word::{Imm, Word};
use crate::error::Corruption;
use std::borrow::Cow;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A hashable value: what may be a dict key or a set element.
#[derive(Debug, Clone)]
pub enum Key<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`: two's complement, little-endian.
    BigInt(Cow<'a, [u8]>),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Tuple(Vec<Key<'a>>),
    FrozenSet(Vec<Key<'a>>),
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(s: &'a str) -> Key<'a> {
        Key::Str(Cow::Borrowed(s))
    }
}
impl From<String> for Key<'static> {
    fn from(s: String) -> Key<'static> {
        Key::Str(Cow::Owned(s))
    }
}
impl From<i64> for Key<'static> {
    fn from(v: i64) -> Key<'static> {
        Key::Int(v)
    }
}
impl From<bool> for Key<'static> {
    fn from(v: bool) -> Key<'static> {
        Key::Bool(v)
    }
}
impl From<f64> for Key<'static> {
    fn from(v: f64) -> Key<'static> {
        Key::Float(v)
    }
}

/// A number in canonical form: integral values (bools, integral floats) are integers.
#[derive(Debug, Clone, PartialEq)]
enum Num {
    Int(i64),
    Big(Vec<u8>),
    Float(u64), // bits of a non-integral or non-finite float; every NaN has one canonical form
}

/// Minimal two's complement little-endian bytes of `v`.
fn int_bytes(v: i128) -> Vec<u8> {
    minimal_int_bytes(&v.to_le_bytes())
}

/// Normalizes two's complement bytes to their minimal form.
pub fn minimal_int_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = if b.is_empty() { vec![0] } else { b.to_vec() };
    while v.len() > 1 {
        let last = v[v.len() - 1];
        let prev_sign = v[v.len() - 2] & 0x80;
        if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
            v.pop();
        } else {
            break;
        }
    }
    v
}

/// The value of two's complement bytes, if it fits an `i64`.
pub fn bytes_to_i64(b: &[u8]) -> Option<i64> {
    let m = minimal_int_bytes(b);
    if m.len() > 8 {
        return None;
    }
    let fill = if m[m.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[..m.len()].copy_from_slice(&m);
    Some(i64::from_le_bytes(buf))
}

/// An integral finite float as an integer (two's complement bytes when beyond `i64`).
fn integral_float(f: f64) -> Option<Num> {
    if !f.is_finite() || f.fract() != 0.0 {
        return None;
    }
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if (-TWO63..TWO63).contains(&f) {
        return Some(Num::Int(f as i64));
    }
    // |f| >= 2^63: f = m * 2^e exactly, with m a 53-bit integer.
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mant = (bits & ((1 << 52) - 1)) | (1 << 52);
    let mut mag = vec![0u8; (exp as usize / 8) + 9];
    let (byte, bit) = ((exp / 8) as usize, (exp % 8) as u32);
    let shifted = (mant as u128) << bit;
    for (i, b) in shifted.to_le_bytes().iter().enumerate() {
        if byte + i < mag.len() {
            mag[byte + i] = *b;
        }
    }
    mag.push(0); // room for the sign bit
    if f < 0.0 {
        // Two's complement negation of the magnitude.
        let mut carry = 1u16;
        for b in mag.iter_mut() {
            let v = (!*b) as u16 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
    }
    Some(Num::Big(minimal_int_bytes(&mag)))
}

fn big_num(b: &[u8]) -> Num {
    match bytes_to_i64(b) {
        Some(v) => Num::Int(v),
        None => Num::Big(minimal_int_bytes(b)),
    }
}

fn float_num(f: f64) -> Num {
    integral_float(f).unwrap_or(Num::Float(if f.is_nan() { f64::NAN.to_bits() } else { f.to_bits() }))
}

const D_NONE: u64 = 0x6e6f_6e65;
const D_NUM: u64 = 0x6e75_6d62;
const D_FLOAT: u64 = 0x666c_6f61;
const D_STR: u64 = 0x7374_7221;
const D_BYTES: u64 = 0x6279_7465;
const D_TUPLE: u64 = 0x7475_706c;
const D_FROZEN: u64 = 0x6672_6f7a;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_num(n: &Num, seed: u64) -> u64 {
    match n {
        Num::Int(v) => xxh3_64_with_seed(&int_bytes(*v as i128), seed ^ D_NUM),
        Num::Big(b) => xxh3_64_with_seed(b, seed ^ D_NUM),
        Num::Float(bits) => xxh3_64_with_seed(&bits.to_le_bytes(), seed ^ D_FLOAT),
    }
}

/// Hash of a str's UTF-8 bytes.
#[inline]
pub fn hash_str(s: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(s, seed ^ D_STR)
}

/// Combines element hashes of a frozenset, in any order.
pub fn combine_frozen(hashes: impl Iterator<Item = u64>, seed: u64) -> u64 {
    mix(hashes.fold(seed ^ D_FROZEN, |acc, h| acc.wrapping_add(mix(h))))
}

impl Key<'_> {
    fn num(&self) -> Option<Num> {
        match self {
            Key::Bool(b) => Some(Num::Int(*b as i64)),
            Key::Int(v) => Some(Num::Int(*v)),
            Key::BigInt(b) => Some(big_num(b)),
            Key::Float(f) => Some(float_num(*f)),
            _ => None,
        }
    }

    /// The keyed hash: equal keys hash equally, in every process.
    pub fn hash(&self, seed: u64) -> u64 {
        if let Some(n) = self.num() {
            return hash_num(&n, seed);
        }
        match self {
            Key::None => xxh3_64_with_seed(&[], seed ^ D_NONE),
            Key::Str(s) => hash_str(s.as_bytes(), seed),
            Key::Bytes(b) => xxh3_64_with_seed(b, seed ^ D_BYTES),
            Key::Tuple(items) => {
                let hs: Vec<u8> = items.iter().flat_map(|k| k.hash(seed).to_le_bytes()).collect();
                xxh3_64_with_seed(&hs, seed ^ D_TUPLE)
            }
            Key::FrozenSet(items) => {
                let mut uniq: Vec<&Key> = Vec::new();
                for k in items {
                    if !uniq.iter().any(|u| u.equals(k)) {
                        uniq.push(k);
                    }
                }
                combine_frozen(uniq.iter().map(|k| k.hash(seed)), seed)
            }
            _ => unreachable!("numbers handled above"),
        }
    }

    /// Python's `==` between two keys.
    pub fn equals(&self, other: &Key) -> bool {
        if let (Some(a), Some(b)) = (self.num(), other.num()) {
            return a == b;
        }
        match (self, other) {
            (Key::None, Key::None) => true,
            (Key::Str(a), Key::Str(b)) => a == b,
            (Key::Bytes(a), Key::Bytes(b)) => a == b,
            (Key::Tuple(a), Key::Tuple(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y)),
            (Key::FrozenSet(a), Key::FrozenSet(b)) => {
                a.iter().all(|x| b.iter().any(|y| x.equals(y)))
                    && b.iter().all(|y| a.iter().any(|x| x.equals(y)))
            }
            _ => false,
        }
    }

    /// The Python type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Key::None => "NoneType",
            Key::Bool(_) => "bool",
            Key::Int(_) | Key::BigInt(_) => "int",
            Key::Float(_) => "float",
            Key::Str(_) => "str",
            Key::Bytes(_) => "bytes",
            Key::Tuple(_) => "tuple",
            Key::FrozenSet(_) => "frozenset",
        }
    }

    /// A copy that owns its data.
    pub fn into_owned(self) -> Key<'static> {
        match self {
            Key::None => Key::None,
            Key::Bool(b) => Key::Bool(b),
            Key::Int(v) => Key::Int(v),
            Key::BigInt(b) => Key::BigInt(Cow::Owned(b.into_owned())),
            Key::Float(f) => Key::Float(f),
            Key::Str(s) => Key::Str(Cow::Owned(s.into_owned())),
            Key::Bytes(b) => Key::Bytes(Cow::Owned(b.into_owned())),
            Key::Tuple(v) => Key::Tuple(v.into_iter().map(Key::into_owned).collect()),
            Key::FrozenSet(v) => Key::FrozenSet(v.into_iter().map(Key::into_owned).collect()),
        }
    }
}

/// The bytes of the object at `off` if it is of kind `want` (long-form type), without
/// validating them (equality needs only the bytes).
fn stored_bytes(mem: &[u8], off: u64, want: u8) -> Result<Option<&[u8]>, Corruption> {
    Ok(super::layout::blob_at(mem, off)?.and_then(|(t, b)| (t == want).then_some(b)))
}

/// Whether the stored key `w` equals `probe`. The common cases (str, int) compare without
/// decoding the stored key.
pub fn eq_stored(mem: &[u8], w: Word, probe: &Key) -> Result<bool, Corruption> {
    match (w.decode(), probe) {
        (Imm::Str(b, n), Key::Str(s)) => Ok(&b[..n as usize] == s.as_bytes()),
        (Imm::Ref(off), Key::Str(s)) => Ok(stored_bytes(mem, off, ty::STR)? == Some(s.as_bytes())),
        (Imm::Int(a), Key::Int(b)) => Ok(a == *b),
        _ => Ok(decode_key(mem, w)?.equals(probe)),
    }
}

/// Deepest nesting of tuples and frozensets in a key that a read accepts; anything deeper
/// in a file is taken for a reference cycle, which only corruption can make.
pub const MAX_KEY_DEPTH: usize = 256;

/// Decodes a stored key.
pub fn decode_key(mem: &[u8], w: Word) -> Result<Key<'_>, Corruption> {
    decode_key_at(mem, w, 0)
}

fn decode_key_at(mem: &[u8], w: Word, depth: usize) -> Result<Key<'_>, Corruption> {
    if depth > MAX_KEY_DEPTH {
        return Err(Corruption::new(w.0, "key nested too deeply (a reference cycle?)"));
    }
    let bad = |what: &str| Corruption::new(w.0, format!("a key slot holds {what}"));
    Ok(match w.decode() {
        Imm::None => Key::None,
        Imm::Bool(b) => Key::Bool(b),
        Imm::Int(v) => Key::Int(v),
        Imm::Float(f) => Key::Float(f),
        Imm::Str(b, n) => Key::Str(Cow::Owned(
            std::str::from_utf8(&b[..n as usize]).map_err(|_| bad("invalid UTF-8"))?.to_string(),
        )),
        Imm::Bytes(b, n) => Key::Bytes(Cow::Owned(b[..n as usize].to_vec())),
        Imm::Ref(off) => {
            if let Some((t, b)) = super::layout::blob_at(mem, off)? {
                return Ok(match t {
                    ty::STR => Key::Str(Cow::Borrowed(
                        std::str::from_utf8(b).map_err(|_| Corruption::new(off, "str is not UTF-8"))?,
                    )),
                    ty::BYTES => Key::Bytes(Cow::Borrowed(b)),
                    _ => match big_num(b) {
                        Num::Int(v) => Key::Int(v),
                        _ => Key::BigInt(Cow::Borrowed(b)),
                    },
                });
            }
            let head = slice(mem, off, 8)?;
            match head[0] {
                ty::FLOAT => Key::Float(f64::from_bits(super::layout::get_u64(slice(mem, off + 8, 8)?, 0))),
                ty::TUPLE => {
                    let n = get_u32(head, 4) as u64;
                    let mut items = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let iw = Word(super::layout::get_u64(slice(mem, off + 8 + 8 * i, 8)?, 0));
                        items.push(decode_key_at(mem, iw, depth + 1)?);
                    }
                    Key::Tuple(items)
                }
                ty::FROZENSET => {
                    let mut items = Vec::new();
                    super::champ::for_each_entry(mem, super::set_root(mem, off)?, false, &mut |e| {
                        items.push(decode_key_at(mem, Word(e[0]), depth + 1)?);
                        Ok(())
                    })?;
                    Key::FrozenSet(items)
                }
                t => return Err(Corruption::new(off, format!("object of type {t} used as a key"))),
            }
        }
        Imm::Empty => return Err(bad("nothing")),
        Imm::Invalid => return Err(bad("an invalid word")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_equalities_hash_alike() {
        let seed = 99;
        let one = [Key::Int(1), Key::Float(1.0), Key::Bool(true), Key::BigInt(Cow::Owned(vec![1, 0, 0]))];
        for a in &one {
            for b in &one {
                assert!(a.equals(b), "{a:?} == {b:?}");
                assert_eq!(a.hash(seed), b.hash(seed));
            }
        }
        assert!(Key::Float(-0.0).equals(&Key::Int(0)));
        assert_eq!(Key::Float(-0.0).hash(seed), Key::Int(0).hash(seed));
        assert!(!Key::from("a").equals(&Key::Bytes(Cow::Borrowed(b"a"))));
        assert!(!Key::Int(1).equals(&Key::from("1")));
        assert!(!Key::Float(1.5).equals(&Key::Int(1)));
        let big = 2f64.powi(80);
        let mut bytes = vec![0u8; 10];
        bytes.push(1);
        bytes.push(0);
        assert!(Key::Float(big).equals(&Key::BigInt(Cow::Owned(bytes.clone()))));
        assert_eq!(Key::Float(big).hash(seed), Key::BigInt(Cow::Owned(bytes)).hash(seed));
        assert!(Key::Float(-big).equals(&Key::BigInt(Cow::Owned(minimal_int_bytes(&{
            let mut v = vec![0u8; 10];
            v.push(0xff);
            v
        })))));
        let t1 = Key::Tuple(vec![Key::Int(1), Key::from("x")]);
        let t2 = Key::Tuple(vec![Key::Float(1.0), Key::from("x")]);
        assert!(t1.equals(&t2));
        assert_eq!(t1.hash(seed), t2.hash(seed));
        let f1 = Key::FrozenSet(vec![Key::Int(1), Key::Int(2)]);
        let f2 = Key::FrozenSet(vec![Key::Int(2), Key::Int(1), Key::Bool(true)]);
        assert!(f1.equals(&f2));
        assert_eq!(f1.hash(seed), f2.hash(seed));
        assert!(Key::Float(f64::NAN).equals(&Key::Float(-f64::NAN)));
        // The seed changes every hash.
        assert_ne!(Key::from("k").hash(1), Key::from("k").hash(2));
    }

    #[test]
    fn hashes_are_stable_across_versions() {
        // Pinned values: a change here makes every existing file unreadable by lookup, so
        // it needs a new format version.
        assert_eq!(Key::from("eterna").hash(7), 0x064a_5f5f_5176_1005);
        assert_eq!(Key::Int(5).hash(7), 0xebfd_0b3a_e8a2_1b14);
        assert_eq!(Key::Float(2.5).hash(7), 0x72a9_1541_1aed_0084);
        assert_eq!(Key::None.hash(7), 0xa8f8_e675_90b5_fc3c);
        assert_eq!(Key::Tuple(vec![Key::Int(1), Key::from("x")]).hash(7), 0xd198_a28a_e064_c675);
    }
}
