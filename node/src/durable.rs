//! The bridge between the driver and the blocking storage layer: a storage
//! thread that owns the WAL, takes batches of encoded entries in order and
//! reports each outcome back to the driver (one batch is one fdatasync, so
//! the driver's batching is the group commit), and a snapshot thread that
//! writes snapshot files beside it, so a large snapshot never delays an
//! append; the storage thread registers each finished file and purges.

use std::sync::Arc;
use std::time::Instant;

use synod_core::codec::LogEntry;
use synod_core::state::{StateConfig, StateMachine};
use tokio::sync::mpsc::UnboundedSender;

use crate::storage::{
    FileSystem, RealFs, Storage, StorageConfig, StorageError, StorageStats, WrittenSnapshot,
};

/// Work for the storage thread.
#[derive(Debug)]
enum StorageJob {
    Append {
        batch: u64,
        records: Vec<(u64, Vec<u8>)>,
    },
    /// A snapshot file the snapshot thread wrote (or failed to write).
    SnapshotWritten {
        index: u64,
        written: Result<WrittenSnapshot, String>,
    },
}

/// What the storage thread reports back.
#[derive(Debug)]
pub enum Persisted {
    /// Batch `batch` is durable, or failed and nothing of it counts.
    Batch {
        batch: u64,
        result: Result<(), String>,
        fsync_micros: u64,
        stats: StorageStats,
    },
    /// A snapshot at `index` was written (or not) and old files purged.
    Snapshot {
        index: u64,
        result: Result<(), String>,
        stats: StorageStats,
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
}

/// Why a node could not recover its state.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "snapshot at index {index} cannot be decoded: {source}; move it aside to recover from an older snapshot and the log"
    )]
    Snapshot {
        index: u64,
        source: synod_core::codec::CodecError,
    },
    #[error("log record {index} cannot be decoded: {source}")]
    Entry {
        index: u64,
        source: synod_core::codec::CodecError,
    },
    #[error("log record {index} holds zxid {zxid}; the log is inconsistent")]
    Mismatch { index: u64, zxid: i64 },
}

impl DurableLog {
    /// Opens the data directories, loads the newest snapshot and replays the
    /// log after it.
    pub fn recover(
        config: StorageConfig,
        state_config: StateConfig,
    ) -> Result<(DurableLog, StateMachine), RecoveryError> {
        Self::recover_with(config, state_config, Arc::new(RealFs))
    }

    pub fn recover_with(
        config: StorageConfig,
        state_config: StateConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(DurableLog, StateMachine), RecoveryError> {
        let started = Instant::now();
        let (storage, recovered) = Storage::open(config, fs)?;
        if let Some((file, offset)) = &recovered.truncated_tail {
            tracing::warn!(file = %file.display(), offset, "truncated a torn write at the end of the log");
        }
        let mut machine =
            match &recovered.snapshot {
                Some((index, bytes)) => StateMachine::decode_snapshot(state_config, bytes)
                    .map_err(|source| RecoveryError::Snapshot {
                        index: *index,
                        source,
                    })?,
                None => StateMachine::new(state_config),
            };
        let replayed = recovered.entries.len();
        for (index, bytes) in &recovered.entries {
            let entry = LogEntry::decode(bytes).map_err(|source| RecoveryError::Entry {
                index: *index,
                source,
            })?;
            if u64::try_from(entry.zxid).ok() != Some(*index) {
                return Err(RecoveryError::Mismatch {
                    index: *index,
                    zxid: entry.zxid,
                });
            }
            machine.apply(entry.zxid, entry.time, &entry.txn);
        }
        tracing::info!(
            snapshot_index = recovered.snapshot.as_ref().map_or(0, |(i, _)| *i),
            replayed,
            applied = machine.applied(),
            znodes = machine.tree().len(),
            sessions = machine.sessions().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered state"
        );
        Ok((DurableLog { storage }, machine))
    }

    /// Moves the storage onto its own thread.
    /// Snapshot files are written on a second thread, so that writing a
    /// large one never holds up the appends behind it; the storage thread
    /// only registers the finished file and purges.
    pub fn start(self, report: UnboundedSender<Persisted>) -> LogWriter {
        let (jobs, inbox) = std::sync::mpsc::channel::<StorageJob>();
        let mut storage = self.storage;
        let writer = storage.snapshot_writer();
        let (snapshots, snapshot_inbox) = std::sync::mpsc::channel::<(u64, Vec<u8>)>();
        let registrar = jobs.clone();
        let snapshot_thread = std::thread::Builder::new()
            .name("synod-snapshot".into())
            .spawn(move || {
                while let Ok((index, bytes)) = snapshot_inbox.recv() {
                    let written = writer.write(index, &bytes).map_err(|e| e.to_string());
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
                            let fsync_micros = started.elapsed().as_micros() as u64;
                            Persisted::Batch {
                                batch,
                                result,
                                fsync_micros,
                                stats: storage.stats(),
                            }
                        }
                        StorageJob::SnapshotWritten { index, written } => {
                            let result = written.and_then(|written| {
                                storage.add_snapshot(written).map_err(|e| e.to_string())
                            });
                            Persisted::Snapshot {
                                index,
                                result,
                                stats: storage.stats(),
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
        LogWriter { jobs, snapshots }
    }
}

/// The driver's side of the storage thread.
#[derive(Debug)]
pub struct LogWriter {
    jobs: std::sync::mpsc::Sender<StorageJob>,
    snapshots: std::sync::mpsc::Sender<(u64, Vec<u8>)>,
}

impl LogWriter {
    /// Queues a batch; false when the storage thread is gone.
    pub fn append(&self, batch: u64, records: Vec<(u64, Vec<u8>)>) -> bool {
        self.jobs
            .send(StorageJob::Append { batch, records })
            .is_ok()
    }

    pub fn snapshot(&self, index: u64, bytes: Vec<u8>) -> bool {
        self.snapshots.send((index, bytes)).is_ok()
    }
}
