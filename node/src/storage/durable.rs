//! The bridge between the driver and the blocking storage layer: recovery
//! (the newest snapshot, the replica's durable Paxos state from the log
//! records after it, and the committed prefix applied to the state
//! machine), a storage thread that owns the WAL, takes batches of encoded
//! records in order and reports each outcome back to the driver (one batch
//! is one fdatasync, so the driver's batching is the group commit), and a
//! snapshot thread that writes snapshot files beside it, so a large
//! snapshot never delays an append; the storage thread registers each
//! finished file and purges.
//!
//! A snapshot's state bytes are not kept in memory: the driver hands them
//! to the snapshot thread a piece at a time as it encodes them, which
//! appends them to a temporary file ([`PartialSnapshot`]) and gives the
//! file its name once the snapshot's checkpoint is durable. The replica
//! gets a [`SnapshotState`], which reads them from the file (held open)
//! when a chunk is sent to a lagging peer. Recovery checks the file and
//! decodes the state machine from it through a window of about a megabyte,
//! and hands the replica the file the same way.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use synod_core::codec::CodecError;
use synod_core::node::apply::{AppliedValue, apply_value};
use synod_core::paxos::{
    Durable, Membership, Message, NodeId, Slot, Snapshot, SnapshotBytes, SnapshotSource, Value,
};
use synod_core::state::{StateConfig, StateMachine};
use tokio::sync::mpsc::UnboundedSender;

use crate::storage::logged::{LoggedRequest, SlotRecords, read_logged};
use crate::storage::packed;
use crate::storage::record::{LogRecord, decode_snapshot_file_header};
use crate::storage::{
    FileSystem, PartialSnapshot, RealFs, RecoveredSnapshot, SnapshotReader, SnapshotWriter,
    Storage, StorageConfig, StorageError, StorageStats, WrittenSnapshot,
};

/// The state machine's bytes in a snapshot file (the payload after the
/// slot and membership), read on demand: what the replica serves to
/// lagging peers instead of a copy in memory.
#[derive(Debug)]
pub struct SnapshotState {
    file: SnapshotReader,
    /// Where the state starts in the file's payload.
    start: u64,
    len: u64,
}

impl SnapshotState {
    /// The `len` bytes at `start` of `file`'s payload.
    pub fn new(file: SnapshotReader, start: u64, len: u64) -> Self {
        SnapshotState { file, start, len }
    }
}

impl SnapshotSource for SnapshotState {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let in_state = offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.len);
        if !in_state {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset} are past the end of a {}-byte snapshot",
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.file.read_payload_at(self.start + offset, buf)
    }
}

/// Work for the storage thread.
#[derive(Debug)]
enum StorageJob {
    Append {
        batch: u64,
        records: Vec<(u64, Vec<u8>)>,
    },
    /// A snapshot file the snapshot thread wrote (or failed to write),
    /// with its state bytes to serve from it.
    SnapshotWritten { index: u64, written: FileOutcome },
    /// Committed values to read back from the log for a peer.
    ReadLogged(LoggedRequest),
}

/// Log records as the storage thread takes them: index and payload.
pub type Records = Vec<(u64, Vec<u8>)>;

/// What the storage thread reports back.
#[derive(Debug)]
pub enum Persisted {
    /// Batch `batch` is durable, or failed and nothing of it counts; a
    /// failed batch's records come back to be appended again.
    Batch {
        batch: u64,
        result: Result<(), (String, Records)>,
        fsync_micros: u64,
        stats: StorageStats,
    },
    /// A snapshot at `index` was written (or not) and old files purged;
    /// once written, its state bytes as the file holds them.
    Snapshot {
        index: u64,
        result: Result<SnapshotBytes, String>,
        stats: StorageStats,
    },
    /// Committed values read back from the log, to send to peer `to`, or
    /// why they could not be.
    Logged {
        to: NodeId,
        result: Result<Message<Vec<u8>>, String>,
    },
}

/// Storage opened and recovered, not yet running on its thread.
#[derive(Debug)]
pub struct DurableLog {
    storage: Storage,
}

impl DurableLog {
    pub fn stats(&self) -> StorageStats {
        self.storage.stats()
    }

    /// Index the next log record takes.
    pub fn next_record(&self) -> u64 {
        self.storage.last_index() + 1
    }
}

/// What a node recovered from its disk.
#[derive(Debug)]
pub struct Recovered {
    /// The state machine: the snapshot plus every slot the log shows as
    /// committed after it.
    pub machine: StateMachine,
    /// What the replica restarts from: the promised ballot, the accepted
    /// entries after the snapshot, and the snapshot.
    pub durable: Durable<Vec<u8>>,
    /// Which record last wrote each slot after the snapshot.
    pub slot_records: SlotRecords,
    /// Where the time to recover went.
    pub timings: RecoveryTimings,
}

/// Where a restart's recovery spent its time, for the logs and the
/// recovery bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryTimings {
    /// Locking, scanning and reading the files, every CRC checked.
    pub read: std::time::Duration,
    /// Decoding the snapshot into the state machine.
    pub snapshot: std::time::Duration,
    /// Decoding the log records after it and applying the committed ones.
    pub log: std::time::Duration,
}

/// Why a node could not recover its state.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "snapshot at log index {index} cannot be decoded: {source}; move it aside to recover from an older snapshot and the log"
    )]
    Snapshot {
        index: u64,
        source: synod_core::codec::CodecError,
    },
    #[error("log record {index} cannot be decoded: {source}")]
    Record {
        index: u64,
        source: synod_core::codec::CodecError,
    },
}

/// The slot, the membership and where the state starts in the payload of
/// snapshot `file`, from as much of its start as that takes.
fn read_file_header(file: &SnapshotReader) -> Result<(Slot, Membership, u64), CodecError> {
    let mut want = 4096u64;
    loop {
        let len = want.min(file.payload_len());
        let mut head = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_payload_at(0, &mut head)
            .map_err(|e| CodecError::Corrupt(format!("cannot read the snapshot: {e}")))?;
        match decode_snapshot_file_header(&head) {
            Ok((slot, membership, at)) => return Ok((slot, membership, at as u64)),
            Err(CodecError::Truncated { .. }) if len < file.payload_len() => {
                want = want.saturating_mul(4);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Applies a committed value during recovery, reporting one that does not
/// decode (the node core decides how every value applies).
fn replay_value(machine: &mut StateMachine, slot: Slot, value: &Value<Vec<u8>>) {
    if let AppliedValue::Undecodable(error) = apply_value(machine, slot, value) {
        tracing::error!(slot, %error, "committed value does not decode; applied as a no-op");
    }
}

impl DurableLog {
    /// Opens the data directories, loads the newest snapshot, replays the
    /// log after it into the replica's durable state and applies what the
    /// log shows as committed.
    pub fn recover(
        config: StorageConfig,
        state_config: StateConfig,
    ) -> Result<(DurableLog, Recovered), RecoveryError> {
        Self::recover_with(config, state_config, Arc::new(RealFs))
    }

    pub fn recover_with(
        config: StorageConfig,
        state_config: StateConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(DurableLog, Recovered), RecoveryError> {
        let started = Instant::now();
        let (storage, mut found) = Storage::open(config, fs)?;
        let read = started.elapsed();
        if let Some((file, offset)) = &found.truncated_tail {
            tracing::warn!(file = %file.display(), offset, "truncated a torn write at the end of the log");
        }
        let mut durable = Durable::default();
        let (mut machine, snapshot_slot) = match found.snapshot.take() {
            Some(RecoveredSnapshot { index, file }) => {
                let bad = |source| RecoveryError::Snapshot { index, source };
                let (slot, membership, at) = read_file_header(&file).map_err(bad)?;
                let state_len = file.payload_len() - at;
                // Through a window of about a megabyte, not the whole file.
                let state = SnapshotState::new(file, at, state_len);
                let machine = packed::decode_state_source(state_config, &state).map_err(bad)?;
                // The replica serves the state from the file.
                durable.snapshot = Some(Snapshot {
                    index: slot,
                    membership,
                    data: SnapshotBytes::Source(Arc::new(state)),
                });
                (machine, slot)
            }
            None => (StateMachine::new(state_config), 0),
        };
        let snapshot_decoded = started.elapsed();
        let mut commit = snapshot_slot;
        let mut slot_records = SlotRecords::after(snapshot_slot);
        let records = found.entries.len();
        // Each record's bytes go as soon as it is decoded, so that the raw
        // log and its decoded entries are not both held at the peak.
        for (index, bytes) in std::mem::take(&mut found.entries) {
            let record = LogRecord::decode(&bytes)
                .map_err(|source| RecoveryError::Record { index, source })?;
            drop(bytes);
            commit = commit.max(record.commit);
            let mut write = record.write;
            write.entries.retain(|(slot, _)| *slot > snapshot_slot);
            slot_records.wrote(write.entries.iter().map(|(slot, _)| *slot), index);
            durable.apply(&write);
        }
        // Apply the committed prefix the log holds, so the node serves its
        // last known state at once instead of after hearing from a leader.
        // The replica takes the same prefix as committed (`Durable::commit`).
        for (expected, (slot, entry)) in (snapshot_slot + 1..).zip(&durable.entries) {
            if *slot != expected || *slot > commit {
                break;
            }
            replay_value(&mut machine, *slot, &entry.value);
        }
        durable.commit = commit;
        let timings = RecoveryTimings {
            read,
            snapshot: snapshot_decoded.saturating_sub(read),
            log: started.elapsed().saturating_sub(snapshot_decoded),
        };
        tracing::info!(
            snapshot_slot,
            records,
            promised = ?durable.promised,
            accepted = durable.entries.len(),
            commit,
            applied = machine.applied(),
            znodes = machine.tree().len(),
            sessions = machine.sessions().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            read_ms = timings.read.as_millis() as u64,
            snapshot_ms = timings.snapshot.as_millis() as u64,
            log_ms = timings.log.as_millis() as u64,
            "recovered state"
        );
        Ok((
            DurableLog { storage },
            Recovered {
                machine,
                durable,
                slot_records,
                timings,
            },
        ))
    }

    /// Moves the storage onto its own thread.
    /// Snapshot files are written on a second thread, so that writing a
    /// large one never holds up the appends behind it; the storage thread
    /// only registers the finished file and purges.
    pub fn start(self, report: UnboundedSender<Persisted>) -> LogWriter {
        let (jobs, inbox) = std::sync::mpsc::channel::<StorageJob>();
        let mut storage = self.storage;
        let writer = storage.snapshot_writer();
        let (snapshots, snapshot_inbox) = std::sync::mpsc::channel::<SnapshotJob>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let written_back = Arc::clone(&backlog);
        let registrar = jobs.clone();
        let snapshot_thread = std::thread::Builder::new()
            .name("synod-snapshot".into())
            .spawn(move || {
                let mut files = SnapshotFiles::default();
                while let Ok(job) = snapshot_inbox.recv() {
                    let Some((index, written)) = files.run(&writer, job, &written_back) else {
                        continue;
                    };
                    // Only once the file is durable does the replica get
                    // the bytes from it (through the storage thread, which
                    // registers the file first).
                    if registrar
                        .send(StorageJob::SnapshotWritten { index, written })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        if let Err(error) = &snapshot_thread {
            tracing::error!(%error, "cannot start the snapshot thread; snapshots will fail");
        }
        let spawned = std::thread::Builder::new()
            .name("synod-storage".into())
            .spawn(move || {
                while let Ok(job) = inbox.recv() {
                    let message = match job {
                        StorageJob::Append { batch, records } => {
                            let started = Instant::now();
                            let refs: Vec<(u64, &[u8])> =
                                records.iter().map(|(i, b)| (*i, b.as_slice())).collect();
                            let result = storage.append(&refs).map_err(|e| e.to_string());
                            drop(refs);
                            let result = result.map_err(|message| (message, records));
                            let fsync_micros = started.elapsed().as_micros() as u64;
                            Persisted::Batch {
                                batch,
                                result,
                                fsync_micros,
                                stats: storage.stats(),
                            }
                        }
                        StorageJob::SnapshotWritten { index, written } => {
                            let result = written.and_then(|(written, state)| {
                                storage.add_snapshot(written).map_err(|e| e.to_string())?;
                                Ok(SnapshotBytes::Source(Arc::new(state)))
                            });
                            Persisted::Snapshot {
                                index,
                                result,
                                stats: storage.stats(),
                            }
                        }
                        StorageJob::ReadLogged(request) => {
                            // Reads of recent records come from the page
                            // cache; an append waits behind them at most a
                            // few hundred microseconds.
                            let to = request.to;
                            Persisted::Logged {
                                to,
                                result: read_logged(&storage, request).map(|(_, msg)| msg),
                            }
                        }
                    };
                    if report.send(message).is_err() {
                        break;
                    }
                }
            });
        if let Err(error) = &spawned {
            tracing::error!(%error, "cannot start the storage thread; writes will fail");
        }
        LogWriter {
            jobs,
            snapshots,
            backlog,
            next_file: 0,
        }
    }
}

/// A snapshot file written, with its state bytes to serve from it, or why
/// it could not be.
type FileOutcome = Result<(WrittenSnapshot, SnapshotState), String>;

/// The snapshot thread's files being written, by the driver's number.
#[derive(Debug, Default)]
struct SnapshotFiles {
    open: HashMap<u64, OpenFile>,
    /// The frames of the piece being packed, reused from piece to piece.
    packed: Vec<u8>,
}

/// A snapshot file being written.
#[derive(Debug)]
struct OpenFile {
    /// The file, or why it failed (reported when it is finished).
    partial: Result<PartialSnapshot, String>,
    /// The length of its prefix: where the state starts.
    state_at: u64,
    /// Whether the state appended is packed as it is written.
    pack: bool,
}

impl SnapshotFiles {
    /// Does `job`; a finished file's index and outcome, to register.
    fn run(
        &mut self,
        writer: &SnapshotWriter,
        job: SnapshotJob,
        backlog: &AtomicUsize,
    ) -> Option<(u64, FileOutcome)> {
        match job {
            SnapshotJob::Begin { file, prefix, pack } => {
                let state_at = prefix.len() as u64;
                let mut head = prefix;
                if pack {
                    head.extend_from_slice(packed::MAGIC);
                }
                let mut partial = writer.begin().map_err(|e| e.to_string());
                if let Ok(p) = &mut partial
                    && let Err(e) = p.append(&head)
                {
                    partial = Err(e.to_string());
                }
                self.open.insert(
                    file,
                    OpenFile {
                        partial,
                        state_at,
                        pack,
                    },
                );
                None
            }
            SnapshotJob::Append { file, bytes } => {
                if let Some(open) = self.open.get_mut(&file)
                    && let Ok(p) = &mut open.partial
                {
                    let written = if open.pack {
                        self.packed.clear();
                        packed::pack_into(&mut self.packed, &bytes);
                        p.append(&self.packed)
                    } else {
                        p.append(&bytes)
                    };
                    if let Err(e) = written {
                        open.partial = Err(e.to_string());
                    }
                }
                backlog.fetch_sub(bytes.len(), Ordering::Relaxed);
                None
            }
            SnapshotJob::Finish { file, index } => {
                let written = match self.open.remove(&file).map(|o| (o.partial, o.state_at)) {
                    Some((Ok(partial), at)) => {
                        let state_len = partial.len() - at;
                        partial
                            .finish(index)
                            .map(|written| {
                                let state = SnapshotState::new(written.reader(), at, state_len);
                                (written, state)
                            })
                            .map_err(|e| e.to_string())
                    }
                    Some((Err(why), _)) => Err(why),
                    None => Err(format!("snapshot file {file} was never begun")),
                };
                Some((index, written))
            }
            SnapshotJob::Abandon { file } => {
                // Dropping an unfinished file removes it.
                self.open.remove(&file);
                None
            }
        }
    }
}

/// The driver's side of the storage thread.
#[derive(Debug)]
pub struct LogWriter {
    jobs: std::sync::mpsc::Sender<StorageJob>,
    snapshots: std::sync::mpsc::Sender<SnapshotJob>,
    /// Snapshot bytes handed to the snapshot thread and not written yet.
    backlog: Arc<AtomicUsize>,
    next_file: u64,
}

/// Work for the snapshot thread, on the file the driver numbered `file`.
#[derive(Debug)]
enum SnapshotJob {
    /// Start a temporary file with `prefix` (the slot and membership);
    /// with `pack`, the state appended to it is written packed.
    Begin {
        file: u64,
        prefix: Vec<u8>,
        pack: bool,
    },
    /// Append state bytes (shared, not copied, when they are a snapshot
    /// received whole).
    Append { file: u64, bytes: Bytes },
    /// Make it the snapshot at log position `index`.
    Finish { file: u64, index: u64 },
    /// Remove it: its snapshot was superseded.
    Abandon { file: u64 },
}

impl LogWriter {
    /// Queues a batch; false when the storage thread is gone.
    pub fn append(&self, batch: u64, records: Vec<(u64, Vec<u8>)>) -> bool {
        self.jobs
            .send(StorageJob::Append { batch, records })
            .is_ok()
    }

    /// Starts a snapshot file whose payload begins with `prefix`; its
    /// number, for the calls that follow, or `None` when the snapshot
    /// thread is gone. With `pack` the thread packs the state appended
    /// ([`packed`]); without, it writes it as given.
    pub fn begin_snapshot(&mut self, prefix: Vec<u8>, pack: bool) -> Option<u64> {
        self.next_file += 1;
        let file = self.next_file;
        self.snapshots
            .send(SnapshotJob::Begin { file, prefix, pack })
            .ok()
            .map(|()| file)
    }

    /// Appends `bytes` to snapshot file `file`; false when the snapshot
    /// thread is gone. They count in [`LogWriter::snapshot_backlog`] until
    /// written.
    pub fn append_snapshot(&self, file: u64, bytes: Bytes) -> bool {
        let len = bytes.len();
        self.backlog.fetch_add(len, Ordering::Relaxed);
        let sent = self
            .snapshots
            .send(SnapshotJob::Append { file, bytes })
            .is_ok();
        if !sent {
            self.backlog.fetch_sub(len, Ordering::Relaxed);
        }
        sent
    }

    /// Snapshot file `file` is complete: it becomes the snapshot at log
    /// position `index` (reported as [`Persisted::Snapshot`]); false when
    /// the snapshot thread is gone.
    pub fn finish_snapshot(&self, file: u64, index: u64) -> bool {
        self.snapshots
            .send(SnapshotJob::Finish { file, index })
            .is_ok()
    }

    /// Reads committed values back from the log for a peer (reported as
    /// [`Persisted::Logged`]); false when the storage thread is gone.
    pub fn read_logged(&self, request: LoggedRequest) -> bool {
        self.jobs.send(StorageJob::ReadLogged(request)).is_ok()
    }

    /// Snapshot file `file` is not needed: it is removed.
    pub fn abandon_snapshot(&self, file: u64) {
        let _ = self.snapshots.send(SnapshotJob::Abandon { file });
    }

    /// Snapshot bytes queued and not written yet: what the driver holds
    /// back encoding on, so they stay few.
    pub fn snapshot_backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }
}
