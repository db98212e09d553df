//! The ZooKeeper-protocol front end: a TCP listener that speaks ZooKeeper's
//! client protocol (jute frames, the session handshake, every opcode 3.9
//! clients send, watch events in the same stream) and its four-letter
//! words, over the same node core as gRPC: one model of sessions, watches
//! and ordering. `jute` and `proto` are the pure codec, `ops` runs a
//! request on the driver, `conn` owns one connection, `words` answers the
//! four-letter words. TLS (a secure port) would wrap the stream handed to
//! `conn::serve` and nothing else.

mod commands;
mod conn;
pub mod ensemble_config;
pub mod jute;
mod ops;
pub mod proto;
pub mod reconfig;
mod words;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::driver::DriverHandle;

/// Which four-letter words are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordList {
    All,
    Only(BTreeSet<String>),
}

impl WordList {
    /// `*` or a comma-separated list, as ZooKeeper's
    /// `4lw.commands.whitelist`.
    pub fn parse(list: &str) -> WordList {
        if list.trim() == "*" {
            return WordList::All;
        }
        WordList::Only(
            list.split(',')
                .map(|w| w.trim().to_ascii_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, word: &str) -> bool {
        match self {
            WordList::All => true,
            WordList::Only(words) => words.contains(word),
        }
    }
}

/// What the listener is configured with.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// Largest frame a client may send (ZooKeeper's `jute.maxbuffer`); a
    /// larger one closes that connection.
    pub max_frame_bytes: usize,
    /// Most connections from one address (ZooKeeper's `maxClientCnxns`);
    /// 0 for no limit.
    pub max_connections_per_ip: usize,
    /// Most requests of one connection in flight; the connection is not
    /// read further until replies go out.
    pub max_outstanding: usize,
    /// How long a new connection may take to send its first frame.
    pub handshake_timeout: Duration,
    pub words: WordList,
    /// `key=value` lines for the `conf` word.
    pub conf: Vec<(String, String)>,
    /// What `/zookeeper/config` lists; `None` leaves it empty.
    pub ensemble_addresses: Option<std::sync::Arc<ensemble_config::EnsembleAddresses>>,
    /// Whether `reconfig` changes the membership.
    pub reconfig: bool,
}

/// Counters of one connection, for `cons` and `stat`.
#[derive(Debug)]
struct ConnStats {
    peer: SocketAddr,
    session: AtomicI64,
    received: AtomicU64,
    sent: AtomicU64,
    outstanding: AtomicI64,
}

/// Counters of the whole listener, for `srvr`, `mntr` and `stat`.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    outstanding: AtomicI64,
    latency_min_us: AtomicU64,
    latency_max_us: AtomicU64,
    latency_total_us: AtomicU64,
    latency_count: AtomicU64,
}

impl Counters {
    fn latency(&self, us: u64) {
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_total_us.fetch_add(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
        // 0 means "none yet".
        let _ = self
            .latency_min_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |min| {
                (min == 0 || us < min).then_some(us.max(1))
            });
    }
}

/// State every connection of the listener shares.
#[derive(Debug)]
struct Shared {
    driver: DriverHandle,
    config: ZkConfig,
    counters: Counters,
    next_conn: AtomicU64,
    connections: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The connection that currently carries each session here; a new one
    /// for the same session tells the old one to close.
    owners: Mutex<HashMap<i64, (u64, tokio::sync::mpsc::Sender<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters
    // behind, still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Holds a connection's place in the per-address count and the listing.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
    stats: Arc<ConnStats>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.shared.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        lock(&self.shared.connections).remove(&self.id);
        // The session this connection carried, if it still carries it.
        let session = self.stats.session.load(Ordering::Relaxed);
        let mut owners = lock(&self.shared.owners);
        if owners
            .get(&session)
            .is_some_and(|(conn, _)| *conn == self.id)
        {
            owners.remove(&session);
        }
    }
}

impl Shared {
    /// Serves a new connection from `peer` in `tasks`, unless its address
    /// is at the limit (then the connection is dropped, closing it).
    fn start(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        halves: (conn::ReadHalf, conn::WriteHalf),
        x509: Option<Arc<str>>,
        peer: SocketAddr,
    ) {
        let Some((registration, stats)) = self.register(peer) else {
            tracing::warn!(
                %peer,
                limit = self.config.max_connections_per_ip,
                "too many ZooKeeper connections from this address; closing the new one"
            );
            return;
        };
        tasks.spawn(conn::serve(halves, x509, self.clone(), registration, stats));
    }

    /// Registers a new connection, or refuses it when its address is at
    /// the limit.
    fn register(self: &Arc<Self>, peer: SocketAddr) -> Option<(Registration, Arc<ConnStats>)> {
        let ip = peer.ip();
        {
            let mut per_ip = lock(&self.per_ip);
            let count = per_ip.entry(ip).or_insert(0);
            let limit = self.config.max_connections_per_ip;
            if limit > 0 && *count >= limit {
                return None;
            }
            *count += 1;
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnStats {
            peer,
            session: AtomicI64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
        });
        lock(&self.connections).insert(id, stats.clone());
        Some((
            Registration {
                shared: self.clone(),
                id,
                ip,
                stats: stats.clone(),
            },
            stats,
        ))
    }
}

/// The ZooKeeper front end of a node: its listener and the counters and
/// connections the four-letter words and AdminServer commands report.
#[derive(Debug, Clone)]
pub struct ZooKeeperFrontEnd {
    shared: Arc<Shared>,
}

impl ZooKeeperFrontEnd {
    pub fn new(driver: DriverHandle, config: ZkConfig) -> Self {
        ZooKeeperFrontEnd {
            shared: Arc::new(Shared {
                driver,
                config,
                counters: Counters::default(),
                next_conn: AtomicU64::new(1),
                connections: Mutex::default(),
                per_ip: Mutex::default(),
                owners: Mutex::default(),
            }),
        }
    }

    /// An AdminServer command as JSON; `None` for an unknown name.
    pub async fn command(&self, name: &str) -> Option<serde_json::Value> {
        commands::run(&self.shared, name).await
    }

    /// The AdminServer command names.
    pub fn command_names() -> Vec<&'static str> {
        commands::names()
    }

    /// Serves ZooKeeper clients on `listener` until `stop` resolves; then
    /// closes every connection.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        let shared = self.shared;
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                // Reap finished connection tasks as they end.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%error, "cannot disable Nagle's algorithm");
                        }
                        let (rd, wr) = stream.into_split();
                        shared.start(&mut connections, (Box::new(rd), Box::new(wr)), None, peer);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accepting a ZooKeeper connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    }

    /// Serves ZooKeeper clients on `connections`, whose TLS handshakes are
    /// done (ZooKeeper's secure port), until `stop` resolves. The per-IP
    /// limit counts them with the plaintext ones.
    pub async fn serve_tls(
        self,
        mut connections: impl futures::Stream<Item = std::io::Result<synod_tls::accept::TlsConn>>
        + Unpin,
        stop: impl Future<Output = ()>,
    ) {
        use futures::StreamExt as _;
        let shared = self.shared;
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = connections.next() => match next {
                    Some(Ok(conn)) => {
                        let Some(peer) = conn.remote_addr() else {
                            continue;
                        };
                        let x509 = conn.info().x509_id;
                        let (rd, wr) = tokio::io::split(conn);
                        shared.start(&mut tasks, (Box::new(rd), Box::new(wr)), x509, peer);
                    }
                    Some(Err(error)) => tracing::warn!(%error, "a secure ZooKeeper connection failed"),
                    None => break,
                },
            }
        }
        tasks.shutdown().await;
    }
}
