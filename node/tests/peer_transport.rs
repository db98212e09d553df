//! The peer transport on loopback: frames flow between two nodes, a peer
//! that starts late is reached once it is up, a name that does not resolve
//! is retried without harm, a connection that stops answering is given up
//! for a new one, and frames from outside the configuration, for another
//! node or another ensemble, or over the size limit are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use synod_node::peer::{self, Inbound, PeerConfig, PeerSender, SendError};
use synod_proto::v1::peer_server::{Peer, PeerServer};
use synod_proto::v1::{PeerExchangeEnd, PeerFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;

fn config(node_id: u64, peers: &[(u64, String)]) -> PeerConfig {
    PeerConfig {
        cluster_id: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        cluster: "test".into(),
        node_id,
        incarnation: 100 + node_id,
        abstaining: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        peers: peers.iter().cloned().collect::<BTreeMap<_, _>>(),
        max_frame_bytes: 1024,
        queue: 64,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        keepalive: Duration::from_millis(500),
        stall_timeout: Duration::from_secs(2),
        address_template: None,
        tls: None,
    }
}

async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

/// Starts a node's transport and serves its peer service on `addr`.
async fn node(config: PeerConfig, addr: SocketAddr) -> (PeerSender, mpsc::Receiver<Inbound>) {
    let (tx, rx) = mpsc::channel(64);
    let (sender, service) = peer::start(config, tx);
    serve(addr, service).await;
    (sender, rx)
}

async fn receive(rx: &mut mpsc::Receiver<Inbound>) -> Option<Inbound> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn frames_flow_both_ways_and_a_late_peer_is_reached() {
    let (a, b) = (free_addr().await, free_addr().await);
    let (to_b, mut at_a) = node(config(1, &[(2, b.to_string())]), a).await;
    // B is not up yet: the frame waits in the queue while A retries.
    to_b.send(2, b"hello".to_vec()).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (to_a, mut at_b) = node(config(2, &[(1, a.to_string())]), b).await;
    assert_eq!(
        receive(&mut at_b).await,
        Some(Inbound {
            from: 1,
            incarnation: 101,
            abstaining: false,
            payload: b"hello".to_vec().into()
        })
    );
    to_a.send(1, b"back".to_vec()).unwrap();
    assert_eq!(
        receive(&mut at_a).await,
        Some(Inbound {
            from: 2,
            incarnation: 102,
            abstaining: false,
            payload: b"back".to_vec().into()
        })
    );
    // Frames say whether their sender abstains, as it says now.
    to_a.set_abstaining(true);
    to_a.send(1, b"abstaining".to_vec()).unwrap();
    assert_eq!(
        receive(&mut at_a)
            .await
            .map(|f| (f.abstaining, f.payload.to_vec())),
        Some((true, b"abstaining".to_vec()))
    );
    for i in 0..20u8 {
        to_b.send(2, vec![i]).unwrap();
    }
    for i in 0..20u8 {
        assert_eq!(
            receive(&mut at_b).await.map(|f| f.payload.to_vec()),
            Some(vec![i]),
            "in order"
        );
    }
}

/// Sends `payload` to node 2 every 100 ms until `inbound` receives it;
/// false if that does not happen within `limit`.
async fn reaches(
    sender: &PeerSender,
    inbound: &mut mpsc::Receiver<Vec<u8>>,
    payload: &[u8],
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        // A full queue is fine: the link is what is being waited for.
        let _ = sender.send(2, payload.to_vec());
        if let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(100), inbound.recv()).await
            && frame == payload
        {
            return true;
        }
    }
    false
}

/// A peer that takes connections and never reads them (a host that froze,
/// a middlebox that lost the flow) holds the link until pings find it out;
/// once the peer answers at the same address, frames reach it.
#[tokio::test]
async fn a_connection_that_never_answers_is_given_up() {
    let (a, b) = (free_addr().await, free_addr().await);
    let (to_b, _at_a) = node(config(1, &[(2, b.to_string())]), a).await;
    let hole = tokio::net::TcpListener::bind(b).await.expect("bind");
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Ok((connection, _))) = tokio::time::timeout_at(until, hole.accept()).await {
            held.push(connection);
        }
        // The listener closes here; the connections stay open, unread.
        held
    });
    for _ in 0..50 {
        let _ = to_b.send(2, vec![7; 1000]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = holding.await.expect("holder");
    assert!(!held.is_empty(), "the link connected to the silent peer");
    let (tx, mut at_b) = mpsc::channel(1024);
    serve(b, PeerServer::new(Recording { tx })).await;
    assert!(
        reaches(&to_b, &mut at_b, b"after", Duration::from_secs(10)).await,
        "frames reach the peer once it answers"
    );
    drop(held);
}

/// A peer service that records the payloads it receives.
struct Recording {
    tx: mpsc::Sender<Vec<u8>>,
}

#[tonic::async_trait]
impl Peer for Recording {
    async fn exchange(
        &self,
        request: tonic::Request<tonic::Streaming<PeerFrame>>,
    ) -> Result<tonic::Response<PeerExchangeEnd>, tonic::Status> {
        let mut frames = request.into_inner();
        while let Some(frame) = frames.next().await {
            let _ = self.tx.send(frame?.payload.to_vec()).await;
        }
        Ok(tonic::Response::new(PeerExchangeEnd {}))
    }
}

/// Serves `service` on `addr`.
async fn serve<S: Peer>(addr: SocketAddr, service: PeerServer<S>) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind peer port");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
}

#[tokio::test]
async fn unresolvable_names_are_retried_and_limits_enforced() {
    let a = free_addr().await;
    let (sender, _inbound) = node(
        config(1, &[(2, "synod-1.not-scheduled.invalid:7100".into())]),
        a,
    )
    .await;
    for _ in 0..10 {
        sender.send(2, vec![1]).unwrap();
    }
    assert_eq!(sender.send(3, vec![1]), Err(SendError::UnknownPeer(3)));
    assert_eq!(
        sender.send(2, vec![0; 2000]),
        Err(SendError::TooLarge {
            len: 2000,
            limit: 1024
        })
    );
    // The queue bounds what waits for an absent peer.
    let mut dropped = false;
    for _ in 0..200 {
        dropped |= matches!(sender.send(2, vec![1]), Err(SendError::QueueFull(2)));
    }
    assert!(dropped);
}

#[tokio::test]
async fn strangers_and_misaddressed_frames_are_refused() {
    let b = free_addr().await;
    let (_to_a, mut at_b) = node(config(2, &[(1, "127.0.0.1:9".into())]), b).await;

    // Node 9 is not a member of B's configuration.
    let (stranger, _) = node(config(9, &[(2, b.to_string())]), free_addr().await).await;
    stranger.send(2, b"let me in".to_vec()).unwrap();
    // A member of another ensemble.
    let mut other = config(1, &[(2, b.to_string())]);
    other.cluster = "other".into();
    let (foreign, _) = node(other, free_addr().await).await;
    foreign.send(2, b"wrong ensemble".to_vec()).unwrap();
    // A member whose limit is larger than B's.
    let mut big = config(1, &[(2, b.to_string())]);
    big.max_frame_bytes = 1 << 20;
    let (oversize, _) = node(big, free_addr().await).await;
    oversize.send(2, vec![0; 4096]).unwrap();

    assert_eq!(
        tokio::time::timeout(Duration::from_millis(800), at_b.recv())
            .await
            .ok()
            .flatten(),
        None,
        "nothing refused reaches the node"
    );
}
