//! The gRPC `Coordination` service: decodes requests, runs them on the
//! driver, and encodes results and errors. It holds no state of its own.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use futures::stream::FuturesUnordered;
use synod_core::txn::{OpOutcome, WriteOp};
use synod_core::watch::WatchKind;
use synod_core::{Error, SessionId};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_server::Coordination;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::convert::{self, header, stat};
use crate::driver::{Answer, DriverGone, DriverHandle, Header};
use crate::metrics::Metrics;

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct CoordinationService {
    driver: DriverHandle,
    /// Most unanswered requests read from one `Pipeline` stream.
    max_pipelined: usize,
    /// Pipelined calls are counted here under their unary names; unary
    /// calls are counted by the server's metrics layer.
    metrics: Arc<Metrics>,
}

impl CoordinationService {
    pub fn new(driver: DriverHandle, max_pipelined: usize, metrics: Arc<Metrics>) -> Self {
        CoordinationService {
            driver,
            max_pipelined: max_pipelined.max(1),
            metrics,
        }
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
        peer: crate::driver::Origin,
        op: WriteOp,
    ) -> Result<(OpOutcome, Header), Status> {
        self.submit(move |state| {
            let identity = state.identity(session, &peer);
            state.write(session, identity, op)
        })
        .await
    }
}

/// Where the request comes from: the client's address (the `ip` scheme)
/// and, over TLS, the identity its certificate carries (the `x509`
/// scheme: subject or SAN, per --tls-client-identity).
fn peer<T>(request: &Request<T>) -> crate::driver::Origin {
    let tls = request.extensions().get::<synod_tls::accept::TlsConnInfo>();
    let ip = request
        .remote_addr()
        .or_else(|| tls.and_then(|info| info.remote_addr))
        .map(|a| a.ip());
    let x509 = tls.and_then(|info| info.x509_id.clone());
    crate::driver::Origin { ip, x509 }
}

fn mismatch() -> Status {
    convert::status(&Error::Internal(
        "unexpected outcome for the operation".into(),
    ))
}

/// The unary calls' bodies, shared by the unary methods and `Pipeline`.
impl CoordinationService {
    async fn handle_create_session(
        &self,
        _peer: crate::driver::Origin,
        r: pb::CreateSessionRequest,
    ) -> Result<pb::CreateSessionResponse, Status> {
        let timeout = r.timeout_ms;
        let (session_id, timeout_ms, _password, h) =
            self.submit(move |s| Ok(s.create_session(timeout))).await?;
        tracing::debug!(
            session = format_args!("{session_id:#x}"),
            timeout_ms,
            "session created"
        );
        Ok(pb::CreateSessionResponse {
            header: header(h),
            session_id,
            timeout_ms,
        })
    }

    async fn handle_close_session(
        &self,
        _peer: crate::driver::Origin,
        r: pb::CloseSessionRequest,
    ) -> Result<pb::CloseSessionResponse, Status> {
        let session = r.session_id;
        let h = self.submit(move |s| s.close_session(session)).await?;
        Ok(pb::CloseSessionResponse { header: header(h) })
    }

    async fn handle_add_auth(
        &self,
        _peer: crate::driver::Origin,
        r: pb::AddAuthRequest,
    ) -> Result<pb::AddAuthResponse, Status> {
        let h = self
            .run(move |s| s.add_auth(r.session_id, &r.scheme, &r.auth))
            .await?;
        Ok(pb::AddAuthResponse { header: header(h) })
    }

    async fn handle_create(
        &self,
        peer: crate::driver::Origin,
        r: pb::CreateRequest,
    ) -> Result<pb::CreateResponse, Status> {
        let session = r.session_id;
        let op = convert::create_op(r).map_err(|e| convert::status(&e))?;
        match self.write(session, peer, op).await? {
            (OpOutcome::Created { path, stat: s }, h) => Ok(pb::CreateResponse {
                header: header(h),
                path,
                stat: Some(stat(s)),
            }),
            _ => Err(mismatch()),
        }
    }

    async fn handle_delete(
        &self,
        peer: crate::driver::Origin,
        r: pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, Status> {
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
        Ok(pb::DeleteResponse { header: header(h) })
    }

    async fn handle_set_data(
        &self,
        peer: crate::driver::Origin,
        r: pb::SetDataRequest,
    ) -> Result<pb::SetDataResponse, Status> {
        let op = WriteOp::SetData {
            path: r.path,
            data: Some(r.data),
            version: r.version,
        };
        match self.write(r.session_id, peer, op).await? {
            (OpOutcome::DataSet { stat: s }, h) => Ok(pb::SetDataResponse {
                header: header(h),
                stat: Some(stat(s)),
            }),
            _ => Err(mismatch()),
        }
    }

    async fn handle_check(
        &self,
        peer: crate::driver::Origin,
        r: pb::CheckRequest,
    ) -> Result<pb::CheckResponse, Status> {
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
        Ok(pb::CheckResponse { header: header(h) })
    }

    async fn handle_set_acl(
        &self,
        peer: crate::driver::Origin,
        r: pb::SetAclRequest,
    ) -> Result<pb::SetAclResponse, Status> {
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
            (OpOutcome::AclSet { stat: s }, h) => Ok(pb::SetAclResponse {
                header: header(h),
                stat: Some(stat(s)),
            }),
            _ => Err(mismatch()),
        }
    }

    async fn handle_multi(
        &self,
        peer: crate::driver::Origin,
        r: pb::MultiRequest,
    ) -> Result<pb::MultiResponse, Status> {
        let ops = convert::multi_ops(r.ops).map_err(|e| convert::status(&e))?;
        match self.write(r.session_id, peer, WriteOp::Multi(ops)).await? {
            (OpOutcome::Multi(outcome), h) => {
                let (committed, results) = convert::multi_results(outcome);
                Ok(pb::MultiResponse {
                    header: header(h),
                    committed,
                    results,
                })
            }
            _ => Err(mismatch()),
        }
    }

    async fn handle_get_data(
        &self,
        peer: crate::driver::Origin,
        r: pb::GetDataRequest,
    ) -> Result<pb::GetDataResponse, Status> {
        self.barrier(r.linearizable).await?;
        let ((data, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, &peer);
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
        Ok(pb::GetDataResponse {
            header: header(h),
            data,
            stat: Some(stat(s)),
        })
    }

    async fn handle_exists(
        &self,
        _peer: crate::driver::Origin,
        r: pb::ExistsRequest,
    ) -> Result<pb::ExistsResponse, Status> {
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
        Ok(pb::ExistsResponse {
            header: header(h),
            stat: found.map(stat),
        })
    }

    async fn handle_get_children(
        &self,
        peer: crate::driver::Origin,
        r: pb::GetChildrenRequest,
    ) -> Result<pb::GetChildrenResponse, Status> {
        self.barrier(r.linearizable).await?;
        let ((children, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, &peer);
                let result =
                    state.read(r.session_id, |m| m.tree().get_children(&r.path, &identity))?;
                if r.watch {
                    state.watch(r.session_id, &r.path, WatchKind::Child)?;
                }
                Ok(result)
            })
            .await?;
        Ok(pb::GetChildrenResponse {
            header: header(h),
            children,
            stat: Some(stat(s)),
        })
    }

    async fn handle_get_all_children_number(
        &self,
        peer: crate::driver::Origin,
        r: pb::GetAllChildrenNumberRequest,
    ) -> Result<pb::GetAllChildrenNumberResponse, Status> {
        let (number, h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, &peer);
                state.read(r.session_id, |m| {
                    m.tree().get_all_children_number(&r.path, &identity)
                })
            })
            .await?;
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        Ok(pb::GetAllChildrenNumberResponse {
            header: header(h),
            number,
        })
    }

    async fn handle_get_ephemerals(
        &self,
        _peer: crate::driver::Origin,
        r: pb::GetEphemeralsRequest,
    ) -> Result<pb::GetEphemeralsResponse, Status> {
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
        Ok(pb::GetEphemeralsResponse {
            header: header(h),
            paths,
        })
    }

    async fn handle_get_acl(
        &self,
        peer: crate::driver::Origin,
        r: pb::GetAclRequest,
    ) -> Result<pb::GetAclResponse, Status> {
        let ((acl, s), h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, &peer);
                state.read(r.session_id, |m| m.tree().get_acl(&r.path, &identity))
            })
            .await?;
        Ok(pb::GetAclResponse {
            header: header(h),
            acl: convert::acl_to_pb(&acl),
            stat: Some(stat(s)),
        })
    }

    async fn handle_multi_read(
        &self,
        peer: crate::driver::Origin,
        r: pb::MultiReadRequest,
    ) -> Result<pb::MultiReadResponse, Status> {
        let (results, h) = self
            .read(r.session_id, move |state| {
                let identity = state.identity(r.session_id, &peer);
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
        Ok(pb::MultiReadResponse {
            header: header(h),
            results,
        })
    }

    async fn handle_sync(
        &self,
        _peer: crate::driver::Origin,
        r: pb::SyncRequest,
    ) -> Result<pb::SyncResponse, Status> {
        if !r.path.is_empty() {
            synod_core::path::validate(&r.path).map_err(|e| convert::status(&e))?;
        }
        let h = self.submit(move |s| s.sync(r.session_id)).await?;
        Ok(pb::SyncResponse { header: header(h) })
    }

    async fn handle_add_watch(
        &self,
        _peer: crate::driver::Origin,
        r: pb::AddWatchRequest,
    ) -> Result<pb::AddWatchResponse, Status> {
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
        Ok(pb::AddWatchResponse { header: header(h) })
    }

    async fn handle_remove_watches(
        &self,
        _peer: crate::driver::Origin,
        r: pb::RemoveWatchesRequest,
    ) -> Result<pb::RemoveWatchesResponse, Status> {
        let watcher_type =
            convert::watcher_type(r.watcher_type).map_err(|e| convert::status(&e))?;
        let h = self
            .run(move |s| s.remove_watches(r.session_id, &r.path, watcher_type))
            .await?;
        Ok(pb::RemoveWatchesResponse { header: header(h) })
    }

    /// Runs one call of a `Pipeline` stream, as its unary method would.
    async fn handle_pipelined(
        &self,
        peer: crate::driver::Origin,
        request: pb::PipelineRequest,
    ) -> pb::PipelineResponse {
        use pb::pipeline_request::Call;
        use pb::pipeline_response::Result as Answer;
        let started = std::time::Instant::now();
        let Some(call) = request.call else {
            let error = Error::BadArguments("a pipelined request names no call".into());
            return pb::PipelineResponse {
                id: request.id,
                result: Some(Answer::Error(call_error(convert::status(&error)))),
            };
        };
        // Each call runs its unary method's handler; metrics name it after
        // that method.
        macro_rules! dispatch {
            ($($call:ident => $handler:ident),* $(,)?) => {
                match call {
                    $(Call::$call(r) => (
                        stringify!($call),
                        self.$handler(peer, r).await.map(Answer::$call),
                    ),)*
                }
            };
        }
        let (method, answer) = dispatch! {
            CreateSession => handle_create_session,
            CloseSession => handle_close_session,
            AddAuth => handle_add_auth,
            Create => handle_create,
            Delete => handle_delete,
            SetData => handle_set_data,
            Check => handle_check,
            SetAcl => handle_set_acl,
            Multi => handle_multi,
            GetData => handle_get_data,
            Exists => handle_exists,
            GetChildren => handle_get_children,
            GetAllChildrenNumber => handle_get_all_children_number,
            GetEphemerals => handle_get_ephemerals,
            GetAcl => handle_get_acl,
            MultiRead => handle_multi_read,
            Sync => handle_sync,
            AddWatch => handle_add_watch,
            RemoveWatches => handle_remove_watches,
        };
        self.metrics
            .observe_call(method, started.elapsed().as_secs_f64(), answer.is_err());
        pb::PipelineResponse {
            id: request.id,
            result: Some(answer.unwrap_or_else(|status| Answer::Error(call_error(status)))),
        }
    }
}

/// What a failed pipelined call carries: the status its unary call would
/// have returned.
fn call_error(status: Status) -> pb::CallError {
    pb::CallError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

#[tonic::async_trait]
impl Coordination for CoordinationService {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        self.handle_create_session(peer(&request), request.into_inner())
            .await
            .map(Response::new)
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
                    Ok(answer) => match answer.await {
                        Ok(Ok(timeout_ms)) => Ok(pb::KeepAliveResponse {
                            session_id: session,
                            timeout_ms,
                        }),
                        Ok(Err(error)) => Err(convert::status(&error)),
                        Err(_) => Err(Status::unavailable("the node is shutting down")),
                    },
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
        self.handle_close_session(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn add_auth(&self, request: Request<pb::AddAuthRequest>) -> Reply<pb::AddAuthResponse> {
        self.handle_add_auth(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create(&self, request: Request<pb::CreateRequest>) -> Reply<pb::CreateResponse> {
        self.handle_create(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        self.handle_delete(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_data(&self, request: Request<pb::SetDataRequest>) -> Reply<pb::SetDataResponse> {
        self.handle_set_data(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn check(&self, request: Request<pb::CheckRequest>) -> Reply<pb::CheckResponse> {
        self.handle_check(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_acl(&self, request: Request<pb::SetAclRequest>) -> Reply<pb::SetAclResponse> {
        self.handle_set_acl(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn multi(&self, request: Request<pb::MultiRequest>) -> Reply<pb::MultiResponse> {
        self.handle_multi(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_data(&self, request: Request<pb::GetDataRequest>) -> Reply<pb::GetDataResponse> {
        self.handle_get_data(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn exists(&self, request: Request<pb::ExistsRequest>) -> Reply<pb::ExistsResponse> {
        self.handle_exists(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_children(
        &self,
        request: Request<pb::GetChildrenRequest>,
    ) -> Reply<pb::GetChildrenResponse> {
        self.handle_get_children(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_all_children_number(
        &self,
        request: Request<pb::GetAllChildrenNumberRequest>,
    ) -> Reply<pb::GetAllChildrenNumberResponse> {
        self.handle_get_all_children_number(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_ephemerals(
        &self,
        request: Request<pb::GetEphemeralsRequest>,
    ) -> Reply<pb::GetEphemeralsResponse> {
        self.handle_get_ephemerals(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_acl(&self, request: Request<pb::GetAclRequest>) -> Reply<pb::GetAclResponse> {
        self.handle_get_acl(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn multi_read(
        &self,
        request: Request<pb::MultiReadRequest>,
    ) -> Reply<pb::MultiReadResponse> {
        self.handle_multi_read(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn sync(&self, request: Request<pb::SyncRequest>) -> Reply<pb::SyncResponse> {
        self.handle_sync(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn add_watch(
        &self,
        request: Request<pb::AddWatchRequest>,
    ) -> Reply<pb::AddWatchResponse> {
        self.handle_add_watch(peer(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_watches(
        &self,
        request: Request<pb::RemoveWatchesRequest>,
    ) -> Reply<pb::RemoveWatchesResponse> {
        self.handle_remove_watches(peer(&request), request.into_inner())
            .await
            .map(Response::new)
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

    type PipelineStream = BoxStream<pb::PipelineResponse>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Reply<Self::PipelineStream> {
        let peer = peer(&request);
        let mut requests = request.into_inner();
        let service = self.clone();
        let limit = self.max_pipelined;
        let (tx, rx) = tokio::sync::mpsc::channel(limit);
        tokio::spawn(async move {
            // The calls run inside this one task: a pipelined call costs no
            // task of its own.
            let mut running = FuturesUnordered::new();
            let mut reading = true;
            let mut failure = None;
            loop {
                tokio::select! {
                    // Answers first, so that a stream at its limit drains.
                    biased;
                    Some(answer) = running.next(), if !running.is_empty() => {
                        if tx.send(Ok(answer)).await.is_err() {
                            return;
                        }
                    }
                    next = requests.next(), if reading && running.len() < limit => match next {
                        Some(Ok(call)) => running.push(service.handle_pipelined(peer.clone(), call)),
                        Some(Err(status)) => {
                            tracing::debug!(%status, "pipeline stream failed; answering what it sent");
                            failure = Some(status);
                            reading = false;
                        }
                        None => reading = false,
                    },
                    else => break,
                }
            }
            if let Some(status) = failure {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
