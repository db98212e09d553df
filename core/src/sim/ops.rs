//! The clients' operations, at their node as `synod`'s API runs them:
//! writes (setData with and without a version, create, delete of the
//! register znodes; ephemeral creates; sequential creates, persistent and
//! ephemeral; containers and TTL nodes, their children and data) go
//! through the node's write path (proposed at the leader or forwarded to
//! it) and are answered when the node applies them; reads are
//! linearizable getData at any member, through the node core's read
//! barriers, and may leave a data watch. A client sometimes pipelines: right
//! after a write on a register it reads the register on the same session
//! without waiting for the write's answer, and the node holds the read
//! behind the write ([`crate::node::deferred`], the driver's `in_order`).
//! Each operation on a register is recorded in the history. Checked here: a
//! read is answered only once its node has applied everything applied
//! anywhere when it was asked, a watch event comes before a read that shows
//! its change, and a session reads its own acknowledged writes.

use super::invariants::watch_order::Watched;
use super::node::Pending;
use super::{Cluster, Plant, ReadAsk, history, invariants, txns};
use crate::acl::Identity;
use crate::lincheck::{Op, Ret, Znode};
use crate::node::reads::{ReadAction, ReadId, ReadIndex};
use crate::paxos::Slot;
use crate::state::Applied;
use crate::txn::{CreateMode, OpOutcome, TxnOutcome, WriteOp};
use crate::watch::WatchKind;
use crate::{Error, Millis, SessionId};

/// How often a client reads the register it just wrote without waiting
/// for the write's answer.
const PIPELINE_RATE: f64 = 0.3;

/// The prefix of sequential names (under the root).
const SEQUENTIAL: &str = "/s-";

/// Whether a created path is a sequential one.
pub(super) fn is_sequential(path: &str) -> bool {
    path.starts_with(SEQUENTIAL)
}

/// The prefix of containers (`/c0`, `/c1`, with a child `x` each), and of
/// TTL nodes (`/t0`, ...).
const CONTAINER: &str = "/c";
const TTL: &str = "/t";

/// Containers and TTL nodes the clients write: few, so that creates, the
/// children's creates and deletes, writes and the leader's reaps meet.
const REAPABLE: u64 = 2;

/// Whether a path is one of the containers (else a TTL node).
pub(super) fn is_container(path: &str) -> bool {
    path.starts_with(CONTAINER)
}

/// What a client's write answers.
#[derive(Debug, Clone)]
pub(super) enum ClientOp {
    /// An operation on a register: its index in the history.
    Register { op: usize },
    /// An ephemeral create.
    Ephemeral,
    /// A sequential create, asked at this tick.
    Sequential { asked: u64 },
    /// A write on the containers and TTL nodes (checked by the reaping
    /// invariant, not in the history).
    Reapable,
}

impl Cluster {
    /// Client `k` starts an operation with `session` at its node.
    pub(super) fn start_op(&mut self, k: usize, session: SessionId) {
        let i = self.clients[k].home;
        if self.nodes[i].replica.is_none() || self.is_paused(i) || !self.live(k, i, session) {
            return;
        }
        let key = self.rng.range(0, history::KEYS as u64) as usize;
        let path = history::key_path(key);
        let value = self.next_value;
        // 0..100: the registers, ephemerals and sequentials; 100..112:
        // containers and TTL nodes.
        let pick = self.rng.range(0, 112);
        if pick < 35 {
            let watch = self.rng.chance(0.5);
            self.start_read(i, Some(k), key, watch, false);
            return;
        }
        // The driver's `admit`: refused while the log cannot be written or
        // too much waits; nothing was asked of the ensemble.
        let node = &self.nodes[i];
        if node.wal.error().is_some() || node.writes.admit().is_err() {
            return;
        }
        self.next_value += 1;
        let (op, kind) = match pick {
            35..55 => (txns::set_data(&path, value, -1), Some(Op::Write { value })),
            55..70 => {
                let expected_version = self.rng.range(0, 4) as i32;
                (
                    txns::set_data(&path, value, expected_version),
                    Some(Op::Cas {
                        expected_version,
                        value,
                    }),
                )
            }
            70..80 => (
                txns::create(&path, value, CreateMode::Persistent),
                Some(Op::Create { value }),
            ),
            80..87 => (
                txns::delete(&path, -1),
                Some(Op::Delete {
                    expected_version: None,
                }),
            ),
            87..93 => (
                txns::create(&format!("/e-{value}"), value, CreateMode::Ephemeral),
                None,
            ),
            100.. => (self.reapable_op(value), None),
            _ => {
                let mode = if self.rng.chance(0.5) {
                    CreateMode::EphemeralSequential
                } else {
                    CreateMode::PersistentSequential
                };
                (txns::create(SEQUENTIAL, value, mode), None)
            }
        };
        let client_op = match kind {
            Some(lin) => ClientOp::Register {
                op: self.history.invoke(k as u64, key, lin, self.now),
            },
            None if matches!(pick, 87..93) => ClientOp::Ephemeral,
            None if pick >= 100 => ClientOp::Reapable,
            None => ClientOp::Sequential { asked: self.now },
        };
        let request = self.submit(
            i,
            txns::write(session, op),
            Pending::Op {
                client: k,
                session,
                op: client_op.clone(),
            },
        );
        self.clients[k].op_at = Some(i);
        if let ClientOp::Register { op } = client_op {
            self.history.submitted(op, self.nodes[i].id, request);
            // A pipelining client reads the key at once, on the same
            // session, without waiting for the write's answer: the node
            // must hold the read behind the write.
            if self.rng.chance(PIPELINE_RATE) {
                self.start_read(i, Some(k), key, false, true);
            }
        }
        self.turn(i);
    }

    /// Client `k`'s write with `session` at node `i` was answered.
    pub(super) fn op_answered(
        &mut self,
        i: usize,
        k: usize,
        session: SessionId,
        op: ClientOp,
        result: Result<Applied, Error>,
    ) {
        if self.clients[k].op_at == Some(i) {
            self.clients[k].op_at = None;
        }
        let slot = result.as_ref().ok().map(|a| a.zxid as Slot);
        if let Some(v) = self.clients[k].ryw.on_write_answered(session, slot) {
            self.violation(v);
        }
        let Ok(applied) = result else {
            // Not known to be in the log or not: the outcome is unknown.
            return;
        };
        let outcome = match applied.outcome {
            TxnOutcome::Write(outcome) => outcome,
            other => {
                self.violation(format!("a client write was applied as {other:?}"));
                return;
            }
        };
        if let Err(Error::SessionExpired(_)) = outcome {
            // Applied as nothing: the session had ended.
            if let ClientOp::Register { op } = op {
                self.history.no_effect(op);
            }
            return;
        }
        match op {
            ClientOp::Register { op } => {
                let ret = match outcome {
                    Ok(OpOutcome::DataSet { stat }) => Ret::Set {
                        version: stat.version,
                    },
                    Ok(OpOutcome::Created { .. } | OpOutcome::Deleted) => Ret::Ok,
                    Err(Error::NoNode(_)) => Ret::NoNode,
                    Err(Error::NodeExists(_)) => Ret::NodeExists,
                    Err(Error::BadVersion { .. }) => Ret::BadVersion,
                    other => {
                        self.violation(format!("a register write was answered {other:?}"));
                        return;
                    }
                };
                self.history.answered(op, ret, self.now);
            }
            ClientOp::Sequential { asked } => {
                if let Ok(OpOutcome::Created { path, .. }) = outcome {
                    self.sequences.acknowledged(path, asked, self.now);
                    self.coverage.sequential += 1;
                }
            }
            ClientOp::Ephemeral | ClientOp::Reapable => {}
        }
    }

    /// A write on a container or a TTL node: create one (a TTL of 1 to 30
    /// ms), create or delete its child, or (a TTL node) set its data,
    /// which postpones its expiry.
    fn reapable_op(&mut self, value: u64) -> WriteOp {
        let n = self.rng.range(0, REAPABLE);
        let (container, ttl) = (format!("{CONTAINER}{n}"), format!("{TTL}{n}"));
        match self.rng.range(0, 7) {
            0 => txns::create(&container, value, CreateMode::Container),
            1 => txns::create(&format!("{container}/x"), value, CreateMode::Persistent),
            2 => txns::delete(&format!("{container}/x"), -1),
            3 => txns::create_ttl(&ttl, value, self.rng.range(1, 31) as Millis),
            4 => txns::set_data(&ttl, value, -1),
            5 => txns::create(&format!("{ttl}/x"), value, CreateMode::Persistent),
            _ => txns::delete(&format!("{ttl}/x"), -1),
        }
    }

    /// A linearizable read of register `key` at node `i`, by client
    /// `client` (or by a reader without a session), leaving a data watch
    /// if `watch`; `pipelined`: sent right after the client's write,
    /// without waiting for its answer. A paused node gets it when it
    /// resumes.
    pub(super) fn start_read(
        &mut self,
        i: usize,
        client: Option<usize>,
        key: usize,
        watch: bool,
        pipelined: bool,
    ) {
        let id = self.next_read;
        self.next_read += 1;
        let process = client.map_or(1_000 + i as u64, |k| k as u64);
        let op = self.history.invoke(process, key, Op::Read, self.now);
        let ask = ReadAsk {
            node: i,
            floor: self.max_applied(),
            client,
            key,
            op,
            watch,
            pipelined,
        };
        self.reads.insert(id, ask);
        if let Some(k) = client {
            if pipelined {
                self.clients[k].pipelined_at = Some(i);
            } else {
                self.clients[k].op_at = Some(i);
            }
        }
        if self.is_paused(i) {
            self.nodes[i].waiting_reads.push(id);
            return;
        }
        self.ask_read(i, id);
        self.turn(i);
    }

    /// Node `i` starts the read barrier of read `id` (the driver's
    /// `read_barrier`).
    pub(super) fn ask_read(&mut self, i: usize, id: u64) {
        if !self.serving(i) {
            self.read_done(id);
            return;
        }
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            self.read_done(id);
            return;
        };
        match node.reads.ask(r, now) {
            Ok((rid, actions)) => {
                node.read_ids.insert(rid, id);
                self.read_actions(i, actions);
            }
            Err(_) => self.read_done(id),
        }
    }

    /// Read `id` failed: its outcome is unknown (no effect on the state).
    fn read_done(&mut self, id: u64) {
        if let Some(ask) = self.reads.remove(&id)
            && let Some(k) = ask.client
        {
            let client = &mut self.clients[k];
            let at = if ask.pipelined {
                &mut client.pipelined_at
            } else {
                &mut client.op_at
            };
            if *at == Some(ask.node) {
                *at = None;
            }
        }
    }

    /// The replica (or the leader) confirmed read `id` of node `i`.
    pub(super) fn read_confirmed(&mut self, i: usize, id: ReadId, at: Option<ReadIndex>) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        // The planted shell bug serves the read as if it had applied the
        // index already.
        let applied = match self.cfg.plant {
            Some(Plant::ReadBeforeApply) => u64::MAX,
            _ => node.applied(),
        };
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let actions = node.reads.confirmed(r, id, at, applied, now);
        self.read_actions(i, actions);
    }

    /// Node `i` applied more: reads waiting for it may be answered.
    pub(super) fn release_reads(&mut self, i: usize) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        if node.reads.is_empty() {
            return;
        }
        let applied = node.applied();
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let actions = node.reads.applied(r, applied, now);
        self.read_actions(i, actions);
    }

    /// Carries out what node `i`'s read barriers decided.
    pub(super) fn read_actions(&mut self, i: usize, actions: Vec<ReadAction>) {
        for action in actions {
            match action {
                ReadAction::AskLeader { to, request } => {
                    self.send_frame(i, to, super::Frame::ReadIndex(request));
                }
                ReadAction::ReplyIndex { to, request, index } => {
                    self.send_frame(i, to, super::Frame::ReadIndexReply { request, index });
                }
                ReadAction::Answer { id, result } => {
                    let Some(cid) = self.nodes[i].read_ids.remove(&id) else {
                        continue;
                    };
                    match result {
                        Ok(()) => self.serve_read(i, cid),
                        Err(_) => self.read_done(cid),
                    }
                }
            }
        }
    }

    /// Read `id`'s barrier passed at node `i`: as the driver's `in_order`,
    /// a read of a session with txns outstanding here is held until the
    /// last of them is answered (`shell::answer` runs it then); otherwise
    /// it runs now.
    fn serve_read(&mut self, i: usize, id: u64) {
        let Some(ask) = self.reads.get(&id).copied() else {
            return;
        };
        let planted = self.cfg.plant == Some(Plant::ReadAroundWrite);
        if let Some(k) = ask.client
            && let Some(session) = self.clients[k].session
            && !planted
        {
            let node = &mut self.nodes[i];
            if node.deferred.admit(&node.writes, session, id).is_none() {
                self.coverage.reads_held += 1;
                return;
            }
        }
        self.run_read(i, id);
    }

    /// Read `id` runs at node `i` against the applied state (the driver's
    /// `read`, after `live`), may leave a watch, and is answered.
    pub(super) fn run_read(&mut self, i: usize, id: u64) {
        let Some(ask) = self.reads.get(&id).copied() else {
            return;
        };
        self.read_done(id);
        let session = match ask.client {
            Some(k) => {
                let Some(session) = self.clients[k].session else {
                    return;
                };
                if !self.live(k, i, session) {
                    return;
                }
                Some(session)
            }
            None if self.serving(i) => None,
            None => return,
        };
        let applied = self.nodes[i].applied();
        if let Some(v) = invariants::read_freshness::on_answer(id, ask.node, ask.floor, i, applied)
        {
            self.violation(v);
        }
        if let (Some(k), Some(session)) = (ask.client, session) {
            // A pipelined read's write is the client's operation in flight.
            let unanswered = ask.pipelined && self.clients[k].op_at.is_some();
            let client = &mut self.clients[k];
            if let Some(v) = client.ryw.on_read(session, id, i, applied, unanswered) {
                self.violation(v);
            }
        }
        let path = history::key_path(ask.key);
        let (state, mzxid) = match self.nodes[i]
            .machine
            .tree()
            .get_data(&path, &Identity::anonymous())
        {
            Ok((data, stat)) => (
                Some(Znode {
                    value: txns::value_of(data),
                    version: stat.version,
                }),
                Some(stat.mzxid),
            ),
            Err(Error::NoNode(_)) => (None, None),
            Err(e) => {
                self.violation(format!("a read of {path} failed: {e}"));
                return;
            }
        };
        self.history.answered(ask.op, Ret::Read(state), self.now);
        let (Some(k), Some(session)) = (ask.client, session) else {
            return;
        };
        if let Some(v) = invariants::watch_order::on_read(
            session,
            i,
            &path,
            mzxid,
            self.clients[k]
                .watches
                .iter()
                .find(|w| w.node == i && w.path == path),
        ) {
            self.violation(v);
        }
        if ask.watch
            && self.nodes[i]
                .watches
                .add(session, &path, WatchKind::Data)
                .is_ok()
        {
            self.nodes[i].watchers.insert(session);
            let watches = &mut self.clients[k].watches;
            watches.retain(|w| w.node != i || w.path != path);
            watches.push(Watched {
                node: i,
                path,
                seen: mzxid,
            });
        }
    }
}
