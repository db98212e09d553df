//! Dialling one endpoint, in plaintext or over TLS: the one place the
//! client, `synodctl`'s admin commands and the operator open a channel.

use std::sync::Arc;

use tonic::transport::{Channel, Endpoint};

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] synod_tls::TlsError),
}

/// Connects `endpoint` (an `http://host:port` URI), over TLS with `tls`'s
/// CA bundle and certificate when given: the server's certificate must be
/// valid for the host named in the endpoint.
pub async fn channel(
    endpoint: Endpoint,
    tls: Option<&Arc<synod_tls::Tls>>,
) -> Result<Channel, ConnectError> {
    match tls {
        None => Ok(endpoint.connect().await?),
        Some(tls) => {
            let config = tls.client_config(&[b"h2"])?;
            Ok(endpoint
                .connect_with_connector(synod_tls::connect::Connector::new(config))
                .await?)
        }
    }
}
