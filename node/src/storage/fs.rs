//! The filesystem seam under the storage layer. Everything the WAL and the
//! snapshot writer do to disk goes through [`FileSystem`], so tests can swap
//! in [`FaultFs`](super::FaultFs) and crash, tear writes, flip bits and fill
//! the disk at will; production uses [`RealFs`].

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name (not the full path); names that are not UTF-8 are
    /// skipped by [`FileSystem::list`], the storage layer never makes them.
    pub name: String,
    /// The file's length in bytes, including preallocated space.
    pub len: u64,
}

/// The operations the storage layer needs from a filesystem.
///
/// Durability contract (what [`FaultFs`](super::FaultFs) enforces and a
/// POSIX filesystem provides): file contents survive a crash only after
/// [`StorageFile::sync_data`] or [`StorageFile::sync_all`]; a created,
/// renamed or removed name survives only after [`FileSystem::sync_dir`] of
/// its directory.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Creates `path` (truncating it if it exists) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading only (its writes fail).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path`, creating the file if
    /// needed, held until the returned guard is dropped. Fails with
    /// [`io::ErrorKind::WouldBlock`] when someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;
}

/// An open file. Shared reads need no `&mut`: a snapshot file is read by
/// whichever thread encodes a frame from it.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset` (pread); past the end is an error. An open
    /// file stays readable after its name is removed, as on POSIX.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks so the file is at least `len` bytes long and
    /// reads as zeros past its old end; writes into that range then need no
    /// block allocation, which keeps each fdatasync a pure data flush.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// fdatasync: the contents (and the length) are durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// fsync: contents and all metadata are durable.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// A held lock; dropping it releases the lock.
pub trait FileLock: Send + fmt::Debug {}

/// The real filesystem, through `std::fs` (and `fallocate(2)` on Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

#[derive(Debug)]
struct RealLock(#[allow(dead_code, reason = "held for its Drop, which releases the lock")] File);

impl FileLock for RealLock {}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                out.push(DirEntry {
                    name,
                    len: meta.len(),
                });
            }
        }
        Ok(out)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(RealFile(File::open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        // Never truncate: the file is only a lock, and truncating a file
        // another process has locked would be rude at best.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

impl StorageFile for RealFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        let current = self.0.metadata()?.len();
        if current >= len {
            return Ok(());
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::{FallocateFlags, fallocate};
            match fallocate(&self.0, FallocateFlags::empty(), current, len - current) {
                Ok(()) => return Ok(()),
                // Filesystems without fallocate (some network and FUSE
                // ones) still get a correct, merely sparse, file below.
                Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Fills `buf` with `data`'s bytes from `offset`, failing with
/// `UnexpectedEof` when they run past its end: `read_exact_at` over bytes
/// in memory.
pub(crate) fn read_slice_at(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let bytes = usize::try_from(offset)
        .ok()
        .and_then(|at| data.get(at..at.checked_add(buf.len())?))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(bytes);
    Ok(())
}
