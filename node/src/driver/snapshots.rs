//! Snapshots from the driver's side: when one is due, encoding it a slice
//! at a time, the checkpoint record, the file, compacting the replica's
//! log, and installing a snapshot from the leader (with the watches its
//! skipped changes fire).
//!
//! With a disk, the encoded bytes go to the snapshot thread a megabyte at
//! a time as they come, into a temporary file begun with the snapshot
//! (its slot and membership first); once the checkpoint record is durable
//! the file is finished (header, fsync, rename, directory fsync). The
//! snapshot is never whole in memory, and encoding waits while the
//! snapshot thread is behind ([`SNAPSHOT_BACKLOG`]); that thread packs
//! them into LZ4 blocks unless --snapshot-compression is none (see
//! [`packed`]). Without a disk the snapshot is kept whole, in memory,
//! packed the same way: it is what the replica serves.

use super::*;

impl NodeState {
    /// Records up to `last_record` are durable: if the running snapshot's
    /// checkpoint is among them, its file can be finished.
    pub(super) fn checkpoint_durable(&mut self, last_record: u64) {
        let Some(file) = self.snapshots.checkpoint_durable(last_record) else {
            return;
        };
        tracing::debug!(
            slot = file.slot,
            log_index = file.log_index,
            "writing snapshot file"
        );
        let Some(wal) = &mut self.wal else {
            return;
        };
        match wal.snapshot_file.take() {
            Some(id) => {
                if !wal.writer.finish_snapshot(id, file.log_index) {
                    tracing::error!("the snapshot thread has stopped");
                }
            }
            None => {
                // Never: the file is begun with the snapshot. Dropping the
                // snapshot lets the next one be taken.
                tracing::error!(slot = file.slot, "a snapshot without its file; dropped");
                self.snapshots.file_written(file.log_index, None);
            }
        }
    }

    /// Drops the replica's log up to the snapshot once the file is durable
    /// (or at once in memory) and the replica has committed its slot. The
    /// replica keeps the file to serve lagging peers, not the bytes (and
    /// swaps a snapshot it installed from a peer for the file written of
    /// it).
    pub(super) fn try_compact(&mut self) {
        let commit = self.replica.commit_index();
        let Some((slot, state)) = self.snapshots.compactable(commit) else {
            return;
        };
        if let Err(error) = self.replica.compact(slot, state) {
            tracing::warn!(%error, "cannot compact the log");
        }
        if let Some(wal) = &mut self.wal {
            wal.slots
                .forget_through(self.replica.log_start().saturating_sub(1));
        }
    }

    /// The leader sent a snapshot: it replaces the state machine. The
    /// replica assembled it in memory; it stays there until its file is
    /// written.
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let bytes = match snapshot.data.read_all() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(index = snapshot.index, %error, "snapshot from the leader cannot be read; ignored");
                return;
            }
        };
        let machine = match packed::decode_state(self.state_config.clone(), &bytes) {
            Ok(machine) => machine,
            Err(error) => {
                tracing::error!(index = snapshot.index, %error, "snapshot from the leader does not decode; ignored");
                return;
            }
        };
        tracing::info!(
            index = snapshot.index,
            bytes = bytes.len(),
            "installed a snapshot from the leader"
        );
        let old = std::mem::replace(&mut self.machine, machine);
        self.snapshotting = None;
        self.snapshots
            .replaced(u64::try_from(self.machine.applied()).unwrap_or(0));
        self.fire_skipped_changes(&old);
        drop(old);
        let now = self.mono_now();
        self.sessions.restart(self.machine.sessions(), now);
        // Compacted already inside the replica; only the file is owed. The
        // snapshot being encoded or waiting for its checkpoint is moot.
        match &mut self.wal {
            Some(wal) => {
                if let Some(moot) = wal.snapshot_file.take() {
                    wal.writer.abandon_snapshot(moot);
                }
                let prefix = snapshot_file_prefix(snapshot.index, &snapshot.membership);
                // The bytes as the leader sent them, packed or not.
                wal.snapshot_file = wal.writer.begin_snapshot(prefix, false);
                if let Some(id) = wal.snapshot_file
                    && !wal.writer.append_snapshot(id, bytes)
                {
                    tracing::error!("the snapshot thread has stopped");
                }
                self.snapshot_encoded(snapshot.index, snapshot.membership, None);
            }
            None => self.snapshot_encoded(snapshot.index, snapshot.membership, Some(bytes)),
        }
        // The old state machine is gone: return its memory.
        crate::memory::release_freed();
    }

    /// After a jump from `old` to the installed state: fires the watches the
    /// skipped txns would have fired, and drops what belonged to sessions
    /// that ended among them.
    pub(super) fn fire_skipped_changes(&mut self, old: &StateMachine) {
        let watched = self.watches.watched_paths();
        if !watched.is_empty() {
            let triggers =
                self.machine
                    .tree()
                    .jump_triggers(old.tree(), &watched, self.machine.applied());
            self.fire(&triggers);
        }
        let ended: Vec<SessionId> = self
            .outboxes
            .keys()
            .chain(self.auth.keys())
            .copied()
            .filter(|session| !self.machine.sessions().contains(*session))
            .collect();
        for session in ended {
            self.forget_session(session);
        }
    }

    /// A snapshot at `slot` is encoded (or installed): with a disk, its
    /// bytes are in its file and the checkpoint is appended (the file is
    /// finished once the checkpoint is durable); without one, `in_memory`
    /// holds them and the snapshot counts as written.
    pub(super) fn snapshot_encoded(
        &mut self,
        slot: Slot,
        membership: Membership,
        in_memory: Option<Bytes>,
    ) {
        let checkpoint = LogRecord {
            commit: self.replica.commit_index(),
            write: Write {
                token: 0,
                promised: Some(self.replica.promised()),
                entries: self.replica.accepted_after(slot),
            },
        };
        match &mut self.wal {
            Some(wal) => {
                let record = wal.commit.push(checkpoint.encode(), 0);
                wal.slots.wrote(
                    checkpoint.write.entries.iter().map(|(slot, _)| *slot),
                    record,
                );
                self.snapshots.encoded(slot, membership, record);
            }
            None => {
                let state = in_memory.unwrap_or_default();
                self.snapshots.encoded_in_memory(slot, membership, state);
            }
        }
    }

    pub(super) fn maybe_snapshot(&mut self) {
        let applied = u64::try_from(self.machine.applied()).unwrap_or(0);
        let znodes = self.machine.tree().len();
        if self
            .snapshots
            .due(applied, znodes, self.snapshotting.is_some())
        {
            self.start_snapshot();
        }
    }

    /// Starts encoding a snapshot of the applied state; returns its index.
    /// With a disk its file is begun at once, with the slot and the
    /// membership in force there (fixed once the slot is applied).
    pub(super) fn start_snapshot(&mut self) -> Zxid {
        let applied = self.machine.applied();
        let slot = u64::try_from(applied).unwrap_or(0);
        let started = self.mono_now();
        let buffer = match &mut self.wal {
            Some(wal) => {
                if let Some(moot) = wal.snapshot_file.take() {
                    wal.writer.abandon_snapshot(moot);
                }
                let membership = self.replica.membership_at(slot);
                wal.snapshot_file = wal.writer.begin_snapshot(
                    snapshot_file_prefix(slot, &membership),
                    self.snapshot_compression == SnapshotCompression::Lz4,
                );
                SnapshotBuffer::Slices
            }
            None => SnapshotBuffer::Whole,
        };
        self.snapshotting = Some(self.machine.begin_snapshot(buffer));
        self.snapshots.started(slot);
        tracing::info!(
            index = applied,
            begin_ms = self.mono_now().saturating_sub(started),
            "taking a snapshot"
        );
        applied
    }

    /// Whether a snapshot is being encoded.
    pub fn snapshotting(&self) -> bool {
        self.snapshotting.is_some()
    }

    /// Whether a snapshot is being encoded and its next slice can be: not
    /// while the snapshot thread has more than [`SNAPSHOT_BACKLOG`] bytes
    /// of it to write.
    pub fn snapshot_ready(&self) -> bool {
        self.snapshotting.is_some()
            && self
                .wal
                .as_ref()
                .is_none_or(|wal| wal.writer.snapshot_backlog() < SNAPSHOT_BACKLOG)
    }

    /// Encodes the next slice of the running snapshot; the driver calls it
    /// between jobs, so requests are served while a large tree is encoded.
    /// With a disk, the bytes go to the snapshot's file a piece at a time.
    pub fn snapshot_work(&mut self) {
        let Some(snapshot) = &mut self.snapshotting else {
            return;
        };
        let done = self.machine.snapshot_step(snapshot, SNAPSHOT_SLICE);
        if let Some(wal) = &self.wal
            && (done.is_some() || snapshot.pending_bytes() >= SNAPSHOT_PIECE)
        {
            let mut piece = snapshot.take_encoded();
            if done.is_some() {
                piece.append(&mut snapshot.bytes);
            }
            if let Some(id) = wal.snapshot_file
                && !wal.writer.append_snapshot(id, piece.into())
            {
                tracing::error!("the snapshot thread has stopped");
            }
        }
        let Some(index) = done else {
            return;
        };
        let Some(finished) = self.snapshotting.take() else {
            return;
        };
        let slot = u64::try_from(index).unwrap_or(0);
        tracing::debug!(slot, bytes = finished.encoded_bytes(), "snapshot encoded");
        let membership = self.replica.membership_at(slot);
        let in_memory = self.wal.is_none().then(|| match self.snapshot_compression {
            SnapshotCompression::Lz4 => Bytes::from(packed::pack(&finished.bytes)),
            SnapshotCompression::None => Bytes::from(finished.bytes),
        });
        self.snapshot_encoded(slot, membership, in_memory);
    }
}
