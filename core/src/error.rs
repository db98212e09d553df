//! The error vocabulary of the state machine, with the ZooKeeper error code
//! each error maps to, so that every front end (gRPC, ZooKeeper wire) reports
//! the same failure the same way.

use crate::SessionId;

/// ZooKeeper's `KeeperException.Code` values, plus Synod refinements that map
/// onto one of them on the ZooKeeper wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Ok,
    SystemError,
    RuntimeInconsistency,
    DataInconsistency,
    ConnectionLoss,
    MarshallingError,
    Unimplemented,
    OperationTimeout,
    BadArguments,
    UnknownSession,
    ApiError,
    NoNode,
    NoAuth,
    BadVersion,
    NoChildrenForEphemerals,
    NodeExists,
    NotEmpty,
    SessionExpired,
    InvalidAcl,
    AuthFailed,
    NoWatcher,
    QuotaExceeded,
    Throttled,
    /// Synod: a malformed or reserved path (ZooKeeper: BadArguments).
    InvalidPath,
    /// Synod: a configured size or count limit (ZooKeeper: BadArguments).
    TooLarge,
}

impl ErrorCode {
    /// The integer ZooKeeper uses for this code on its wire.
    pub fn zookeeper_code(self) -> i32 {
        match self {
            ErrorCode::Ok => 0,
            ErrorCode::SystemError => -1,
            ErrorCode::RuntimeInconsistency => -2,
            ErrorCode::DataInconsistency => -3,
            ErrorCode::ConnectionLoss => -4,
            ErrorCode::MarshallingError => -5,
            ErrorCode::Unimplemented => -6,
            ErrorCode::OperationTimeout => -7,
            ErrorCode::BadArguments | ErrorCode::InvalidPath | ErrorCode::TooLarge => -8,
            ErrorCode::UnknownSession => -12,
            ErrorCode::ApiError => -100,
            ErrorCode::NoNode => -101,
            ErrorCode::NoAuth => -102,
            ErrorCode::BadVersion => -103,
            ErrorCode::NoChildrenForEphemerals => -108,
            ErrorCode::NodeExists => -110,
            ErrorCode::NotEmpty => -111,
            ErrorCode::SessionExpired => -112,
            ErrorCode::InvalidAcl => -114,
            ErrorCode::AuthFailed => -115,
            ErrorCode::NoWatcher => -121,
            ErrorCode::QuotaExceeded => -125,
            ErrorCode::Throttled => -127,
        }
    }
}

/// Why an operation on the state machine was refused. Every variant leaves
/// the state untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("no node {0}")]
    NoNode(String),
    #[error("node {0} already exists")]
    NodeExists(String),
    #[error("bad version for {path}: expected {expected}, found {actual}")]
    BadVersion {
        path: String,
        expected: i32,
        actual: i32,
    },
    #[error("node {0} has children")]
    NotEmpty(String),
    #[error("ephemeral node {0} cannot have children")]
    NoChildrenForEphemerals(String),
    #[error("not authorized for {0}")]
    NoAuth(String),
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("{what} is {actual}, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        limit: u64,
        actual: u64,
    },
    #[error("session {0:#x} has expired or was closed")]
    SessionExpired(SessionId),
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error("no watcher of that kind on {0}")]
    NoWatcher(String),
    #[error("an earlier operation of the transaction failed")]
    RuntimeInconsistency,
    #[error("unimplemented: {0}")]
    Unimplemented(&'static str),
    /// The server is overloaded; the request may be retried later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A broken invariant inside the server, reported instead of crashing.
    #[error("internal error: {0}")]
    Internal(String),
    /// The request could not be carried through the ensemble (no leader, or
    /// the leader changed while it was in flight). Its outcome is unknown,
    /// as after ZooKeeper's ConnectionLoss: the client checks and retries.
    #[error("connection loss: {0}")]
    ConnectionLoss(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidPath { .. } => ErrorCode::InvalidPath,
            Error::NoNode(_) => ErrorCode::NoNode,
            Error::NodeExists(_) => ErrorCode::NodeExists,
            Error::BadVersion { .. } => ErrorCode::BadVersion,
            Error::NotEmpty(_) => ErrorCode::NotEmpty,
            Error::NoChildrenForEphemerals(_) => ErrorCode::NoChildrenForEphemerals,
            Error::NoAuth(_) => ErrorCode::NoAuth,
            Error::InvalidAcl(_) => ErrorCode::InvalidAcl,
            Error::AuthFailed(_) => ErrorCode::AuthFailed,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::SessionExpired(_) => ErrorCode::SessionExpired,
            Error::BadArguments(_) => ErrorCode::BadArguments,
            Error::NoWatcher(_) => ErrorCode::NoWatcher,
            Error::RuntimeInconsistency => ErrorCode::RuntimeInconsistency,
            Error::Unimplemented(_) => ErrorCode::Unimplemented,
            Error::Internal(_) => ErrorCode::SystemError,
            Error::Throttled(_) => ErrorCode::Throttled,
            Error::ConnectionLoss(_) => ErrorCode::ConnectionLoss,
        }
    }

    /// The path the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::InvalidPath { path, .. } | Error::BadVersion { path, .. } => Some(path),
            Error::NoNode(p)
            | Error::NodeExists(p)
            | Error::NotEmpty(p)
            | Error::NoChildrenForEphemerals(p)
            | Error::NoAuth(p)
            | Error::NoWatcher(p) => Some(p),
            _ => None,
        }
    }
}
