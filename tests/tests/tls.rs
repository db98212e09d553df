//! TLS through the real binaries on loopback: an ensemble whose peers speak
//! mutual TLS serves TLS clients (the Rust client and `synodctl`) and
//! refuses plaintext ones; certificates rotated in place are taken without
//! a restart and without dropping sessions; the ZooKeeper secure port
//! speaks the ZooKeeper protocol over TLS; an `x509` ACL admits the client
//! certificate it names; unusable files stop a node at start with the file
//! named. (That a peer's certificate must be valid for
//! the address of the member it claims to be is tested in `synod-node`'s
//! peer module: every test node shares one loopback address.)

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_client::{Client, ClientConfig, CreateOptions};
use synod_tests::Ensemble;
use synod_tests::{TempDir, TestNode};
use synod_tls::generate::DevCa;
use synod_tls::{Tls, TlsFiles};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn issue(ca: &DevCa, dir: &Path, stem: &str, names: &[String]) -> TlsFiles {
    ca.write(dir, stem, stem, names)
        .expect("certificate written")
}

/// The flags that turn TLS on with `files`.
fn tls_flags(files: &TlsFiles) -> Vec<String> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().expect("file").display().to_string();
    vec![
        "--tls-cert".into(),
        path(&files.cert),
        "--tls-key".into(),
        path(&files.key),
        "--tls-ca".into(),
        path(&files.ca),
    ]
}

fn client_config(endpoints: &str, tls: Option<Arc<Tls>>) -> ClientConfig {
    let mut config = ClientConfig::new(endpoints.split(','));
    config.connect_timeout = Duration::from_secs(3);
    config.request_timeout = Duration::from_secs(10);
    config.tls = tls;
    config
}

/// Only the CA: a client without a certificate of its own.
fn trusting(files: &TlsFiles) -> Arc<Tls> {
    Tls::load(TlsFiles {
        ca: files.ca.clone(),
        ..TlsFiles::default()
    })
    .expect("ca")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_ensemble_serves_tls_clients_and_refuses_plaintext_ones() {
    let temp = TempDir::new("tls-ensemble").expect("temp dir");
    let ca = DevCa::new("test ca").expect("ca");
    let here = synod_tests::test_loopback().to_string();
    let node_files = issue(&ca, temp.path(), "node", std::slice::from_ref(&here));
    let mut flags = tls_flags(&node_files);
    flags.extend(["--zookeeper-secure-addr".into(), "off".into()]);
    let ensemble = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Ensemble::start(3, &flags, None)
    })
    .await
    .expect("join")
    .expect("a TLS ensemble starts");
    // Ready means a leader was elected: the peers reached each other.
    let ensemble = tokio::task::spawn_blocking(move || {
        ensemble
            .wait_ready(Duration::from_secs(30))
            .map(|()| ensemble)
    })
    .await
    .expect("join")
    .expect("the members elect a leader over mutual TLS");
    let endpoints = ensemble.endpoints();

    // Writes through one member reach the others: the peers replicate
    // over mutual TLS.
    let client = Client::connect(client_config(&endpoints, Some(trusting(&node_files))))
        .await
        .expect("a TLS client connects");
    client
        .create("/secure", b"yes", &CreateOptions::default())
        .await
        .expect("create");
    for id in ensemble.ids() {
        let one = Client::connect(client_config(
            &ensemble.endpoint(id),
            Some(trusting(&node_files)),
        ))
        .await
        .expect("connect to one member");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match one.get_data("/secure").await {
                Ok((data, _)) => {
                    assert_eq!(data, b"yes");
                    break;
                }
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "not there yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("node {id} never had /secure: {error}"),
            }
        }
    }

    let plaintext = Client::connect(client_config(&endpoints, None)).await;
    assert!(plaintext.is_err(), "a plaintext client is refused");
    let other_dir = TempDir::new("tls-other-ca").expect("temp dir");
    let other = DevCa::new("other ca").expect("ca");
    let stranger = issue(
        &other,
        other_dir.path(),
        "stranger",
        std::slice::from_ref(&here),
    );
    let doubting = Client::connect(client_config(&endpoints, Some(trusting(&stranger)))).await;
    assert!(
        doubting.is_err(),
        "a client that does not trust the CA refuses the servers"
    );

    // synodctl with the same CA: TLS through the command line too.
    let bin = synod_tests::binary("synodctl").expect("synodctl");
    let ca_path = node_files.ca.clone().expect("ca");
    let endpoints_for_ctl = endpoints.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["--endpoints", &endpoints_for_ctl, "--tls-ca"])
            .arg(ca_path)
            .args(["get", "/secure"])
            .output()
            .expect("run synodctl")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "synodctl over TLS: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("yes"));
    // The one session that was refused nothing still works.
    assert_eq!(client.get_data("/secure").await.expect("get").0, b"yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_are_taken_without_a_restart_or_a_dropped_session() {
    let temp = TempDir::new("tls-rotate").expect("temp dir");
    let here = synod_tests::test_loopback().to_string();
    let old_ca = DevCa::new("old ca").expect("ca");
    let files = issue(&old_ca, temp.path(), "node", std::slice::from_ref(&here));
    let mut flags = tls_flags(&files);
    flags.extend([
        "--tls-reload-secs".into(),
        "1".into(),
        "--zookeeper-secure-addr".into(),
        "off".into(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start(&flags).expect("node");
    let endpoint = node.endpoint();
    let old_trust = trusting(&files);
    let session = Client::connect(client_config(&endpoint, Some(old_trust.clone())))
        .await
        .expect("connect");
    session
        .create("/before", b"1", &CreateOptions::ephemeral())
        .await
        .expect("create");

    // A new CA and certificate, written over the old files.
    let new_dir = TempDir::new("tls-rotate-new").expect("temp dir");
    let new_ca = DevCa::new("new ca").expect("ca");
    let fresh = issue(&new_ca, new_dir.path(), "node", std::slice::from_ref(&here));
    for (from, to) in [
        (&fresh.cert, &files.cert),
        (&fresh.key, &files.key),
        (&fresh.ca, &files.ca),
    ] {
        std::fs::copy(from.as_ref().expect("file"), to.as_ref().expect("file")).expect("copy");
    }
    let new_trust = trusting(&fresh);
    let deadline = Instant::now() + Duration::from_secs(15);
    let renewed = loop {
        match Client::connect(client_config(&endpoint, Some(new_trust.clone()))).await {
            Ok(client) => break client,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not reloaded yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the rotated certificate was never served: {error}"),
        }
    };
    renewed
        .create("/after", b"2", &CreateOptions::default())
        .await
        .expect("create over the new certificate");
    assert!(
        Client::connect(client_config(&endpoint, Some(old_trust)))
            .await
            .is_err(),
        "the old CA no longer vouches for the node"
    );
    // The session made before the rotation kept its connection.
    assert_eq!(session.get_data("/after").await.expect("get").0, b"2");
    assert!(
        session.exists("/before").await.expect("exists").is_some(),
        "its ephemeral lives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zookeeper_secure_port_speaks_the_protocol_over_tls_only() {
    let temp = TempDir::new("tls-zookeeper").expect("temp dir");
    let here = synod_tests::test_loopback().to_string();
    let ca = DevCa::new("test ca").expect("ca");
    let files = issue(&ca, temp.path(), "node", std::slice::from_ref(&here));
    let secure = synod_tests::free_addr().expect("addr");
    let mut flags = tls_flags(&files);
    flags.extend(["--zookeeper-secure-addr".into(), secure.to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _node = TestNode::start(&flags).expect("node");

    // The four-letter word `ruok` over TLS.
    let config = trusting(&files).client_config(&[]).expect("client config");
    let tcp = tokio::net::TcpStream::connect(secure)
        .await
        .expect("connect");
    let name = synod_tls::connect::server_name(&here).expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake on the secure port");
    tls.write_all(b"ruok").await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert_eq!(answer, "imok");

    // Plaintext on the secure port is closed, not answered.
    let mut plain = tokio::net::TcpStream::connect(secure)
        .await
        .expect("connect");
    plain.write_all(b"ruok").await.expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "closed within the handshake timeout"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("imok"),
        "plaintext gets no answer"
    );
}

#[test]
fn a_node_refuses_to_start_on_unusable_tls_files() {
    let temp = TempDir::new("tls-bad").expect("temp dir");
    let ca = DevCa::new("test ca").expect("ca");
    let files = issue(&ca, temp.path(), "node", &["127.0.0.1".to_owned()]);
    let key = files.key.clone().expect("key");
    std::fs::write(&key, "not a key").expect("write");
    let bin = synod_tests::binary("synod").expect("synod");
    let addr = synod_tests::free_addr().expect("addr").to_string();
    let http = synod_tests::free_addr().expect("addr").to_string();
    let output = Command::new(bin)
        .args(["serve", "--client-addr", &addr, "--http-addr", &http])
        .args(["--zookeeper-addr", "off"])
        .args(tls_flags(&files))
        .output()
        .expect("run synod");
    assert!(
        !output.status.success(),
        "a node with a broken key does not start"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&key.display().to_string()),
        "the error names the file: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x509_acl_admits_the_certificate_it_names_and_no_other() {
    let temp = TempDir::new("tls-x509").expect("temp dir");
    let here = synod_tests::test_loopback().to_string();
    let ca = DevCa::new("test ca").expect("ca");
    let node_files = issue(&ca, temp.path(), "node", std::slice::from_ref(&here));
    let mut flags = tls_flags(&node_files);
    flags.extend(["--zookeeper-secure-addr".into(), "off".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start(&flags).expect("node");
    let endpoint = node.endpoint();
    let as_client = |stem: &str| {
        let mut files = ca
            .write(temp.path(), stem, stem, std::slice::from_ref(&here))
            .expect("certificate");
        files.ca = node_files.ca.clone();
        Tls::load(files).expect("client tls")
    };
    let alice = Client::connect(client_config(&endpoint, Some(as_client("alice"))))
        .await
        .expect("alice");
    let only_alice = CreateOptions {
        acl: vec![synod_client::Acl {
            perms: 31,
            scheme: "x509".into(),
            id: "CN=alice".into(),
        }],
        ..CreateOptions::default()
    };
    alice
        .create("/alice", b"mine", &only_alice)
        .await
        .expect("create with an x509 ACL");
    assert_eq!(
        alice.get_data("/alice").await.expect("alice reads").0,
        b"mine"
    );

    let bob = Client::connect(client_config(&endpoint, Some(as_client("bob"))))
        .await
        .expect("bob");
    let refused = bob.get_data("/alice").await;
    assert!(
        matches!(refused, Err(synod_client::Error::NoAuth { .. })),
        "another certificate is refused: {refused:?}"
    );
    let anonymous = Client::connect(client_config(&endpoint, Some(trusting(&node_files))))
        .await
        .expect("no certificate");
    let refused = anonymous.get_data("/alice").await;
    assert!(
        matches!(refused, Err(synod_client::Error::NoAuth { .. })),
        "no certificate is refused: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_san_identity_the_x509_acl_names_the_dns_san_not_the_subject() {
    let temp = TempDir::new("tls-x509-san").expect("temp dir");
    let here = synod_tests::test_loopback().to_string();
    let ca = DevCa::new("test ca").expect("ca");
    let node_files = issue(&ca, temp.path(), "node", std::slice::from_ref(&here));
    let mut flags = tls_flags(&node_files);
    flags.extend([
        "--zookeeper-secure-addr".into(),
        "off".into(),
        "--tls-client-identity".into(),
        "san-dns".into(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start(&flags).expect("node");
    let endpoint = node.endpoint();
    let as_client = |stem: &str, dns: &str| {
        let mut files = ca
            .write(temp.path(), stem, stem, &[here.clone(), dns.to_owned()])
            .expect("certificate");
        files.ca = node_files.ca.clone();
        Tls::load(files).expect("client tls")
    };
    let alice = Client::connect(client_config(
        &endpoint,
        Some(as_client("alice", "alice.apps.example")),
    ))
    .await
    .expect("alice");
    let acl = |id: &str| CreateOptions {
        acl: vec![synod_client::Acl {
            perms: 31,
            scheme: "x509".into(),
            id: id.into(),
        }],
        ..CreateOptions::default()
    };
    alice
        .create("/by-san", b"mine", &acl("alice.apps.example"))
        .await
        .expect("create with an x509 ACL naming the SAN");
    assert_eq!(alice.get_data("/by-san").await.expect("read").0, b"mine");
    // The subject is not the identity in this mode.
    alice
        .create("/by-subject", b"x", &acl("CN=alice"))
        .await
        .expect("create");
    let refused = alice.get_data("/by-subject").await;
    assert!(
        matches!(refused, Err(synod_client::Error::NoAuth { .. })),
        "the subject does not name the client: {refused:?}"
    );
    let bob = Client::connect(client_config(
        &endpoint,
        Some(as_client("bob", "bob.apps.example")),
    ))
    .await
    .expect("bob");
    let refused = bob.get_data("/by-san").await;
    assert!(
        matches!(refused, Err(synod_client::Error::NoAuth { .. })),
        "another SAN is refused: {refused:?}"
    );
}
