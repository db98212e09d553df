//! Snapshots from the driver's side: when one is due, encoding it a slice
//! at a time, the checkpoint record, the file, compacting the replica's
//! log, and installing a snapshot from the leader (with the watches its
//! skipped changes fire).

use super::*;

impl NodeState {
    /// Records up to `last_record` are durable: if the running snapshot's
    /// checkpoint is among them, its file can be written.
    pub(super) fn checkpoint_durable(&mut self, last_record: u64) {
        let Some(snapshot) = &mut self.snapshot else {
            return;
        };
        let SnapshotStage::Checkpoint(checkpoint) = snapshot.stage else {
            return;
        };
        if checkpoint > last_record {
            return;
        }
        snapshot.stage = SnapshotStage::Writing;
        let prefix = snapshot_file_prefix(snapshot.slot, &snapshot.membership);
        let index = checkpoint - 1;
        tracing::debug!(
            slot = snapshot.slot,
            log_index = index,
            "writing snapshot file"
        );
        if let Some(wal) = &self.wal
            && !wal.writer.snapshot(index, prefix, snapshot.state.clone())
        {
            tracing::error!("the snapshot thread has stopped");
        }
    }

    /// Drops the replica's log up to the snapshot once the file is durable
    /// (or at once in memory) and the replica has committed its slot.
    pub(super) fn try_compact(&mut self) {
        let commit = self.replica.commit_index();
        let Some(snapshot) = self
            .snapshot
            .take_if(|s| s.stage == SnapshotStage::Written && s.slot <= commit)
        else {
            return;
        };
        if let Err(error) = self.replica.compact(snapshot.slot, snapshot.state) {
            tracing::warn!(%error, "cannot compact the log");
        }
    }

    /// The leader sent a snapshot: it replaces the state machine.
    pub(super) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let machine = match StateMachine::decode_snapshot(self.state_config.clone(), &snapshot.data)
        {
            Ok(machine) => machine,
            Err(error) => {
                tracing::error!(index = snapshot.index, %error, "snapshot from the leader does not decode; ignored");
                return;
            }
        };
        tracing::info!(
            index = snapshot.index,
            bytes = snapshot.data.len(),
            "installed a snapshot from the leader"
        );
        let old = std::mem::replace(&mut self.machine, machine);
        self.snapshotting = None;
        self.snapshot = None;
        self.last_snapshot = self.machine.applied();
        self.fire_skipped_changes(&old);
        let now = self.mono_now();
        self.sessions.restart(self.machine.sessions(), now);
        if self.wal.is_some() {
            // Compacted already inside the replica; only the file is owed.
            self.begin_snapshot_file(snapshot.index, snapshot.membership, snapshot.data);
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
        let stage = match &mut self.wal {
            Some(wal) => SnapshotStage::Checkpoint(wal.commit.push(checkpoint(), 0)),
            None => SnapshotStage::Written,
        };
        self.snapshot = Some(SnapshotInProgress {
            slot,
            membership,
            state,
            stage,
        });
    }

    pub(super) fn maybe_snapshot(&mut self) {
        let applied = self.machine.applied();
        let share = |every: u64| every.saturating_mul(self.snapshot_share) / 1000;
        let txns = u64::try_from(applied - self.last_snapshot).unwrap_or(0);
        // As f64: counts far below 2^52 convert exactly enough.
        let enough_for_the_tree =
            txns as f64 >= self.machine.tree().len() as f64 * self.snapshot_txns_per_znode;
        let due = (txns >= share(self.snapshot_every).max(1) && enough_for_the_tree)
            || self.logged_since_snapshot >= share(self.snapshot_every_bytes).max(1);
        if !due || self.snapshot.is_some() || self.snapshotting.is_some() {
            return;
        }
        self.start_snapshot();
    }

    /// Starts encoding a snapshot of the applied state; returns its index.
    pub(super) fn start_snapshot(&mut self) -> Zxid {
        let applied = self.machine.applied();
        let started = Instant::now();
        self.snapshotting = Some(self.machine.begin_snapshot());
        self.logged_since_snapshot = 0;
        self.last_snapshot = applied;
        self.snapshot_share = self.snapshot_spacing.range(500, 1000);
        tracing::info!(
            index = applied,
            begin_ms = started.elapsed().as_millis() as u64,
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
