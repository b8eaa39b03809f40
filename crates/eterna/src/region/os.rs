//! The few operating-system calls the region needs, behind one small interface:
//! reserving disk blocks, punching them out again, syncing, and asking how much of
//! the file occupies the disk and how much of it this process has resident.

use rustix::fs::{fallocate, fdatasync, fstat, FallocateFlags};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Makes sure the file owns disk blocks for `off..off + len`, extending its size when the
/// range reaches past the end. After this returns `Ok`, a store through a shared mapping into
/// the range cannot fail for lack of space (no SIGBUS on a full disk).
///
/// Filesystems without `fallocate` get the same guarantee the slow way: the range is
/// written with zeros, which allocates its blocks.
pub fn reserve(file: &File, off: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match fallocate(file, FallocateFlags::empty(), off, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => write_zeros(file, off, len),
        Err(e) => Err(e.into()),
    }
}

/// Fallback for [`reserve`]: allocates blocks by writing zeros over the range.
///
/// Only used where `fallocate` is unsupported, so the range is known to be unused.
fn write_zeros(file: &File, off: u64, len: u64) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let zeros = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Gives the disk blocks of `off..off + len` back to the filesystem; the range reads as
/// zeros afterwards and the file keeps its size. Returns `Ok(false)` when the filesystem
/// cannot punch holes (the data stays, nothing is lost, the space is just not returned).
pub fn punch(file: &File, off: u64, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    match fallocate(file, flags, off, len) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Flushes the file's data (and the metadata needed to read it back) to stable storage.
pub fn sync_data(file: &File) -> io::Result<()> {
    Ok(fdatasync(file)?)
}

/// The file's logical size and the bytes it occupies on disk (`st_blocks * 512`).
pub fn sizes(file: &File) -> io::Result<(u64, u64)> {
    let st = fstat(file)?;
    Ok((st.st_size as u64, st.st_blocks as u64 * 512))
}

/// Bytes of the file at `path` resident in this process's mappings of it: the `Rss` of
/// every mapping of that file listed in `/proc/self/smaps` (Linux). The pages are the
/// shared page cache; this is what this process has mapped of them.
pub fn resident_in_mappings(path: &Path) -> io::Result<u64> {
    let name = std::fs::canonicalize(path)?;
    let name = name.to_string_lossy();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let (mut inside, mut total) = (false, 0u64);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header line ends with its file's path, after a space.
            inside = line.strip_suffix(name.as_ref()).is_some_and(|rest| rest.ends_with(' '));
        } else if inside && line.starts_with("Rss:") {
            let kib = line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok());
            total += kib.ok_or_else(|| io::Error::other(format!("unreadable smaps line {line:?}")))? * 1024;
        }
    }
    Ok(total)
}

/// The operating system's page size.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// This process's id without a system call each time (`getpid` costs ~0.2 µs here, and
/// every snapshot and write checks it to catch use across `fork`). It is cached in an
/// anonymous page that the kernel gives a forked child zeroed (`MADV_WIPEONFORK`), so a
/// child finds the cache empty and asks again. Without that advice (Linux before 4.14) it
/// asks every time.
pub fn pid() -> u32 {
    static CACHE: std::sync::OnceLock<Option<memmap2::MmapMut>> = std::sync::OnceLock::new();
    let Some(page) = CACHE.get_or_init(wiped_on_fork) else {
        return std::process::id();
    };
    // SAFETY: the mapping is page-aligned (aligned for a u32) and at least a page long, it
    // lives in a static for the rest of the process, and nothing reads or writes it other
    // than through this atomic. The kernel zeroing it in a forked child happens before the
    // child runs any code.
    let cell = unsafe { &*(page.as_ptr() as *const std::sync::atomic::AtomicU32) };
    match cell.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            cell.store(pid, std::sync::atomic::Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// An anonymous page advised `MADV_WIPEONFORK`, or `None` where that fails.
fn wiped_on_fork() -> Option<memmap2::MmapMut> {
    // One 4 KiB request: the kernel rounds it to a whole page, whatever the page size.
    // (Not `page_size()`: rustix reads the vDSO's address from the kernel's aux vector
    // for it, which faults under valgrind, whose processes have no vDSO there.)
    let mut page = memmap2::MmapMut::map_anon(4096).ok()?;
    // SAFETY: the range is exactly the anonymous mapping just made, which nothing else
    // references yet; WIPEONFORK only changes what a forked child sees there.
    let advised = unsafe {
        rustix::mm::madvise(page.as_mut_ptr().cast(), page.len(), rustix::mm::Advice::LinuxWipeOnFork)
    };
    advised.ok().map(|()| page)
}

/// Milliseconds of wall-clock time, which every process of the machine reads alike. Only
/// ever compared over a fraction of a second; a clock set back meanwhile makes a request
/// look fresh for that long (one needless handover), one set forward makes it look stale
/// until its process renews it (2 ms later). (Not rustix's `clock_gettime`: it looks the
/// vDSO up through the kernel's aux vector, which faults under valgrind.)
pub fn clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
