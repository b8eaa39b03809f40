//! The few operating-system calls the region needs, behind one small interface:
//! reserving disk blocks, punching them out again, syncing, and asking how much of
//! the file occupies the disk.

use rustix::fs::{fallocate, fdatasync, fstat, FallocateFlags};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

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

/// Writes zeros over `off..off + len`, at most one pool (16 KiB) per call: the fallback
/// of [`reserve`] where `fallocate` is unsupported (writing allocates the blocks), and the
/// first half of `Region::populate` (see there why one pool per call).
///
/// Only for ranges that hold nothing: whatever was there reads as zeros afterwards.
pub fn write_zeros(file: &File, off: u64, len: u64) -> io::Result<()> {
    const CHUNK: usize = crate::format::POOL as usize;
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        file.write_all_at(&ZEROS[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Whether the file lives on tmpfs (memory only, no block device underneath).
pub fn is_tmpfs(file: &File) -> bool {
    // TMPFS_MAGIC of <linux/magic.h>, written as a literal so that it takes `f_type`'s
    // type, which differs between platforms.
    rustix::fs::fstatfs(file).is_ok_and(|st| st.f_type == 0x0102_1994)
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

/// The operating system's page size.
pub fn page_size() -> usize {
    rustix::param::page_size()
}
