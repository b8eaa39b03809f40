//! The `rust-ops` workload: N str→str entries built in one transaction, random point gets
//! from a read snapshot, and single-key committed transactions without and with a sync per
//! commit, on eterna and on its Rust peers (heed/LMDB, redb, and `std` `HashMap` as the
//! in-memory reference). One function per store; each returns its phase timings as JSON.

use crate::procmem::peak_rss_kib;
use crate::rng::Rng;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::error::Error;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

/// What a store function returns on failure.
pub type BenchResult = Result<Value, Box<dyn Error>>;

/// The stores, in report order: (name, what it is).
pub const STORES: [(&str, &str); 5] = [
    ("hashmap", "std HashMap<String, String> (in-memory reference; build and gets only)"),
    ("eterna", "eterna, the map built by one `set` of an `Input::StrDict` at root[\"data\"]"),
    ("eterna-set", "eterna, one `set` per key on the root dict (build and gets only)"),
    ("heed", "heed (LMDB), one unnamed `Database<Str, Str>`"),
    ("redb", "redb, one `TableDefinition<&str, &str>`"),
];

/// N by default.
pub const DEFAULT_N: usize = 1_000_000;
/// N under `--quick`.
pub const QUICK_N: usize = 100_000;
/// Single-key transactions per durability mode.
pub const DEFAULT_TXNS: usize = 10_000;
/// LMDB's map size: room for far more than 1M small entries.
pub const HEED_MAP_SIZE: usize = 4 << 30;

/// The sizes of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Entries built.
    pub n: usize,
    /// Random point gets (of existing keys).
    pub gets: usize,
    /// Single-key committed transactions per durability mode.
    pub txns: usize,
}

impl Params {
    /// N entries, N gets, `DEFAULT_TXNS` transactions per mode (fewer if N is small).
    pub fn for_n(n: usize) -> Params {
        Params { n, gets: n, txns: DEFAULT_TXNS.min(n) }
    }
}

/// One single-key transaction: store `value` under key number `key`.
#[derive(Debug, Clone)]
pub struct Write {
    /// Index into [`Data::keys`]; one in eleven is past the N built (an insert).
    pub key: usize,
    /// The new value.
    pub value: String,
}

/// The workload's data, the same for every store (a fixed seed).
#[derive(Debug, Clone)]
pub struct Data {
    /// `key{i:08}` for i in 0..N + N/10: the first N are built, the rest only inserted by
    /// the transactions.
    pub keys: Vec<String>,
    /// `value-{i}-xxxxxxxxxx` for the first N keys.
    pub values: Vec<String>,
    /// Key numbers (below N) to get, in order.
    pub gets: Vec<u32>,
    /// The transactions without sync.
    pub txn_none: Vec<Write>,
    /// The transactions with a sync per commit.
    pub txn_commit: Vec<Write>,
    /// The sum of the lengths of the values the gets must read.
    pub expected_get_bytes: u64,
    /// The N built key numbers in a random order, for the second build ("random order":
    /// the B-trees' worst case, where the first build's key order is their best).
    pub shuffled: Vec<u32>,
}

impl Data {
    /// The data for `p`.
    pub fn new(p: &Params) -> Data {
        let total = p.n + p.n / 10;
        let keys: Vec<String> = (0..total).map(|i| format!("key{i:08}")).collect();
        let pad = "x".repeat(10);
        let values: Vec<String> = (0..p.n).map(|i| format!("value-{i}-{pad}")).collect();
        let mut rng = Rng::new(0x5eed_0005);
        let gets: Vec<u32> = (0..p.gets).map(|_| rng.below(p.n as u64) as u32).collect();
        let expected_get_bytes = gets.iter().map(|&i| values[i as usize].len() as u64).sum();
        let writes = |tag: &str, rng: &mut Rng| -> Vec<Write> {
            (0..p.txns)
                .map(|t| {
                    let key = rng.below(total as u64) as usize;
                    Write { key, value: format!("value-{key}-{tag}{t:05}") }
                })
                .collect()
        };
        let txn_none = writes("nosync", &mut rng);
        let txn_commit = writes("commit", &mut rng);
        let mut shuffled: Vec<u32> = (0..p.n as u32).collect();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Data { keys, values, gets, txn_none, txn_commit, expected_get_bytes, shuffled }
    }

    /// What each key holds after both transaction phases (`None`: never stored), for the
    /// check after the run.
    fn final_values(&self, with_txns: bool) -> Vec<Option<&str>> {
        let mut v: Vec<Option<&str>> = self.keys.iter().map(|_| None).collect();
        for (i, val) in self.values.iter().enumerate() {
            v[i] = Some(val);
        }
        if with_txns {
            for w in self.txn_none.iter().chain(&self.txn_commit) {
                v[w.key] = Some(&w.value);
            }
        }
        v
    }
}

/// The keys whose values the check after a run reads: every transaction's key and a
/// sample of the built ones.
fn check_keys(d: &Data) -> Vec<usize> {
    let mut k: Vec<usize> = d.txn_none.iter().chain(&d.txn_commit).map(|w| w.key).collect();
    k.extend((0..d.values.len()).step_by(97));
    k.sort_unstable();
    k.dedup();
    k
}

/// Fails unless `got` holds what key `i` should.
fn check_value(d: &Data, want: &[Option<&str>], i: usize, got: Option<&str>) -> Result<(), Box<dyn Error>> {
    if got != want[i] {
        return Err(format!("{}: read {:?}, expected {:?}", d.keys[i], got, want[i]).into());
    }
    Ok(())
}

/// Fails unless the gets read every key and the expected bytes.
fn check_gets(d: &Data, found: u64, bytes: u64) -> Result<(), Box<dyn Error>> {
    if found != d.gets.len() as u64 || bytes != d.expected_get_bytes {
        return Err(format!(
            "gets found {found} of {} keys and {bytes} of {} value bytes",
            d.gets.len(),
            d.expected_get_bytes
        )
        .into());
    }
    Ok(())
}

/// Bytes `path` occupies on disk (`st_blocks * 512`).
fn disk_bytes(path: &Path) -> Result<u64, Box<dyn Error>> {
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

/// Collects one store's figures.
struct Report(Map<String, Value>);

impl Report {
    fn new(store: &str, p: &Params) -> Report {
        let mut m = Map::new();
        m.insert("store".into(), json!(store));
        m.insert("n".into(), json!(p.n));
        m.insert("gets".into(), json!(p.gets));
        m.insert("txns".into(), json!(p.txns));
        Report(m)
    }

    /// Records phase `name`: `ops` operations since `t0`.
    fn phase(&mut self, name: &str, ops: usize, t0: Instant) {
        let s = t0.elapsed().as_secs_f64();
        self.0.insert(format!("{name}_s"), json!(s));
        self.0.insert(format!("{name}_ops"), json!(ops as f64 / s));
    }

    fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.0.insert(key.into(), v.into());
    }

    fn done(mut self) -> Value {
        self.set("peak_rss_kib", peak_rss_kib());
        Value::Object(self.0)
    }
}

/// Runs store `name` (one of [`STORES`]).
pub fn run(name: &str, p: &Params) -> BenchResult {
    let d = Data::new(p);
    match name {
        "hashmap" => hashmap(p, &d),
        "eterna" => eterna(p, &d),
        "eterna-set" => eterna_set(p, &d),
        "heed" => heed(p, &d),
        "redb" => redb(p, &d),
        _ => Err(format!("unknown store {name:?}").into()),
    }
}

/// `std::collections::HashMap<String, String>`: build (cloning keys and values into owned
/// strings) and gets.
pub fn hashmap(p: &Params, d: &Data) -> BenchResult {
    let mut r = Report::new("hashmap", p);
    let t = Instant::now();
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in d.keys.iter().zip(&d.values) {
        map.insert(k.clone(), v.clone());
    }
    r.phase("build", p.n, t);

    timed_gets(&mut r, d, |k| Ok(map.get(k).map(|v| v.len() as u64)))?;
    drop(map);
    let t = Instant::now();
    let mut map: HashMap<String, String> = HashMap::new();
    for &i in &d.shuffled {
        map.insert(d.keys[i as usize].clone(), d.values[i as usize].clone());
    }
    r.phase("build_random", p.n, t);
    Ok(r.done())
}

mod et {
    //! eterna's side, apart because its names (`Durability`, `Value`) clash with the peers'.
    pub use eterna::{Durability, Heap, Input, Key, Options, Value};
}

fn eterna_open(path: &Path, durability: et::Durability) -> Result<et::Heap, Box<dyn Error>> {
    Ok(et::Heap::open(path, et::Options { durability, ..et::Options::default() })?)
}

/// The string in `v`, if it is one; an error if it is something else.
fn eterna_str<'a>(key: &str, v: &'a Option<et::Value>) -> Result<Option<&'a str>, Box<dyn Error>> {
    match v {
        Some(et::Value::Str(s)) => Ok(Some(s.as_str())),
        None => Ok(None),
        Some(other) => Err(format!("{key}: a {}, not a str", other.type_name()).into()),
    }
}

/// The dict at root["data"] of `snap`.
fn eterna_data<'s>(snap: &'s eterna::ReadTxn<'_>) -> Result<eterna::object::Dict<'s>, Box<dyn Error>> {
    match snap.get(&[et::Key::from(DATA)])? {
        Some(et::Value::Dict(dict)) => Ok(dict),
        other => Err(format!("root[{DATA:?}] is {:?}, not a dict", other.map(|v| v.type_name())).into()),
    }
}

/// Two timed passes of the gets: `gets_first` right after the build (the snapshot's pages
/// not yet touched through its mapping), then `gets` (the same keys again).
fn timed_gets(
    r: &mut Report,
    d: &Data,
    mut get: impl FnMut(&str) -> Result<Option<u64>, Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    for phase in ["gets_first", "gets"] {
        let t = Instant::now();
        let (mut found, mut bytes) = (0u64, 0u64);
        for &i in &d.gets {
            if let Some(n) = get(&d.keys[i as usize])? {
                found += 1;
                bytes += n;
            }
        }
        r.phase(phase, d.gets.len(), t);
        check_gets(d, std::hint::black_box(found), bytes)?;
    }
    Ok(())
}

/// The dict key eterna's map lives under, in the store `eterna`.
const DATA: &str = "data";

/// Stores entries `order` (key numbers) as one `Input::StrDict` at root["data"] in one
/// transaction; returns the seconds spent making the `Input`.
fn eterna_build_dict(
    heap: &et::Heap,
    d: &Data,
    order: impl Iterator<Item = usize>,
) -> Result<f64, Box<dyn Error>> {
    let t = Instant::now();
    let mut pairs = eterna::object::StrPairs::with_capacity(d.keys.len(), 0);
    for i in order {
        pairs.push(&d.keys[i], &d.values[i]);
    }
    let input = et::Input::StrDict(pairs);
    let made = t.elapsed().as_secs_f64();
    let mut w = heap.write()?;
    w.set(&[et::Key::from(DATA)], &input)?;
    w.commit()?;
    Ok(made)
}

/// Stores entries `order` (key numbers) one `set` each on the root dict, in one transaction.
fn eterna_build_keys(
    heap: &et::Heap,
    d: &Data,
    order: impl Iterator<Item = usize>,
) -> Result<(), Box<dyn Error>> {
    let mut w = heap.write()?;
    for i in order {
        w.set(&[et::Key::from(d.keys[i].as_str())], &et::Input::Str(d.values[i].clone()))?;
    }
    w.commit()?;
    Ok(())
}

/// eterna: the whole map built by one `set` of an `Input::StrDict` at root["data"] in one
/// transaction (durability `Commit`: one `fdatasync` at its commit; the timed build
/// includes making the `Input`); gets of that dict through `Dict::get` and, apart, through
/// the path API `ReadTxn::get(&["data", key])`; then the single-key transactions, each
/// setting root["data"][key], with durability `None` and `Commit`, reopening the heap for
/// each mode (untimed).
pub fn eterna(p: &Params, d: &Data) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rustops.eterna");
    let mut r = Report::new("eterna", p);

    let heap = eterna_open(&path, et::Durability::Commit)?;
    let t = Instant::now();
    let made = eterna_build_dict(&heap, d, 0..p.n)?;
    r.set("input_s", made);
    r.phase("build", p.n, t);
    r.set("disk_build_bytes", heap.stats()?.disk_bytes);

    {
        let snap = heap.read()?;
        let dict = eterna_data(&snap)?;
        timed_gets(&mut r, d, |k| {
            let v = dict.get(&et::Key::from(k))?;
            Ok(eterna_str(k, &v)?.map(|s| s.len() as u64))
        })?;
        let t = Instant::now();
        let (mut found, mut bytes) = (0u64, 0u64);
        for &i in &d.gets {
            let k = d.keys[i as usize].as_str();
            let v = snap.get(&[et::Key::from(DATA), et::Key::from(k)])?;
            if let Some(s) = eterna_str(k, &v)? {
                found += 1;
                bytes += s.len() as u64;
            }
        }
        r.phase("gets_path", p.gets, t);
        check_gets(d, found, bytes)?;
    }
    heap.close()?;

    for (phase, durability, writes) in [
        ("txn_none", et::Durability::None, &d.txn_none),
        ("txn_commit", et::Durability::Commit, &d.txn_commit),
    ] {
        let heap = eterna_open(&path, durability)?;
        let t = Instant::now();
        for w in writes {
            let mut txn = heap.write()?;
            txn.set(
                &[et::Key::from(DATA), et::Key::from(d.keys[w.key].as_str())],
                &et::Input::Str(w.value.clone()),
            )?;
            txn.commit()?;
        }
        r.phase(phase, writes.len(), t);
        heap.close()?;
    }

    let heap = eterna_open(&path, et::Durability::Commit)?;
    r.set("disk_end_bytes", heap.stats()?.disk_bytes);
    let want = d.final_values(true);
    let snap = heap.read()?;
    let dict = eterna_data(&snap)?;
    for i in check_keys(d) {
        let v = dict.get(&et::Key::from(d.keys[i].as_str()))?;
        check_value(d, &want, i, eterna_str(&d.keys[i], &v)?)?;
    }
    drop(snap);
    heap.close()?;

    let heap = eterna_open(&dir.path().join("random.eterna"), et::Durability::Commit)?;
    let t = Instant::now();
    eterna_build_dict(&heap, d, d.shuffled.iter().map(|&i| i as usize))?;
    r.phase("build_random", p.n, t);
    heap.close()?;
    Ok(r.done())
}

/// eterna built with one `WriteTxn::set` per key on the root dict, all in one transaction
/// (durability `Commit`); then the gets on the root dict. No transaction phases (the store
/// `eterna` has them).
pub fn eterna_set(p: &Params, d: &Data) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rustops.eterna");
    let mut r = Report::new("eterna-set", p);

    let heap = eterna_open(&path, et::Durability::Commit)?;
    let t = Instant::now();
    eterna_build_keys(&heap, d, 0..p.n)?;
    r.phase("build", p.n, t);
    r.set("disk_build_bytes", heap.stats()?.disk_bytes);

    let snap = heap.read()?;
    let root = snap.root()?;
    timed_gets(&mut r, d, |k| {
        let v = root.get(&et::Key::from(k))?;
        Ok(eterna_str(k, &v)?.map(|s| s.len() as u64))
    })?;
    let want = d.final_values(false);
    for i in check_keys(d) {
        let v = root.get(&et::Key::from(d.keys[i].as_str()))?;
        check_value(d, &want, i, eterna_str(&d.keys[i], &v)?)?;
    }
    drop(snap);
    heap.close()?;

    let heap = eterna_open(&dir.path().join("random.eterna"), et::Durability::Commit)?;
    let t = Instant::now();
    eterna_build_keys(&heap, d, d.shuffled.iter().map(|&i| i as usize))?;
    r.phase("build_random", p.n, t);
    heap.close()?;
    Ok(r.done())
}

/// heed (LMDB): build with one `put` per key in one write transaction (default flags: the
/// commit syncs); gets from one read transaction; the single-key transactions first with
/// `NO_SYNC` set on the environment, then with it cleared (LMDB's default commit:
/// `fdatasync` of the data file, then the meta page written through an `O_DSYNC` descriptor).
pub fn heed(p: &Params, d: &Data) -> BenchResult {
    use heed::types::Str;
    use heed::{Database, EnvFlags, EnvOpenOptions, FlagSetMode};
    let dir = tempfile::tempdir()?;
    let mut r = Report::new("heed", p);
    let mut opts = EnvOpenOptions::new();
    opts.map_size(HEED_MAP_SIZE);
    // SAFETY: the environment lives in a fresh private temporary directory that nothing
    // else opens or modifies while it is mapped, and this process opens it once.
    let env = unsafe { opts.open(dir.path()) }?;
    let mut wtxn = env.write_txn()?;
    let db: Database<Str, Str> = env.create_database(&mut wtxn, None)?;
    wtxn.commit()?;

    let t = Instant::now();
    let mut wtxn = env.write_txn()?;
    for (k, v) in d.keys.iter().zip(&d.values) {
        db.put(&mut wtxn, k, v)?;
    }
    wtxn.commit()?;
    r.phase("build", p.n, t);
    let file = dir.path().join("data.mdb");
    r.set("disk_build_bytes", disk_bytes(&file)?);

    {
        let rtxn = env.read_txn()?;
        timed_gets(&mut r, d, |k| Ok(db.get(&rtxn, k)?.map(|v| v.len() as u64)))?;
    }

    for (phase, nosync, writes) in [("txn_none", true, &d.txn_none), ("txn_commit", false, &d.txn_commit)] {
        let mode = if nosync { FlagSetMode::Enable } else { FlagSetMode::Disable };
        // SAFETY: NO_SYNC only gives up durability against a power cut (a benchmark's
        // throwaway file); this is the only thread touching the environment.
        unsafe { env.set_flags(EnvFlags::NO_SYNC, mode) }?;
        let t = Instant::now();
        for w in writes {
            let mut wtxn = env.write_txn()?;
            db.put(&mut wtxn, &d.keys[w.key], &w.value)?;
            wtxn.commit()?;
        }
        r.phase(phase, writes.len(), t);
    }
    env.force_sync()?;
    r.set("disk_end_bytes", disk_bytes(&file)?);

    let want = d.final_values(true);
    let rtxn = env.read_txn()?;
    for i in check_keys(d) {
        check_value(d, &want, i, db.get(&rtxn, &d.keys[i])?)?;
    }
    drop(rtxn);
    env.prepare_for_closing().wait();

    let dir = tempfile::tempdir()?;
    let mut opts = EnvOpenOptions::new();
    opts.map_size(HEED_MAP_SIZE);
    // SAFETY: as above: a fresh private directory, opened once.
    let env = unsafe { opts.open(dir.path()) }?;
    let mut wtxn = env.write_txn()?;
    let db: Database<Str, Str> = env.create_database(&mut wtxn, None)?;
    wtxn.commit()?;
    let t = Instant::now();
    let mut wtxn = env.write_txn()?;
    for &i in &d.shuffled {
        db.put(&mut wtxn, &d.keys[i as usize], &d.values[i as usize])?;
    }
    wtxn.commit()?;
    r.phase("build_random", p.n, t);
    env.prepare_for_closing().wait();
    Ok(r.done())
}

/// redb: build with one `insert` per key in one write transaction (`Durability::Immediate`,
/// the default); gets from one read transaction's table; the single-key transactions with
/// `Durability::None`, then `Durability::Immediate`.
pub fn redb(p: &Params, d: &Data) -> BenchResult {
    use redb::{Database, Durability, TableDefinition};
    const TABLE: TableDefinition<&str, &str> = TableDefinition::new("rustops");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rustops.redb");
    let mut r = Report::new("redb", p);
    let db = Database::create(&file)?;

    let t = Instant::now();
    let wtxn = db.begin_write()?;
    {
        let mut table = wtxn.open_table(TABLE)?;
        for (k, v) in d.keys.iter().zip(&d.values) {
            table.insert(k.as_str(), v.as_str())?;
        }
    }
    wtxn.commit()?;
    r.phase("build", p.n, t);
    r.set("disk_build_bytes", disk_bytes(&file)?);

    {
        let rtxn = db.begin_read()?;
        let table = rtxn.open_table(TABLE)?;
        timed_gets(&mut r, d, |k| Ok(table.get(k)?.map(|v| v.value().len() as u64)))?;
    }

    for (phase, durability, writes) in
        [("txn_none", Durability::None, &d.txn_none), ("txn_commit", Durability::Immediate, &d.txn_commit)]
    {
        let t = Instant::now();
        for w in writes {
            let mut wtxn = db.begin_write()?;
            wtxn.set_durability(durability);
            {
                let mut table = wtxn.open_table(TABLE)?;
                table.insert(d.keys[w.key].as_str(), w.value.as_str())?;
            }
            wtxn.commit()?;
        }
        r.phase(phase, writes.len(), t);
    }
    r.set("disk_end_bytes", disk_bytes(&file)?);

    let want = d.final_values(true);
    let rtxn = db.begin_read()?;
    let table = rtxn.open_table(TABLE)?;
    for i in check_keys(d) {
        let v = table.get(d.keys[i].as_str())?;
        check_value(d, &want, i, v.as_ref().map(|g| g.value()))?;
    }
    drop(table);
    drop(rtxn);

    let db = Database::create(dir.path().join("random.redb"))?;
    let t = Instant::now();
    let wtxn = db.begin_write()?;
    {
        let mut table = wtxn.open_table(TABLE)?;
        for &i in &d.shuffled {
            table.insert(d.keys[i as usize].as_str(), d.values[i as usize].as_str())?;
        }
    }
    wtxn.commit()?;
    r.phase("build_random", p.n, t);
    Ok(r.done())
}
