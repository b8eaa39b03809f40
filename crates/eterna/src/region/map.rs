//! [`Region`]: one open heap file, mapped shared, read-only for readers and read-write
//! for the writer.

use super::os;
use memmap2::{Advice, Mmap, MmapMut, MmapOptions, RemapOptions};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// How a region is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read-only descriptor and a read-only mapping: this handle can never write the file.
    ReadOnly,
    /// A read-write descriptor and a shared read-write mapping.
    ReadWrite,
}

/// The mapping itself; its length (the capacity) may run past the end of the file so that
/// growth does not have to remap every time. Bytes past `Region::len` are never touched.
enum Map {
    Ro(Mmap),
    Rw(MmapMut),
}

impl Map {
    /// Turns off readahead: a heap is read at random, and readahead over a hole would
    /// fill the page cache with zeros.
    fn advise_random(&self) -> io::Result<()> {
        match self {
            Map::Ro(m) => m.advise(Advice::Random),
            Map::Rw(m) => m.advise(Advice::Random),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Map::Ro(m) => m,
            Map::Rw(m) => m,
        }
    }
}

/// One open heap file and its mapping.
///
/// Every access is bounds-checked against the file length this handle knows (`len`), so a
/// corrupt offset read from the file becomes an error, never a fault past the end.
pub struct Region {
    file: File,            // the open descriptor; read-only for Access::ReadOnly
    map: Map,              // the shared mapping, `cap` bytes long
    len: u64,              // the file length this handle has seen; accesses stay below it
    cap: u64,              // the mapping's length, >= len
    punch_supported: bool, // false once the filesystem refused to punch a hole
}

/// An offset range outside the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    pub offset: u64,   // first byte asked for
    pub len: u64,      // bytes asked for
    pub file_len: u64, // the file length at the time
}

/// The smallest mapping made, so that small heaps do not remap on every growth step.
const MIN_MAP: u64 = 64 << 20;

fn capacity_for(len: u64) -> u64 {
    len.max(MIN_MAP).next_power_of_two()
}

impl Region {
    /// Creates a new file at `path` (failing if it exists) of `len` bytes, reserving the
    /// disk blocks of `0..reserved`.
    pub fn create_new(path: &Path, len: u64, reserved: u64) -> io::Result<Region> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        let made = (|| {
            file.set_len(len)?;
            os::reserve(&file, 0, reserved)?;
            Self::map(file, len, Access::ReadWrite)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(path);
        }
        made
    }

    /// Opens an existing file.
    pub fn open(path: &Path, access: Access) -> io::Result<Region> {
        let file = OpenOptions::new().read(true).write(access == Access::ReadWrite).open(path)?;
        let (len, _) = os::sizes(&file)?;
        Self::map(file, len, access)
    }

    fn map(file: File, len: u64, access: Access) -> io::Result<Region> {
        let cap = capacity_for(len);
        let mut opts = MmapOptions::new();
        opts.len(usize::try_from(cap).map_err(|_| io::Error::other("file too large to map"))?);
        let map = match access {
            // SAFETY: the mapping is shared with other processes that may write the file.
            // eterna's protocol guarantees that bytes a handle reads are not written while
            // it reads them (committed objects are immutable; only the single writer writes,
            // and only blocks no reader can reach). Bytes past the end of the file are never
            // accessed: every access is checked against `len`, which is at most the file size.
            Access::ReadOnly => Map::Ro(unsafe { opts.map(&file)? }),
            // SAFETY: as above; in addition this handle is the only writer (the caller holds
            // the writer's role), so no other process stores into the ranges it writes.
            Access::ReadWrite => Map::Rw(unsafe { opts.map_mut(&file)? }),
        };
        map.advise_random()?;
        Ok(Region { file, map, len, cap, punch_supported: true })
    }

    /// Whether this handle may write.
    pub fn writable(&self) -> bool {
        matches!(self.map, Map::Rw(_))
    }

    /// The file length this handle knows.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: u64, len: u64) -> Result<(usize, usize), OutOfBounds> {
        match off.checked_add(len) {
            Some(end) if end <= self.len => Ok((off as usize, end as usize)),
            _ => Err(OutOfBounds { offset: off, len, file_len: self.len }),
        }
    }

    /// The whole file as this handle knows it, for readers that bounds-check themselves.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.map.as_slice()[..self.len as usize]
    }

    /// Borrows `len` bytes at `off`.
    #[inline]
    pub fn bytes(&self, off: u64, len: usize) -> Result<&[u8], OutOfBounds> {
        let (a, b) = self.check(off, len as u64)?;
        Ok(&self.map.as_slice()[a..b])
    }

    /// Borrows `len` bytes at `off` for writing.
    ///
    /// # Panics
    /// On a read-only region: a bug in the caller, which must never hand out write access
    /// on a read-only handle.
    #[inline]
    pub fn bytes_mut(&mut self, off: u64, len: usize) -> Result<&mut [u8], OutOfBounds> {
        let (a, b) = self.check(off, len as u64)?;
        match &mut self.map {
            Map::Rw(m) => Ok(&mut m[a..b]),
            Map::Ro(_) => panic!("write through a read-only region"),
        }
    }

    /// Reads a little-endian `u64` at `off`.
    #[inline]
    pub fn u64_at(&self, off: u64) -> Result<u64, OutOfBounds> {
        let b = self.bytes(off, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Writes a little-endian `u64` at `off`.
    #[inline]
    pub fn set_u64(&mut self, off: u64, v: u64) -> Result<(), OutOfBounds> {
        self.bytes_mut(off, 8)?.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// Reads a little-endian `u16` at `off`.
    #[inline]
    pub fn u16_at(&self, off: u64) -> Result<u16, OutOfBounds> {
        let b = self.bytes(off, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Writes a little-endian `u16` at `off`.
    #[inline]
    pub fn set_u16(&mut self, off: u64, v: u16) -> Result<(), OutOfBounds> {
        self.bytes_mut(off, 2)?.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// Reads the byte at `off`.
    #[inline]
    pub fn u8_at(&self, off: u64) -> Result<u8, OutOfBounds> {
        Ok(self.bytes(off, 1)?[0])
    }

    /// Writes the byte at `off`.
    #[inline]
    pub fn set_u8(&mut self, off: u64, v: u8) -> Result<(), OutOfBounds> {
        self.bytes_mut(off, 1)?[0] = v;
        Ok(())
    }

    /// Grows the file to `new_len` (a no-op if it is already that long) without reserving
    /// disk blocks; callers [`reserve`](Self::reserve) each range before they write it.
    pub fn grow(&mut self, new_len: u64) -> io::Result<()> {
        if new_len <= self.len {
            return Ok(());
        }
        self.file.set_len(new_len)?;
        self.adopt_len(new_len)
    }

    /// Extends the mapping when the file has grown (by this handle or another process).
    /// Returns whether the known length changed.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let (len, _) = os::sizes(&self.file)?;
        if len <= self.len {
            return Ok(false);
        }
        self.adopt_len(len)?;
        Ok(true)
    }

    fn adopt_len(&mut self, new_len: u64) -> io::Result<()> {
        if new_len > self.cap {
            let cap = capacity_for(new_len);
            let cap_usize = usize::try_from(cap).map_err(|_| io::Error::other("file too large to map"))?;
            let opts = RemapOptions::new().may_move(true);
            // SAFETY: `&mut self` guarantees no slice borrowed from the old mapping is
            // alive, so moving the mapping cannot leave a dangling reference. The same
            // sharing argument as in `map` holds for the larger mapping.
            unsafe {
                match &mut self.map {
                    Map::Ro(m) => m.remap(cap_usize, opts)?,
                    Map::Rw(m) => m.remap(cap_usize, opts)?,
                }
            }
            self.map.advise_random()?;
            self.cap = cap;
        }
        self.len = new_len;
        Ok(())
    }

    /// Reserves disk blocks for `off..off + len` (see [`os::reserve`]): after `Ok`, writes
    /// into the range cannot fault for lack of space.
    pub fn reserve(&self, off: u64, len: u64) -> io::Result<()> {
        self.check(off, len).map_err(|e| io::Error::other(format!("{e:?}")))?;
        os::reserve(&self.file, off, len)
    }

    /// Faults `off..off + len` in, writable, in one call instead of one page fault per
    /// page. Only a hint: kernels without `MADV_POPULATE_WRITE` just skip it.
    pub fn populate(&self, off: u64, len: u64) {
        if self.check(off, len).is_err() {
            return;
        }
        if let Map::Rw(m) = &self.map {
            let _ = m.advise_range(Advice::PopulateWrite, off as usize, len as usize);
        }
    }

    /// Punches `off..off + len` out of the file: its disk blocks and its pages in memory are
    /// released and it reads as zeros. Returns `false` if the filesystem cannot do it.
    pub fn punch(&mut self, off: u64, len: u64) -> io::Result<bool> {
        self.check(off, len).map_err(|e| io::Error::other(format!("{e:?}")))?;
        if !self.punch_supported {
            return Ok(false);
        }
        let done = os::punch(&self.file, off, len)?;
        self.punch_supported = done;
        Ok(done)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        os::sync_data(&self.file)
    }

    /// The file's logical size and the bytes it occupies on disk.
    pub fn sizes(&self) -> io::Result<(u64, u64)> {
        os::sizes(&self.file)
    }
}

/// A process's read-only mapping of a heap, shared by its snapshots. It is made larger
/// than the file so that growth needs no new mapping; when the file outgrows it, a new,
/// larger mapping replaces it and the old one lives on until its last snapshot ends.
pub struct ReadMap {
    file: File,                              // a read-only descriptor
    current: std::sync::Mutex<Arc<Mmap>>,    // the newest mapping
    known_len: std::sync::atomic::AtomicU64, // the file is at least this long
}

/// One snapshot's window on the file: a mapping and the length it may read.
#[derive(Clone)]
pub struct View {
    map: Arc<Mmap>, // keeps the mapping alive
    len: u64,       // bytes of it that are inside the file for this snapshot
}

use std::sync::Arc;

fn map_ro(file: &File, len: u64) -> io::Result<Mmap> {
    // Reserve generously: a mapping costs address space, not memory.
    let mut cap = capacity_for(len.saturating_mul(2)).max(1 << 30);
    loop {
        let mut opts = MmapOptions::new();
        opts.len(usize::try_from(cap).map_err(|_| io::Error::other("file too large to map"))?);
        // SAFETY: as in `Region::map`: other processes may write the file, but never the
        // bytes a snapshot reads (committed objects are immutable), and a view never reads
        // past the file length it was made for.
        match unsafe { opts.map(file) } {
            Ok(m) => {
                m.advise(Advice::Random)?;
                return Ok(m);
            }
            // Little address space (a ulimit): try smaller, down to what the file needs.
            Err(e) if cap > len.max(MIN_MAP) => {
                let _ = e;
                cap = (cap / 2).max(len);
            }
            Err(e) => return Err(e),
        }
    }
}

impl ReadMap {
    /// Maps the heap at `path` read-only.
    pub fn open(path: &Path) -> io::Result<ReadMap> {
        let file = OpenOptions::new().read(true).open(path)?;
        let (len, _) = os::sizes(&file)?;
        let map = map_ro(&file, len)?;
        Ok(ReadMap { file, current: std::sync::Mutex::new(Arc::new(map)), known_len: len.into() })
    }

    /// A view of the first `len` bytes of the file; an error if the file is shorter
    /// (reading a mapping past the end of its file would fault).
    pub fn view(&self, len: u64) -> io::Result<View> {
        use std::sync::atomic::Ordering;
        if len > self.known_len.load(Ordering::Acquire) {
            let (file_len, _) = os::sizes(&self.file)?;
            if file_len < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("heap file is {file_len} bytes, shorter than the {len} its state needs"),
                ));
            }
            self.known_len.fetch_max(file_len, Ordering::AcqRel);
        }
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if (cur.len() as u64) < len {
            let (file_len, _) = os::sizes(&self.file)?;
            *cur = Arc::new(map_ro(&self.file, file_len)?);
        }
        Ok(View { map: cur.clone(), len })
    }

    /// The file's current length.
    pub fn file_len(&self) -> io::Result<u64> {
        Ok(os::sizes(&self.file)?.0)
    }
}

impl View {
    /// The bytes of the file this view may read.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.map[..self.len as usize]
    }
}
