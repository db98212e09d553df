//! The write-ahead log from the driver's side: the replica's durable
//! writes batched into one append in flight (group commit), the replica
//! told what is durable, a failed batch appended again, and the committed
//! values the replica let go of read back from the log for a peer.

use super::*;

impl NodeState {
    pub(super) fn persist(&mut self, write: Write<Vec<u8>>) {
        let token = write.token;
        let Some(wal) = &mut self.wal else {
            // In memory: written as soon as asked.
            self.replica.persisted(token);
            return;
        };
        let record = LogRecord {
            commit: self.replica.commit_index(),
            write,
        };
        let bytes = record.encode();
        self.snapshots.logged(bytes.len() as u64);
        let index = wal.commit.push(bytes, token);
        wal.slots
            .wrote(record.write.entries.iter().map(|(slot, _)| *slot), index);
    }

    /// Lets the replica drop from memory the committed values the log
    /// holds, all but the last `--log-cache-entries` applied
    /// (`Snapshots::release_bound`). Without a log nothing is let go.
    pub(super) fn release_log(&mut self) {
        let Some(wal) = &self.wal else {
            return;
        };
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let upto =
            self.snapshots
                .release_bound(applied, self.snapshotting.is_some(), wal.cache_entries);
        self.replica.release_log(upto);
    }

    /// The replica asked for committed values it let go of to be sent to a
    /// peer: the storage thread reads them from the log.
    pub(super) fn send_logged(
        &mut self,
        to: NodeId,
        ballot: Ballot,
        first: Slot,
        last: Slot,
        commit: Slot,
    ) {
        let Some(wal) = &self.wal else {
            return;
        };
        let records = wal.slots.records_for(first, last);
        if records.is_empty() {
            let why = format!("no log record is known for slot {first}");
            self.logged_unavailable(to, &why);
            return;
        }
        let request = LoggedRequest {
            to,
            ballot,
            first,
            commit,
            records,
        };
        if !wal.writer.read_logged(request) {
            self.fail_all("the storage thread has stopped");
        }
    }

    /// Values the replica let go of cannot be read back for peer `to` (a
    /// record damaged or gone): take a snapshot, so that the replica's log
    /// starts after them and the peer is sent the snapshot instead of
    /// asking for them again and again.
    fn logged_unavailable(&mut self, to: NodeId, why: &str) {
        let encoding = self.snapshotting.is_some() || self.snapshots.in_progress().is_some();
        tracing::warn!(
            peer = to,
            reason = why,
            snapshot_under_way = encoding,
            "cannot send a peer committed values from the log; a snapshot will serve it"
        );
        if !encoding {
            self.start_snapshot();
        }
    }

    /// Starts the next log batch when none is in flight: everything
    /// gathered since the last one goes with one fdatasync.
    pub(super) fn flush_wal(&mut self) {
        let now = self.mono_now();
        let Some(wal) = &mut self.wal else {
            return;
        };
        let Some((batch, records)) = wal.commit.next(now) else {
            return;
        };
        if !wal.writer.append(batch.batch, records) {
            self.fail_all("the storage thread has stopped");
        }
    }

    /// Storage finished a job.
    pub fn persisted(&mut self, done: Persisted) {
        match done {
            Persisted::Batch {
                batch,
                result,
                fsync_micros,
                stats,
            } => {
                self.storage_stats = stats;
                let now = self.mono_now();
                let Some(wal) = &mut self.wal else {
                    return;
                };
                match wal.commit.completed(batch, result, now) {
                    Completion::Durable { batch, recovered } => {
                        if recovered {
                            tracing::info!("the write-ahead log is writable again");
                        }
                        self.metrics
                            .fsync_seconds
                            .observe(fsync_micros as f64 / 1e6);
                        self.metrics.batch_txns.observe(batch.records as f64);
                        if batch.token > 0 {
                            self.replica.persisted(batch.token);
                        }
                        self.checkpoint_durable(batch.last_record);
                    }
                    Completion::Failed { records } => {
                        // Meanwhile new writes are refused with the reason.
                        let message = wal.commit.error().unwrap_or_default();
                        tracing::error!(%message, records, "write to the log failed; retrying");
                    }
                    Completion::Unknown => {
                        tracing::error!(batch, "storage reported a batch that is not in flight");
                    }
                }
            }
            Persisted::Logged { to, result } => match result {
                Ok(msg) => {
                    self.metrics
                        .log_reads
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.send_paxos(to, msg);
                }
                Err(why) => self.logged_unavailable(to, &why),
            },
            Persisted::Snapshot {
                index,
                result,
                stats,
            } => {
                self.storage_stats = stats;
                match result {
                    Ok(stored) => {
                        tracing::info!(log_index = index, "snapshot written");
                        // From here on the snapshot is the file: the
                        // replica serves lagging peers from it.
                        self.snapshots.file_written(index, Some(stored));
                        self.try_compact();
                        // The log up to the snapshot, and the snapshot's
                        // pieces, were freed: return that memory.
                        crate::memory::release_freed();
                    }
                    Err(message) => {
                        tracing::error!(log_index = index, %message, "snapshot failed; will retry");
                        self.snapshots.file_written(index, None);
                    }
                }
            }
        }
    }
}
