//! Whether a node serves clients. A node serves once it is a member, knows
//! a leader, has heard from it within the silence limit (the election
//! timeout), and has applied everything it knows to be committed (a leader:
//! once its first batch committed, so that earlier leaders' slots are in);
//! it stops as soon as it knows no leader or its leader has been silent
//! that long, and then refuses its waiting keep-alives, so that clients
//! move to a member in contact with the leader. A node that restarted or
//! lost its leader does not answer from a state it cannot vouch for, as a
//! ZooKeeper server outside a quorum does not.
//!
//! The shell calls [`Serving::turn`] at the end of every turn and
//! [`Serving::check`] before serving a client request.

use std::fmt;

use crate::paxos::{MonoMs, NodeId, Replica, Role, Slot};

/// Why a node does not serve clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    NotMember(NodeId),
    /// A voter that keeps out of every quorum until it is removed and
    /// re-added (its directory is new: see `Replica::awaiting_readd`).
    AwaitingReadd(NodeId),
    NoLeader,
    LeaderSilent {
        leader: NodeId,
        silence_ms: u64,
    },
    NewlyElected,
    CatchingUp {
        applied: Slot,
        commit: Slot,
        leader: NodeId,
    },
    /// Ready now, but not yet switched on (the next turn does).
    Starting,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::NotMember(id) => write!(f, "node {id} is not in the configuration"),
            NotReady::AwaitingReadd(id) => write!(
                f,
                "node {id} started on an empty data directory in an existing ensemble (or the \
                 configuration binds its id to another incarnation): it votes in nothing until \
                 it is removed and re-added (synodctl member remove {id}, then add {id} \
                 --observer, then promote {id})"
            ),
            NotReady::NoLeader => write!(f, "no leader known"),
            NotReady::LeaderSilent { leader, silence_ms } => write!(
                f,
                "no word from the leader (node {leader}) for {silence_ms} ms"
            ),
            NotReady::NewlyElected => {
                write!(f, "newly elected: committing what earlier leaders left")
            }
            NotReady::CatchingUp {
                applied,
                commit,
                leader,
            } => write!(
                f,
                "catching up: applied {applied} of {commit} (leader {leader})"
            ),
            NotReady::Starting => write!(f, "starting"),
        }
    }
}

/// At a follower that has not heard from its leader for `limit_ms` or
/// longer at `now`: for how long.
pub fn leader_silence<T: Clone>(replica: &Replica<T>, now: MonoMs, limit_ms: u64) -> Option<u64> {
    if replica.role() == Role::Leader {
        return None;
    }
    let heard = replica.leader_heard_at()?;
    let silence = now.saturating_sub(heard);
    (silence >= limit_ms).then_some(silence)
}

/// Whether a node whose state machine applied up to `applied` should
/// receive clients at `now`.
pub fn readiness<T: Clone>(
    replica: &Replica<T>,
    applied: Slot,
    now: MonoMs,
    limit_ms: u64,
) -> Result<(), NotReady> {
    if !replica.membership().contains(replica.id()) {
        return Err(NotReady::NotMember(replica.id()));
    }
    if replica.awaiting_readd() {
        return Err(NotReady::AwaitingReadd(replica.id()));
    }
    let Some(leader) = replica.leader() else {
        return Err(NotReady::NoLeader);
    };
    if let Some(silence_ms) = leader_silence(replica, now, limit_ms) {
        return Err(NotReady::LeaderSilent { leader, silence_ms });
    }
    if replica.role() == Role::Leader && !replica.leader_caught_up() {
        return Err(NotReady::NewlyElected);
    }
    let commit = replica.commit_index();
    if applied < commit {
        return Err(NotReady::CatchingUp {
            applied,
            commit,
            leader,
        });
    }
    Ok(())
}

/// What a turn changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// Serving from now on.
    Started,
    /// Stopped serving (the shell logs why).
    Stopped,
}

/// Whether the node serves clients, switched at the end of each turn.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    serving: bool,
    limit_ms: u64,
}

impl Serving {
    /// A node starts not serving; `limit_ms` is the leader silence after
    /// which it stops (the election timeout).
    pub fn new(limit_ms: u64) -> Self {
        Serving {
            serving: false,
            limit_ms,
        }
    }

    pub fn is_serving(&self) -> bool {
        self.serving
    }

    /// The end of a turn. Returns the change, and whether the leader is
    /// lost (none known, or silent): the shell then refuses the waiting
    /// keep-alives (`SessionLiveness::lost_leader`), whether or not the
    /// node was serving.
    pub fn turn<T: Clone>(
        &mut self,
        replica: &Replica<T>,
        applied: Slot,
        now: MonoMs,
    ) -> (Change, bool) {
        let lost =
            replica.leader().is_none() || leader_silence(replica, now, self.limit_ms).is_some();
        if lost {
            let was = std::mem::replace(&mut self.serving, false);
            let change = if was {
                Change::Stopped
            } else {
                Change::Unchanged
            };
            return (change, true);
        }
        if !self.serving && readiness(replica, applied, now, self.limit_ms).is_ok() {
            self.serving = true;
            return (Change::Started, false);
        }
        (Change::Unchanged, false)
    }

    /// Refuses a client request while the node is not serving, saying why.
    pub fn check<T: Clone>(
        &self,
        replica: &Replica<T>,
        applied: Slot,
        now: MonoMs,
    ) -> Result<(), NotReady> {
        if self.serving {
            return Ok(());
        }
        readiness(replica, applied, now, self.limit_ms).and(Err(NotReady::Starting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Config, Message};

    fn follower_of(leader: NodeId, now: MonoMs) -> Replica<u64> {
        let mut r = Replica::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid config");
        r.step(
            leader,
            Message::Heartbeat {
                ballot: Ballot::new(1, leader),
                commit: 0,
                seq: 1,
            },
            now,
        );
        r.take_commands();
        r
    }

    #[test]
    fn a_follower_serves_while_it_hears_its_leader_and_stops_after_the_limit() {
        let r = follower_of(1, 0);
        let mut s = Serving::new(10);
        assert_eq!(s.check(&r, 0, 0), Err(NotReady::Starting));
        assert_eq!(s.turn(&r, 0, 5), (Change::Started, false));
        assert!(s.check(&r, 0, 5).is_ok());
        assert_eq!(s.turn(&r, 0, 10), (Change::Stopped, true));
        assert!(matches!(
            s.check(&r, 0, 10),
            Err(NotReady::LeaderSilent { leader: 1, .. })
        ));
    }

    #[test]
    fn a_node_without_a_leader_does_not_serve() {
        let r = Replica::<u64>::new(Config::new(2, vec![1, 2, 3]), 0).expect("valid config");
        let mut s = Serving::new(10);
        assert_eq!(s.turn(&r, 0, 0), (Change::Unchanged, true));
        assert_eq!(s.check(&r, 0, 0), Err(NotReady::NoLeader));
    }
}
