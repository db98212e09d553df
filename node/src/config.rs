//! Node configuration: every listen address and limit, settable by flag or
//! `SYNOD_*` environment variable, validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use synod_core::acl::AclPolicy;
use synod_core::session::SessionLimits;
use synod_core::state::StateConfig;
use synod_core::tree::{TreeConfig, TreeLimits};

use crate::storage::packed::SnapshotCompression;

/// What an empty data directory means (`--initial-cluster-state`, as
/// etcd's flag of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialClusterState {
    /// Bootstrap a new ensemble.
    New,
    /// Join an ensemble that already exists: vote only once re-added.
    Existing,
}

/// Whether the client ports ask clients for a certificate
/// (`--tls-client-certs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientCertMode {
    /// Not asked for.
    None,
    /// Verified against --tls-ca if presented; clients without one are
    /// served too.
    Optional,
    /// Clients without a certificate from --tls-ca are refused.
    Required,
}

impl From<ClientCertMode> for synod_tls::ClientCerts {
    fn from(mode: ClientCertMode) -> Self {
        match mode {
            ClientCertMode::None => synod_tls::ClientCerts::None,
            ClientCertMode::Optional => synod_tls::ClientCerts::Optional,
            ClientCertMode::Required => synod_tls::ClientCerts::Required,
        }
    }
}

/// What names a TLS client for the `x509` ACL scheme
/// (`--tls-client-identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientIdentityMode {
    /// The certificate's subject, RFC 2253 (`CN=app,O=Example`).
    Subject,
    /// Its first DNS subject alternative name.
    SanDns,
    /// Its first email (rfc822Name) subject alternative name.
    SanEmail,
    /// Its first URI subject alternative name (a SPIFFE id, say).
    SanUri,
    /// Its first IP address subject alternative name.
    SanIp,
}

impl From<ClientIdentityMode> for synod_tls::ClientIdentity {
    fn from(mode: ClientIdentityMode) -> Self {
        match mode {
            ClientIdentityMode::Subject => synod_tls::ClientIdentity::Subject,
            ClientIdentityMode::SanDns => synod_tls::ClientIdentity::SanDns,
            ClientIdentityMode::SanEmail => synod_tls::ClientIdentity::SanEmail,
            ClientIdentityMode::SanUri => synod_tls::ClientIdentity::SanUri,
            ClientIdentityMode::SanIp => synod_tls::ClientIdentity::SanIp,
        }
    }
}

/// Settings of one node.
#[derive(Debug, Clone, Args)]
pub struct NodeConfig {
    /// A TOML file of settings, keyed by flag name (`max-data-bytes =
    /// 2097152` or `max_data_bytes = ...`). Flags given on the command line
    /// win over the file, the file over `SYNOD_*` variables.
    #[arg(long, env = "SYNOD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the client gRPC API.
    #[arg(long, env = "SYNOD_CLIENT_ADDR", default_value = "127.0.0.1:7000")]
    pub client_addr: SocketAddr,

    /// Address of the HTTP endpoint: /metrics, /healthz, /readyz.
    #[arg(long, env = "SYNOD_HTTP_ADDR", default_value = "127.0.0.1:7200")]
    pub http_addr: SocketAddr,

    /// Directory for the write-ahead log and snapshots. Without one the
    /// node keeps its state in memory only and loses it on restart.
    #[arg(long, env = "SYNOD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory of the write-ahead log (default: <data-dir>/log); put it
    /// on its own volume to keep fsync latency free of snapshot writes.
    #[arg(long, env = "SYNOD_LOG_DIR")]
    pub log_dir: Option<PathBuf>,

    /// Directory of snapshots (default: <data-dir>/snapshot).
    #[arg(long, env = "SYNOD_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// Take a snapshot after at most this many txns: each node picks a
    /// random point between half of it and all of it, anew for every
    /// snapshot, so that the members of an ensemble do not all write a
    /// snapshot at once.
    #[arg(long, env = "SYNOD_SNAPSHOT_EVERY_TXNS", default_value_t = 100_000)]
    pub snapshot_every_txns: u64,

    /// Also take a snapshot once at most this many bytes were logged since
    /// the last one (spread the same way). This bounds the log on disk, and
    /// what a restart replays, whatever the tree's size.
    #[arg(long, env = "SYNOD_SNAPSHOT_EVERY_BYTES", default_value_t = 64 << 20)]
    pub snapshot_every_bytes: u64,

    /// Committed log entries the replica keeps in memory behind what it
    /// applied, to send a peer that is a little behind without reading
    /// the disk; older ones are read back from the write-ahead log when a
    /// peer needs them. Without a data directory everything stays in
    /// memory.
    #[arg(long, env = "SYNOD_LOG_CACHE_ENTRIES", default_value_t = 10_000)]
    pub log_cache_entries: u64,

    /// A snapshot due by --snapshot-every-txns waits until the txns since
    /// the last one number at least this share of the znodes. A snapshot
    /// costs time in proportion to the znodes; this keeps that cost in
    /// proportion to the writes instead of growing with the tree, and
    /// bounds what a restart replays to this share of what it loads. 0
    /// turns it off; --snapshot-every-bytes still applies.
    #[arg(long, env = "SYNOD_SNAPSHOT_TXNS_PER_ZNODE", default_value_t = 0.5)]
    pub snapshot_txns_per_znode: f64,

    /// Snapshots to keep; older ones and the log they cover are purged.
    #[arg(long, env = "SYNOD_KEEP_SNAPSHOTS", default_value_t = 3)]
    pub keep_snapshots: usize,

    /// How the snapshots this node writes (and sends to lagging peers) are
    /// stored: lz4 (compressed blocks) or none (raw). Every version reads
    /// both; none keeps a snapshot readable by nodes that predate
    /// compression, for the length of a rolling upgrade.
    #[arg(long, env = "SYNOD_SNAPSHOT_COMPRESSION", value_enum, default_value_t = SnapshotCompression::Lz4)]
    pub snapshot_compression: SnapshotCompression,

    /// Size of a write-ahead log segment in bytes (its blocks are reserved
    /// ahead of the appends, 4 MiB at a time).
    #[arg(long, env = "SYNOD_WAL_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub wal_segment_bytes: u64,

    /// Most txns waiting for the log; more writes are refused with
    /// THROTTLED until the log catches up.
    #[arg(long, env = "SYNOD_MAX_PENDING_TXNS", default_value_t = 100_000)]
    pub max_pending_txns: usize,

    /// Most proposals (batches of writes) the leader has uncommitted at
    /// once. Writes that arrive while that many wait for their quorum are
    /// proposed together in the next one, so under load each proposal
    /// (an fsync on every member, a message to each) carries more writes;
    /// a write on a quiet ensemble is proposed at once. Raise it where the
    /// round trip between members is long compared with an fsync.
    #[arg(long, env = "SYNOD_MAX_PROPOSALS_IN_FLIGHT", default_value_t = 1)]
    pub max_proposals_in_flight: usize,

    /// Most txns made durable by one fsync.
    #[arg(long, env = "SYNOD_MAX_BATCH_TXNS", default_value_t = 4096)]
    pub max_batch_txns: usize,

    /// Largest znode data in bytes.
    #[arg(long, env = "SYNOD_MAX_DATA_BYTES", default_value_t = 1024 * 1024)]
    pub max_data_bytes: usize,

    /// Longest path in bytes.
    #[arg(long, env = "SYNOD_MAX_PATH_BYTES", default_value_t = 4096)]
    pub max_path_bytes: usize,

    /// Most children a single znode may have.
    #[arg(long, env = "SYNOD_MAX_CHILDREN", default_value_t = 1_000_000)]
    pub max_children: usize,

    /// Most operations in one multi.
    #[arg(long, env = "SYNOD_MAX_MULTI_OPS", default_value_t = 1024)]
    pub max_multi_ops: usize,

    /// Largest gRPC request message in bytes; larger ones are refused
    /// before they are decoded.
    #[arg(long, env = "SYNOD_MAX_REQUEST_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Most unanswered requests the node reads from one client's
    /// `Pipeline` stream; beyond it the node stops reading that stream until
    /// it has answered some, and HTTP/2 flow control holds the client back.
    #[arg(long, env = "SYNOD_MAX_PIPELINED_REQUESTS", default_value_t = 1024)]
    pub max_pipelined_requests: usize,

    /// Lower bound of negotiated session timeouts, in milliseconds.
    #[arg(long, env = "SYNOD_MIN_SESSION_TIMEOUT_MS", default_value_t = 4_000)]
    pub min_session_timeout_ms: i64,

    /// Upper bound of negotiated session timeouts, in milliseconds.
    #[arg(long, env = "SYNOD_MAX_SESSION_TIMEOUT_MS", default_value_t = 40_000)]
    pub max_session_timeout_ms: i64,

    /// Most sessions open at once.
    #[arg(long, env = "SYNOD_MAX_SESSIONS", default_value_t = 100_000)]
    pub max_sessions: usize,

    /// Most watches one session may hold on this node.
    #[arg(long, env = "SYNOD_MAX_WATCHES_PER_SESSION", default_value_t = 100_000)]
    pub max_watches_per_session: usize,

    /// Watch events kept per session for a client that reconnects its
    /// event stream.
    #[arg(long, env = "SYNOD_WATCH_EVENT_BUFFER", default_value_t = 10_000)]
    pub watch_event_buffer: usize,

    /// The super user's digest id, `super:base64(sha1("super:password"))`;
    /// a session authenticated as it bypasses every ACL.
    #[arg(long, env = "SYNOD_SUPER_DIGEST")]
    pub super_digest: Option<String>,

    /// How long a stopping node waits for clients to close their
    /// connections, in milliseconds.
    #[arg(long, env = "SYNOD_SHUTDOWN_GRACE_MS", default_value_t = 2_000)]
    pub shutdown_grace_ms: u64,

    /// How often the node checks for expired sessions and for container
    /// and TTL nodes to remove, in milliseconds.
    #[arg(long, env = "SYNOD_TICK_MS", default_value_t = 200)]
    pub tick_ms: u64,

    /// This node's id in the ensemble (at least 1). Without it, a node
    /// whose hostname ends in `-N` (a StatefulSet pod) takes id N+1, and
    /// any other node id 1.
    #[arg(long, env = "SYNOD_NODE_ID")]
    pub node_id: Option<u64>,

    /// The voting members: `1=host:port,2=host:port,...`, each the address
    /// of that node's peer listener, this node included. Without it the
    /// node is an ensemble of one.
    #[arg(long, env = "SYNOD_PEERS")]
    pub peers: Option<String>,

    /// Non-voting members (observers) in the same form: they receive and
    /// apply the log, serve reads and forward writes, but never vote.
    #[arg(long, env = "SYNOD_OBSERVERS")]
    pub observers: Option<String>,

    /// Where to listen for peers (default: this node's entry in --peers or
    /// --observers).
    #[arg(long, env = "SYNOD_PEER_ADDR")]
    pub peer_addr: Option<SocketAddr>,

    /// Where any node listens for peers, with `{ordinal}` (id - 1) or `{id}`
    /// for its number, e.g. `synod-{ordinal}.synod-peers.ns.svc:7100` in a
    /// StatefulSet. With it, a member added through the Admin API is reached
    /// without restarting the others, and frames from nodes outside the
    /// configuration are dropped by the node rather than the transport.
    #[arg(long, env = "SYNOD_PEER_ADDRESS_TEMPLATE")]
    pub peer_address_template: Option<String>,

    /// Name of the ensemble; frames from another ensemble are refused.
    #[arg(long, env = "SYNOD_CLUSTER", default_value = "synod")]
    pub cluster: String,

    /// What an EMPTY data directory means. `new`: this node bootstraps a
    /// new ensemble with the others in --peers. `existing`: the ensemble
    /// already exists (this member's disk was lost or replaced), so the
    /// node votes in nothing until it has been removed and re-added
    /// (observer, caught up, voter): it may have forgotten promises it
    /// made. Set `existing` once the ensemble has bootstrapped (the
    /// operator does). A directory keeps what it was created as.
    #[arg(
        long,
        env = "SYNOD_INITIAL_CLUSTER_STATE",
        value_enum,
        default_value_t = InitialClusterState::New
    )]
    pub initial_cluster_state: InitialClusterState,

    /// Interval of the leader's heartbeats, in milliseconds.
    #[arg(long, env = "SYNOD_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// A follower that hears no leader for this long (randomized up to
    /// twice as long) starts an election, in milliseconds.
    #[arg(long, env = "SYNOD_ELECTION_TIMEOUT_MS", default_value_t = 1_000)]
    pub election_timeout_ms: u64,

    /// Bound on how fast two members' monotonic clocks may drift apart, in
    /// parts per million. The leader's lease is shortened by this share of
    /// the election timeout (and at least 1 ms); pauses of the process need
    /// no margin, because leases are checked against real time.
    #[arg(long, env = "SYNOD_MAX_CLOCK_DRIFT_PPM", default_value_t = 20_000)]
    pub max_clock_drift_ppm: u64,

    /// How long a write may wait for the ensemble (no leader, a leader
    /// change) before it is answered with CONNECTION_LOSS, in milliseconds.
    #[arg(long, env = "SYNOD_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Largest frame between peers in bytes; larger ones are refused.
    #[arg(long, env = "SYNOD_MAX_PEER_FRAME_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_peer_frame_bytes: usize,

    /// How often a connection to a peer is checked with an HTTP/2 ping, in
    /// milliseconds; one whose ping is not answered within the same time
    /// is closed and dialed again. A stream that has frames waiting and
    /// takes none for five times this is dialed again too.
    #[arg(long, env = "SYNOD_PEER_KEEPALIVE_MS", default_value_t = 2_000)]
    pub peer_keepalive_ms: u64,

    /// Address of the ZooKeeper-protocol listener (ZooKeeper clients and
    /// four-letter words), or `off`.
    #[arg(long, env = "SYNOD_ZOOKEEPER_ADDR", default_value = "127.0.0.1:2181")]
    pub zookeeper_addr: OptionalAddr,

    /// Largest frame a ZooKeeper client may send, in bytes (ZooKeeper's
    /// `jute.maxbuffer` plus its 1 KiB allowance); a larger one closes
    /// that connection.
    #[arg(long, env = "SYNOD_ZOOKEEPER_MAX_FRAME_BYTES", default_value_t = 1024 * 1024 + 1024)]
    pub zookeeper_max_frame_bytes: usize,

    /// Most ZooKeeper connections from one IP address (ZooKeeper's
    /// `maxClientCnxns`); 0 for no limit.
    #[arg(
        long,
        env = "SYNOD_ZOOKEEPER_MAX_CONNECTIONS_PER_IP",
        default_value_t = 60
    )]
    pub zookeeper_max_connections_per_ip: usize,

    /// Most requests of one ZooKeeper connection in flight; the connection
    /// is not read further until replies go out.
    #[arg(long, env = "SYNOD_ZOOKEEPER_MAX_OUTSTANDING", default_value_t = 1000)]
    pub zookeeper_max_outstanding: usize,

    /// The ZooKeeper client address of node `{id}` (or `{ordinal}`, id - 1)
    /// that clients reach, e.g. `synod-{ordinal}.synod-peers.<ns>.svc:2181`.
    /// With it `/zookeeper/config` lists every member, so that Curator's
    /// EnsembleTracker keeps a working connection string; without it the
    /// node stays empty.
    #[arg(long, env = "SYNOD_ZOOKEEPER_ADDRESS_TEMPLATE")]
    pub zookeeper_address_template: Option<String>,

    /// Let ZooKeeper clients change the membership with `reconfig`
    /// (ZooKeeper's `reconfigEnabled`), authorised for the super user
    /// only, as ZooKeeper does. Needs `--zookeeper-address-template`.
    /// Joining servers must name the address this ensemble dials them at.
    #[arg(long, env = "SYNOD_ZOOKEEPER_RECONFIG", default_value_t = false)]
    pub zookeeper_reconfig: bool,

    /// ZooKeeper's secure port (its `secureClientPort`): the ZooKeeper
    /// protocol over TLS, opened only when --tls-cert is set, or `off`.
    /// The plaintext --zookeeper-addr stays open beside it unless it is
    /// `off` too.
    #[arg(
        long,
        env = "SYNOD_ZOOKEEPER_SECURE_ADDR",
        default_value = "127.0.0.1:2281"
    )]
    pub zookeeper_secure_addr: OptionalAddr,

    /// The Admin API (status, membership changes, leadership transfer,
    /// snapshots), on its own port so that no client of the data API can
    /// reach it, or `off`. With TLS it requires a client certificate from
    /// --tls-admin-ca; without TLS it may only listen on loopback unless
    /// --admin-allow-remote says otherwise.
    #[arg(long, env = "SYNOD_ADMIN_ADDR", default_value = "127.0.0.1:7300")]
    pub admin_addr: OptionalAddr,

    /// Without TLS, let the Admin API listen on a non-loopback address
    /// (anyone who reaches it can remove members: guard it with a
    /// NetworkPolicy or a firewall).
    #[arg(long, env = "SYNOD_ADMIN_ALLOW_REMOTE", default_value_t = false)]
    pub admin_allow_remote: bool,

    /// This node's certificate (PEM, chain first to last). With --tls-key,
    /// the client, peer and ZooKeeper secure ports speak TLS only. The
    /// files are read again every --tls-reload-secs: new connections use
    /// new files, established ones keep theirs.
    #[arg(long, env = "SYNOD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SYNOD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The CA bundle (PEM) of the ensemble: peers must present a
    /// certificate from it valid for the address they are members at
    /// (mutual TLS), and so must clients as --tls-client-certs says.
    #[arg(long, env = "SYNOD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// The CA bundle (PEM) that admin client certificates must chain to;
    /// with TLS on, the Admin API accepts no connection without one.
    /// Defaults to --tls-ca; give the admins their own CA when clients of
    /// the data API also get certificates from the ensemble's.
    #[arg(long, env = "SYNOD_TLS_ADMIN_CA")]
    pub tls_admin_ca: Option<PathBuf>,

    /// Client certificates on the client and ZooKeeper secure ports.
    #[arg(
        long,
        env = "SYNOD_TLS_CLIENT_CERTS",
        value_enum,
        default_value_t = ClientCertMode::Optional
    )]
    pub tls_client_certs: ClientCertMode,

    /// What a client certificate names for the `x509` ACL scheme and
    /// `whoAmI`: its subject, or its first SAN of one kind (ZooKeeper's
    /// X509AuthenticationProvider clientCertIdType and
    /// clientCertIdSanMatchType).
    #[arg(
        long,
        env = "SYNOD_TLS_CLIENT_IDENTITY",
        value_enum,
        default_value_t = ClientIdentityMode::Subject
    )]
    pub tls_client_identity: ClientIdentityMode,

    /// How often the TLS files are read again, in seconds.
    #[arg(long, env = "SYNOD_TLS_RELOAD_SECS", default_value_t = 10)]
    pub tls_reload_secs: u64,

    /// A TLS handshake not complete after this many milliseconds is
    /// dropped (a silent or slow client holds nothing longer).
    #[arg(long, env = "SYNOD_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub tls_handshake_timeout_ms: u64,

    /// The four-letter words answered on the ZooKeeper port, comma
    /// separated, or `*` (ZooKeeper's `4lw.commands.whitelist`).
    #[arg(
        long,
        env = "SYNOD_FOUR_LETTER_WORDS",
        default_value = "ruok,isro,srvr,stat,mntr,conf,envi,cons,wchs,dirs"
    )]
    pub four_letter_words: String,
}

/// A listen address that can be turned off with `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(OptionalAddr(None));
        }
        s.trim().parse().map(|addr| OptionalAddr(Some(addr)))
    }
}

impl std::fmt::Display for OptionalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

/// The ensemble as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensemble {
    pub id: u64,
    pub voters: std::collections::BTreeMap<u64, String>,
    pub observers: std::collections::BTreeMap<u64, String>,
    /// Where this node listens for peers; `None` for a single node.
    pub listen: Option<SocketAddr>,
}

impl Ensemble {
    /// Every member but this node, with its address.
    pub fn others(&self) -> std::collections::BTreeMap<u64, String> {
        self.voters
            .iter()
            .chain(&self.observers)
            .filter(|(id, _)| **id != self.id)
            .map(|(id, a)| (*id, a.clone()))
            .collect()
    }
}

/// Parses `1=host:port,2=host:port`.
fn parse_members(
    flag: &str,
    list: &str,
) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
    let mut members = std::collections::BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--{flag}: {item:?} is not id=host:port")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("--{flag}: {id:?} is not a node id")))?;
        if id == 0 {
            return Err(ConfigError(format!("--{flag}: node id 0 is reserved")));
        }
        let address = address.trim();
        if address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(ConfigError(format!(
                "--{flag}: {address:?} of node {id} is not host:port"
            )));
        }
        if members.insert(id, address.to_owned()).is_some() {
            return Err(ConfigError(format!("--{flag}: node {id} is listed twice")));
        }
    }
    Ok(members)
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl NodeConfig {
    /// The TLS files, if TLS is on.
    pub fn tls_files(&self) -> Option<synod_tls::TlsFiles> {
        self.tls_cert.as_ref().map(|cert| synod_tls::TlsFiles {
            cert: Some(cert.clone()),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        })
    }

    /// The TLS files of the Admin port: the node's certificate, and the
    /// admin CA to verify callers with.
    pub fn admin_tls_files(&self) -> Option<synod_tls::TlsFiles> {
        self.tls_files().map(|files| synod_tls::TlsFiles {
            ca: self.tls_admin_ca.clone().or(files.ca.clone()),
            ..files
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max-data-bytes", self.max_data_bytes),
            ("max-path-bytes", self.max_path_bytes),
            ("max-children", self.max_children),
            ("max-multi-ops", self.max_multi_ops),
            ("max-request-bytes", self.max_request_bytes),
            ("max-pipelined-requests", self.max_pipelined_requests),
            ("max-sessions", self.max_sessions),
            ("max-watches-per-session", self.max_watches_per_session),
            ("watch-event-buffer", self.watch_event_buffer),
            ("keep-snapshots", self.keep_snapshots),
            ("max-batch-txns", self.max_batch_txns),
            ("max-pending-txns", self.max_pending_txns),
            ("max-proposals-in-flight", self.max_proposals_in_flight),
            ("zookeeper-max-outstanding", self.zookeeper_max_outstanding),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("--{name} must be at least 1")));
            }
        }
        if self.min_session_timeout_ms <= 0
            || self.min_session_timeout_ms > self.max_session_timeout_ms
        {
            return Err(ConfigError(format!(
                "session timeouts need 0 < min ({}) <= max ({})",
                self.min_session_timeout_ms, self.max_session_timeout_ms
            )));
        }
        if self.max_request_bytes <= self.max_data_bytes {
            return Err(ConfigError(format!(
                "--max-request-bytes ({}) must exceed --max-data-bytes ({}) to leave room for the request around the data",
                self.max_request_bytes, self.max_data_bytes
            )));
        }
        if !(0.0..=100.0).contains(&self.snapshot_txns_per_znode) {
            return Err(ConfigError(format!(
                "--snapshot-txns-per-znode ({}) must be between 0 and 100",
                self.snapshot_txns_per_znode
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError("--tls-cert and --tls-key go together".into()));
        }
        if self.tls_cert.is_some() && self.tls_ca.is_none() {
            return Err(ConfigError(
                "TLS needs --tls-ca too: peers verify each other against it".into(),
            ));
        }
        if self.tls_cert.is_none() && self.tls_ca.is_some() {
            return Err(ConfigError(
                "--tls-ca without --tls-cert and --tls-key: a TLS server needs its own certificate"
                    .into(),
            ));
        }
        if self.tls_reload_secs == 0 || self.tls_handshake_timeout_ms == 0 {
            return Err(ConfigError(
                "--tls-reload-secs and --tls-handshake-timeout-ms must be at least 1".into(),
            ));
        }
        if self.snapshot_every_txns == 0 {
            return Err(ConfigError(
                "--snapshot-every-txns must be at least 1".into(),
            ));
        }
        if self.wal_segment_bytes < 1024 * 1024 {
            return Err(ConfigError(
                "--wal-segment-bytes must be at least 1 MiB".into(),
            ));
        }
        if self.data_dir.is_none() && (self.log_dir.is_some() || self.snapshot_dir.is_some()) {
            return Err(ConfigError(
                "--log-dir and --snapshot-dir need --data-dir".into(),
            ));
        }
        self.ensemble()?;
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 2 * self.heartbeat_ms {
            return Err(ConfigError(format!(
                "--election-timeout-ms ({}) must be at least twice --heartbeat-ms ({}), which must be positive",
                self.election_timeout_ms, self.heartbeat_ms
            )));
        }
        if self.max_clock_drift_ppm >= 500_000 {
            return Err(ConfigError(format!(
                "--max-clock-drift-ppm ({}) must be below 500000: the lease would be gone",
                self.max_clock_drift_ppm
            )));
        }
        if self.peer_keepalive_ms < 10 {
            return Err(ConfigError(format!(
                "--peer-keepalive-ms ({}) must be at least 10",
                self.peer_keepalive_ms
            )));
        }
        if self.max_peer_frame_bytes <= self.max_request_bytes {
            return Err(ConfigError(format!(
                "--max-peer-frame-bytes ({}) must exceed --max-request-bytes ({})",
                self.max_peer_frame_bytes, self.max_request_bytes
            )));
        }
        if let Some(template) = &self.peer_address_template
            && !template.contains("{id}")
            && !template.contains("{ordinal}")
        {
            return Err(ConfigError(format!(
                "--peer-address-template {template:?} names no node: use {{id}} or {{ordinal}}"
            )));
        }
        if self.tick_ms == 0 {
            return Err(ConfigError("--tick-ms must be at least 1".into()));
        }
        if let Some(digest) = &self.super_digest
            && !digest.contains(':')
        {
            return Err(ConfigError(
                "--super-digest must look like super:base64hash".into(),
            ));
        }
        // With TLS the admin port verifies callers against the admin CA
        // (or --tls-ca, which TLS requires); without, only the address
        // guards it.
        if let Some(admin) = self.admin_addr.0
            && self.tls_cert.is_none()
            && !admin.ip().is_loopback()
            && !self.admin_allow_remote
        {
            return Err(ConfigError(format!(
                "--admin-addr {admin} is not a loopback address and TLS is off: anyone who reaches it could change the membership; use TLS (--tls-cert, --tls-admin-ca), a loopback address, or --admin-allow-remote behind a NetworkPolicy"
            )));
        }
        if self.tls_admin_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError(
                "--tls-admin-ca needs TLS on (--tls-cert and --tls-key)".into(),
            ));
        }
        // A ZooKeeper frame must hold the largest value plus its request.
        if self.zookeeper_max_frame_bytes <= self.max_data_bytes {
            return Err(ConfigError(format!(
                "--zookeeper-max-frame-bytes ({}) must exceed --max-data-bytes ({})",
                self.zookeeper_max_frame_bytes, self.max_data_bytes
            )));
        }
        Ok(())
    }

    /// The ZooKeeper listener's settings; `conf` lists what the `conf`
    /// four-letter word reports.
    pub fn zookeeper_config(&self, ensemble: &Ensemble) -> crate::api::zookeeper::ZkConfig {
        let storage = self.storage_config();
        let mut conf = vec![
            (
                "clientPort".to_owned(),
                self.zookeeper_addr.0.map_or(0, |a| a.port()).to_string(),
            ),
            ("clientPortAddress".into(), self.zookeeper_addr.to_string()),
            ("grpcAddress".into(), self.client_addr.to_string()),
            (
                "dataDir".into(),
                storage
                    .as_ref()
                    .map(|s| s.snapshot_dir.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "dataLogDir".into(),
                storage
                    .as_ref()
                    .map(|s| s.log_dir.display().to_string())
                    .unwrap_or_default(),
            ),
            ("tickTime".into(), self.tick_ms.to_string()),
            (
                "maxClientCnxns".into(),
                self.zookeeper_max_connections_per_ip.to_string(),
            ),
            (
                "minSessionTimeout".into(),
                self.min_session_timeout_ms.to_string(),
            ),
            (
                "maxSessionTimeout".into(),
                self.max_session_timeout_ms.to_string(),
            ),
            ("heartbeatMs".into(), self.heartbeat_ms.to_string()),
            (
                "reconfigEnabled".into(),
                self.zookeeper_reconfig.to_string(),
            ),
            (
                "electionTimeoutMs".into(),
                self.election_timeout_ms.to_string(),
            ),
        ];
        if let Some(id) = self.node_id {
            conf.push(("serverId".into(), id.to_string()));
        }
        crate::api::zookeeper::ZkConfig {
            max_frame_bytes: self.zookeeper_max_frame_bytes,
            max_connections_per_ip: self.zookeeper_max_connections_per_ip,
            max_outstanding: self.zookeeper_max_outstanding,
            handshake_timeout: Duration::from_secs(10),
            words: crate::api::zookeeper::WordList::parse(&self.four_letter_words),
            reconfig: self.zookeeper_reconfig,
            conf,
            ensemble_addresses: self.zookeeper_address_template.as_ref().map(|template| {
                let peers = ensemble
                    .voters
                    .iter()
                    .chain(&ensemble.observers)
                    // A single node has no peer address.
                    .filter(|(_, address)| !address.is_empty())
                    .map(|(id, address)| (*id, address.clone()))
                    .collect();
                std::sync::Arc::new(crate::api::zookeeper::ensemble_config::EnsembleAddresses {
                    peers,
                    peer_template: self.peer_address_template.clone(),
                    zookeeper_template: template.clone(),
                })
            }),
        }
    }

    pub fn state_config(&self) -> StateConfig {
        StateConfig {
            tree: TreeConfig {
                limits: TreeLimits {
                    max_data_bytes: self.max_data_bytes,
                    max_path_bytes: self.max_path_bytes,
                    max_children: self.max_children,
                    max_multi_ops: self.max_multi_ops,
                },
                acl: AclPolicy {
                    super_digest: self.super_digest.clone(),
                },
            },
            sessions: SessionLimits {
                min_timeout_ms: self.min_session_timeout_ms,
                max_timeout_ms: self.max_session_timeout_ms,
                max_sessions: self.max_sessions,
            },
        }
    }

    /// Where the log and snapshots live, if the node is durable.
    pub fn storage_config(&self) -> Option<crate::storage::StorageConfig> {
        let data = self.data_dir.as_ref()?;
        Some(crate::storage::StorageConfig {
            log_dir: self.log_dir.clone().unwrap_or_else(|| data.join("log")),
            snapshot_dir: self
                .snapshot_dir
                .clone()
                .unwrap_or_else(|| data.join("snapshot")),
            segment_bytes: self.wal_segment_bytes,
            preallocate: true,
            preallocate_step: crate::storage::StorageConfig::DEFAULT_PREALLOCATE_STEP,
            keep_snapshots: self.keep_snapshots,
        })
    }

    /// This node's id and the members, checked for consistency.
    pub fn ensemble(&self) -> Result<Ensemble, ConfigError> {
        let voters = match &self.peers {
            Some(list) => parse_members("peers", list)?,
            None => Default::default(),
        };
        let observers = match &self.observers {
            Some(list) => parse_members("observers", list)?,
            None => Default::default(),
        };
        if voters.is_empty() && !observers.is_empty() {
            return Err(ConfigError("--observers needs --peers".into()));
        }
        if let Some(id) = voters.keys().find(|id| observers.contains_key(id)) {
            return Err(ConfigError(format!(
                "node {id} is listed as a voter and as an observer"
            )));
        }
        let hostname = std::env::var("HOSTNAME").ok();
        let id = self
            .node_id
            .or_else(|| {
                hostname
                    .as_deref()
                    .and_then(crate::peer::node_id_from_hostname)
            })
            .unwrap_or(1);
        if id == 0 {
            return Err(ConfigError(
                "--node-id 0 is reserved; ids start at 1".into(),
            ));
        }
        if voters.is_empty() {
            let mut voters = std::collections::BTreeMap::new();
            voters.insert(id, String::new());
            return Ok(Ensemble {
                id,
                voters,
                observers,
                listen: None,
            });
        }
        // Join mode: a node outside the bootstrap members (a StatefulSet
        // scaled up, with the same flags as every other pod) starts at its
        // templated address, reports "not in the configuration" and serves
        // once the leader adds it.
        let joining = self
            .peer_address_template
            .as_deref()
            .filter(|_| !voters.contains_key(&id) && !observers.contains_key(&id))
            .map(|template| crate::peer::templated_address(template, id));
        let own = voters
            .get(&id)
            .or_else(|| observers.get(&id))
            .or(joining.as_ref())
            .ok_or_else(|| {
                ConfigError(format!(
                    "this node (id {id}) is not in --peers or --observers; set --node-id, or --peer-address-template to join an ensemble"
                ))
            })?;
        let listen = match self.peer_addr {
            Some(addr) => addr,
            None => {
                let port = own
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .unwrap_or(7100);
                // Listen on every interface at our own port: the name in
                // --peers resolves to this pod, not to an interface.
                own.parse::<SocketAddr>()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)))
            }
        };
        Ok(Ensemble {
            id,
            voters,
            observers,
            listen: Some(listen),
        })
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// How much shorter than an election timeout the leader's lease is.
    pub fn lease_drift_ms(&self) -> u64 {
        (self
            .election_timeout_ms
            .saturating_mul(self.max_clock_drift_ppm)
            / 1_000_000)
            .max(1)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

/// Parses a `NodeConfig` from nothing but its defaults and the environment.
#[derive(Debug, clap::Parser)]
#[command(args_override_self = true)]
struct DefaultsOnly {
    #[command(flatten)]
    config: NodeConfig,
}

impl NodeConfig {
    /// The configuration with every default (and `SYNOD_*` overrides).
    pub fn parse_defaults() -> Self {
        use clap::Parser as _;
        DefaultsOnly::parse_from(["synod"]).config
    }
}

/// Rewrites the arguments of `synod serve` so that the settings of its
/// `--config` file (or `SYNOD_CONFIG`) come first as flags, and the flags
/// given on the command line, which follow, override them. Unknown keys and
/// values that are not strings, numbers or booleans are refused with the
/// file's name.
pub fn expand_config_file(
    args: Vec<String>,
    env_file: Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let Some(serve) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let mut file = env_file;
    for (i, arg) in args.iter().enumerate().skip(serve + 1) {
        if let Some(path) = arg.strip_prefix("--config=") {
            file = Some(path.to_owned());
        } else if arg == "--config" {
            file = args.get(i + 1).cloned();
        }
    }
    let Some(file) = file else { return Ok(args) };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ConfigError(format!("cannot read config file {file}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("config file {file} is not valid TOML: {e}")))?;
    let known: Vec<String> = <DefaultsOnly as clap::CommandFactory>::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let mut injected = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if flag == "config" || !known.contains(&flag) {
            return Err(ConfigError(format!(
                "config file {file}: unknown setting {key:?}"
            )));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError(format!(
                    "config file {file}: {key} must be a string, number or boolean"
                )));
            }
        };
        injected.push(format!("--{flag}={value}"));
    }
    let mut out = args;
    out.splice(serve + 1..serve + 1, injected);
    Ok(out)
}

#[cfg(test)]
mod tests;
