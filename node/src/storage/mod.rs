//! Durable storage: a write-ahead log of opaque records and checksummed
//! snapshots, with crash recovery. Blocking (std only): the driver calls it
//! from a thread of its own, and its batching is the group commit.
//!
//! # API
//!
//! ```text
//! Storage::open(StorageConfig, Arc<dyn FileSystem>) -> Result<(Storage, Recovered), StorageError>
//! Storage::append(&mut self, &[(u64, &[u8])]) -> Result<(), StorageError>   one fdatasync per call
//! Storage::write_snapshot(&mut self, index: u64, &[u8]) -> Result<(), StorageError>   then purges
//! Storage::purge(&mut self) -> Result<(), StorageError>
//! Storage::last_index(&self) -> u64
//! Storage::stats(&self) -> StorageStats
//! ```
//!
//! * `open` locks `<log_dir>/LOCK` and `<snapshot_dir>/LOCK` (one lock when
//!   both are the same directory) and fails with [`StorageError::Locked`]
//!   if another process (or another `Storage`) holds either. It then
//!   recovers: [`Recovered`] has the newest valid snapshot (its file, held
//!   open, its payload checked a piece at a time, never read whole) and
//!   every log record after its index, in order.
//! * `append` takes records whose indexes continue `last_index()` by one
//!   each (the first ever record is index 1, or the successor of a snapshot
//!   index), writes them with one write and makes them durable with one
//!   fdatasync. If it fails (a full disk, an I/O error) nothing of the batch
//!   counts: the log is cut back to where the previous batch ended and the
//!   same indexes can be appended again once the cause is gone.
//!   [`StorageError::is_disk_full`] tells ENOSPC apart.
//! * `write_snapshot` (or a [`SnapshotWriter`] on another thread, which
//!   can write the payload a piece at a time, and whose
//!   [`WrittenSnapshot::reader`] keeps the file open to read) writes
//!   `snap-writing-<n>.tmp`, fsyncs it, renames it to `snap-<index>.snap`
//!   and fsyncs the directory; then it purges: only the newest
//!   `keep_snapshots` snapshots stay, and log segments that hold nothing
//!   above the oldest kept snapshot's index are deleted. A snapshot may be
//!   ahead of the log (one installed from a peer); the log then continues at
//!   its index + 1. A purge failure is logged and retried by the next
//!   snapshot, it does not fail the snapshot.
//!
//! # Layout and formats
//!
//! `log_dir` holds segments `wal-<first index, 20 digits>.log`, see
//! [`wal`] for the format (versioned header, records framed as CRC32C +
//! length + type + index + payload). A segment is created as `.tmp`,
//! preallocated (when `preallocate`: its first `preallocate_step`, then a
//! step more whenever appends reach the end of what is reserved), fsynced
//! and renamed, so a segment with its final name always has a valid
//! header. A batch always goes into one segment; a new segment starts
//! when the batch would not fit below `segment_bytes` (a single larger
//! batch makes a larger segment), or when the next index does not follow
//! the segment's last record (after a snapshot installed ahead of the
//! log). `snapshot_dir` holds
//! `snap-<index, 20 digits>.snap`, see [`snapshot`] for the format.
//!
//! # Recovery rules
//!
//! * A damaged record in the last segment with nothing valid after it (only
//!   zeros, garbage that never checksums, or the end of the file) is the
//!   tail of a write cut off by a crash: it was never acknowledged, so it is
//!   cut off, zero-filled, and reported in [`Recovered::truncated_tail`].
//!   A damaged last record with zeros after it cannot be told apart from a
//!   torn write and is treated as one.
//! * Any other damage, a gap between segments, or a segment whose header
//!   does not match its name is [`StorageError::CorruptLog`], naming the
//!   file and byte offset. Recovery never panics and never guesses.
//! * Segments wholly below the chosen snapshot are not read at all.
//! * A damaged snapshot (checksum, length, header) is skipped for the next
//!   older valid one **only if the log still holds every record from that
//!   older snapshot up to the damaged one's index**, so no state is lost;
//!   the file is renamed to `<name>.corrupt` for inspection and listed in
//!   [`Recovered::corrupt_snapshots`]. Otherwise `open` fails with
//!   [`StorageError::CorruptSnapshot`] naming the file. This is why purging
//!   keeps the log back to the oldest kept snapshot, not the newest.
//! * Leftover `.tmp` files of interrupted segment or snapshot writes are
//!   deleted. Recovery logs what it found and how long it took.
//!
//! # Using it for Multi-Paxos state
//!
//! The log is append-only with contiguous indexes of its own. The driver
//! writes each Paxos durable write (promised ballot, accepted entries) as a
//! record (see `record::LogRecord`); recovery hands them back in order
//! to be replayed. A snapshot's index is a position in this log, not a
//! slot: the driver first appends a checkpoint record holding everything
//! the replica accepted after the snapshot's slot, and names the snapshot
//! after the record before it, so recovery needs only the snapshot and the
//! records from the checkpoint on and the purge stays correct.
//!
//! # Limits
//!
//! * Unix only (`pwrite` through `FileExt`; `fallocate` on Linux, plain
//!   `set_len` elsewhere).
//! * Recovery reads each needed segment whole into memory (64 MiB by
//!   default), and the snapshot too.
//! * Rolling to a new segment costs a file create, fallocate, fsync, rename
//!   and directory fsync inside the append that rolls (once per
//!   `segment_bytes`); segments are not created ahead of time.
//! * A write torn at sector level (a later sector of an unsynced batch on
//!   disk, an earlier one not) leaves valid records after a damaged one and
//!   is reported as corruption, not cut off. [`FaultFs`] tears writes as
//!   prefixes only.

pub mod durable;
mod fault;
mod fs;
pub mod identity;
pub mod logged;
pub mod packed;
pub mod record;
pub mod snapshot;
pub mod wal;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use fault::FaultFs;
pub use fs::{DirEntry, FileLock, FileSystem, RealFs, StorageFile};
pub use snapshot::{PartialSnapshot, SnapshotReader, SnapshotWriter, WrittenSnapshot};

/// The largest record payload: the frame's length field is 32 bits.
pub const MAX_RECORD_BYTES: usize = u32::MAX as usize;

/// The largest batch buffer a log keeps between appends (see `append`).
const KEEP_BATCH_BUFFER_BYTES: usize = 1 << 20;
const LOCK_FILE: &str = "LOCK";
const TMP_SUFFIX: &str = ".tmp";
const CORRUPT_SUFFIX: &str = ".corrupt";

/// Where and how to store.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub log_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    /// Size at which a new log segment starts.
    pub segment_bytes: u64,
    /// Reserve a segment's blocks ahead of the appends, a step at a time,
    /// so that most fdatasyncs flush only data (the step that reserves
    /// more also flushes the file's new size).
    pub preallocate: bool,
    /// How much is reserved at a time, up to `segment_bytes`. Smaller
    /// steps leave less reserved but unwritten space on disk; each step
    /// costs one fdatasync that also flushes metadata.
    pub preallocate_step: u64,
    /// Snapshots kept by the purge; at least 1.
    pub keep_snapshots: usize,
}

impl StorageConfig {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
    pub const DEFAULT_PREALLOCATE_STEP: u64 = 4 << 20;
    pub const DEFAULT_KEEP_SNAPSHOTS: usize = 3;
    /// Segments smaller than this are refused: they would roll constantly.
    pub const MIN_SEGMENT_BYTES: u64 = 256;

    /// The defaults for `<data>/log` and `<data>/snapshot`.
    pub fn new(data_dir: &Path) -> StorageConfig {
        StorageConfig {
            log_dir: data_dir.join("log"),
            snapshot_dir: data_dir.join("snapshot"),
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            preallocate: true,
            preallocate_step: Self::DEFAULT_PREALLOCATE_STEP,
            keep_snapshots: Self::DEFAULT_KEEP_SNAPSHOTS,
        }
    }
}

/// What recovery found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The newest valid snapshot.
    pub snapshot: Option<RecoveredSnapshot>,
    /// Every log record after the snapshot's index (or from index 1), in
    /// order and contiguous.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The segment and offset where a torn tail was cut off.
    pub truncated_tail: Option<(PathBuf, u64)>,
    /// Damaged snapshots skipped because the log covered them (renamed to
    /// `.corrupt`), with what was wrong.
    pub corrupt_snapshots: Vec<(PathBuf, String)>,
}

/// The snapshot recovery chose.
#[derive(Debug, PartialEq, Eq)]
pub struct RecoveredSnapshot {
    pub index: u64,
    /// The file, held open, its payload checked: what the state is
    /// decoded from, and what serves the payload to peers.
    pub file: SnapshotReader,
}

/// Sizes for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes the log segments occupy, preallocated space included.
    pub log_bytes: u64,
    pub log_segments: usize,
    pub snapshot_bytes: u64,
    pub snapshots: usize,
    /// The index of the newest snapshot, 0 if none.
    pub snapshot_index: u64,
    pub last_index: u64,
}

/// What went wrong, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "{} is locked: another synod process is using this directory; stop it, or give this \
         node its own --data-dir",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the log is damaged in {} at byte offset {offset}: {reason}. This is not the torn tail \
         of an interrupted write. Do not edit the file: move this node's log and snapshot \
         directories aside (keep them for diagnosis) and let it rejoin and catch up from its \
         peers, or restore them from a backup",
        path.display()
    )]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "snapshot {} is damaged: {reason}; the log does not reach back far enough to rebuild \
         its state from an older snapshot. Move this node's log and snapshot directories aside \
         (keep them for diagnosis) and let it rejoin from its peers, or restore them from a \
         backup",
        path.display()
    )]
    CorruptSnapshot { path: PathBuf, reason: String },
    #[error("record {got} appended where {expected} was expected: indexes must continue the log")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("record {index} is {len} bytes, more than the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { index: u64, len: usize },
    #[error("a snapshot at index {index} is older than the newest one, at {newest}")]
    SnapshotBehind { index: u64, newest: u64 },
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether this is a full disk (ENOSPC or a quota), which goes away when
    /// space is freed, rather than damage or a bug.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
                    // ENOSPC and EDQUOT on Linux, for errors built from raw codes.
                    || matches!(source.raw_os_error(), Some(28 | 122))
            }
            _ => false,
        }
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StorageError + use<'a> {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A segment on disk.
#[derive(Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
    /// File size, preallocation included.
    bytes: u64,
    /// Where each record from `first_index` on starts, for
    /// [`Storage::read_record`]: known for the segments recovery read and
    /// those written since (older segments are never read back).
    offsets: Vec<u64>,
}

/// The segment appends go to.
#[derive(Debug)]
struct Active {
    file: Box<dyn StorageFile>,
    /// Where the next batch is written: the end of the last durable batch.
    offset: u64,
    /// The index the next record in this segment must have.
    next_index: u64,
    /// Whether any record is in this segment.
    has_records: bool,
    /// The file's size, preallocation included.
    allocated: u64,
    /// A failed batch may have left bytes past `offset`; they are cut off
    /// before anything else is written.
    dirty: bool,
}

#[derive(Debug)]
struct SnapshotFile {
    index: u64,
    path: PathBuf,
    bytes: u64,
}

/// The write-ahead log and the snapshots. See the module documentation.
#[derive(Debug)]
pub struct Storage {
    config: StorageConfig,
    fs: Arc<dyn FileSystem>,
    _locks: Vec<Box<dyn FileLock>>,
    /// Sorted by first index; the last one is the active one.
    segments: Vec<Segment>,
    active: Option<Active>,
    /// Sorted by index.
    snapshots: Vec<SnapshotFile>,
    last_index: u64,
    /// Reused encode buffer.
    buf: Vec<u8>,
}

impl Storage {
    /// Locks the directories and recovers; see the module documentation.
    pub fn open(
        config: StorageConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Storage, Recovered), StorageError> {
        if config.segment_bytes < StorageConfig::MIN_SEGMENT_BYTES {
            return Err(StorageError::Config(format!(
                "segment_bytes is {}, at least {} is needed",
                config.segment_bytes,
                StorageConfig::MIN_SEGMENT_BYTES
            )));
        }
        if config.keep_snapshots == 0 {
            return Err(StorageError::Config(
                "keep_snapshots must be at least 1".into(),
            ));
        }
        let started = Instant::now();
        let mut locks = Vec::new();
        for dir in [&config.log_dir, &config.snapshot_dir] {
            create_dir_durably(fs.as_ref(), dir)?;
            let path = dir.join(LOCK_FILE);
            if locks.len() == 1 && config.log_dir == config.snapshot_dir {
                break;
            }
            match fs.try_lock(&path) {
                Ok(lock) => locks.push(lock),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(StorageError::Locked { path });
                }
                Err(e) => return Err(io_err("lock", &path)(e)),
            }
        }
        let mut storage = Storage {
            config,
            fs,
            _locks: locks,
            segments: Vec::new(),
            active: None,
            snapshots: Vec::new(),
            last_index: 0,
            buf: Vec::new(),
        };
        let recovered = storage.recover()?;
        tracing::info!(
            snapshot_index = recovered.snapshot.as_ref().map_or(0, |s| s.index),
            entries = recovered.entries.len(),
            last_index = storage.last_index,
            segments = storage.segments.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage recovered"
        );
        Ok((storage, recovered))
    }

    /// The index of the last durable record, or of the newest snapshot if
    /// that is ahead of the log; 0 when empty.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn stats(&self) -> StorageStats {
        StorageStats {
            log_bytes: self.segments.iter().map(|s| s.bytes).sum(),
            log_segments: self.segments.len(),
            snapshot_bytes: self.snapshots.iter().map(|s| s.bytes).sum(),
            snapshots: self.snapshots.len(),
            snapshot_index: self.snapshots.last().map_or(0, |s| s.index),
            last_index: self.last_index,
        }
    }

    /// Appends a batch and makes it durable with one fdatasync.
    pub fn append(&mut self, records: &[(u64, &[u8])]) -> Result<(), StorageError> {
        let Some(&(first, _)) = records.first() else {
            return Ok(());
        };
        for (expected, &(index, payload)) in (self.last_index + 1..).zip(records) {
            if index != expected {
                return Err(StorageError::OutOfOrder {
                    expected,
                    got: index,
                });
            }
            if payload.len() > MAX_RECORD_BYTES {
                return Err(StorageError::RecordTooLarge {
                    index,
                    len: payload.len(),
                });
            }
        }
        self.clean_active()?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut starts = Vec::with_capacity(records.len());
        for &(index, payload) in records {
            starts.push(buf.len() as u64);
            wal::encode_record(&mut buf, index, payload);
        }
        let result = self.write_batch(first, &starts, &buf);
        // Keep the buffer for the next batch, but not the room a burst
        // made: batches are tens of KiB under a steady load, and a burst
        // (a backlog after a slow fsync) grew it to 4-5 MiB that a loaded
        // node then held for good (a heap profile, docs/benchmarks.md).
        if buf.capacity() <= KEEP_BATCH_BUFFER_BYTES {
            self.buf = buf;
        }
        result
    }

    /// Writes `buf`, the records from `first` on (each starting at its
    /// offset in `starts`), at the end of the log, and makes it durable.
    fn write_batch(&mut self, first: u64, starts: &[u64], buf: &[u8]) -> Result<(), StorageError> {
        let count = starts.len() as u64;
        let roll = match &self.active {
            None => true,
            Some(a) => {
                a.next_index != first
                    || (a.has_records && a.offset + buf.len() as u64 > self.config.segment_bytes)
            }
        };
        if roll {
            self.roll(first)?;
        }
        let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.last_mut()) else {
            return Err(StorageError::Config("no active segment after roll".into()));
        };
        let path = &segment.path;
        let end = active.offset + buf.len() as u64;
        if self.config.preallocate && end > active.allocated {
            let target = Self::step_end(&self.config, end);
            // Best effort: if the disk cannot reserve it, the write below
            // still tries (and says why it fails, if it does).
            match active.file.allocate(target) {
                Ok(()) => active.allocated = active.allocated.max(target),
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "cannot reserve the next step of the segment");
                }
            }
        }
        let written = active
            .file
            .write_all_at(active.offset, buf)
            .map_err(io_err("write", path))
            .and_then(|()| active.file.sync_data().map_err(io_err("fdatasync", path)));
        if let Err(e) = written {
            active.dirty = true;
            // Best effort now; if it fails the next append retries first.
            if let Err(clean) = Self::cut_back(active, path) {
                tracing::warn!(error = %clean, "cannot cut a failed batch off the log yet");
            }
            segment.bytes = active.allocated;
            return Err(e);
        }
        segment
            .offsets
            .extend(starts.iter().map(|start| active.offset + start));
        active.offset += buf.len() as u64;
        active.allocated = active.allocated.max(active.offset);
        segment.bytes = active.allocated;
        active.next_index = first + count;
        active.has_records = true;
        self.last_index = first + count - 1;
        Ok(())
    }

    /// Cuts whatever a failed batch left past the durable end off the active
    /// segment, durably, so recovery never mistakes it for records.
    fn clean_active(&mut self) -> Result<(), StorageError> {
        if let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.last_mut())
            && active.dirty
        {
            Self::cut_back(active, &segment.path)?;
            segment.bytes = active.allocated;
        }
        Ok(())
    }

    fn cut_back(active: &mut Active, path: &Path) -> Result<(), StorageError> {
        active
            .file
            .set_len(active.offset)
            .map_err(io_err("truncate", path))?;
        active.allocated = active.offset;
        active.file.sync_data().map_err(io_err("fdatasync", path))?;
        active.dirty = false;
        Ok(())
    }

    /// What to reserve so that a segment holds `end` bytes: the next step
    /// boundary at or past it, no further than the segment size (what a
    /// batch writes past that is not reserved ahead).
    fn step_end(config: &StorageConfig, end: u64) -> u64 {
        let step = config.preallocate_step.max(1);
        end.div_ceil(step)
            .saturating_mul(step)
            .min(config.segment_bytes)
    }

    /// Starts a new segment whose first record will be `first_index`.
    fn roll(&mut self, first_index: u64) -> Result<(), StorageError> {
        let dir = &self.config.log_dir;
        let path = dir.join(wal::segment_name(first_index));
        // Reuse an empty active segment with the same name rather than
        // create a second file of that name.
        if let Some(a) = &self.active
            && !a.has_records
            && a.next_index == first_index
        {
            return Ok(());
        }
        // An empty active segment that is being replaced holds nothing, and
        // must go first: left behind, its name would sort after the new
        // segment and make recovery take it for the end of the log. The
        // directory sync below makes the removal durable with the creation.
        if let Some(a) = &self.active
            && !a.has_records
            && let Some(old) = self.segments.last()
        {
            self.fs
                .remove(&old.path)
                .map_err(io_err("remove", &old.path))?;
            self.segments.pop();
            self.active = None;
        }
        let tmp = tmp_path(&path);
        let header = wal::encode_header(first_index);
        let mut allocated = header.len() as u64;
        let first_step = Self::step_end(&self.config, allocated + 1);
        let made = (|| {
            let mut file = self.fs.create(&tmp).map_err(io_err("create", &tmp))?;
            file.write_all_at(0, &header)
                .map_err(io_err("write", &tmp))?;
            if self.config.preallocate {
                file.allocate(first_step)
                    .map_err(io_err("preallocate", &tmp))?;
                allocated = allocated.max(first_step);
            }
            file.sync_all().map_err(io_err("fsync", &tmp))?;
            drop(file);
            self.fs
                .rename(&tmp, &path)
                .map_err(io_err("rename", &tmp))?;
            self.fs
                .sync_dir(dir)
                .map_err(io_err("fsync directory", dir))?;
            self.fs.open(&path).map_err(io_err("open", &path))
        })();
        let file = match made {
            Ok(file) => file,
            Err(e) => {
                // Nothing was written to it, so it may go; if the removal
                // fails, recovery deletes a leftover `.tmp` and reuses or
                // supersedes an empty segment.
                let _ = self.fs.remove(&tmp);
                let _ = self.fs.remove(&path);
                return Err(e);
            }
        };
        self.segments.push(Segment {
            first_index,
            path,
            bytes: allocated,
            offsets: Vec::new(),
        });
        self.active = Some(Active {
            file,
            offset: header.len() as u64,
            next_index: first_index,
            has_records: false,
            allocated,
            dirty: false,
        });
        Ok(())
    }

    /// The payload of the durable record at `index`, read back from its
    /// segment and checked; `None` when the log does not have it (purged,
    /// not written yet, or before what recovery read).
    pub fn read_record(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if index == 0 || index > self.last_index {
            return Ok(None);
        }
        let at = self.segments.partition_point(|s| s.first_index <= index);
        let Some(segment) = at.checked_sub(1).map(|i| &self.segments[i]) else {
            return Ok(None);
        };
        let Some(&offset) = segment
            .offsets
            .get(usize::try_from(index - segment.first_index).unwrap_or(usize::MAX))
        else {
            return Ok(None);
        };
        let path = &segment.path;
        let file = self.fs.open_read(path).map_err(io_err("open", path))?;
        let mut header = [0u8; wal::FRAME_HEADER_LEN];
        file.read_exact_at(offset, &mut header)
            .map_err(io_err("read", path))?;
        let len = wal::frame_payload_len(&header);
        if len > MAX_RECORD_BYTES {
            return Err(StorageError::CorruptLog {
                path: path.clone(),
                offset,
                reason: format!("a record read back claims {len} bytes"),
            });
        }
        let mut frame = header.to_vec();
        frame.resize(wal::FRAME_HEADER_LEN + len, 0);
        file.read_exact_at(
            offset + wal::FRAME_HEADER_LEN as u64,
            &mut frame[wal::FRAME_HEADER_LEN..],
        )
        .map_err(io_err("read", path))?;
        wal::check_read_back(&frame, index).map_err(|reason| StorageError::CorruptLog {
            path: path.clone(),
            offset,
            reason,
        })?;
        frame.drain(..wal::FRAME_HEADER_LEN);
        Ok(Some(frame))
    }

    /// Writes a snapshot of the state at `index`, then purges.
    pub fn write_snapshot(&mut self, index: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_snapshot_index(index)?;
        let written = self.snapshot_writer().write(index, &[bytes])?;
        self.add_snapshot(written)
    }

    fn check_snapshot_index(&self, index: u64) -> Result<(), StorageError> {
        match self.snapshots.last() {
            Some(newest) if index < newest.index => Err(StorageError::SnapshotBehind {
                index,
                newest: newest.index,
            }),
            _ => Ok(()),
        }
    }

    /// A writer of snapshot files that works apart from the log, so that
    /// writing a large snapshot on another thread never delays an append.
    /// Hand what it wrote back to [`Storage::add_snapshot`].
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            fs: self.fs.clone(),
            dir: self.config.snapshot_dir.clone(),
        }
    }

    /// Takes a snapshot file written by a [`SnapshotWriter`] into account and
    /// purges what it makes unnecessary.
    pub fn add_snapshot(&mut self, written: WrittenSnapshot) -> Result<(), StorageError> {
        self.check_snapshot_index(written.index)?;
        let index = written.index;
        self.snapshots.retain(|s| s.index != index);
        self.snapshots.push(SnapshotFile {
            index,
            path: written.path,
            bytes: written.bytes,
        });
        self.last_index = self.last_index.max(index);
        if let Err(e) = self.purge() {
            tracing::warn!(error = %e, "purging old snapshots and log segments failed; the next snapshot retries");
        }
        Ok(())
    }

    /// Deletes all but the newest `keep_snapshots` snapshots, then the log
    /// segments wholly below the oldest kept snapshot (oldest first, so the
    /// log stays a contiguous suffix at every step).
    pub fn purge(&mut self) -> Result<(), StorageError> {
        let excess = self
            .snapshots
            .len()
            .saturating_sub(self.config.keep_snapshots);
        let mut removed_snapshots = false;
        for _ in 0..excess {
            let old = &self.snapshots[0];
            self.fs
                .remove(&old.path)
                .map_err(io_err("remove", &old.path))?;
            self.snapshots.remove(0);
            removed_snapshots = true;
        }
        if removed_snapshots {
            let dir = &self.config.snapshot_dir;
            self.fs
                .sync_dir(dir)
                .map_err(io_err("fsync directory", dir))?;
        }
        let Some(floor) = self.snapshots.first().map(|s| s.index) else {
            return Ok(());
        };
        let mut removed_segments = false;
        // Segment 0 holds nothing above `floor` when the next one starts at
        // or below floor + 1. The active (last) segment is never removed.
        while self.segments.len() > 1 && self.segments[1].first_index <= floor + 1 {
            let old = &self.segments[0];
            self.fs
                .remove(&old.path)
                .map_err(io_err("remove", &old.path))?;
            self.segments.remove(0);
            removed_segments = true;
        }
        if removed_segments {
            let dir = &self.config.log_dir;
            self.fs
                .sync_dir(dir)
                .map_err(io_err("fsync directory", dir))?;
        }
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let fs = Arc::clone(&self.fs);
        let log_dir = self.config.log_dir.clone();
        let snap_dir = self.config.snapshot_dir.clone();
        let mut leftovers = Vec::new();

        let mut snaps: Vec<(u64, PathBuf, u64)> = Vec::new();
        for e in fs.list(&snap_dir).map_err(io_err("list", &snap_dir))? {
            if let Some(index) = snapshot::parse_snapshot_name(&e.name) {
                snaps.push((index, snap_dir.join(&e.name), e.len));
            } else if e.name.ends_with(TMP_SUFFIX) && e.name.starts_with(snapshot::SNAPSHOT_PREFIX)
            {
                leftovers.push(snap_dir.join(&e.name));
            }
        }
        snaps.sort_by_key(|s| s.0);
        let mut segments: Vec<Segment> = Vec::new();
        for e in fs.list(&log_dir).map_err(io_err("list", &log_dir))? {
            if let Some(first_index) = wal::parse_segment_name(&e.name) {
                segments.push(Segment {
                    first_index,
                    path: log_dir.join(&e.name),
                    bytes: e.len,
                    offsets: Vec::new(),
                });
            } else if e.name.ends_with(TMP_SUFFIX) && e.name.starts_with(wal::SEGMENT_PREFIX) {
                leftovers.push(log_dir.join(&e.name));
            }
        }
        segments.sort_by_key(|s| s.first_index);

        // The newest snapshot that reads back intact, checked (a piece at
        // a time) through the handle that is kept to decode and serve it:
        // the bytes used are the bytes checked.
        let mut chosen: Option<RecoveredSnapshot> = None;
        let mut damaged: Vec<(u64, PathBuf, String)> = Vec::new();
        for (index, path, len) in snaps.iter().rev() {
            let file = fs.open_read(path).map_err(io_err("open", path))?;
            match snapshot::check(file.as_ref(), *len, *index).map_err(io_err("read", path))? {
                Ok(payload_len) => {
                    let file = SnapshotReader::new(file, path.clone(), *index, payload_len);
                    chosen = Some(RecoveredSnapshot {
                        index: *index,
                        file,
                    });
                    break;
                }
                Err(reason) => damaged.push((*index, path.clone(), reason)),
            }
        }
        let base = chosen.as_ref().map_or(0, |s| s.index);
        // Records missing after an older snapshot mean the damaged newer one
        // cannot be replaced: report the snapshot, which is the real cause.
        let missing = |path: &Path, offset: u64, reason: String| match damaged.first() {
            Some((_, snap, why)) => StorageError::CorruptSnapshot {
                path: snap.clone(),
                reason: why.clone(),
            },
            None => StorageError::CorruptLog {
                path: path.to_path_buf(),
                offset,
                reason,
            },
        };

        // The log from base + 1 on.
        let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut torn: Option<(PathBuf, u64)> = None;
        let mut active_end: Option<(u64, u64, bool)> = None; // offset, next index, has records
        let count = segments.len();
        let mut offsets: Vec<(usize, Vec<u64>)> = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let is_last = i + 1 == count;
            if !is_last && segments[i + 1].first_index <= base + 1 {
                continue;
            }
            let bytes = fs.read(&seg.path).map_err(io_err("read", &seg.path))?;
            let scan = wal::scan(&bytes, seg.first_index, is_last).map_err(|c| {
                StorageError::CorruptLog {
                    path: seg.path.clone(),
                    offset: c.offset,
                    reason: c.reason,
                }
            })?;
            let next_after = seg.first_index + scan.records.len() as u64;
            offsets.push((
                i,
                scan.records
                    .iter()
                    .map(|(_, range)| (range.start - wal::FRAME_HEADER_LEN) as u64)
                    .collect(),
            ));
            if !is_last && !scan.records.is_empty() && next_after != segments[i + 1].first_index {
                return Err(missing(
                    &segments[i + 1].path,
                    wal::HEADER_LEN as u64,
                    format!(
                        "the segment starts at index {} but the previous one ends at {}: \
                         records are missing",
                        segments[i + 1].first_index,
                        next_after - 1
                    ),
                ));
            }
            for (index, range) in &scan.records {
                if *index <= base {
                    continue;
                }
                let expected = entries.last().map_or(base + 1, |(last, _)| last + 1);
                if *index != expected {
                    return Err(missing(
                        &seg.path,
                        (range.start - wal::FRAME_HEADER_LEN) as u64,
                        format!(
                            "the log continues at index {index} but {expected} is needed after \
                             {}: records are missing",
                            if entries.is_empty() {
                                "the snapshot"
                            } else {
                                "the previous record"
                            }
                        ),
                    ));
                }
                entries.push((*index, bytes[range.clone()].to_vec()));
            }
            if let wal::ScanEnd::Torn { offset, reason } = &scan.end {
                tracing::warn!(
                    path = %seg.path.display(),
                    offset,
                    reason = %reason,
                    "cutting off the torn tail of an interrupted write"
                );
                torn = Some((seg.path.clone(), *offset));
            }
            if is_last {
                active_end = Some((scan.end_offset, next_after, !scan.records.is_empty()));
            }
        }
        for (i, found) in offsets {
            segments[i].offsets = found;
        }
        let last_entry = entries.last().map_or(base, |(i, _)| *i);

        // Damaged snapshots newer than the chosen one are only survivable if
        // the log reaches their index.
        let mut corrupt_snapshots = Vec::new();
        if let Some((index, path, reason)) = damaged.first()
            && last_entry < *index
        {
            return Err(StorageError::CorruptSnapshot {
                path: path.clone(),
                reason: reason.clone(),
            });
        }
        for (_, path, reason) in &damaged {
            tracing::warn!(path = %path.display(), reason = %reason, "skipping a damaged snapshot; the log covers it");
            let mut aside = path.clone().into_os_string();
            aside.push(CORRUPT_SUFFIX);
            fs.rename(path, Path::new(&aside))
                .map_err(io_err("rename", path))?;
            corrupt_snapshots.push((path.clone(), reason.clone()));
        }
        if !damaged.is_empty() {
            fs.sync_dir(&snap_dir)
                .map_err(io_err("fsync directory", &snap_dir))?;
        }

        // Repairs, now that nothing can fail the recovery for good.
        for path in &leftovers {
            fs.remove(path).map_err(io_err("remove", path))?;
        }
        if !leftovers.is_empty() {
            fs.sync_dir(&log_dir)
                .map_err(io_err("fsync directory", &log_dir))?;
            fs.sync_dir(&snap_dir)
                .map_err(io_err("fsync directory", &snap_dir))?;
        }
        if let (Some(seg), Some((offset, next_index, has_records))) =
            (segments.last_mut(), active_end)
        {
            let mut file = fs.open(&seg.path).map_err(io_err("open", &seg.path))?;
            if torn.is_some() {
                let reserved = seg.bytes;
                file.set_len(offset)
                    .map_err(io_err("truncate", &seg.path))?;
                seg.bytes = offset;
                // Zero-fill the reservation again; on a full disk the
                // segment just stays short, which is still correct.
                if self.config.preallocate {
                    match file.allocate(reserved) {
                        Ok(()) => seg.bytes = reserved,
                        Err(e) => tracing::warn!(
                            path = %seg.path.display(),
                            error = %e,
                            "cannot preallocate the truncated segment again"
                        ),
                    }
                }
                file.sync_all().map_err(io_err("fsync", &seg.path))?;
            }
            self.active = Some(Active {
                file,
                offset,
                next_index,
                has_records,
                allocated: seg.bytes.max(offset),
                dirty: false,
            });
        }

        self.segments = segments;
        self.snapshots = snaps
            .into_iter()
            .filter(|(index, _, _)| !damaged.iter().any(|(d, _, _)| d == index))
            .map(|(index, path, bytes)| SnapshotFile { index, path, bytes })
            .collect();
        self.last_index = last_entry;
        Ok(Recovered {
            snapshot: chosen,
            entries,
            truncated_tail: torn,
            corrupt_snapshots,
        })
    }
}

/// Creates `dir` and its missing parents, and syncs the parent of each one
/// it created: a directory created just now could otherwise vanish in a
/// crash, and the acknowledged records in it with it.
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<(), StorageError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| fs.list(a).is_err())
        .collect();
    fs.create_dir_all(dir)
        .map_err(io_err("create directory", dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)
                .map_err(io_err("fsync directory", parent))?;
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(TMP_SUFFIX);
    PathBuf::from(p)
}

#[cfg(test)]
mod tests;
