//! Peer transport: carries opaque consensus frames between the nodes of an
//! ensemble over gRPC client streams. One task per peer (`link`) dials it,
//! resolving its name again on every attempt (a StatefulSet pod that is not
//! scheduled yet has no DNS record; that is retried with backoff, never
//! fatal), and forwards queued frames until the stream breaks or stops
//! moving. Inbound streams are checked before a single frame is accepted:
//! the sender must be a member, the frame addressed to this node, in this
//! ensemble, and within the size limit. Delivery is best effort: consensus
//! tolerates loss and retransmits.
//!
//! With TLS, peers dial and accept mutual TLS against the ensemble's CA,
//! and a stream is refused unless the sender's certificate is valid for
//! the host of the address the node it claims to be is a member at: a
//! certificate from the CA does not let one member speak for another.

pub mod frame;
mod link;

use link::Link;
pub use link::{LinkState, LinkStats};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use synod_proto::v1::peer_server::{Peer, PeerServer};
use synod_proto::v1::{PeerExchangeEnd, PeerFrame};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

/// A node id as the consensus core numbers members.
pub type NodeId = u64;

/// How this node talks to its peers.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub cluster: String,
    /// This node's cluster id (0: not known yet), kept current by the
    /// identity file.
    pub cluster_id: Arc<std::sync::atomic::AtomicU64>,
    pub node_id: NodeId,
    /// This node's incarnation, stamped on every frame.
    pub incarnation: u64,
    /// Whether this node abstains from voting, kept current by the driver
    /// and stamped on every frame.
    pub abstaining: Arc<std::sync::atomic::AtomicBool>,
    /// Every other member: id and `host:port` of its peer listener.
    pub peers: BTreeMap<NodeId, String>,
    /// Largest payload accepted or sent, in bytes.
    pub max_frame_bytes: usize,
    /// Frames queued per peer while it is unreachable; more are dropped.
    pub queue: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often an HTTP/2 ping checks a connection to a peer, and how long
    /// its answer may take before the connection is closed.
    pub keepalive: Duration,
    /// A stream with frames waiting that takes none for this long is
    /// closed and dialed again.
    pub stall_timeout: Duration,
    /// Where a node not in `peers` listens, with `{id}` or `{ordinal}`
    /// (id - 1) standing for its number: `synod-{ordinal}.synod-peers:7100`
    /// for a StatefulSet. With it, members added later (Admin API) are
    /// reached without a restart, and frames from any node id are taken.
    pub address_template: Option<String>,
    /// Mutual TLS with the other members, if on.
    pub tls: Option<Arc<synod_tls::Tls>>,
}

/// The address `template` gives node `id`.
pub fn templated_address(template: &str, id: NodeId) -> String {
    template
        .replace("{id}", &id.to_string())
        .replace("{ordinal}", &id.saturating_sub(1).to_string())
}

/// A frame that arrived from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from: NodeId,
    /// The sender's incarnation and whether it abstains, as stamped on
    /// the frame.
    pub incarnation: u64,
    pub abstaining: bool,
    /// As received: a view into the receive buffer, not a copy.
    pub payload: bytes::Bytes,
}

/// Frames received from each peer, counted as they pass the checks. A
/// stream looks its sender's counter up once, not per frame.
type Received = Arc<Mutex<BTreeMap<NodeId, Arc<AtomicU64>>>>;

/// Sends frames to peers; cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerSender {
    links: Arc<Mutex<BTreeMap<NodeId, Link>>>,
    max_frame_bytes: usize,
    /// Set with an address template: how to dial a node first met later.
    dial_new: Option<Arc<PeerConfig>>,
    /// Shared with every dialing task, which stamps it on each frame.
    abstaining: Arc<std::sync::atomic::AtomicBool>,
    /// Shared with the service that receives frames.
    received: Received,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("node {0} is not a peer of this node")]
    UnknownPeer(NodeId),
    #[error("frame of {len} bytes is over the peer frame limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("the queue to node {0} is full; frame dropped")]
    QueueFull(NodeId),
    /// The frame could not be made: a snapshot chunk it carries could not
    /// be read from its file.
    #[error("frame not sent: {0}")]
    Unencodable(String),
}

impl From<synod_core::paxos::codec::EncodeError> for SendError {
    fn from(error: synod_core::paxos::codec::EncodeError) -> Self {
        SendError::Unencodable(error.to_string())
    }
}

impl PeerSender {
    /// Whether this node abstains from voting, as its frames will say from
    /// now on.
    pub fn set_abstaining(&self, abstaining: bool) {
        self.abstaining
            .store(abstaining, std::sync::atomic::Ordering::Release);
    }

    /// Whether `id` has an address here.
    pub fn knows(&self, id: NodeId) -> bool {
        self.lock().contains_key(&id) || self.templated(id).is_some()
    }

    /// Every link's counters, by peer.
    pub fn link_stats(&self) -> Vec<LinkStats> {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        let received_from = |peer| {
            received
                .get(&peer)
                .map_or(0, |count| count.load(Ordering::Relaxed))
        };
        self.lock()
            .iter()
            .map(|(&peer, link)| link.stats(peer, received_from(peer)))
            .collect()
    }

    /// Whether members may join without a restart (an address template is
    /// set), so that frames are taken from any node id and the driver must
    /// drop those of non-members itself.
    pub fn open_membership(&self) -> bool {
        self.dial_new.is_some()
    }

    /// The address template's config, when `id` may be dialed by it.
    fn templated(&self, id: NodeId) -> Option<&Arc<PeerConfig>> {
        self.dial_new
            .as_ref()
            .filter(|config| id != 0 && id != config.node_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Link>> {
        // Every update is one insert: a panicked holder leaves it whole.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `payload` for `to`. Never waits: a full queue drops the frame.
    /// A node first met here is dialed at its templated address, if there
    /// is a template.
    pub fn send(&self, to: NodeId, payload: Vec<u8>) -> Result<(), SendError> {
        if payload.len() > self.max_frame_bytes {
            return Err(SendError::TooLarge {
                len: payload.len(),
                limit: self.max_frame_bytes,
            });
        }
        let mut links = self.lock();
        let link = match links.entry(to) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let config = self.templated(to).ok_or(SendError::UnknownPeer(to))?;
                let template = config.address_template.as_deref().unwrap_or_default();
                let address = templated_address(template, to);
                tracing::info!(peer = to, %address, "dialing a node first met after start");
                entry.insert(Link::dial(config, to, address))
            }
        };
        link.send(payload).map_err(|()| SendError::QueueFull(to))
    }
}

/// Starts one dialing task per peer. Returns the sender for outbound frames
/// and the gRPC service that receives inbound ones into `inbound`.
pub fn start(
    config: PeerConfig,
    inbound: mpsc::Sender<Inbound>,
) -> (PeerSender, PeerServer<PeerService>) {
    let links: BTreeMap<NodeId, Link> = config
        .peers
        .iter()
        .map(|(&id, address)| (id, Link::dial(&config, id, address.clone())))
        .collect();
    let received = Received::default();
    let service = PeerService {
        received: Arc::clone(&received),
        identities: config.tls.is_some().then(|| Identities {
            peers: config.peers.clone(),
            template: config.address_template.clone(),
        }),
        cluster: config.cluster.clone(),
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
        members: config.peers.keys().copied().collect(),
        any_member: config.address_template.is_some(),
        max_frame_bytes: config.max_frame_bytes,
        inbound,
    };
    // Leave room for the frame's other fields around the payload.
    let limit = config.max_frame_bytes.saturating_add(1024);
    let server = PeerServer::new(service).max_decoding_message_size(limit);
    (
        PeerSender {
            links: Arc::new(Mutex::new(links)),
            max_frame_bytes: config.max_frame_bytes,
            abstaining: config.abstaining.clone(),
            received,
            dial_new: config
                .address_template
                .is_some()
                .then(|| Arc::new(config.clone())),
        },
        server,
    )
}

/// Where each member is, to check that a peer's certificate is its own.
#[derive(Debug)]
struct Identities {
    peers: BTreeMap<NodeId, String>,
    template: Option<String>,
}

impl Identities {
    /// The host (DNS name or IP) node `id` is a member at.
    fn host(&self, id: NodeId) -> Option<String> {
        let address = match self.peers.get(&id) {
            Some(address) => address.clone(),
            None => templated_address(self.template.as_deref()?, id),
        };
        let host = match address.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => address.as_str(),
        };
        Some(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
    }

    /// Whether the certificate chain `certs` may speak for node `from`.
    fn check(
        &self,
        from: NodeId,
        certs: Option<&[synod_tls::CertificateDer<'static>]>,
    ) -> Result<(), Status> {
        let Some(cert) = certs.and_then(<[_]>::first) else {
            return Err(Status::unauthenticated(
                "peers must present a certificate from the ensemble's CA",
            ));
        };
        let Some(host) = self.host(from) else {
            return Err(Status::permission_denied(format!(
                "node {from} has no known address to check its certificate against"
            )));
        };
        if synod_tls::valid_for(cert, &host) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the certificate presented is not valid for {host}, where node {from} is a member"
            )))
        }
    }
}

/// Receives streams from peers.
#[derive(Debug)]
pub struct PeerService {
    /// With TLS: the names each member's certificate must be valid for.
    identities: Option<Identities>,
    cluster: String,
    cluster_id: Arc<std::sync::atomic::AtomicU64>,
    node_id: NodeId,
    members: Vec<NodeId>,
    /// With an address template the membership can grow without a
    /// restart, so any other node id is taken; the consensus core ignores
    /// non-members.
    any_member: bool,
    max_frame_bytes: usize,
    inbound: mpsc::Sender<Inbound>,
    received: Received,
}

impl PeerService {
    fn check(&self, frame: &PeerFrame) -> Result<(), Status> {
        if frame.cluster != self.cluster {
            return Err(Status::permission_denied(format!(
                "frame of ensemble {:?}, this is {:?}",
                frame.cluster, self.cluster
            )));
        }
        let mine = self.cluster_id.load(std::sync::atomic::Ordering::Acquire);
        if frame.cluster_id != 0 && mine != 0 && frame.cluster_id != mine {
            return Err(Status::permission_denied(format!(
                "frame of cluster id {:016x}, this node belongs to cluster id {mine:016x} \
                 (same name {:?}: a data directory of another ensemble?)",
                frame.cluster_id, self.cluster
            )));
        }
        if frame.to != self.node_id {
            return Err(Status::invalid_argument(format!(
                "frame for node {}, this is node {}",
                frame.to, self.node_id
            )));
        }
        let admissible = if self.any_member {
            frame.from != 0 && frame.from != self.node_id
        } else {
            self.members.contains(&frame.from)
        };
        if !admissible {
            return Err(Status::permission_denied(format!(
                "node {} is not a member",
                frame.from
            )));
        }
        if frame.payload.len() > self.max_frame_bytes {
            return Err(Status::resource_exhausted(format!(
                "frame of {} bytes is over the limit of {}",
                frame.payload.len(),
                self.max_frame_bytes
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn exchange(
        &self,
        request: Request<Streaming<PeerFrame>>,
    ) -> Result<Response<PeerExchangeEnd>, Status> {
        let tls = request
            .extensions()
            .get::<synod_tls::accept::TlsConnInfo>()
            .cloned();
        let remote = request
            .remote_addr()
            .or_else(|| tls.as_ref().and_then(|info| info.remote_addr));
        let mut frames = request.into_inner();
        let mut sender = None;
        // The count of frames from this stream's sender, once it is known.
        let mut received: Option<Arc<AtomicU64>> = None;
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            if let Err(status) = self.check(&frame) {
                tracing::warn!(?remote, from = frame.from, %status, "refused a peer stream");
                return Err(status);
            }
            if sender.is_none()
                && let Some(identities) = &self.identities
            {
                let certs = tls
                    .as_ref()
                    .and_then(|info| info.peer_certificates.as_deref());
                if let Err(status) = identities.check(frame.from, certs) {
                    tracing::warn!(?remote, from = frame.from, %status, "refused a peer stream");
                    return Err(status);
                }
            }
            // One stream speaks for one sender.
            if *sender.get_or_insert(frame.from) != frame.from {
                return Err(Status::invalid_argument(
                    "a peer stream carries frames of one sender",
                ));
            }
            received
                .get_or_insert_with(|| {
                    let mut counts = self.received.lock().unwrap_or_else(PoisonError::into_inner);
                    Arc::clone(counts.entry(frame.from).or_default())
                })
                .fetch_add(1, Ordering::Relaxed);
            let inbound = Inbound {
                from: frame.from,
                incarnation: frame.incarnation,
                abstaining: frame.abstaining,
                payload: frame.payload,
            };
            if self.inbound.send(inbound).await.is_err() {
                return Err(Status::unavailable("the node is shutting down"));
            }
        }
        Ok(Response::new(PeerExchangeEnd {}))
    }
}

/// The node id of a StatefulSet pod from its hostname: the ordinal after the
/// last `-`, plus one, because consensus reserves id 0 (`synod-0` is node 1,
/// `synod-2` is node 3).
pub fn node_id_from_hostname(hostname: &str) -> Option<NodeId> {
    let (_, ordinal) = hostname.rsplit_once('-')?;
    let ordinal: u64 = ordinal.parse().ok()?;
    ordinal.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_id: NodeId, address_template: Option<String>) -> PeerConfig {
        PeerConfig {
            cluster: "test".into(),
            cluster_id: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            incarnation: 5,
            abstaining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            node_id,
            peers: BTreeMap::new(),
            max_frame_bytes: 1024,
            queue: 16,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            keepalive: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(2),
            address_template,
            tls: None,
        }
    }

    #[test]
    fn a_peer_speaks_only_for_the_member_its_certificate_names() {
        let ca = synod_tls::generate::DevCa::new("test ca").expect("ca");
        let der = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let issued = ca.issue("peer", &names).expect("issue");
            use rustls_pki_types::pem::PemObject as _;
            synod_tls::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem")
        };
        let identities = Identities {
            peers: BTreeMap::from([
                (2, "b.peers.test:7100".to_owned()),
                (5, "[::1]:7100".to_owned()),
            ]),
            template: Some("n{id}.peers.test:7100".to_owned()),
        };
        let b = [der(&["b.peers.test"])];
        assert!(identities.check(2, Some(&b)).is_ok(), "its own name");
        let refused = identities
            .check(4, Some(&b))
            .expect_err("another member's id");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("n4.peers.test"),
            "{}",
            refused.message()
        );
        let templated = [der(&["n4.peers.test"])];
        assert!(
            identities.check(4, Some(&templated)).is_ok(),
            "a member known by the template"
        );
        let v6 = [der(&["::1"])];
        assert!(identities.check(5, Some(&v6)).is_ok(), "an IPv6 member");
        assert_eq!(
            identities
                .check(2, None)
                .expect_err("no certificate")
                .code(),
            tonic::Code::Unauthenticated
        );
        let closed = Identities {
            peers: BTreeMap::new(),
            template: None,
        };
        assert_eq!(
            closed
                .check(7, Some(&b))
                .expect_err("unknown member")
                .code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn frames_of_another_cluster_id_are_refused() {
        let mine = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (inbound, _unused) = mpsc::channel(1);
        let service = PeerService {
            received: Received::default(),
            identities: None,
            cluster: "blue".into(),
            cluster_id: mine.clone(),
            node_id: 1,
            members: vec![2],
            any_member: false,
            max_frame_bytes: 1024,
            inbound,
        };
        let frame = |cluster_id| PeerFrame {
            cluster: "blue".into(),
            from: 2,
            to: 1,
            payload: Default::default(),
            cluster_id,
            incarnation: 9,
            abstaining: false,
        };
        // Neither side may know its id yet (a new ensemble).
        assert!(service.check(&frame(0)).is_ok());
        assert!(service.check(&frame(7)).is_ok(), "this node knows none yet");
        mine.store(7, std::sync::atomic::Ordering::Release);
        assert!(service.check(&frame(7)).is_ok());
        assert!(
            service.check(&frame(0)).is_ok(),
            "the sender knows none yet"
        );
        let refused = service.check(&frame(9)).expect_err("another ensemble");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("0000000000000009"),
            "{refused:?}"
        );
    }

    #[test]
    fn templates_give_each_node_its_address() {
        let template = "synod-{ordinal}.peers:7100";
        assert_eq!(templated_address(template, 1), "synod-0.peers:7100");
        assert_eq!(templated_address(template, 5), "synod-4.peers:7100");
        assert_eq!(templated_address("10.0.0.{id}:7100", 3), "10.0.0.3:7100");
    }

    /// Node 1 knows no peer at start; with a template it reaches node 2,
    /// which takes frames from a node it was not configured with.
    #[tokio::test]
    async fn a_template_reaches_nodes_met_after_start() {
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind 127.0.0.2");
        let port = listener.local_addr().expect("address").port();
        let template = format!("127.0.0.{{id}}:{port}");
        let (inbound_2, mut received) = mpsc::channel(16);
        let (_sender_2, service_2) = start(config(2, Some(template.clone())), inbound_2);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service_2)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let (inbound_1, _unused) = mpsc::channel(16);
        let (sender_1, _service_1) = start(config(1, Some(template)), inbound_1);
        assert!(sender_1.open_membership());
        assert!(sender_1.knows(2) && sender_1.knows(7));
        assert!(
            !sender_1.knows(0) && !sender_1.knows(1),
            "not node 0, not itself"
        );
        sender_1.send(2, b"hello".to_vec()).expect("queued");
        let got = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .expect("delivered within the bound")
            .expect("channel open");
        assert_eq!(
            got,
            Inbound {
                from: 1,
                incarnation: 5,
                abstaining: false,
                payload: bytes::Bytes::from_static(b"hello")
            }
        );

        let (inbound, _unused) = mpsc::channel(16);
        let (fixed, _service) = start(config(1, None), inbound);
        assert!(!fixed.open_membership() && !fixed.knows(2));
        assert_eq!(fixed.send(2, vec![1]), Err(SendError::UnknownPeer(2)));
    }

    #[test]
    fn hostname_ordinals_map_to_ids() {
        assert_eq!(node_id_from_hostname("synod-0"), Some(1));
        assert_eq!(node_id_from_hostname("my-ensemble-12"), Some(13));
        assert_eq!(node_id_from_hostname("synod"), None);
        assert_eq!(node_id_from_hostname("synod-x"), None);
    }
}
