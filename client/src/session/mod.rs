//! The session behind a [`crate::Client`]: creating it, keeping it alive
//! over the KeepAlive stream, reading the WatchEvents stream, moving to
//! another endpoint when the connection fails (the session belongs to the
//! ensemble, so it survives the move), and the call path every operation
//! takes: wait for a connection, send, decode errors, hold the response back
//! until the events it follows have arrived.
//!
//! One background task (the supervisor) owns the connection's lifecycle;
//! operations only read the current connection and, when a call fails on the
//! transport, ask the supervisor to replace it.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::Streaming;
use tonic::transport::Endpoint;
use tracing::{debug, info, trace, warn};

mod supervisor;

use supervisor::supervise;

use crate::barrier::{Observed, SeqBarrier};
use crate::client::ClientConfig;
use crate::endpoint::normalize_endpoint;
use crate::error::{Error, Result};
use crate::pipeline::Rpc;
use crate::types::{AddWatchMode, EventType, SessionState, WatchEvent, stat_of};
use crate::watch::{Dispatcher, Registration};

/// One connection to one server.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) rpc: Rpc,
    pub(crate) endpoint: String,
    /// Counts connections of this client, so that a failure report about an
    /// old connection does not tear down its replacement.
    pub(crate) generation: u64,
}

#[derive(Debug, Clone)]
enum Link {
    Connecting,
    Connected(Arc<Conn>),
    Ended(SessionState),
}

/// Why the supervisor should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Running,
    /// `close()` already ended the session on the server.
    Closed,
    /// The last `Client` handle was dropped: end the session on the way out.
    Dropped,
    Expired,
}

/// The streams that keep a connection's session alive and bring its events.
struct Streams {
    pings: mpsc::Sender<pb::KeepAliveRequest>,
    keepalive: Streaming<pb::KeepAliveResponse>,
    events: EventStream,
}

/// The session's watch event stream on one connection.
struct EventStream {
    stream: Streaming<pb::WatchEvent>,
    /// Events up to this number were queued before the stream was opened.
    replay_until: u64,
    /// Replayed events older than the newest one received are stale.
    stale_below_zxid: i64,
    /// Events were lost because the server no longer held them.
    lost: bool,
}

enum Drive {
    Lost(String),
    Ended,
}

/// Responses that carry a `ResponseHeader`.
pub(crate) trait Headed {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! headed {
    ($($t:ty),* $(,)?) => {
        $(impl Headed for $t {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

headed!(
    pb::CreateSessionResponse,
    pb::CloseSessionResponse,
    pb::AddAuthResponse,
    pb::CreateResponse,
    pb::DeleteResponse,
    pb::SetDataResponse,
    pb::CheckResponse,
    pb::SetAclResponse,
    pb::MultiResponse,
    pb::GetDataResponse,
    pb::ExistsResponse,
    pb::GetChildrenResponse,
    pb::GetAllChildrenNumberResponse,
    pb::GetEphemeralsResponse,
    pb::GetAclResponse,
    pb::MultiReadResponse,
    pb::SyncResponse,
    pb::AddWatchResponse,
    pb::RemoveWatchesResponse,
);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) session_id: i64,
    timeout_ms: AtomicI64,
    link: watch::Sender<Link>,
    pub(crate) state: watch::Sender<SessionState>,
    pub(crate) barrier: SeqBarrier,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// The generation whose replacement was asked for.
    reconnect: watch::Sender<u64>,
    /// Bumped to ask for the event stream to be reopened.
    reopen: watch::Sender<u64>,
    shutdown: watch::Sender<Shutdown>,
    last_zxid: AtomicI64,
    /// The newest transaction an event was received for.
    last_event_zxid: AtomicI64,
    /// Persistent watches added with `add_watch`, set again after a move.
    persistent: Mutex<BTreeSet<(String, i32)>>,
    /// Identities added with `add_auth`, added again after a move.
    auths: Mutex<Vec<(String, Vec<u8>)>>,
}

/// Creates a session on the first endpoint that takes one, opens its
/// streams, and starts the supervisor.
pub(crate) async fn connect(mut config: ClientConfig) -> Result<Arc<Inner>> {
    let endpoints = config
        .endpoints
        .iter()
        .map(|e| normalize_endpoint(e))
        .collect::<Result<Vec<_>>>()?;
    if endpoints.is_empty() {
        return Err(Error::InvalidArgument {
            message: "no endpoints given".to_owned(),
        });
    }
    config.endpoints = endpoints;
    let mut failures = Vec::new();
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        let (rpc, session) = match create_session(&config, endpoint).await {
            Ok(created) => created,
            Err(err) => {
                debug!(endpoint, "no session from this endpoint: {err}");
                failures.push(format!("{endpoint}: {err}"));
                continue;
            }
        };
        let inner = Arc::new(Inner::new(config.clone(), &session));
        info!(
            session_id = format_args!("{:#x}", session.session_id),
            endpoint,
            timeout_ms = session.timeout_ms,
            "session created"
        );
        // The server that created the session first, then the others.
        let mut first = Some(rpc);
        let count = inner.config.endpoints.len();
        for k in 0..count {
            let i = (index + k) % count;
            let endpoint = &inner.config.endpoints[i];
            match inner.establish(endpoint, first.take(), 1, k > 0).await {
                Ok((conn, streams)) => {
                    inner.publish(&conn);
                    tokio::spawn(supervise(Arc::clone(&inner), conn, streams, i));
                    return Ok(inner);
                }
                Err(err) if err.is_session_gone() => return Err(err),
                Err(err) => failures.push(format!("{endpoint}: {err}")),
            }
        }
        break;
    }
    Err(Error::NoServer {
        endpoints: config.endpoints.join(","),
        reason: failures.pop().unwrap_or_else(|| "no answer".to_owned()),
    })
}

async fn create_session(
    config: &ClientConfig,
    endpoint: &str,
) -> Result<(Rpc, pb::CreateSessionResponse)> {
    let mut rpc = open(config, endpoint).await?;
    let request = pb::CreateSessionRequest {
        timeout_ms: millis(config.session_timeout),
    };
    let created = within(config.connect_timeout, "CreateSession", async {
        rpc.create_session(request).await
    })
    .await?
    .into_inner();
    Ok((rpc, created))
}

async fn open(config: &ClientConfig, endpoint: &str) -> Result<Rpc> {
    let endpoint_cfg = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|err| Error::transport(&err))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    let channel = tokio::time::timeout(
        config.connect_timeout,
        crate::connect::channel(endpoint_cfg, config.tls.as_ref()),
    )
    .await
    .map_err(|_| Error::ConnectionLoss {
        message: format!("connect timed out after {:?}", config.connect_timeout),
    })?
    .map_err(|err| match err {
        crate::connect::ConnectError::Transport(err) => Error::transport(&err),
        tls @ crate::connect::ConnectError::Tls(_) => Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: tls.to_string(),
        },
    })?;
    let streams = CoordinationClient::new(channel)
        .max_decoding_message_size(config.max_message_size)
        .max_encoding_message_size(config.max_message_size);
    within(config.connect_timeout, "Pipeline", Rpc::open(streams)).await
}

/// Runs one step of connection setup with a deadline.
async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = std::result::Result<T, Status>>,
) -> Result<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) => Err(Error::from_status(&status)),
        Err(_) => Err(Error::ConnectionLoss {
            message: format!("{what}: no answer within {limit:?}"),
        }),
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Resolves once `rx` holds a value `f` accepts; never if the sender is
/// gone (it lives in `Inner`, so that only happens while shutting down).
async fn until<T>(rx: &mut watch::Receiver<T>, f: impl FnMut(&T) -> bool) {
    let reached = rx.wait_for(f).await.is_ok();
    if !reached {
        std::future::pending::<()>().await;
    }
}

impl Inner {
    fn new(config: ClientConfig, session: &pb::CreateSessionResponse) -> Inner {
        let timeout_ms = if session.timeout_ms > 0 {
            session.timeout_ms
        } else {
            millis(config.session_timeout)
        };
        Inner {
            config,
            session_id: session.session_id,
            timeout_ms: AtomicI64::new(timeout_ms),
            link: watch::Sender::new(Link::Connecting),
            state: watch::Sender::new(SessionState::Disconnected),
            barrier: SeqBarrier::new(),
            dispatcher: Arc::new(Dispatcher::default()),
            reconnect: watch::Sender::new(0),
            reopen: watch::Sender::new(0),
            shutdown: watch::Sender::new(Shutdown::Running),
            last_zxid: AtomicI64::new(session.header.map_or(0, |h| h.zxid)),
            last_event_zxid: AtomicI64::new(0),
            persistent: Mutex::new(BTreeSet::new()),
            auths: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn session_timeout(&self) -> Duration {
        let ms = self.timeout_ms.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    pub(crate) fn last_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::Relaxed)
    }

    fn note_zxid(&self, zxid: i64) {
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
    }

    fn endpoint_generation(&self) -> Option<u64> {
        match &*self.link.borrow() {
            Link::Connected(conn) => Some(conn.generation),
            _ => None,
        }
    }

    pub(crate) fn endpoint(&self) -> Option<String> {
        match &*self.link.borrow() {
            Link::Connected(conn) => Some(conn.endpoint.clone()),
            _ => None,
        }
    }

    pub(crate) fn remember_persistent(&self, path: &str, mode: AddWatchMode) {
        self.persistent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((path.to_owned(), mode as i32));
    }

    pub(crate) fn forget_persistent(&self, path: &str, mode: Option<AddWatchMode>) {
        self.persistent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(p, m)| p != path || mode.is_some_and(|mode| mode as i32 != *m));
    }

    pub(crate) fn remember_auth(&self, scheme: &str, auth: &[u8]) {
        let mut auths = self.auths.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = (scheme.to_owned(), auth.to_vec());
        if !auths.contains(&entry) {
            auths.push(entry);
        }
    }

    /// Asks the supervisor to replace connection `generation`.
    pub(crate) fn request_reconnect(&self, generation: u64) {
        self.reconnect.send_if_modified(|asked| {
            if *asked < generation {
                *asked = generation;
                true
            } else {
                false
            }
        });
    }

    /// Records why the session ends; the first reason wins.
    pub(crate) fn shutdown_with(&self, why: Shutdown) {
        self.shutdown.send_if_modified(|current| {
            if *current == Shutdown::Running {
                *current = why;
                true
            } else {
                false
            }
        });
    }

    fn set_state(&self, state: SessionState) {
        self.state.send_if_modified(|current| {
            if current.is_terminal() || *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    /// Ends the session on this side: calls fail fast, streams end. The
    /// state is set before the streams close, so that a watch that sees its
    /// stream end can tell expiry from closing.
    pub(crate) fn finish(&self, end: SessionState) {
        self.shutdown_with(match end {
            SessionState::Expired => Shutdown::Expired,
            _ => Shutdown::Closed,
        });
        self.set_state(end);
        let end = *self.state.borrow();
        self.link.send_replace(Link::Ended(end));
        self.dispatcher.close();
    }

    fn publish(&self, conn: &Arc<Conn>) {
        self.link.send_if_modified(|link| {
            if matches!(link, Link::Ended(_)) {
                false
            } else {
                *link = Link::Connected(Arc::clone(conn));
                true
            }
        });
        self.set_state(SessionState::Connected);
    }

    /// Brings a connection to the point where calls may use it: the server
    /// has caught up with what this client saw (after a move), the session
    /// is confirmed by a KeepAlive answer, the event stream is open, and
    /// identities are added again.
    async fn establish(
        &self,
        endpoint: &str,
        rpc: Option<Rpc>,
        generation: u64,
        moved: bool,
    ) -> Result<(Arc<Conn>, Streams)> {
        let limit = self.config.connect_timeout;
        let mut rpc = match rpc {
            Some(rpc) => rpc,
            None => open(&self.config, endpoint).await?,
        };
        if moved {
            // Without a session, so that a server that has not applied the
            // session's creation yet is not mistaken for one that expired it.
            let request = pb::SyncRequest {
                session_id: 0,
                path: "/".to_owned(),
            };
            match within(limit, "Sync", rpc.sync(request)).await {
                Ok(_) => {}
                Err(err) if err.is_connection_loss() => return Err(err),
                Err(err) => debug!(endpoint, "catching up after moving failed: {err}"),
            }
        }
        let ping = pb::KeepAliveRequest {
            session_id: self.session_id,
        };
        let (pings, ping_rx) = mpsc::channel(4);
        pings.try_send(ping).map_err(|_| Error::ConnectionLoss {
            message: "keepalive queue refused the first ping".to_owned(),
        })?;
        let mut keepalive = within(
            limit,
            "KeepAlive",
            rpc.keep_alive(ReceiverStream::new(ping_rx)),
        )
        .await?
        .into_inner();
        match within(limit, "KeepAlive", keepalive.message()).await? {
            Some(answer) if answer.timeout_ms > 0 => {
                self.timeout_ms.store(answer.timeout_ms, Ordering::Relaxed);
            }
            Some(_) => {}
            None => {
                return Err(Error::ConnectionLoss {
                    message: "the server closed the keepalive stream".to_owned(),
                });
            }
        }
        let events = self.open_events(&mut rpc, moved).await?;
        let auths = self
            .auths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (scheme, auth) in auths {
            let request = pb::AddAuthRequest {
                session_id: self.session_id,
                scheme: scheme.clone(),
                auth,
            };
            match within(limit, "AddAuth", rpc.add_auth(request)).await {
                Ok(_) => {}
                Err(err) if err.is_connection_loss() || err.is_session_gone() => return Err(err),
                Err(err) => warn!(endpoint, scheme, "adding an identity again failed: {err}"),
            }
        }
        let conn = Arc::new(Conn {
            rpc,
            endpoint: endpoint.to_owned(),
            generation,
        });
        Ok((
            conn,
            Streams {
                pings,
                keepalive,
                events,
            },
        ))
    }

    /// How many events the server has queued for the session, from a Sync
    /// answer's header; None when it would not say.
    async fn server_seq(&self, rpc: &mut Rpc) -> Result<Option<u64>> {
        let request = pb::SyncRequest {
            session_id: self.session_id,
            path: "/".to_owned(),
        };
        match within(self.config.connect_timeout, "Sync", rpc.sync(request)).await {
            Ok(response) => Ok(response.into_inner().header.map(|h| h.watch_seq)),
            Err(err) if err.is_connection_loss() || err.is_session_gone() => Err(err),
            Err(err) => {
                debug!("sync for the event count failed: {err}");
                Ok(None)
            }
        }
    }

    /// Opens the session's event stream on `rpc`, resuming after the last
    /// event received.
    ///
    /// A node numbers the events of the sessions connected to it, so after
    /// a move (`moved`) the new node may count from elsewhere: one that
    /// never served the session, or restarted, counts from zero, and the
    /// client adopts that count, or it would take the new events for
    /// duplicates. A node the session left earlier may still hold events of
    /// the watches set there, which other nodes delivered meanwhile; those
    /// are recognised by their older zxid and dropped.
    async fn open_events(&self, rpc: &mut Rpc, moved: bool) -> Result<EventStream> {
        let received = self.barrier.received();
        let mut after = received;
        let mut replay_until = 0;
        if moved && let Some(server) = self.server_seq(rpc).await? {
            if server < received {
                debug!(
                    received,
                    server, "the server counts this session's events anew"
                );
                self.barrier.rebase(server);
                after = server;
            }
            replay_until = server;
        }
        let stale_below_zxid = self.last_event_zxid.load(Ordering::Relaxed);
        let limit = self.config.connect_timeout;
        let request = pb::WatchEventsRequest {
            session_id: self.session_id,
            after_seq: after,
        };
        let err = match within(limit, "WatchEvents", rpc.watch_events(request)).await {
            Ok(response) => {
                return Ok(EventStream {
                    stream: response.into_inner(),
                    replay_until,
                    stale_below_zxid,
                    lost: false,
                });
            }
            Err(err) if err.is_connection_loss() || err.is_session_gone() => return Err(err),
            Err(err) => err,
        };
        // The server no longer holds the events after `after`: they are
        // lost, and the stream can only go on from the server's count.
        let Some(server) = self.server_seq(rpc).await? else {
            return Err(err);
        };
        warn!(
            after,
            server, "watch events were lost ({err}); checking one-shot watches again"
        );
        self.barrier.rebase(server);
        let request = pb::WatchEventsRequest {
            session_id: self.session_id,
            after_seq: server,
        };
        let stream = within(limit, "WatchEvents", rpc.watch_events(request))
            .await?
            .into_inner();
        Ok(EventStream {
            stream,
            replay_until: 0,
            stale_below_zxid,
            lost: true,
        })
    }

    /// Tries the endpoints round-robin from `start` until one takes the
    /// session back, the session is reported gone, or the client shuts down.
    async fn reconnect(
        &self,
        start: usize,
        generation: u64,
    ) -> Option<(Arc<Conn>, Streams, usize)> {
        let count = self.config.endpoints.len();
        let mut shutdown = self.shutdown.subscribe();
        let mut backoff = Duration::from_millis(50);
        loop {
            for k in 0..count {
                let index = (start + k) % count;
                let endpoint = &self.config.endpoints[index];
                let attempt = tokio::select! {
                    biased;
                    () = until(&mut shutdown, |s| *s != Shutdown::Running) => return None,
                    attempt = self.establish(endpoint, None, generation, true) => attempt,
                };
                match attempt {
                    Ok((conn, streams)) => {
                        info!(
                            session_id = format_args!("{:#x}", self.session_id),
                            endpoint, "session resumed"
                        );
                        return Some((conn, streams, index));
                    }
                    Err(err) if err.is_session_gone() => {
                        warn!(
                            session_id = format_args!("{:#x}", self.session_id),
                            "session ended while disconnected: {err}"
                        );
                        self.shutdown_with(Shutdown::Expired);
                        return None;
                    }
                    Err(err) => debug!(endpoint, "reconnect attempt failed: {err}"),
                }
            }
            tokio::select! {
                biased;
                () = until(&mut shutdown, |s| *s != Shutdown::Running) => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn current(&self, deadline: Instant) -> Result<Arc<Conn>> {
        let mut rx = self.link.subscribe();
        loop {
            let link = rx.borrow_and_update().clone();
            match link {
                Link::Connected(conn) => return Ok(conn),
                Link::Ended(SessionState::Expired) => return Err(Error::SessionExpired),
                Link::Ended(_) => return Err(Error::Closed),
                Link::Connecting => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    return Err(Error::ConnectionLoss {
                        message: "not connected to any server".to_owned(),
                    });
                }
            }
        }
    }

    /// Sends one request. Reads (`idempotent`) are retried on connection
    /// loss until the request timeout; writes are not, since their outcome
    /// is unknown. A successful response waits for the events it follows.
    pub(crate) async fn call<Resp, F, Fut>(&self, idempotent: bool, mut send: F) -> Result<Resp>
    where
        Resp: Headed,
        F: FnMut(Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let conn = self.current(deadline).await?;
            let err = match tokio::time::timeout_at(deadline, send(conn.rpc.clone())).await {
                Err(_) => return Err(Error::OperationTimeout),
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    if let Some(header) = response.header() {
                        self.note_zxid(header.zxid);
                        self.await_events(header.watch_seq, conn.generation).await;
                    }
                    return Ok(response);
                }
                Ok(Err(status)) => Error::from_status(&status),
            };
            if err.is_session_gone() {
                self.finish(SessionState::Expired);
                return Err(err);
            }
            if err.is_connection_loss() {
                self.request_reconnect(conn.generation);
                if idempotent && Instant::now() + backoff < deadline {
                    debug!(endpoint = conn.endpoint, "retrying a read after: {err}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            }
            return Err(err);
        }
    }

    /// The ordering barrier: holds a response until `target` events have
    /// been received. A stream that fell behind is reopened (it resumes after
    /// the last event received); if even that does not bring the events, the
    /// response is released anyway rather than hanging the caller.
    async fn await_events(&self, target: u64, generation: u64) {
        let wait = self.config.event_barrier_timeout;
        if self.barrier.wait_for(target, wait).await || self.state.borrow().is_terminal() {
            return;
        }
        warn!(
            target,
            received = self.barrier.received(),
            "watch events are late; reopening the event stream"
        );
        if self.endpoint_generation() == Some(generation) {
            self.request_reopen();
        }
        if self.barrier.wait_for(target, wait * 2).await {
            return;
        }
        warn!(
            target,
            received = self.barrier.received(),
            "answering without the watch events the server says precede the answer"
        );
    }

    /// Ends the session on the server. The supervisor is stopped first, so
    /// that the streams the server ends on closing are not taken for a
    /// failure worth reconnecting over.
    pub(crate) async fn close(&self) -> Result<()> {
        if self.state.borrow().is_terminal() {
            return Ok(());
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let conn = match self.current(deadline).await {
            Ok(conn) => conn,
            Err(err) if matches!(err, Error::Closed) || err.is_session_gone() => return Ok(()),
            Err(err) => {
                self.finish(SessionState::Closed);
                return Err(err);
            }
        };
        self.shutdown_with(Shutdown::Closed);
        let request = pb::CloseSessionRequest {
            session_id: self.session_id,
        };
        let mut rpc = conn.rpc.clone();
        let closed = within(
            self.config.request_timeout,
            "CloseSession",
            rpc.close_session(request),
        )
        .await;
        self.finish(SessionState::Closed);
        match closed {
            Ok(_) => {
                info!(
                    session_id = format_args!("{:#x}", self.session_id),
                    "session closed"
                );
                Ok(())
            }
            Err(err) if err.is_session_gone() => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn wind_down(&self, conn: &Conn) {
        let why = *self.shutdown.borrow();
        match why {
            Shutdown::Expired => self.finish(SessionState::Expired),
            Shutdown::Dropped => {
                let mut rpc = conn.rpc.clone();
                let request = pb::CloseSessionRequest {
                    session_id: self.session_id,
                };
                let limit = self.config.connect_timeout.min(Duration::from_secs(2));
                match within(limit, "CloseSession", rpc.close_session(request)).await {
                    Ok(_) => debug!("session closed as its client was dropped"),
                    Err(err) => debug!("closing the dropped client's session failed: {err}"),
                }
                self.finish(SessionState::Closed);
            }
            Shutdown::Closed | Shutdown::Running => self.finish(SessionState::Closed),
        }
    }

    pub(crate) async fn get_data(&self, path: &str, watch: bool) -> Result<pb::GetDataResponse> {
        self.get_data_with(path, watch, false).await
    }

    pub(crate) async fn get_data_with(
        &self,
        path: &str,
        watch: bool,
        linearizable: bool,
    ) -> Result<pb::GetDataResponse> {
        let request = pb::GetDataRequest {
            session_id: self.session_id,
            path: path.to_owned(),
            watch,
            linearizable,
        };
        self.call(true, |mut rpc| {
            let request = request.clone();
            async move { rpc.get_data(request).await }
        })
        .await
        .map_err(|e| e.with_default_path(path))
    }

    pub(crate) async fn exists(&self, path: &str, watch: bool) -> Result<pb::ExistsResponse> {
        self.exists_with(path, watch, false).await
    }

    pub(crate) async fn exists_with(
        &self,
        path: &str,
        watch: bool,
        linearizable: bool,
    ) -> Result<pb::ExistsResponse> {
        let request = pb::ExistsRequest {
            session_id: self.session_id,
            path: path.to_owned(),
            watch,
            linearizable,
        };
        self.call(true, |mut rpc| {
            let request = request.clone();
            async move { rpc.exists(request).await }
        })
        .await
        .map_err(|e| e.with_default_path(path))
    }

    pub(crate) async fn get_children(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<pb::GetChildrenResponse> {
        self.get_children_with(path, watch, false).await
    }

    pub(crate) async fn get_children_with(
        &self,
        path: &str,
        watch: bool,
        linearizable: bool,
    ) -> Result<pb::GetChildrenResponse> {
        let request = pb::GetChildrenRequest {
            session_id: self.session_id,
            path: path.to_owned(),
            watch,
            linearizable,
        };
        self.call(true, |mut rpc| {
            let request = request.clone();
            async move { rpc.get_children(request).await }
        })
        .await
        .map_err(|e| e.with_default_path(path))
    }

    pub(crate) async fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> Result<pb::AddWatchResponse> {
        let request = pb::AddWatchRequest {
            session_id: self.session_id,
            path: path.to_owned(),
            mode: mode as i32,
        };
        // Adding a watch that exists is not an error, so a retry is safe.
        self.call(true, |mut rpc| {
            let request = request.clone();
            async move { rpc.add_watch(request).await }
        })
        .await
        .map_err(|e| e.with_default_path(path))
    }
}
