//! synod-core: the deterministic replicated state machine of Synod.
//!
//! Everything that decides lives here as plain synchronous Rust: the znode
//! tree, the session table, watch triggering. Nothing in this crate touches
//! an async runtime, a clock, a socket or global randomness: time arrives as
//! arguments, and effects leave as return values that the node executes. That
//! is what lets replicas apply one log to identical states, and what lets the
//! tests replay any history exactly.

pub mod acl;
pub mod codec;
pub mod error;
pub mod lincheck;
pub mod node;
pub mod path;
pub mod paxos;
pub mod session;
pub mod sim;
pub mod state;
pub mod stream;
pub mod tree;
pub mod txn;
pub mod watch;

pub use error::{Error, ErrorCode};

/// A transaction id: the log position of a committed transaction. It only grows.
pub type Zxid = i64;

/// A session id, unique across the ensemble. Always positive: ZooKeeper
/// reserves the negative range of an ephemeral owner for container and TTL
/// markers.
pub type SessionId = i64;

/// Milliseconds since the Unix epoch, as stamped by the leader on a txn.
pub type Millis = i64;
