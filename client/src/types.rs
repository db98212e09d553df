//! The client's value types: Stat, ACLs, create options, multi ops and their
//! results, watch events and session states, with their conversions to and
//! from the wire messages of `synod-proto`.

use std::time::Duration;

use serde::Serialize;
use synod_proto::v1 as pb;

use crate::error::{Error, Result};

pub use pb::{AddWatchMode, CreateMode, ErrorCode, EventType, WatcherType};

/// ZooKeeper's Stat of a znode, field for field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Stat {
    /// Transaction that created the node.
    pub czxid: i64,
    /// Transaction that last changed the data.
    pub mzxid: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub ctime: i64,
    /// Last data change, milliseconds since the Unix epoch.
    pub mtime: i64,
    /// Data version.
    pub version: i32,
    /// Child list version.
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Owning session of an ephemeral node, 0 otherwise.
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    /// Transaction that last changed the child list.
    pub pzxid: i64,
}

impl From<pb::Stat> for Stat {
    fn from(s: pb::Stat) -> Stat {
        Stat {
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
}

impl From<Stat> for pb::Stat {
    fn from(s: Stat) -> pb::Stat {
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
}

pub(crate) fn stat_of(stat: Option<pb::Stat>) -> Stat {
    stat.map(Stat::from).unwrap_or_default()
}

/// Permission bits, as in ZooKeeper.
pub mod perms {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const CREATE: u32 = 4;
    pub const DELETE: u32 = 8;
    pub const ADMIN: u32 = 16;
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// One ACL entry: who (`scheme:id`) may do what (`perms`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Acl {
    pub perms: u32,
    /// "world", "auth", "digest", "ip", "x509" or "super".
    pub scheme: String,
    pub id: String,
}

impl Acl {
    pub fn new(perms: u32, scheme: impl Into<String>, id: impl Into<String>) -> Acl {
        Acl {
            perms,
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    /// world:anyone with every permission (ZooKeeper's OPEN_ACL_UNSAFE).
    pub fn anyone_all() -> Acl {
        Acl::new(perms::ALL, "world", "anyone")
    }

    /// world:anyone may read (ZooKeeper's READ_ACL_UNSAFE).
    pub fn anyone_read() -> Acl {
        Acl::new(perms::READ, "world", "anyone")
    }

    /// Every identity the session authenticated as (ZooKeeper's
    /// CREATOR_ALL_ACL).
    pub fn creator_all() -> Acl {
        Acl::new(perms::ALL, "auth", "")
    }
}

impl From<pb::Acl> for Acl {
    fn from(a: pb::Acl) -> Acl {
        Acl {
            perms: a.perms,
            scheme: a.scheme,
            id: a.id,
        }
    }
}

impl From<&Acl> for pb::Acl {
    fn from(a: &Acl) -> pb::Acl {
        pb::Acl {
            perms: a.perms,
            scheme: a.scheme.clone(),
            id: a.id.clone(),
        }
    }
}

/// How to create a node. The default is a persistent node with an empty
/// ACL list, which the server treats as world:anyone with all permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    pub mode: CreateMode,
    pub acl: Vec<Acl>,
    /// Only for the `*WithTtl` modes: delete the node once it has been
    /// childless and unmodified this long.
    pub ttl: Option<Duration>,
}

impl CreateOptions {
    pub fn new(mode: CreateMode) -> CreateOptions {
        CreateOptions {
            mode,
            ..CreateOptions::default()
        }
    }

    pub fn persistent() -> CreateOptions {
        CreateOptions::new(CreateMode::Persistent)
    }

    pub fn ephemeral() -> CreateOptions {
        CreateOptions::new(CreateMode::Ephemeral)
    }

    pub fn sequential() -> CreateOptions {
        CreateOptions::new(CreateMode::PersistentSequential)
    }

    pub fn ephemeral_sequential() -> CreateOptions {
        CreateOptions::new(CreateMode::EphemeralSequential)
    }

    pub fn container() -> CreateOptions {
        CreateOptions::new(CreateMode::Container)
    }

    /// A TTL node; `sequential` picks the sequential variant.
    pub fn with_ttl(ttl: Duration, sequential: bool) -> CreateOptions {
        let mode = if sequential {
            CreateMode::PersistentSequentialWithTtl
        } else {
            CreateMode::PersistentWithTtl
        };
        CreateOptions {
            mode,
            acl: Vec::new(),
            ttl: Some(ttl),
        }
    }

    #[must_use]
    pub fn acl(mut self, acl: Vec<Acl>) -> CreateOptions {
        self.acl = acl;
        self
    }

    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> CreateOptions {
        self.ttl = Some(ttl);
        self
    }

    /// The wire request; refuses a TTL mode without a TTL and a TTL on a
    /// mode that has none, since the server would ignore or reject either.
    pub(crate) fn to_request(
        &self,
        session_id: i64,
        path: &str,
        data: &[u8],
    ) -> Result<pb::CreateRequest> {
        let ttl_mode = matches!(
            self.mode,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        );
        let ttl_ms = match (ttl_mode, self.ttl) {
            (true, Some(ttl)) if !ttl.is_zero() => {
                i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
            }
            (true, _) => {
                return Err(Error::InvalidArgument {
                    message: format!("{} needs a TTL above zero", self.mode.as_str_name()),
                });
            }
            (false, Some(_)) => {
                return Err(Error::InvalidArgument {
                    message: format!(
                        "a TTL needs a *_WITH_TTL mode, not {}",
                        self.mode.as_str_name()
                    ),
                });
            }
            (false, None) => 0,
        };
        Ok(pb::CreateRequest {
            session_id,
            path: path.to_owned(),
            data: data.to_vec(),
            acl: self.acl.iter().map(pb::Acl::from).collect(),
            mode: self.mode as i32,
            ttl_ms,
        })
    }
}

/// `None` (any version) is -1 on the wire.
pub(crate) fn version_or_any(version: Option<i32>) -> i32 {
    version.unwrap_or(-1)
}

/// One operation of an atomic [`crate::Client::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        options: CreateOptions,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    Check {
        path: String,
        version: Option<i32>,
    },
}

impl Op {
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, options: CreateOptions) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            options,
        }
    }

    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }

    pub fn set_data(path: impl Into<String>, data: impl Into<Vec<u8>>, version: Option<i32>) -> Op {
        Op::SetData {
            path: path.into(),
            data: data.into(),
            version,
        }
    }

    pub fn check(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Delete { path, .. }
            | Op::SetData { path, .. }
            | Op::Check { path, .. } => path,
        }
    }

    pub(crate) fn to_proto(&self, session_id: i64) -> Result<pb::Op> {
        use pb::op::Op as W;
        let op = match self {
            Op::Create {
                path,
                data,
                options,
            } => W::Create(options.to_request(session_id, path, data)?),
            Op::Delete { path, version } => W::Delete(pb::DeleteRequest {
                session_id,
                path: path.clone(),
                version: version_or_any(*version),
            }),
            Op::SetData {
                path,
                data,
                version,
            } => W::SetData(pb::SetDataRequest {
                session_id,
                path: path.clone(),
                data: data.clone(),
                version: version_or_any(*version),
            }),
            Op::Check { path, version } => W::Check(pb::CheckRequest {
                session_id,
                path: path.clone(),
                version: version_or_any(*version),
            }),
        };
        Ok(pb::Op { op: Some(op) })
    }
}

/// What happened to one op of a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    /// `Ok` when applied (or applied and then rolled back); the failing op
    /// carries its error; ops after it `RuntimeInconsistency`.
    pub error: ErrorCode,
    /// The op had succeeded but the multi failed as a whole.
    pub rolled_back: bool,
    /// The created path for creates (with its sequence suffix), else the
    /// op's path.
    pub path: String,
    /// The node's Stat after a create or set_data.
    pub stat: Option<Stat>,
}

impl OpResult {
    /// This op's outcome as a typed result.
    pub fn result(&self) -> Result<()> {
        if self.error == ErrorCode::Ok {
            Ok(())
        } else {
            Err(Error::from_code(
                self.error,
                self.path.clone(),
                String::new(),
            ))
        }
    }
}

/// The outcome of a multi: all ops applied (`committed`) or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiResult {
    pub committed: bool,
    pub results: Vec<OpResult>,
}

impl MultiResult {
    /// The index and error of the op that made the multi fail.
    pub fn failure(&self) -> Option<(usize, Error)> {
        if self.committed {
            return None;
        }
        self.results.iter().enumerate().find_map(|(i, r)| {
            let failing = r.error != ErrorCode::Ok && r.error != ErrorCode::RuntimeInconsistency;
            failing.then(|| (i, Error::from_code(r.error, r.path.clone(), String::new())))
        })
    }

    /// The per-op results when committed, else the failing op's error.
    pub fn into_result(self) -> Result<Vec<OpResult>> {
        if self.committed {
            return Ok(self.results);
        }
        Err(self.failure().map(|(_, e)| e).unwrap_or(Error::Server {
            code: ErrorCode::RuntimeInconsistency,
            path: String::new(),
            message: "multi failed without naming the failing op".to_owned(),
        }))
    }
}

pub(crate) fn op_result(r: pb::OpResult, op: &Op) -> OpResult {
    let error = ErrorCode::try_from(r.error).unwrap_or(ErrorCode::SystemError);
    OpResult {
        error,
        rolled_back: r.rolled_back,
        path: if r.path.is_empty() {
            op.path().to_owned()
        } else {
            r.path
        },
        stat: r.stat.map(Stat::from),
    }
}

/// One read of a [`crate::Client::multi_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetData { path: String },
    GetChildren { path: String },
}

impl ReadOp {
    pub fn get_data(path: impl Into<String>) -> ReadOp {
        ReadOp::GetData { path: path.into() }
    }

    pub fn get_children(path: impl Into<String>) -> ReadOp {
        ReadOp::GetChildren { path: path.into() }
    }

    pub fn path(&self) -> &str {
        match self {
            ReadOp::GetData { path } | ReadOp::GetChildren { path } => path,
        }
    }

    pub(crate) fn to_proto(&self, session_id: i64) -> pb::ReadOp {
        use pb::read_op::Op as W;
        let op = match self {
            ReadOp::GetData { path } => W::GetData(pb::GetDataRequest {
                session_id,
                path: path.clone(),
                watch: false,
                linearizable: false,
            }),
            ReadOp::GetChildren { path } => W::GetChildren(pb::GetChildrenRequest {
                session_id,
                path: path.clone(),
                watch: false,
                linearizable: false,
            }),
        };
        pb::ReadOp { op: Some(op) }
    }
}

/// The answer to one [`ReadOp`]; reads fail one by one, not as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    Data { data: Vec<u8>, stat: Stat },
    Children { children: Vec<String>, stat: Stat },
    Error(Error),
}

pub(crate) fn read_result(r: pb::ReadResult, op: &ReadOp) -> ReadResult {
    let code = ErrorCode::try_from(r.error).unwrap_or(ErrorCode::SystemError);
    if code != ErrorCode::Ok {
        return ReadResult::Error(Error::from_code(code, op.path(), String::new()));
    }
    match op {
        ReadOp::GetData { .. } => ReadResult::Data {
            data: r.data,
            stat: stat_of(r.stat),
        },
        ReadOp::GetChildren { .. } => ReadResult::Children {
            children: r.children,
            stat: stat_of(r.stat),
        },
    }
}

/// A change the session was watching for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub path: String,
    /// The transaction that caused the event (0 when unknown).
    pub zxid: i64,
    /// The server's number for this event, 1, 2, 3, ... per session. 0 for
    /// an event the client made up itself: after reconnecting it re-checks
    /// one-shot watches and reports a change it missed in between.
    pub seq: u64,
}

impl From<pb::WatchEvent> for WatchEvent {
    fn from(e: pb::WatchEvent) -> WatchEvent {
        WatchEvent {
            event_type: EventType::try_from(e.r#type).unwrap_or(EventType::None),
            path: e.path,
            zxid: e.zxid,
            seq: e.seq,
        }
    }
}

/// Where the session stands, as seen by this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Connected to a server that acknowledged the session.
    Connected,
    /// Looking for a server; the session may still be alive.
    Disconnected,
    /// The ensemble ended the session: ephemerals and watches are gone.
    Expired,
    /// Closed by this client.
    Closed,
}

impl SessionState {
    /// Expired and Closed never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionState::Expired | SessionState::Closed)
    }
}

/// The readable name of an event type, "NodeDataChanged" rather than
/// "EVENT_TYPE_NODE_DATA_CHANGED", as ZooKeeper tools print it.
pub fn event_type_name(t: EventType) -> &'static str {
    match t {
        EventType::None => "None",
        EventType::NodeCreated => "NodeCreated",
        EventType::NodeDeleted => "NodeDeleted",
        EventType::NodeDataChanged => "NodeDataChanged",
        EventType::NodeChildrenChanged => "NodeChildrenChanged",
        EventType::DataWatchRemoved => "DataWatchRemoved",
        EventType::ChildWatchRemoved => "ChildWatchRemoved",
        EventType::PersistentWatchRemoved => "PersistentWatchRemoved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_create_is_persistent_with_empty_acl() {
        let req = CreateOptions::default()
            .to_request(7, "/a", b"x")
            .expect("valid options");
        assert_eq!(req.mode, CreateMode::Persistent as i32);
        assert!(req.acl.is_empty(), "empty means world:anyone on the server");
        assert_eq!(req.ttl_ms, 0);
        assert_eq!(req.session_id, 7);
    }

    #[test]
    fn ttl_needs_ttl_mode_and_back() {
        let ok = CreateOptions::with_ttl(Duration::from_millis(1500), true)
            .to_request(1, "/t", b"")
            .expect("valid ttl");
        assert_eq!(ok.ttl_ms, 1500);
        assert_eq!(ok.mode, CreateMode::PersistentSequentialWithTtl as i32);
        assert!(
            CreateOptions::new(CreateMode::PersistentWithTtl)
                .to_request(1, "/t", b"")
                .is_err()
        );
        assert!(
            CreateOptions::ephemeral()
                .ttl(Duration::from_secs(1))
                .to_request(1, "/t", b"")
                .is_err()
        );
    }

    #[test]
    fn multi_failure_names_the_failing_op() {
        let ops = [
            Op::create("/a", "x", CreateOptions::default()),
            Op::delete("/b", None),
            Op::check("/c", Some(1)),
        ];
        let wire = [
            pb::OpResult {
                error: ErrorCode::Ok as i32,
                rolled_back: true,
                path: "/a".into(),
                stat: None,
            },
            pb::OpResult {
                error: ErrorCode::NoNode as i32,
                rolled_back: false,
                path: String::new(),
                stat: None,
            },
            pb::OpResult {
                error: ErrorCode::RuntimeInconsistency as i32,
                rolled_back: false,
                path: String::new(),
                stat: None,
            },
        ];
        let results: Vec<OpResult> = wire
            .into_iter()
            .zip(ops.iter())
            .map(|(r, op)| op_result(r, op))
            .collect();
        let multi = MultiResult {
            committed: false,
            results,
        };
        assert_eq!(
            multi.failure(),
            Some((1, Error::NoNode { path: "/b".into() }))
        );
        assert_eq!(
            multi.into_result().err(),
            Some(Error::NoNode { path: "/b".into() })
        );
    }

    #[test]
    fn read_results_follow_the_op_kind() {
        let r = read_result(
            pb::ReadResult {
                error: 0,
                data: b"d".to_vec(),
                children: vec![],
                stat: None,
            },
            &ReadOp::get_data("/a"),
        );
        assert!(matches!(r, ReadResult::Data { .. }));
        let r = read_result(
            pb::ReadResult {
                error: ErrorCode::NoNode as i32,
                ..pb::ReadResult::default()
            },
            &ReadOp::get_children("/z"),
        );
        assert_eq!(r, ReadResult::Error(Error::NoNode { path: "/z".into() }));
    }

    #[test]
    fn unknown_event_types_become_none() {
        let e = WatchEvent::from(pb::WatchEvent {
            r#type: 99,
            path: "/a".into(),
            zxid: 3,
            seq: 1,
        });
        assert_eq!(e.event_type, EventType::None);
    }
}
