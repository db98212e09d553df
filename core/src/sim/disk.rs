//! A node's disk, as the driver's write-ahead log and snapshot files use
//! it: the replica's writes gather in the node core's group commit
//! ([`crate::node::group_commit`]) and go to the disk one batch at a time;
//! a batch is durable after a random delay, or fails (an I/O error) and is
//! appended again after the retry pause. Snapshots follow the node core's
//! schedule and protocol ([`crate::node::snapshots`]): due after enough
//! txns, encoded from the real state machine a slice at a time while txns
//! keep applying, then a checkpoint record through the log, then the file
//! (delayed, crashable, and failing sometimes), then the replica's log
//! dropped up to it. A crash loses the batch at the disk, everything
//! gathering, and the snapshot in progress.

use super::node::DiskBatch;
use super::{Cluster, invariants};
use crate::node::group_commit::Completion;
use crate::paxos::{Membership, Slot, Snapshot, SnapshotBytes, Write};
use crate::state::SnapshotBuffer;

/// Znodes encoded per slice of a running snapshot: small, so that an
/// encoding spans ticks and txns apply in between.
const SNAPSHOT_SLICE: usize = 4;

impl Cluster {
    /// The replica asks node `i` to make `write` durable.
    pub(super) fn persist(&mut self, i: usize, write: Write<Vec<u8>>) {
        let node = &mut self.nodes[i];
        let bytes = crate::node::snapshots::logged_bytes(&write.entries);
        node.snapshots.logged(bytes + 16);
        let token = write.token;
        let commit = node.replica.as_ref().map_or(0, |r| r.commit_index());
        node.commit_at.push_back((token, commit));
        node.wal.push(write, token);
    }

    /// Starts node `i`'s next log batch when none is at the disk.
    pub(super) fn flush_wal(&mut self, i: usize) {
        let now = self.clock(i);
        if self.nodes[i].batch.is_some() {
            return;
        }
        let Some((batch, records)) = self.nodes[i].wal.next(now) else {
            return;
        };
        let delay = self.rng.range(0, self.nodes[i].disk_delay + 1);
        self.nodes[i].batch = Some(DiskBatch {
            due: self.now + delay,
            batch,
            records,
        });
    }

    /// Completes node `i`'s disk work that is due: the log batch and the
    /// snapshot file. Returns whether anything completed.
    pub(super) fn complete_disk(&mut self, i: usize) -> bool {
        if self.is_paused(i) || self.nodes[i].replica.is_none() {
            return false;
        }
        let now = self.clock(i);
        let mut done = false;
        if self.nodes[i]
            .batch
            .as_ref()
            .is_some_and(|b| b.due <= self.now)
            && let Some(b) = self.nodes[i].batch.take()
        {
            done = true;
            let fails = self.rng.chance(self.cfg.disk_failures);
            self.coverage.disk_failures += u64::from(fails);
            let node = &mut self.nodes[i];
            let result = if fails {
                Err(("simulated I/O error".to_owned(), b.records))
            } else {
                for (_, w) in &b.records {
                    node.disk.apply(w);
                }
                Ok(())
            };
            if let Completion::Durable { batch, .. } =
                node.wal.completed(b.batch.batch, result, now)
            {
                if let Some(v) =
                    invariants::monotonic::on_durable(&mut node.seen, node.id, node.disk.promised)
                {
                    self.violation(v);
                }
                let node = &mut self.nodes[i];
                while node
                    .commit_at
                    .front()
                    .is_some_and(|(t, _)| *t <= batch.token)
                {
                    if let Some((_, commit)) = node.commit_at.pop_front() {
                        node.disk.commit = node.disk.commit.max(commit);
                    }
                }
                if batch.token > 0
                    && let Some(r) = node.replica.as_mut()
                {
                    r.persisted(batch.token);
                }
                if let Some(file) = node.snapshots.checkpoint_durable(batch.last_record) {
                    match node.snapshot_bytes.take() {
                        Some(bytes) => {
                            let delay = self.rng.range(0, self.nodes[i].disk_delay * 2 + 1);
                            self.nodes[i].snapshot_file = Some((self.now + delay, file, bytes));
                        }
                        // Never: the bytes wait from the checkpoint on.
                        None => node.snapshots.file_written(file.log_index, None),
                    }
                }
            }
        }
        if self.nodes[i]
            .snapshot_file
            .as_ref()
            .is_some_and(|(due, ..)| *due <= self.now)
            && let Some((_, file, bytes)) = self.nodes[i].snapshot_file.take()
        {
            done = true;
            let fails = self.rng.chance(self.cfg.disk_failures);
            self.coverage.disk_failures += u64::from(fails);
            let node = &mut self.nodes[i];
            let stored = (!fails).then_some(SnapshotBytes::Memory(bytes));
            if let Some(data) = &stored {
                node.disk.set_snapshot(Snapshot {
                    index: file.slot,
                    membership: file.membership,
                    data: data.clone(),
                });
            }
            node.snapshots.file_written(file.log_index, stored);
            self.try_compact(i);
        }
        done
    }

    /// Starts a snapshot of node `i`'s applied state when one is due.
    pub(super) fn maybe_snapshot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let applied = node.applied();
        let znodes = node.machine.tree().len();
        if node
            .snapshots
            .due(applied, znodes, node.snapshotting.is_some())
        {
            node.snapshotting = Some(node.machine.begin_snapshot(SnapshotBuffer::Whole));
            node.snapshots.started(applied);
        }
    }

    /// Encodes the next slice of node `i`'s running snapshot; once it is
    /// complete, checks it and starts its checkpoint.
    pub(super) fn snapshot_work(&mut self, i: usize) {
        if self.is_paused(i) {
            return;
        }
        let node = &mut self.nodes[i];
        let Some(snapshot) = node.snapshotting.as_mut() else {
            return;
        };
        let Some(index) = node.machine.snapshot_step(snapshot, SNAPSHOT_SLICE) else {
            return;
        };
        let Some(finished) = node.snapshotting.take() else {
            return;
        };
        let slot = Slot::try_from(index).unwrap_or(0);
        let id = node.id;
        self.coverage.snapshots_encoded += 1;
        if let Some(v) = invariants::snapshot::on_snapshot(
            &self.digests,
            id,
            "encoded",
            slot,
            &super::node::state_config(),
            &finished.bytes,
        ) {
            self.violation(v);
        }
        let Some(membership) = self.nodes[i]
            .replica
            .as_ref()
            .map(|r| r.membership_at(slot))
        else {
            return;
        };
        self.begin_snapshot_file(i, slot, membership, finished.bytes.into());
    }

    /// Appends the checkpoint for a snapshot at `slot` to node `i`'s log;
    /// its file is written once the checkpoint is durable.
    pub(super) fn begin_snapshot_file(
        &mut self,
        i: usize,
        slot: Slot,
        membership: Membership,
        state: bytes::Bytes,
    ) {
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return;
        };
        let checkpoint = Write {
            token: 0,
            promised: Some(r.promised()),
            entries: r.accepted_after(slot),
        };
        let index = node.wal.push(checkpoint, 0);
        node.snapshot_bytes = Some(state);
        node.snapshots.encoded(slot, membership, index);
    }

    /// Drops node `i`'s log up to its snapshot once the file is durable and
    /// the replica has committed its slot.
    pub(super) fn try_compact(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        if let Some((slot, state)) = node.snapshots.compactable(r.commit_index()) {
            // Refused only for a slot not above the log start: nothing to
            // drop then.
            let _ = r.compact(slot, state);
        }
    }
}
