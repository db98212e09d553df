//! The write-ahead log from the driver's side: the replica's durable
//! writes batched into one append in flight (group commit), the replica
//! told what is durable, and a failed batch appended again.

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
        }
        .encode();
        self.logged_since_snapshot += record.len() as u64;
        wal.push(record, token);
    }

    /// Starts the next log batch when none is in flight: everything
    /// gathered since the last one goes with one fdatasync.
    pub(super) fn flush_wal(&mut self) {
        let Some(wal) = &mut self.wal else {
            return;
        };
        if wal.in_flight.is_some() {
            return;
        }
        let (batch, records) = match wal.retry.take() {
            Some((batch, records, due)) => {
                if Instant::now() < due {
                    wal.retry = Some((batch, records, due));
                    return;
                }
                (batch, records)
            }
            None => {
                if wal.buffer.is_empty() {
                    return;
                }
                let records = std::mem::take(&mut wal.buffer);
                let batch = WalBatch {
                    batch: wal.next_batch,
                    token: std::mem::take(&mut wal.buffer_token),
                    last_record: records.last().map_or(0, |(i, _)| *i),
                    records: records.len(),
                };
                wal.next_batch += 1;
                (batch, records)
            }
        };
        if wal.writer.append(batch.batch, records) {
            wal.in_flight = Some(batch);
        } else {
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
                let Some(wal) = &mut self.wal else {
                    return;
                };
                let Some(in_flight) = wal.in_flight.take_if(|f| f.batch == batch) else {
                    tracing::error!(batch, "storage reported a batch that is not in flight");
                    return;
                };
                match result {
                    Ok(()) => {
                        if wal.error.take().is_some() {
                            tracing::info!("the write-ahead log is writable again");
                        }
                        self.metrics
                            .fsync_seconds
                            .observe(fsync_micros as f64 / 1e6);
                        self.metrics.batch_txns.observe(in_flight.records as f64);
                        if in_flight.token > 0 {
                            self.replica.persisted(in_flight.token);
                        }
                        self.checkpoint_durable(in_flight.last_record);
                    }
                    Err((message, records)) => {
                        // Nothing of the batch counts; the replica still
                        // needs it, so it is appended again. Meanwhile new
                        // writes are refused with the reason.
                        tracing::error!(%message, records = records.len(), "write to the log failed; retrying");
                        wal.error = Some(message);
                        wal.retry = Some((in_flight, records, Instant::now() + WAL_RETRY));
                    }
                }
            }
            Persisted::Snapshot {
                index,
                result,
                stats,
            } => {
                self.storage_stats = stats;
                match result {
                    Ok(()) => {
                        tracing::info!(log_index = index, "snapshot written");
                        if let Some(snapshot) = &mut self.snapshot {
                            snapshot.stage = SnapshotStage::Written;
                        }
                        self.try_compact();
                    }
                    Err(message) => {
                        tracing::error!(log_index = index, %message, "snapshot failed; will retry");
                        self.snapshot = None;
                    }
                }
            }
        }
    }
}
