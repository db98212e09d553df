//! Runs one decoded ZooKeeper request on the node and encodes its reply
//! body. Submission is split from the answer: the connection submits its
//! requests to the driver one after another, in arrival order (so a read
//! queues behind the session's earlier writes exactly as over gRPC), and
//! awaits the answers concurrently, writing them back in the same order.

use std::future::Future;
use std::pin::Pin;

use synod_core::tree::Stat;
use synod_core::txn::{CreateMode, MultiOutcome, OpOutcome, WriteOp};
use synod_core::watch::WatchKind;
use synod_core::{Error, SessionId, Zxid};

use super::ensemble_config::EnsembleAddresses;
use super::jute::Writer;
use super::proto::{self, Create, MultiOp, ReadOp, Request, code, op, write_acl, write_stat};
use crate::driver::{Answer, DriverHandle, NodeState, SetWatchLists};

/// The outcome of one request, ready to be written.
#[derive(Debug)]
pub struct Reply {
    pub xid: i32,
    /// The zxid for the reply header (`None`: the connection's latest) and
    /// the body, or a ZooKeeper error code (no body).
    pub result: Result<(Option<Zxid>, Vec<u8>), i32>,
    /// The connection closes after this reply.
    pub close: bool,
}

/// A reply still being worked on.
pub type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What a request runs as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub driver: DriverHandle,
    pub session: SessionId,
    pub peer: crate::driver::Origin,
    /// What `/zookeeper/config` lists, when configured.
    pub ensemble: Option<std::sync::Arc<EnsembleAddresses>>,
    /// Whether `reconfig` changes the membership (`--zookeeper-reconfig`).
    pub reconfig: bool,
}

pub(super) fn ready(reply: Reply) -> Pending {
    Box::pin(std::future::ready(reply))
}

fn error_reply(xid: i32, error: &Error) -> Reply {
    // A session the ensemble ended is over on this connection too; so is
    // one the node can no longer reach the ensemble for.
    let close = matches!(error, Error::SessionExpired(_));
    Reply {
        xid,
        result: Err(error.code().zookeeper_code()),
        close,
    }
}

pub(super) fn body(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    f(&mut w);
    w.buf
}

/// A request made ready for the driver: either already answered (refused
/// before it needs the node), or a step to run on the driver that submits
/// it and yields its pending reply. The steps of the requests a connection
/// read together run in one driver job, in arrival order.
pub enum Prepared {
    Answered(Reply),
    OnDriver(Box<dyn FnOnce(&mut NodeState) -> Pending + Send>),
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::Answered(reply) => f.debug_tuple("Answered").field(reply).finish(),
            Prepared::OnDriver(_) => f.write_str("OnDriver"),
        }
    }
}

impl Prepared {
    /// Runs the driver step, if any.
    pub fn run(self, state: &mut NodeState) -> Pending {
        match self {
            Prepared::Answered(reply) => ready(reply),
            Prepared::OnDriver(step) => step(state),
        }
    }

    /// The reply when the driver is gone.
    pub fn without_driver(xid: i32) -> Reply {
        error_reply(
            xid,
            &Error::ConnectionLoss("the node is shutting down".into()),
        )
    }

    /// Adjusts the reply once it is known.
    fn then(self, adjust: impl FnOnce(Reply) -> Reply + Send + 'static) -> Prepared {
        match self {
            Prepared::Answered(reply) => Prepared::Answered(adjust(reply)),
            Prepared::OnDriver(step) => Prepared::OnDriver(Box::new(move |state| {
                let pending = step(state);
                Box::pin(async move { adjust(pending.await) })
            })),
        }
    }
}

fn answered(reply: Reply) -> Prepared {
    Prepared::Answered(reply)
}

/// Submits `f` on the driver and leaves its answer for later; `encode`
/// turns it into the reply body (or an error code).
fn deferred<R, F, E>(xid: i32, f: F, encode: E) -> Prepared
where
    R: Send + 'static,
    F: FnOnce(&mut NodeState) -> Result<Answer<R>, Error> + Send + 'static,
    E: FnOnce(R) -> Result<(Option<Zxid>, Vec<u8>), i32> + Send + 'static,
{
    Prepared::OnDriver(Box::new(move |state| {
        let answer = match f(state) {
            Ok(answer) => answer,
            Err(error) => return ready(error_reply(xid, &error)),
        };
        Box::pin(async move {
            match answer.await {
                Ok(Ok(value)) => Reply {
                    xid,
                    result: encode(value),
                    close: false,
                },
                Ok(Err(error)) => error_reply(xid, &error),
                Err(_) => Prepared::without_driver(xid),
            }
        })
    }))
}

/// Runs `f` on the driver and answers with what it returns.
fn immediate<R, F, E>(xid: i32, f: F, encode: E) -> Prepared
where
    R: Send + 'static,
    F: FnOnce(&mut NodeState) -> Result<R, Error> + Send + 'static,
    E: FnOnce(R) -> (Option<Zxid>, Vec<u8>) + Send + 'static,
{
    Prepared::OnDriver(Box::new(move |state| {
        ready(match f(state) {
            Ok(value) => Reply {
                xid,
                result: Ok(encode(value)),
                close: false,
            },
            Err(error) => error_reply(xid, &error),
        })
    }))
}

/// A read, queued behind the session's earlier writes.
fn read<R, F, E>(caller: &Caller, xid: i32, f: F, encode: E) -> Prepared
where
    R: Send + 'static,
    F: FnOnce(&mut NodeState) -> Result<R, Error> + Send + 'static,
    E: FnOnce(R) -> Result<(Option<Zxid>, Vec<u8>), i32> + Send + 'static,
{
    let session = caller.session;
    deferred(xid, move |state| Ok(state.in_order(session, f)), encode)
}

/// ZooKeeper's dynamic configuration node (`getConfig`).
pub(super) const CONFIG_PATH: &str = "/zookeeper/config";

/// `/zookeeper/config`'s data, rendered when asked (the membership lives
/// in the replica, not in the tree), with `stat` (the tree node's) made to
/// match: its length, and the slot of the membership as its mzxid.
pub(super) fn config_data(
    state: &NodeState,
    ensemble: &EnsembleAddresses,
    stat: &mut Stat,
) -> Vec<u8> {
    let (voters, observers, slot) = state.config_members();
    let text = ensemble.render(&voters, &observers, slot);
    stat.data_length = i32::try_from(text.len()).unwrap_or(i32::MAX);
    stat.mzxid = i64::try_from(slot).unwrap_or(i64::MAX);
    text.into_bytes()
}

/// The write a create request asks for, checked against its opcode as
/// ZooKeeper checks it: TTL modes only through createTTL (with a TTL in
/// range), createContainer only for containers.
fn create_op(c: Create, opcode: i32) -> Result<WriteOp, Error> {
    // ZooKeeper keeps a TTL in the low 40 bits of the owner marker.
    const MAX_TTL_MS: i64 = (1 << 40) - 1;
    if c.mode.is_ttl() != (opcode == op::CREATE_TTL) {
        return Err(Error::BadArguments(
            "TTL nodes are created with createTTL, and createTTL only creates TTL nodes".into(),
        ));
    }
    if c.mode.is_ttl() && !(1..=MAX_TTL_MS).contains(&c.ttl_ms) {
        return Err(Error::BadArguments(format!(
            "TTL {} ms is outside 1..={MAX_TTL_MS}",
            c.ttl_ms
        )));
    }
    if opcode == op::CREATE_CONTAINER && c.mode != CreateMode::Container {
        return Err(Error::BadArguments(
            "createContainer only creates containers".into(),
        ));
    }
    Ok(WriteOp::Create {
        path: c.path,
        data: c.data,
        acl: c.acl,
        mode: c.mode,
        ttl_ms: c.ttl_ms,
    })
}

fn create_opcode(c: &Create) -> i32 {
    if c.mode.is_ttl() {
        op::CREATE_TTL
    } else if c.mode == CreateMode::Container {
        op::CREATE_CONTAINER
    } else if c.with_stat {
        op::CREATE2
    } else {
        op::CREATE
    }
}

/// One entry of a committed multi's reply.
fn multi_result(w: &mut Writer, outcome: &OpOutcome, with_stat: bool) {
    match outcome {
        OpOutcome::Created { path, stat } => {
            if with_stat {
                proto::multi_entry(w, op::CREATE2, 0);
                w.ustring(path);
                write_stat(w, stat);
            } else {
                proto::multi_entry(w, op::CREATE, 0);
                w.ustring(path);
            }
        }
        OpOutcome::Deleted => proto::multi_entry(w, op::DELETE, 0),
        OpOutcome::DataSet { stat } | OpOutcome::AclSet { stat } => {
            proto::multi_entry(w, op::SET_DATA, 0);
            write_stat(w, stat);
        }
        OpOutcome::Checked => proto::multi_entry(w, op::CHECK, 0),
        // Nested multis are refused before they get here.
        OpOutcome::Multi(_) => proto::multi_entry(w, op::ERROR, code::RUNTIME_INCONSISTENCY),
    }
}

fn error_entry(w: &mut Writer, err: i32) {
    proto::multi_entry(w, op::ERROR, err);
    w.int(err);
}

/// Prepares one request of this connection's session for the driver.
pub fn prepare(caller: &Caller, xid: i32, opcode: i32, request: Request) -> Prepared {
    let session = caller.session;
    let peer = caller.peer.clone();
    let ensemble = caller.ensemble.clone();
    let write = |op: WriteOp| {
        let peer = peer.clone();
        move |state: &mut NodeState| {
            let identity = state.identity(session, &peer);
            state.write(session, identity, op)
        }
    };
    match request {
        Request::Create(c) => {
            let with_stat = c.with_stat;
            let op = match create_op(c, opcode) {
                Ok(op) => op,
                Err(error) => return answered(error_reply(xid, &error)),
            };
            deferred(xid, write(op), move |(outcome, h)| match outcome {
                OpOutcome::Created { path, stat } => Ok((
                    Some(h.zxid),
                    body(|w| {
                        w.ustring(&path);
                        if with_stat {
                            write_stat(w, &stat);
                        }
                    }),
                )),
                _ => Err(code::RUNTIME_INCONSISTENCY),
            })
        }
        Request::Delete { path, version } => {
            deferred(xid, write(WriteOp::Delete { path, version }), |(_, h)| {
                Ok((Some(h.zxid), Vec::new()))
            })
        }
        Request::SetData {
            path,
            data,
            version,
        } => deferred(
            xid,
            write(WriteOp::SetData {
                path,
                data,
                version,
            }),
            |(outcome, h)| match outcome {
                OpOutcome::DataSet { stat } => Ok((Some(h.zxid), body(|w| write_stat(w, &stat)))),
                _ => Err(code::RUNTIME_INCONSISTENCY),
            },
        ),
        Request::SetAcl { path, acl, version } => {
            if acl.is_empty() {
                let error = Error::InvalidAcl("an ACL needs at least one entry".into());
                return answered(error_reply(xid, &error));
            }
            deferred(
                xid,
                write(WriteOp::SetAcl { path, acl, version }),
                |(outcome, h)| match outcome {
                    OpOutcome::AclSet { stat } => {
                        Ok((Some(h.zxid), body(|w| write_stat(w, &stat))))
                    }
                    _ => Err(code::RUNTIME_INCONSISTENCY),
                },
            )
        }
        Request::Check { path, version } => {
            deferred(xid, write(WriteOp::Check { path, version }), |(_, h)| {
                Ok((Some(h.zxid), Vec::new()))
            })
        }
        Request::Multi(ops) => {
            let mut shapes = Vec::with_capacity(ops.len());
            let mut write_ops = Vec::with_capacity(ops.len());
            for multi_op in ops {
                let converted = match multi_op {
                    MultiOp::Create(c) => {
                        shapes.push(c.with_stat);
                        let opcode = create_opcode(&c);
                        create_op(c, opcode)
                    }
                    MultiOp::Delete { path, version } => {
                        shapes.push(false);
                        Ok(WriteOp::Delete { path, version })
                    }
                    MultiOp::SetData {
                        path,
                        data,
                        version,
                    } => {
                        shapes.push(false);
                        Ok(WriteOp::SetData {
                            path,
                            data,
                            version,
                        })
                    }
                    MultiOp::Check { path, version } => {
                        shapes.push(false);
                        Ok(WriteOp::Check { path, version })
                    }
                };
                match converted {
                    Ok(op) => write_ops.push(op),
                    Err(error) => return answered(error_reply(xid, &error)),
                }
            }
            deferred(
                xid,
                write(WriteOp::Multi(write_ops)),
                move |(outcome, h)| {
                    let OpOutcome::Multi(outcome) = outcome else {
                        return Err(code::RUNTIME_INCONSISTENCY);
                    };
                    Ok((
                        Some(h.zxid),
                        body(|w| {
                            match &outcome {
                                MultiOutcome::Committed(results) => {
                                    for (result, with_stat) in results.iter().zip(&shapes) {
                                        multi_result(w, result, *with_stat);
                                    }
                                }
                                MultiOutcome::Aborted {
                                    failed_index,
                                    error,
                                    len,
                                } => {
                                    // ZooKeeper's report of a failed multi:
                                    // 0 before the failing op, its code,
                                    // then RuntimeInconsistency.
                                    for i in 0..*len {
                                        let err = match i.cmp(failed_index) {
                                            std::cmp::Ordering::Less => code::OK,
                                            std::cmp::Ordering::Equal => {
                                                error.code().zookeeper_code()
                                            }
                                            std::cmp::Ordering::Greater => {
                                                code::RUNTIME_INCONSISTENCY
                                            }
                                        };
                                        error_entry(w, err);
                                    }
                                }
                            }
                            proto::multi_end(w);
                        }),
                    ))
                },
            )
        }
        Request::GetData { path, watch } => read(
            caller,
            xid,
            move |state| {
                let identity = state.identity(session, &peer);
                let mut result = state.read(session, |m| {
                    m.tree()
                        .get_data_or_null(&path, &identity)
                        .map(|(d, s)| (d.map(<[u8]>::to_vec), s))
                })?;
                if path == CONFIG_PATH
                    && let Some(ensemble) = &ensemble
                {
                    let ((data, stat), _) = &mut result;
                    *data = Some(config_data(state, ensemble, stat));
                }
                if watch {
                    state.watch(session, &path, WatchKind::Data)?;
                }
                Ok(result)
            },
            |((data, stat), h)| {
                Ok((
                    Some(h.zxid),
                    body(|w| {
                        w.buffer_opt(data.as_deref());
                        write_stat(w, &stat);
                    }),
                ))
            },
        ),
        Request::Exists { path, watch } => {
            read(
                caller,
                xid,
                move |state| {
                    let result = state.read(session, |m| m.tree().exists(&path))?;
                    // exists leaves its watch on a missing node too, so
                    // that it fires when the node is created.
                    if watch {
                        state.watch(session, &path, WatchKind::Data)?;
                    }
                    Ok(result)
                },
                |(found, h)| match found {
                    Some(stat) => Ok((Some(h.zxid), body(|w| write_stat(w, &stat)))),
                    None => Err(code::NO_NODE),
                },
            )
        }
        Request::GetChildren {
            path,
            watch,
            with_stat,
        } => read(
            caller,
            xid,
            move |state| {
                let identity = state.identity(session, &peer);
                let result = state.read(session, |m| m.tree().get_children(&path, &identity))?;
                if watch {
                    state.watch(session, &path, WatchKind::Child)?;
                }
                Ok(result)
            },
            move |((children, stat), h)| {
                Ok((
                    Some(h.zxid),
                    body(|w| {
                        w.strings(&children);
                        if with_stat {
                            write_stat(w, &stat);
                        }
                    }),
                ))
            },
        ),
        Request::GetAcl { path } => read(
            caller,
            xid,
            move |state| {
                let identity = state.identity(session, &peer);
                state.read(session, |m| m.tree().get_acl(&path, &identity))
            },
            |((acl, stat), h)| {
                Ok((
                    Some(h.zxid),
                    body(|w| {
                        write_acl(w, &acl);
                        write_stat(w, &stat);
                    }),
                ))
            },
        ),
        Request::MultiRead(ops) => read(
            caller,
            xid,
            move |state| {
                let identity = state.identity(session, &peer);
                state.read(session, |m| {
                    let tree = m.tree();
                    Ok(body(|w| {
                        for read_op in &ops {
                            match read_op {
                                ReadOp::GetData { path } => {
                                    match tree.get_data_or_null(path, &identity) {
                                        Ok((data, stat)) => {
                                            proto::multi_entry(w, op::GET_DATA, 0);
                                            w.buffer_opt(data);
                                            write_stat(w, &stat);
                                        }
                                        Err(e) => error_entry(w, e.code().zookeeper_code()),
                                    }
                                }
                                ReadOp::GetChildren { path } => {
                                    match tree.get_children(path, &identity) {
                                        Ok((children, _)) => {
                                            proto::multi_entry(w, op::GET_CHILDREN, 0);
                                            w.strings(&children);
                                        }
                                        Err(e) => error_entry(w, e.code().zookeeper_code()),
                                    }
                                }
                            }
                        }
                        proto::multi_end(w);
                    }))
                })
            },
            |(bytes, h)| Ok((Some(h.zxid), bytes)),
        ),
        Request::GetEphemerals { prefix } => {
            let prefix = if prefix.is_empty() {
                "/".to_owned()
            } else {
                prefix
            };
            read(
                caller,
                xid,
                move |state| state.read(session, |m| Ok(m.tree().get_ephemerals(session, &prefix))),
                |(paths, h)| Ok((Some(h.zxid), body(|w| w.strings(&paths)))),
            )
        }
        Request::GetAllChildrenNumber { path } => read(
            caller,
            xid,
            move |state| {
                let identity = state.identity(session, &peer);
                state.read(session, |m| {
                    m.tree().get_all_children_number(&path, &identity)
                })
            },
            |(number, h)| {
                let number = i32::try_from(number).unwrap_or(i32::MAX);
                Ok((Some(h.zxid), body(|w| w.int(number))))
            },
        ),
        Request::WhoAmI => read(
            caller,
            xid,
            move |state| Ok(state.who_am_i(session, &peer)),
            |ids| {
                Ok((
                    None,
                    body(|w| {
                        w.vector_len(ids.len());
                        for (scheme, user) in &ids {
                            w.ustring(scheme);
                            w.ustring(user);
                        }
                    }),
                ))
            },
        ),
        Request::Sync { path } => {
            if let Err(error) = synod_core::path::validate(&path) {
                return answered(error_reply(xid, &error));
            }
            deferred(
                xid,
                move |state| state.sync(session),
                move |h| Ok((Some(h.zxid), body(|w| w.ustring(&path)))),
            )
        }
        Request::Ping => deferred(
            xid,
            move |state| Ok(state.ping(session)),
            |_timeout| Ok((None, Vec::new())),
        ),
        Request::Auth { scheme, auth } => {
            // A failed authentication ends the connection, as ZooKeeper
            // ends it (clients then report AUTH_FAILED).
            immediate(
                xid,
                move |state| state.add_auth(session, &scheme, &auth),
                |h| (Some(h.zxid), Vec::new()),
            )
            .then(|mut reply| {
                if reply.result == Err(code::AUTH_FAILED) {
                    reply.close = true;
                }
                reply
            })
        }
        Request::SetWatches(s) => {
            let lists = SetWatchLists {
                data: s.data,
                exist: s.exist,
                child: s.child,
                persistent: s.persistent,
                persistent_recursive: s.persistent_recursive,
            };
            let relative = s.relative_zxid;
            immediate(
                xid,
                move |state| state.set_watches(session, relative, &lists),
                |h| (Some(h.zxid), Vec::new()),
            )
        }
        Request::AddWatch { path, kind } => {
            immediate(
                xid,
                move |state| state.add_watch(session, &path, kind),
                // ZooKeeper answers addWatch with an ErrorResponse body
                // (`int err = 0`), and the Java client reads one: without it
                // the client fails the reply and drops the connection.
                |h| (Some(h.zxid), body(|w| w.int(code::OK))),
            )
        }
        Request::CheckWatches { path, watcher_type } => immediate(
            xid,
            move |state| state.check_watches(session, &path, watcher_type),
            |h| (Some(h.zxid), Vec::new()),
        ),
        Request::RemoveWatches { path, watcher_type } => immediate(
            xid,
            move |state| state.remove_watches(session, &path, watcher_type),
            |h| (Some(h.zxid), Vec::new()),
        ),
        Request::CloseSession => deferred(
            xid,
            move |state| state.close_session(session),
            |h| Ok((Some(h.zxid), Vec::new())),
        )
        .then(|mut reply| {
            reply.close = true;
            reply
        }),
        // Membership changes through ZooKeeper's reconfig: only with
        // --zookeeper-reconfig and the address template (otherwise answered
        // as ZooKeeper answers with reconfigEnabled=false).
        Request::Reconfig {
            joining,
            leaving,
            new_members,
            config_id,
        } => match caller.ensemble.clone().filter(|_| caller.reconfig) {
            None => answered(Reply {
                xid,
                result: Err(code::RECONFIG_DISABLED),
                close: false,
            }),
            Some(ensemble) => super::reconfig::prepare(
                super::reconfig::Asked {
                    xid,
                    session,
                    peer,
                    joining,
                    leaving,
                    new_members,
                    config_id,
                },
                caller.driver.clone(),
                ensemble,
            ),
        },
        // No SASL, and opcodes nobody should send: ZooKeeper answers
        // UNIMPLEMENTED and closes the connection.
        Request::Sasl | Request::Unknown(_) => answered(Reply {
            xid,
            result: Err(code::UNIMPLEMENTED),
            close: true,
        }),
    }
}
