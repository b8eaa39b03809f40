//! The fixed parts of the file format: geometry constants, the file header and the two
//! meta slots. `docs/design.md` draws each structure; the offsets here are its source.

use xxhash_rust::xxh3::xxh3_64;

/// Bytes in a page: the unit of punching and of large-object runs.
pub const PAGE: u64 = 4096;
/// Bytes in a pool: the unit that holds small blocks of one size class.
pub const POOL: u64 = 16 * 1024;
/// Bytes in an arena: the unit the file grows by.
pub const ARENA: u64 = 1024 * 1024;
/// Pools in an arena (pool 0 of a small arena holds the arena's metadata).
pub const POOLS_PER_ARENA: u64 = ARENA / POOL;
/// Pages in an arena (page 0 of a large arena holds the arena's metadata).
pub const PAGES_PER_ARENA: u64 = ARENA / PAGE;

/// The current format version; files with a larger one are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Magic bytes at offset 0 of every heap file.
pub const MAGIC: [u8; 8] = *b"ETERNA\x00\x1a";

// File header, page 0 of arena 0. All integers little-endian.
const H_MAGIC: usize = 0; // [u8; 8]
const H_VERSION: usize = 8; // u32 format version
const H_PAGE: usize = 12; // u32 page size
const H_POOL: usize = 16; // u32 pool size
const H_ARENA: usize = 20; // u32 arena size
const H_SEED: usize = 24; // u64 hash seed, fixed at creation
const H_CHECKSUM: usize = 56; // u64 xxh3 of bytes 0..56
/// Bytes of the header that are meaningful (the rest of page 0 is zero).
pub const HEADER_LEN: usize = 64;

/// Offset of meta slot `i` (0 or 1): pages 1 and 2 of arena 0.
pub const fn meta_slot_offset(i: usize) -> u64 {
    PAGE * (1 + i as u64)
}
/// Bytes the control area needs on disk: the header page and the two meta pages.
pub const CONTROL_RESERVED: u64 = 3 * PAGE;

// Meta slot layout.
const M_MAGIC: usize = 0; // [u8; 8]
const M_TXN: usize = 8; // u64 transaction id; the valid slot with the larger one is current
const M_ARENAS: usize = 16; // u64 arenas in the file after arena 0
const M_ROOT: usize = 24; // u64 offset of the root object, 0 for none
const M_ARENAS_TOTAL: usize = 32; // u64 arenas ever activated
const M_ARENAS_RECLAIMED: usize = 40; // u64 arenas ever given back
const M_ARENAS_HIGH: usize = 48; // u64 most arenas active at once
const M_POOLS_TOTAL: usize = 56; // u64 pools ever taken into use
const M_POOLS_PUNCHED: usize = 64; // u64 pools ever punched out
const M_SPARE_TARGET: usize = 72; // u64 the spare policy's current target, in pools
const M_RELEASES: usize = 80; // u64 release passes run
const M_SHARED: usize = 88; // u64 word: root of the set of objects stored in more than one place
const M_FLAGS: usize = 96; // u64 flags, see `META_WRITER`
const M_GC_RUNS: usize = 104; // u32 collections run, then u32 compactions run
const M_GC_FREED: usize = 112; // u64 bytes the collector and compaction have freed
const M_CHECKSUM: usize = 120; // u64 xxh3 of bytes 0..120
/// Bytes of a meta slot that are meaningful.
pub const META_LEN: usize = 128;
const META_MAGIC: [u8; 8] = *b"ETMETA\x00\x01";
/// Meta flag: a writer had the heap open when this state was published; if that writer is
/// gone, its last transaction may have left allocations that no state reaches.
pub const META_WRITER: u64 = 1;

/// Why the fixed part of a file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not an eterna heap: the magic bytes are wrong.
    NotEterna,
    /// Written by a newer eterna.
    Version(u32),
    /// Geometry this build does not support.
    Geometry { page: u32, pool: u32, arena: u32 },
    /// The header's checksum does not match.
    Checksum,
}

/// The immutable file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32, // format version the file was written with
    pub seed: u64,    // the keyed-hash seed, fixed at creation
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Header {
    /// Encodes the header into the first [`HEADER_LEN`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        b[..HEADER_LEN].fill(0);
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(b, H_VERSION, self.version);
        put_u32(b, H_PAGE, PAGE as u32);
        put_u32(b, H_POOL, POOL as u32);
        put_u32(b, H_ARENA, ARENA as u32);
        put_u64(b, H_SEED, self.seed);
        let sum = xxh3_64(&b[..H_CHECKSUM]);
        put_u64(b, H_CHECKSUM, sum);
    }

    /// Decodes and validates a header from `b` (at least [`HEADER_LEN`] bytes).
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b[H_MAGIC..H_MAGIC + 8] != MAGIC {
            return Err(HeaderError::NotEterna);
        }
        let version = get_u32(b, H_VERSION);
        if version > FORMAT_VERSION || version == 0 {
            return Err(HeaderError::Version(version));
        }
        if get_u64(b, H_CHECKSUM) != xxh3_64(&b[..H_CHECKSUM]) {
            return Err(HeaderError::Checksum);
        }
        let (page, pool, arena) = (get_u32(b, H_PAGE), get_u32(b, H_POOL), get_u32(b, H_ARENA));
        if (page as u64, pool as u64, arena as u64) != (PAGE, POOL, ARENA) {
            return Err(HeaderError::Geometry { page, pool, arena });
        }
        Ok(Header { version, seed: get_u64(b, H_SEED) })
    }
}

/// One meta slot: the state a commit publishes. The valid slot with the larger `txn_id`
/// is the current state; the other is the previous one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub txn_id: u64,           // transaction id of this state
    pub arenas: u64,           // arenas in the file after arena 0
    pub root: u64,             // offset of the root object, 0 for none
    pub arenas_total: u64,     // arenas ever activated
    pub arenas_reclaimed: u64, // arenas ever given back
    pub arenas_highwater: u64, // most arenas active at once
    pub pools_total: u64,      // pools ever taken into use
    pub pools_punched: u64,    // pools ever punched out
    pub spare_target: u64,     // spare policy target, in pools
    pub releases: u64,         // release passes run
    pub shared: u64,           // word: root of the shared-object set, 0 for none
    pub flags: u64,            // META_WRITER or 0
    pub collections: u32,      // collections ever run (compactions included)
    pub compactions: u32,      // compactions ever run
    pub gc_freed_bytes: u64,   // bytes collections and compactions have freed
}

impl Meta {
    /// Encodes the slot into the first [`META_LEN`] bytes of `b`.
    pub fn encode(&self, out: &mut [u8]) {
        // Built apart and copied in once, so that a reader never sees a zeroed slot.
        let mut buf = [0u8; META_LEN];
        let b = &mut buf;
        b[M_MAGIC..M_MAGIC + 8].copy_from_slice(&META_MAGIC);
        put_u64(b, M_TXN, self.txn_id);
        put_u64(b, M_ARENAS, self.arenas);
        put_u64(b, M_ROOT, self.root);
        put_u64(b, M_ARENAS_TOTAL, self.arenas_total);
        put_u64(b, M_ARENAS_RECLAIMED, self.arenas_reclaimed);
        put_u64(b, M_ARENAS_HIGH, self.arenas_highwater);
        put_u64(b, M_POOLS_TOTAL, self.pools_total);
        put_u64(b, M_POOLS_PUNCHED, self.pools_punched);
        put_u64(b, M_SPARE_TARGET, self.spare_target);
        put_u64(b, M_RELEASES, self.releases);
        put_u64(b, M_SHARED, self.shared);
        put_u64(b, M_FLAGS, self.flags);
        put_u64(b, M_GC_RUNS, self.collections as u64 | (self.compactions as u64) << 32);
        put_u64(b, M_GC_FREED, self.gc_freed_bytes);
        let sum = xxh3_64(&b[..M_CHECKSUM]);
        put_u64(b, M_CHECKSUM, sum);
        out[..META_LEN].copy_from_slice(&buf);
    }

    /// The current state among two decoded slots: the valid one with the larger `txn_id`,
    /// with its slot index.
    pub fn current(slots: [Option<Meta>; 2]) -> Option<(usize, Meta)> {
        match slots {
            [Some(a), Some(b)] if b.txn_id > a.txn_id => Some((1, b)),
            [Some(a), _] => Some((0, a)),
            [None, Some(b)] => Some((1, b)),
            [None, None] => None,
        }
    }

    /// Decodes a slot; `None` when its magic or checksum is wrong (a torn or empty slot).
    ///
    /// The slot is copied once before it is checked: another process may be rewriting it
    /// while we read, and the fields must come from the very bytes the checksum covered.
    pub fn decode(slot: &[u8]) -> Option<Meta> {
        let mut copy = [0u8; META_LEN];
        copy.copy_from_slice(&slot[..META_LEN]);
        let b = &copy;
        if b[M_MAGIC..M_MAGIC + 8] != META_MAGIC || get_u64(b, M_CHECKSUM) != xxh3_64(&b[..M_CHECKSUM]) {
            return None;
        }
        Some(Meta {
            txn_id: get_u64(b, M_TXN),
            arenas: get_u64(b, M_ARENAS),
            root: get_u64(b, M_ROOT),
            arenas_total: get_u64(b, M_ARENAS_TOTAL),
            arenas_reclaimed: get_u64(b, M_ARENAS_RECLAIMED),
            arenas_highwater: get_u64(b, M_ARENAS_HIGH),
            pools_total: get_u64(b, M_POOLS_TOTAL),
            pools_punched: get_u64(b, M_POOLS_PUNCHED),
            spare_target: get_u64(b, M_SPARE_TARGET),
            releases: get_u64(b, M_RELEASES),
            shared: get_u64(b, M_SHARED),
            flags: get_u64(b, M_FLAGS),
            collections: get_u64(b, M_GC_RUNS) as u32,
            compactions: (get_u64(b, M_GC_RUNS) >> 32) as u32,
            gc_freed_bytes: get_u64(b, M_GC_FREED),
        })
    }
}

/// Whether the meta slot `slot`, whose checksum fails while the other slot is valid with
/// `txn_id` = `t`, can be a write torn by a crash rather than damage.
///
/// Slots alternate: the publish of state `t + 1` overwrites the slot that held `t - 1` (or
/// nothing, zeros, when `t` is 1). A crash in the middle of that write leaves every byte
/// of the slot either as it was or as it was being written, so each byte of its magic and
/// its `txn_id` must come from the old contents (magic and `t - 1`, or zeros) or the new
/// ones (magic and `t + 1`). Whatever the other fields hold cannot be judged without the
/// lost state. A slot that fails this is damage, not a crash.
pub fn torn_write_possible(slot: &[u8], t: u64) -> bool {
    let old_magic = if t <= 1 { [0u8; 8] } else { META_MAGIC };
    let (old_txn, new_txn) = (t.wrapping_sub(1).to_le_bytes(), t.wrapping_add(1).to_le_bytes());
    let from = |got: &[u8], old: &[u8], new: &[u8]| {
        got.iter().zip(old.iter().zip(new)).all(|(g, (o, n))| g == o || g == n)
    };
    from(&slot[M_MAGIC..M_MAGIC + 8], &old_magic, &META_MAGIC)
        && from(&slot[M_TXN..M_TXN + 8], &old_txn, &new_txn)
}

/// The `txn_id` field of a meta slot, valid or not (for reporting a damaged slot).
pub fn raw_txn_id(slot: &[u8]) -> u64 {
    get_u64(slot, M_TXN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let mut b = [0u8; HEADER_LEN];
        let h = Header { version: FORMAT_VERSION, seed: 0x1234_5678_9abc_def0 };
        h.encode(&mut b);
        assert_eq!(Header::decode(&b), Ok(h));
        let mut bad = b;
        bad[H_SEED] ^= 1;
        assert_eq!(Header::decode(&bad), Err(HeaderError::Checksum));
        let mut newer = b;
        put_u32(&mut newer, H_VERSION, FORMAT_VERSION + 1);
        assert_eq!(Header::decode(&newer), Err(HeaderError::Version(FORMAT_VERSION + 1)));
        assert_eq!(Header::decode(&[0u8; HEADER_LEN]), Err(HeaderError::NotEterna));
    }

    #[test]
    fn meta_round_trip_and_torn_slot() {
        let m = Meta {
            txn_id: 7,
            arenas: 3,
            spare_target: 4,
            arenas_total: 9,
            shared: 0x40,
            flags: META_WRITER,
            ..Meta::default()
        };
        let mut b = [0u8; META_LEN];
        m.encode(&mut b);
        assert_eq!(Meta::decode(&b), Some(m));
        b[M_ARENAS] ^= 0x80;
        assert_eq!(Meta::decode(&b), None);
        assert_eq!(Meta::decode(&[0u8; META_LEN]), None);
    }

    #[test]
    fn torn_meta_slots_and_damaged_ones() {
        let enc = |txn_id: u64| {
            let mut b = [0u8; META_LEN];
            Meta { txn_id, arenas: 2, root: 0x100040, ..Meta::default() }.encode(&mut b);
            b
        };
        // The other slot holds 8; this one held 7 and was being overwritten with 9.
        let (old, new) = (enc(7), enc(9));
        for cut in 0..=META_LEN {
            let mut torn = new;
            torn[cut..].copy_from_slice(&old[cut..]);
            assert!(torn_write_possible(&torn, 8), "new up to byte {cut}");
            let mut torn = old;
            torn[cut..].copy_from_slice(&new[cut..]);
            assert!(torn_write_possible(&torn, 8), "old up to byte {cut}");
        }
        // A flip outside the magic and the id looks like a tear; inside them it cannot be.
        let mut b = new;
        b[M_ROOT] ^= 4;
        assert!(torn_write_possible(&b, 8));
        b = new;
        b[M_TXN + 3] ^= 1;
        assert!(!torn_write_possible(&b, 8));
        b = new;
        b[M_MAGIC + 2] ^= 0x10;
        assert!(!torn_write_possible(&b, 8));
        // A slot two states ahead, or the current state's own id, is no tear of the next.
        assert!(!torn_write_possible(&enc(10), 8));
        assert!(!torn_write_possible(&enc(8), 8));
        // The first publish over a slot never written: zeros and the new bytes mix.
        let mut first = enc(2);
        first[..12].fill(0);
        assert!(torn_write_possible(&first, 1));
        assert!(torn_write_possible(&[0u8; META_LEN], 1));
        assert!(!torn_write_possible(&[0u8; META_LEN], 5));
    }
}
