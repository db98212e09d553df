//! The client against an in-process mock of the Coordination service:
//! nodes that share one tree and session table but number watch events per
//! node (as synod-node does), each behind a TCP proxy that can be killed.
//! Covers what unit tests cannot: the ordering barrier over real HTTP/2
//! streams, moving a session to another node, re-set watches, expiry.

// The mock's helpers live outside #[test] functions; a panic there is a
// test failure like any other.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use prost::Message;
use synod_client::{
    AddWatchMode, Client, ClientConfig, CreateOptions, Error, EventType, SessionState,
};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_server::{Coordination, CoordinationServer};
use synod_proto::v1::pipeline_request::Call;
use synod_proto::v1::pipeline_response::Result as Answer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn fail(code: pb::ErrorCode, path: &str) -> Status {
    let detail = pb::ErrorDetail {
        code: code as i32,
        path: path.to_owned(),
        message: format!("{} {path}", code.as_str_name()),
    };
    Status::with_details(
        tonic::Code::FailedPrecondition,
        "mock error",
        detail.encode_to_vec().into(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Persistent,
    Recursive,
}

#[derive(Default)]
struct Outbox {
    seq: u64,
    recent: Vec<pb::WatchEvent>,
    subscriber: Option<mpsc::UnboundedSender<Result<pb::WatchEvent, Status>>>,
}

#[derive(Default)]
struct NodeState {
    outboxes: HashMap<i64, Outbox>,
    watches: Vec<(i64, String, Kind)>,
}

/// The replicated part: tree and sessions.
#[derive(Default)]
struct Shared {
    tree: BTreeMap<String, (Vec<u8>, pb::Stat)>,
    sessions: HashSet<i64>,
    nodes: Vec<Arc<MockNode>>,
}

struct Ensemble {
    shared: Mutex<Shared>,
    zxid: AtomicI64,
    next_session: AtomicI64,
}

struct MockNode {
    ensemble: Arc<Ensemble>,
    state: Mutex<NodeState>,
    /// How long events wait before they are written to the stream.
    event_delay: Duration,
    delayed: mpsc::UnboundedSender<(i64, pb::WatchEvent)>,
}

impl Ensemble {
    fn new() -> Arc<Ensemble> {
        let ensemble = Arc::new(Ensemble {
            shared: Mutex::new(Shared::default()),
            zxid: AtomicI64::new(1),
            next_session: AtomicI64::new(0x100),
        });
        ensemble
            .shared
            .lock()
            .unwrap()
            .tree
            .insert("/".to_owned(), (Vec::new(), pb::Stat::default()));
        ensemble
    }

    fn expire(&self, session: i64) {
        self.shared.lock().unwrap().sessions.remove(&session);
    }

    fn has_session(&self, session: i64) -> bool {
        self.shared.lock().unwrap().sessions.contains(&session)
    }

    fn write_node(&self, path: &str, data: &[u8]) {
        let zxid = self.zxid.fetch_add(1, Ordering::SeqCst) + 1;
        let mut shared = self.shared.lock().unwrap();
        let created = !shared.tree.contains_key(path);
        let stat = pb::Stat {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            data_length: data.len() as i32,
            ..pb::Stat::default()
        };
        let entry = shared
            .tree
            .entry(path.to_owned())
            .or_insert((Vec::new(), stat));
        entry.0 = data.to_vec();
        entry.1.mzxid = zxid;
        if !created {
            entry.1.version += 1;
        }
        let kind = if created {
            pb::EventType::NodeCreated
        } else {
            pb::EventType::NodeDataChanged
        };
        let nodes = shared.nodes.clone();
        drop(shared);
        for node in nodes {
            node.fire(path, kind, zxid);
        }
    }
}

impl MockNode {
    fn new(ensemble: &Arc<Ensemble>, event_delay: Duration) -> Arc<MockNode> {
        let (delayed, mut rx) = mpsc::unbounded_channel::<(i64, pb::WatchEvent)>();
        let node = Arc::new(MockNode {
            ensemble: Arc::clone(ensemble),
            state: Mutex::new(NodeState::default()),
            event_delay,
            delayed,
        });
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            while let Some((session, event)) = rx.recv().await {
                sleep(event_delay).await;
                let Some(node) = weak.upgrade() else { return };
                let mut state = node.state.lock().unwrap();
                if let Some(tx) = state
                    .outboxes
                    .get_mut(&session)
                    .and_then(|o| o.subscriber.as_ref())
                {
                    let _ = tx.send(Ok(event));
                }
            }
        });
        ensemble
            .shared
            .lock()
            .unwrap()
            .nodes
            .push(Arc::clone(&node));
        node
    }

    fn fire(&self, path: &str, kind: pb::EventType, zxid: i64) {
        let mut state = self.state.lock().unwrap();
        let mut hit: Vec<i64> = Vec::new();
        state.watches.retain(|(session, wpath, wkind)| {
            let matches = match wkind {
                Kind::Data => wpath == path && kind != pb::EventType::NodeChildrenChanged,
                Kind::Persistent => wpath == path,
                Kind::Recursive => {
                    (wpath == "/" || path == wpath || path.starts_with(&format!("{wpath}/")))
                        && kind != pb::EventType::NodeChildrenChanged
                }
            };
            if matches && !hit.contains(session) {
                hit.push(*session);
            }
            !(matches && *wkind == Kind::Data)
        });
        for session in hit {
            let outbox = state.outboxes.entry(session).or_default();
            outbox.seq += 1;
            let event = pb::WatchEvent {
                r#type: kind as i32,
                path: path.to_owned(),
                zxid,
                seq: outbox.seq,
            };
            outbox.recent.push(event.clone());
            if self.event_delay.is_zero() {
                if let Some(tx) = &outbox.subscriber {
                    let _ = tx.send(Ok(event));
                }
            } else {
                let _ = self.delayed.send((session, event));
            }
        }
    }

    fn header(&self, session: i64) -> Option<pb::ResponseHeader> {
        let state = self.state.lock().unwrap();
        Some(pb::ResponseHeader {
            zxid: self.ensemble.zxid.load(Ordering::SeqCst),
            watch_seq: state.outboxes.get(&session).map_or(0, |o| o.seq),
        })
    }

    fn live(&self, session: i64) -> Result<(), Status> {
        if session == 0 || self.ensemble.has_session(session) {
            Ok(())
        } else {
            Err(fail(pb::ErrorCode::SessionExpired, ""))
        }
    }

    fn watch(&self, session: i64, path: &str, kind: Kind) {
        self.state
            .lock()
            .unwrap()
            .watches
            .push((session, path.to_owned(), kind));
    }
}

/// Shares a node between the gRPC service and the test.
struct Service(Arc<MockNode>);

#[tonic::async_trait]
impl Coordination for Service {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Reply<pb::CreateSessionResponse> {
        let id = self.0.ensemble.next_session.fetch_add(1, Ordering::SeqCst);
        self.0.ensemble.shared.lock().unwrap().sessions.insert(id);
        Ok(Response::new(pb::CreateSessionResponse {
            header: self.0.header(id),
            session_id: id,
            timeout_ms: request.into_inner().timeout_ms.clamp(4000, 40000),
        }))
    }

    type KeepAliveStream = BoxStream<pb::KeepAliveResponse>;

    async fn keep_alive(
        &self,
        request: Request<tonic::Streaming<pb::KeepAliveRequest>>,
    ) -> Reply<Self::KeepAliveStream> {
        let mut pings = request.into_inner();
        let ensemble = Arc::clone(&self.0.ensemble);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(ping)) = pings.next().await {
                if ensemble.has_session(ping.session_id) {
                    let _ = tx.send(Ok(pb::KeepAliveResponse {
                        session_id: ping.session_id,
                        timeout_ms: 4000,
                    }));
                } else {
                    let _ = tx.send(Err(fail(pb::ErrorCode::SessionExpired, "")));
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Reply<pb::CloseSessionResponse> {
        let id = request.into_inner().session_id;
        let header = self.0.header(id);
        self.0.ensemble.expire(id);
        Ok(Response::new(pb::CloseSessionResponse { header }))
    }

    async fn add_auth(&self, _: Request<pb::AddAuthRequest>) -> Reply<pb::AddAuthResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn create(&self, request: Request<pb::CreateRequest>) -> Reply<pb::CreateResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        {
            let shared = self.0.ensemble.shared.lock().unwrap();
            if shared.tree.contains_key(&r.path) {
                return Err(fail(pb::ErrorCode::NodeExists, &r.path));
            }
        }
        self.0.ensemble.write_node(&r.path, &r.data);
        let stat = self.0.ensemble.shared.lock().unwrap().tree[&r.path].1;
        Ok(Response::new(pb::CreateResponse {
            header: self.0.header(r.session_id),
            path: r.path,
            stat: Some(stat),
        }))
    }

    async fn delete(&self, _: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn set_data(&self, request: Request<pb::SetDataRequest>) -> Reply<pb::SetDataResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        if !self
            .0
            .ensemble
            .shared
            .lock()
            .unwrap()
            .tree
            .contains_key(&r.path)
        {
            return Err(fail(pb::ErrorCode::NoNode, &r.path));
        }
        self.0.ensemble.write_node(&r.path, &r.data);
        let stat = self.0.ensemble.shared.lock().unwrap().tree[&r.path].1;
        Ok(Response::new(pb::SetDataResponse {
            header: self.0.header(r.session_id),
            stat: Some(stat),
        }))
    }

    async fn check(&self, _: Request<pb::CheckRequest>) -> Reply<pb::CheckResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn set_acl(&self, _: Request<pb::SetAclRequest>) -> Reply<pb::SetAclResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn multi(&self, _: Request<pb::MultiRequest>) -> Reply<pb::MultiResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn get_data(&self, request: Request<pb::GetDataRequest>) -> Reply<pb::GetDataResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        let node = self
            .0
            .ensemble
            .shared
            .lock()
            .unwrap()
            .tree
            .get(&r.path)
            .cloned();
        let Some((data, stat)) = node else {
            return Err(fail(pb::ErrorCode::NoNode, &r.path));
        };
        if r.watch {
            self.0.watch(r.session_id, &r.path, Kind::Data);
        }
        Ok(Response::new(pb::GetDataResponse {
            header: self.0.header(r.session_id),
            data,
            stat: Some(stat),
        }))
    }

    async fn exists(&self, request: Request<pb::ExistsRequest>) -> Reply<pb::ExistsResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        let stat = self
            .0
            .ensemble
            .shared
            .lock()
            .unwrap()
            .tree
            .get(&r.path)
            .map(|n| n.1);
        if r.watch {
            self.0.watch(r.session_id, &r.path, Kind::Data);
        }
        Ok(Response::new(pb::ExistsResponse {
            header: self.0.header(r.session_id),
            stat,
        }))
    }

    async fn get_children(
        &self,
        _: Request<pb::GetChildrenRequest>,
    ) -> Reply<pb::GetChildrenResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn get_all_children_number(
        &self,
        _: Request<pb::GetAllChildrenNumberRequest>,
    ) -> Reply<pb::GetAllChildrenNumberResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn get_ephemerals(
        &self,
        _: Request<pb::GetEphemeralsRequest>,
    ) -> Reply<pb::GetEphemeralsResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn get_acl(&self, _: Request<pb::GetAclRequest>) -> Reply<pb::GetAclResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn multi_read(&self, _: Request<pb::MultiReadRequest>) -> Reply<pb::MultiReadResponse> {
        Err(Status::unimplemented("mock"))
    }

    async fn sync(&self, request: Request<pb::SyncRequest>) -> Reply<pb::SyncResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        Ok(Response::new(pb::SyncResponse {
            header: self.0.header(r.session_id),
        }))
    }

    async fn add_watch(
        &self,
        request: Request<pb::AddWatchRequest>,
    ) -> Reply<pb::AddWatchResponse> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        let kind = if r.mode == pb::AddWatchMode::PersistentRecursive as i32 {
            Kind::Recursive
        } else {
            Kind::Persistent
        };
        let mut state = self.0.state.lock().unwrap();
        if !state
            .watches
            .iter()
            .any(|(s, p, k)| *s == r.session_id && *p == r.path && *k == kind)
        {
            state.watches.push((r.session_id, r.path.clone(), kind));
        }
        drop(state);
        Ok(Response::new(pb::AddWatchResponse {
            header: self.0.header(r.session_id),
        }))
    }

    async fn remove_watches(
        &self,
        _: Request<pb::RemoveWatchesRequest>,
    ) -> Reply<pb::RemoveWatchesResponse> {
        Err(Status::unimplemented("mock"))
    }

    type WatchEventsStream = BoxStream<pb::WatchEvent>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        let r = request.into_inner();
        self.0.live(r.session_id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.0.state.lock().unwrap();
        let outbox = state.outboxes.entry(r.session_id).or_default();
        for event in outbox.recent.iter().filter(|e| e.seq > r.after_seq) {
            let _ = tx.send(Ok(event.clone()));
        }
        outbox.subscriber = Some(tx);
        drop(state);
        // The mock only ends a stream when the session expires.
        let ensemble = Arc::clone(&self.0.ensemble);
        let session = r.session_id;
        let stream = UnboundedReceiverStream::new(rx).take_while(move |_| {
            let alive = ensemble.has_session(session);
            async move { alive }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type PipelineStream = BoxStream<pb::PipelineResponse>;

    /// Runs each pipelined call through the mock's unary method of the
    /// same name, concurrently, as the real node does.
    async fn pipeline(
        &self,
        request: Request<tonic::Streaming<pb::PipelineRequest>>,
    ) -> Reply<Self::PipelineStream> {
        let mut requests = request.into_inner();
        let node = Arc::clone(&self.0);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(request)) = requests.next().await {
                let service = Service(Arc::clone(&node));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match service.pipelined(request.call).await {
                        Ok(answer) => answer,
                        Err(status) => Answer::Error(pb::CallError {
                            code: status.code() as i32,
                            message: status.message().to_owned(),
                            details: status.details().to_vec(),
                        }),
                    };
                    let _ = tx.send(Ok(pb::PipelineResponse {
                        id: request.id,
                        result: Some(result),
                    }));
                });
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

impl Service {
    async fn pipelined(&self, call: Option<Call>) -> Result<Answer, Status> {
        let answer = match call {
            Some(Call::CreateSession(r)) => {
                Answer::CreateSession(self.create_session(Request::new(r)).await?.into_inner())
            }
            Some(Call::CloseSession(r)) => {
                Answer::CloseSession(self.close_session(Request::new(r)).await?.into_inner())
            }
            Some(Call::Create(r)) => {
                Answer::Create(self.create(Request::new(r)).await?.into_inner())
            }
            Some(Call::SetData(r)) => {
                Answer::SetData(self.set_data(Request::new(r)).await?.into_inner())
            }
            Some(Call::GetData(r)) => {
                Answer::GetData(self.get_data(Request::new(r)).await?.into_inner())
            }
            Some(Call::Exists(r)) => {
                Answer::Exists(self.exists(Request::new(r)).await?.into_inner())
            }
            Some(Call::Sync(r)) => Answer::Sync(self.sync(Request::new(r)).await?.into_inner()),
            Some(Call::AddWatch(r)) => {
                Answer::AddWatch(self.add_watch(Request::new(r)).await?.into_inner())
            }
            Some(Call::RemoveWatches(r)) => {
                Answer::RemoveWatches(self.remove_watches(Request::new(r)).await?.into_inner())
            }
            _ => return Err(Status::unimplemented("mock")),
        };
        Ok(answer)
    }
}

/// A running mock node behind a killable TCP proxy.
struct Running {
    node: Arc<MockNode>,
    endpoint: String,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
    _server: JoinHandle<()>,
}

impl Running {
    async fn start(ensemble: &Arc<Ensemble>, event_delay: Duration) -> Running {
        let node = MockNode::new(ensemble, event_delay);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = listener.local_addr().unwrap();
        let service = CoordinationServer::new(Service(Arc::clone(&node)));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("127.0.0.1:{}", front.local_addr().unwrap().port());
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn(proxy(front, backend, Arc::clone(&connections)));
        Running {
            node,
            endpoint,
            accept,
            connections,
            _server: server,
        }
    }

    /// The node "crashes": connections break, new ones are refused.
    fn kill(&self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

async fn proxy(front: TcpListener, backend: SocketAddr, connections: Arc<Mutex<JoinSet<()>>>) {
    while let Ok((mut inbound, _)) = front.accept().await {
        let Ok(mut outbound) = TcpStream::connect(backend).await else {
            continue;
        };
        connections.lock().unwrap().spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

fn config(endpoints: &[&Running]) -> ClientConfig {
    ClientConfig {
        endpoints: endpoints.iter().map(|r| r.endpoint.clone()).collect(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        event_barrier_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn errors_arrive_typed() {
    let ensemble = Ensemble::new();
    let node = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&node])).await.unwrap();
    assert_eq!(
        client.get_data("/missing").await,
        Err(Error::NoNode {
            path: "/missing".into()
        })
    );
    client
        .create("/a", b"1", &CreateOptions::default())
        .await
        .unwrap();
    let err = client
        .create("/a", b"1", &CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "node /a already exists");
    assert!(matches!(
        client.get_acl("/a").await,
        Err(Error::Unimplemented { .. })
    ));
    client.close().await.unwrap();
    assert_eq!(client.state(), SessionState::Closed);
    assert!(!ensemble.has_session(client.session_id()));
    assert_eq!(client.get_data("/a").await, Err(Error::Closed));
}

#[tokio::test]
async fn a_response_waits_for_the_events_before_it() {
    let ensemble = Ensemble::new();
    let delay = Duration::from_millis(300);
    let node = Running::start(&ensemble, delay).await;
    let client = Client::connect(config(&[&node])).await.unwrap();
    client
        .create("/x", b"0", &CreateOptions::default())
        .await
        .unwrap();
    let (_, _, watch) = client.get_data_watch("/x").await.unwrap();
    let mut all = client.watch_events();

    let started = Instant::now();
    client.set_data("/x", b"1", None).await.unwrap();
    // The event left the server before the response but was held back for
    // `delay`; the response must not overtake it.
    assert!(
        started.elapsed() >= delay,
        "returned after {:?}",
        started.elapsed()
    );
    let event = watch
        .now_or_never()
        .expect("event delivered before the response")
        .unwrap();
    assert_eq!(event.event_type, EventType::NodeDataChanged);
    assert_eq!(event.seq, 1);
    let seen = all.next().now_or_never().flatten().expect("fan-out too");
    assert_eq!(seen.path, "/x");
}

#[tokio::test]
async fn a_session_moves_to_another_node_and_keeps_its_watches() {
    let ensemble = Ensemble::new();
    let first = Running::start(&ensemble, Duration::ZERO).await;
    let second = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&first, &second])).await.unwrap();
    let session = client.session_id();
    assert_eq!(
        client.endpoint().as_deref(),
        Some(&*format!("http://{}", first.endpoint))
    );

    let mut tree = client
        .watch("/app", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let (exists, appears) = client.exists_watch("/late").await.unwrap();
    assert!(exists.is_none());
    for i in 0..3 {
        client
            .create(&format!("/app/{i}"), b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    for i in 0..3 {
        let event = tree.next().await.unwrap();
        assert_eq!(event.path, format!("/app/{i}"));
        assert_eq!(event.seq, i + 1);
    }

    first.kill();
    // A change while the client is away: only a re-check can report it.
    ensemble.write_node("/late", b"here");
    let mut states = client.state_changes();
    timeout(Duration::from_secs(5), async {
        while client.endpoint().as_deref() != Some(&*format!("http://{}", second.endpoint)) {
            states.changed().await.unwrap();
        }
    })
    .await
    .expect("moved to the second node");
    assert_eq!(
        client.session_id(),
        session,
        "the session survives the move"
    );

    let missed = timeout(Duration::from_secs(5), appears)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missed.event_type, EventType::NodeCreated);
    assert_eq!(missed.seq, 0, "made up by the client's re-check");

    // The second node counts this session's events from 1 again; they must
    // not be taken for duplicates of the first node's 1..3.
    timeout(Duration::from_secs(5), async {
        loop {
            let set = second
                .node
                .state
                .lock()
                .unwrap()
                .watches
                .iter()
                .any(|(s, p, k)| *s == session && p == "/app" && *k == Kind::Recursive);
            if set {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the persistent watch is set again on the second node");
    ensemble.write_node("/app/after", b"");
    let next = timeout(Duration::from_secs(1), tree.next())
        .await
        .expect("the first event after the move arrives")
        .unwrap();
    assert_eq!(next.path, "/app/after");
    assert_eq!(next.seq, 1, "numbered by the second node");
    assert!(
        second
            .node
            .state
            .lock()
            .unwrap()
            .outboxes
            .contains_key(&session)
    );
    assert_eq!(client.get_data("/late").await.unwrap().0, b"here");
}

#[tokio::test]
async fn expiry_ends_calls_and_streams() {
    let ensemble = Ensemble::new();
    let node = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&node])).await.unwrap();
    let mut events = client.watch_events();
    let (_, watch) = client.exists_watch("/never").await.unwrap();
    ensemble.expire(client.session_id());
    assert_eq!(
        client.get_data("/").await.map(|_| ()),
        Err(Error::SessionExpired)
    );
    assert_eq!(client.state(), SessionState::Expired);
    assert_eq!(
        timeout(Duration::from_secs(2), events.next())
            .await
            .unwrap(),
        None
    );
    assert_eq!(watch.await, Err(Error::SessionExpired));
    assert_eq!(
        client
            .create("/x", b"", &CreateOptions::default())
            .await
            .map(|_| ()),
        Err(Error::SessionExpired)
    );
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_session() {
    let ensemble = Ensemble::new();
    let node = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&node])).await.unwrap();
    let session = client.session_id();
    let clone = client.clone();
    drop(client);
    sleep(Duration::from_millis(100)).await;
    assert!(ensemble.has_session(session), "a clone still holds it");
    drop(clone);
    timeout(Duration::from_secs(3), async {
        while ensemble.has_session(session) {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("session closed after the last drop");
}

#[tokio::test]
async fn connect_skips_dead_endpoints() {
    let ensemble = Ensemble::new();
    let dead = Running::start(&ensemble, Duration::ZERO).await;
    dead.kill();
    let live = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&dead, &live])).await.unwrap();
    assert_eq!(
        client.endpoint().as_deref(),
        Some(&*format!("http://{}", live.endpoint))
    );
    let err = Client::connect(config(&[&dead])).await.unwrap_err();
    assert!(matches!(err, Error::NoServer { .. }), "{err}");
}

#[tokio::test]
async fn a_dropped_event_stream_is_reopened_on_the_same_node() {
    let ensemble = Ensemble::new();
    let first = Running::start(&ensemble, Duration::ZERO).await;
    let second = Running::start(&ensemble, Duration::ZERO).await;
    let client = Client::connect(config(&[&first, &second])).await.unwrap();
    let session = client.session_id();
    let mut watch = client.watch("/r", AddWatchMode::Persistent).await.unwrap();
    ensemble.write_node("/r", b"1");
    assert_eq!(watch.next().await.unwrap().seq, 1);

    // synod-node drops the stream of a client that falls behind, and the
    // events queued meanwhile wait in its buffer.
    let dropped = first
        .node
        .state
        .lock()
        .unwrap()
        .outboxes
        .get_mut(&session)
        .unwrap()
        .subscriber
        .take();
    drop(dropped);
    ensemble.write_node("/r", b"2");
    let event = timeout(Duration::from_secs(3), watch.next())
        .await
        .expect("the event waiting in the buffer arrives")
        .unwrap();
    assert_eq!(
        (event.seq, event.event_type),
        (2, EventType::NodeDataChanged)
    );
    assert_eq!(
        client.endpoint().as_deref(),
        Some(&*format!("http://{}", first.endpoint)),
        "no move for a dropped event stream"
    );
}
