//! Linearizable read barriers at a node.
//!
//! A read with `linearizable = true` is served from the local state once
//! the node has applied an index the leader confirmed *after the read
//! arrived*: by its lease or by a heartbeat round ([`Replica::read`]). At
//! the leader the replica is asked directly; a follower asks the leader
//! with a `ReadIndex` frame and the leader answers with the index (or none).
//! A read the lease confirmed is checked against the lease again when the
//! node has applied its index and is about to answer: if the process was
//! paused, or applying took long, the lease may have run out meanwhile, and
//! the read is confirmed again by a round instead of answered.
//!
//! This module decides; the shell carries the [`ReadAction`]s out (sends the
//! frames, answers the waiting client). Reads are identified by [`ReadId`]s
//! that the shell gives back with every answer.

use rustc_hash::FxHashMap;

use crate::paxos::{MonoMs, NodeId, Replica, Role, Slot};

/// A read, as the shell and the replica know it. Unique for the life of
/// the process and beyond (the shell picks the first one), because a
/// follower's request number comes back in the leader's answer.
pub type ReadId = u64;

/// The index a read may be served at, as the replica confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadIndex {
    pub index: Slot,
    /// Set when the leader's lease confirmed it: the read must be answered
    /// before then, or confirmed again.
    pub lease_until: Option<MonoMs>,
}

/// Why a read could not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no leader known")]
    NoLeader,
    #[error("{0}")]
    NotLeader(String),
    #[error("the leader could not confirm its leadership; retry")]
    NotConfirmed,
    #[error("the leader's lease ran out before the read could be answered ({0}); retry")]
    LeaseRanOut(String),
    #[error("no read index from the leader within {0} ms")]
    NoIndex(u64),
    #[error("index {index} not applied here within {timeout_ms} ms")]
    NotApplied { index: Slot, timeout_ms: u64 },
}

/// What the shell must do for the reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAction {
    /// Ask the leader `to` for a read index for `request` (a `ReadIndex`
    /// frame). If it cannot be sent, call [`ReadBarriers::fail`].
    AskLeader { to: NodeId, request: ReadId },
    /// Answer a follower's read-index request.
    ReplyIndex {
        to: NodeId,
        request: u64,
        index: Option<Slot>,
    },
    /// Answer this node's read `id`: serve it now, or fail it.
    Answer {
        id: ReadId,
        result: Result<(), ReadError>,
    },
}

/// One of this node's reads.
#[derive(Debug, Clone, Copy)]
struct Read {
    asked_at: MonoMs,
    /// Once confirmed: the index to apply first.
    at: Option<ReadIndex>,
}

/// The linearizable reads of one node.
#[derive(Debug)]
pub struct ReadBarriers {
    next_id: ReadId,
    /// This node's reads, by id.
    reads: FxHashMap<ReadId, Read>,
    /// At the leader: followers' requests the replica was asked for, by
    /// the replica's read id: who asked, under which request number.
    remote: FxHashMap<ReadId, (NodeId, u64)>,
}

impl ReadBarriers {
    /// Read ids start at `first_id` (the shell makes it differ between runs
    /// of the process).
    pub fn new(first_id: ReadId) -> Self {
        ReadBarriers {
            next_id: first_id,
            reads: FxHashMap::default(),
            remote: FxHashMap::default(),
        }
    }

    fn take_id(&mut self) -> ReadId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Reads waiting for an index or for it to be applied.
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// A client's linearizable read arrived at `now`. Returns its id and
    /// what to do; the answer comes later as [`ReadAction::Answer`].
    pub fn ask<T: Clone>(
        &mut self,
        replica: &mut Replica<T>,
        now: MonoMs,
    ) -> Result<(ReadId, Vec<ReadAction>), ReadError> {
        let id = self.take_id();
        let mut actions = Vec::new();
        if replica.role() == Role::Leader {
            replica
                .read(id, now)
                .map_err(|e| ReadError::NotLeader(e.to_string()))?;
        } else {
            let to = replica
                .leader()
                .filter(|l| *l != replica.id())
                .ok_or(ReadError::NoLeader)?;
            actions.push(ReadAction::AskLeader { to, request: id });
        }
        self.reads.insert(
            id,
            Read {
                asked_at: now,
                at: None,
            },
        );
        Ok((id, actions))
    }

    /// The shell could not carry out [`ReadAction::AskLeader`] for `id`.
    pub fn fail(&mut self, id: ReadId, error: ReadError) -> Vec<ReadAction> {
        match self.reads.remove(&id) {
            Some(_) => vec![ReadAction::Answer {
                id,
                result: Err(error),
            }],
            None => Vec::new(),
        }
    }

    /// At the leader: follower `from` asks for a read index under its
    /// request number `request`, at `now`.
    pub fn remote_asked<T: Clone>(
        &mut self,
        replica: &mut Replica<T>,
        from: NodeId,
        request: u64,
        now: MonoMs,
    ) -> Vec<ReadAction> {
        let id = self.take_id();
        match replica.read(id, now) {
            Ok(()) => {
                self.remote.insert(id, (from, request));
                Vec::new()
            }
            Err(_) => vec![ReadAction::ReplyIndex {
                to: from,
                request,
                index: None,
            }],
        }
    }

    /// The replica confirmed (`Some`) or gave up (`None`) read `id`, or the
    /// leader answered this node's request `id`. `applied` is what the
    /// state machine has applied.
    pub fn confirmed<T: Clone>(
        &mut self,
        replica: &mut Replica<T>,
        id: ReadId,
        at: Option<ReadIndex>,
        applied: Slot,
        now: MonoMs,
    ) -> Vec<ReadAction> {
        if let Some((to, request)) = self.remote.remove(&id) {
            // Answered at once, within the lease or round that confirmed it.
            let index = at.map(|at| at.index);
            return vec![ReadAction::ReplyIndex { to, request, index }];
        }
        let Some(read) = self.reads.get_mut(&id) else {
            return Vec::new();
        };
        match at {
            Some(at) => {
                read.at = Some(at);
                self.applied(replica, applied, now)
            }
            None => self.fail(id, ReadError::NotConfirmed),
        }
    }

    /// The state machine has applied up to `applied` at `now`: answers the
    /// reads whose index it covers. A read the lease confirmed is answered
    /// only while that lease still holds; otherwise it is confirmed again.
    pub fn applied<T: Clone>(
        &mut self,
        replica: &mut Replica<T>,
        applied: Slot,
        now: MonoMs,
    ) -> Vec<ReadAction> {
        let mut ready: Vec<(ReadId, ReadIndex)> = self
            .reads
            .iter()
            .filter_map(|(id, r)| r.at.filter(|at| at.index <= applied).map(|at| (*id, at)))
            .collect();
        // Answer in id order (the order they were asked): hash order would
        // make the shell's actions differ between runs.
        ready.sort_unstable_by_key(|(id, _)| *id);
        let mut actions = Vec::new();
        for (id, at) in ready {
            match at.lease_until {
                Some(until) if now >= until => {
                    // Asked again under the same id: the replica is done
                    // with the first request.
                    match replica.read(id, now) {
                        Ok(()) => {
                            if let Some(read) = self.reads.get_mut(&id) {
                                read.at = None;
                            }
                        }
                        Err(e) => {
                            actions.extend(self.fail(id, ReadError::LeaseRanOut(e.to_string())));
                        }
                    }
                }
                _ => {
                    self.reads.remove(&id);
                    actions.push(ReadAction::Answer { id, result: Ok(()) });
                }
            }
        }
        actions
    }

    /// Fails the reads asked more than `timeout_ms` before `now`.
    pub fn expire(&mut self, now: MonoMs, timeout_ms: u64) -> Vec<ReadAction> {
        let mut late: Vec<(ReadId, Read)> = self
            .reads
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.asked_at) > timeout_ms)
            .map(|(id, r)| (*id, *r))
            .collect();
        late.sort_unstable_by_key(|(id, _)| *id);
        let mut actions = Vec::new();
        for (id, read) in late {
            let error = match read.at {
                None => ReadError::NoIndex(timeout_ms),
                Some(at) => ReadError::NotApplied {
                    index: at.index,
                    timeout_ms,
                },
            };
            actions.extend(self.fail(id, error));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Command, Config, Message};

    /// A leader of one voter that has committed its first slot.
    fn leader() -> Replica<u64> {
        let mut r = Replica::new(Config::new(1, vec![1]), 0).expect("valid config");
        r.campaign();
        r.persisted(1);
        r.persisted(2);
        r.take_commands();
        assert_eq!(r.role(), Role::Leader);
        r
    }

    /// Node 2 of three, following node 1.
    fn follower_of_1() -> Replica<u64> {
        let mut f = Replica::<u64>::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid");
        f.step(
            1,
            Message::Heartbeat {
                ballot: crate::paxos::Ballot::new(1, 1),
                commit: 0,
                seq: 1,
            },
            0,
        );
        f
    }

    fn ready(r: &mut Replica<u64>) -> Vec<(ReadId, Option<ReadIndex>)> {
        r.take_commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::ReadReady {
                    id,
                    index,
                    lease_until,
                } => Some((id, Some(ReadIndex { index, lease_until }))),
                Command::ReadFailed { id } => Some((id, None)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_leader_answers_once_the_index_is_applied() {
        let mut r = leader();
        let mut reads = ReadBarriers::new(100);
        let (id, actions) = reads.ask(&mut r, 0).expect("leader");
        assert_eq!(actions, vec![]);
        let confirmed = ready(&mut r);
        assert_eq!(confirmed.len(), 1);
        let (cid, at) = confirmed[0];
        assert_eq!(cid, id);
        // Not applied yet: nothing to answer.
        assert_eq!(reads.confirmed(&mut r, id, at, 0, 0), vec![]);
        assert_eq!(
            reads.applied(&mut r, 1, 0),
            vec![ReadAction::Answer { id, result: Ok(()) }]
        );
        assert!(reads.is_empty());
    }

    #[test]
    fn a_lease_read_that_waited_past_its_lease_is_confirmed_again() {
        let mut r = leader();
        let mut reads = ReadBarriers::new(1);
        // A single voter's lease: one election timeout (10 ms at test
        // scale) less the drift bound, from its last heartbeat round.
        r.tick(1);
        r.take_commands();
        let (id, _) = reads.ask(&mut r, 1).expect("leader");
        let (_, at) = ready(&mut r)[0];
        let until = at.and_then(|a| a.lease_until).expect("a lease read");
        // Applied only after the lease ran out (the process was paused):
        // the read is not answered from the lease but asked again.
        assert_eq!(reads.confirmed(&mut r, id, at, 0, until), vec![]);
        assert_eq!(reads.applied(&mut r, 1, until), vec![]);
        assert_eq!(reads.len(), 1);
        // The replica confirms it again (here by a new heartbeat round of
        // the single voter), and then it is answered.
        let again = ready(&mut r);
        assert_eq!(again.len(), 1);
        let (id2, at2) = again[0];
        assert_eq!(id2, id);
        assert_eq!(
            at2.and_then(|a| a.lease_until),
            None,
            "confirmed by a round"
        );
        assert_eq!(
            reads.confirmed(&mut r, id, at2, 1, until),
            vec![ReadAction::Answer { id, result: Ok(()) }]
        );
    }

    #[test]
    fn a_follower_asks_the_leader_and_serves_at_its_index() {
        let mut f = follower_of_1();
        f.take_commands();
        let mut reads = ReadBarriers::new(7);
        let (id, actions) = reads.ask(&mut f, 0).expect("a leader is known");
        assert_eq!(actions, vec![ReadAction::AskLeader { to: 1, request: id }]);
        let at = Some(ReadIndex {
            index: 5,
            lease_until: None,
        });
        assert_eq!(reads.confirmed(&mut f, id, at, 4, 1), vec![]);
        assert_eq!(
            reads.applied(&mut f, 5, 2),
            vec![ReadAction::Answer { id, result: Ok(()) }]
        );
    }

    #[test]
    fn without_a_leader_a_read_fails_at_once() {
        let mut f = Replica::<u64>::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid");
        let mut reads = ReadBarriers::new(1);
        assert_eq!(reads.ask(&mut f, 0), Err(ReadError::NoLeader));
        assert!(reads.is_empty());
    }

    #[test]
    fn the_leader_answers_a_followers_request_with_the_confirmed_index() {
        let mut r = leader();
        let mut reads = ReadBarriers::new(1);
        assert_eq!(reads.remote_asked(&mut r, 2, 77, 0), vec![]);
        let (id, at) = ready(&mut r)[0];
        assert_eq!(
            reads.confirmed(&mut r, id, at, 0, 0),
            vec![ReadAction::ReplyIndex {
                to: 2,
                request: 77,
                index: Some(1)
            }]
        );
        // A follower asking a node that does not lead gets no index.
        let mut f = Replica::<u64>::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid");
        assert_eq!(
            reads.remote_asked(&mut f, 3, 78, 0),
            vec![ReadAction::ReplyIndex {
                to: 3,
                request: 78,
                index: None
            }]
        );
    }

    #[test]
    fn reads_that_wait_too_long_fail_with_what_they_waited_for() {
        let mut r = leader();
        let mut reads = ReadBarriers::new(1);
        let (a, _) = reads.ask(&mut r, 0).expect("leader");
        let (_, at) = ready(&mut r)[0];
        // `a` is confirmed at index 1 but nothing is applied; `b` waits
        // for an index.
        reads.confirmed(&mut r, a, at, 0, 0);
        let mut f = follower_of_1();
        let (b, _) = reads.ask(&mut f, 5).expect("a leader is known");
        assert_eq!(reads.expire(1_000, 1_000), vec![]);
        assert_eq!(
            reads.expire(1_001, 1_000),
            vec![ReadAction::Answer {
                id: a,
                result: Err(ReadError::NotApplied {
                    index: 1,
                    timeout_ms: 1_000
                })
            }]
        );
        assert_eq!(
            reads.expire(1_006, 1_000),
            vec![ReadAction::Answer {
                id: b,
                result: Err(ReadError::NoIndex(1_000))
            }]
        );
        assert!(reads.is_empty());
    }
}
