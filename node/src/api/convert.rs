//! Translation between the protobuf messages of the client API and the
//! core's types, including the error model: a core error becomes a gRPC
//! status whose details carry the ZooKeeper-equivalent code.

use prost::Message as _;
use synod_core::acl::{Acl, Id};
use synod_core::tree::Stat;
use synod_core::txn::{CreateMode, MultiOutcome, OpOutcome, WriteOp};
use synod_core::watch::{EventType, WatchEvent, WatcherType};
use synod_core::{Error, ErrorCode};
use synod_proto::v1 as pb;
use tonic::{Code, Status};

use crate::driver::Header;

pub fn header(h: Header) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        zxid: h.zxid,
        watch_seq: h.watch_seq,
    })
}

pub fn stat(s: Stat) -> pb::Stat {
    pb::Stat {
        czxid: s.czxid,
        mzxid: s.mzxid,
        ctime: s.ctime,
        mtime: s.mtime,
        version: s.version,
        cversion: s.cversion,
        aversion: s.aversion,
        ephemeral_owner: s.ephemeral_owner,
        data_length: s.data_length,
        num_children: s.num_children,
        pzxid: s.pzxid,
    }
}

pub fn acl_to_pb(acl: &[Acl]) -> Vec<pb::Acl> {
    acl.iter()
        .map(|a| pb::Acl {
            perms: a.perms,
            scheme: a.id.scheme.clone(),
            id: a.id.id.clone(),
        })
        .collect()
}

/// An empty list from a gRPC client means the open ACL (world:anyone, all).
pub fn acl_from_pb(acl: Vec<pb::Acl>) -> Vec<Acl> {
    if acl.is_empty() {
        return Acl::open();
    }
    acl.into_iter()
        .map(|a| Acl {
            perms: a.perms,
            id: Id::new(a.scheme, a.id),
        })
        .collect()
}

pub fn create_mode(mode: i32) -> Result<CreateMode, Error> {
    Ok(match pb::CreateMode::try_from(mode) {
        Ok(pb::CreateMode::Persistent) => CreateMode::Persistent,
        Ok(pb::CreateMode::Ephemeral) => CreateMode::Ephemeral,
        Ok(pb::CreateMode::PersistentSequential) => CreateMode::PersistentSequential,
        Ok(pb::CreateMode::EphemeralSequential) => CreateMode::EphemeralSequential,
        Ok(pb::CreateMode::Container) => CreateMode::Container,
        Ok(pb::CreateMode::PersistentWithTtl) => CreateMode::PersistentWithTtl,
        Ok(pb::CreateMode::PersistentSequentialWithTtl) => CreateMode::PersistentSequentialWithTtl,
        Err(_) => return Err(Error::BadArguments(format!("unknown create mode {mode}"))),
    })
}

pub fn watcher_type(value: i32) -> Result<WatcherType, Error> {
    Ok(match pb::WatcherType::try_from(value) {
        Ok(pb::WatcherType::Children) => WatcherType::Children,
        Ok(pb::WatcherType::Data) => WatcherType::Data,
        Ok(pb::WatcherType::Any) => WatcherType::Any,
        Ok(pb::WatcherType::Persistent) => WatcherType::Persistent,
        Ok(pb::WatcherType::PersistentRecursive) => WatcherType::PersistentRecursive,
        Ok(pb::WatcherType::Unspecified) | Err(_) => {
            return Err(Error::BadArguments(format!("unknown watcher type {value}")));
        }
    })
}

pub fn create_op(r: pb::CreateRequest) -> Result<WriteOp, Error> {
    Ok(WriteOp::Create {
        mode: create_mode(r.mode)?,
        path: r.path,
        data: Some(r.data),
        acl: acl_from_pb(r.acl),
        ttl_ms: r.ttl_ms,
    })
}

pub fn multi_ops(ops: Vec<pb::Op>) -> Result<Vec<WriteOp>, Error> {
    ops.into_iter()
        .map(|op| match op.op {
            Some(pb::op::Op::Create(r)) => create_op(r),
            Some(pb::op::Op::Delete(r)) => Ok(WriteOp::Delete {
                path: r.path,
                version: r.version,
            }),
            Some(pb::op::Op::SetData(r)) => Ok(WriteOp::SetData {
                path: r.path,
                data: Some(r.data),
                version: r.version,
            }),
            Some(pb::op::Op::Check(r)) => Ok(WriteOp::Check {
                path: r.path,
                version: r.version,
            }),
            None => Err(Error::BadArguments("multi op without an operation".into())),
        })
        .collect()
}

fn op_result(outcome: OpOutcome) -> pb::OpResult {
    let mut result = pb::OpResult::default();
    match outcome {
        OpOutcome::Created { path, stat: s } => {
            result.path = path;
            result.stat = Some(stat(s));
        }
        OpOutcome::DataSet { stat: s } | OpOutcome::AclSet { stat: s } => {
            result.stat = Some(stat(s))
        }
        OpOutcome::Deleted | OpOutcome::Checked | OpOutcome::Multi(_) => {}
    }
    result
}

/// Per-op results of a multi, in ZooKeeper's style for a failed one.
pub fn multi_results(outcome: MultiOutcome) -> (bool, Vec<pb::OpResult>) {
    match outcome {
        MultiOutcome::Committed(outcomes) => (true, outcomes.into_iter().map(op_result).collect()),
        MultiOutcome::Aborted {
            failed_index,
            error,
            len,
        } => {
            let results = (0..len)
                .map(|i| {
                    let (code, rolled_back) = if i < failed_index {
                        (ErrorCode::Ok, true)
                    } else if i == failed_index {
                        (error.code(), false)
                    } else {
                        (ErrorCode::RuntimeInconsistency, false)
                    };
                    pb::OpResult {
                        error: error_code(code) as i32,
                        rolled_back,
                        ..Default::default()
                    }
                })
                .collect();
            (false, results)
        }
    }
}

pub fn error_code(code: ErrorCode) -> pb::ErrorCode {
    use pb::ErrorCode as P;
    match code {
        ErrorCode::Ok => P::Ok,
        ErrorCode::SystemError => P::SystemError,
        ErrorCode::RuntimeInconsistency => P::RuntimeInconsistency,
        ErrorCode::DataInconsistency => P::DataInconsistency,
        ErrorCode::ConnectionLoss => P::ConnectionLoss,
        ErrorCode::MarshallingError => P::MarshallingError,
        ErrorCode::Unimplemented => P::Unimplemented,
        ErrorCode::OperationTimeout => P::OperationTimeout,
        ErrorCode::BadArguments => P::BadArguments,
        ErrorCode::UnknownSession => P::UnknownSession,
        ErrorCode::ApiError => P::ApiError,
        ErrorCode::NoNode => P::NoNode,
        ErrorCode::NoAuth => P::NoAuth,
        ErrorCode::BadVersion => P::BadVersion,
        ErrorCode::NoChildrenForEphemerals => P::NoChildrenForEphemerals,
        ErrorCode::NodeExists => P::NodeExists,
        ErrorCode::NotEmpty => P::NotEmpty,
        ErrorCode::SessionExpired => P::SessionExpired,
        ErrorCode::InvalidAcl => P::InvalidAcl,
        ErrorCode::AuthFailed => P::AuthFailed,
        ErrorCode::NoWatcher => P::NoWatcher,
        ErrorCode::QuotaExceeded => P::QuotaExceeded,
        ErrorCode::Throttled => P::Throttled,
        ErrorCode::InvalidPath => P::InvalidPath,
        ErrorCode::TooLarge => P::TooLarge,
    }
}

fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::Ok => Code::Ok,
        ErrorCode::NoNode | ErrorCode::NoWatcher => Code::NotFound,
        ErrorCode::NodeExists => Code::AlreadyExists,
        ErrorCode::BadVersion | ErrorCode::NotEmpty | ErrorCode::NoChildrenForEphemerals => {
            Code::FailedPrecondition
        }
        ErrorCode::NoAuth => Code::PermissionDenied,
        ErrorCode::AuthFailed | ErrorCode::SessionExpired | ErrorCode::UnknownSession => {
            Code::Unauthenticated
        }
        ErrorCode::BadArguments
        | ErrorCode::InvalidPath
        | ErrorCode::InvalidAcl
        | ErrorCode::MarshallingError => Code::InvalidArgument,
        ErrorCode::TooLarge | ErrorCode::QuotaExceeded | ErrorCode::Throttled => {
            Code::ResourceExhausted
        }
        ErrorCode::RuntimeInconsistency => Code::Aborted,
        ErrorCode::Unimplemented => Code::Unimplemented,
        ErrorCode::OperationTimeout => Code::DeadlineExceeded,
        ErrorCode::ConnectionLoss => Code::Unavailable,
        ErrorCode::SystemError | ErrorCode::DataInconsistency | ErrorCode::ApiError => {
            Code::Internal
        }
    }
}

/// A core error as a gRPC status carrying an `ErrorDetail`.
pub fn status(error: &Error) -> Status {
    let code = error.code();
    let detail = pb::ErrorDetail {
        code: error_code(code) as i32,
        path: error.path().unwrap_or_default().to_owned(),
        message: error.to_string(),
    };
    Status::with_details(
        grpc_code(code),
        error.to_string(),
        detail.encode_to_vec().into(),
    )
}

pub fn event_type(e: EventType) -> pb::EventType {
    match e {
        EventType::None => pb::EventType::None,
        EventType::NodeCreated => pb::EventType::NodeCreated,
        EventType::NodeDeleted => pb::EventType::NodeDeleted,
        EventType::NodeDataChanged => pb::EventType::NodeDataChanged,
        EventType::NodeChildrenChanged => pb::EventType::NodeChildrenChanged,
        EventType::DataWatchRemoved => pb::EventType::DataWatchRemoved,
        EventType::ChildWatchRemoved => pb::EventType::ChildWatchRemoved,
        EventType::PersistentWatchRemoved => pb::EventType::PersistentWatchRemoved,
    }
}

pub fn watch_event(e: &WatchEvent, seq: u64) -> pb::WatchEvent {
    pb::WatchEvent {
        r#type: event_type(e.event) as i32,
        path: e.path.clone(),
        zxid: e.zxid,
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_the_zookeeper_code_and_path() {
        let s = status(&Error::NoNode("/a".into()));
        assert_eq!(s.code(), Code::NotFound);
        let detail = pb::ErrorDetail::decode(s.details()).unwrap();
        assert_eq!(detail.code, pb::ErrorCode::NoNode as i32);
        assert_eq!(
            pb::ErrorCode::NoNode as i32,
            -ErrorCode::NoNode.zookeeper_code()
        );
        assert_eq!(detail.path, "/a");
    }

    #[test]
    fn proto_codes_are_zookeeper_codes() {
        for code in [
            ErrorCode::NoNode,
            ErrorCode::NodeExists,
            ErrorCode::BadVersion,
            ErrorCode::NotEmpty,
            ErrorCode::NoAuth,
            ErrorCode::SessionExpired,
            ErrorCode::InvalidAcl,
            ErrorCode::NoChildrenForEphemerals,
            ErrorCode::RuntimeInconsistency,
        ] {
            assert_eq!(error_code(code) as i32, -code.zookeeper_code(), "{code:?}");
        }
    }

    #[test]
    fn failed_multi_reports_like_zookeeper() {
        let (committed, results) = multi_results(MultiOutcome::Aborted {
            failed_index: 1,
            error: Error::NoNode("/x".into()),
            len: 3,
        });
        assert!(!committed);
        let codes: Vec<_> = results.iter().map(|r| (r.error, r.rolled_back)).collect();
        assert_eq!(
            codes,
            [
                (pb::ErrorCode::Ok as i32, true),
                (pb::ErrorCode::NoNode as i32, false),
                (pb::ErrorCode::RuntimeInconsistency as i32, false)
            ]
        );
    }

    #[test]
    fn empty_acl_means_open() {
        assert_eq!(acl_from_pb(vec![]), Acl::open());
    }
}
