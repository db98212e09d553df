//! An in-memory [`FileSystem`] that injects the faults real disks have, for
//! tests: it keeps, per file, what an fdatasync made durable apart from what
//! was only written, and per directory which names a directory sync made
//! durable, so [`FaultFs::crash`] can throw away exactly what a power cut
//! would. It can also tear the unsynced tail of a file (keep a prefix of
//! it), flip bits, and run out of space.
//!
//! Simplifications: directories themselves are always durable, and a torn
//! write keeps a prefix of the unsynced bytes (the order a single `write` is
//! issued in), not arbitrary sectors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{DirEntry, FileLock, FileSystem, StorageFile};

type FileId = u64;

#[derive(Debug, Default, Clone)]
struct Contents {
    /// What reads see now.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: FileId,
    files: HashMap<FileId, Contents>,
    /// Names as they are now.
    names: BTreeMap<PathBuf, FileId>,
    /// Names as a crash would leave them.
    durable_names: BTreeMap<PathBuf, FileId>,
    dirs: BTreeSet<PathBuf>,
    /// Held locks, with the token of the guard that holds each.
    locks: HashMap<PathBuf, u64>,
    next_token: u64,
    /// Total bytes the files may use; `None` is unlimited.
    capacity: Option<u64>,
    /// Syncs that fail with an I/O error before syncs work again.
    failing_syncs: u32,
    /// Syncs that still succeed before the power goes off.
    power_left: Option<u32>,
    /// The power is off: every operation fails until [`FaultFs::crash`].
    dead: bool,
}

impl Inner {
    fn used(&self) -> u64 {
        let live: BTreeSet<FileId> = self.names.values().copied().collect();
        live.iter()
            .filter_map(|id| self.files.get(id))
            .map(|c| c.data.len() as u64)
            .sum()
    }

    /// Fails with ENOSPC if growing a file from `old` to `new` bytes does
    /// not fit; returns how many bytes of the growth do fit.
    fn room(&self, old: usize, new: usize) -> usize {
        match self.capacity {
            None => new,
            Some(cap) => {
                let free = cap.saturating_sub(self.used());
                if new <= old {
                    new
                } else {
                    old + (new - old).min(free as usize)
                }
            }
        }
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(io::Error::other("FaultFs: the power is off"))
        } else {
            Ok(())
        }
    }

    /// Counts a sync against an armed power cut; errors if the power goes
    /// off (the sync then never happens) or an injected failure is due.
    fn before_sync(&mut self) -> io::Result<()> {
        self.alive()?;
        match self.power_left {
            Some(0) => {
                self.dead = true;
                self.power_left = None;
                return Err(io::Error::other(
                    "FaultFs: the power went off during a sync",
                ));
            }
            Some(n) => self.power_left = Some(n - 1),
            None => {}
        }
        if self.failing_syncs > 0 {
            self.failing_syncs -= 1;
            return Err(io::Error::other("FaultFs: injected sync failure"));
        }
        Ok(())
    }

    fn contents(&mut self, id: FileId) -> io::Result<&mut Contents> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("FaultFs: stale file handle"))
    }

    fn sync(&mut self, id: FileId) -> io::Result<()> {
        self.before_sync()?;
        let c = self.contents(id)?;
        c.durable.clone_from(&c.data);
        Ok(())
    }
}

fn no_space() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "FaultFs: no space left on device",
    )
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("FaultFs: {} not found", path.display()),
    )
}

/// The fault-injecting in-memory filesystem. Cloning shares the same files.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    inner: Arc<Mutex<Inner>>,
}

impl FaultFs {
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock only happens in a failing test;
        // the data is still the best account of what happened.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A power cut: every file loses what was not synced, every name that
    /// was not made durable by a directory sync disappears (or comes back),
    /// and all locks are released.
    pub fn crash(&self) {
        self.crash_with(|_, _| 0);
    }

    /// A power cut during writes: for each file with unsynced changes,
    /// `keep(path, unsynced_len)` says how many bytes of the unsynced tail
    /// (from the first byte that differs from the durable contents) reached
    /// the disk anyway.
    pub fn crash_with(&self, mut keep: impl FnMut(&Path, usize) -> usize) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let paths: BTreeMap<FileId, PathBuf> =
            inner.names.iter().map(|(p, id)| (*id, p.clone())).collect();
        for (id, c) in inner.files.iter_mut() {
            let common = c
                .data
                .iter()
                .zip(&c.durable)
                .take_while(|(a, b)| a == b)
                .count();
            let unsynced = c.data.len().saturating_sub(common);
            let mut after = c.durable.clone();
            if unsynced > 0 {
                let path = paths.get(id).cloned().unwrap_or_default();
                let kept = keep(&path, unsynced).min(unsynced);
                if after.len() < common + kept {
                    after.resize(common + kept, 0);
                }
                after[common..common + kept].copy_from_slice(&c.data[common..common + kept]);
            }
            c.data.clone_from(&after);
            c.durable = after;
        }
        inner.names = inner.durable_names.clone();
        inner.locks.clear();
        inner.failing_syncs = 0;
        inner.power_left = None;
        inner.dead = false;
    }

    /// Arms a power cut: `syncs` more syncs succeed, the next one does not
    /// happen and from then on every operation fails, as if the process had
    /// died with the machine, until [`crash`](Self::crash) or
    /// [`crash_with`](Self::crash_with) restarts it.
    pub fn cut_power_after(&self, syncs: u32) {
        self.lock().power_left = Some(syncs);
    }

    /// Whether an armed power cut has happened.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Flips bit `bit` (0..8) of the byte at `offset`, in what is written and
    /// in what is durable: damage on the medium.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut inner = self.lock();
        let id = *inner.names.get(path).ok_or_else(|| not_found(path))?;
        let c = inner.contents(id)?;
        let at = offset as usize;
        if at >= c.data.len() {
            return Err(io::Error::other("FaultFs: flip past the end of the file"));
        }
        c.data[at] ^= 1 << (bit % 8);
        if at < c.durable.len() {
            c.durable[at] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Limits the total size of all files: writes that do not fit write
    /// what fits and fail with `StorageFull` (ENOSPC). `None` returns the
    /// space.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// Bytes used by all files now.
    pub fn used(&self) -> u64 {
        self.lock().used()
    }

    /// The next `n` syncs (file or directory) fail with an I/O error.
    pub fn fail_syncs(&self, n: u32) {
        self.lock().failing_syncs = n;
    }

    /// The current contents of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let inner = self.lock();
        let id = inner.names.get(path)?;
        inner.files.get(id).map(|c| c.data.clone())
    }

    /// The names of the files in `dir`, sorted.
    pub fn file_names(&self, dir: &Path) -> Vec<String> {
        self.list(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    id: FileId,
}

#[derive(Debug)]
struct FaultLock {
    fs: FaultFs,
    path: PathBuf,
    token: u64,
}

impl FileLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut inner = self.fs.lock();
        // After a crash the lock may belong to someone else now.
        if inner.locks.get(&self.path) == Some(&self.token) {
            inner.locks.remove(&self.path);
        }
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        for a in dir.ancestors() {
            inner.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let inner = self.lock();
        inner.alive()?;
        if !inner.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(inner
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(p, id)| {
                let name = p.file_name()?.to_str()?.to_owned();
                let len = inner.files.get(id).map_or(0, |c| c.data.len() as u64);
                Some(DirEntry { name, len })
            })
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut inner = self.lock();
        inner.alive()?;
        let parent = path.parent().ok_or_else(|| not_found(path))?;
        if !inner.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        // Truncating an existing file keeps its identity, as O_TRUNC does.
        let id = match inner.names.get(path) {
            Some(&id) => {
                inner.contents(id)?.data.clear();
                id
            }
            None => {
                let id = inner.next_id;
                inner.next_id += 1;
                inner.files.insert(id, Contents::default());
                inner.names.insert(path.to_path_buf(), id);
                id
            }
        };
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            id,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.lock();
        inner.alive()?;
        let id = *inner.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            id,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        // Writes through it are not refused: the storage layer never makes
        // them, and the real filesystem's refusal needs no simulating.
        self.open(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock().alive()?;
        self.contents(path).ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.alive()?;
        let id = inner.names.remove(from).ok_or_else(|| not_found(from))?;
        inner.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.alive()?;
        inner
            .names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.before_sync()?;
        let inner = &mut *inner;
        inner.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, id) in &inner.names {
            if p.parent() == Some(dir) {
                inner.durable_names.insert(p.clone(), *id);
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut inner = self.lock();
        inner.alive()?;
        if inner.locks.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        // Like the real thing, locking leaves a file behind.
        if !inner.names.contains_key(path) {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.files.insert(id, Contents::default());
            inner.names.insert(path.to_path_buf(), id);
        }
        inner.next_token += 1;
        let token = inner.next_token;
        inner.locks.insert(path.to_path_buf(), token);
        Ok(Box::new(FaultLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            token,
        }))
    }
}

impl StorageFile for FaultFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let inner = self.fs.lock();
        inner.alive()?;
        // The contents outlive the name, as an open file's do.
        let data = &inner
            .files
            .get(&self.id)
            .ok_or_else(|| io::Error::other("FaultFs: stale file handle"))?
            .data;
        super::fs::read_slice_at(data, offset, buf)
    }

    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.fs.lock();
        inner.alive()?;
        let old = inner.contents(self.id)?.data.len();
        let at = offset as usize;
        let want = old.max(at + buf.len());
        let fits = inner.room(old, want);
        let c = inner.contents(self.id)?;
        if c.data.len() < fits {
            c.data.resize(fits, 0);
        }
        // Like write(2) on a full disk: what fits is written, then ENOSPC.
        let n = fits.saturating_sub(at).min(buf.len());
        if n > 0 {
            c.data[at..at + n].copy_from_slice(&buf[..n]);
        }
        if n < buf.len() {
            Err(no_space())
        } else {
            Ok(())
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.fs.lock();
        inner.alive()?;
        let old = inner.contents(self.id)?.data.len();
        let len = len as usize;
        if inner.room(old, len) < len {
            return Err(no_space());
        }
        inner.contents(self.id)?.data.resize(len, 0);
        Ok(())
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        // fallocate either reserves all of it or fails without a change.
        let mut inner = self.fs.lock();
        inner.alive()?;
        let old = inner.contents(self.id)?.data.len();
        let len = len as usize;
        if len <= old {
            return Ok(());
        }
        if inner.room(old, len) < len {
            return Err(no_space());
        }
        inner.contents(self.id)?.data.resize(len, 0);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.lock().sync(self.id)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.fs.lock().sync(self.id)
    }
}
