//! The transactions the replicated log carries and the results of applying
//! them. A txn is everything a replica needs to reach the same state as every
//! other replica: the operation, the session and identity it runs under; the
//! zxid and time come from the log entry it travels in.

use crate::acl::{Acl, Identity};
use crate::tree::Stat;
use crate::{Millis, SessionId};

/// How a znode lives and is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    /// Removed by the server once it has had children and the last is gone.
    Container,
    /// Removed by the server when childless and unmodified for the TTL.
    PersistentWithTtl,
    PersistentSequentialWithTtl,
}

impl CreateMode {
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// A mutation of the tree requested by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Create {
        path: String,
        /// `None` is ZooKeeper's null data: it reads back as null over the
        /// ZooKeeper protocol and as empty bytes over gRPC.
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl_ms: Millis,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// All or nothing. Nested multis are refused.
    Multi(Vec<WriteOp>),
}

impl WriteOp {
    pub fn path(&self) -> &str {
        match self {
            WriteOp::Create { path, .. }
            | WriteOp::Delete { path, .. }
            | WriteOp::SetData { path, .. }
            | WriteOp::SetAcl { path, .. }
            | WriteOp::Check { path, .. } => path,
            WriteOp::Multi(_) => "",
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    Expired,
}

/// One entry of the replicated log, minus its position and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// Does nothing; fills gaps and marks leadership.
    Noop,
    /// Opens a session; its id is the zxid of this txn. The requested
    /// timeout is negotiated into the configured bounds when applied.
    CreateSession {
        timeout_ms: Millis,
        password: crate::session::SessionPassword,
    },
    /// Ends a session and deletes its ephemerals in the same step.
    CloseSession {
        session: SessionId,
        reason: CloseReason,
    },
    /// A client's write. `session` 0 runs without a session (no ephemerals).
    Write {
        session: SessionId,
        identity: Identity,
        op: WriteOp,
    },
    /// Server-initiated cleanup of an empty container or an expired TTL
    /// node; applied only if the node still qualifies at this txn's time.
    Reap { path: String },
    /// Changes the limits and ACL policy that every later txn is checked
    /// against. Limits live in the log, not in each node's flags, so a
    /// replay (or another replica) checks every txn exactly as it was first
    /// checked.
    SetConfig(crate::state::StateConfig),
    /// A client re-attached its session on member `owner` (ZooKeeper's
    /// session move). Applied only while the session is open, so the member
    /// learns from the log that the session is still alive before it
    /// answers the client; every other member lets go of its own connection
    /// of the session.
    MoveSession { session: SessionId, owner: u64 },
    /// Names the ensemble: proposed by the first leader with an id the node
    /// drew from the OS (core itself has no randomness). Only the first one
    /// applied counts, so two leaders racing to mint still leave every
    /// replica with the same id.
    SetClusterId { id: u64 },
}

/// The outcome of one write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Created { path: String, stat: Stat },
    Deleted,
    DataSet { stat: Stat },
    AclSet { stat: Stat },
    Checked,
    Multi(MultiOutcome),
}

/// What a multi did, op by op, in ZooKeeper's reporting style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOutcome {
    Committed(Vec<OpOutcome>),
    /// `failed_index` names the op that failed with `error`; the ops before
    /// it were rolled back, the ones after it were never run.
    Aborted {
        failed_index: usize,
        error: crate::Error,
        len: usize,
    },
}

/// The outcome of applying one txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    Noop,
    SessionCreated(Result<(SessionId, Millis), crate::Error>),
    SessionClosed {
        session: SessionId,
        deleted: Vec<String>,
    },
    Write(Result<OpOutcome, crate::Error>),
    Reaped {
        path: String,
        deleted: bool,
    },
    /// The session now belongs to `owner`, or it is no longer open.
    SessionMoved(Result<(SessionId, u64), crate::Error>),
    /// The ensemble's cluster id after the txn: the proposed one if none
    /// was set, else the one already set (the proposal was ignored).
    ClusterId(u64),
}
