//! Corruption: byte flips and truncations of a heap file.
//!
//! What is asserted is what is true of a file whose objects carry no checksums:
//! 1. every truncation below the length the committed state needs is reported by `check`;
//! 2. every flip of a byte the structure depends on — the file header, the meta slots, pool
//!    records, a large arena's bitmaps and run lengths, a huge object's header, object type
//!    bytes, lengths and counts, references, trie bitmaps, rope and vector counts — is
//!    reported by `check` (as corruption, or for a meta slot a torn write could explain, as
//!    a warning). Flips of payload (str and bytes contents, inline scalar words, float
//!    bits) may pass, as may a few flips that turn one valid structure into another, each
//!    named by the classifier below with the reason;
//! 3. no step panics or hangs: opening, reading everything, list and dict changes by
//!    index and key, collecting, compacting and checking each damaged file return errors.
//!
//! Flips are classified by walking the pristine file's layout (`docs/design.md`): the
//! control arena, every arena's side metadata, every reachable object's fields.

mod common;

use common::mix;
use eterna::alloc::block_size;
use eterna::check::{check, CheckError};
use eterna::format::{meta_slot_offset, Header, Meta, ARENA, FORMAT_VERSION, META_LEN, PAGE, POOL};
use eterna::object::layout::ty;
use eterna::object::walk::reachable;
use eterna::object::word::{Imm, Word};
use eterna::{Heap, Input, Key, Options, Value};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

fn k(s: &str) -> Key<'static> {
    Key::Str(s.to_string().into())
}

/// A heap holding every kind of object, a shared value, a large and a huge blob; closed
/// cleanly. Its hash
/// seed is fixed, so that its layout is the same in every run.
fn sample(path: &Path) {
    Heap::open(path, Options::default()).unwrap().close().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    Header { version: FORMAT_VERSION, seed: 0x5eed_5eed_5eed_5eed }.encode(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    let heap = Heap::open(path, Options::default()).unwrap();
    let mut w = heap.write().unwrap();
    for i in 0..120i64 {
        let rec = Input::Record {
            type_name: "Point".into(),
            fields: vec![
                ("x".into(), Input::Int(i)),
                ("label".into(), Input::Str(format!("point number {i}"))),
            ],
        };
        w.set(
            &[k(&format!("key{i}"))],
            &Input::Dict(vec![
                (Input::Str("n".into()), Input::Int(i * 1_000_000_007)),
                (Input::Str("s".into()), Input::Str("some text ".repeat((i % 40) as usize))),
                (Input::Str("l".into()), Input::List((0..(i % 40)).map(Input::Int).collect())),
                (Input::Str("t".into()), Input::Tuple(vec![Input::Float(i as f64 / 3.0), Input::None])),
                (
                    Input::Str("set".into()),
                    Input::Set((0..(i % 5)).map(|j| Input::Str(format!("element {j}"))).collect()),
                ),
                (Input::Str("fs".into()), Input::FrozenSet(vec![Input::Int(i), Input::Str(format!("f{i}"))])),
                (Input::Str("r".into()), rec),
                (Input::Str("big".into()), Input::BigInt(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, (i % 100) as u8])),
                (Input::Str("nan".into()), Input::Float(f64::NAN)),
            ]),
        )
        .unwrap();
    }
    // A long list (a rope with inner nodes) and a dict with deletions (order tombstones).
    w.set(&[k("long")], &Input::List((0..2000).map(Input::Int).collect())).unwrap();
    let pairs = (0..600).map(|i| (Input::Str(format!("entry {i}")), Input::Int(i))).collect();
    w.set(&[k("wide")], &Input::Dict(pairs)).unwrap();
    for i in (0..600).step_by(7) {
        w.del(&[k("wide"), k(&format!("entry {i}"))]).unwrap();
    }
    // A value stored in two places: the shared set is not empty.
    let again = w.share(&[k("key3")]).unwrap().unwrap();
    w.set(&[k("again")], &again).unwrap();
    w.set(&[k("blob")], &Input::Bytes(vec![7u8; 200_000])).unwrap();
    w.set(&[k("huge")], &Input::Bytes(vec![9u8; 1_100_000])).unwrap();
    w.commit().unwrap();
    heap.close().unwrap();
}

// ----- what a flip hits ------------------------------------------------------------------

/// What a flip is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expect {
    /// `check` must report it.
    Must(&'static str),
    /// It may pass: payload, or one valid structure turned into another.
    May(&'static str),
}

/// What a byte of the pristine file is.
#[derive(Debug, Clone, Copy)]
enum Site {
    FileHeader,
    Meta,
    ArenaKind,
    PoolDescriptor,
    PoolBitmap,
    LargeInuse,
    LargeResident(u32),
    LargeRunLen,
    HugeHeader,
    /// Byte `at` of the reachable object at `off`.
    Object {
        off: u64,
        at: usize,
    },
}

struct Pristine {
    bytes: Vec<u8>,
    sites: HashMap<usize, Site>,
    /// Every reachable object: offset, size.
    objects: BTreeMap<u64, u64>,
    /// Runs of each large arena: (first page, pages).
    runs: HashMap<u32, Vec<(u64, u64)>>,
    /// For each node of a dict's order vector: the index of its first pair, the pairs each
    /// of its slots spans, and its dict's count.
    vector_nodes: HashMap<u64, (u64, u64, u64)>,
    /// For each dict: 1 + the index of its last live pair, and the end of its last leaf.
    dict_orders: HashMap<u64, (u64, u64)>,
    /// Bytes of the file the committed state needs.
    needed: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl Pristine {
    fn new(bytes: Vec<u8>) -> Pristine {
        let mut sites = HashMap::new();
        let mut mark = |from: usize, len: usize, s: Site| {
            for i in from..from + len {
                sites.insert(i, s);
            }
        };
        mark(0, 64, Site::FileHeader);
        let metas = [0, 1].map(|i| {
            let at = meta_slot_offset(i) as usize;
            mark(at, META_LEN, Site::Meta);
            Meta::decode(&bytes[at..at + META_LEN]).unwrap()
        });
        let meta = if metas[1].txn_id > metas[0].txn_id { metas[1] } else { metas[0] };
        assert_eq!(meta.flags, 0, "the sample was closed cleanly");
        let mut runs = HashMap::new();
        let mut a = 1u64;
        while a <= meta.arenas {
            let base = (a * ARENA) as usize;
            match bytes[base] {
                0 => {}
                1 => {
                    mark(base, 1, Site::ArenaKind);
                    for i in 1..64 {
                        let rec = base + 64 + 144 * i;
                        mark(rec, 4, Site::PoolDescriptor);
                        mark(rec + 16, 128, Site::PoolBitmap);
                    }
                }
                2 => {
                    mark(base, 1, Site::ArenaKind);
                    mark(base + 64, 32, Site::LargeInuse);
                    mark(base + 96, 32, Site::LargeResident(a as u32));
                    mark(base + 512, 512, Site::LargeRunLen);
                    let mut r = Vec::new();
                    for p in 1..256 {
                        let n = u16_at(&bytes, base + 512 + 2 * p) as u64;
                        if n > 0 {
                            r.push((p as u64, n));
                        }
                    }
                    runs.insert(a as u32, r);
                }
                3 => {
                    mark(base, 16, Site::HugeHeader);
                    let span = u32_at(&bytes, base + 4) as u64;
                    a += span;
                    continue;
                }
                k => panic!("arena {a} of kind {k}"),
            }
            a += 1;
        }
        let objects: BTreeMap<u64, u64> =
            reachable(&bytes, &[Word(meta.root), Word(meta.shared)]).unwrap().into_iter().collect();
        for (&off, &size) in &objects {
            // Blob payloads are not worth a site each.
            let head = match bytes[off as usize] {
                ty::STR | ty::BYTES | ty::BIGINT => 8,
                ty::STR_SHORT | ty::BYTES_SHORT => 2,
                _ => size as usize,
            };
            for at in 0..head {
                sites.insert(off as usize + at, Site::Object { off, at });
            }
        }
        let (mut vector_nodes, mut dict_orders) = (HashMap::new(), HashMap::new());
        for (&off, _) in objects.iter().filter(|(&o, _)| bytes[o as usize] == ty::DICT) {
            let o = off as usize;
            let (depth, root, count) = (bytes[o + 1] as u32, u64_at(&bytes, o + 24), u64_at(&bytes, o + 32));
            let mut live_end = 0;
            let mut stack = vec![(root, depth, 0u64)];
            while let Some((node, level, first)) = stack.pop() {
                if node == 0 || first >= count {
                    continue;
                }
                let span = 16 * 32u64.pow(level) / 32;
                vector_nodes.insert(node, (first, span.max(1), count));
                for s in 0..32u64 {
                    let w = u64_at(&bytes, node as usize + 8 + 8 * s as usize);
                    if level == 0 {
                        if s % 2 == 0 && w != 0 && first + s / 2 < count {
                            live_end = live_end.max(first + s / 2 + 1);
                        }
                    } else {
                        stack.push((w, level - 1, first + s * span));
                    }
                }
            }
            dict_orders.insert(off, (live_end, count.div_ceil(16) * 16));
        }
        Pristine { bytes, sites, objects, runs, vector_nodes, dict_orders, needed: (meta.arenas + 1) * ARENA }
    }

    /// What flipping bit `bit` of byte `at` is expected to do.
    fn expect(&self, at: usize, bit: u8) -> Expect {
        let b = &self.bytes;
        let new = b[at] ^ (1 << bit);
        match self.sites.get(&at) {
            None => Expect::May("payload, or bytes nothing reads"),
            Some(Site::FileHeader) => Expect::Must("file header"),
            // Corruption, or a warning when a torn write could explain the slot.
            Some(Site::Meta) => Expect::Must("meta slot"),
            Some(Site::ArenaKind) => Expect::Must("arena kind"),
            Some(Site::PoolDescriptor) => {
                let rec = at - (at % ARENA as usize - 64) % 144;
                let empty = [0, 1, 3];
                if at == rec + 1 && b[rec] == 0 && empty.contains(&b[at]) && empty.contains(&new) {
                    Expect::May("one empty pool state for another (a hole, spare or fresh pool)")
                } else {
                    Expect::Must("pool descriptor")
                }
            }
            Some(Site::PoolBitmap) => Expect::Must("pool bitmap"),
            Some(Site::LargeInuse) => Expect::Must("large arena in-use bitmap"),
            Some(Site::LargeResident(a)) => {
                // A free page may or may not still hold its disk blocks.
                let page = (at as u64 - (*a as u64 * ARENA + 96)) * 8 + bit as u64;
                let used = page == 0 || self.runs[a].iter().any(|&(p, n)| (p..p + n).contains(&page));
                if used {
                    Expect::Must("resident bit of a page in use")
                } else {
                    Expect::May("resident bit of a free page")
                }
            }
            Some(Site::LargeRunLen) => Expect::Must("run length"),
            Some(Site::HugeHeader) => {
                if (1..4).contains(&(at % ARENA as usize)) {
                    Expect::May("reserved byte of an arena header")
                } else {
                    Expect::Must("huge object header")
                }
            }
            Some(&Site::Object { off, at: i }) => self.expect_object(off, i, new),
        }
    }

    /// A flip of byte `i` of the object at `off` to `new`.
    fn expect_object(&self, off: u64, i: usize, new: u8) -> Expect {
        let b = &self.bytes;
        let o = off as usize;
        let t = b[o];
        let size = self.objects[&off];
        let word = |at: usize| {
            let mut w = b[o + at..o + at + 8].to_vec();
            w[i - at] = new;
            Word(u64::from_le_bytes(w.try_into().unwrap()))
        };
        let slot = |at: usize| i >= at && i < at + 8;
        // The object's new size, if the flip changes a length: a flip that keeps it in the
        // same block is a different value of a different length.
        let resized = |new_size: u64, canonical: bool| {
            if canonical && block_size(new_size as usize) == block_size(size as usize) {
                Expect::May("a length within the block")
            } else {
                Expect::Must("a length")
            }
        };
        if i == 0 {
            let blobs = [ty::STR, ty::BYTES, ty::BIGINT];
            return if blobs.contains(&t) && blobs.contains(&new) {
                Expect::May("a long str, bytes or int read as another of the three")
            } else if (t, new) == (ty::FLOAT, ty::TUPLE) {
                Expect::May("a boxed float read as an empty tuple (the padding is its length)")
            } else if [ty::LIST, ty::SET, ty::FROZENSET].contains(&t)
                && [ty::LIST, ty::SET, ty::FROZENSET].contains(&new)
                && u64_at(b, o + 8) == 0
            {
                Expect::May("an empty container read as another empty container")
            } else {
                Expect::Must("type byte")
            };
        }
        if padding(t).iter().any(|&(from, to)| (from..to).contains(&i)) || (t == ty::SET && i >= 24) {
            return Expect::Must("padding");
        }
        match t {
            ty::STR | ty::BYTES | ty::BIGINT if i >= 4 => {
                let mut h = b[o..o + 8].to_vec();
                h[i] = new;
                let n = u32_at(&h, 4) as u64;
                resized(8 + n, t == ty::BIGINT || n >= 256)
            }
            ty::STR_SHORT | ty::BYTES_SHORT => resized(2 + new as u64, new >= 8),
            ty::TUPLE | ty::RECORD if (4..8).contains(&i) => {
                let mut h = b[o..o + 8].to_vec();
                h[i] = new;
                let n = u32_at(&h, 4) as u64;
                resized(if t == ty::TUPLE { 8 + 8 * n } else { 24 + 8 * n }, true)
            }
            ty::TUPLE if i >= 8 => self.value_word(word(8 + (i - 8) / 8 * 8)),
            ty::RECORD if slot(8) => match word(8).decode() {
                Imm::Str(..) => Expect::May("another type name"),
                Imm::Ref(x) if self.objects.contains_key(&x) && self.bytes[x as usize] == ty::STR_SHORT => {
                    Expect::May("another type name")
                }
                _ => Expect::Must("record type name"),
            },
            ty::RECORD if slot(16) => match word(16).decode() {
                Imm::Ref(x)
                    if self.objects.contains_key(&x) && self.bytes[x as usize] == ty::TUPLE && {
                        let n = u32_at(b, x as usize + 4) as usize;
                        n == u32_at(b, o + 4) as usize
                            && (0..n).all(|j| match Word(u64_at(b, x as usize + 8 + 8 * j)).decode() {
                                Imm::Str(..) => true,
                                Imm::Ref(y) => {
                                    self.objects.contains_key(&y)
                                        && [ty::STR, ty::STR_SHORT].contains(&b[y as usize])
                                }
                                _ => false,
                            })
                    } =>
                {
                    Expect::May("another tuple of as many field names")
                }
                _ => Expect::Must("record field names"),
            },
            ty::RECORD if i >= 24 => self.value_word(word(24 + (i - 24) / 8 * 8)),
            ty::FLOAT if i >= 8 => Expect::May("float bits"),
            ty::DICT if i == 1 => Expect::Must("order vector depth"),
            ty::DICT if i >= 32 => {
                // The order count over trailing tombstones: pairs past it are zero, and a
                // tombstone at its end is a deleted last entry.
                let mut c = b[o + 32..o + 40].to_vec();
                c[i - 32] = new;
                let c = u64::from_le_bytes(c.try_into().unwrap());
                let (live_end, room) = self.dict_orders[&off];
                if c >= live_end.max(1) && c <= room {
                    Expect::May("an order count over tombstones")
                } else {
                    Expect::Must("dict order count")
                }
            }
            ty::DICT if i >= 8 => Expect::Must("dict header"),
            ty::LIST if i == 1 => Expect::Must("rope height"),
            ty::LIST if i >= 8 => Expect::Must("list header"),
            ty::SET | ty::FROZENSET if (8..24).contains(&i) => Expect::Must("set header"),
            ty::FROZENSET if i >= 24 => Expect::Must("frozenset hash"),
            ty::MAP_NODE | ty::SET_NODE if (2..6).contains(&i) => Expect::Must("trie bitmaps"),
            ty::MAP_NODE | ty::SET_NODE => {
                let nn = u16_at(b, o + 4).count_ones() as usize;
                if i < 8 + 8 * nn {
                    Expect::Must("trie child")
                } else if t == ty::MAP_NODE {
                    // Keys and values are also in the dict's order vector; the order index
                    // names the pair.
                    Expect::Must("map entry")
                } else {
                    self.set_element(word(8 + (i - 8) / 8 * 8))
                }
            }
            ty::MAP_COLLISION | ty::SET_COLLISION => Expect::Must("collision node"),
            ty::VEC_LEAF if i == 1 => Expect::Must("vector leaf width"),
            ty::VEC_LEAF | ty::VEC_INNER if i >= 8 => {
                let (first, span, count) = self.vector_nodes[&off];
                let per_slot = if t == ty::VEC_LEAF { 1 } else { 2 * span };
                if first + (i as u64 - 8) / 8 * per_slot / 2 >= count {
                    Expect::Must("a vector slot past the count")
                } else if t == ty::VEC_LEAF {
                    Expect::Must("order pair")
                } else {
                    Expect::Must("vector child")
                }
            }
            ty::ROPE_LEAF if i == 2 || i == 3 => Expect::Must("rope leaf count"),
            ty::ROPE_LEAF if i >= 8 => {
                let n = u16_at(b, o + 2) as usize;
                if i < 8 + 8 * n {
                    self.value_word(word(8 + (i - 8) / 8 * 8))
                } else {
                    Expect::Must("a rope leaf's unused slot")
                }
            }
            ty::ROPE_INNER if i == 2 || i == 3 => Expect::Must("rope node count"),
            ty::ROPE_INNER if i >= 8 => {
                let n = u16_at(b, o + 2) as usize;
                if i < 8 + 16 * n {
                    Expect::Must("rope child or count")
                } else {
                    Expect::Must("a rope node's unused slot")
                }
            }
            _ => Expect::Must("other header byte"),
        }
    }

    /// A value slot now holding `w`.
    fn value_word(&self, w: Word) -> Expect {
        match w.decode() {
            Imm::Empty => Expect::Must("a value slot emptied"),
            Imm::Invalid => Expect::Must("a value slot of an invalid word"),
            Imm::Ref(x) => match self.objects.get(&x) {
                Some(_) if is_value(self.bytes[x as usize]) => Expect::May("a reference to another value"),
                _ => Expect::Must("a reference to no value"),
            },
            _ => Expect::May("an inline value"),
        }
    }

    /// A set element now holding `w` (its hash may still lead to its slot).
    fn set_element(&self, w: Word) -> Expect {
        match w.decode() {
            Imm::Empty | Imm::Invalid => Expect::Must("a set element of an invalid word"),
            Imm::Ref(x) if !self.objects.contains_key(&x) => {
                Expect::Must("a set element referring to no value")
            }
            _ => Expect::May("a set element changed (its hash may still lead to its slot)"),
        }
    }
}

/// Header bytes every writer leaves zero (`docs/design.md`, "Heap objects"): `(from, to)`.
fn padding(t: u8) -> &'static [(usize, usize)] {
    match t {
        ty::STR | ty::BYTES | ty::BIGINT | ty::TUPLE | ty::RECORD | ty::MAP_COLLISION | ty::SET_COLLISION => {
            &[(1, 4)]
        }
        ty::FLOAT | ty::SET | ty::FROZENSET | ty::VEC_INNER => &[(1, 8)],
        ty::DICT | ty::LIST | ty::VEC_LEAF => &[(2, 8)],
        ty::MAP_NODE | ty::SET_NODE => &[(1, 2), (6, 8)],
        ty::ROPE_LEAF | ty::ROPE_INNER => &[(1, 2), (4, 8)],
        _ => &[],
    }
}

fn is_value(t: u8) -> bool {
    matches!(t, 1..=12)
}

// ----- running a damaged file ------------------------------------------------------------

/// What `check` said: corruption, a warning, or nothing.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Corrupt,
    Warned,
    Clean,
}

fn verdict(path: &Path) -> Verdict {
    match check(path) {
        Err(CheckError::Corrupt(_)) => Verdict::Corrupt,
        Err(CheckError::Io(e)) => panic!("check could not read {}: {e}", path.display()),
        Ok(r) if !r.warnings.is_empty() => Verdict::Warned,
        Ok(_) => Verdict::Clean,
    }
}

/// Reads every value under `v`; returns how many it saw, or the first error.
fn read_all(v: &Value<'_>, depth: usize) -> Result<u64, String> {
    if depth > 200 {
        return Err("too deep".into());
    }
    let e = |e: eterna::Corruption| e.to_string();
    let mut n = 1;
    match v {
        Value::Dict(d) => {
            for (key, val) in d.items().map_err(e)? {
                n += read_all(&key, depth + 1)? + read_all(&val, depth + 1)?;
            }
        }
        Value::List(l) => {
            for x in l.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
            let len = l.len().map_err(e)? as i64;
            for i in [0, len / 2, len - 1, -1] {
                l.get(i).map_err(e)?;
            }
        }
        Value::Set(s) | Value::FrozenSet(s) => {
            for x in s.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        Value::Tuple(t) => {
            for x in t.items().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        Value::Record(r) => {
            r.type_name().map_err(e)?;
            for (_, x) in r.fields().map_err(e)? {
                n += read_all(&x, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(n)
}

/// Everything a program might do with a damaged file: open, read everything, look keys
/// up, change dicts, sets and lists by key and by index (deletes and inserts at the front,
/// the middle and the end), collect, compact, check. Errors are fine; panics are not.
fn exercise(path: &Path, writes: bool) {
    if let Ok(heap) = Heap::open(path, Options { readonly: true, ..Options::default() }) {
        if let Ok(r) = heap.read() {
            if let Ok(root) = r.root() {
                let _ = read_all(&Value::Dict(root), 0);
            }
            for key in [k("key5"), k("long"), k("wide"), k("absent")] {
                let _ = r.get(&[key]);
            }
            let _ = r.get(&[k("wide"), k("entry 8")]);
            let _ = r.get(&[k("long"), Key::Int(1999)]);
        }
    }
    let _ = check(path);
    if !writes {
        return;
    }
    let Ok(heap) = Heap::open(path, Options { auto_compact: false, ..Options::default() }) else { return };
    type Op<'a> = &'a dyn Fn(&mut eterna::WriteTxn<'_>) -> Result<(), eterna::TxnError>;
    let ops: [Op<'_>; 12] = [
        &|w| w.set(&[k("key5"), k("n")], &Input::Str("changed after damage".into())),
        &|w| w.del(&[k("key7")]),
        &|w| w.del(&[k("wide"), k("entry 9")]),
        &|w| w.set(&[k("wide"), k("entry 10")], &Input::Int(-1)),
        &|w| w.set(&[k("wide"), k("a new entry")], &Input::Int(-2)),
        &|w| w.set_add(&[k("key9"), k("set")], &k("a new element")).map(|_| ()),
        &|w| w.del(&[k("key9"), k("set"), k("element 1")]),
        &|w| w.del(&[k("long"), Key::Int(1000)]),
        &|w| w.splice(&[k("long")], 0, 1, &[Input::Int(-3), Input::Int(-4)]),
        &|w| w.splice(&[k("long")], 1990, 5, &[]),
        &|w| w.append(&[k("key39"), k("l")], &Input::Int(5)),
        &|w| w.set(&[k("key39"), k("l"), Key::Int(-1)], &Input::Int(6)),
    ];
    // Each change in a transaction of its own (a failed one poisons its transaction),
    // every other one committed.
    for (n, op) in ops.iter().enumerate() {
        if let Ok(mut w) = heap.write() {
            if op(&mut w).is_ok() && n % 2 == 0 {
                let _ = w.commit();
            }
        }
    }
    let _ = heap.gc();
    let _ = heap.compact();
    let _ = heap.close();
}

/// Runs `f`, turning a panic into a test failure that names `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}");
        }
    }
}

/// A hang is a failure too: give up loudly rather than wait for CI's limit.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("corruption test hung");
        std::process::abort();
    });
}

fn damaged_copy(dir: &Path, pristine: &[u8], flips: &[(usize, u8)]) -> std::path::PathBuf {
    let mut bytes = pristine.to_vec();
    for &(at, bit) in flips {
        bytes[at] ^= 1 << bit;
    }
    let p = dir.join("damaged");
    let _ = std::fs::remove_file(dir.join("damaged-lock"));
    std::fs::write(&p, &bytes).unwrap();
    p
}

/// Structural flips `check` missed, by what they hit (each with one example).
type Misses = BTreeMap<&'static str, (u32, String)>;

fn record_miss(misses: &mut Misses, what: &'static str, at: usize, bit: u8, p: &Pristine) {
    let e = misses.entry(what).or_insert((0, String::new()));
    e.0 += 1;
    if e.1.is_empty() {
        e.1 = format!("bit {bit} of byte {at:#x} ({:?})", p.sites.get(&at));
    }
}

#[test]
fn truncations_are_corruption() {
    watchdog(Duration::from_secs(300));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let pristine = std::fs::read(&path).unwrap();
    let needed = Pristine::new(pristine.clone()).needed;
    assert!(pristine.len() as u64 >= needed);
    let mut seed = 3u64;
    let mut cuts: Vec<u64> = vec![
        0,
        1,
        7,
        8,
        63,
        64,
        4095,
        4096,
        4096 + 127,
        3 * 4096,
        ARENA - 1,
        ARENA,
        ARENA + 5000,
        needed - 1,
    ];
    for a in 1..needed / ARENA {
        cuts.extend([a * ARENA - 1, a * ARENA, a * ARENA + PAGE, a * ARENA + POOL + 17]);
    }
    cuts.extend((0..40).map(|_| mix(&mut seed) % needed));
    for cut in cuts {
        let damaged = dir.path().join("cut");
        std::fs::write(&damaged, &pristine[..cut as usize]).unwrap();
        let what = format!("a file cut to {cut} bytes");
        assert_eq!(no_panic(&what, || verdict(&damaged)), Verdict::Corrupt, "{what} passed check");
        no_panic(&what, || exercise(&damaged, cut % 3 == 0));
    }
}

#[test]
fn structural_flips_are_reported_and_no_flip_panics() {
    watchdog(Duration::from_secs(600));
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    assert_eq!(verdict(&path), Verdict::Clean);
    let p = Pristine::new(std::fs::read(&path).unwrap());
    // Flips spread over every kind of structural site, then payload and unused bytes.
    let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (&at, s) in &p.sites {
        let kind = match s {
            Site::Object { off, at: i } => {
                format!("object type {} byte {}", p.bytes[*off as usize], i.min(&16))
            }
            other => format!("{other:?}").split('(').next().unwrap().to_string(),
        };
        by_kind.entry(kind).or_default().push(at);
    }
    for v in by_kind.values_mut() {
        v.sort_unstable();
    }
    let used: Vec<usize> =
        (0..p.bytes.len()).step_by(64).filter(|&i| p.bytes[i..i + 64].iter().any(|&b| b != 0)).collect();
    let mut seed = 7u64;
    let mut flips: Vec<(usize, u8)> = Vec::new();
    for sites in by_kind.values() {
        for _ in 0..3 {
            let at = sites[(mix(&mut seed) % sites.len() as u64) as usize];
            flips.push((at, (mix(&mut seed) % 8) as u8));
        }
    }
    for _ in 0..150 {
        let at = used[(mix(&mut seed) % used.len() as u64) as usize] + (mix(&mut seed) % 64) as usize;
        flips.push((at, (mix(&mut seed) % 8) as u8));
    }
    let (mut must, mut may, mut misses) = (0, 0, Misses::new());
    for &(at, bit) in &flips {
        let expect = p.expect(at, bit);
        let damaged = damaged_copy(dir.path(), &p.bytes, &[(at, bit)]);
        let what = format!("bit {bit} of byte {at:#x} ({expect:?})");
        let v = no_panic(&what, || verdict(&damaged));
        match expect {
            Expect::Must(kind) => {
                must += 1;
                if v == Verdict::Clean {
                    record_miss(&mut misses, kind, at, bit, &p);
                }
            }
            Expect::May(_) => may += 1,
        }
        // Every file is also opened, read, changed, collected and compacted.
        no_panic(&what, || exercise(&damaged, true));
    }
    // Several flips at once, anywhere in the data: errors, never panics.
    for round in 0..30 {
        let flips: Vec<(usize, u8)> = (0..2 + round % 5)
            .map(|_| {
                (
                    used[(mix(&mut seed) % used.len() as u64) as usize] + (mix(&mut seed) % 64) as usize,
                    (mix(&mut seed) % 8) as u8,
                )
            })
            .collect();
        let damaged = damaged_copy(dir.path(), &p.bytes, &flips);
        no_panic(&format!("flips {flips:?}"), || exercise(&damaged, true));
    }
    println!(
        "{} flips: {must} structural, {may} payload or ambiguous; {} structural missed; {:.1} s",
        flips.len(),
        misses.values().map(|m| m.0).sum::<u32>(),
        started.elapsed().as_secs_f64()
    );
    assert!(misses.is_empty(), "check missed structural flips: {misses:#?}");
}

/// Every bit of every structural byte of the sample (slow: run by hand with
/// `cargo test --release --test corruption -- --ignored --nocapture`).
#[test]
#[ignore]
fn every_structural_flip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let p = Pristine::new(std::fs::read(&path).unwrap());
    let mut sites: Vec<usize> = p.sites.keys().copied().collect();
    sites.sort_unstable();
    let var =
        |name: &str, default: usize| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (start, stride) = (var("ETERNA_FLIP_START", 0), var("ETERNA_FLIP_STRIDE", 1));
    let mut misses = Misses::new();
    let mut counts: BTreeMap<Expect, (u32, u32)> = BTreeMap::new();
    for &at in sites.iter().skip(start).step_by(stride) {
        for bit in 0..8 {
            let expect = p.expect(at, bit);
            let damaged = damaged_copy(dir.path(), &p.bytes, &[(at, bit)]);
            let v = no_panic(&format!("bit {bit} of byte {at:#x}"), || verdict(&damaged));
            let c = counts.entry(expect).or_default();
            c.0 += 1;
            if v != Verdict::Clean {
                c.1 += 1;
            }
            if let (Expect::Must(kind), Verdict::Clean) = (expect, &v) {
                record_miss(&mut misses, kind, at, bit, &p);
            }
        }
    }
    for (e, (n, found)) in &counts {
        println!("{e:?}: {found} of {n} reported");
    }
    for (kind, (n, example)) in &misses {
        println!("MISSED {kind}: {n}, e.g. {example}");
    }
    assert!(misses.is_empty(), "check missed structural flips: {misses:#?}");
}

/// One flip, explained: `ETERNA_FLIP=0x104631:0 cargo test --test corruption probe_flip
/// -- --ignored --nocapture`.
#[test]
#[ignore]
fn probe_flip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    sample(&path);
    let p = Pristine::new(std::fs::read(&path).unwrap());
    if let Ok(out) = std::env::var("ETERNA_SAMPLE_OUT") {
        std::fs::write(out, &p.bytes).unwrap();
    }
    let specs = std::env::var("ETERNA_FLIP").expect("set ETERNA_FLIP=OFFSET:BIT[,OFFSET:BIT...]");
    for spec in specs.split(',').filter(|s| !s.is_empty()) {
        let (at, bit) = spec.split_once(':').unwrap();
        let at = usize::from_str_radix(at.trim_start_matches("0x"), 16).unwrap();
        let bit: u8 = bit.parse().unwrap();
        let damaged = damaged_copy(dir.path(), &p.bytes, &[(at, bit)]);
        let site = p.sites.get(&at);
        let obj = match site {
            Some(Site::Object { off, .. }) => {
                format!("object type {} of {} bytes", p.bytes[*off as usize], p.objects[off])
            }
            _ => String::new(),
        };
        println!(
            "{spec}: {site:?} {obj}: {:?} {:02x} -> {:02x}",
            p.expect(at, bit),
            p.bytes[at],
            p.bytes[at] ^ 1 << bit
        );
        println!("  check: {:?}", check(&damaged).map(|r| r.warnings));
    }
}
