//! Heap objects: their type tags, byte layouts and sizes. Every object starts at a
//! 16-aligned offset with a one-byte type, and its allocation size follows from its
//! header alone, so that a walker (the checker, crash recovery) can account for every
//! block without any other record.

use crate::error::Corruption;

/// Object types (the first byte of every heap object).
pub mod ty {
    pub const STR: u8 = 1; // [ty][pad 3][len u32][utf-8 bytes]
    pub const BYTES: u8 = 2; // [ty][pad 3][len u32][bytes]
    pub const BIGINT: u8 = 3; // [ty][pad 3][len u32][two's complement, little-endian]
    pub const FLOAT: u8 = 4; // [ty][pad 7][f64]
    pub const TUPLE: u8 = 5; // [ty][pad 3][n u32][n words]
    pub const RECORD: u8 = 6; // [ty][pad 3][n u32][type name][field names tuple][n words]
    pub const DICT: u8 = 7; // [ty][order depth][pad 6][len][map root][order root][order count]
    pub const LIST: u8 = 8; // [ty][height][pad 6][len][root]: a counted B-tree
    pub const SET: u8 = 9; // [ty][pad 7][len][root][hash, frozen only]
    pub const FROZENSET: u8 = 10; // as SET
    pub const STR_SHORT: u8 = 11; // [ty][len u8][utf-8 bytes]: a str of at most 255 bytes
    pub const BYTES_SHORT: u8 = 12; // [ty][len u8][bytes]
    pub const MAP_NODE: u8 = 16; // [ty][pad][datamap u16][nodemap u16][pad 2][entries 3 words][children]
    pub const SET_NODE: u8 = 17; // [ty][pad][datamap u16][nodemap u16][pad 2][entries 1 word][children]
    pub const MAP_COLLISION: u8 = 18; // [ty][pad 3][n u32][hash u64][n entries of 3 words]
    pub const SET_COLLISION: u8 = 19; // [ty][pad 3][n u32][hash u64][n entries of 1 word]
    pub const VEC_LEAF: u8 = 20; // [ty][width][pad 6][32 words]
    pub const VEC_INNER: u8 = 21; // [ty][pad 7][32 child words]
    pub const ROPE_LEAF: u8 = 22; // [ty][0][count u16][0 u32][32 item words]
    pub const ROPE_INNER: u8 = 23; // [ty][0][count u16][0 u32][16 x (child word, items u64)]
}

/// Bytes of a vector node (leaf or inner): a header word and 32 slots.
pub const VEC_NODE: usize = 8 + 32 * 8;
/// Slots of a vector node.
pub const VEC_SLOTS: u64 = 32;

// Container headers.
pub const DICT_LEN: usize = 8; // u64 live entries
pub const DICT_MAP: usize = 16; // word: root of the hash trie
pub const DICT_ORDER: usize = 24; // word: root of the order vector
pub const DICT_COUNT: usize = 32; // u64: entries ever appended to the order vector
pub const DICT_SIZE: usize = 40;
pub const LIST_LEN: usize = 8;
pub const LIST_ROOT: usize = 16;
pub const LIST_SIZE: usize = 24;
pub const SET_LEN: usize = 8;
pub const SET_ROOT: usize = 16;
pub const SET_HASH: usize = 24;
pub const SET_SIZE: usize = 32;

/// Words per entry in a hash-trie node: key, value, order index for maps; key for sets.
pub const fn entry_words(map: bool) -> usize {
    if map {
        3
    } else {
        1
    }
}

/// Reads a little-endian u64 at `at` of `b`.
#[inline]
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
/// Writes a little-endian u64 at `at` of `b`.
#[inline]
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
/// Reads a little-endian u32 at `at` of `b`.
#[inline]
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
/// Reads a little-endian u16 at `at` of `b`.
#[inline]
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// `len` bytes at `off` of the mapped file, or a corruption error naming what was read.
#[inline]
pub fn slice(mem: &[u8], off: u64, len: usize) -> Result<&[u8], Corruption> {
    let start = usize::try_from(off).map_err(|_| Corruption::new(off, "offset past the address space"))?;
    start
        .checked_add(len)
        .and_then(|end| mem.get(start..end))
        .ok_or_else(|| Corruption::new(off, format!("object of {len} bytes past the end of the file")))
}

/// The allocation size of the object at `off`, from its header; checks that the whole
/// object lies inside the file.
pub fn object_size(mem: &[u8], off: u64) -> Result<usize, Corruption> {
    if off == 0 || off % 16 != 0 {
        return Err(Corruption::new(off, "reference is not 16-aligned"));
    }
    let head = slice(mem, off, 8)?;
    let size = match head[0] {
        ty::STR | ty::BYTES | ty::BIGINT => 8 + get_u32(head, 4) as usize,
        ty::STR_SHORT | ty::BYTES_SHORT => 2 + head[1] as usize,
        ty::FLOAT => 16,
        ty::TUPLE => 8 + 8 * get_u32(head, 4) as usize,
        ty::RECORD => 24 + 8 * get_u32(head, 4) as usize,
        ty::DICT => DICT_SIZE,
        ty::LIST => LIST_SIZE,
        ty::SET | ty::FROZENSET => SET_SIZE,
        t @ (ty::MAP_NODE | ty::SET_NODE) => {
            let data = get_u16(head, 2).count_ones() as usize;
            let nodes = get_u16(head, 4).count_ones() as usize;
            8 + 8 * (data * entry_words(t == ty::MAP_NODE) + nodes)
        }
        t @ (ty::MAP_COLLISION | ty::SET_COLLISION) => {
            16 + 8 * entry_words(t == ty::MAP_COLLISION) * get_u32(head, 4) as usize
        }
        ty::VEC_LEAF | ty::VEC_INNER => VEC_NODE,
        ty::ROPE_LEAF | ty::ROPE_INNER => super::rope::NODE,
        t => return Err(Corruption::new(off, format!("unknown object type {t}"))),
    };
    slice(mem, off, size)?;
    Ok(size)
}

/// The payload of the str, bytes or big int object at `off`, with its type in the long
/// form (`STR`, `BYTES`, `BIGINT`) whichever header it has; `None` for other objects.
#[inline]
pub fn blob_at(mem: &[u8], off: u64) -> Result<Option<(u8, &[u8])>, Corruption> {
    let head = slice(mem, off, 2)?;
    Ok(match head[0] {
        ty::STR_SHORT => Some((ty::STR, slice(mem, off + 2, head[1] as usize)?)),
        ty::BYTES_SHORT => Some((ty::BYTES, slice(mem, off + 2, head[1] as usize)?)),
        t @ (ty::STR | ty::BYTES | ty::BIGINT) => {
            let n = get_u32(slice(mem, off, 8)?, 4) as usize;
            Some((t, slice(mem, off + 8, n)?))
        }
        _ => None,
    })
}
