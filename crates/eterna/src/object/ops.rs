//! Changes to one container: set, delete, splice, add. Each returns the container's new
//! word (the same word when the container was created in this transaction and changed in
//! place) and what it replaced, for the caller to release.

use super::build::{build, dict_image, list_image, set_image, Input, InputError};
use super::champ;
use super::key::Key;
use super::layout::*;
use super::store::{put, Store, StoreError};
use super::value::{dict_order, header_word, list_rope};
use super::vector::Vector;
use super::word::{Imm, Word};
use crate::error::Corruption;
use std::fmt;

/// Why a container operation failed.
#[derive(Debug)]
pub enum ContainerError {
    /// The key, index or field is not there.
    NotFound,
    /// The value is not a container of the kind the operation needs.
    WrongType { found: &'static str, wanted: &'static str },
    /// The key is not of the kind the container needs (a list index that is not an int).
    KeyType { found: &'static str, wanted: &'static str },
    /// A dict key or set element that cannot be hashed.
    Unhashable(&'static str),
    /// A list index past the end.
    IndexOutOfRange { index: i64, len: u64 },
    /// Building the stored value failed.
    Input(InputError),
    /// The heap failed underneath.
    Store(StoreError),
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::NotFound => write!(f, "not found"),
            ContainerError::WrongType { found, wanted } => write!(f, "{found} is not a {wanted}"),
            ContainerError::KeyType { found, wanted } => write!(f, "key of type {found} is not a {wanted}"),
            ContainerError::Unhashable(t) => write!(f, "unhashable type: '{t}'"),
            ContainerError::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for length {len}")
            }
            ContainerError::Input(e) => e.fmt(f),
            ContainerError::Store(e) => write!(f, "{e:?}"),
        }
    }
}

impl From<StoreError> for ContainerError {
    fn from(e: StoreError) -> Self {
        ContainerError::Store(e)
    }
}
impl From<Corruption> for ContainerError {
    fn from(c: Corruption) -> Self {
        ContainerError::Store(StoreError::Corrupt(c))
    }
}
impl From<InputError> for ContainerError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Store(s) => ContainerError::Store(s),
            e => ContainerError::Input(e),
        }
    }
}

/// The type byte of the object `w` refers to, or `None` for an inline value.
fn obj_type(mem: &[u8], w: Word) -> Result<Option<u8>, Corruption> {
    match w.as_ref() {
        Some(off) => Ok(Some(slice(mem, off, 1)?[0])),
        None => Ok(None),
    }
}

fn type_name(t: Option<u8>) -> &'static str {
    match t {
        Some(ty::DICT) => "dict",
        Some(ty::LIST) => "list",
        Some(ty::SET) => "set",
        Some(ty::FROZENSET) => "frozenset",
        Some(ty::TUPLE) => "tuple",
        Some(ty::RECORD) => "record",
        Some(ty::STR | ty::STR_SHORT) => "str",
        Some(ty::BYTES | ty::BYTES_SHORT) => "bytes",
        Some(ty::BIGINT) => "int",
        Some(ty::FLOAT) => "float",
        _ => "scalar",
    }
}

/// The type name of an inline value (what `obj_type` gives `None` for).
fn inline_type_name(w: Word) -> &'static str {
    match w.decode() {
        Imm::None => "NoneType",
        Imm::Bool(_) => "bool",
        Imm::Int(_) => "int",
        Imm::Float(_) => "float",
        Imm::Str(..) => "str",
        Imm::Bytes(..) => "bytes",
        Imm::Empty | Imm::Ref(_) | Imm::Invalid => "scalar",
    }
}

/// An empty dict, created in this transaction.
pub fn dict_new<S: Store>(s: &mut S) -> Result<Word, StoreError> {
    Ok(Word::reference(put(s, None, &dict_image(0, Word::EMPTY, &Vector::empty(2)), true)?))
}

fn index_of(key: &Key, len: u64) -> Result<u64, ContainerError> {
    let i = match key {
        Key::Int(i) => *i,
        Key::Bool(b) => *b as i64,
        _ => return Err(ContainerError::KeyType { found: key.type_name(), wanted: "list index (int)" }),
    };
    // A length past i64 (only a damaged header could say so) leaves no negative index.
    let j = if i < 0 { i64::try_from(len).ok().and_then(|n| i.checked_add(n)) } else { Some(i) };
    match j {
        Some(j) if j >= 0 && (j as u64) < len => Ok(j as u64),
        _ => Err(ContainerError::IndexOutOfRange { index: i, len }),
    }
}

fn record_field(mem: &[u8], off: u64, key: &Key) -> Result<Option<usize>, ContainerError> {
    let Key::Str(name) = key else {
        return Err(ContainerError::KeyType { found: key.type_name(), wanted: "field name (str)" });
    };
    let names = header_word(mem, off, 16)?;
    let Some(noff) = names.as_ref() else {
        return Err(Corruption::new(off, "record without field names").into());
    };
    let n = get_u32(slice(mem, noff, 8)?, 4) as u64;
    for i in 0..n {
        let w = Word(get_u64(slice(mem, noff + 8 + 8 * i, 8)?, 0));
        if super::key::eq_stored(mem, w, &Key::Str(name.clone()))? {
            return Ok(Some(i as usize));
        }
    }
    Ok(None)
}

/// The offset of value slot `i` of the record at `off`, which must have that many: its
/// field names (another object) may be damaged and name more fields than it has.
fn record_slot(mem: &[u8], off: u64, i: usize) -> Result<u64, Corruption> {
    let n = get_u32(slice(mem, off, 8)?, 4) as usize;
    if i >= n {
        return Err(Corruption::new(off, format!("record of {n} fields names a field {i}")));
    }
    Ok(off + 24 + 8 * i as u64)
}

/// The word stored under `key` in the container `c`: a dict key, a list or tuple index,
/// or a record field.
pub fn container_get(mem: &[u8], seed: u64, c: Word, key: &Key) -> Result<Option<Word>, ContainerError> {
    let t = obj_type(mem, c)?;
    let Some(off) = c.as_ref() else {
        return Err(ContainerError::WrongType { found: inline_type_name(c), wanted: "container" });
    };
    match t {
        Some(ty::DICT) => {
            let root = header_word(mem, off, DICT_MAP)?;
            Ok(champ::lookup(mem, root, key.hash(seed), key, true)?.map(|e| Word(e[1])))
        }
        Some(ty::LIST) => {
            let r = list_rope(mem, off)?;
            match index_of(key, r.len) {
                Ok(i) => Ok(Some(r.get(mem, i)?)),
                Err(ContainerError::IndexOutOfRange { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Some(ty::TUPLE) => {
            let n = get_u32(slice(mem, off, 8)?, 4) as u64;
            match index_of(key, n) {
                Ok(i) => Ok(Some(Word(get_u64(slice(mem, off + 8 + 8 * i, 8)?, 0)))),
                Err(ContainerError::IndexOutOfRange { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Some(ty::RECORD) => match record_field(mem, off, key)? {
            Some(i) => Ok(Some(Word(get_u64(slice(mem, record_slot(mem, off, i)?, 8)?, 0)))),
            None => Ok(None),
        },
        t => Err(ContainerError::WrongType { found: type_name(t), wanted: "dict, list, tuple or record" }),
    }
}

/// The input that stores `key` (a probe) as a new dict key or set element.
pub fn key_input(key: &Key) -> Input {
    match key {
        Key::None => Input::None,
        Key::Bool(b) => Input::Bool(*b),
        Key::Int(v) => Input::Int(*v),
        Key::BigInt(b) => Input::BigInt(b.to_vec()),
        Key::Float(f) => Input::Float(*f),
        Key::Str(s) => Input::Str(s.to_string()),
        Key::Bytes(b) => Input::Bytes(b.to_vec()),
        Key::Tuple(items) => Input::Tuple(items.iter().map(key_input).collect()),
        Key::FrozenSet(items) => Input::FrozenSet(items.iter().map(key_input).collect()),
    }
}

/// Stores `value` under `key` in the container `c` (dict, list or record); returns the
/// container's new word and the value replaced, if any.
pub fn container_set<S: Store>(
    s: &mut S,
    c: Word,
    key: &Key,
    value: Word,
    owned: bool,
) -> Result<(Word, Option<Word>), ContainerError> {
    let t = obj_type(s.mem(), c)?;
    let Some(off) = c.as_ref() else {
        return Err(ContainerError::WrongType { found: inline_type_name(c), wanted: "container" });
    };
    match t {
        Some(ty::DICT) => dict_set(s, off, key, value, owned),
        Some(ty::LIST) => {
            let mut r = list_rope(s.mem(), off)?;
            let i = index_of(key, r.len)?;
            let old = r.get(s.mem(), i)?;
            if old == value {
                return Ok((c, None));
            }
            r.set(s, i, value, owned)?;
            Ok((Word::reference(put(s, Some(off), &list_image(&r), owned)?), Some(old)))
        }
        Some(ty::RECORD) => {
            let i = record_field(s.mem(), off, key)?.ok_or(ContainerError::NotFound)?;
            let at = (record_slot(s.mem(), off, i)? - off) as usize;
            let size = object_size(s.mem(), off)?;
            let mut img = slice(s.mem(), off, size)?.to_vec();
            let old = Word(get_u64(&img, at));
            if old == value {
                return Ok((c, None));
            }
            put_u64(&mut img, at, value.0);
            Ok((Word::reference(put(s, Some(off), &img, owned)?), Some(old)))
        }
        t => Err(ContainerError::WrongType { found: type_name(t), wanted: "dict, list or record" }),
    }
}

fn dict_set<S: Store>(
    s: &mut S,
    off: u64,
    key: &Key,
    value: Word,
    owned: bool,
) -> Result<(Word, Option<Word>), ContainerError> {
    let seed = s.seed();
    let map = header_word(s.mem(), off, DICT_MAP)?;
    let mut order = dict_order(s.mem(), off)?;
    let mut len = get_u64(slice(s.mem(), off, DICT_SIZE)?, DICT_LEN);
    let mut old = None;
    let mut input_err = None;
    let new_map =
        champ::upsert(s, map, key.hash(seed), key, true, owned, &mut |s, existing| match existing {
            Some(e) => {
                old = Some(Word(e[1]));
                if e[1] == value.0 {
                    return Ok(e);
                }
                order_pair(s.mem(), off, &order, &e)?;
                order.set(s, e[2], &[e[0], value.0], owned)?;
                Ok([e[0], value.0, e[2]])
            }
            None => {
                let kw = match build(s, &key_input(key)) {
                    Ok(w) => w,
                    Err(InputError::Store(e)) => return Err(e),
                    Err(e) => {
                        input_err = Some(e);
                        return Err(StoreError::Corrupt(Corruption::new(0, "key could not be stored")));
                    }
                };
                let seq = order.count;
                order.push(s, &[kw.0, value.0], owned)?;
                Ok([kw.0, value.0, seq])
            }
        });
    if let Some(e) = input_err {
        return Err(e.into());
    }
    let new_map = new_map?;
    if old == Some(value) {
        return Ok((Word::reference(off), None));
    }
    if old.is_none() {
        len = len.checked_add(1).ok_or_else(|| Corruption::new(off, "dict length past any count"))?;
    }
    let w = put(s, Some(off), &dict_image(len, new_map, &order), owned)?;
    Ok((Word::reference(w), old))
}

/// Deletes `key` from the container `c` (dict key, list index, or set element); returns
/// the container's new word and the words removed (for a dict: key and value).
pub fn container_del<S: Store>(
    s: &mut S,
    c: Word,
    key: &Key,
    owned: bool,
) -> Result<(Word, Vec<Word>), ContainerError> {
    let seed = s.seed();
    let t = obj_type(s.mem(), c)?;
    let Some(off) = c.as_ref() else {
        return Err(ContainerError::WrongType { found: inline_type_name(c), wanted: "container" });
    };
    match t {
        Some(ty::DICT) => {
            let map = header_word(s.mem(), off, DICT_MAP)?;
            let mut order = dict_order(s.mem(), off)?;
            let len = get_u64(slice(s.mem(), off, DICT_SIZE)?, DICT_LEN);
            let (new_map, removed) = champ::remove(s, map, key.hash(seed), key, true, owned)?;
            let e = removed.ok_or(ContainerError::NotFound)?;
            order_pair(s.mem(), off, &order, &e)?;
            order.set(s, e[2], &[0, 0], owned)?;
            // A length that does not cover the entry just removed is damage, not a wrap.
            let len =
                len.checked_sub(1).ok_or_else(|| Corruption::new(off, "dict length below its entries"))?;
            let (new_map, order) = if order.count.saturating_sub(len) > len.max(32) {
                compact_order(s, new_map, order, owned)?
            } else {
                (new_map, order)
            };
            let w = put(s, Some(off), &dict_image(len, new_map, &order), owned)?;
            Ok((Word::reference(w), vec![Word(e[0]), Word(e[1])]))
        }
        Some(ty::LIST) => {
            let i = index_of(key, list_rope(s.mem(), off)?.len)?;
            list_splice(s, c, i, 1, &[], owned)
        }
        Some(ty::SET) => {
            let root = header_word(s.mem(), off, SET_ROOT)?;
            let len = get_u64(slice(s.mem(), off, SET_SIZE)?, SET_LEN);
            let (new_root, removed) = champ::remove(s, root, key.hash(seed), key, false, owned)?;
            let e = removed.ok_or(ContainerError::NotFound)?;
            let len =
                len.checked_sub(1).ok_or_else(|| Corruption::new(off, "set length below its entries"))?;
            let w = put(s, Some(off), &set_image(false, len, new_root, 0), owned)?;
            Ok((Word::reference(w), vec![Word(e[0])]))
        }
        t => Err(ContainerError::WrongType { found: type_name(t), wanted: "dict, list or set" }),
    }
}

/// Checks that the trie entry `e` (key, value, order index) of the dict at `off` names the
/// order vector's pair holding the same key and value, before a change overwrites that
/// pair: a damaged index would otherwise overwrite another entry's pair.
fn order_pair(mem: &[u8], off: u64, order: &Vector, e: &[u64; 3]) -> Result<(), Corruption> {
    if e[2] >= order.count || order.get(mem, e[2])? != [e[0], e[1]] {
        return Err(Corruption::new(off, format!("dict entry at order {} disagrees with its trie", e[2])));
    }
    Ok(())
}

/// Rewrites a dict's order vector without its tombstones, renumbering the map's entries.
fn compact_order<S: Store>(
    s: &mut S,
    map: Word,
    order: Vector,
    owned: bool,
) -> Result<(Word, Vector), StoreError> {
    let mut live = Vec::new();
    order.walk(
        s.mem(),
        &mut |_, item| {
            if item[0] != 0 {
                live.push([item[0], item[1]]);
            }
            Ok(())
        },
        &mut |_| Ok(()),
    )?;
    order.retire_nodes(s, owned)?;
    let flat: Vec<u64> = live.iter().flatten().copied().collect();
    let fresh = Vector::build(s, 2, &flat)?;
    let seed = s.seed();
    let mut map = map;
    for (seq, [k, _]) in live.iter().enumerate() {
        let key = super::key::decode_key(s.mem(), Word(*k))?.into_owned();
        map = champ::upsert(s, map, key.hash(seed), &key, true, owned, &mut |_, e| {
            let e = e.ok_or_else(|| Corruption::new(*k, "order vector names a key the map lacks"))?;
            Ok([e[0], e[1], seq as u64])
        })?;
    }
    Ok((map, fresh))
}

/// Replaces `del` items of the list `c` from `start` with `insert`; returns the list's new
/// word and the removed items. Appending and truncating at the end copy one path; other
/// splices rebuild the list's vector.
pub fn list_splice<S: Store>(
    s: &mut S,
    c: Word,
    start: u64,
    del: u64,
    insert: &[Word],
    owned: bool,
) -> Result<(Word, Vec<Word>), ContainerError> {
    let t = obj_type(s.mem(), c)?;
    let (Some(off), Some(ty::LIST)) = (c.as_ref(), t) else {
        let found = if t.is_none() { inline_type_name(c) } else { type_name(t) };
        return Err(ContainerError::WrongType { found, wanted: "list" });
    };
    let mut r = list_rope(s.mem(), off)?;
    if !matches!(start.checked_add(del), Some(end) if end <= r.len) {
        return Err(ContainerError::IndexOutOfRange { index: start as i64, len: r.len });
    }
    // Each removal and insertion copies one root-to-leaf path.
    let mut removed = Vec::with_capacity(del as usize);
    for _ in 0..del {
        removed.push(r.remove(s, start, owned)?);
    }
    for (k, w) in insert.iter().enumerate() {
        r.insert(s, start + k as u64, *w, owned)?;
    }
    let w = put(s, Some(off), &list_image(&r), owned)?;
    Ok((Word::reference(w), removed))
}

/// Adds `key` to the set `c`; returns the set's new word and whether it was added.
pub fn set_add<S: Store>(s: &mut S, c: Word, key: &Key, owned: bool) -> Result<(Word, bool), ContainerError> {
    let seed = s.seed();
    let t = obj_type(s.mem(), c)?;
    let (Some(off), Some(ty::SET)) = (c.as_ref(), t) else {
        let found = if t.is_none() { inline_type_name(c) } else { type_name(t) };
        return Err(ContainerError::WrongType { found, wanted: "set" });
    };
    let root = header_word(s.mem(), off, SET_ROOT)?;
    let len = get_u64(slice(s.mem(), off, SET_SIZE)?, SET_LEN);
    let mut added = false;
    let mut input_err = None;
    let new_root =
        champ::upsert(s, root, key.hash(seed), key, false, owned, &mut |s, existing| match existing {
            Some(e) => Ok(e),
            None => {
                added = true;
                match build(s, &key_input(key)) {
                    Ok(w) => Ok([w.0, 0, 0]),
                    Err(InputError::Store(e)) => Err(e),
                    Err(e) => {
                        input_err = Some(e);
                        Err(StoreError::Corrupt(Corruption::new(0, "element could not be stored")))
                    }
                }
            }
        });
    if let Some(e) = input_err {
        return Err(e.into());
    }
    let new_root = new_root?;
    if !added {
        return Ok((c, false));
    }
    let len = len.checked_add(1).ok_or_else(|| Corruption::new(off, "set length past any count"))?;
    let w = put(s, Some(off), &set_image(false, len, new_root, 0), owned)?;
    Ok((Word::reference(w), true))
}
