//! The client side: a tonic connector that dials TCP and then TLS, for
//! clients, `synodctl`, the operator and peers dialling each other. The
//! server name checked against the certificate is the endpoint's host (a
//! DNS name or an IP address).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Dials `host:port` of the URI it is given, then TLS with `config`.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
}

impl Connector {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Connector { config }
    }
}

/// The name a server's certificate must be valid for, from a host (a DNS
/// name or an IP address, IPv6 bare or bracketed).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).ok()
}

/// A TLS connection as hyper wants it.
pub type ClientConn = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

type Connecting = Pin<Box<dyn Future<Output = io::Result<ClientConn>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = ClientConn;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // An IPv6 literal comes bracketed in a URI, bare in a name.
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(bare.clone())
                .map_err(|_| invalid("a host that is neither a DNS name nor an IP address"))?;
            let tcp = TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
