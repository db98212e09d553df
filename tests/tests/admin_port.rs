//! The Admin API on its own port, through the real binaries on loopback:
//! the client port refuses Admin calls and names the admin port; with TLS
//! the admin port takes only callers with a certificate from the admin CA
//! (not one from the ensemble's CA, not none), through the API and through
//! `synodctl`; without TLS a node refuses to start with a non-loopback
//! admin address unless explicitly opened.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use synod_tests::{TempDir, TestNode};
use synod_tls::generate::DevCa;
use synod_tls::{Tls, TlsFiles};

/// An Admin client of `addr` over TLS with `tls` (5 s per call).
async fn admin_over_tls(
    addr: std::net::SocketAddr,
    tls: &Arc<Tls>,
) -> Result<AdminClient<tonic::transport::Channel>, synod_client::connect::ConnectError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint URI")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5));
    let channel = synod_client::connect::channel(endpoint, Some(tls)).await?;
    Ok(AdminClient::new(channel))
}

/// Status through `tls`, or why not (a refused handshake surfaces either
/// at connect or, with TLS 1.3, at the first call).
async fn status_over_tls(addr: std::net::SocketAddr, tls: &Arc<Tls>) -> Result<(), String> {
    let mut admin = admin_over_tls(addr, tls)
        .await
        .map_err(|error| error.to_string())?;
    admin
        .status(pb::StatusRequest {})
        .await
        .map(|_| ())
        .map_err(|status| status.to_string())
}

/// TLS material with `cert`'s certificate and key, trusting `server_ca`.
fn identity(cert: &TlsFiles, server_ca: &Path) -> Arc<Tls> {
    Tls::load(TlsFiles {
        cert: cert.cert.clone(),
        key: cert.key.clone(),
        ca: Some(server_ca.to_owned()),
    })
    .expect("client material")
}

fn synodctl(args: &[&str]) -> std::process::Output {
    let bin = synod_tests::binary("synodctl").expect("synodctl");
    Command::new(bin)
        .args(["--timeout", "5s"])
        .args(args)
        .output()
        .expect("run synodctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_admin_port_takes_only_certificates_from_the_admin_ca() {
    let temp = TempDir::new("admin-port-tls").expect("temp dir");
    let cluster_dir = temp.path().join("cluster");
    let admin_dir = temp.path().join("admin");
    std::fs::create_dir_all(&cluster_dir).expect("dir");
    std::fs::create_dir_all(&admin_dir).expect("dir");
    let here = synod_tests::test_loopback().to_string();
    let names = std::slice::from_ref(&here);
    let cluster_ca = DevCa::new("cluster ca").expect("ca");
    let admin_ca = DevCa::new("admin ca").expect("ca");
    let node = cluster_ca
        .write(&cluster_dir, "node", "node", names)
        .expect("node certificate");
    let client = cluster_ca
        .write(&cluster_dir, "client", "a data client", names)
        .expect("client certificate");
    let operator = admin_ca
        .write(&admin_dir, "operator", "the operator", names)
        .expect("admin certificate");
    let server_ca = node.ca.clone().expect("ca file");
    let admin_ca_file = operator.ca.clone().expect("admin ca file");
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().expect("file").display().to_string();
    let flags = [
        "--tls-cert".to_owned(),
        path(&node.cert),
        "--tls-key".to_owned(),
        path(&node.key),
        "--tls-ca".to_owned(),
        path(&node.ca),
        "--tls-admin-ca".to_owned(),
        admin_ca_file.display().to_string(),
        "--zookeeper-secure-addr".to_owned(),
        "off".to_owned(),
    ];
    let node_process = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        TestNode::start(&flags)
    })
    .await
    .expect("join")
    .expect("a TLS node starts");
    let admin_addr = node_process.admin_addr();

    // The operator's certificate, from the admin CA: served.
    let operator_tls = identity(&operator, &server_ca);
    let mut served = Err(String::new());
    for _ in 0..50 {
        served = status_over_tls(admin_addr, &operator_tls).await;
        if served.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.expect("an admin certificate is served");

    // A certificate from the ensemble's CA is a data client, not an admin.
    let refused = status_over_tls(admin_addr, &identity(&client, &server_ca)).await;
    assert!(
        refused.is_err(),
        "a data client's certificate is refused by the admin port"
    );
    // No certificate at all.
    let anonymous = Tls::load(TlsFiles {
        ca: Some(server_ca.clone()),
        ..TlsFiles::default()
    })
    .expect("ca");
    assert!(
        status_over_tls(admin_addr, &anonymous).await.is_err(),
        "a caller without a certificate is refused by the admin port"
    );

    // The client port serves data clients but refuses Admin calls, saying
    // where the Admin API is.
    let mut on_client_port = admin_over_tls(node_process.addr, &identity(&client, &server_ca))
        .await
        .expect("the client port takes the data client");
    let denied = on_client_port
        .status(pb::StatusRequest {})
        .await
        .expect_err("no Admin on the client port");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains(&admin_addr.to_string()),
        "the refusal names the admin port: {denied:?}"
    );

    // synodctl: with the admin certificate, status works; without one it
    // fails and says what is missing.
    let admin_endpoint = admin_addr.to_string();
    let ca_arg = server_ca.display().to_string();
    let (cert_arg, key_arg) = (path(&operator.cert), path(&operator.key));
    let status = tokio::task::spawn_blocking({
        let (admin_endpoint, ca_arg) = (admin_endpoint.clone(), ca_arg.clone());
        move || {
            synodctl(&[
                "--admin-endpoints",
                &admin_endpoint,
                "--tls-ca",
                &ca_arg,
                "--tls-cert",
                &cert_arg,
                "--tls-key",
                &key_arg,
                "status",
            ])
        }
    })
    .await
    .expect("join");
    assert!(status.status.success(), "{status:?}");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("leader"),
        "{status:?}"
    );
    let without = tokio::task::spawn_blocking(move || {
        synodctl(&[
            "--admin-endpoints",
            &admin_endpoint,
            "--tls-ca",
            &ca_arg,
            "status",
        ])
    })
    .await
    .expect("join");
    assert!(!without.status.success(), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("client certificate from the admin CA"),
        "{without:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_the_admin_port_serves_loopback_and_the_client_port_points_to_it() {
    let node = tokio::task::spawn_blocking(|| TestNode::start(&[]))
        .await
        .expect("join")
        .expect("node starts");
    let denied = synod_tests::admin(node.addr)
        .status(pb::StatusRequest {})
        .await
        .expect_err("no Admin on the client port");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains(&node.admin_addr().to_string()),
        "{denied:?}"
    );
    let status = synod_tests::admin(node.admin_addr())
        .status(pb::StatusRequest {})
        .await
        .expect("Status on the admin port")
        .into_inner();
    assert_eq!(status.node_id, 1);
}

#[test]
fn without_tls_a_remote_admin_address_is_refused_at_start() {
    // Only the refusal runs a process: a node that binds 0.0.0.0 would
    // take its port on every loopback address other tests use. That
    // --admin-allow-remote lets it start is checked with the settings.
    let bin = synod_tests::binary("synod").expect("synod");
    let client = synod_tests::free_addr().expect("addr").to_string();
    let http = synod_tests::free_addr().expect("addr").to_string();
    let output = Command::new(&bin)
        .args(["serve", "--client-addr", &client, "--http-addr", &http])
        .args(["--zookeeper-addr", "off", "--admin-addr", "0.0.0.0:7300"])
        .output()
        .expect("run synod");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-allow-remote"), "{stderr}");
}
