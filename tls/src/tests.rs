//! TLS between real sockets on loopback: mutual TLS, refusals, rotation,
//! stalled and plaintext clients, and peer identity by name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::generate::DevCa;

const LOCAL: &str = "127.0.0.1";

fn files(dir: &Path, ca: &DevCa, stem: &str) -> TlsFiles {
    ca.write(dir, stem, stem, &[LOCAL.to_owned(), format!("{stem}.test")])
        .expect("certificate written")
}

/// An echo server on loopback: every accepted connection sends back what
/// it reads. Returns its address and a receiver of the client
/// certificates' counts, one per accepted connection.
async fn echo_server(
    config: Arc<ServerConfig>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind((LOCAL, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut conns = accept::incoming(
        listener,
        config,
        Duration::from_millis(500),
        "test",
        ClientIdentity::Subject,
    );
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = conns.next().await {
            let _ = seen.send(conn.info().peer_certificates.map_or(0, |c| c.len()));
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen_rx)
}

async fn client(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(LOCAL).expect("IP name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Whether a round trip works on `conn`: under TLS 1.3 a refused client
/// certificate shows only at the first read.
async fn echoes(conn: &mut tokio_rustls::client::TlsStream<TcpStream>) -> bool {
    if conn.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), conn.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping"
    )
}

#[tokio::test]
async fn mutual_tls_serves_a_client_of_the_same_ca_and_refuses_others() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::new("test ca").expect("ca");
    let server = Tls::load(files(dir.path(), &ca, "server")).expect("server");
    let (addr, mut seen) = echo_server(
        server
            .server_config(ClientCerts::Required, &[])
            .expect("config"),
    )
    .await;

    let member = Tls::load(files(dir.path(), &ca, "client")).expect("client");
    let mut conn = client(member.client_config(&[]).expect("config"), addr)
        .await
        .expect("handshake");
    assert!(
        echoes(&mut conn).await,
        "a client of the cluster's CA is served"
    );
    assert_eq!(seen.recv().await, Some(1), "the server saw its certificate");

    // The CA alone: no client certificate.
    let anonymous = Tls::load(TlsFiles {
        ca: member.files().ca.clone(),
        ..TlsFiles::default()
    })
    .expect("ca only");
    let refused = match client(anonymous.client_config(&[]).expect("config"), addr).await {
        Ok(mut conn) => !echoes(&mut conn).await,
        Err(_) => true,
    };
    assert!(refused, "no certificate, no service");

    // A certificate from another CA that trusts this server.
    let other_dir = tempfile::tempdir().expect("dir");
    let other = DevCa::new("other ca").expect("ca");
    let mut stranger_files = files(other_dir.path(), &other, "stranger");
    stranger_files.ca = member.files().ca.clone();
    let stranger = Tls::load(stranger_files).expect("stranger");
    let refused = match client(stranger.client_config(&[]).expect("config"), addr).await {
        Ok(mut conn) => !echoes(&mut conn).await,
        Err(_) => true,
    };
    assert!(refused, "a certificate from another CA is refused");

    // The refusals cost the first client nothing.
    assert!(echoes(&mut conn).await);
}

#[tokio::test]
async fn optional_client_certificates_serve_clients_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::new("test ca").expect("ca");
    let server = Tls::load(files(dir.path(), &ca, "server")).expect("server");
    let (addr, mut seen) = echo_server(
        server
            .server_config(ClientCerts::Optional, &[])
            .expect("config"),
    )
    .await;
    let anonymous = Tls::load(TlsFiles {
        ca: server.files().ca.clone(),
        ..TlsFiles::default()
    })
    .expect("ca only");
    let mut conn = client(anonymous.client_config(&[]).expect("config"), addr)
        .await
        .expect("handshake");
    assert!(echoes(&mut conn).await);
    assert_eq!(seen.recv().await, Some(0), "no certificate was presented");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_refuses_it() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::new("test ca").expect("ca");
    let server = Tls::load(files(dir.path(), &ca, "server")).expect("server");
    let (addr, _seen) = echo_server(
        server
            .server_config(ClientCerts::None, &[])
            .expect("config"),
    )
    .await;
    let other_dir = tempfile::tempdir().expect("dir");
    let other = DevCa::new("other ca").expect("ca");
    let doubter = Tls::load(files(other_dir.path(), &other, "doubter")).expect("doubter");
    let result = client(doubter.client_config(&[]).expect("config"), addr).await;
    assert!(
        result.is_err(),
        "the server's certificate is not from its CA"
    );
}

#[tokio::test]
async fn plaintext_and_silent_clients_are_dropped_without_holding_up_others() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::new("test ca").expect("ca");
    let server = Tls::load(files(dir.path(), &ca, "server")).expect("server");
    let (addr, mut seen) = echo_server(
        server
            .server_config(ClientCerts::None, &[])
            .expect("config"),
    )
    .await;
    // Says nothing: the handshake times out (500 ms here).
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Speaks plaintext: the handshake fails at once.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    // At most an alert comes back, then the connection is closed.
    let mut rest = Vec::new();
    let answer = tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut rest)).await;
    assert!(
        matches!(answer, Ok(Ok(n)) if n < 64) || matches!(answer, Ok(Err(_))),
        "the plaintext connection is closed: {answer:?}"
    );
    // Meanwhile a real client is served.
    let trusting = Tls::load(TlsFiles {
        ca: server.files().ca.clone(),
        ..TlsFiles::default()
    })
    .expect("ca only");
    let mut conn = client(trusting.client_config(&[]).expect("config"), addr)
        .await
        .expect("handshake");
    assert!(echoes(&mut conn).await);
    assert_eq!(
        seen.recv().await,
        Some(0),
        "only the real client got through"
    );
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed after the handshake timeout: {closed:?}"
    );
    assert!(seen.try_recv().is_err(), "neither reached the server");
}

#[tokio::test]
async fn rotated_files_serve_new_connections_and_keep_established_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let old_ca = DevCa::new("old ca").expect("ca");
    let server_files = files(dir.path(), &old_ca, "server");
    let server = Tls::load(server_files.clone()).expect("server");
    let (addr, _seen) = echo_server(
        server
            .server_config(ClientCerts::None, &[])
            .expect("config"),
    )
    .await;
    let old_client = Tls::load(TlsFiles {
        ca: server_files.ca.clone(),
        ..TlsFiles::default()
    })
    .expect("client");
    let mut established = client(old_client.client_config(&[]).expect("config"), addr)
        .await
        .expect("handshake");
    assert!(echoes(&mut established).await);
    assert!(!server.reload().expect("reload"), "nothing changed yet");

    // The CA and the server's certificate are replaced in place.
    let new_dir = tempfile::tempdir().expect("dir");
    let new_ca = DevCa::new("new ca").expect("ca");
    let fresh = files(new_dir.path(), &new_ca, "server");
    for (from, to) in [
        (&fresh.cert, &server_files.cert),
        (&fresh.key, &server_files.key),
        (&fresh.ca, &server_files.ca),
    ] {
        std::fs::copy(from.as_ref().expect("path"), to.as_ref().expect("path")).expect("copy");
    }
    assert!(server.reload().expect("reload"), "the new files are taken");

    let new_client = Tls::load(TlsFiles {
        ca: fresh.ca.clone(),
        ..TlsFiles::default()
    })
    .expect("client");
    let mut conn = client(new_client.client_config(&[]).expect("config"), addr)
        .await
        .expect("a client of the new CA connects");
    assert!(echoes(&mut conn).await);
    assert!(
        client(old_client.client_config(&[]).expect("config"), addr)
            .await
            .is_err(),
        "the old CA no longer vouches for the server"
    );
    assert!(
        echoes(&mut established).await,
        "the established connection lives on"
    );
}

#[test]
fn a_broken_file_fails_the_load_and_leaves_a_reload_on_the_last_good_material() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::new("test ca").expect("ca");
    let good = files(dir.path(), &ca, "server");
    let cert = good.cert.clone().expect("cert");
    let key = good.key.clone().expect("key");

    let no_key = Tls::load(TlsFiles {
        key: None,
        ..good.clone()
    });
    assert!(matches!(no_key, Err(TlsError::Missing(_))), "{no_key:?}");

    let other = ca
        .issue("other", &["other.test".to_owned()])
        .expect("issue");
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, other.key_pem).expect("write");
    let mismatch = Tls::load(TlsFiles {
        key: Some(other_key),
        ..good.clone()
    });
    assert!(
        matches!(mismatch, Err(TlsError::KeyMismatch { .. })),
        "{mismatch:?}"
    );

    let tls = Tls::load(good.clone()).expect("good");
    std::fs::write(&cert, "not a certificate").expect("write");
    let error = tls.reload().expect_err("garbage is refused");
    assert!(
        error.to_string().contains(&cert.display().to_string()),
        "{error}"
    );
    assert!(
        tls.server_config(ClientCerts::None, &[]).is_ok(),
        "the last good material stays"
    );
    std::fs::remove_file(&key).expect("remove");
    assert!(matches!(tls.reload(), Err(TlsError::Read { .. })));
}

#[test]
fn a_certificate_is_valid_only_for_its_own_names() {
    let ca = DevCa::new("test ca").expect("ca");
    let issued = ca
        .issue(
            "node-1",
            &[
                "node-1.peers.ns.svc".to_owned(),
                "*.wild.ns.svc".to_owned(),
                "127.0.0.2".to_owned(),
            ],
        )
        .expect("issue");
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem");
    assert!(valid_for(&der, "node-1.peers.ns.svc"));
    assert!(!valid_for(&der, "node-2.peers.ns.svc"));
    assert!(
        valid_for(&der, "node-2.wild.ns.svc"),
        "a wildcard covers every member"
    );
    assert!(valid_for(&der, "127.0.0.2"));
    assert!(!valid_for(&der, "127.0.0.3"));
    assert!(!valid_for(&der, "not a name"));
}

#[test]
fn a_subject_reads_as_zookeeper_names_it() {
    let ca = DevCa::new("test ca").expect("ca");
    let issued = ca
        .issue("client, one", &["client.test".to_owned()])
        .expect("issue");
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem");
    assert_eq!(subject(&der).as_deref(), Some("CN=client\\, one"));
    assert_eq!(escape_dn_value(" a+b "), "\\ a\\+b\\ ");
    assert_eq!(
        subject(&CertificateDer::from(vec![1, 2, 3])),
        None,
        "garbage is no subject"
    );
}

#[test]
fn a_san_identity_is_the_first_name_of_its_kind() {
    let ca = DevCa::new("test ca").expect("ca");
    let issued = ca
        .issue(
            "client",
            &[
                "10.1.2.3".to_owned(),
                "app.example".to_owned(),
                "other.example".to_owned(),
                "2001:db8::7".to_owned(),
            ],
        )
        .expect("issue");
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem");
    assert_eq!(
        ClientIdentity::Subject.of(&der).as_deref(),
        Some("CN=client")
    );
    assert_eq!(
        ClientIdentity::SanDns.of(&der).as_deref(),
        Some("app.example")
    );
    assert_eq!(ClientIdentity::SanIp.of(&der).as_deref(), Some("10.1.2.3"));
    assert_eq!(ClientIdentity::SanEmail.of(&der), None, "no email SAN");
    assert_eq!(ClientIdentity::SanUri.of(&der), None, "no URI SAN");
    let v6_only = ca.issue("v6", &["2001:db8::7".to_owned()]).expect("issue");
    let der = CertificateDer::from_pem_slice(v6_only.cert_pem.as_bytes()).expect("pem");
    assert_eq!(
        ClientIdentity::SanIp.of(&der).as_deref(),
        Some("2001:db8::7")
    );
}

proptest::proptest! {
    /// Fuzz: any bytes, and any certificate with bytes changed, give a
    /// subject or none, never a panic.
    #[test]
    fn any_bytes_give_a_subject_or_none(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        value in proptest::prelude::any::<u8>(),
    ) {
        let _ = subject(&CertificateDer::from(bytes));
        let ca = DevCa::new("fuzz ca").expect("ca");
        let issued = ca.issue("fuzz", &["fuzz.test".to_owned()]).expect("issue");
        let mut der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .expect("pem")
            .to_vec();
        let i = at.index(der.len());
        der[i] = value;
        let _ = subject(&CertificateDer::from(der.clone()));
        for kind in [ClientIdentity::SanDns, ClientIdentity::SanEmail, ClientIdentity::SanUri, ClientIdentity::SanIp] {
            let _ = kind.of(&CertificateDer::from(der.clone()));
        }
        let _ = valid_for(&CertificateDer::from(der), "fuzz.test");
    }
}
