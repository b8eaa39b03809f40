//! The reader table: a small file beside the heap (`PATH-lock`) that every process maps
//! read-write. Each process that reads the heap owns one slot holding its pid, its start
//! time (so a recycled pid is not mistaken for it) and the oldest state its snapshots pin.
//! The writer reads the table to decide which replaced blocks no reader can see, and
//! clears the slots of processes that are gone.
//!
//! Slots are claimed and updated with atomic operations on the shared mapping, so no lock
//! is held while reading; only creating the file takes a `flock`.

use super::os;
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"ETLOCK\x00\x01";
/// Bytes of the table file.
pub const TABLE_LEN: u64 = 64 * 1024;
/// Bytes before the first slot.
const HEAD: u64 = 64;
/// Bytes per slot.
const SLOT: u64 = 32;
/// Slots in the table.
pub const SLOTS: usize = ((TABLE_LEN - HEAD) / SLOT) as usize;

// Header fields.
const H_HIGH: u64 = 16; // u64: slots below this index have ever been claimed
const H_WANT: u64 = 24; // u64: when a process last asked for the writer lock (ms since 1970), 0 never

/// How long a request for the writer lock counts without being renewed: a waiting process
/// renews it every few milliseconds, so one that gave up or died stops counting soon.
const WANT_FRESH_MS: u64 = 250;

// Slot fields.
const S_PID: u64 = 0; // u64 pid of the owner, 0 when free
const S_START: u64 = 8; // u64 the owner's start time (clock ticks after boot)
const S_TXN: u64 = 16; // u64 the oldest state the owner's snapshots pin, 0 for none

/// One slot as read from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    pub index: usize, // slot number
    pub pid: u64,     // owning process
    pub start: u64,   // its start time
    pub txn: u64,     // pinned state, 0 for none
}

/// The mapped reader table of one heap.
pub struct LockTable {
    _file: File,  // keeps the file open
    map: MmapRaw, // the shared mapping; only accessed through `slot_word`
    path: PathBuf,
}

/// The path of the reader table of the heap at `heap`.
pub fn table_path(heap: &Path) -> PathBuf {
    let mut name = heap.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it exists.
pub fn process_start(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl LockTable {
    /// Opens (creating if needed) the reader table of the heap at `heap`.
    pub fn open(heap: &Path) -> io::Result<LockTable> {
        let path = table_path(heap);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        // Creation races with other processes: whoever holds the flock initialises.
        flock(&file, FlockOperation::LockExclusive)?;
        let init = (|| {
            let (len, _) = os::sizes(&file)?;
            let mut magic = [0u8; 8];
            if len >= TABLE_LEN {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(&mut magic, 0)?;
            }
            if len < TABLE_LEN || magic != MAGIC {
                if len != 0 && magic != MAGIC && len >= 8 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not an eterna reader table", path.display()),
                    ));
                }
                file.set_len(TABLE_LEN)?;
                os::reserve(&file, 0, TABLE_LEN)?;
                use std::os::unix::fs::FileExt;
                file.write_all_at(&MAGIC, 0)?;
                file.write_all_at(&1u32.to_le_bytes(), 8)?;
            }
            Ok(())
        })();
        let _ = flock(&file, FlockOperation::Unlock);
        init?;
        // A raw mapping: the table is only ever accessed through `slot_word`, by atomic
        // operations, in every process.
        let map = MmapOptions::new().len(TABLE_LEN as usize).map_raw(&file)?;
        Ok(LockTable { _file: file, map, path })
    }

    /// The file holding the table.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn high(&self) -> &AtomicU64 {
        self.word(H_HIGH)
    }

    fn slot_word(&self, slot: usize, field: u64) -> &AtomicU64 {
        assert!(slot < SLOTS, "slot {slot} out of range");
        self.word(HEAD + slot as u64 * SLOT + field)
    }

    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= TABLE_LEN, "word {off} outside the table");
        // SAFETY: the mapping is page-aligned and `off` is 8-aligned with
        // `off + 8 <= TABLE_LEN`, the mapping's length (both asserted above), so the
        // pointer is valid and aligned for an AtomicU64; the mapping lives as long as
        // `self`, which the returned reference borrows; and every process touches these
        // bytes only through atomics, so no plain access races with them.
        unsafe { &*(self.map.as_ptr().add(off as usize) as *const AtomicU64) }
    }

    /// Says that this process waits for the writer lock: the holder hands the writer's role
    /// over at the end of its transaction, or at once if it is between transactions.
    /// Renewed while waiting; see [`writer_wanted`](Self::writer_wanted).
    pub fn want_writer(&self) {
        self.word(H_WANT).store(os::clock_ms().max(1), Ordering::SeqCst);
    }

    /// Whether some process asked for the writer lock within the last `WANT_FRESH_MS`.
    pub fn writer_wanted(&self) -> bool {
        let t = self.word(H_WANT).load(Ordering::SeqCst);
        t != 0 && os::clock_ms().saturating_sub(t) < WANT_FRESH_MS
    }

    /// Withdraws the request (its process got the lock); another waiter renews its own.
    pub fn writer_got(&self) {
        self.word(H_WANT).store(0, Ordering::SeqCst);
    }

    /// Claims a free slot for process `pid` (started at `start`); returns its index.
    pub fn claim(&self, pid: u64, start: u64) -> io::Result<usize> {
        for round in 0..2 {
            for i in 0..SLOTS {
                let p = self.slot_word(i, S_PID);
                if p.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    self.high().fetch_max(i as u64 + 1, Ordering::SeqCst);
                    self.slot_word(i, S_START).store(start, Ordering::SeqCst);
                    self.slot_word(i, S_TXN).store(0, Ordering::SeqCst);
                    return Ok(i);
                }
            }
            if round == 0 {
                self.reap();
            }
        }
        Err(io::Error::other(format!(
            "all {SLOTS} reader slots of {} are taken by live processes",
            self.path.display()
        )))
    }

    /// Frees slot `i` (owned by the caller).
    pub fn release(&self, i: usize) {
        self.slot_word(i, S_TXN).store(0, Ordering::SeqCst);
        self.slot_word(i, S_START).store(0, Ordering::SeqCst);
        self.slot_word(i, S_PID).store(0, Ordering::SeqCst);
    }

    /// Sets the state slot `i` pins (0 for none).
    pub fn pin(&self, i: usize, txn: u64) {
        self.slot_word(i, S_TXN).store(txn, Ordering::SeqCst);
    }

    /// Every claimed slot.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let high = (self.high().load(Ordering::SeqCst) as usize).min(SLOTS);
        (0..high)
            .filter_map(|i| {
                let pid = self.slot_word(i, S_PID).load(Ordering::SeqCst);
                (pid != 0).then(|| SlotInfo {
                    index: i,
                    pid,
                    start: self.slot_word(i, S_START).load(Ordering::SeqCst),
                    txn: self.slot_word(i, S_TXN).load(Ordering::SeqCst),
                })
            })
            .collect()
    }

    /// Whether the owner of `s` is still running.
    fn alive(s: &SlotInfo) -> bool {
        // A slot claimed a moment ago may not have its start time yet: count it alive.
        s.start == 0 || process_start(s.pid) == Some(s.start)
    }

    /// Clears the slots of processes that are gone; returns how many.
    pub fn reap(&self) -> usize {
        let mut n = 0;
        for s in self.slots() {
            if !Self::alive(&s)
                && self
                    .slot_word(s.index, S_PID)
                    .compare_exchange(s.pid, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                self.slot_word(s.index, S_TXN).store(0, Ordering::SeqCst);
                n += 1;
            }
        }
        n
    }

    /// The oldest state a live reader pins, or `u64::MAX` for none. Slots of dead
    /// processes that would hold reclamation back are reaped on the way.
    pub fn oldest(&self, below: u64) -> u64 {
        let mut oldest = u64::MAX;
        for s in self.slots() {
            if s.txn == 0 || s.txn >= below.min(oldest) {
                continue;
            }
            if Self::alive(&s) {
                oldest = s.txn;
            } else if self
                .slot_word(s.index, S_PID)
                .compare_exchange(s.pid, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.slot_word(s.index, S_TXN).store(0, Ordering::SeqCst);
            }
        }
        oldest
    }
}
