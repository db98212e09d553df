//! The write path at a node: a client's txn waits under a request number
//! until the node applies the slot that carries it; meanwhile it is
//! proposed (at the leader) or forwarded to the leader, held while a
//! membership change commits, refused back to the follower that forwarded
//! it when this node does not lead, and answered with an error when its
//! leader changes (outcome unknown), when it waits too long, or when it
//! cannot be proposed. Txns of one session are counted until answered, so
//! that the shell can hold the session's later reads back (FIFO per
//! session, as ZooKeeper).
//!
//! This module decides; the shell carries the [`WriteAction`]s out (sends
//! the frames, runs the waiting client's completion). Time comes in as
//! `now` (the node's monotonic clock) and, at the leader, `stamp` (the wall
//! clock the leader writes into each proposal for znode times).

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::Proposal;
use crate::paxos::{Ballot, MonoMs, NodeId, PaxosError, Replica, Role, Slot};
use crate::txn::{CloseReason, Txn};
use crate::{Error, Millis, SessionId};

/// Most txns in one proposal batch.
const MAX_BATCH_TXNS: usize = 1024;

/// A request of this node's clients, waiting for its slot.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    session: SessionId,
    submitted_at: MonoMs,
    /// The node it was proposed at (this one, when leading) or forwarded
    /// to; `None` while it waits for a leader.
    sent_to: Option<NodeId>,
}

/// A txn to propose: this node's, or one a follower forwarded.
#[derive(Debug, Clone)]
struct Queued {
    origin: NodeId,
    request: u64,
    txn: Txn,
}

/// What the shell must do for the writes.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteAction {
    /// Forward `txns` (request number, txn) to the leader `to`, in as many
    /// frames as the frame limit needs. If a frame cannot be sent, call
    /// [`WritePath::send_failed`] with its requests.
    Forward { to: NodeId, txns: Vec<(u64, Txn)> },
    /// Tell follower `to` that its forwarded `requests` were not proposed
    /// (not in the log: they may be retried).
    Refuse { to: NodeId, requests: Vec<u64> },
    /// Answer this node's `request` with `error` (call
    /// [`WritePath::finish`] as for any answer).
    Fail { request: u64, error: Error },
}

/// What finishing a request settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The session whose last outstanding txn this was: its held-back
    /// reads may run now.
    pub session_done: Option<SessionId>,
}

/// The writes of one node.
#[derive(Debug)]
pub struct WritePath {
    me: NodeId,
    next_request: u64,
    max_pending: usize,
    /// At the leader: proposals (batches of writes) uncommitted at once, at
    /// most, before new writes wait for the next proposal.
    max_proposals_in_flight: usize,
    /// At the leader: the ballot it leads with, and the last slot of each
    /// of its proposals not known committed. Another ballot empties it: a
    /// slot proposed under an earlier one may never be filled (a leader
    /// that lost and won again may hold a shorter log), and waiting for it
    /// would stop every write.
    in_flight: Option<(Ballot, VecDeque<Slot>)>,
    waiting: FxHashMap<u64, Waiting>,
    /// This node's txns waiting for a leader to take them.
    queued: Vec<Queued>,
    /// At the leader: txns held back while a membership change commits.
    held: Vec<Queued>,
    /// At the leader: txns forwarded by followers, to propose.
    forwarded: Vec<Queued>,
    /// The leader seen when [`WritePath::leader_is`] was last called.
    known_leader: Option<NodeId>,
    /// Txns of each session submitted and not yet answered.
    outstanding: FxHashMap<SessionId, u32>,
}

impl WritePath {
    /// Request numbers start at `first_request`: the shell makes it differ
    /// between runs, so that a proposal of an earlier run never answers a
    /// request of this one.
    pub fn new(me: NodeId, first_request: u64, max_pending: usize) -> Self {
        WritePath {
            me,
            next_request: first_request,
            max_pending,
            max_proposals_in_flight: usize::MAX,
            in_flight: None,
            waiting: FxHashMap::default(),
            queued: Vec::new(),
            held: Vec::new(),
            forwarded: Vec::new(),
            known_leader: None,
            outstanding: FxHashMap::default(),
        }
    }

    /// Lets the leader have at most `proposals` batches of writes
    /// uncommitted at once (at least one). Writes that arrive while that many wait for their
    /// quorum gather here and go out together in the next proposal, so
    /// under load each proposal, and the fsync on every member and the
    /// peer messages it costs, carries more writes; a write that finds no
    /// proposal in flight (a quiet ensemble) is proposed at once.
    #[must_use]
    pub fn with_max_proposals_in_flight(mut self, proposals: usize) -> Self {
        self.max_proposals_in_flight = proposals.max(1);
        self
    }

    /// Requests waiting for their slot.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Refuses new work while too much waits for the ensemble, so a lost
    /// quorum turns into errors for clients instead of unbounded memory.
    pub fn admit(&self) -> Result<(), Error> {
        let waiting = self.waiting.len();
        if waiting >= self.max_pending {
            return Err(Error::Throttled(format!(
                "{waiting} txns are waiting for the ensemble; retry later"
            )));
        }
        Ok(())
    }

    /// A client's `txn` arrived at `now`: returns its request number.
    pub fn submit(&mut self, txn: Txn, now: MonoMs) -> u64 {
        let session = match &txn {
            Txn::Write { session, .. } | Txn::CloseSession { session, .. } => *session,
            _ => 0,
        };
        if session != 0 {
            *self.outstanding.entry(session).or_default() += 1;
        }
        let request = self.next_request;
        self.next_request += 1;
        self.waiting.insert(
            request,
            Waiting {
                session,
                submitted_at: now,
                sent_to: None,
            },
        );
        self.queued.push(Queued {
            origin: self.me,
            request,
            txn,
        });
        request
    }

    /// Whether `session` has txns on their way through the log (its reads
    /// must wait for them).
    pub fn has_outstanding(&self, session: SessionId) -> bool {
        session != 0 && self.outstanding.contains_key(&session)
    }

    /// Whether nothing of this node's waits for the log.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }

    /// `request` is answered (applied, or failed). `None` if it no longer
    /// waited (answered already).
    pub fn finish(&mut self, request: u64) -> Option<Finished> {
        let waiting = self.waiting.remove(&request)?;
        let mut session_done = None;
        if waiting.session != 0
            && let Some(count) = self.outstanding.get_mut(&waiting.session)
        {
            *count -= 1;
            if *count == 0 {
                self.outstanding.remove(&waiting.session);
                session_done = Some(waiting.session);
            }
        }
        Some(Finished { session_done })
    }

    /// Txns follower `from` forwarded. Taken to propose when this node
    /// leads; refused otherwise.
    pub fn forwarded<T: Clone>(
        &mut self,
        replica: &Replica<T>,
        from: NodeId,
        txns: Vec<(u64, Txn)>,
    ) -> Vec<WriteAction> {
        if replica.role() == Role::Leader {
            self.forwarded
                .extend(txns.into_iter().map(|(request, txn)| Queued {
                    origin: from,
                    request,
                    txn,
                }));
            Vec::new()
        } else {
            let requests = txns.into_iter().map(|(r, _)| r).collect();
            vec![WriteAction::Refuse { to: from, requests }]
        }
    }

    /// The leader refused `requests` this node forwarded: not in the log.
    pub fn refused(&mut self, from: NodeId, requests: Vec<u64>) -> Vec<WriteAction> {
        requests
            .into_iter()
            .filter(|r| self.waiting.contains_key(r))
            .map(|request| WriteAction::Fail {
                request,
                error: Error::ConnectionLoss(format!("node {from} is no longer the leader; retry")),
            })
            .collect()
    }

    /// Forwarding `requests` to `to` failed: the leader never saw them.
    pub fn send_failed(&mut self, to: NodeId, requests: &[u64], why: &str) -> Vec<WriteAction> {
        requests
            .iter()
            .filter(|r| self.waiting.contains_key(r))
            .map(|&request| WriteAction::Fail {
                request,
                error: Error::ConnectionLoss(format!("cannot reach the leader (node {to}): {why}")),
            })
            .collect()
    }

    /// Whether anything waits to be proposed, forwarded or refused (a
    /// shell may skip [`route`](Self::route), and reading the clock for
    /// it, when nothing does).
    pub fn has_txns_to_route(&self) -> bool {
        !(self.queued.is_empty() && self.forwarded.is_empty() && self.held.is_empty())
    }

    /// Hands the queued txns on: proposed here when leading (in batches of
    /// at most `budget_bytes` of encoded proposals, stamped `stamp`),
    /// forwarded to a known leader, or left waiting. Txns others forwarded
    /// go back to them when this node does not lead.
    pub fn route<T: From<Vec<u8>> + Clone>(
        &mut self,
        replica: &mut Replica<T>,
        stamp: Millis,
        budget_bytes: usize,
    ) -> Vec<WriteAction> {
        if !self.has_txns_to_route() {
            return Vec::new();
        }
        let mut actions = Vec::new();
        match replica.leader() {
            Some(_) if replica.role() == Role::Leader => {
                let commit = replica.commit_index();
                let ballot = replica.ballot();
                let in_flight = match &mut self.in_flight {
                    Some((led, slots)) if Some(*led) == ballot => {
                        while slots.front().is_some_and(|&last| last <= commit) {
                            slots.pop_front();
                        }
                        slots.len()
                    }
                    _ => {
                        self.in_flight = None;
                        0
                    }
                };
                if in_flight < self.max_proposals_in_flight {
                    self.propose(replica, stamp, budget_bytes, &mut actions);
                }
            }
            Some(leader) if leader != self.me => {
                let queued = std::mem::take(&mut self.queued);
                let mut txns = Vec::with_capacity(queued.len());
                for q in queued {
                    // An expiry this node decided while it led lapses with
                    // its leadership: the new leader decides sessions
                    // afresh (it gives every session a full timeout) and
                    // vouches for them meanwhile, so proposing the old
                    // decision there would close a session it just vouched
                    // for (simulator seed 33833).
                    if matches!(
                        q.txn,
                        Txn::CloseSession {
                            reason: CloseReason::Expired,
                            ..
                        }
                    ) {
                        actions.push(WriteAction::Fail {
                            request: q.request,
                            error: Error::ConnectionLoss(
                                "this node no longer leads: its expiry of the session lapses"
                                    .into(),
                            ),
                        });
                        continue;
                    }
                    if let Some(w) = self.waiting.get_mut(&q.request) {
                        w.sent_to = Some(leader);
                        txns.push((q.request, q.txn));
                    }
                }
                if !txns.is_empty() {
                    actions.push(WriteAction::Forward { to: leader, txns });
                }
                self.refuse_others(&mut actions);
            }
            // Our own wait for a leader (or time out); others' go back.
            _ => self.refuse_others(&mut actions),
        }
        actions
    }

    /// Sends forwarded and held txns of other nodes back to them; this
    /// node's own held ones wait in the queue again.
    fn refuse_others(&mut self, actions: &mut Vec<WriteAction>) {
        let mut by_origin: FxHashMap<NodeId, Vec<u64>> = FxHashMap::default();
        let others = std::mem::take(&mut self.forwarded)
            .into_iter()
            .chain(std::mem::take(&mut self.held));
        for q in others {
            if q.origin == self.me {
                self.queued.push(q);
            } else {
                by_origin.entry(q.origin).or_default().push(q.request);
            }
        }
        let mut origins: Vec<NodeId> = by_origin.keys().copied().collect();
        origins.sort_unstable();
        for to in origins {
            if let Some(requests) = by_origin.remove(&to) {
                actions.push(WriteAction::Refuse { to, requests });
            }
        }
    }

    /// At the leader: proposes everything held, forwarded and queued, in
    /// that order, in batches.
    fn propose<T: From<Vec<u8>> + Clone>(
        &mut self,
        replica: &mut Replica<T>,
        stamp: Millis,
        budget_bytes: usize,
        actions: &mut Vec<WriteAction>,
    ) {
        let mut all = std::mem::take(&mut self.held);
        all.append(&mut self.forwarded);
        all.append(&mut self.queued);
        let mut iter = all.into_iter().peekable();
        while iter.peek().is_some() {
            // The txns stay here, so a refused batch can be held or
            // answered without decoding what was encoded.
            let mut batch = Vec::new();
            let mut values = Vec::new();
            let mut bytes = 0;
            while let Some(q) =
                iter.next_if(|_| values.len() < MAX_BATCH_TXNS && bytes < budget_bytes)
            {
                let value = Proposal::encode_parts(q.origin, q.request, stamp, &q.txn);
                bytes += value.len();
                values.push(T::from(value));
                batch.push(q);
            }
            let count = values.len() as Slot;
            match replica.propose(values) {
                Ok(first) => {
                    if let Some(ballot) = replica.ballot() {
                        let (_, slots) = self
                            .in_flight
                            .get_or_insert_with(|| (ballot, VecDeque::new()));
                        slots.push_back(first + count.saturating_sub(1));
                    }
                    for q in batch {
                        if q.origin == self.me
                            && let Some(w) = self.waiting.get_mut(&q.request)
                        {
                            w.sent_to = Some(self.me);
                        }
                    }
                }
                // Proposed again once the membership change commits.
                Err(PaxosError::ConfigChangePending) => self.held.extend(batch),
                Err(error) => {
                    for q in batch {
                        if q.origin == self.me {
                            actions.push(WriteAction::Fail {
                                request: q.request,
                                error: Error::Throttled(error.to_string()),
                            });
                        } else {
                            actions.push(WriteAction::Refuse {
                                to: q.origin,
                                requests: vec![q.request],
                            });
                        }
                    }
                }
            }
        }
    }

    /// The replica follows `leader` now. Returns whether it changed, and
    /// the requests that went to the old leader, answered: their outcome
    /// is unknown (they may still commit).
    pub fn leader_is(&mut self, leader: Option<NodeId>) -> (bool, Vec<WriteAction>) {
        if leader == self.known_leader {
            return (false, Vec::new());
        }
        let old = std::mem::replace(&mut self.known_leader, leader);
        let Some(old) = old else {
            return (true, Vec::new());
        };
        let mut lost: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.sent_to == Some(old))
            .map(|(r, _)| *r)
            .collect();
        lost.sort_unstable();
        let actions = lost
            .into_iter()
            .map(|request| WriteAction::Fail {
                request,
                error: Error::ConnectionLoss(format!(
                    "the leader (node {old}) changed while the request was in flight; its outcome is unknown"
                )),
            })
            .collect();
        (true, actions)
    }

    /// Requests that waited more than `timeout_ms` at `now`. One never
    /// sent anywhere leaves the queue (it is not in the log); one sent to a
    /// leader may still commit, so its outcome is unknown.
    pub fn expire(&mut self, now: MonoMs, timeout_ms: u64) -> Vec<WriteAction> {
        let mut late: Vec<(u64, Option<NodeId>)> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.saturating_sub(w.submitted_at) > timeout_ms)
            .map(|(r, w)| (*r, w.sent_to))
            .collect();
        if late.is_empty() {
            return Vec::new();
        }
        late.sort_unstable();
        let unsent: FxHashSet<u64> = late
            .iter()
            .filter(|(_, to)| to.is_none())
            .map(|(r, _)| *r)
            .collect();
        self.queued.retain(|q| !unsent.contains(&q.request));
        late.into_iter()
            .map(|(request, sent_to)| {
                let why = match sent_to {
                    None => format!("no leader within {timeout_ms} ms; the write was not made"),
                    Some(leader) => format!(
                        "no answer from the ensemble (leader {leader}) within {timeout_ms} ms; its outcome is unknown"
                    ),
                };
                WriteAction::Fail {
                    request,
                    error: Error::ConnectionLoss(why),
                }
            })
            .collect()
    }

    /// The log can take no more: every waiting request fails.
    pub fn fail_all(&mut self, why: &str) -> Vec<WriteAction> {
        self.queued.clear();
        let mut requests: Vec<u64> = self.waiting.keys().copied().collect();
        requests.sort_unstable();
        requests
            .into_iter()
            .map(|request| WriteAction::Fail {
                request,
                error: Error::Internal(why.to_owned()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Command, Config, Membership, Message};

    fn noop_write() -> Txn {
        Txn::Noop
    }

    fn session_write(session: SessionId) -> Txn {
        Txn::CloseSession {
            session,
            reason: crate::txn::CloseReason::ClientClosed,
        }
    }

    fn leader() -> Replica<Vec<u8>> {
        let mut r = Replica::new(Config::new(1, vec![1]), 0).expect("valid config");
        r.campaign();
        r.persisted(1);
        r.persisted(2);
        r.take_commands();
        r
    }

    fn follower_of(leader: NodeId) -> Replica<Vec<u8>> {
        let mut r = Replica::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid config");
        r.step(
            leader,
            Message::Heartbeat {
                ballot: Ballot::new(1, leader),
                commit: 0,
                seq: 1,
            },
            0,
        );
        r.take_commands();
        r
    }

    #[test]
    fn at_the_leader_a_txn_is_proposed_with_its_origin_and_request() {
        let mut r = leader();
        let mut w = WritePath::new(1, 100, 10);
        let request = w.submit(noop_write(), 0);
        assert_eq!(w.route(&mut r, 5, 1 << 20), vec![]);
        let proposed: Vec<Proposal> = r
            .take_commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::Persist(write) => Some(write),
                _ => None,
            })
            .flat_map(|write| write.entries)
            .filter_map(|(_, e)| match e.value {
                crate::paxos::Value::Data(bytes) => Proposal::decode(&bytes).ok(),
                _ => None,
            })
            .collect();
        assert_eq!(proposed.len(), 1);
        assert_eq!((proposed[0].origin, proposed[0].request), (1, request));
        assert_eq!(proposed[0].time, 5);
    }

    #[test]
    fn an_expiry_decided_as_leader_is_not_forwarded_to_the_next_one() {
        // Simulator seed 33833: the old leader's queued expiry reached the
        // new leader, which had vouched for the session meanwhile.
        let mut f = follower_of(1);
        let mut w = WritePath::new(2, 1, 10);
        w.leader_is(Some(1));
        let expiry = w.submit(
            Txn::CloseSession {
                session: 7,
                reason: CloseReason::Expired,
            },
            0,
        );
        let close = Txn::CloseSession {
            session: 8,
            reason: CloseReason::ClientClosed,
        };
        let asked = w.submit(close.clone(), 0);
        let actions = w.route(&mut f, 0, 1 << 20);
        assert!(
            matches!(
                actions.as_slice(),
                [
                    WriteAction::Fail { request, error: Error::ConnectionLoss(_) },
                    WriteAction::Forward { to: 1, txns },
                ] if *request == expiry && txns == &vec![(asked, close.clone())]
            ),
            "{actions:?}"
        );
    }

    #[test]
    fn a_follower_forwards_and_a_leader_change_answers_what_was_sent() {
        let mut f = follower_of(1);
        let mut w = WritePath::new(2, 1, 10);
        w.leader_is(Some(1));
        let a = w.submit(noop_write(), 0);
        assert_eq!(
            w.route(&mut f, 0, 1 << 20),
            vec![WriteAction::Forward {
                to: 1,
                txns: vec![(a, noop_write())]
            }]
        );
        let (changed, actions) = w.leader_is(Some(3));
        assert!(changed);
        assert!(matches!(
            actions.as_slice(),
            [WriteAction::Fail { request, error: Error::ConnectionLoss(_) }] if *request == a
        ));
    }

    #[test]
    fn a_node_that_does_not_lead_refuses_forwarded_txns() {
        let f = follower_of(1);
        let mut w = WritePath::new(2, 1, 10);
        assert_eq!(
            w.forwarded(&f, 3, vec![(9, noop_write())]),
            vec![WriteAction::Refuse {
                to: 3,
                requests: vec![9]
            }]
        );
    }

    #[test]
    fn during_a_membership_change_txns_are_held_then_proposed() {
        let mut r = Replica::<Vec<u8>>::new(Config::new(1, vec![1]), 0).expect("valid config");
        r.campaign();
        r.persisted(1);
        r.persisted(2);
        r.propose_membership(Membership::new(vec![1], vec![2]))
            .expect("add an observer");
        r.take_commands();
        let mut w = WritePath::new(1, 1, 10);
        w.submit(noop_write(), 0);
        assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        assert_eq!(w.held.len(), 1, "held while the change commits");
        r.persisted(3);
        r.take_commands();
        assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        assert!(w.held.is_empty(), "proposed once it committed");
    }

    #[test]
    fn a_sessions_txns_are_counted_until_the_last_is_answered() {
        let mut w = WritePath::new(1, 1, 10);
        let a = w.submit(session_write(7), 0);
        let b = w.submit(session_write(7), 0);
        assert!(w.has_outstanding(7));
        assert_eq!(w.finish(a).map(|f| f.session_done), Some(None));
        assert_eq!(
            w.finish(b),
            Some(Finished {
                session_done: Some(7)
            })
        );
        assert!(!w.has_outstanding(7));
        assert_eq!(w.finish(b), None, "answered once");
    }

    #[test]
    fn requests_that_wait_too_long_fail_and_unsent_ones_leave_the_queue() {
        let mut w = WritePath::new(1, 1, 10);
        let a = w.submit(noop_write(), 0);
        assert_eq!(w.expire(1_000, 1_000), vec![]);
        let late = w.expire(1_001, 1_000);
        assert!(matches!(
            late.as_slice(),
            [WriteAction::Fail { request, .. }] if *request == a
        ));
        assert!(w.queued.is_empty());
    }

    #[test]
    fn admission_stops_at_the_limit() {
        let mut w = WritePath::new(1, 1, 2);
        w.submit(noop_write(), 0);
        assert!(w.admit().is_ok());
        w.submit(noop_write(), 0);
        assert!(matches!(w.admit(), Err(Error::Throttled(_))));
    }

    /// The persists `r` asked for since the last call, by the writes each
    /// holds (a proposal is persisted in one).
    fn proposed(r: &mut Replica<Vec<u8>>) -> Vec<usize> {
        r.take_commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::Persist(write) => Some(
                    write
                        .entries
                        .iter()
                        .filter(|(_, e)| matches!(e.value, crate::paxos::Value::Data(_)))
                        .count(),
                ),
                _ => None,
            })
            .filter(|&writes| writes > 0)
            .collect()
    }

    #[test]
    fn writes_wait_while_the_proposals_in_flight_are_at_the_limit_then_go_together() {
        let mut r = leader();
        let mut w = WritePath::new(1, 1, 10).with_max_proposals_in_flight(1);
        w.submit(noop_write(), 0);
        assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        assert_eq!(proposed(&mut r), vec![1], "nothing in flight: at once");
        w.submit(noop_write(), 0);
        w.submit(noop_write(), 0);
        assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        assert_eq!(
            proposed(&mut r),
            Vec::<usize>::new(),
            "one proposal in flight: they wait"
        );
        assert_eq!(w.queued.len(), 2);
        // The proposal in flight commits (this single voter's write is
        // durable).
        r.persisted(3);
        r.take_commands();
        assert_eq!(r.commit_index(), r.log_last());
        assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        assert_eq!(proposed(&mut r), vec![2], "both in the next proposal");
    }

    #[test]
    fn without_a_limit_every_route_proposes() {
        let mut r = leader();
        let mut w = WritePath::new(1, 1, 10);
        for _ in 0..3 {
            w.submit(noop_write(), 0);
            assert_eq!(w.route(&mut r, 0, 1 << 20), vec![]);
        }
        assert_eq!(proposed(&mut r), vec![1, 1, 1]);
    }
}
