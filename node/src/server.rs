//! Process lifecycle of one node: recover, start the driver, the gRPC
//! listener and the HTTP endpoint (metrics and health), serve until SIGTERM
//! or ctrl-c, then stop accepting and drain for a bounded time.

use synod_proto::v1::coordination_server::CoordinationServer;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, NodeConfig};
use crate::driver::{self, DriverHandle};
use crate::metrics::{Metrics, MetricsLayer};
use crate::service::CoordinationService;

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
    Recovery(#[from] crate::durable::RecoveryError),
    #[error("the node's driver stopped: {0}")]
    DriverStopped(String),
    #[error("client API failed: {0}")]
    Transport(#[from] tonic::transport::Error),
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
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let (machine, log) = match config.storage_config() {
        Some(storage) => {
            let (log, machine) =
                crate::durable::DurableLog::recover(storage, config.state_config())?;
            (machine, Some(log))
        }
        None => {
            tracing::warn!("no --data-dir: state is kept in memory only and lost on restart");
            (
                synod_core::state::StateMachine::new(config.state_config()),
                None,
            )
        }
    };
    // Listen only once recovered, so that accepting connections means
    // ready to serve (and a second process on the same data directory
    // fails on the lock before it takes any port).
    let listener = bind(config.client_addr).await?;
    let http_listener = bind(config.http_addr).await?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.client_addr,
        source,
    })?;
    let metrics = Arc::new(Metrics::default());
    let (driver, mut driver_task) = driver::spawn(&config, machine, log, metrics.clone());
    let service = CoordinationServer::new(CoordinationService::new(driver.clone()))
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes.saturating_mul(4));
    tracing::info!(client_api = %local, http = %config.http_addr, "synod node serving");
    // Both servers stop on the same signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let http = tokio::spawn(
        axum::serve(http_listener, http_router(driver, metrics.clone()))
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    let signal = {
        let stopped = stopped();
        async move {
            tokio::select! {
                () = shutdown => {},
                () = stopped => {},
            }
            tracing::info!("stopping: no new requests, draining connections");
            let _ = stop_tx.send(true);
        }
    };
    let serve = tonic::transport::Server::builder()
        .layer(MetricsLayer::new(metrics))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        );
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
            return Err(ServeError::DriverStopped(match ended {
                Ok(()) => "its storage stopped".into(),
                Err(error) => error.to_string(),
            }));
        }
    }
    http.abort();
    tracing::info!("synod node stopped");
    Ok(())
}

/// `/metrics` in Prometheus text format, `/healthz` while the process runs,
/// `/readyz` while the driver answers (recovered and not wedged).
fn http_router(driver: DriverHandle, metrics: Arc<Metrics>) -> axum::Router {
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
                    let answered =
                        tokio::time::timeout(Duration::from_secs(2), driver.call(|_| ())).await;
                    match answered {
                        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, "driver not answering\n"),
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
}
