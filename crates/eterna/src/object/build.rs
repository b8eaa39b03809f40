//! Writing values: [`Input`] (an owned value a program wants to store) becomes heap
//! objects, all created in the running transaction.

use super::champ;
use super::key::{combine_frozen, minimal_int_bytes, Key};
use super::layout::*;
use super::rope::Rope;
use super::store::{put, Store, StoreError};
use super::value::{decode, Ctx};
use super::vector::Vector;
use super::word::Word;
use std::fmt;

/// A value to store.
#[derive(Debug, Clone)]
pub enum Input {
    None,
    Bool(bool),
    Int(i64),
    /// Any integer, as two's complement little-endian bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Input>),
    List(Vec<Input>),
    /// Entries in insertion order; a repeated key keeps its first position and last value.
    Dict(Vec<(Input, Input)>),
    /// A dict whose keys and values are all `str`, packed (stored exactly as the same
    /// `Dict`): a front end converting a large dict makes one buffer, not two `String`s
    /// and two `Input`s per entry.
    StrDict(StrPairs),
    Set(Vec<Input>),
    FrozenSet(Vec<Input>),
    Record {
        type_name: String,
        fields: Vec<(String, Input)>,
    },
    /// A value already stored in this heap (from the same transaction): stored again by
    /// reference, with value semantics (neither place sees the other's later changes).
    Stored(Word),
}

/// Pairs of strings in one buffer, for [`Input::StrDict`].
#[derive(Debug, Clone, Default)]
pub struct StrPairs {
    text: String,     // every key and value, one after the other
    ends: Vec<usize>, // where each string ends in `text`: key 0, value 0, key 1, ...
}

impl StrPairs {
    /// Room for `pairs` entries of `bytes` bytes of text in all.
    pub fn with_capacity(pairs: usize, bytes: usize) -> StrPairs {
        StrPairs { text: String::with_capacity(bytes), ends: Vec::with_capacity(2 * pairs) }
    }

    /// Appends an entry.
    pub fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        self.ends.push(self.text.len());
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn string(&self, j: usize) -> &str {
        let start = if j == 0 { 0 } else { self.ends[j - 1] };
        &self.text[start..self.ends[j]]
    }

    /// Entry `i`'s key.
    pub fn key(&self, i: usize) -> &str {
        self.string(2 * i)
    }

    /// Entry `i`'s value.
    pub fn value(&self, i: usize) -> &str {
        self.string(2 * i + 1)
    }

    /// The entries as the pairs of an [`Input::Dict`].
    pub fn to_pairs(&self) -> Vec<(Input, Input)> {
        (0..self.len()).map(|i| (Input::from(self.key(i)), Input::from(self.value(i)))).collect()
    }
}

impl From<&str> for Input {
    fn from(s: &str) -> Input {
        Input::Str(s.to_string())
    }
}
impl From<String> for Input {
    fn from(s: String) -> Input {
        Input::Str(s)
    }
}
impl From<i64> for Input {
    fn from(v: i64) -> Input {
        Input::Int(v)
    }
}
impl From<f64> for Input {
    fn from(v: f64) -> Input {
        Input::Float(v)
    }
}
impl From<bool> for Input {
    fn from(v: bool) -> Input {
        Input::Bool(v)
    }
}
impl From<&[u8]> for Input {
    fn from(v: &[u8]) -> Input {
        Input::Bytes(v.to_vec())
    }
}

impl Input {
    /// The Python type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Input::None => "NoneType",
            Input::Bool(_) => "bool",
            Input::Int(_) | Input::BigInt(_) => "int",
            Input::Float(_) => "float",
            Input::Str(_) => "str",
            Input::Bytes(_) => "bytes",
            Input::Tuple(_) => "tuple",
            Input::List(_) => "list",
            Input::Dict(_) | Input::StrDict(_) => "dict",
            Input::Set(_) => "set",
            Input::FrozenSet(_) => "frozenset",
            Input::Record { .. } => "record",
            Input::Stored(_) => "stored value",
        }
    }

    /// The input as a key, or `None` if it is not hashable.
    pub fn to_key<'a>(&'a self, cx: Ctx<'a>) -> Result<Option<Key<'a>>, StoreError> {
        Ok(Some(match self {
            Input::None => Key::None,
            Input::Bool(b) => Key::Bool(*b),
            Input::Int(v) => Key::Int(*v),
            Input::BigInt(b) => Key::BigInt(b.as_slice().into()),
            Input::Float(f) => Key::Float(*f),
            Input::Str(s) => Key::Str(s.as_str().into()),
            Input::Bytes(b) => Key::Bytes(b.as_slice().into()),
            Input::Tuple(items) | Input::FrozenSet(items) => {
                let mut keys = Vec::with_capacity(items.len());
                for i in items {
                    match i.to_key(cx)? {
                        Some(k) => keys.push(k),
                        None => return Ok(None),
                    }
                }
                if matches!(self, Input::Tuple(_)) {
                    Key::Tuple(keys)
                } else {
                    Key::FrozenSet(keys)
                }
            }
            Input::Stored(w) => return Ok(decode(cx, *w)?.to_key()?),
            _ => return Ok(None),
        }))
    }
}

/// Why a value could not be stored. Nothing it allocated stays behind.
#[derive(Debug)]
pub enum InputError {
    /// A dict key or set element is not hashable; `path` says where it sat.
    Unhashable { type_name: &'static str, path: String },
    /// A str, bytes or int longer than 4 GiB, or a tuple or record of over 2^32 items.
    TooLarge { path: String },
    /// The heap failed underneath.
    Store(StoreError),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Unhashable { type_name, path } => {
                write!(f, "unhashable type: '{type_name}' at {path}")
            }
            InputError::TooLarge { path } => write!(f, "value too large to store at {path}"),
            InputError::Store(e) => write!(f, "{e:?}"),
        }
    }
}

impl From<StoreError> for InputError {
    fn from(e: StoreError) -> Self {
        InputError::Store(e)
    }
}
impl From<crate::error::Corruption> for InputError {
    fn from(c: crate::error::Corruption) -> Self {
        InputError::Store(StoreError::Corrupt(c))
    }
}

impl InputError {
    /// Prefixes the error's location with `seg`, as the error travels up to the root.
    fn at(self, seg: &str) -> InputError {
        match self {
            InputError::Unhashable { type_name, path } => {
                InputError::Unhashable { type_name, path: format!("{seg}{path}") }
            }
            InputError::TooLarge { path } => InputError::TooLarge { path: format!("{seg}{path}") },
            e => e,
        }
    }
}

/// Stores a str, bytes or big int object; a str or bytes of at most 255 bytes gets the
/// two-byte header.
pub(super) fn blob<S: Store>(s: &mut S, t: u8, b: &[u8]) -> Result<Word, InputError> {
    let short = match t {
        ty::STR => Some(ty::STR_SHORT),
        ty::BYTES => Some(ty::BYTES_SHORT),
        _ => None,
    };
    if let (Some(st), Ok(n)) = (short, u8::try_from(b.len())) {
        let off = s.alloc(2 + b.len())?;
        s.write_at(off, 0, &[st, n])?;
        s.write_at(off, 2, b)?;
        return Ok(Word::reference(off));
    }
    let n = u32::try_from(b.len()).map_err(|_| InputError::TooLarge { path: String::new() })?;
    let off = s.alloc(8 + b.len())?;
    let mut head = [t, 0, 0, 0, 0, 0, 0, 0];
    head[4..].copy_from_slice(&n.to_le_bytes());
    s.write_at(off, 0, &head)?;
    s.write_at(off, 8, b)?;
    Ok(Word::reference(off))
}

fn words_object<S: Store>(
    s: &mut S,
    t: u8,
    head: &[Word],
    n: usize,
    items: &[Word],
) -> Result<Word, InputError> {
    let n = u32::try_from(n).map_err(|_| InputError::TooLarge { path: String::new() })?;
    let mut img = vec![t, 0, 0, 0];
    img.extend_from_slice(&n.to_le_bytes());
    for w in head.iter().chain(items) {
        img.extend_from_slice(&w.0.to_le_bytes());
    }
    Ok(Word::reference(put(s, None, &img, true)?))
}

/// A new, empty container header image.
pub fn dict_image(len: u64, map: Word, order: &Vector) -> Vec<u8> {
    let mut b = vec![0u8; DICT_SIZE];
    b[0] = ty::DICT;
    b[1] = order.depth;
    put_u64(&mut b, DICT_LEN, len);
    put_u64(&mut b, DICT_MAP, map.0);
    put_u64(&mut b, DICT_ORDER, order.root.0);
    put_u64(&mut b, DICT_COUNT, order.count);
    b
}

/// A list header image.
pub fn list_image(r: &Rope) -> Vec<u8> {
    let mut b = vec![0u8; LIST_SIZE];
    b[0] = ty::LIST;
    b[1] = r.height;
    put_u64(&mut b, LIST_LEN, r.len);
    put_u64(&mut b, LIST_ROOT, r.root.0);
    b
}

/// A set or frozenset header image.
pub fn set_image(frozen: bool, len: u64, root: Word, hash: u64) -> Vec<u8> {
    let mut b = vec![0u8; SET_SIZE];
    b[0] = if frozen { ty::FROZENSET } else { ty::SET };
    put_u64(&mut b, SET_LEN, len);
    put_u64(&mut b, SET_ROOT, root.0);
    put_u64(&mut b, SET_HASH, hash);
    b
}

fn key_or_err<S: Store>(s: &S, k: &Input) -> Result<Key<'static>, InputError> {
    k.to_key(Ctx { mem: s.mem(), seed: s.seed() })?
        .map(Key::into_owned)
        .ok_or(InputError::Unhashable { type_name: k.type_name(), path: String::new() })
}

/// Stores `input` and returns the word that refers to it.
pub fn build<S: Store>(s: &mut S, input: &Input) -> Result<Word, InputError> {
    let seed = s.seed();
    Ok(match input {
        Input::None => Word::NONE,
        Input::Bool(b) => Word::bool(*b),
        Input::Int(v) => match Word::int(*v) {
            Some(w) => w,
            None => blob(s, ty::BIGINT, &minimal_int_bytes(&v.to_le_bytes()))?,
        },
        Input::BigInt(b) => {
            let m = minimal_int_bytes(b);
            match super::key::bytes_to_i64(&m).and_then(Word::int) {
                Some(w) => w,
                None => blob(s, ty::BIGINT, &m)?,
            }
        }
        Input::Float(f) => match Word::float(*f) {
            Some(w) => w,
            None => {
                let mut img = vec![0u8; 16];
                img[0] = ty::FLOAT;
                put_u64(&mut img, 8, f.to_bits());
                Word::reference(put(s, None, &img, true)?)
            }
        },
        Input::Str(t) => str_word(s, t)?,
        Input::Bytes(b) => match Word::short_bytes(b) {
            Some(w) => w,
            None => blob(s, ty::BYTES, b)?,
        },
        Input::Tuple(items) => {
            let mut ws = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                ws.push(build(s, it).map_err(|e| e.at(&format!("[{i}]")))?);
            }
            words_object(s, ty::TUPLE, &[], ws.len(), &ws)?
        }
        Input::List(items) => {
            let mut ws = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                ws.push(build(s, it).map_err(|e| e.at(&format!("[{i}]")))?.0);
            }
            let r = Rope::build(s, &ws)?;
            Word::reference(put(s, None, &list_image(&r), true)?)
        }
        Input::StrDict(t) => match bulk_str_dict(s, t)? {
            Some(w) => w,
            None => build(s, &Input::Dict(t.to_pairs()))?,
        },
        Input::Dict(pairs) => {
            if let Some(w) = bulk_dict(s, pairs)? {
                return Ok(w);
            }
            let mut map = Word::EMPTY;
            let mut order = Vector::empty(2);
            let mut len = 0u64;
            for (k, v) in pairs {
                let key = key_or_err(s, k).map_err(|e| e.at(&format!("[{}]", brief(k))))?;
                let h = key.hash(seed);
                let vw = build(s, v).map_err(|e| e.at(&format!("[{}]", brief(k))))?;
                let mut replaced = None;
                let mut key_err = None;
                map = champ::upsert(s, map, h, &key, true, true, &mut |s, existing| match existing {
                    Some(e) => {
                        replaced = Some(Word(e[1]));
                        order.set(s, e[2], &[e[0], vw.0], true)?;
                        Ok([e[0], vw.0, e[2]])
                    }
                    None => {
                        let kw = match build(s, k) {
                            Ok(w) => w,
                            Err(InputError::Store(e)) => return Err(e),
                            Err(e) => {
                                key_err = Some(e);
                                Word::NONE
                            }
                        };
                        let seq = order.count;
                        order.push(s, &[kw.0, vw.0], true)?;
                        len += 1;
                        Ok([kw.0, vw.0, seq])
                    }
                })?;
                if let Some(e) = key_err {
                    return Err(e);
                }
                if let Some(old) = replaced {
                    super::walk::release(s, old)?;
                }
            }
            Word::reference(put(s, None, &dict_image(len, map, &order), true)?)
        }
        Input::Set(items) | Input::FrozenSet(items) => {
            let frozen = matches!(input, Input::FrozenSet(_));
            if let Some(w) = bulk_set(s, items, frozen)? {
                return Ok(w);
            }
            let mut root = Word::EMPTY;
            let mut len = 0u64;
            let mut hashes = Vec::new();
            for it in items {
                let key = key_or_err(s, it).map_err(|e| e.at(" (a set element)"))?;
                let h = key.hash(seed);
                let mut added = false;
                root = champ::upsert(s, root, h, &key, false, true, &mut |s, existing| match existing {
                    Some(e) => Ok(e),
                    None => {
                        added = true;
                        let kw = build(s, it).map_err(|e| match e {
                            InputError::Store(e) => e,
                            _ => StoreError::Corrupt(crate::error::Corruption::new(0, "set element changed")),
                        })?;
                        Ok([kw.0, 0, 0])
                    }
                })?;
                if added {
                    len += 1;
                    hashes.push(h);
                }
            }
            let hash = if frozen { combine_frozen(hashes.into_iter(), seed) } else { 0 };
            Word::reference(put(s, None, &set_image(frozen, len, root, hash), true)?)
        }
        Input::Record { type_name, fields } => {
            let tn = build(s, &Input::Str(type_name.clone()))?;
            let names: Vec<Input> = fields.iter().map(|(n, _)| Input::Str(n.clone())).collect();
            let nw = build(s, &Input::Tuple(names))?;
            let mut vs = Vec::with_capacity(fields.len());
            for (n, v) in fields {
                vs.push(build(s, v).map_err(|e| e.at(&format!(".{n}")))?);
            }
            words_object(s, ty::RECORD, &[tn, nw], vs.len(), &vs)?
        }
        Input::Stored(w) => {
            s.share(*w)?;
            *w
        }
    })
}

/// A short rendering of a key input for error paths.
fn brief(k: &Input) -> String {
    match k {
        Input::Str(s) => format!("{s:?}"),
        Input::Int(v) => v.to_string(),
        Input::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Input::None => "None".to_string(),
        Input::Float(f) => f.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// The hashes of `keys`, or an error naming the first unhashable one.
fn hashes<S: Store>(
    s: &S,
    keys: &mut dyn Iterator<Item = &Input>,
    what: &dyn Fn(&Input) -> String,
) -> Result<Vec<u64>, InputError> {
    let cx = Ctx { mem: s.mem(), seed: s.seed() };
    keys.map(|k| match k.to_key(cx)? {
        Some(key) => Ok(key.hash(cx.seed)),
        None => Err(InputError::Unhashable { type_name: k.type_name(), path: what(k) }),
    })
    .collect()
}

/// Whether two of the keys are equal (which the bulk builders leave to the general path).
fn has_duplicates<S: Store>(s: &S, keys: &[&Input], by_hash: &[(u64, usize)]) -> Result<bool, InputError> {
    let cx = Ctx { mem: s.mem(), seed: s.seed() };
    for w in by_hash.windows(2) {
        if w[0].0 == w[1].0 {
            let a = keys[w[0].1].to_key(cx)?;
            let b = keys[w[1].1].to_key(cx)?;
            if let (Some(a), Some(b)) = (a, b) {
                if a.equals(&b) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// `h` with its nibbles in reverse order: sorting by it groups keys by the trie slot of
/// level 0, then of level 1 within those, and so on.
pub(crate) fn trie_order(h: u64) -> u64 {
    (((h & 0x0f0f_0f0f_0f0f_0f0f) << 4) | ((h >> 4) & 0x0f0f_0f0f_0f0f_0f0f)).swap_bytes()
}

/// Builds a dict from pairs with no repeated key bottom up: each trie node and vector
/// node is written once. `None` when a key repeats (the general path handles it).
fn bulk_dict<S: Store>(s: &mut S, pairs: &[(Input, Input)]) -> Result<Option<Word>, InputError> {
    if pairs.len() < 2 {
        return Ok(None);
    }
    let hs = hashes(s, &mut pairs.iter().map(|(k, _)| k), &|k| format!("[{}]", brief(k)))?;
    let mut by_hash: Vec<(u64, usize)> = hs.iter().enumerate().map(|(i, &h)| (trie_order(h), i)).collect();
    by_hash.sort_unstable();
    let keys: Vec<&Input> = pairs.iter().map(|(k, _)| k).collect();
    if has_duplicates(s, &keys, &by_hash)? {
        return Ok(None);
    }
    let mut words = Vec::with_capacity(2 * pairs.len());
    for (k, v) in pairs {
        let at = |e: InputError| e.at(&format!("[{}]", brief(k)));
        let vw = build(s, v).map_err(at)?;
        let kw = build(s, k).map_err(at)?;
        words.push(kw.0);
        words.push(vw.0);
    }
    Ok(Some(dict_of_words(s, &hs, &by_hash, &words)?))
}

/// A str as a word: inline when short, else a new blob.
fn str_word<S: Store>(s: &mut S, t: &str) -> Result<Word, InputError> {
    match Word::short_str(t) {
        Some(w) => Ok(w),
        None => blob(s, ty::STR, t.as_bytes()),
    }
}

/// The dict object over entries already stored: `words` holds key and value words in
/// insertion order, `hs` each key's hash, `by_hash` the entries in trie order.
fn dict_of_words<S: Store>(
    s: &mut S,
    hs: &[u64],
    by_hash: &[(u64, usize)],
    words: &[u64],
) -> Result<Word, InputError> {
    let entries: Vec<(u64, [u64; 3])> =
        by_hash.iter().map(|&(_, i)| (hs[i], [words[2 * i], words[2 * i + 1], i as u64])).collect();
    let map = champ::build(s, &entries, true)?;
    let order = Vector::build(s, 2, words)?;
    Ok(Word::reference(put(s, None, &dict_image(hs.len() as u64, map, &order), true)?))
}

/// [`bulk_dict`] for packed str pairs, reading each key and value in place. `None` when a
/// key repeats (the general path handles it).
fn bulk_str_dict<S: Store>(s: &mut S, t: &StrPairs) -> Result<Option<Word>, InputError> {
    if t.len() < 2 {
        return Ok(None);
    }
    let seed = s.seed();
    let hs: Vec<u64> = (0..t.len()).map(|i| Key::Str(t.key(i).into()).hash(seed)).collect();
    let mut by_hash: Vec<(u64, usize)> = hs.iter().enumerate().map(|(i, &h)| (trie_order(h), i)).collect();
    by_hash.sort_unstable();
    if by_hash.windows(2).any(|w| w[0].0 == w[1].0 && t.key(w[0].1) == t.key(w[1].1)) {
        return Ok(None);
    }
    let mut words = Vec::with_capacity(2 * t.len());
    for i in 0..t.len() {
        let at = |e: InputError| e.at(&format!("[{:?}]", t.key(i)));
        let vw = str_word(s, t.value(i)).map_err(at)?;
        let kw = str_word(s, t.key(i)).map_err(at)?;
        words.push(kw.0);
        words.push(vw.0);
    }
    Ok(Some(dict_of_words(s, &hs, &by_hash, &words)?))
}

/// Builds a set with no repeated element bottom up. `None` when an element repeats.
fn bulk_set<S: Store>(s: &mut S, items: &[Input], frozen: bool) -> Result<Option<Word>, InputError> {
    if items.len() < 2 {
        return Ok(None);
    }
    let hs = hashes(s, &mut items.iter(), &|_| " (a set element)".to_string())?;
    let mut by_hash: Vec<(u64, usize)> = hs.iter().enumerate().map(|(i, &h)| (trie_order(h), i)).collect();
    by_hash.sort_unstable();
    let keys: Vec<&Input> = items.iter().collect();
    if has_duplicates(s, &keys, &by_hash)? {
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(items.len());
    for &(_, i) in &by_hash {
        entries.push((hs[i], [build(s, &items[i])?.0, 0, 0]));
    }
    let root = champ::build(s, &entries, false)?;
    let hash = if frozen { combine_frozen(hs.iter().copied(), s.seed()) } else { 0 };
    Ok(Some(Word::reference(put(s, None, &set_image(frozen, items.len() as u64, root, hash), true)?)))
}
