//! When a node takes a snapshot, and the protocol that makes it durable
//! before the log is dropped.
//!
//! A snapshot is due when enough txns were applied since the last one
//! (`every_txns`, and at least `txns_per_znode` times the tree's size, so
//! that snapshot work stays in proportion to the writes) or enough bytes
//! logged (`every_bytes`); each node takes its next one at a random point
//! between half and all of those thresholds, as ZooKeeper does, so that the
//! members do not all write one at once. Once encoded, a snapshot at slot
//! S goes through three stages: a *checkpoint* record (the promised ballot
//! and every accepted entry after S) is appended to the log; once it is
//! durable the snapshot file is written with that record as its log
//! position, so recovery needs only the file and the records from the
//! checkpoint on; once the file is durable and the replica has committed
//! S, the replica's log is dropped up to S. A crash at any point leaves
//! either the old snapshot and the whole log, or the new one and the log
//! from its checkpoint. Without a disk a snapshot is "written" at once.
//! The encoded bytes are the shell's until the file is written (the node
//! writes them to a temporary file as they are encoded, and gives it its
//! name once the checkpoint is durable): from then on the snapshot is the
//! shell's durable copy ([`SnapshotBytes`], a file the node reads on
//! demand), which is what the replica keeps to serve lagging peers.
//!
//! This module decides; the shell encodes the state, appends the
//! checkpoint record, writes the file and compacts the replica as the
//! returned steps say.

use bytes::Bytes;

use crate::paxos::rng::Rng;
use crate::paxos::{Entry, Membership, Slot, SnapshotBytes, Value};

/// Where a snapshot is in its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the checkpoint record at this log index to be durable;
    /// the shell holds the encoded bytes for the file.
    Checkpoint { record: u64 },
    /// The file at this log index is being written (the writer has the
    /// bytes).
    Writing(u64),
    /// Durable (or, in memory, nothing to write), as these bytes: the log
    /// can be dropped once the replica has committed the slot.
    Written(SnapshotBytes),
}

/// An encoded snapshot on its way to disk.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub slot: Slot,
    pub membership: Membership,
    pub stage: Stage,
}

/// The file to write: the snapshot at `slot`, recorded at log position
/// `log_index` (the record before its checkpoint), from the bytes the shell
/// holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub log_index: u64,
    pub slot: Slot,
    pub membership: Membership,
}

/// About the log bytes that held `entries` (their values and a little
/// framing each), for [`Snapshots::resume`].
pub fn logged_bytes<'a>(entries: impl IntoIterator<Item = &'a (Slot, Entry<Vec<u8>>)>) -> u64 {
    entries
        .into_iter()
        .map(|(_, e)| match &e.value {
            Value::Data(d) => d.len() as u64 + 24,
            _ => 24,
        })
        .sum()
}

/// When snapshots are due, and the one in progress.
#[derive(Debug)]
pub struct Snapshots {
    every_txns: u64,
    every_bytes: u64,
    txns_per_znode: f64,
    /// The applied index of the last snapshot taken (or recovered).
    last: Slot,
    /// Log bytes written since the last snapshot began.
    logged: u64,
    /// The share, in thousandths, of the thresholds after which the next
    /// snapshot is due; drawn anew for each from [500, 1000).
    share: u64,
    spacing: Rng,
    in_progress: Option<Snapshot>,
}

impl Snapshots {
    /// `last` is the applied index the node starts from; `seed` spreads
    /// the snapshot points (it should differ between members).
    pub fn new(
        every_txns: u64,
        every_bytes: u64,
        txns_per_znode: f64,
        last: Slot,
        seed: u64,
    ) -> Self {
        let mut spacing = Rng::new(seed);
        let share = spacing.range(500, 1000);
        Snapshots {
            every_txns,
            every_bytes,
            txns_per_znode,
            last,
            logged: 0,
            share,
            spacing,
            in_progress: None,
        }
    }

    /// The node restarted from its snapshot at `snapshot` and a log of
    /// `logged` bytes after it ([`logged_bytes`]): the schedule goes on
    /// from there, as it stood before the restart. Counting from the
    /// recovered state instead would let a restarted node hold the log it
    /// replayed, and as much again, before its next snapshot: the bound
    /// `every_bytes` puts on the log held in memory would not hold.
    pub fn resume(&mut self, snapshot: Slot, logged: u64) {
        self.last = snapshot;
        self.logged = logged;
    }

    /// `bytes` more were appended to the log.
    pub fn logged(&mut self, bytes: u64) {
        self.logged += bytes;
    }

    /// Whether a snapshot should start now, with `applied` slots applied
    /// and a tree of `znodes` nodes; `encoding` says one is being encoded.
    pub fn due(&self, applied: Slot, znodes: usize, encoding: bool) -> bool {
        if encoding || self.in_progress.is_some() {
            return false;
        }
        let share = |every: u64| every.saturating_mul(self.share) / 1000;
        let txns = applied.saturating_sub(self.last);
        // As f64: counts far below 2^52 convert exactly enough.
        let enough_for_the_tree = txns as f64 >= znodes as f64 * self.txns_per_znode;
        (txns >= share(self.every_txns).max(1) && enough_for_the_tree)
            || self.logged >= share(self.every_bytes).max(1)
    }

    /// A snapshot of the state at `applied` starts being encoded.
    pub fn started(&mut self, applied: Slot) {
        self.logged = 0;
        self.last = applied;
        self.share = self.spacing.range(500, 1000);
    }

    /// The highest slot the shell may let the replica drop from memory
    /// ([`crate::paxos::Replica::release_log`]): `keep` slots behind
    /// `applied`, so that peers a little behind are served from memory,
    /// and never past a snapshot being encoded (`encoding`): its checkpoint
    /// record lists the values the replica holds above its slot, and the
    /// log before the checkpoint goes once the snapshot is written.
    pub fn release_bound(&self, applied: Slot, encoding: bool, keep: u64) -> Slot {
        let behind = applied.saturating_sub(keep);
        if encoding {
            behind.min(self.last)
        } else {
            behind
        }
    }

    /// The snapshot in progress, if any.
    pub fn in_progress(&self) -> Option<&Snapshot> {
        self.in_progress.as_ref()
    }

    /// A snapshot at `slot` is encoded (or installed from the leader), and
    /// `checkpoint` is the index of the checkpoint record the shell appended
    /// for it; the shell keeps the bytes for its file.
    pub fn encoded(&mut self, slot: Slot, membership: Membership, checkpoint: u64) {
        self.in_progress = Some(Snapshot {
            slot,
            membership,
            stage: Stage::Checkpoint { record: checkpoint },
        });
    }

    /// Without a disk: a snapshot at `slot` is encoded (or installed from
    /// the leader) as `state`, and counts as written, in memory.
    pub fn encoded_in_memory(&mut self, slot: Slot, membership: Membership, state: Bytes) {
        self.in_progress = Some(Snapshot {
            slot,
            membership,
            stage: Stage::Written(SnapshotBytes::Memory(state)),
        });
    }

    /// Log records up to `last_record` are durable: if the checkpoint of
    /// the snapshot in progress is among them, its file is to be written.
    pub fn checkpoint_durable(&mut self, last_record: u64) -> Option<WriteFile> {
        let snapshot = self.in_progress.as_mut()?;
        let Stage::Checkpoint { record } = &snapshot.stage else {
            return None;
        };
        if *record > last_record {
            return None;
        }
        let file = WriteFile {
            log_index: record - 1,
            slot: snapshot.slot,
            membership: snapshot.membership.clone(),
        };
        snapshot.stage = Stage::Writing(file.log_index);
        Some(file)
    }

    /// The file at `log_index` was written, and reads back as `stored`
    /// (`None`: it could not be written; the snapshot is dropped, and the
    /// next one is taken when due). The report of a file whose snapshot
    /// was superseded meanwhile (by one installed from the leader) is
    /// ignored: its bytes are not the new snapshot's.
    pub fn file_written(&mut self, log_index: u64, stored: Option<SnapshotBytes>) {
        let Some(snapshot) = self
            .in_progress
            .as_mut()
            .filter(|s| s.stage == Stage::Writing(log_index))
        else {
            return;
        };
        match stored {
            None => self.in_progress = None,
            Some(stored) => snapshot.stage = Stage::Written(stored),
        }
    }

    /// With the replica's commit index at `commit`: the snapshot whose log
    /// may now be dropped (durable, and its slot committed), taken out,
    /// with the bytes the replica is to keep.
    pub fn compactable(&mut self, commit: Slot) -> Option<(Slot, SnapshotBytes)> {
        let snapshot = self
            .in_progress
            .take_if(|s| matches!(s.stage, Stage::Written(_)) && s.slot <= commit)?;
        match snapshot.stage {
            Stage::Written(stored) => Some((snapshot.slot, stored)),
            _ => None,
        }
    }

    /// The state machine was replaced by a snapshot from the leader at
    /// `applied`: whatever was in progress is moot.
    pub fn replaced(&mut self, applied: Slot) {
        self.in_progress = None;
        self.last = applied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_the_schedule_from_the_snapshot_it_recovered() {
        // A snapshot every 50-100 txns; the one recovered is at 100, and
        // the log replayed after it brought the node to 300.
        let mut s = Snapshots::new(100, u64::MAX, 0.0, 300, 7);
        assert!(!s.due(300, 0, false), "counting from the recovered state");
        s.resume(100, 0);
        assert!(s.due(300, 0, false), "200 txns since the snapshot");
        // The bytes of the log replayed count towards the byte threshold.
        let entries = vec![(
            301,
            Entry {
                ballot: crate::paxos::Ballot::new(1, 1),
                value: Value::Data(vec![0; 976]),
            },
        )];
        assert_eq!(logged_bytes(&entries), 1000);
        let mut s = Snapshots::new(u64::MAX, 1000, 0.0, 301, 7);
        assert!(!s.due(301, 0, false));
        s.resume(300, logged_bytes(&entries));
        assert!(s.due(301, 0, false), "a log as large as the threshold");
    }

    fn snapshots() -> Snapshots {
        // A fixed seed: the share drawn is deterministic.
        Snapshots::new(1_000, 1 << 30, 0.0, 0, 7)
    }

    #[test]
    fn a_snapshot_is_due_between_half_and_all_of_the_threshold() {
        let s = snapshots();
        assert!(!s.due(499, 0, false));
        assert!(s.due(1_000, 0, false));
        assert!(!s.due(1_000, 0, true), "not while one is being encoded");
        let mut big = Snapshots::new(1_000, 1 << 30, 0.5, 0, 7);
        assert!(
            !big.due(1_000, 10_000, false),
            "the tree asks for more txns"
        );
        big.logged(1 << 30);
        assert!(big.due(1_000, 10_000, false), "logged bytes are enough");
    }

    #[test]
    fn the_file_is_written_after_its_checkpoint_and_the_log_dropped_after_the_file() {
        let mut s = snapshots();
        s.started(10);
        s.encoded(10, Membership::new(vec![1], vec![]), 42);
        assert!(!s.due(5_000, 0, false), "one at a time");
        assert_eq!(s.checkpoint_durable(41), None);
        let file = s.checkpoint_durable(42).expect("the checkpoint is durable");
        assert_eq!((file.log_index, file.slot), (41, 10));
        assert_eq!(s.compactable(100), None, "the file is not durable yet");
        assert_eq!(s.in_progress().map(|s| &s.stage), Some(&Stage::Writing(41)));
        let stored = SnapshotBytes::from(vec![7u8]);
        s.file_written(40, Some(stored.clone()));
        assert_eq!(
            s.in_progress().map(|s| &s.stage),
            Some(&Stage::Writing(41)),
            "another file's report"
        );
        s.file_written(41, Some(stored.clone()));
        assert_eq!(s.compactable(9), None, "slot 10 is not committed yet");
        assert_eq!(
            s.compactable(10),
            Some((10, stored)),
            "the replica gets what was stored, not the encoded bytes"
        );
        assert!(s.in_progress().is_none());
    }

    #[test]
    fn a_superseded_file_does_not_stand_for_the_snapshot_installed_since() {
        let mut s = snapshots();
        s.encoded(10, Membership::default(), 5);
        let old = s.checkpoint_durable(5).expect("written next");
        // The leader's snapshot replaces the state while the file is written.
        s.replaced(30);
        s.encoded(30, Membership::default(), 9);
        s.file_written(old.log_index, Some(SnapshotBytes::from(b"old".to_vec())));
        assert_eq!(
            s.compactable(30),
            None,
            "the old file is not the new snapshot"
        );
        let new = s.checkpoint_durable(9).expect("its own file");
        let stored = SnapshotBytes::from(b"new".to_vec());
        s.file_written(new.log_index, Some(stored.clone()));
        assert_eq!(s.compactable(30), Some((30, stored)));
    }

    #[test]
    fn a_failed_file_drops_the_snapshot_and_in_memory_needs_no_file() {
        let mut s = snapshots();
        s.encoded(10, Membership::default(), 1);
        s.checkpoint_durable(1);
        s.file_written(0, None);
        assert!(s.in_progress().is_none());
        s.encoded_in_memory(20, Membership::default(), Bytes::from_static(b"x"));
        s.file_written(0, None);
        assert_eq!(
            s.compactable(20),
            Some((20, SnapshotBytes::from(b"x".to_vec())))
        );
    }
}
