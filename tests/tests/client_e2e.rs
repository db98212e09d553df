//! The Rust client and `synodctl` against a real `synod` process: the
//! client's operations and typed errors, watch events that arrive before the
//! response that observes their change, a session that outlives a restart of
//! its server, and the command line's output and exit codes.

use std::process::Command;
use std::time::Duration;

use futures::FutureExt as _;
use synod_client::{Client, ClientConfig, CreateOptions, Error, EventType, Op};
use synod_tests::TestNode;

async fn client(node: &TestNode) -> Client {
    let mut config = ClientConfig::new([node.endpoint()]);
    config.session_timeout = Duration::from_secs(10);
    Client::connect(config).await.expect("client")
}

/// A request over the server's size limit fails alone: the session keeps
/// its connection and the calls that share it.
#[tokio::test]
async fn an_oversized_request_fails_alone() {
    let node = TestNode::start(&["--max-data-bytes", "1024", "--max-request-bytes", "8192"])
        .expect("node");
    let c = client(&node).await;
    c.create("/k", b"v", &CreateOptions::default())
        .await
        .expect("create");
    let session = c.session_id();
    // Over the data limit, under the request limit: the server refuses it.
    assert!(matches!(
        c.set_data("/k", &[b'x'; 2000], None).await,
        Err(Error::TooLarge { .. })
    ));
    // Over the request limit itself, with reads in flight beside it.
    let big = c.set_data("/k", &[b'x'; 20_000], None);
    let reads = futures::future::join_all((0..20).map(|_| c.get_data("/k")));
    let (big, reads) = futures::join!(big, reads);
    let big = big.expect_err("a request over the limit fails");
    assert!(!big.is_connection_loss(), "{big:?}");
    assert!(
        reads
            .iter()
            .all(|r| r.as_ref().is_ok_and(|(d, _)| d == b"v")),
        "the calls beside it are answered: {reads:?}"
    );
    assert_eq!(c.session_id(), session);
    assert_eq!(c.get_data("/k").await.expect("still connected").0, b"v");
}

#[tokio::test]
async fn client_operations_and_errors() {
    let node = TestNode::start(&[]).expect("node");
    let c = client(&node).await;
    let (path, stat) = c
        .create("/cfg", b"a", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!((path.as_str(), stat.version), ("/cfg", 0));
    assert!(matches!(
        c.create("/cfg", b"", &CreateOptions::default()).await,
        Err(Error::NodeExists { .. })
    ));
    assert!(matches!(
        c.set_data("/cfg", b"b", Some(5)).await,
        Err(Error::BadVersion { .. })
    ));
    assert_eq!(c.set_data("/cfg", b"b", Some(0)).await.unwrap().version, 1);
    let (data, stat) = c.get_data_linearizable("/cfg").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"b"[..], 1));
    assert!(matches!(
        c.get_data_linearizable("/missing").await,
        Err(Error::NoNode { .. })
    ));
    assert!(matches!(
        c.get_data("/missing").await,
        Err(Error::NoNode { .. })
    ));
    let (seq, _) = c
        .create("/cfg/n-", b"", &CreateOptions::sequential())
        .await
        .unwrap();
    assert_eq!(seq, "/cfg/n-0000000000");
    assert_eq!(c.get_children("/cfg").await.unwrap(), ["n-0000000000"]);
    assert_eq!(
        c.get_children_linearizable("/cfg").await.unwrap(),
        ["n-0000000000"]
    );
    assert_eq!(
        c.exists_linearizable("/cfg/n-0000000000")
            .await
            .unwrap()
            .map(|s| s.version),
        Some(0)
    );
    assert!(c.exists_linearizable("/cfg/none").await.unwrap().is_none());
    let result = c
        .multi(&[
            Op::create("/cfg/x", b"".to_vec(), CreateOptions::default()),
            Op::check("/cfg", Some(9)),
        ])
        .await
        .unwrap();
    assert!(result.failure().is_some());
    assert!(
        c.exists("/cfg/x").await.unwrap().is_none(),
        "failed multi changed nothing"
    );
    assert!(matches!(
        c.delete("/cfg", None).await,
        Err(Error::NotEmpty { .. })
    ));
}

#[tokio::test]
async fn a_watch_event_arrives_before_the_response_that_observes_its_change() {
    let node = TestNode::start(&[]).expect("node");
    let watcher = client(&node).await;
    let writer = client(&node).await;
    writer
        .create("/flag", b"0", &CreateOptions::default())
        .await
        .unwrap();
    for round in 1..=20u32 {
        let (_, _, fired) = watcher.get_data_watch("/flag").await.unwrap();
        writer
            .set_data("/flag", round.to_string().as_bytes(), None)
            .await
            .unwrap();
        // Poll until the watcher sees the new value; by then the event must
        // already be there.
        loop {
            let (data, _) = watcher.get_data("/flag").await.unwrap();
            if data == round.to_string().as_bytes() {
                break;
            }
        }
        let event = fired
            .now_or_never()
            .expect("event delivered before the response")
            .unwrap();
        assert_eq!(event.event_type, EventType::NodeDataChanged);
    }
}

#[tokio::test]
async fn a_session_survives_a_restart_of_its_server() {
    let temp = synod_tests::TempDir::new("client-restart").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let args = ["--data-dir", dir.to_str().unwrap()];
    let mut node = TestNode::start(&args).expect("node");
    let addr = node.addr;
    let c = client(&node).await;
    let session = c.session_id();
    c.create("/leader", b"me", &CreateOptions::ephemeral())
        .await
        .unwrap();
    let mut children = c
        .watch("/", synod_client::AddWatchMode::Persistent)
        .await
        .unwrap();

    node.kill().unwrap();
    let _node = TestNode::start_on(addr, &args).expect("restart on the same address");
    // The client reconnects by itself and keeps its session and ephemeral.
    let mut stat = None;
    for _ in 0..100 {
        match c.exists("/leader").await {
            Ok(found) => {
                stat = found;
                break;
            }
            Err(e) if e.is_connection_loss() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stat.expect("ephemeral kept").ephemeral_owner, session);
    assert_eq!(c.session_id(), session);
    // Its persistent watch was re-established on the restarted server.
    let other = client(&_node).await;
    other
        .create("/new", b"", &CreateOptions::default())
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), children.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.event_type, event.path.as_str()),
        (EventType::NodeChildrenChanged, "/")
    );

    c.close().await.unwrap();
    assert!(
        other.exists("/leader").await.unwrap().is_none(),
        "ephemeral gone with its session"
    );
}

fn synodctl(node: &TestNode, args: &[&str]) -> std::process::Output {
    Command::new(synod_tests::binary("synodctl").expect("synodctl binary"))
        .arg("--endpoints")
        .arg(node.endpoint())
        .args(args)
        .output()
        .expect("synodctl runs")
}

#[tokio::test]
async fn synodctl_reads_well_and_fails_clearly() {
    let node = TestNode::start(&[]).expect("node");
    assert!(
        synodctl(&node, &["create", "/app", "hello"])
            .status
            .success()
    );
    // As zkCli, the data ends with a newline even into a pipe, so the next
    // line or prompt does not run on; --raw gives the bytes alone.
    let get = synodctl(&node, &["get", "/app"]);
    assert_eq!(get.stdout, b"hello\n");
    let raw = synodctl(&node, &["get", "--raw", "/app"]);
    assert_eq!(raw.stdout, b"hello");
    let json = synodctl(&node, &["--json", "stat", "/app"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON value");
    assert_eq!(value["version"], 0);
    assert!(
        synodctl(&node, &["create", "-s", "/app/job-"])
            .status
            .success()
    );
    let ls = synodctl(&node, &["ls", "/app"]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("job-0000000000"));
    let ls = synodctl(&node, &["ls", "-l", "/app"]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("job-0000000000"));
    let json = synodctl(&node, &["--json", "stat", "-l", "/app"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON value");
    assert_eq!(value["num_children"], 1, "{value}");
    let missing = synodctl(&node, &["get", "/nope"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nope"), "{stderr}");
    assert!(
        synodctl(&node, &["set", "/app", "hello\n"])
            .status
            .success()
    );
    let get = synodctl(&node, &["get", "/app"]);
    assert_eq!(get.stdout, b"hello\n", "no second newline");
    assert!(synodctl(&node, &["rm", "-r", "/app"]).status.success());
    assert!(!synodctl(&node, &["get", "/app"]).status.success());
}
