//! The ZooKeeper protocol's messages (`zookeeper.jute`) as Synod reads and
//! writes them: the session handshake, request bodies by opcode, and the
//! reply bodies, including multi's per-op framing. Pure: bytes in, values
//! out, and back; the connection and the node are elsewhere.

use synod_core::acl::{Acl, Id};
use synod_core::tree::{CONTAINER_OWNER, Stat};
use synod_core::txn::CreateMode;
use synod_core::watch::{WatchKind, WatcherType};

use super::jute::{JuteError, Reader, Writer};

/// Opcodes (ZooDefs.OpCode).
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
    /// The type of a multi result entry that reports an error.
    pub const ERROR: i32 = -1;
}

/// Reserved xids.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// ZooKeeper error codes the front end itself sends (the others come from
/// `synod_core::ErrorCode::zookeeper_code`).
pub mod code {
    pub const OK: i32 = 0;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const AUTH_FAILED: i32 = -115;
    pub const SESSION_MOVED: i32 = -118;
    pub const RECONFIG_DISABLED: i32 = -123;
    /// A reconfig that could not be committed.
    pub const NEW_CONFIG_NO_QUORUM: i32 = -13;
    /// A reconfig refused because another one is under way.
    pub const RECONFIG_IN_PROGRESS: i32 = -14;
}

/// The state a watch event reports: the client is connected.
pub const SYNC_CONNECTED: i32 = 3;

/// Bytes of a session password.
pub const PASSWORD_LEN: usize = 16;

/// The first frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// Clients before 3.4 do not send it.
    pub read_only: bool,
}

impl ConnectRequest {
    pub fn decode(frame: &[u8]) -> Result<Self, JuteError> {
        let mut r = Reader::new(frame);
        let protocol_version = r.int("protocolVersion")?;
        let last_zxid_seen = r.long("lastZxidSeen")?;
        let timeout_ms = r.int("timeOut")?;
        let session_id = r.long("sessionId")?;
        let password = r.buffer("passwd")?.unwrap_or_default().to_vec();
        let read_only = if r.is_empty() {
            false
        } else {
            r.boolean("readOnly")?
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            password,
            read_only,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(self.protocol_version);
        w.long(self.last_zxid_seen);
        w.int(self.timeout_ms);
        w.long(self.session_id);
        w.buffer(&self.password);
        w.boolean(self.read_only);
        w.buf
    }
}

/// The answer to the handshake: the session, or `timeout_ms` 0 and
/// session 0 when the session it asked for has expired.
pub fn connect_response(timeout_ms: i32, session_id: i64, password: &[u8]) -> Vec<u8> {
    let mut w = Writer::frame();
    w.int(0);
    w.int(timeout_ms);
    w.long(session_id);
    w.buffer(password);
    w.boolean(false);
    w.into_frame()
}

/// A create of any of the four create opcodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub path: String,
    /// `None`: null data, which reads back as null.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub mode: CreateMode,
    pub ttl_ms: i64,
    /// create (1) answers only the path; the others add the Stat.
    pub with_stat: bool,
}

/// One operation of a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    Create(Create),
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
}

/// One read of a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetData { path: String },
    GetChildren { path: String },
}

/// The watches a reconnecting client asks to have back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(Create),
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<MultiOp>),
    MultiRead(Vec<ReadOp>),
    /// `joiningServers`, `leavingServers`, `newMembers` (each may be
    /// null) and `curConfigId` (-1: any).
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        config_id: i64,
    },
    CheckWatches {
        path: String,
        watcher_type: WatcherType,
    },
    RemoveWatches {
        path: String,
        watcher_type: WatcherType,
    },
    Auth {
        scheme: String,
        auth: Vec<u8>,
    },
    SetWatches(SetWatches),
    Sasl,
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        kind: WatchKind,
    },
    WhoAmI,
    CloseSession,
    /// An opcode ZooKeeper clients do not send, or one Synod does not know.
    Unknown(i32),
}

fn acl_list(r: &mut Reader<'_>) -> Result<Vec<Acl>, JuteError> {
    // perms (4) + two strings (4 + 4) at the least.
    let n = r.vector_len("acl", 12)?;
    (0..n)
        .map(|_| {
            let perms = r.int("acl perms")?;
            // kazoo sends the `auth` scheme's id as null; ZooKeeper reads
            // a null string as empty.
            let scheme = r.ustring_opt("acl scheme")?.unwrap_or_default();
            let id = r.ustring_opt("acl id")?.unwrap_or_default();
            Ok(Acl {
                // ZooKeeper keeps the bits as given; only known ones mean
                // anything.
                perms: perms as u32,
                id: Id::new(scheme, id),
            })
        })
        .collect()
}

fn create_mode(flags: i32) -> Result<CreateMode, JuteError> {
    Ok(match flags {
        0 => CreateMode::Persistent,
        1 => CreateMode::Ephemeral,
        2 => CreateMode::PersistentSequential,
        3 => CreateMode::EphemeralSequential,
        4 => CreateMode::Container,
        5 => CreateMode::PersistentWithTtl,
        6 => CreateMode::PersistentSequentialWithTtl,
        value => {
            return Err(JuteError::Unknown {
                what: "create mode",
                value,
            });
        }
    })
}

fn create(r: &mut Reader<'_>, opcode: i32) -> Result<Create, JuteError> {
    let path = r.ustring("path")?;
    let data = r.buffer("data")?.map(<[u8]>::to_vec);
    let acl = acl_list(r)?;
    let mode = create_mode(r.int("flags")?)?;
    let ttl_ms = if opcode == op::CREATE_TTL {
        r.long("ttl")?
    } else {
        0
    };
    Ok(Create {
        path,
        data,
        acl,
        mode,
        ttl_ms,
        with_stat: opcode != op::CREATE,
    })
}

fn watcher_type(value: i32) -> Result<WatcherType, JuteError> {
    Ok(match value {
        1 => WatcherType::Children,
        2 => WatcherType::Data,
        3 => WatcherType::Any,
        4 => WatcherType::Persistent,
        5 => WatcherType::PersistentRecursive,
        value => {
            return Err(JuteError::Unknown {
                what: "watcher type",
                value,
            });
        }
    })
}

/// Reads `MultiHeader`-framed entries until the terminating one.
fn multi_entries<T>(
    r: &mut Reader<'_>,
    mut entry: impl FnMut(i32, &mut Reader<'_>) -> Result<T, JuteError>,
) -> Result<Vec<T>, JuteError> {
    let mut out = Vec::new();
    loop {
        let kind = r.int("multi op type")?;
        let done = r.boolean("multi done")?;
        let _err = r.int("multi err")?;
        if done {
            return Ok(out);
        }
        out.push(entry(kind, r)?);
    }
}

impl Request {
    /// Decodes the body of a request of type `opcode`. Bytes after the body
    /// are ignored, as ZooKeeper ignores them.
    pub fn decode(opcode: i32, body: &[u8]) -> Result<Request, JuteError> {
        let mut r = Reader::new(body);
        let r = &mut r;
        Ok(match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                Request::Create(create(r, opcode)?)
            }
            op::DELETE => Request::Delete {
                path: r.ustring("path")?,
                version: r.int("version")?,
            },
            op::EXISTS => Request::Exists {
                path: r.ustring("path")?,
                watch: r.boolean("watch")?,
            },
            op::GET_DATA => Request::GetData {
                path: r.ustring("path")?,
                watch: r.boolean("watch")?,
            },
            op::SET_DATA => Request::SetData {
                path: r.ustring("path")?,
                data: r.buffer("data")?.map(<[u8]>::to_vec),
                version: r.int("version")?,
            },
            op::GET_ACL => Request::GetAcl {
                path: r.ustring("path")?,
            },
            op::SET_ACL => Request::SetAcl {
                path: r.ustring("path")?,
                acl: acl_list(r)?,
                version: r.int("version")?,
            },
            op::GET_CHILDREN | op::GET_CHILDREN2 => Request::GetChildren {
                path: r.ustring("path")?,
                watch: r.boolean("watch")?,
                with_stat: opcode == op::GET_CHILDREN2,
            },
            op::SYNC => Request::Sync {
                path: r.ustring("path")?,
            },
            op::PING => Request::Ping,
            op::CHECK => Request::Check {
                path: r.ustring("path")?,
                version: r.int("version")?,
            },
            op::MULTI => Request::Multi(multi_entries(r, |kind, r| {
                Ok(match kind {
                    op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                        MultiOp::Create(create(r, kind)?)
                    }
                    op::DELETE => MultiOp::Delete {
                        path: r.ustring("path")?,
                        version: r.int("version")?,
                    },
                    op::SET_DATA => MultiOp::SetData {
                        path: r.ustring("path")?,
                        data: r.buffer("data")?.map(<[u8]>::to_vec),
                        version: r.int("version")?,
                    },
                    op::CHECK => MultiOp::Check {
                        path: r.ustring("path")?,
                        version: r.int("version")?,
                    },
                    value => {
                        return Err(JuteError::Unknown {
                            what: "multi op",
                            value,
                        });
                    }
                })
            })?),
            op::MULTI_READ => Request::MultiRead(multi_entries(r, |kind, r| {
                let path = r.ustring("path")?;
                let _watch = r.boolean("watch")?;
                Ok(match kind {
                    op::GET_DATA => ReadOp::GetData { path },
                    op::GET_CHILDREN => ReadOp::GetChildren { path },
                    value => {
                        return Err(JuteError::Unknown {
                            what: "multiRead op",
                            value,
                        });
                    }
                })
            })?),
            op::RECONFIG => Request::Reconfig {
                joining: r.ustring_opt("joiningServers")?,
                leaving: r.ustring_opt("leavingServers")?,
                new_members: r.ustring_opt("newMembers")?,
                config_id: r.long("curConfigId")?,
            },
            op::CHECK_WATCHES | op::REMOVE_WATCHES => {
                let path = r.ustring("path")?;
                let watcher_type = watcher_type(r.int("watcher type")?)?;
                if opcode == op::CHECK_WATCHES {
                    Request::CheckWatches { path, watcher_type }
                } else {
                    Request::RemoveWatches { path, watcher_type }
                }
            }
            op::AUTH => {
                let _type = r.int("auth type")?;
                Request::Auth {
                    scheme: r.ustring("auth scheme")?,
                    auth: r.buffer("auth")?.unwrap_or_default().to_vec(),
                }
            }
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let relative_zxid = r.long("relativeZxid")?;
                let data = r.strings("dataWatches")?;
                let exist = r.strings("existWatches")?;
                let child = r.strings("childWatches")?;
                let (persistent, persistent_recursive) = if opcode == op::SET_WATCHES2 {
                    (
                        r.strings("persistentWatches")?,
                        r.strings("persistentRecursiveWatches")?,
                    )
                } else {
                    (Vec::new(), Vec::new())
                };
                Request::SetWatches(SetWatches {
                    relative_zxid,
                    data,
                    exist,
                    child,
                    persistent,
                    persistent_recursive,
                })
            }
            op::SASL => Request::Sasl,
            op::GET_EPHEMERALS => Request::GetEphemerals {
                prefix: r.ustring("prefixPath")?,
            },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
                path: r.ustring("path")?,
            },
            op::ADD_WATCH => {
                let path = r.ustring("path")?;
                let kind = match r.int("mode")? {
                    0 => WatchKind::Persistent,
                    1 => WatchKind::PersistentRecursive,
                    value => {
                        return Err(JuteError::Unknown {
                            what: "addWatch mode",
                            value,
                        });
                    }
                };
                Request::AddWatch { path, kind }
            }
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            other => Request::Unknown(other),
        })
    }
}

/// The `ephemeralOwner` a client sees: ZooKeeper shows container and TTL
/// nodes' internal owner markers as 0.
fn visible_owner(owner: i64) -> i64 {
    const TTL_MARK: u64 = 0xff00_0000_0000_0000;
    if owner == CONTAINER_OWNER || (owner as u64) & TTL_MARK == TTL_MARK {
        0
    } else {
        owner
    }
}

pub fn write_stat(w: &mut Writer, s: &Stat) {
    w.long(s.czxid);
    w.long(s.mzxid);
    w.long(s.ctime);
    w.long(s.mtime);
    w.int(s.version);
    w.int(s.cversion);
    w.int(s.aversion);
    w.long(visible_owner(s.ephemeral_owner));
    w.int(s.data_length);
    w.int(s.num_children);
    w.long(s.pzxid);
}

pub fn write_acl(w: &mut Writer, acl: &[Acl]) {
    w.vector_len(acl.len());
    for entry in acl {
        w.int(entry.perms as i32);
        w.ustring(&entry.id.scheme);
        w.ustring(&entry.id.id);
    }
}

/// A reply frame's header; the body follows only when `err` is 0.
pub fn reply(xid: i32, zxid: i64, err: i32) -> Writer {
    let mut w = Writer::frame();
    w.int(xid);
    w.long(zxid);
    w.int(err);
    w
}

/// A watch event frame.
pub fn notification(event_type: i32, path: &str, zxid: i64) -> Vec<u8> {
    let mut w = reply(xid::NOTIFICATION, zxid, 0);
    w.int(event_type);
    w.int(SYNC_CONNECTED);
    w.ustring(path);
    w.into_frame()
}

/// Starts one entry of a multi or multiRead reply.
pub fn multi_entry(w: &mut Writer, kind: i32, err: i32) {
    w.int(kind);
    w.boolean(false);
    w.int(err);
}

/// Ends a multi or multiRead reply.
pub fn multi_end(w: &mut Writer) {
    w.int(-1);
    w.boolean(true);
    w.int(-1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.buf
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 42,
            timeout_ms: 10_000,
            session_id: 7,
            password: vec![1; 16],
            read_only: true,
        };
        let bytes = request.encode();
        assert_eq!(ConnectRequest::decode(&bytes).unwrap(), request);
        // A pre-3.4 client stops before the readOnly byte.
        let old = ConnectRequest::decode(&bytes[..bytes.len() - 1]).unwrap();
        assert!(!old.read_only);
        assert_eq!(old.session_id, 7);
    }

    #[test]
    fn creates_of_each_opcode() {
        let bytes = body(|w| {
            w.ustring("/a");
            w.buffer(b"x");
            write_acl(w, &Acl::open());
            w.int(5);
            w.long(60_000);
        });
        let Request::Create(c) = Request::decode(op::CREATE_TTL, &bytes).unwrap() else {
            panic!("not a create");
        };
        assert_eq!(c.mode, CreateMode::PersistentWithTtl);
        assert_eq!(c.ttl_ms, 60_000);
        assert_eq!(c.acl, Acl::open());
        assert!(c.with_stat);
        let Request::Create(c) = Request::decode(op::CREATE, &bytes).unwrap() else {
            panic!("not a create");
        };
        assert!(!c.with_stat);
        assert_eq!(c.ttl_ms, 0);
    }

    #[test]
    fn multi_framing() {
        let bytes = body(|w| {
            multi_entry(w, op::CHECK, -1);
            w.ustring("/a");
            w.int(3);
            multi_entry(w, op::DELETE, -1);
            w.ustring("/b");
            w.int(-1);
            multi_end(w);
        });
        assert_eq!(
            Request::decode(op::MULTI, &bytes).unwrap(),
            Request::Multi(vec![
                MultiOp::Check {
                    path: "/a".into(),
                    version: 3
                },
                MultiOp::Delete {
                    path: "/b".into(),
                    version: -1
                },
            ])
        );
        // Without its terminator the multi is malformed.
        assert!(Request::decode(op::MULTI, &bytes[..bytes.len() - 9]).is_err());
    }

    #[test]
    fn set_watches2_lists() {
        let bytes = body(|w| {
            w.long(99);
            w.strings(&["/d"]);
            w.strings(&["/e"]);
            w.strings::<&str>(&[]);
            w.strings(&["/p"]);
            w.strings(&["/r"]);
        });
        let Request::SetWatches(s) = Request::decode(op::SET_WATCHES2, &bytes).unwrap() else {
            panic!("not setWatches");
        };
        assert_eq!(s.relative_zxid, 99);
        assert_eq!(s.persistent_recursive, vec!["/r"]);
        assert_eq!(s.child, Vec::<String>::new());
    }

    #[test]
    fn owners_of_containers_and_ttl_nodes_read_as_zero() {
        assert_eq!(visible_owner(CONTAINER_OWNER), 0);
        assert_eq!(visible_owner(0xff00_0000_0000_1000_u64 as i64), 0);
        assert_eq!(visible_owner(12345), 12345);
    }

    #[test]
    fn a_null_acl_id_reads_as_empty() {
        let bytes = body(|w| {
            w.ustring("/a");
            w.buffer(b"");
            w.vector_len(1);
            w.int(31);
            w.ustring("auth");
            w.int(-1);
            w.int(0);
        });
        let Request::Create(c) = Request::decode(op::CREATE, &bytes).unwrap() else {
            panic!("not a create");
        };
        assert_eq!(c.acl[0].id, Id::new("auth", ""));
    }

    #[test]
    fn unknown_opcodes_decode_as_unknown() {
        assert_eq!(Request::decode(77, &[]).unwrap(), Request::Unknown(77));
    }

    proptest! {
        /// The decoder takes any bytes under any opcode without panicking.
        #[test]
        fn any_frame_decodes_or_fails_cleanly(
            opcode in prop_oneof![-12i32..=23, 100i32..=108],
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = Request::decode(opcode, &bytes);
            let _ = ConnectRequest::decode(&bytes);
        }

        /// Structured but corrupted multis (valid headers, random bodies).
        #[test]
        fn multis_with_random_bodies(
            kinds in proptest::collection::vec(prop_oneof![Just(1), Just(2), Just(5), Just(13), Just(15), Just(19), Just(21), Just(4), Just(8), any::<i32>()], 0..6),
            junk in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut w = Writer::default();
            for kind in &kinds {
                multi_entry(&mut w, *kind, -1);
                w.buf.extend_from_slice(&junk);
            }
            multi_end(&mut w);
            let _ = Request::decode(op::MULTI, &w.buf);
            let _ = Request::decode(op::MULTI_READ, &w.buf);
        }
    }
}
