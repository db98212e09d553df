//! Persisted identity through real binaries: a three-node ensemble agrees
//! on one cluster id minted by its first leader and each member keeps its
//! own incarnation; a node started on the directory of another cluster
//! refuses to start, naming both; started with the right name it rejoins
//! with the identity it had.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synod_proto::v1 as pb;
use synod_tests::{Ensemble, TempDir, admin};

/// Each node's (cluster id, incarnation id), once every node of `ids`
/// reports a cluster id.
async fn identities(ensemble: &Ensemble, ids: &[usize], limit: Duration) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        for &id in ids {
            if let Ok(status) = admin(ensemble.admin_addr(id))
                .status(pb::StatusRequest {})
                .await
            {
                views.push(status.into_inner());
            }
        }
        if views.len() == ids.len() && views.iter().all(|s| s.cluster_id != 0) {
            return views
                .iter()
                .map(|s| (s.cluster_id, s.incarnation_id))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "not every node learned a cluster id: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_has_one_cluster_id_and_refuses_another_clusters_directory() {
    let root = TempDir::new("identity").expect("temp dir");
    let mut ensemble =
        Ensemble::start(3, &["--cluster", "blue"], Some(root.path())).expect("start");
    ensemble.wait_ready(Duration::from_secs(30)).expect("ready");
    let views = identities(&ensemble, &[1, 2, 3], Duration::from_secs(30)).await;
    let cluster_id = views[0].0;
    assert!(
        views.iter().all(|(id, _)| *id == cluster_id),
        "one cluster id on every member: {views:?}"
    );
    let mut incarnations: Vec<u64> = views.iter().map(|(_, inc)| *inc).collect();
    incarnations.sort_unstable();
    incarnations.dedup();
    assert_eq!(
        incarnations.len(),
        3,
        "an incarnation per member: {views:?}"
    );
    assert!(incarnations.iter().all(|inc| *inc != 0));
    let metrics = ensemble.node(1).http_get("/metrics").expect("metrics").1;
    assert!(
        metrics.contains(&format!(
            "synod_identity{{cluster=\"blue\",cluster_id=\"{cluster_id:016x}\""
        )),
        "{metrics}"
    );

    // `synodctl status` prints both ids on every node's line.
    let synodctl = synod_tests::binary("synodctl").expect("synodctl");
    let printed = Command::new(synodctl)
        .args(["status", "--admin-endpoints", &ensemble.admin_endpoints()])
        .output()
        .expect("run synodctl");
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(
        text.matches(&format!("blue id {cluster_id:016x}")).count(),
        3,
        "{text}"
    );
    for (_, incarnation) in &views {
        assert!(
            text.contains(&format!("incarnation {incarnation:016x}")),
            "{text}"
        );
    }

    // Node 3's directory under another cluster's name is refused, and the
    // message names both clusters.
    let dir = ensemble.data_dir(3).expect("data dir").to_path_buf();
    assert!(
        dir.join("identity").exists(),
        "the identity file is written"
    );
    ensemble.kill(3).expect("kill");
    let client = synod_tests::free_addr().expect("addr").to_string();
    let http = synod_tests::free_addr().expect("addr").to_string();
    let mut other = Command::new(synod_tests::binary("synod").expect("binary"))
        .args(["serve", "--client-addr", &client, "--http-addr", &http])
        .args(["--zookeeper-addr", "off", "--cluster", "green"])
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while other.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            other.kill().expect("kill");
            panic!("a node on another cluster's directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = other.wait_with_output().expect("output");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"blue\"") && stderr.contains("\"green\""),
        "the refusal names both clusters: {stderr}"
    );

    // With its own cluster's name it rejoins, the same incarnation.
    ensemble.restart(3).expect("restart");
    ensemble
        .wait_nodes_ready(&[3], Duration::from_secs(30))
        .expect("node 3 ready");
    let again = identities(&ensemble, &[3], Duration::from_secs(30)).await;
    assert_eq!(again[0], views[2], "node 3 keeps its identity");
}

/// Starts a single node on `dir` and returns its cluster id once minted.
async fn single_node_cluster_id(dir: &std::path::Path) -> u64 {
    let mut node = synod_tests::TestNode::start(&[
        "--cluster",
        "c",
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ])
    .expect("node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Ok(status) = admin(node.admin_addr()).status(pb::StatusRequest {}).await {
            let id = status.into_inner().cluster_id;
            if id != 0 {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "no cluster id minted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    node.kill().expect("kill");
    id
}

/// Runs a node on `dir` that is expected to stop by itself; its stderr.
fn refused(dir: &std::path::Path) -> String {
    let client = synod_tests::free_addr().expect("addr").to_string();
    let http = synod_tests::free_addr().expect("addr").to_string();
    let mut node = Command::new(synod_tests::binary("synod").expect("binary"))
        .args(["serve", "--client-addr", &client, "--http-addr", &http])
        .args(["--zookeeper-addr", "off", "--cluster", "c"])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            node.kill().expect("kill");
            panic!("a node with another ensemble's identity kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = node.wait_with_output().expect("output");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Two ensembles of the same name have different cluster ids: a directory
/// whose identity file is one's and whose state is the other's is refused
/// at start; one whose state only later turns out to be another
/// ensemble's (here: a fresh log that mints its own id) stops the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_of_another_cluster_id_is_refused() {
    let root = TempDir::new("identity-mixed").expect("temp dir");
    let (x, y, z) = (
        root.path().join("x"),
        root.path().join("y"),
        root.path().join("z"),
    );
    let x_id = single_node_cluster_id(&x).await;
    let y_id = single_node_cluster_id(&y).await;
    assert_ne!(x_id, y_id);

    // At start: y's state with x's identity file.
    std::fs::copy(x.join("identity"), y.join("identity")).expect("copy");
    let stderr = refused(&y);
    assert!(
        stderr.contains(&format!("{x_id:016x}")) && stderr.contains(&format!("{y_id:016x}")),
        "the refusal names both ids: {stderr}"
    );

    // Later: x's identity file over an empty state, which then mints its
    // own cluster id; the node stops rather than serve it.
    std::fs::create_dir_all(&z).expect("dir");
    std::fs::copy(x.join("identity"), z.join("identity")).expect("copy");
    let stderr = refused(&z);
    assert!(
        stderr.contains(&format!("{x_id:016x}")) && stderr.contains("another ensemble"),
        "the stop names the recorded id: {stderr}"
    );
}
