//! Process lifecycle of one node: recover, start the driver, the gRPC
//! listener and the HTTP endpoint (metrics and health), serve until SIGTERM
//! or ctrl-c, then stop accepting and drain for a bounded time.

use synod_proto::v1::admin_server::AdminServer;
use synod_proto::v1::coordination_server::CoordinationServer;

use std::sync::Arc;
use std::time::Duration;

use crate::api::admin::{AdminElsewhere, AdminService};
use crate::api::coordination::CoordinationService;
use crate::config::{ConfigError, NodeConfig};
use crate::driver::{self, DriverHandle};
use crate::metrics::{Metrics, MetricsLayer};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for clients on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot recover the node's state: {0}")]
    Recovery(#[from] crate::storage::durable::RecoveryError),
    #[error("the node's driver stopped: {0}")]
    DriverStopped(String),
    #[error(transparent)]
    Start(#[from] driver::StartError),
    #[error("refusing to start")]
    Identity(#[from] crate::storage::identity::IdentityError),
    #[error("client API failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(#[from] synod_tls::TlsError),
}

/// A gRPC server's run, whichever kind of connections it serves.
type Serving<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'a>,
>;

/// HTTP/2 is what gRPC speaks; TLS clients say so in ALPN.
const H2: &[&[u8]] = &[b"h2"];

/// Accepted connections, with Nagle's algorithm off (a response is a few
/// small HTTP/2 frames that must not wait for the peer's delayed ACK). A
/// failed accept (out of file descriptors) is logged and retried after a
/// pause instead of ending the server.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot disable Nagle's algorithm");
                    }
                    return Some((Ok(stream), listener));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Waits, bounded, until the driver serves clients.
async fn wait_serving(driver: &DriverHandle, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        match driver.call(|state| state.is_serving()).await {
            Ok(true) => return,
            Ok(false) => tokio::time::sleep(Duration::from_millis(2)).await,
            Err(_) => return,
        }
    }
    tracing::warn!(
        ?limit,
        "not serving clients yet; accepting connections anyway"
    );
}

/// At the leader: hands leadership to the best successor and waits, at most
/// `limit`, until another node leads, still serving meanwhile (its vote
/// and its log help the successor's election).
async fn hand_off(driver: &DriverHandle, limit: Duration) {
    let Ok(Some(to)) = driver.call(|state| state.hand_off()).await else {
        return;
    };
    tracing::info!(to, "stopping: handing leadership over first");
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        match driver.call(|state| state.led_by_another()).await {
            Ok(true) => {
                tracing::info!(to, "leadership handed over");
                return;
            }
            Ok(false) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => return,
        }
    }
    tracing::warn!(?limit, to, "no new leader yet; stopping anyway");
}

/// Resolves when the process is asked to stop.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the node");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs one node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    config.validate()?;
    // Before anything else: a node whose certificates are unusable must
    // say so at once, not after recovering.
    let tls = config.tls_files().map(synod_tls::Tls::load).transpose()?;
    // The Admin port's own material: the node's certificate, and the CA
    // whose certificates make a caller an admin.
    let admin_tls = match config.admin_addr.0 {
        Some(_) => config
            .admin_tls_files()
            .map(synod_tls::Tls::load)
            .transpose()?,
        None => None,
    };
    let handshake_timeout = Duration::from_millis(config.tls_handshake_timeout_ms);
    let x509_identity = synod_tls::ClientIdentity::from(config.tls_client_identity);
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let ensemble = config.ensemble()?;
    let (recovered, log) = match config.storage_config() {
        Some(storage) => {
            let (log, recovered) =
                crate::storage::durable::DurableLog::recover(storage, config.state_config())?;
            // The log segments and the snapshot window read to recover
            // are freed: return that memory before serving.
            crate::memory::release_freed();
            (recovered, Some(log))
        }
        None => {
            tracing::warn!("no --data-dir: state is kept in memory only and lost on restart");
            (
                crate::storage::durable::Recovered {
                    machine: synod_core::state::StateMachine::new(config.state_config()),
                    durable: Default::default(),
                    slot_records: Default::default(),
                    timings: Default::default(),
                },
                None,
            )
        }
    };
    // After recovery, which holds the directories' locks: no other process
    // writes the identity file meanwhile.
    let identity = match &config.data_dir {
        Some(dir) => crate::storage::identity::IdentityFile::open_or_init(
            Arc::new(crate::storage::RealFs),
            dir,
            &config.cluster,
            config.initial_cluster_state == crate::config::InitialClusterState::Existing,
            crate::storage::identity::random_id,
        )?,
        None => crate::storage::identity::IdentityFile::in_memory(
            &config.cluster,
            crate::storage::identity::random_id()?,
        ),
    };
    identity.check_state(recovered.machine.cluster_id())?;
    tracing::info!(
        cluster = %config.cluster,
        cluster_id = %identity.identity().cluster_id.map_or("none yet".into(), crate::storage::identity::format_id),
        incarnation = %crate::storage::identity::format_id(identity.identity().incarnation),
        "identity"
    );
    // Listen only once recovered, so that accepting connections means
    // ready to serve (and a second process on the same data directory
    // fails on the lock before it takes any port).
    let listener = bind(config.client_addr).await?;
    let http_listener = bind(config.http_addr).await?;
    let zookeeper_listener = match config.zookeeper_addr.0 {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let peer_listener = match ensemble.listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin_listener = match config.admin_addr.0 {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin_local = admin_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let zookeeper_secure_listener = match (&tls, config.zookeeper_secure_addr.0) {
        (Some(_), Some(addr)) => Some(bind(addr).await?),
        _ => None,
    };
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.client_addr,
        source,
    })?;
    let metrics = Arc::new(Metrics::default());
    let (network, peer_service) = if peer_listener.is_some() {
        let (inbound_tx, inbound) = tokio::sync::mpsc::channel(4096);
        let (sender, service) = crate::peer::start(
            crate::peer::PeerConfig {
                cluster: config.cluster.clone(),
                cluster_id: identity.shared_cluster_id(),
                node_id: ensemble.id,
                incarnation: identity.identity().incarnation,
                abstaining: Arc::new(std::sync::atomic::AtomicBool::new(
                    identity.identity().joined_existing,
                )),
                peers: ensemble.others(),
                max_frame_bytes: config.max_peer_frame_bytes,
                queue: 4096,
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_secs(2),
                keepalive: Duration::from_millis(config.peer_keepalive_ms),
                stall_timeout: Duration::from_millis(config.peer_keepalive_ms.saturating_mul(5)),
                address_template: config.peer_address_template.clone(),
                tls: tls.clone(),
            },
            inbound_tx,
        );
        (Some(driver::Network { sender, inbound }), Some(service))
    } else {
        (None, None)
    };
    let (driver, mut driver_task) = driver::spawn(
        &config,
        &ensemble,
        recovered,
        log,
        identity,
        metrics.clone(),
        network,
    )?;
    // Only the one voter itself: a node joining a one-voter ensemble (in no
    // list, with the voter's flags) is not alone and cannot serve until it
    // is added, so it must not wait here.
    if ensemble.voters.len() == 1
        && ensemble.voters.contains_key(&ensemble.id)
        && ensemble.observers.is_empty()
    {
        // Alone, the node leads as soon as its own promise is on disk (a
        // few milliseconds). Clients that connect meanwhile wait in the
        // listen backlog instead of being told "not serving yet", so that
        // accepting connections still means ready for a single node.
        wait_serving(&driver, Duration::from_secs(30)).await;
    }
    let service = CoordinationServer::new(CoordinationService::new(
        driver.clone(),
        config.max_pipelined_requests,
        metrics.clone(),
    ))
    .max_decoding_message_size(config.max_request_bytes)
    .max_encoding_message_size(config.max_request_bytes.saturating_mul(4));
    tracing::info!(
        node_id = ensemble.id,
        client_api = %local,
        http = %config.http_addr,
        zookeeper = %config.zookeeper_addr,
        admin = ?admin_local,
        zookeeper_secure = ?zookeeper_secure_listener.as_ref().and_then(|l| l.local_addr().ok()),
        tls = tls.is_some(),
        peers = ?ensemble.listen,
        voters = ?ensemble.voters.keys().collect::<Vec<_>>(),
        "synod node serving"
    );
    // Both servers stop on the same signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let peers = match (peer_listener, peer_service) {
        (Some(listener), Some(service)) => {
            // Pings close inbound connections whose sender vanished, so
            // their streams do not linger.
            let keepalive = Duration::from_millis(config.peer_keepalive_ms);
            let server = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive))
                .add_service(service);
            let serving: Serving<'static> = match &tls {
                // Peers always present a certificate from the CA.
                Some(tls) => Box::pin(server.serve_with_incoming_shutdown(
                    synod_tls::accept::incoming(
                        listener,
                        tls.server_config(synod_tls::ClientCerts::Required, H2)?,
                        handshake_timeout,
                        "peer",
                        x509_identity,
                    ),
                    stopped(),
                )),
                None => {
                    Box::pin(server.serve_with_incoming_shutdown(incoming(listener), stopped()))
                }
            };
            Some(tokio::spawn(serving))
        }
        _ => None,
    };
    let tls_watch: Vec<_> = [&tls, &admin_tls]
        .into_iter()
        .flatten()
        .map(|tls| tls.watch(Duration::from_secs(config.tls_reload_secs)))
        .collect();
    let driver_for_stop = driver.clone();
    let admin = match admin_listener {
        Some(listener) => {
            let server = tonic::transport::Server::builder()
                .layer(MetricsLayer::new(metrics.clone()))
                .add_service(AdminServer::new(AdminService::new(
                    driver.clone(),
                    config.cluster.clone(),
                )));
            let serving: Serving<'static> = match &admin_tls {
                // Only callers with a certificate from the admin CA.
                Some(tls) => Box::pin(server.serve_with_incoming_shutdown(
                    synod_tls::accept::incoming(
                        listener,
                        tls.server_config(synod_tls::ClientCerts::Required, H2)?,
                        handshake_timeout,
                        "admin",
                        x509_identity,
                    ),
                    stopped(),
                )),
                // Loopback unless --admin-allow-remote (checked by
                // validate).
                None => {
                    Box::pin(server.serve_with_incoming_shutdown(incoming(listener), stopped()))
                }
            };
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let zookeeper_front = crate::api::zookeeper::ZooKeeperFrontEnd::new(
        driver.clone(),
        config.zookeeper_config(&ensemble),
    );
    let zookeeper = zookeeper_listener
        .map(|listener| tokio::spawn(zookeeper_front.clone().serve(listener, stopped())));
    let zookeeper_secure = match (zookeeper_secure_listener, &tls) {
        (Some(listener), Some(tls)) => {
            let connections = synod_tls::accept::incoming(
                listener,
                tls.server_config(config.tls_client_certs.into(), &[])?,
                handshake_timeout,
                "zookeeper-secure",
                x509_identity,
            );
            Some(tokio::spawn(
                zookeeper_front.clone().serve_tls(connections, stopped()),
            ))
        }
        _ => None,
    };
    let http = tokio::spawn(
        axum::serve(
            http_listener,
            http_router(driver, metrics.clone(), zookeeper_front),
        )
        .with_graceful_shutdown(stopped())
        .into_future(),
    );
    let signal = {
        let stopped = stopped();
        let driver = driver_for_stop;
        let hand_off_limit = Duration::from_millis(config.election_timeout_ms.saturating_mul(2))
            .min(config.shutdown_grace());
        async move {
            tokio::select! {
                () = shutdown => {},
                () = stopped => {},
            }
            hand_off(&driver, hand_off_limit).await;
            tracing::info!("stopping: no new requests, draining connections");
            let _ = stop_tx.send(true);
        }
    };
    let server = tonic::transport::Server::builder()
        .layer(MetricsLayer::new(metrics))
        .add_service(service)
        .add_service(AdminServer::new(AdminElsewhere::new(admin_local)));
    let serve: Serving<'_> = match &tls {
        Some(tls) => Box::pin(server.serve_with_incoming_shutdown(
            synod_tls::accept::incoming(
                listener,
                tls.server_config(config.tls_client_certs.into(), H2)?,
                handshake_timeout,
                "client",
                x509_identity,
            ),
            signal,
        )),
        None => Box::pin(server.serve_with_incoming_shutdown(incoming(listener), signal)),
    };
    // Graceful shutdown waits for clients to close their connections; a
    // client that keeps one open must not hold the node up for long.
    let grace = config.shutdown_grace();
    let drain_deadline = {
        let stopped = stopped();
        async move {
            stopped.await;
            tokio::time::sleep(grace).await;
        }
    };
    tokio::select! {
        served = serve => served?,
        () = drain_deadline => tracing::warn!(?grace, "connections still open after the grace period; closing them"),
        // The driver only ends on its own when it cannot go on (its storage
        // is gone, or a bug panicked it): a node without it must not linger
        // half alive behind a green health check.
        ended = &mut driver_task => {
            http.abort();
            for task in [&peers, &admin].into_iter().flatten() {
                task.abort();
            }
            for task in [&zookeeper, &zookeeper_secure].into_iter().flatten() {
                task.abort();
            }
            for watch in &tls_watch {
                watch.abort();
            }
            return Err(ServeError::DriverStopped(match ended {
                Ok(Ok(())) => "its job queue closed".into(),
                Ok(Err(failed)) => failed.to_string(),
                Err(error) => error.to_string(),
            }));
        }
    }
    http.abort();
    for task in [&peers, &admin].into_iter().flatten() {
        task.abort();
    }
    for watch in &tls_watch {
        watch.abort();
    }
    if let Some(zookeeper) = &zookeeper_secure {
        zookeeper.abort();
    }
    if let Some(zookeeper) = zookeeper {
        zookeeper.abort();
    }
    tracing::info!("synod node stopped");
    Ok(())
}

/// `/metrics` in Prometheus text format, `/healthz` while the process runs,
/// `/readyz` while the node is a member, knows a leader and has applied
/// what it knows to be committed (and its driver answers).
fn http_router(
    driver: DriverHandle,
    metrics: Arc<Metrics>,
    zookeeper: crate::api::zookeeper::ZooKeeperFrontEnd,
) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let scrape = driver.clone();
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let driver = driver.clone();
                async move {
                    let answered = tokio::time::timeout(
                        Duration::from_secs(2),
                        driver.call(|state| state.readiness()),
                    )
                    .await;
                    match answered {
                        Ok(Ok(Ok(()))) => (StatusCode::OK, "ready\n".to_owned()),
                        Ok(Ok(Err(why))) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                        _ => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "driver not answering\n".to_owned(),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let driver = scrape.clone();
                let metrics = metrics.clone();
                async move {
                    let gauges = driver
                        .call(|state| state.gauges())
                        .await
                        .unwrap_or_default();
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(&gauges),
                    )
                }
            }),
        )
        // ZooKeeper's AdminServer commands, for tools that read them.
        .route(
            "/commands",
            get(|| async {
                let names = crate::api::zookeeper::ZooKeeperFrontEnd::command_names();
                json_response(StatusCode::OK, &serde_json::json!({ "commands": names }))
            }),
        )
        .route(
            "/commands/{name}",
            get(
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let zookeeper = zookeeper.clone();
                    async move {
                        match zookeeper.command(&name).await {
                            Some(answer) => json_response(StatusCode::OK, &answer),
                            None => json_response(
                                StatusCode::NOT_FOUND,
                                &serde_json::json!({
                                    "command": name,
                                    "error": "Unknown command",
                                }),
                            ),
                        }
                    }
                },
            ),
        )
}

fn json_response(
    status: axum::http::StatusCode,
    body: &serde_json::Value,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
) {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
