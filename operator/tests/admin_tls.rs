//! The operator's Admin client over mutual TLS against a real `synod serve`
//! whose admin port requires a certificate from a separate admin CA (as
//! `spec.tls` with an `adminIssuerRef` sets it up): the node is dialled by
//! IP, as the reconciler dials pod IPs, and its certificate is checked
//! against the pod's DNS name. The right credentials are answered; a wrong
//! expected name, a client certificate from the node CA instead of the
//! admin CA, or plaintext are refused.
//!
//! Needs the `synod` binary: `$SYNOD_BIN`, or the workspace's (built on
//! demand unless `SYNOD_BINARIES_BUILT` says scripts/test built it).

#![allow(
    clippy::print_stderr,
    reason = "says where the node's files were kept when the test fails"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use synod_operator::admin::{self, AdminCredentials, Target};
use synod_tls::generate::DevCa;

const POD_NAME: &str = "demo-0.demo-peers.ns.svc";

struct Node {
    child: Child,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("node files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port(host: &str) -> u16 {
    TcpListener::bind(format!("{host}:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write PEM");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_over_mutual_tls_need_the_admin_ca_and_the_pods_name() {
    let bin = std::env::var_os("SYNOD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| synod_tests::binary("synod").expect("the synod binary"));
    let host = "127.0.0.1";
    let dir = std::env::temp_dir().join(format!("synod-operator-admin-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    // The node CA signs the node (valid for its pod name and its IP, which
    // peers dial); a separate admin CA signs the operator.
    let node_ca = DevCa::new("node CA").expect("CA");
    let admin_ca = DevCa::new("admin CA").expect("CA");
    let node_cert = node_ca
        .issue("demo-0", &[POD_NAME.to_owned(), host.to_owned()])
        .expect("node cert");
    let operator = admin_ca.issue("synod-operator", &[]).expect("admin cert");
    let impostor = node_ca
        .issue("synod-operator", &[])
        .expect("a client cert from the node CA");

    let [peer, client, http, admin_port] = [(); 4].map(|()| free_port(host));
    let child = Command::new(&bin)
        .args(["serve", "--node-id", "1", "--cluster", "tls-admin"])
        .args(["--peers", &format!("1={host}:{peer}")])
        .args(["--peer-addr", &format!("{host}:{peer}")])
        .args(["--client-addr", &format!("{host}:{client}")])
        .args(["--http-addr", &format!("{host}:{http}")])
        .args(["--admin-addr", &format!("{host}:{admin_port}")])
        .args(["--zookeeper-addr", "off", "--zookeeper-secure-addr", "off"])
        .arg("--tls-cert")
        .arg(write(&dir, "node.crt", &node_cert.cert_pem))
        .arg("--tls-key")
        .arg(write(&dir, "node.key", &node_cert.key_pem))
        .arg("--tls-ca")
        .arg(write(&dir, "ca.crt", &node_ca.cert_pem()))
        .arg("--tls-admin-ca")
        .arg(write(&dir, "admin-ca.crt", &admin_ca.cert_pem()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).expect("log"))
        .spawn()
        .expect("spawn synod");
    let _node = Node {
        child,
        dir: dir.clone(),
    };
    let address = format!("{host}:{admin_port}");

    let node_ca_pem = node_ca.cert_pem();
    let credentials = AdminCredentials::from_pem(
        node_ca_pem.as_bytes(),
        operator.cert_pem.as_bytes(),
        operator.key_pem.as_bytes(),
    )
    .expect("operator credentials");
    let target = Target::tls(address.clone(), &credentials, POD_NAME).expect("target");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match admin::status(&target).await {
            Ok(status) => break status,
            Err(e) => {
                assert!(Instant::now() < deadline, "never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(status.node_id, 1);

    // The certificate is checked against the pod's name, not the IP.
    let elsewhere =
        Target::tls(address.clone(), &credentials, "demo-1.demo-peers.ns.svc").expect("target");
    let refused = admin::status(&elsewhere).await;
    assert!(
        matches!(refused, Err(admin::AdminError::Connect { .. })),
        "{refused:?}"
    );

    // A client certificate from the node CA is not an admin's.
    let impostor = AdminCredentials::from_pem(
        node_ca_pem.as_bytes(),
        impostor.cert_pem.as_bytes(),
        impostor.key_pem.as_bytes(),
    )
    .expect("impostor credentials");
    let refused =
        admin::status(&Target::tls(address.clone(), &impostor, POD_NAME).expect("target")).await;
    assert!(refused.is_err(), "{refused:?}");

    // Plaintext is not answered on a TLS admin port.
    let refused = admin::status(&Target::plain(address)).await;
    assert!(refused.is_err(), "{refused:?}");
}
