//! Process lifecycle of one node: start the driver and the gRPC listener,
//! serve until SIGTERM or ctrl-c, then stop accepting and drain.

use synod_proto::v1::coordination_server::CoordinationServer;

use crate::config::{ConfigError, NodeConfig};
use crate::driver;
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
    let listener = tokio::net::TcpListener::bind(config.client_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.client_addr,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.client_addr,
        source,
    })?;
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
    let driver = driver::spawn(&config, machine, log);
    let service = CoordinationServer::new(CoordinationService::new(driver))
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_request_bytes.saturating_mul(4));
    tracing::info!(client_api = %local, "synod node serving");
    // Graceful shutdown waits for clients to close their connections; a
    // client that keeps one open must not hold the node up for long.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("stopping: no new requests, draining connections");
        let _ = stopping_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        );
    let grace = config.shutdown_grace();
    let drain_deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serve => served?,
        () = drain_deadline => tracing::warn!(?grace, "connections still open after the grace period; closing them"),
    }
    tracing::info!("synod node stopped");
    Ok(())
}
