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
//!
//! - [`group_commit`]: what goes into the next log batch, what a completed
//!   one makes durable, when a failed one is appended again.
//! - [`snapshots`]: when a snapshot is due, and its protocol: checkpoint
//!   record, then file, then the log dropped.
//!
//! The driver keeps only I/O: channels, sockets, the storage thread, the
//! encoding of the state a slice at a time, and the completions of the
//! clients' requests.

pub mod group_commit;
pub mod liveness;
pub mod reads;
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
