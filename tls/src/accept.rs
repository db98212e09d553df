//! A listener's connections after their TLS handshake: what a tonic server
//! or the ZooKeeper front end serves when TLS is on.
//!
//! Handshakes run concurrently, each bounded by a timeout, so a client
//! that connects and says nothing (or plaintext, or a certificate from
//! another CA) costs one task for a few seconds and a log line, and never
//! holds up anyone else's connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// A connection whose TLS handshake succeeded.
#[derive(Debug)]
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    /// Worked out once, at the handshake: tonic hands a copy to every
    /// request, and the identity takes parsing the certificate.
    info: TlsConnInfo,
}

/// Who is on the other end of a [`TlsConn`]: what tonic hands each
/// request in its extensions.
#[derive(Debug, Clone)]
pub struct TlsConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain (its own first), if it sent one.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// The client's identity for the `x509` ACL scheme: its certificate's
    /// subject or one of its SANs, as the listener's
    /// [`crate::ClientIdentity`] says.
    pub x509_id: Option<Arc<str>>,
}

impl TlsConn {
    fn new(
        inner: tokio_rustls::server::TlsStream<TcpStream>,
        remote_addr: SocketAddr,
        identity: crate::ClientIdentity,
    ) -> Self {
        let peer_certificates: Option<Arc<[CertificateDer<'static>]>> = inner
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
        let x509_id = peer_certificates
            .as_deref()
            .and_then(<[_]>::first)
            .and_then(|cert| identity.of(cert))
            .map(Arc::from);
        TlsConn {
            inner,
            info: TlsConnInfo {
                remote_addr: Some(remote_addr),
                peer_certificates,
                x509_id,
            },
        }
    }

    pub fn info(&self) -> TlsConnInfo {
        self.info.clone()
    }

    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsConnInfo;

    fn connect_info(&self) -> TlsConnInfo {
        self.info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` and yields those whose handshake
/// completes within `handshake_timeout`, each knowing its client's
/// `identity`. `port` names the listener in log lines. The accepting task
/// ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    port: &'static str,
    identity: crate::ClientIdentity,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: retry, do not end.
                    tracing::warn!(%error, port, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot disable Nagle's algorithm");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(inner)) => {
                        let _ = tx.send(Ok(TlsConn::new(inner, remote, identity))).await;
                    }
                    // Closed before a byte: a TCP health probe, not a client.
                    Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(%remote, port, %error, "connection closed before a TLS handshake");
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%remote, port, %error, "TLS handshake failed; connection closed");
                    }
                    Err(_) => {
                        tracing::warn!(%remote, port, ?handshake_timeout, "TLS handshake did not complete in time; connection closed");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
