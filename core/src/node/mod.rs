//! The node's own decisions above the replica, sans-IO like
//! [`crate::paxos`]: each piece takes the time as `now` and its inputs, and
//! says what to do as data; the shell (`synod-node`'s driver) holds the
//! channels and sockets and only carries the answers out.
//!
//! - [`reads`]: linearizable read barriers, at the leader and relayed from a
//!   follower (read index), with the lease checked again when a read is
//!   answered.
//! - [`sessions`]: session liveness: expiry at the leader, reports from
//!   followers, which keep-alives are acknowledged; [`liveness`] holds the
//!   follower's reports and the leader's vouches.
//!
//! - [`writes`]: the write path: requests waiting for their slot, proposed
//!   at the leader or forwarded to it, held, refused, answered after a
//!   leader change or a timeout; the count per session that keeps its
//!   reads in order.
//! - [`deferred`]: a session's reads held behind its own outstanding writes
//!   (FIFO per session).
//!
//! - [`group_commit`]: what goes into the next log batch, what a completed
//!   one makes durable, when a failed one is appended again.
//! - [`snapshots`]: when a snapshot is due, and its protocol: checkpoint
//!   record, then file, then the log dropped.
//! - [`apply`]: how a committed value reaches the state machine.
//! - [`serving`]: whether the node serves clients (knows a leader, has
//!   heard from it lately, has caught up).
//! - [`reaping`]: which empty containers and expired TTL nodes the leader
//!   proposes to reap on a tick.
//! - [`membership`]: what an operator's membership call means against the
//!   committed membership (propose, already done, or refused).
//!
//! The driver keeps only I/O: channels, sockets, the storage thread, the
//! encoding of the state a slice at a time, and the completions of the
//! clients' requests.

pub mod apply;
pub mod deferred;
pub mod group_commit;
pub mod handoff;
pub mod liveness;
pub mod membership;
pub mod reads;
pub mod reaping;
pub mod serving;
pub mod sessions;
pub mod snapshots;
pub mod writes;

use crate::paxos::{MonoMs, Replica, Role, Slot};

/// Whether a node whose state machine has applied up to `applied` is the
/// *authoritative* leader: it leads, its first batch committed (so its
/// commit index covers everything chosen before it was elected), and it
/// applied everything committed. Only then is its session table the
/// ensemble's: a Paxos leader may be elected with a stale log.
pub fn authoritative<T: Clone>(replica: &Replica<T>, applied: Slot) -> bool {
    replica.role() == Role::Leader
        && replica.leader_caught_up()
        && applied >= replica.commit_index()
}

/// Whether that node may vouch for sessions at `now` (answer followers'
/// liveness reports): authoritative, and within its lease, so that no other
/// leader can have been elected meanwhile (see [`liveness`]).
pub fn may_vouch<T: Clone>(replica: &Replica<T>, applied: Slot, now: MonoMs) -> bool {
    authoritative(replica, applied) && replica.lease_holds(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Config, Message};

    /// Node 1 of three, elected (a promise from node 2) but with its first
    /// batch not yet committed.
    fn elected() -> Replica<u64> {
        let mut r = Replica::new(Config::new(1, vec![1, 2, 3]), 0).expect("valid config");
        r.campaign();
        r.step(
            2,
            Message::Promise {
                ballot: crate::paxos::Ballot::new(1, 1),
                from: 1,
                accepted: vec![],
                commit: 0,
            },
            0,
        );
        r.persisted(1);
        r.take_commands();
        assert_eq!(r.role(), Role::Leader);
        r
    }

    /// Node 2 accepted the leader's first batch: it is committed.
    fn commit_first_batch(r: &mut Replica<u64>) {
        r.persisted(2);
        r.step(
            2,
            Message::Accepted {
                ballot: crate::paxos::Ballot::new(1, 1),
                first: 1,
                last: 1,
                commit: 0,
            },
            0,
        );
    }

    #[test]
    fn a_leader_is_authoritative_only_once_its_first_batch_is_committed_and_applied() {
        // The simulator found a leader elected with a stale log that
        // acknowledged keep-alives of sessions already closed.
        let mut r = elected();
        assert!(!authoritative(&r, 0), "first batch not committed");
        commit_first_batch(&mut r);
        r.take_commands();
        assert_eq!(r.commit_index(), 1);
        assert!(!authoritative(&r, 0), "committed but not applied");
        assert!(authoritative(&r, 1));
    }

    #[test]
    fn a_leader_vouches_only_within_its_lease() {
        // The simulator found a leader paused past its lease that
        // acknowledged a keep-alive after its successor expired the session.
        let mut r = elected();
        commit_first_batch(&mut r);
        // A heartbeat round acknowledged by node 2 starts the lease.
        r.tick(2);
        r.step(
            2,
            Message::HeartbeatAck {
                ballot: crate::paxos::Ballot::new(1, 1),
                seq: 1,
                commit: 1,
            },
            2,
        );
        r.take_commands();
        assert!(may_vouch(&r, 1, 3));
        // Far past the lease (a pause): authoritative in its own eyes, but
        // it may not vouch.
        assert!(authoritative(&r, 1));
        assert!(!may_vouch(&r, 1, 1_000));
    }
}
