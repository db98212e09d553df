//! The node layer of the simulator: each simulated node runs the node
//! core's read barriers ([`crate::node::reads`]) and session liveness
//! ([`crate::node::sessions`]) the way `synod`'s driver does, and clients
//! use them: linearizable reads at any member, and sessions kept alive by
//! keep-alives through one member at a time, moving to another when it
//! stops answering.
//!
//! Sessions exist from the start (every node knows them); the leader's
//! expiry decision is proposed as a value that closes the session when
//! applied, as `CloseSession` is in the real log. Checked here: a read is
//! answered only once its node has applied everything applied anywhere
//! when it was asked, and no keep-alive is acknowledged after the close of
//! its session was committed.

use super::{Cluster, Frame, Plant, invariants};
use crate::SessionId;
use crate::node::reads::{ReadAction, ReadBarriers, ReadIndex};
use crate::node::sessions::{PingAnswer, PingId, SessionLiveness, Settled};
use crate::paxos::{MonoMs, NodeId, Role, Value};
use crate::session::SessionTable;

/// Marks a value that closes the session in its low bits. Plain values are
/// small counters, and membership changes are tagged with the top bit.
const CLOSE_TAG: u64 = 1 << 62;

/// Clock drift margin of the simulated sessions, in ppm: the simulated
/// clocks gain or lose a millisecond every 25 ticks and jump too, far more
/// than real ones.
const SESSION_DRIFT_PPM: u64 = 200_000;

/// How long a keep-alive or a read may wait at a node.
const WAIT_LIMIT_MS: u64 = 100;

/// A client session and where it is kept alive.
#[derive(Debug)]
pub(super) struct Client {
    session: SessionId,
    /// The node it talks to.
    pub(super) home: usize,
    next_ping: u64,
    /// A keep-alive waiting at a node for the leader's vouch.
    waiting: Option<(usize, PingId)>,
    /// The session is closed; the client stopped.
    ended: bool,
}

/// The session a value closes, if it is a close.
pub(super) fn closed_session(value: &Value<u64>) -> Option<SessionId> {
    match value {
        Value::Data(x) if x & CLOSE_TAG != 0 => SessionId::try_from(x & !CLOSE_TAG).ok(),
        _ => None,
    }
}

/// The cluster's sessions, each at a random home node.
pub(super) fn open_sessions(c: &mut Cluster) -> Vec<Client> {
    let n = c.nodes.len() as u64;
    (0..c.cfg.sessions)
        .map(|k| Client {
            session: k as SessionId + 1,
            home: c.rng.range(0, n) as usize,
            next_ping: 0,
            waiting: None,
            ended: false,
        })
        .collect()
}

impl Cluster {
    fn initial_sessions(&self) -> SessionTable {
        let mut table = SessionTable::default();
        for client in &self.clients {
            table.open(client.session, self.cfg.session_timeout as i64);
        }
        table
    }

    /// The sessions node `i`'s applied values leave open.
    fn open_sessions_of(&self, i: usize) -> SessionTable {
        let mut open = self.initial_sessions();
        for s in self.nodes[i].values.iter().filter_map(closed_session) {
            open.close(s);
        }
        open
    }

    /// Node `i` (re)started at `now`: its node core starts afresh, from the
    /// sessions its applied state holds open.
    pub(super) fn start_node_core(&mut self, i: usize, now: MonoMs) {
        let open = self.open_sessions_of(i);
        let node = &mut self.nodes[i];
        // Read ids differ between runs of a node, as the real node's do.
        node.reads = ReadBarriers::new((node.incarnation << 40) + 1);
        node.read_ids.clear();
        node.sessions = SessionLiveness::new(SESSION_DRIFT_PPM, &open, now);
        node.open = open;
        node.was_leader = false;
    }

    /// Node `i`'s state was replaced by a snapshot.
    pub(super) fn sessions_replaced(&mut self, i: usize) {
        let now = self.clock(i);
        let open = self.open_sessions_of(i);
        let node = &mut self.nodes[i];
        node.sessions.restart(&open, now);
        node.open = open;
    }

    /// Node `i` applied the close of `session`.
    pub(super) fn session_closed(&mut self, i: usize, session: SessionId) {
        let node = &mut self.nodes[i];
        node.open.close(session);
        node.sessions.closed(session);
    }

    /// Node `i` asks its read barriers for read `id`.
    pub(super) fn ask_read(&mut self, i: usize, id: u64) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            self.reads.remove(&id);
            return;
        };
        // The node's own read ids come from its barriers; the cluster's
        // read id is mapped to it.
        match node.reads.ask(r, now) {
            Ok((rid, actions)) => {
                node.read_ids.insert(rid, id);
                self.read_actions(i, actions);
            }
            Err(_) => {
                self.reads.remove(&id);
            }
        }
    }

    /// The replica (or the leader) confirmed read `id` of node `i`.
    pub(super) fn read_confirmed(&mut self, i: usize, id: u64, at: Option<ReadIndex>) {
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        // The planted shell bug serves the read as if it had applied the
        // index already.
        let applied = match self.cfg.plant {
            Some(Plant::ReadBeforeApply) => u64::MAX,
            _ => node.applied,
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
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let actions = node.reads.applied(r, node.applied, now);
        self.read_actions(i, actions);
    }

    fn read_actions(&mut self, i: usize, actions: Vec<ReadAction>) {
        for action in actions {
            match action {
                ReadAction::AskLeader { to, request } => {
                    self.send_frame(i, to, Frame::ReadIndex(request));
                }
                ReadAction::ReplyIndex { to, request, index } => {
                    self.send_frame(i, to, Frame::ReadIndexReply { request, index });
                }
                ReadAction::Answer { id, result } => {
                    let Some(cid) = self.nodes[i].read_ids.remove(&id) else {
                        continue;
                    };
                    let Some((asked_at, floor)) = self.reads.remove(&cid) else {
                        continue;
                    };
                    if result.is_ok() {
                        let applied = self.nodes[i].applied;
                        if let Some(v) =
                            invariants::read_freshness::on_answer(cid, asked_at, floor, i, applied)
                        {
                            self.violation(v);
                        }
                        let state = self.nodes[i].kv[super::history::key_of(cid)];
                        self.history.read_answered(cid, state, self.now);
                    }
                }
            }
        }
    }

    /// A node frame (not a replica message) from `from` reaches node `to`.
    pub(super) fn on_frame(&mut self, to: usize, from: NodeId, frame: Frame) {
        if self.nodes[to].replica.is_none() {
            return;
        }
        let now = self.clock(to);
        match frame {
            Frame::Paxos(_) => {}
            Frame::ReadIndex(request) => {
                let node = &mut self.nodes[to];
                let Some(r) = node.replica.as_mut() else {
                    return;
                };
                let actions = node.reads.remote_asked(r, from, request, now);
                self.read_actions(to, actions);
            }
            Frame::ReadIndexReply { request, index } => {
                let at = index.map(|index| ReadIndex {
                    index,
                    lease_until: None,
                });
                self.read_confirmed(to, request, at);
            }
            Frame::Touch { round, sessions } => {
                let node = &mut self.nodes[to];
                let Some(r) = node.replica.as_ref() else {
                    return;
                };
                let may_vouch = crate::node::may_vouch(r, node.applied, now);
                let answer = node
                    .sessions
                    .on_report(sessions, &node.open, may_vouch, now);
                if let Some(expired) = answer {
                    self.send_frame(to, from, Frame::TouchAck { round, expired });
                }
            }
            Frame::TouchAck { round, expired } => {
                let node = &mut self.nodes[to];
                let settled = node
                    .sessions
                    .on_answer(from, round, &expired, &node.open, now);
                self.settle(to, settled);
            }
        }
    }

    /// Whether node `i` is the authoritative leader.
    fn authoritative(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.replica
            .as_ref()
            .is_some_and(|r| crate::node::authoritative(r, node.applied))
    }

    /// Whether node `i` may vouch for sessions now.
    fn vouching(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        let now = self.clock(i);
        node.replica
            .as_ref()
            .is_some_and(|r| crate::node::may_vouch(r, node.applied, now))
    }

    /// The end of node `i`'s turn: a node that became the authoritative
    /// leader restarts the session clocks, and one that may vouch answers
    /// its waiting keep-alives.
    pub(super) fn after_turn(&mut self, i: usize) {
        let now = self.clock(i);
        let leading = self.authoritative(i);
        let vouching = self.vouching(i);
        let node = &mut self.nodes[i];
        if leading && !node.was_leader {
            node.sessions.became_leader(&node.open, now);
        }
        node.was_leader = leading;
        if vouching {
            let settled = node.sessions.vouching(&node.open);
            self.settle(i, settled);
        }
    }

    /// Node `i`'s periodic work: a follower reports its sessions to the
    /// leader (or, without word from one for an election timeout, refuses
    /// its waiting keep-alives); the leader proposes the close of expired
    /// sessions; waits that ran too long are ended.
    pub(super) fn node_tick(&mut self, i: usize) {
        let now = self.clock(i);
        let election = self.cfg.election_ms;
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let mut settled = node.sessions.expire_waiting(now, WAIT_LIMIT_MS);
        let late_reads = node.reads.expire(now, WAIT_LIMIT_MS * 2);
        if r.role() == Role::Leader {
            if !node.was_leader {
                // Not authoritative yet: it decides no expiry.
                self.settle(i, settled);
                self.read_actions(i, late_reads);
                return;
            }
            for session in node.sessions.to_expire(now) {
                let value = CLOSE_TAG | session as u64;
                if r.propose(vec![value]).is_err() {
                    node.sessions.close_failed(session);
                }
            }
        } else {
            let silent = r
                .leader_heard_at()
                .is_none_or(|at| now.saturating_sub(at) >= election);
            if silent {
                settled.extend(node.sessions.lost_leader());
            } else if let Some(leader) = r.leader()
                && let Some((round, sessions)) = node.sessions.report(leader, now)
            {
                self.send_frame(i, leader, Frame::Touch { round, sessions });
            }
        }
        self.settle(i, settled);
        self.read_actions(i, late_reads);
    }

    /// Keep-alives of node `i` the core settled.
    fn settle(&mut self, i: usize, settled: Vec<Settled>) {
        for s in settled {
            let Some(client) = self
                .clients
                .iter()
                .position(|c| c.waiting == Some((i, s.id)))
            else {
                continue;
            };
            self.clients[client].waiting = None;
            match s.result {
                Ok(()) => self.acknowledged(client, i),
                Err(_) => self.move_client(client),
            }
        }
    }

    /// Node `i` told client `k` its session is alive, now.
    fn acknowledged(&mut self, k: usize, i: usize) {
        let session = self.clients[k].session;
        if let Some(v) = invariants::session_freshness::on_ack(
            session,
            i,
            self.now,
            self.closed_at.get(&session).copied(),
        ) {
            self.violation(v);
        }
        self.clients[k].next_ping = self.now + self.cfg.session_timeout / 3;
    }

    /// Node `i` crashed: the clients waiting there lose their connection
    /// and move on.
    pub(super) fn connection_lost(&mut self, i: usize) {
        for k in 0..self.clients.len() {
            if self.clients[k].waiting.is_some_and(|(at, _)| at == i) {
                self.clients[k].waiting = None;
                self.move_client(k);
            }
        }
    }

    /// Client `k` gives up on its node and tries another.
    fn move_client(&mut self, k: usize) {
        let n = self.nodes.len() as u64;
        self.clients[k].home = self.rng.range(0, n) as usize;
        self.clients[k].next_ping = self.now;
    }

    /// Every client whose keep-alive is due sends it to its node.
    pub(super) fn clients_step(&mut self) {
        for k in 0..self.clients.len() {
            let client = &self.clients[k];
            if client.ended || client.waiting.is_some() || client.next_ping > self.now {
                continue;
            }
            let (i, session) = (client.home, client.session);
            if self.nodes[i].replica.is_none() {
                self.move_client(k);
                continue;
            }
            if self.is_paused(i) {
                continue;
            }
            let now = self.clock(i);
            let leading = self.authoritative(i);
            let vouching = self.vouching(i);
            let node = &mut self.nodes[i];
            let Some(timeout) = node.open.get(session).map(|s| s.timeout_ms) else {
                // The node knows the session ended: so does the client.
                self.clients[k].ended = true;
                continue;
            };
            node.sessions.heard(session, timeout, leading, now);
            let answer = match self.cfg.plant {
                Some(Plant::AckWithoutVouch) => PingAnswer::Alive,
                _ => node.sessions.ping(session, vouching, now),
            };
            match answer {
                PingAnswer::Alive => self.acknowledged(k, i),
                PingAnswer::Wait(id) => self.clients[k].waiting = Some((i, id)),
                PingAnswer::Expired => self.move_client(k),
            }
        }
    }
}
