//! The gRPC `Coordination` service: decodes requests, runs them on the
//! driver, and encodes results and errors. It holds no state of its own.

use std::net::IpAddr;
use std::pin::Pin;

use futures::Stream;
use synod_core::txn::{OpOutcome, WriteOp};
use synod_core::watch::WatchKind;
use synod_core::{Error, SessionId};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_server::Coordination;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{self, header, stat};
use crate::driver::{Answer, DriverGone, DriverHandle, Header};

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct CoordinationService {
    driver: DriverHandle,
}

impl CoordinationService {
    pub fn new(driver: DriverHandle) -> Self {
        CoordinationService { driver }
    }

    /// Runs `f` on the driver and maps core errors to statuses.
    async fn run<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&mut crate::driver::NodeState) -> Result<R, Error> + Send + 'static,
    {
        match self.driver.call(f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(convert::status(&error)),
            Err(DriverGone) => Err(Status::unavailable("the node is shutting down")),
        }
    }

    /// Runs `f` on the driver and then waits for the txn it submitted to
    /// go through the log.
    async fn submit<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&mut crate::driver::NodeState) -> Result<Answer<R>, Error> + Send + 'static,
    {
        let answer = self.run(f).await?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(convert::status(&error)),
            Err(_) => Err(Status::unavailable("the node is shutting down")),
        }
    }

    /// For a linearizable read: waits until this node has applied the
    /// leader's confirmed commit index.
    async fn barrier(&self, linearizable: bool) -> Result<(), Status> {
        if !linearizable {
            return Ok(());
        }
        self.submit(|state| state.read_barrier()).await
    }

    /// Runs a read on the driver once the session's earlier txns are
    /// answered, so a client always reads its own writes in order.
    async fn read<R, F>(&self, session: SessionId, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&mut crate::driver::NodeState) -> Result<R, Error> + Send + 'static,
    {
        self.submit(move |state| Ok(state.in_order(session, f)))
            .await
    }

    async fn write(
        &self,
        session: SessionId,
        peer: Option<IpAddr>,
        op: WriteOp,
    ) -> Result<(OpOutcome, Header), Status> {
        self.submit(move |state| {
            let identity = state.identity(session, peer);
            state.write(session, identity, op)
        })
        .await
    }
}

fn peer<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|a| a.ip())
}

fn mismatch() -> Status {
    convert::status(&Error::Internal(
        "unexpected outcome for the operation".into(),
    ))
}

#[tonic::async_trait]
impl Coordination for CoordinationService {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        let timeout = request.into_inner().timeout_ms;
        let (session_id, timeout_ms, h) =
            self.submit(move |s| Ok(s.create_session(timeout))).await?;
        tracing::debug!(
            session = format_args!("{session_id:#x}"),
            timeout_ms,
            "session created"
        );
        Ok(Response::new(pb::CreateSessionResponse {
            header: header(h),
            session_id,
            timeout_ms,
        }))
    }

    type KeepAliveStream = BoxStream<pb::KeepAliveResponse>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<pb::KeepAliveRequest>>,
    ) -> Reply<Self::KeepAliveStream> {
        let mut pings = request.into_inner();
        let driver = self.driver.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(ping) = pings.next().await {
                let Ok(ping) = ping else { break };
                let session = ping.session_id;
                let answer = match driver.call(move |s| s.ping(session)).await {
                    Ok(Ok(timeout_ms)) => Ok(pb::KeepAliveResponse {
                        session_id: session,
                        timeout_ms,
                    }),
                    Ok(Err(error)) => Err(convert::status(&error)),
                    Err(DriverGone) => Err(Status::unavailable("the node is shutting down")),
                };
                let fatal = answer.is_err();
                if tx.send(answer).await.is_err() || fatal {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Reply<pb::CloseSessionResponse> {
        let session = request.into_inner().session_id;
        let h = self.submit(move |s| s.close_session(session)).await?;
        Ok(Response::new(pb::CloseSessionResponse {
            header: header(h),
        }))
    }

    async fn add_auth(&self, request: Request<pb::AddAuthRequest>) -> Reply<pb::AddAuthResponse> {
        let r = request.into_inner();
        let h = self
            .run(move |s| s.add_auth(r.session_id, &r.scheme, &r.auth))
            .await?;
        Ok(Response::new(pb::AddAuthResponse { header: header(h) }))
    }

    async fn create(&self, request: Request<pb::CreateRequest>) -> Reply<pb::CreateResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let session = r.session_id;
        let op = convert::create_op(r).map_err(|e| convert::status(&e))?;
        match self.write(session, peer, op).await? {
            (OpOutcome::Created { path, stat: s }, h) => Ok(Response::new(pb::CreateResponse {
                header: header(h),
                path,
                stat: Some(stat(s)),
            })),
            _ => Err(mismatch()),
        }
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let (_, h) = self
            .write(
                r.session_id,
                peer,
                WriteOp::Delete {
                    path: r.path,
                    version: r.version,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse { header: header(h) }))
    }

    async fn set_data(&self, request: Request<pb::SetDataRequest>) -> Reply<pb::SetDataResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let op = WriteOp::SetData {
            path: r.path,
            data: r.data,
            version: r.version,
        };
        match self.write(r.session_id, peer, op).await? {
            (OpOutcome::DataSet { stat: s }, h) => Ok(Response::new(pb::SetDataResponse {
                header: header(h),
                stat: Some(stat(s)),
            })),
            _ => Err(mismatch()),
        }
    }

    async fn check(&self, request: Request<pb::CheckRequest>) -> Reply<pb::CheckResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let (_, h) = self
            .write(
                r.session_id,
                peer,
                WriteOp::Check {
                    path: r.path,
                    version: r.version,
                },
            )
            .await?;
        Ok(Response::new(pb::CheckResponse { header: header(h) }))
    }

    async fn set_acl(&self, request: Request<pb::SetAclRequest>) -> Reply<pb::SetAclResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let acl = if r.acl.is_empty() {
            return Err(convert::status(&Error::InvalidAcl(
                "an ACL needs at least one entry".into(),
            )));
        } else {
            convert::acl_from_pb(r.acl)
        };
        let op = WriteOp::SetAcl {
            path: r.path,
            acl,
            version: r.version,
        };
        match self.write(r.session_id, peer, op).await? {
            (OpOutcome::AclSet { stat: s }, h) => Ok(Response::new(pb::SetAclResponse {
                header: header(h),
                stat: Some(stat(s)),
            })),
            _ => Err(mismatch()),
        }
    }

    async fn multi(&self, request: Request<pb::MultiRequest>) -> Reply<pb::MultiResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let ops = convert::multi_ops(r.ops).map_err(|e| convert::status(&e))?;
        match self.write(r.session_id, peer, WriteOp::Multi(ops)).await? {
            (OpOutcome::Multi(outcome), h) => {
                let (committed, results) = convert::multi_results(outcome);
                Ok(Response::new(pb::MultiResponse {
                    header: header(h),
                    committed,
                    results,
                }))
            }
            _ => Err(mismatch()),
        }
    }

    async fn get_data(&self, request: Request<pb::GetDataRequest>) -> Reply<pb::GetDataResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        self.barrier(r.linearizable).await?;
        let ((data, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, peer);
                let result = state.read(r.session_id, |m| {
                    m.tree()
                        .get_data(&r.path, &identity)
                        .map(|(d, s)| (d.to_vec(), s))
                })?;
                if r.watch {
                    state.watch(r.session_id, &r.path, WatchKind::Data)?;
                }
                Ok(result)
            })
            .await?;
        Ok(Response::new(pb::GetDataResponse {
            header: header(h),
            data,
            stat: Some(stat(s)),
        }))
    }

    async fn exists(&self, request: Request<pb::ExistsRequest>) -> Reply<pb::ExistsResponse> {
        let r = request.into_inner();
        self.barrier(r.linearizable).await?;
        let (found, h) = self
            .read(r.session_id, move |state| {
                let result = state.read(r.session_id, |m| m.tree().exists(&r.path))?;
                // Unlike getData, exists leaves its watch on a missing node
                // too, so that it fires when the node is created.
                if r.watch {
                    state.watch(r.session_id, &r.path, WatchKind::Data)?;
                }
                Ok(result)
            })
            .await?;
        Ok(Response::new(pb::ExistsResponse {
            header: header(h),
            stat: found.map(stat),
        }))
    }

    async fn get_children(
        &self,
        request: Request<pb::GetChildrenRequest>,
    ) -> Reply<pb::GetChildrenResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        self.barrier(r.linearizable).await?;
        let ((children, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, peer);
                let result =
                    state.read(r.session_id, |m| m.tree().get_children(&r.path, &identity))?;
                if r.watch {
                    state.watch(r.session_id, &r.path, WatchKind::Child)?;
                }
                Ok(result)
            })
            .await?;
        Ok(Response::new(pb::GetChildrenResponse {
            header: header(h),
            children,
            stat: Some(stat(s)),
        }))
    }

    async fn get_all_children_number(
        &self,
        request: Request<pb::GetAllChildrenNumberRequest>,
    ) -> Reply<pb::GetAllChildrenNumberResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let (number, h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, peer);
                state.read(r.session_id, |m| {
                    m.tree().get_all_children_number(&r.path, &identity)
                })
            })
            .await?;
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        Ok(Response::new(pb::GetAllChildrenNumberResponse {
            header: header(h),
            number,
        }))
    }

    async fn get_ephemerals(
        &self,
        request: Request<pb::GetEphemeralsRequest>,
    ) -> Reply<pb::GetEphemeralsResponse> {
        let r = request.into_inner();
        if r.session_id == 0 {
            return Err(convert::status(&Error::BadArguments(
                "getEphemerals needs a session".into(),
            )));
        }
        let prefix = if r.prefix.is_empty() {
            "/".to_owned()
        } else {
            r.prefix
        };
        let (paths, h) = self
            .read(r.session_id, move |state| {
                state.read(r.session_id, |m| {
                    Ok(m.tree().get_ephemerals(r.session_id, &prefix))
                })
            })
            .await?;
        Ok(Response::new(pb::GetEphemeralsResponse {
            header: header(h),
            paths,
        }))
    }

    async fn get_acl(&self, request: Request<pb::GetAclRequest>) -> Reply<pb::GetAclResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let ((acl, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, peer);
                state.read(r.session_id, |m| m.tree().get_acl(&r.path, &identity))
            })
            .await?;
        Ok(Response::new(pb::GetAclResponse {
            header: header(h),
            acl: convert::acl_to_pb(&acl),
            stat: Some(stat(s)),
        }))
    }

    async fn multi_read(
        &self,
        request: Request<pb::MultiReadRequest>,
    ) -> Reply<pb::MultiReadResponse> {
        let peer = peer(&request);
        let r = request.into_inner();
        let (results, h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, peer);
                state.read(r.session_id, |m| {
                    let tree = m.tree();
                    let results = r
                        .ops
                        .iter()
                        .map(|op| {
                            let outcome = match &op.op {
                                Some(pb::read_op::Op::GetData(g)) => tree
                                    .get_data(&g.path, &identity)
                                    .map(|(d, s)| (d.to_vec(), Vec::new(), s)),
                                Some(pb::read_op::Op::GetChildren(g)) => tree
                                    .get_children(&g.path, &identity)
                                    .map(|(c, s)| (Vec::new(), c, s)),
                                None => {
                                    Err(Error::BadArguments("read op without an operation".into()))
                                }
                            };
                            match outcome {
                                Ok((data, children, s)) => pb::ReadResult {
                                    error: 0,
                                    data,
                                    children,
                                    stat: Some(stat(s)),
                                },
                                Err(e) => pb::ReadResult {
                                    error: convert::error_code(e.code()) as i32,
                                    ..Default::default()
                                },
                            }
                        })
                        .collect::<Vec<_>>();
                    Ok(results)
                })
            })
            .await?;
        Ok(Response::new(pb::MultiReadResponse {
            header: header(h),
            results,
        }))
    }

    async fn sync(&self, request: Request<pb::SyncRequest>) -> Reply<pb::SyncResponse> {
        let r = request.into_inner();
        if !r.path.is_empty() {
            synod_core::path::validate(&r.path).map_err(|e| convert::status(&e))?;
        }
        let h = self.submit(move |s| s.sync(r.session_id)).await?;
        Ok(Response::new(pb::SyncResponse { header: header(h) }))
    }

    async fn add_watch(
        &self,
        request: Request<pb::AddWatchRequest>,
    ) -> Reply<pb::AddWatchResponse> {
        let r = request.into_inner();
        let kind = match pb::AddWatchMode::try_from(r.mode) {
            Ok(pb::AddWatchMode::Persistent) => WatchKind::Persistent,
            Ok(pb::AddWatchMode::PersistentRecursive) => WatchKind::PersistentRecursive,
            Err(_) => {
                return Err(convert::status(&Error::BadArguments(format!(
                    "unknown watch mode {}",
                    r.mode
                ))));
            }
        };
        let h = self
            .run(move |s| s.add_watch(r.session_id, &r.path, kind))
            .await?;
        Ok(Response::new(pb::AddWatchResponse { header: header(h) }))
    }

    async fn remove_watches(
        &self,
        request: Request<pb::RemoveWatchesRequest>,
    ) -> Reply<pb::RemoveWatchesResponse> {
        let r = request.into_inner();
        let watcher_type =
            convert::watcher_type(r.watcher_type).map_err(|e| convert::status(&e))?;
        let h = self
            .run(move |s| s.remove_watches(r.session_id, &r.path, watcher_type))
            .await?;
        Ok(Response::new(pb::RemoveWatchesResponse {
            header: header(h),
        }))
    }

    type WatchEventsStream = BoxStream<pb::WatchEvent>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        let r = request.into_inner();
        let rx = self
            .run(move |s| s.subscribe(r.session_id, r.after_seq))
            .await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }
}
