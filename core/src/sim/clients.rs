//! The simulated clients' sessions: each client opens a session through
//! the log (`CreateSession` at its node), keeps it alive by keep-alives
//! through one member at a time (the node core's session liveness decides
//! whether a keep-alive is acknowledged: [`crate::node::sessions`]), moves
//! to another member when its member stops serving it, sometimes closes
//! its session (`CloseSession`), and opens a new one when its session
//! ended. The leader's expiry is a real `CloseSession` too (see
//! `shell::node_tick`). Checked here: no keep-alive is acknowledged after
//! its session's close was committed.

use super::invariants::watch_order::Watched;
use super::node::Pending;
use super::{Cluster, Plant, invariants, txns};
use crate::SessionId;
use crate::node::sessions::{PingAnswer, PingId, Settled};
use crate::state::Applied;
use crate::txn::TxnOutcome;
use crate::watch::WatchEvent;
use crate::{Error, Millis};

/// A client: its session and where it is kept alive.
#[derive(Debug)]
pub(super) struct Client {
    /// The node it talks to.
    pub(super) home: usize,
    /// Its open session, as far as it knows.
    pub(super) session: Option<SessionId>,
    /// The node its `CreateSession` waits at.
    opening_at: Option<usize>,
    /// The node its `CloseSession` waits at.
    closing_at: Option<usize>,
    next_ping: u64,
    /// A keep-alive waiting at a node for the leader's vouch.
    waiting: Option<(usize, PingId)>,
    /// The node its operation (a read or a write) waits at.
    pub(super) op_at: Option<usize>,
    /// The node a read it sent right after its write, without waiting for
    /// the write's answer, waits at.
    pub(super) pipelined_at: Option<usize>,
    /// What the read-your-writes check knows of its session.
    pub(super) ryw: invariants::read_your_writes::Session,
    /// Its data watches with no event yet, at most one per node and path.
    pub(super) watches: Vec<Watched>,
}

/// The cluster's clients, each at a random node, without sessions yet.
pub(super) fn new_clients(c: &mut Cluster) -> Vec<Client> {
    let n = c.nodes.len() as u64;
    (0..c.cfg.sessions)
        .map(|_| Client {
            home: c.rng.range(0, n) as usize,
            session: None,
            opening_at: None,
            closing_at: None,
            next_ping: 0,
            waiting: None,
            op_at: None,
            pipelined_at: None,
            ryw: Default::default(),
            watches: Vec::new(),
        })
        .collect()
}

impl Cluster {
    /// Every client acts: opens a session if it has none, sends its
    /// keep-alive when due, starts an operation or closes its session.
    pub(super) fn clients_step(&mut self) {
        for k in 0..self.clients.len() {
            let i = self.clients[k].home;
            if self.nodes[i].replica.is_none() {
                self.move_client(k);
                continue;
            }
            if self.is_paused(i) {
                continue;
            }
            let client = &self.clients[k];
            if client.opening_at.is_some() || client.closing_at.is_some() {
                continue;
            }
            let Some(session) = client.session else {
                self.open_session(k);
                continue;
            };
            if client.waiting.is_none() && client.next_ping <= self.now {
                self.keep_alive(k, session);
            }
            let client = &self.clients[k];
            if client.session.is_none()
                || client.op_at.is_some()
                || client.pipelined_at.is_some()
                || client.waiting.is_some()
            {
                continue;
            }
            if self.rng.chance(self.cfg.close_rate) {
                self.close_session(k, session);
            } else if self.rng.chance(self.cfg.propose_rate) {
                self.start_op(k, session);
            }
        }
    }

    /// Node `i` refuses client requests unless it serves (the driver's
    /// `check_serving`).
    pub(super) fn serving(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        let now = self.clock(i);
        node.replica
            .as_ref()
            .is_some_and(|r| node.serving.check(r, node.applied(), now).is_ok())
    }

    /// The driver's `live`: node `i` serves, and knows `session`, which
    /// counts as a sign of life. Otherwise the client moves (not served) or
    /// learns that its session ended.
    pub(super) fn live(&mut self, k: usize, i: usize, session: SessionId) -> bool {
        if !self.serving(i) {
            self.move_client(k);
            return false;
        }
        let now = self.clock(i);
        let node = &mut self.nodes[i];
        let Some(info) = node.machine.sessions().get(session) else {
            self.session_ended(k);
            return false;
        };
        let authoritative = node
            .replica
            .as_ref()
            .is_some_and(|r| crate::node::authoritative(r, node.applied()));
        node.sessions
            .heard(session, info.timeout_ms, authoritative, now);
        true
    }

    fn open_session(&mut self, k: usize) {
        let i = self.clients[k].home;
        if !self.serving(i) {
            self.move_client(k);
            return;
        }
        let timeout = self.cfg.session_timeout as Millis;
        self.submit(
            i,
            txns::create_session(timeout),
            Pending::OpenSession { client: k },
        );
        self.clients[k].opening_at = Some(i);
        self.turn(i);
    }

    /// Client `k`'s `CreateSession` was answered.
    pub(super) fn session_opened(&mut self, k: usize, result: Result<Applied, Error>) {
        let client = &mut self.clients[k];
        client.opening_at = None;
        if let Ok(Applied {
            outcome: TxnOutcome::SessionCreated(Ok((session, _))),
            ..
        }) = result
        {
            client.session = Some(session);
            client.next_ping = self.now;
        }
    }

    fn close_session(&mut self, k: usize, session: SessionId) {
        let i = self.clients[k].home;
        if !self.live(k, i, session) {
            return;
        }
        self.submit(
            i,
            txns::close_session(session, false),
            Pending::CloseSession { client: k },
        );
        self.clients[k].closing_at = Some(i);
        self.turn(i);
    }

    /// Client `k`'s `CloseSession` was answered (or failed: the session
    /// then expires): it is done with the session either way.
    pub(super) fn session_closed(&mut self, k: usize) {
        self.clients[k].closing_at = None;
        self.session_ended(k);
    }

    /// Client `k` learned that its session ended.
    fn session_ended(&mut self, k: usize) {
        let client = &mut self.clients[k];
        client.session = None;
        client.watches.clear();
        client.waiting = None;
    }

    /// Client `k` sends a keep-alive to its node.
    fn keep_alive(&mut self, k: usize, session: SessionId) {
        let i = self.clients[k].home;
        let planted = self.cfg.plant == Some(Plant::AckWithoutVouch);
        // The planted bug: a member that acknowledges without the vouch and
        // serves while cut off from the leader, as before issue 10.
        if !planted && !self.live(k, i, session) {
            return;
        }
        let now = self.clock(i);
        let vouching = {
            let node = &self.nodes[i];
            node.replica
                .as_ref()
                .is_some_and(|r| crate::node::may_vouch(r, node.applied(), now))
        };
        let node = &mut self.nodes[i];
        if !node.machine.sessions().contains(session) {
            self.session_ended(k);
            return;
        }
        let answer = if planted {
            PingAnswer::Alive
        } else {
            node.sessions.ping(session, vouching, now)
        };
        match answer {
            PingAnswer::Alive => self.acknowledged(k, i),
            PingAnswer::Wait(id) => self.clients[k].waiting = Some((i, id)),
            PingAnswer::Expired => self.session_ended(k),
        }
    }

    /// Keep-alives of node `i` the core settled.
    pub(super) fn settle(&mut self, i: usize, settled: Vec<Settled>) {
        for s in settled {
            let Some(k) = self
                .clients
                .iter()
                .position(|c| c.waiting == Some((i, s.id)))
            else {
                continue;
            };
            self.clients[k].waiting = None;
            match s.result {
                Ok(()) => self.acknowledged(k, i),
                Err(_) => self.move_client(k),
            }
        }
    }

    /// Node `i` told client `k` its session is alive, now.
    fn acknowledged(&mut self, k: usize, i: usize) {
        let Some(session) = self.clients[k].session else {
            return;
        };
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

    /// Node `i` delivers a watch event to its session's client.
    pub(super) fn watch_event(&mut self, i: usize, event: &WatchEvent) {
        self.coverage.watch_events += 1;
        for client in &mut self.clients {
            if client.session == Some(event.session) {
                client
                    .watches
                    .retain(|w| w.node != i || w.path != event.path);
            }
        }
    }

    /// Node `i` crashed: what its clients waited for there is lost (the
    /// outcome unknown), and its watches with it; they move on.
    pub(super) fn connection_lost(&mut self, i: usize) {
        for k in 0..self.clients.len() {
            let client = &mut self.clients[k];
            let mut lost = false;
            // A client whose close was lost with the node is done with the
            // session: the close may still commit, and a session it asked to
            // close is not one to keep alive.
            let close_lost = client.closing_at == Some(i);
            for at in [
                &mut client.opening_at,
                &mut client.closing_at,
                &mut client.op_at,
                &mut client.pipelined_at,
            ] {
                if *at == Some(i) {
                    *at = None;
                    lost = true;
                }
            }
            if client.waiting.is_some_and(|(at, _)| at == i) {
                client.waiting = None;
                lost = true;
            }
            client.watches.retain(|w| w.node != i);
            if close_lost {
                self.session_ended(k);
            }
            if lost || self.clients[k].home == i {
                self.move_client(k);
            }
        }
    }

    /// Client `k` gives up on its node and tries another.
    pub(super) fn move_client(&mut self, k: usize) {
        let n = self.nodes.len() as u64;
        let client = &mut self.clients[k];
        client.waiting = None;
        client.home = self.rng.range(0, n) as usize;
        client.next_ping = self.now;
    }
}
