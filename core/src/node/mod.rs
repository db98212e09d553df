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
//! Not here yet (still in the driver): forwarding writes to the leader,
//! FIFO per session, answers after a leader change, the snapshot checkpoint
//! protocol and group-commit retry.

pub mod liveness;
pub mod reads;
pub mod sessions;
