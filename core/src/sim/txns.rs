//! The txns the simulated clients and nodes submit, and the data they
//! write, built here and nowhere else in the simulator, so that a change
//! to a txn's fields touches one file.
//!
//! Client data is a unique number per write (8 bytes, little endian), so
//! that the history check can tell every write apart.

use crate::acl::{Acl, Identity};
use crate::txn::{CloseReason, CreateMode, Txn, WriteOp};
use crate::{Millis, SessionId};

/// Opens a session with `timeout_ms`. Simulated clients never re-attach
/// with a password, so every session gets the same one (a real node mints
/// it from OS randomness, which a seeded run must not read).
pub(super) fn create_session(timeout_ms: Millis) -> Txn {
    Txn::CreateSession {
        timeout_ms,
        password: [0; 16],
    }
}

/// Closes `session`: the client closed it, or the leader expired it.
pub(super) fn close_session(session: SessionId, expired: bool) -> Txn {
    let reason = if expired {
        CloseReason::Expired
    } else {
        CloseReason::ClientClosed
    };
    Txn::CloseSession { session, reason }
}

/// A client's write under `session`, as anyone (the simulator sets no
/// ACLs).
pub(super) fn write(session: SessionId, op: WriteOp) -> Txn {
    Txn::Write {
        session,
        identity: Identity::anonymous(),
        op,
    }
}

/// What the tester proposes to see the cluster commit.
pub(super) fn probe() -> Txn {
    Txn::Noop
}

/// `setData(path, value, version)`; version -1 sets whatever the version.
pub(super) fn set_data(path: &str, value: u64, version: i32) -> WriteOp {
    WriteOp::SetData {
        path: path.to_owned(),
        data: Some(data(value)),
        version,
    }
}

/// `create(path, value, mode)`, open to everyone.
pub(super) fn create(path: &str, value: u64, mode: CreateMode) -> WriteOp {
    WriteOp::Create {
        path: path.to_owned(),
        data: Some(data(value)),
        acl: Acl::open(),
        mode,
        ttl_ms: 0,
    }
}

/// `createTTL(path, value)`: a persistent znode reaped once it has been
/// childless and unmodified for `ttl_ms`.
pub(super) fn create_ttl(path: &str, value: u64, ttl_ms: Millis) -> WriteOp {
    WriteOp::Create {
        path: path.to_owned(),
        data: Some(data(value)),
        acl: Acl::open(),
        mode: CreateMode::PersistentWithTtl,
        ttl_ms,
    }
}

/// The leader's removal of an empty container or an expired TTL node.
pub(super) fn reap(path: String) -> Txn {
    Txn::Reap { path }
}

/// `delete(path, version)`; version -1 deletes whatever the version.
pub(super) fn delete(path: &str, version: i32) -> WriteOp {
    WriteOp::Delete {
        path: path.to_owned(),
        version,
    }
}

/// A value as znode data.
pub(super) fn data(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The value znode data holds (0 if it is not one of the simulator's).
pub(super) fn value_of(data: &[u8]) -> u64 {
    <[u8; 8]>::try_from(data).map_or(0, u64::from_le_bytes)
}
