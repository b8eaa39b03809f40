//! Zero-copy views of stored values. A view borrows the mapped file of the snapshot (or
//! write transaction) it came from, so it cannot outlive it; reading never writes.

use super::champ;
use super::key::{bytes_to_i64, decode_key, Key};
use super::layout::*;
use super::rope::Rope;
use super::vector::Vector;
use super::word::{Imm, Word};
use crate::error::Corruption;
use std::fmt;

/// A str: borrowed from the file, or held inline in its word (up to 7 bytes).
#[derive(Clone, Copy)]
pub enum Str<'t> {
    Mapped(&'t str),
    Inline([u8; 8], u8),
}

impl Str<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Str::Mapped(s) => s,
            // Inline strs are validated when decoded; an invalid one never gets here.
            Str::Inline(b, n) => std::str::from_utf8(&b[..*n as usize]).unwrap_or(""),
        }
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Bytes: borrowed from the file, or held inline in their word.
#[derive(Clone, Copy)]
pub enum Bytes<'t> {
    Mapped(&'t [u8]),
    Inline([u8; 8], u8),
}

impl Bytes<'_> {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Bytes::Mapped(b) => b,
            Bytes::Inline(b, n) => &b[..*n as usize],
        }
    }
}

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Where views read from: the mapped file and its hash seed.
#[derive(Clone, Copy)]
pub struct Ctx<'t> {
    pub mem: &'t [u8],
    pub seed: u64,
}

/// A stored value.
#[derive(Clone, Copy, Debug)]
pub enum Value<'t> {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`: two's complement, little-endian.
    BigInt(&'t [u8]),
    Float(f64),
    Str(Str<'t>),
    Bytes(Bytes<'t>),
    Tuple(Tuple<'t>),
    List(List<'t>),
    Dict(Dict<'t>),
    Set(Set<'t>),
    FrozenSet(Set<'t>),
    Record(Record<'t>),
}

/// A container view: its context and the offset of its header.
#[derive(Clone, Copy)]
pub struct View<'t> {
    cx: Ctx<'t>,
    off: u64,
}

macro_rules! views {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy)]
        pub struct $name<'t>(View<'t>);
        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}@{:#x}", stringify!($name), self.0.off)
            }
        }
        impl<'t> $name<'t> {
            /// The file offset of this object (its identity within one snapshot).
            pub fn offset(&self) -> u64 {
                self.0.off
            }
        }
    )*};
}
views!(Tuple, List, Dict, Set, Record);

/// Decodes the value in `w`.
pub fn decode<'t>(cx: Ctx<'t>, w: Word) -> Result<Value<'t>, Corruption> {
    Ok(match w.decode() {
        Imm::None => Value::None,
        Imm::Bool(b) => Value::Bool(b),
        Imm::Int(v) => Value::Int(v),
        Imm::Float(f) => Value::Float(f),
        Imm::Str(b, n) => {
            std::str::from_utf8(&b[..n as usize])
                .map_err(|_| Corruption::new(w.0, "inline str is not UTF-8"))?;
            Value::Str(Str::Inline(b, n))
        }
        Imm::Bytes(b, n) => Value::Bytes(Bytes::Inline(b, n)),
        Imm::Ref(off) => {
            if let Some((t, b)) = blob_at(cx.mem, off)? {
                return Ok(match t {
                    ty::STR => Value::Str(Str::Mapped(
                        std::str::from_utf8(b).map_err(|_| Corruption::new(off, "str is not UTF-8"))?,
                    )),
                    ty::BYTES => Value::Bytes(Bytes::Mapped(b)),
                    _ => match bytes_to_i64(b) {
                        Some(v) => Value::Int(v),
                        None => Value::BigInt(b),
                    },
                });
            }
            let head = slice(cx.mem, off, 8)?;
            let v = View { cx, off };
            match head[0] {
                ty::FLOAT => Value::Float(f64::from_bits(get_u64(slice(cx.mem, off, 16)?, 8))),
                ty::TUPLE => Value::Tuple(Tuple(v)),
                ty::RECORD => Value::Record(Record(v)),
                ty::DICT => Value::Dict(Dict(v)),
                ty::LIST => Value::List(List(v)),
                ty::SET => Value::Set(Set(v)),
                ty::FROZENSET => Value::FrozenSet(Set(v)),
                t => {
                    return Err(Corruption::new(off, format!("a value slot refers to an object of type {t}")))
                }
            }
        }
        Imm::Empty => return Err(Corruption::new(0, "a value slot is empty")),
        Imm::Invalid => return Err(Corruption::new(w.0, "a value slot holds an invalid word")),
    })
}

impl<'t> Value<'t> {
    /// The Python type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Record(_) => "record",
        }
    }

    /// The value as a dict key, if it is hashable.
    pub fn to_key(&self) -> Result<Option<Key<'t>>, Corruption> {
        self.key_at(0)
    }

    fn key_at(&self, depth: usize) -> Result<Option<Key<'t>>, Corruption> {
        if depth > super::key::MAX_KEY_DEPTH {
            return Err(Corruption::new(0, "key nested too deeply (a reference cycle?)"));
        }
        Ok(Some(match *self {
            Value::None => Key::None,
            Value::Bool(b) => Key::Bool(b),
            Value::Int(v) => Key::Int(v),
            Value::BigInt(b) => Key::BigInt(b.into()),
            Value::Float(f) => Key::Float(f),
            Value::Str(s) => match s {
                Str::Mapped(s) => Key::Str(s.into()),
                Str::Inline(..) => Key::Str(s.as_str().to_string().into()),
            },
            Value::Bytes(b) => match b {
                Bytes::Mapped(b) => Key::Bytes(b.into()),
                Bytes::Inline(..) => Key::Bytes(b.as_bytes().to_vec().into()),
            },
            Value::Tuple(t) => {
                let mut items = Vec::new();
                for v in t.items()? {
                    match v.key_at(depth + 1)? {
                        Some(k) => items.push(k),
                        None => return Ok(None),
                    }
                }
                Key::Tuple(items)
            }
            Value::FrozenSet(s) => decode_key(s.0.cx.mem, Word(s.0.off))?,
            _ => return Ok(None),
        }))
    }
}

fn words(cx: Ctx<'_>, off: u64, n: u64) -> Result<Vec<Word>, Corruption> {
    let b = slice(cx.mem, off, 8 * n as usize)?;
    Ok((0..n as usize).map(|i| Word(get_u64(b, 8 * i))).collect())
}

/// The header word at `at` of the container at `off`.
pub fn header_word(mem: &[u8], off: u64, at: usize) -> Result<Word, Corruption> {
    Ok(Word(get_u64(slice(mem, off + at as u64, 8)?, 0)))
}

/// The order vector of the dict at `off`, refused if its header is impossible (see
/// [`Vector::checked`]).
pub fn dict_order(mem: &[u8], off: u64) -> Result<Vector, Corruption> {
    let b = slice(mem, off, DICT_SIZE)?;
    Vector { root: Word(get_u64(b, DICT_ORDER)), count: get_u64(b, DICT_COUNT), depth: b[1], width: 2 }
        .checked(mem, off)
}

/// The item rope of the list at `off`, refused if its header is impossible (see
/// [`Rope::checked`]).
pub fn list_rope(mem: &[u8], off: u64) -> Result<Rope, Corruption> {
    let b = slice(mem, off, LIST_SIZE)?;
    Rope { root: Word(get_u64(b, LIST_ROOT)), len: get_u64(b, LIST_LEN), height: b[1] }.checked(mem, off)
}

impl<'t> Tuple<'t> {
    /// Number of items.
    pub fn len(&self) -> usize {
        slice(self.0.cx.mem, self.0.off, 8).map(|h| get_u32(h, 4) as usize).unwrap_or(0)
    }
    /// Whether the tuple is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The items.
    pub fn items(&self) -> Result<Vec<Value<'t>>, Corruption> {
        words(self.0.cx, self.0.off + 8, self.len() as u64)?
            .into_iter()
            .map(|w| decode(self.0.cx, w))
            .collect()
    }
}

impl<'t> List<'t> {
    fn rope(&self) -> Result<Rope, Corruption> {
        list_rope(self.0.cx.mem, self.0.off)
    }
    /// Number of items.
    pub fn len(&self) -> Result<u64, Corruption> {
        Ok(self.rope()?.len)
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool, Corruption> {
        Ok(self.len()? == 0)
    }
    /// The item at `i` (Python's negative indices count from the end).
    pub fn get(&self, i: i64) -> Result<Option<Value<'t>>, Corruption> {
        let r = self.rope()?;
        // The length is bounded by the file's size (`list_rope`), so it fits an i64.
        let i = if i < 0 { i.checked_add(r.len as i64) } else { Some(i) };
        match i {
            Some(i) if i >= 0 && (i as u64) < r.len => {
                Ok(Some(decode(self.0.cx, r.get(self.0.cx.mem, i as u64)?)?))
            }
            _ => Ok(None),
        }
    }
    /// The items, in order, lazily.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Value<'t>, Corruption>> + 't, Corruption> {
        let cx = self.0.cx;
        Ok(self.rope()?.iter(cx.mem).map(move |w| decode(cx, w?)))
    }
    /// Every item, in order.
    pub fn items(&self) -> Result<Vec<Value<'t>>, Corruption> {
        self.iter()?.collect()
    }
}

impl<'t> Dict<'t> {
    /// Number of entries.
    pub fn len(&self) -> Result<u64, Corruption> {
        Ok(get_u64(slice(self.0.cx.mem, self.0.off, DICT_SIZE)?, DICT_LEN))
    }
    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool, Corruption> {
        Ok(self.len()? == 0)
    }
    /// The value stored under `key`.
    pub fn get(&self, key: &Key) -> Result<Option<Value<'t>>, Corruption> {
        let cx = self.0.cx;
        let root = header_word(cx.mem, self.0.off, DICT_MAP)?;
        match champ::lookup(cx.mem, root, key.hash(cx.seed), key, true)? {
            Some(e) => Ok(Some(decode(cx, Word(e[1]))?)),
            None => Ok(None),
        }
    }
    /// The entries, in insertion order, lazily.
    pub fn iter(
        &self,
    ) -> Result<impl Iterator<Item = Result<(Value<'t>, Value<'t>), Corruption>> + 't, Corruption> {
        let cx = self.0.cx;
        Ok(dict_order(cx.mem, self.0.off)?.iter(cx.mem).filter_map(move |item| match item {
            Ok([0, _]) => None,
            Ok([k, v]) => Some(decode(cx, Word(k)).and_then(|k| Ok((k, decode(cx, Word(v))?)))),
            Err(e) => Some(Err(e)),
        }))
    }
    /// The entries from insertion position `start` on, each with its position (a resumable
    /// iteration: a later call can go on from the last position + 1).
    #[allow(clippy::type_complexity)]
    pub fn iter_from(
        &self,
        start: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Value<'t>, Value<'t>), Corruption>> + 't, Corruption> {
        let cx = self.0.cx;
        let mut pos = start;
        Ok(dict_order(cx.mem, self.0.off)?.iter_from(cx.mem, start).filter_map(move |item| {
            let at = pos;
            pos += 1;
            match item {
                Ok([0, _]) => None,
                Ok([k, v]) => Some(decode(cx, Word(k)).and_then(|k| Ok((at, k, decode(cx, Word(v))?)))),
                Err(e) => Some(Err(e)),
            }
        }))
    }
    /// Every entry, in insertion order.
    pub fn items(&self) -> Result<Vec<(Value<'t>, Value<'t>)>, Corruption> {
        self.iter()?.collect()
    }
    /// Every key, in insertion order.
    pub fn keys(&self) -> Result<Vec<Value<'t>>, Corruption> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }
}

impl<'t> Set<'t> {
    /// Number of elements.
    pub fn len(&self) -> Result<u64, Corruption> {
        Ok(get_u64(slice(self.0.cx.mem, self.0.off, SET_SIZE)?, SET_LEN))
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> Result<bool, Corruption> {
        Ok(self.len()? == 0)
    }
    /// Whether `key` is an element.
    pub fn contains(&self, key: &Key) -> Result<bool, Corruption> {
        let cx = self.0.cx;
        let root = header_word(cx.mem, self.0.off, SET_ROOT)?;
        Ok(champ::lookup(cx.mem, root, key.hash(cx.seed), key, false)?.is_some())
    }
    /// The elements (in hash order: sets are unordered), lazily.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Value<'t>, Corruption>> + 't, Corruption> {
        let cx = self.0.cx;
        let root = header_word(cx.mem, self.0.off, SET_ROOT)?;
        Ok(champ::iter(cx.mem, root, false).map(move |e| decode(cx, Word(e?[0]))))
    }
    /// Every element (in hash order: sets are unordered).
    pub fn items(&self) -> Result<Vec<Value<'t>>, Corruption> {
        self.iter()?.collect()
    }
}

impl<'t> Record<'t> {
    fn n(&self) -> Result<u64, Corruption> {
        Ok(get_u32(slice(self.0.cx.mem, self.0.off, 8)?, 4) as u64)
    }
    /// The record's type name.
    pub fn type_name(&self) -> Result<Str<'t>, Corruption> {
        match decode(self.0.cx, header_word(self.0.cx.mem, self.0.off, 8)?)? {
            Value::Str(s) => Ok(s),
            _ => Err(Corruption::new(self.0.off, "record type name is not a str")),
        }
    }
    /// Field names and values, in declaration order.
    pub fn fields(&self) -> Result<Vec<(Str<'t>, Value<'t>)>, Corruption> {
        let cx = self.0.cx;
        let names = match decode(cx, header_word(cx.mem, self.0.off, 16)?)? {
            Value::Tuple(t) => t.items()?,
            _ => return Err(Corruption::new(self.0.off, "record field names are not a tuple")),
        };
        let n = self.n()?;
        if names.len() as u64 != n {
            return Err(Corruption::new(self.0.off, "record has more names than values"));
        }
        let vals = words(cx, self.0.off + 24, n)?;
        names
            .into_iter()
            .zip(vals)
            .map(|(name, w)| match name {
                Value::Str(s) => Ok((s, decode(cx, w)?)),
                _ => Err(Corruption::new(self.0.off, "record field name is not a str")),
            })
            .collect()
    }
    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Result<Option<Value<'t>>, Corruption> {
        Ok(self.fields()?.into_iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v))
    }
}
