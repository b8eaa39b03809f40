//! Error values, one enum per operation. A corrupt file is always one of these, never a
//! panic.

use crate::region::OutOfBounds;
use std::fmt;
use std::io;

/// Where a file is inconsistent, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub offset: u64,  // file offset of the inconsistent structure
    pub what: String, // what is wrong there
}

impl Corruption {
    pub(crate) fn new(offset: u64, what: impl Into<String>) -> Corruption {
        Corruption { offset, what: what.into() }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt heap at offset {:#x}: {}", self.offset, self.what)
    }
}

impl std::error::Error for Corruption {}

impl From<OutOfBounds> for Corruption {
    fn from(e: OutOfBounds) -> Corruption {
        Corruption::new(
            e.offset,
            format!("{} bytes at {:#x} lie past the end of the file ({} bytes)", e.len, e.offset, e.file_len),
        )
    }
}

/// Why a heap could not be opened or created.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The operating system refused (missing file, permissions, ...).
    Io(io::Error),
    /// The file is not an eterna heap (wrong magic bytes; a file of zeros lands here).
    NotEterna,
    /// The file was written by a newer eterna, or its geometry is not this build's.
    UnsupportedVersion { found: u32, supported: u32 },
    /// The file is shorter than its header says it must be.
    Truncated { len: u64, expected: u64 },
    /// The file is inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot open heap: {e}"),
            OpenError::NotEterna => write!(f, "not an eterna heap (wrong magic bytes)"),
            OpenError::UnsupportedVersion { found, supported } => write!(
                f,
                "heap format version {found} is not supported by this eterna (supports up to {supported})"
            ),
            OpenError::Truncated { len, expected } => {
                write!(f, "heap file is truncated: {len} bytes, expected at least {expected}")
            }
            OpenError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}
impl From<Corruption> for OpenError {
    fn from(c: Corruption) -> Self {
        OpenError::Corrupt(c)
    }
}
impl From<OutOfBounds> for OpenError {
    fn from(e: OutOfBounds) -> Self {
        OpenError::Corrupt(e.into())
    }
}

/// Why an allocation failed. The heap is unchanged when it does.
#[derive(Debug)]
#[non_exhaustive]
pub enum AllocError {
    /// The disk has no room for the blocks this allocation needs.
    DiskFull,
    /// The heap was opened read-only.
    ReadOnly,
    /// The size cannot be represented in this file.
    TooLarge { size: usize },
    /// Another I/O failure.
    Io(io::Error),
    /// The allocator's metadata is inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::DiskFull => write!(f, "no space left on the device for the heap to grow"),
            AllocError::ReadOnly => write!(f, "the heap is open read-only"),
            AllocError::TooLarge { size } => write!(f, "an object of {size} bytes is too large"),
            AllocError::Io(e) => write!(f, "I/O error while allocating: {e}"),
            AllocError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for AllocError {}

impl From<io::Error> for AllocError {
    fn from(e: io::Error) -> Self {
        if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
            AllocError::DiskFull
        } else {
            AllocError::Io(e)
        }
    }
}
impl From<OutOfBounds> for AllocError {
    fn from(e: OutOfBounds) -> Self {
        AllocError::Corrupt(e.into())
    }
}
impl From<Corruption> for AllocError {
    fn from(c: Corruption) -> Self {
        AllocError::Corrupt(c)
    }
}

/// Why a block could not be freed. The heap is unchanged when it cannot.
#[derive(Debug)]
#[non_exhaustive]
pub enum FreeError {
    /// The offset is not the start of a live block (never allocated, or freed already).
    NotAllocated { offset: u64 },
    /// The heap was opened read-only.
    ReadOnly,
    /// Giving memory back failed.
    Io(io::Error),
    /// The allocator's metadata is inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::NotAllocated { offset } => {
                write!(f, "offset {offset:#x} is not a live block")
            }
            FreeError::ReadOnly => write!(f, "the heap is open read-only"),
            FreeError::Io(e) => write!(f, "I/O error while freeing: {e}"),
            FreeError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for FreeError {}

impl From<io::Error> for FreeError {
    fn from(e: io::Error) -> Self {
        FreeError::Io(e)
    }
}
impl From<OutOfBounds> for FreeError {
    fn from(e: OutOfBounds) -> Self {
        FreeError::Corrupt(e.into())
    }
}
impl From<Corruption> for FreeError {
    fn from(c: Corruption) -> Self {
        FreeError::Corrupt(c)
    }
}
