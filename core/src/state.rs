//! The replicated state machine: the znode tree and the session table,
//! advanced by committed txns in log order. Given the same log, every replica
//! reaches the same state and reports the same outcomes and triggers.

use std::io::Read;

use crate::codec::{CodecError, Encoder, decode_config, encode_config};
use crate::error::Error;
use crate::session::{SessionLimits, SessionPassword, SessionTable};
use crate::stream::{DEFAULT_WINDOW, Input};
use crate::tree::{DataTree, NodeEncoding, TreeConfig, WriteCtx};
use crate::txn::{Txn, TxnOutcome};
use crate::watch::Trigger;
use crate::{Millis, Zxid};

/// Version of the snapshot encoding; bumped on any incompatible change.
/// Format 2 added the config; format 1 snapshots still load, with the
/// config given to the decoder.
/// 3: sessions carry their password.
/// 4: the cluster id (0 for none), after the config; 1-3 load as "no
/// cluster id yet".
/// 5: nodes in the compact encoding ([`NodeEncoding::Compact`]).
/// 6: the node count after the nodes ([`NodeEncoding::Streamed`]), so a
/// snapshot can be written out as it is encoded.
const SNAPSHOT_FORMAT: u32 = 6;

/// Settings every replica must share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateConfig {
    pub tree: TreeConfig,
    pub sessions: SessionLimits,
}

/// Tree, sessions and the position in the log they reflect.
#[derive(Debug)]
pub struct StateMachine {
    tree: DataTree,
    sessions: SessionTable,
    applied: Zxid,
    session_limits: SessionLimits,
    /// The ensemble's id from the first applied [`Txn::SetClusterId`];
    /// `None` until the first leader has minted one.
    cluster_id: Option<u64>,
    /// Size of the last snapshot encoded or decoded, to size the next one's
    /// buffer up front: growing a buffer of hundreds of megabytes copies it,
    /// inside one slice of the walk.
    last_snapshot_bytes: usize,
}

/// A snapshot being encoded; see [`StateMachine::begin_snapshot`].
#[derive(Debug)]
pub struct PendingSnapshot {
    pub index: Zxid,
    encoder: Encoder,
    cursor: crate::tree::SnapshotCursor,
    /// The bytes encoded and taken out by [`PendingSnapshot::take_encoded`].
    taken: usize,
    /// The encoded snapshot, once complete: all of it, or what was not
    /// taken out yet.
    pub bytes: Vec<u8>,
}

/// Where a snapshot's bytes go while it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotBuffer {
    /// All of them stay in one buffer, sized up front from the last
    /// snapshot (growing a buffer of hundreds of megabytes copies it,
    /// inside one slice of the walk).
    Whole,
    /// The caller takes them out as they come
    /// ([`PendingSnapshot::take_encoded`]), to write them to a file.
    Slices,
}

impl PendingSnapshot {
    /// The bytes encoded since the last call: the snapshot is these, one
    /// call's after another's, then [`PendingSnapshot::bytes`].
    pub fn take_encoded(&mut self) -> Vec<u8> {
        let capacity = self.encoder.buf.capacity();
        let taken = std::mem::replace(&mut self.encoder.buf, Vec::with_capacity(capacity));
        self.taken += taken.len();
        taken
    }

    /// The bytes encoded and not taken out yet.
    pub fn pending_bytes(&self) -> usize {
        self.encoder.buf.len()
    }

    /// The length of the snapshot so far, taken out or not.
    pub fn encoded_bytes(&self) -> usize {
        self.taken + self.encoder.buf.len() + self.bytes.len()
    }
}

/// What applying one txn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub zxid: Zxid,
    pub outcome: TxnOutcome,
    pub triggers: Vec<Trigger>,
}

impl StateMachine {
    pub fn new(config: StateConfig) -> Self {
        StateMachine {
            tree: DataTree::new(config.tree),
            sessions: SessionTable::default(),
            applied: 0,
            session_limits: config.sessions,
            cluster_id: None,
            last_snapshot_bytes: 0,
        }
    }

    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    pub fn session_limits(&self) -> &SessionLimits {
        &self.session_limits
    }

    /// The settings txns are checked against now.
    pub fn config(&self) -> StateConfig {
        StateConfig {
            tree: self.tree.config().clone(),
            sessions: self.session_limits.clone(),
        }
    }

    /// The ensemble's cluster id, once the first leader has minted it.
    pub fn cluster_id(&self) -> Option<u64> {
        self.cluster_id
    }

    /// Zxid of the last applied txn.
    pub fn applied(&self) -> Zxid {
        self.applied
    }

    /// The whole state as bytes: sessions, tree and the applied zxid, in
    /// one go.
    pub fn encode_snapshot(&mut self) -> Vec<u8> {
        let mut snapshot = self.begin_snapshot(SnapshotBuffer::Whole);
        while self.snapshot_step(&mut snapshot, usize::MAX).is_none() {}
        snapshot.bytes
    }

    /// Starts a snapshot of the state at the applied zxid that is encoded
    /// a slice at a time by [`StateMachine::snapshot_step`], while txns keep
    /// applying in between: the node is not paused for the whole encoding.
    pub fn begin_snapshot(&mut self, buffer: SnapshotBuffer) -> PendingSnapshot {
        let mut e = Encoder::default();
        if buffer == SnapshotBuffer::Whole {
            // About 120 bytes per znode with 100-byte values, and more than
            // the last snapshot: growing a buffer of hundreds of megabytes
            // copies it in one slice, while reserving too much costs only
            // address space (pages are touched when written).
            let estimate = (self.last_snapshot_bytes + self.last_snapshot_bytes / 4)
                .max(self.tree.len().saturating_mul(256));
            e.buf.reserve(estimate);
        }
        e.u32(SNAPSHOT_FORMAT);
        e.i64(self.applied);
        encode_config(&mut e, &self.config());
        // 0 stands for none: minted ids are never 0 (the driver redraws).
        e.u64(self.cluster_id.unwrap_or(0));
        e.len(self.sessions.len());
        for (id, info) in self.sessions.iter() {
            e.i64(id);
            e.i64(info.timeout_ms);
            e.raw(&info.password);
        }
        let cursor = self.tree.begin_snapshot(self.applied, &mut e);
        PendingSnapshot {
            index: self.applied,
            encoder: e,
            cursor,
            taken: 0,
            bytes: Vec::new(),
        }
    }

    /// Encodes up to `budget` more znodes of `snapshot`; returns its index
    /// once the snapshot is complete (its bytes are then in `bytes`).
    pub fn snapshot_step(&mut self, snapshot: &mut PendingSnapshot, budget: usize) -> Option<Zxid> {
        if !self
            .tree
            .snapshot_step(&mut snapshot.cursor, &mut snapshot.encoder, budget)
        {
            return None;
        }
        snapshot.bytes = std::mem::take(&mut snapshot.encoder.buf);
        self.last_snapshot_bytes = snapshot.encoded_bytes();
        Some(snapshot.index)
    }

    /// Restores a state from [`StateMachine::encode_snapshot`] output.
    pub fn decode_snapshot(config: StateConfig, bytes: &[u8]) -> Result<StateMachine, CodecError> {
        Self::decode_snapshot_from(config, &mut Input::from_slice(bytes))
    }

    /// Restores a state from the `len` bytes of a snapshot that `reader`
    /// gives, read a window of about a megabyte at a time: a snapshot in a
    /// file is decoded without being read into memory whole.
    pub fn decode_snapshot_reader(
        config: StateConfig,
        reader: &mut dyn Read,
        len: u64,
    ) -> Result<StateMachine, CodecError> {
        Self::decode_snapshot_from(config, &mut Input::from_reader(reader, len, DEFAULT_WINDOW))
    }

    /// Restores a state from the snapshot `input` holds, all of it.
    pub fn decode_snapshot_from(
        config: StateConfig,
        input: &mut Input<'_>,
    ) -> Result<StateMachine, CodecError> {
        let (format, applied, config, cluster_id, sessions) = input.decode(|d| {
            let format = d.u32("snapshot format")?;
            if !(1..=SNAPSHOT_FORMAT).contains(&format) {
                return Err(CodecError::Corrupt(format!(
                    "snapshot format {format} is not a supported format (1 to {SNAPSHOT_FORMAT})"
                )));
            }
            let applied = d.i64("applied zxid")?;
            let config = if format >= 2 {
                decode_config(d)?
            } else {
                config.clone()
            };
            let cluster_id = if format >= 4 {
                Some(d.u64("cluster id")?).filter(|id| *id != 0)
            } else {
                None
            };
            let mut sessions = SessionTable::default();
            for _ in 0..d.len("sessions", 16)? {
                let id = d.i64("session id")?;
                let timeout_ms = d.i64("session timeout")?;
                let password = if format >= 3 {
                    d.array::<16>("session password")?
                } else {
                    SessionPassword::default()
                };
                sessions.open_with_password(id, timeout_ms, password);
            }
            Ok((format, applied, config, cluster_id, sessions))
        })?;
        let encoding = match format {
            6.. => NodeEncoding::Streamed,
            5 => NodeEncoding::Compact,
            _ => NodeEncoding::Fixed,
        };
        let tree = DataTree::decode_snapshot(config.tree, input, encoding)?;
        input.finish("snapshot")?;
        Ok(StateMachine {
            tree,
            sessions,
            applied,
            session_limits: config.sessions,
            cluster_id,
            last_snapshot_bytes: usize::try_from(input.position()).unwrap_or(usize::MAX),
        })
    }

    /// Applies the committed txn at `zxid`, stamped with `time` by the
    /// leader. Zxids must increase; a txn at or below the applied one was
    /// already applied and is ignored, which makes redelivery harmless.
    pub fn apply(&mut self, zxid: Zxid, time: Millis, txn: &Txn) -> Applied {
        let mut triggers = Vec::new();
        if zxid <= self.applied {
            return Applied {
                zxid,
                outcome: TxnOutcome::Noop,
                triggers,
            };
        }
        self.applied = zxid;
        let outcome = match txn {
            Txn::Noop => TxnOutcome::Noop,
            Txn::CreateSession {
                timeout_ms,
                password,
            } => {
                if self.sessions.len() >= self.session_limits.max_sessions {
                    TxnOutcome::SessionCreated(Err(Error::TooLarge {
                        what: "open sessions",
                        limit: self.session_limits.max_sessions as u64,
                        actual: self.sessions.len() as u64 + 1,
                    }))
                } else {
                    let timeout_ms = self.session_limits.negotiate(*timeout_ms);
                    self.sessions
                        .open_with_password(zxid, timeout_ms, *password);
                    TxnOutcome::SessionCreated(Ok((zxid, timeout_ms)))
                }
            }
            Txn::CloseSession { session, .. } => {
                let deleted = if self.sessions.close(*session).is_some() {
                    self.tree.delete_ephemerals(*session, zxid, &mut triggers)
                } else {
                    Vec::new()
                };
                TxnOutcome::SessionClosed {
                    session: *session,
                    deleted,
                }
            }
            Txn::Write {
                session,
                identity,
                op,
            } => {
                if *session != 0 && !self.sessions.contains(*session) {
                    TxnOutcome::Write(Err(Error::SessionExpired(*session)))
                } else {
                    let ctx = WriteCtx {
                        zxid,
                        time,
                        session: *session,
                        identity,
                    };
                    TxnOutcome::Write(self.tree.apply(op, &ctx, &mut triggers))
                }
            }
            Txn::SetConfig(config) => {
                self.tree.set_config(config.tree.clone());
                self.session_limits = config.sessions.clone();
                TxnOutcome::Noop
            }
            Txn::MoveSession { session, owner } => {
                TxnOutcome::SessionMoved(if self.sessions.contains(*session) {
                    Ok((*session, *owner))
                } else {
                    Err(Error::SessionExpired(*session))
                })
            }
            Txn::SetClusterId { id } => {
                // The first one wins: a second leader that minted its own
                // before learning of the first must not rename the ensemble.
                // 0 is "none" in snapshots, so it is never taken as an id.
                if self.cluster_id.is_none() && *id != 0 {
                    self.cluster_id = Some(*id);
                }
                TxnOutcome::ClusterId(self.cluster_id.unwrap_or(0))
            }
            Txn::Reap { path } => {
                let deleted = self.tree.reap(path, zxid, time, &mut triggers);
                TxnOutcome::Reaped {
                    path: path.clone(),
                    deleted,
                }
            }
        };
        Applied {
            zxid,
            outcome,
            triggers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_cluster_id_counts() {
        let mut sm = StateMachine::new(StateConfig::default());
        assert_eq!(sm.cluster_id(), None);
        // 0 is "none" in snapshots and never taken.
        let zero = sm.apply(1, 0, &Txn::SetClusterId { id: 0 });
        assert_eq!(zero.outcome, TxnOutcome::ClusterId(0));
        assert_eq!(sm.cluster_id(), None);
        let first = sm.apply(2, 0, &Txn::SetClusterId { id: 41 });
        assert_eq!(first.outcome, TxnOutcome::ClusterId(41));
        let second = sm.apply(3, 0, &Txn::SetClusterId { id: 42 });
        assert_eq!(second.outcome, TxnOutcome::ClusterId(41));
        assert_eq!(sm.cluster_id(), Some(41));
    }

    #[test]
    fn snapshots_carry_the_cluster_id() {
        let mut sm = StateMachine::new(StateConfig::default());
        let none = sm.encode_snapshot();
        let restored =
            StateMachine::decode_snapshot(StateConfig::default(), &none).expect("decode");
        assert_eq!(restored.cluster_id(), None);
        sm.apply(1, 0, &Txn::SetClusterId { id: 0x5eed });
        let bytes = sm.encode_snapshot();
        let restored =
            StateMachine::decode_snapshot(StateConfig::default(), &bytes).expect("decode");
        assert_eq!(restored.cluster_id(), Some(0x5eed));
        assert_eq!(restored.applied(), 1);
    }

    /// The tree part of a format 1-4 snapshot: `nodes` (path, data, czxid)
    /// with the open ACL, every field at its full width.
    fn fixed_width_tree(e: &mut Encoder, nodes: &[(&str, &[u8], i64)]) {
        e.len(1);
        crate::codec::encode_acl(e, &crate::acl::Acl::open());
        e.u64(nodes.len() as u64);
        for (path, data, czxid) in nodes {
            e.str(path);
            for stat in [*czxid, *czxid + 1, *czxid, 10, 11] {
                e.i64(stat);
            }
            for version in [1, 0, 0] {
                e.i32(version);
            }
            e.i64(0);
            e.u32(0);
            e.opt_bytes(Some(data));
        }
    }

    /// Format 3 had no cluster id: such a snapshot loads as "none yet".
    #[test]
    fn format_3_snapshots_load_without_a_cluster_id() {
        let mut e = Encoder::default();
        e.u32(3);
        e.i64(0);
        encode_config(&mut e, &StateConfig::default());
        e.len(0);
        fixed_width_tree(&mut e, &[("/", b"", 0)]);
        let restored =
            StateMachine::decode_snapshot(StateConfig::default(), &e.buf).expect("decode format 3");
        assert_eq!(restored.cluster_id(), None);
    }

    /// Format 4 wrote nodes at full width: such snapshots still load, in
    /// any node order, with the same tree.
    #[test]
    fn format_4_snapshots_with_fixed_width_nodes_still_load() {
        let mut e = Encoder::default();
        e.u32(4);
        e.i64(7);
        encode_config(&mut e, &StateConfig::default());
        e.u64(0x5eed);
        e.len(0);
        fixed_width_tree(
            &mut e,
            &[("/a/b", b"leaf", 5), ("/", b"", 0), ("/a", b"dir", 3)],
        );
        let mut restored =
            StateMachine::decode_snapshot(StateConfig::default(), &e.buf).expect("decode format 4");
        let anyone = crate::acl::Identity::anonymous();
        let (data, stat) = restored.tree().get_data("/a/b", &anyone).expect("/a/b");
        assert_eq!(
            (data, stat.czxid, stat.mzxid, stat.version),
            (&b"leaf"[..], 5, 6, 1)
        );
        let (children, _) = restored.tree().get_children("/a", &anyone).expect("/a");
        assert_eq!(children, ["b"]);
        // Written again, it is the current format, and reads back the same.
        let again = restored.encode_snapshot();
        let reread = StateMachine::decode_snapshot(StateConfig::default(), &again).expect("decode");
        assert_eq!(reread.tree().dump(), restored.tree().dump());
    }
}
