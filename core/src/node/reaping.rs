//! Which containers and TTL nodes the leader proposes to reap, and when.
//!
//! The tree says which znodes qualify ([`DataTree::reap_candidates`]:
//! containers that have had a child and have none now, TTL nodes childless
//! and unmodified for longer than their TTL); this decides what the node
//! does about it on each tick: only the leader proposes (a `Reap` is a txn
//! through the log, so one proposer is enough, and a follower's would only
//! be forwarded), never the same path twice while one of its reaps is on
//! its way (a candidate stays a candidate until its reap is applied, and
//! every tick would otherwise propose it again), and at most
//! `max_per_tick` paths a tick, so that a mass expiry of TTL nodes is
//! spread over ticks instead of flooding one batch.
//!
//! A leader that is not yet caught up may propose a reap from a stale
//! tree; that is harmless, because applying a `Reap` checks again whether
//! the znode qualifies at the txn's time ([`DataTree::reap`]) and does
//! nothing otherwise.
//!
//! The shell calls [`Reaping::due`] on its periodic tick, submits a
//! `Txn::Reap` for each path it returns, and calls [`Reaping::done`] when
//! that request is answered (applied or failed).

use std::collections::BTreeSet;

use crate::Millis;
use crate::paxos::Role;
use crate::tree::DataTree;

/// The reaps a node has on their way through the log.
#[derive(Debug, Clone)]
pub struct Reaping {
    in_flight: BTreeSet<String>,
    max_per_tick: usize,
}

impl Reaping {
    /// Proposes at most `max_per_tick` reaps a tick.
    pub fn new(max_per_tick: usize) -> Self {
        Reaping {
            in_flight: BTreeSet::new(),
            max_per_tick,
        }
    }

    /// On a tick of a node in `role` whose tree is `tree`, at `now` (the
    /// time its txns are stamped with): the paths to propose a `Reap` for
    /// now, each counted as on its way until [`Reaping::done`].
    pub fn due(&mut self, role: Role, tree: &DataTree, now: Millis) -> Vec<String> {
        if role != Role::Leader {
            return Vec::new();
        }
        let due: Vec<String> = tree
            .reap_candidates(now)
            .into_iter()
            .filter(|p| !self.in_flight.contains(p))
            .take(self.max_per_tick)
            .collect();
        self.in_flight.extend(due.iter().cloned());
        due
    }

    /// The reap of `path` was answered: applied (the znode is gone, or no
    /// longer qualified) or failed (the next tick proposes it again if it
    /// still qualifies).
    pub fn done(&mut self, path: &str) {
        self.in_flight.remove(path);
    }

    /// Reaps on their way.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Acl, Identity};
    use crate::state::{StateConfig, StateMachine};
    use crate::txn::{CreateMode, Txn, WriteOp};

    fn write(machine: &mut StateMachine, zxid: i64, time: Millis, op: WriteOp) {
        let txn = Txn::Write {
            session: 0,
            identity: Identity::anonymous(),
            op,
        };
        machine.apply(zxid, time, &txn);
    }

    fn create(path: &str, mode: CreateMode, ttl_ms: Millis) -> WriteOp {
        WriteOp::Create {
            path: path.into(),
            data: Some(Vec::new()),
            acl: Acl::open(),
            mode,
            ttl_ms,
        }
    }

    /// A tree with an emptied container `/c` (its child created and
    /// deleted) and TTL nodes `/t1`, `/t2` of 10 ms created at time 0.
    fn tree() -> StateMachine {
        let mut m = StateMachine::new(StateConfig::default());
        write(&mut m, 1, 0, create("/c", CreateMode::Container, 0));
        write(&mut m, 2, 0, create("/c/x", CreateMode::Persistent, 0));
        let delete = WriteOp::Delete {
            path: "/c/x".into(),
            version: -1,
        };
        write(&mut m, 3, 0, delete);
        write(
            &mut m,
            4,
            0,
            create("/t1", CreateMode::PersistentWithTtl, 10),
        );
        write(
            &mut m,
            5,
            0,
            create("/t2", CreateMode::PersistentWithTtl, 10),
        );
        m
    }

    #[test]
    fn only_the_leader_reaps() {
        let m = tree();
        let mut r = Reaping::new(16);
        for role in [Role::Follower, Role::Candidate] {
            assert!(r.due(role, m.tree(), 100).is_empty(), "{role:?}");
        }
        assert_eq!(r.due(Role::Leader, m.tree(), 100), ["/c", "/t1", "/t2"]);
    }

    #[test]
    fn a_ttl_node_is_due_only_once_its_ttl_has_passed() {
        let m = tree();
        let mut r = Reaping::new(16);
        assert_eq!(r.due(Role::Leader, m.tree(), 10), ["/c"]);
        assert_eq!(r.due(Role::Leader, m.tree(), 11), ["/t1", "/t2"]);
    }

    #[test]
    fn a_path_is_not_proposed_again_while_its_reap_is_on_its_way() {
        let m = tree();
        let mut r = Reaping::new(16);
        assert_eq!(r.due(Role::Leader, m.tree(), 100).len(), 3);
        assert!(r.due(Role::Leader, m.tree(), 101).is_empty());
        assert_eq!(r.in_flight(), 3);
        // The reap of /t1 failed (say, a leader change): proposed again.
        r.done("/t1");
        assert_eq!(r.due(Role::Leader, m.tree(), 102), ["/t1"]);
    }

    #[test]
    fn a_tick_proposes_at_most_its_limit_and_the_next_tick_the_rest() {
        let m = tree();
        let mut r = Reaping::new(2);
        assert_eq!(r.due(Role::Leader, m.tree(), 100), ["/c", "/t1"]);
        assert_eq!(r.due(Role::Leader, m.tree(), 100), ["/t2"]);
    }

    #[test]
    fn a_container_that_never_had_a_child_is_not_reaped() {
        let mut m = StateMachine::new(StateConfig::default());
        write(&mut m, 1, 0, create("/c", CreateMode::Container, 0));
        assert!(Reaping::new(16).due(Role::Leader, m.tree(), 100).is_empty());
    }
}
