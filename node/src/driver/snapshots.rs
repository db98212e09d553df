//! Snapshots from the driver's side: when one is due, encoding it a slice
//! at a time, the checkpoint record, the file, compacting the replica's
//! log, and installing a snapshot from the leader (with the watches its
//! skipped changes fire).

use super::*;

impl NodeState {
    /// Records up to `last_record` are durable: if the running snapshot's
    /// checkpoint is among them, its file can be written.
    pub(super) fn checkpoint_durable(&mut self, last_record: u64) {
        let Some(file) = self.snapshots.checkpoint_durable(last_record) else {
            return;
        };
        let prefix = snapshot_file_prefix(file.slot, &file.membership);
        tracing::debug!(
            slot = file.slot,
            log_index = file.log_index,
            "writing snapshot file"
        );
        if let Some(wal) = &self.wal
            && !wal.writer.snapshot(file.log_index, prefix, file.state)
        {
            tracing::error!("the snapshot thread has stopped");
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
        let machine = match StateMachine::decode_snapshot(self.state_config.clone(), &bytes) {
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
        let now = self.mono_now();
        self.sessions.restart(self.machine.sessions(), now);
        if self.wal.is_some() {
            // Compacted already inside the replica; only the file is owed.
            self.begin_snapshot_file(snapshot.index, snapshot.membership, bytes);
        }
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

    /// Appends the checkpoint for a snapshot at `slot`; its file is written
    /// once the checkpoint is durable.
    pub(super) fn begin_snapshot_file(&mut self, slot: Slot, membership: Membership, state: Bytes) {
        let checkpoint = || {
            LogRecord {
                commit: self.replica.commit_index(),
                write: Write {
                    token: 0,
                    promised: Some(self.replica.promised()),
                    entries: self.replica.accepted_after(slot),
                },
            }
            .encode()
        };
        let checkpoint = self
            .wal
            .as_mut()
            .map(|wal| wal.commit.push(checkpoint(), 0));
        self.snapshots.encoded(slot, membership, state, checkpoint);
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
    pub(super) fn start_snapshot(&mut self) -> Zxid {
        let applied = self.machine.applied();
        let started = self.mono_now();
        self.snapshotting = Some(self.machine.begin_snapshot());
        self.snapshots.started(u64::try_from(applied).unwrap_or(0));
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

    /// Encodes the next slice of the running snapshot; the driver calls it
    /// between jobs, so requests are served while a large tree is encoded.
    pub fn snapshot_work(&mut self) {
        let Some(snapshot) = &mut self.snapshotting else {
            return;
        };
        let Some(index) = self.machine.snapshot_step(snapshot, SNAPSHOT_SLICE) else {
            return;
        };
        let Some(finished) = self.snapshotting.take() else {
            return;
        };
        let slot = u64::try_from(index).unwrap_or(0);
        tracing::debug!(slot, bytes = finished.bytes.len(), "snapshot encoded");
        let membership = self.replica.membership_at(slot);
        self.begin_snapshot_file(slot, membership, finished.bytes.into());
    }
}
