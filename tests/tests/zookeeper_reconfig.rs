//! ZooKeeper's `reconfig` through a real ZooKeeper client (the Rust
//! `zookeeper-client` crate) against real nodes started with
//! `--zookeeper-reconfig`: refused without the super user and for a stale
//! config version or a wrong address; a fourth node (started with the
//! voters' own flags) joins as a participant (observer first, promoted once
//! caught up) and leaves again, and `/zookeeper/config` follows.

use std::time::Duration;

use synod_tests::{TestNode, loopback_prefix, port_free_on_loopbacks};
use zookeeper_client as zk;

/// The digest id of `super:test`.
const SUPER_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

fn incremental<'a>(
    joinings: &'a [&'a str],
    leavings: &'a [&'a str],
) -> zk::EnsembleUpdate<'a, std::iter::Copied<std::slice::Iter<'a, &'a str>>> {
    zk::EnsembleUpdate::Incremental {
        joinings: joinings.iter().copied(),
        leavings: leavings.iter().copied(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_adds_and_removes_a_participant_for_the_super_user() {
    let prefix = loopback_prefix();
    let peer_port = port_free_on_loopbacks(4);
    let zk_port = loop {
        let port = port_free_on_loopbacks(4);
        if port != peer_port {
            break port;
        }
    };
    let peers = (1..=3)
        .map(|id| format!("{id}={prefix}.{id}:{peer_port}"))
        .collect::<Vec<_>>()
        .join(",");
    let start = |id: u64| {
        let args = [
            "--node-id".to_owned(),
            id.to_string(),
            "--peers".to_owned(),
            peers.clone(),
            "--peer-address-template".to_owned(),
            format!("{prefix}.{{id}}:{peer_port}"),
            "--zookeeper-addr".to_owned(),
            format!("{prefix}.{id}:{zk_port}"),
            "--zookeeper-address-template".to_owned(),
            format!("{prefix}.{{id}}:{zk_port}"),
            "--zookeeper-reconfig".to_owned(),
            "--super-digest".to_owned(),
            SUPER_DIGEST.to_owned(),
            "--cluster".to_owned(),
            "reconfig-test".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut node = TestNode::spawn(
            synod_tests::free_addr().expect("address"),
            synod_tests::free_addr().expect("address"),
            &args,
        )
        .expect("node starts");
        node.wait_accepting(Duration::from_secs(60))
            .expect("node accepts connections");
        node
    };
    let _voters: Vec<TestNode> = (1..=3).map(start).collect();
    // The fourth starts with the same flags, outside the configuration.
    let _joiner = start(4);

    let hosts = (1..=3)
        .map(|id| format!("{prefix}.{id}:{zk_port}"))
        .collect::<Vec<_>>()
        .join(",");
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(&hosts)
        .await
        .expect("connects");
    let (config, _) = client.get_config().await.expect("config");
    let config = String::from_utf8(config).expect("text");
    assert!(config.contains("server.3="), "{config}");
    assert!(!config.contains("server.4="), "{config}");

    let joining =
        format!("server.4={prefix}.4:{peer_port}:{peer_port}:participant;{prefix}.4:{zk_port}");
    let joinings = [joining.as_str()];

    // Only the super user may change the ensemble.
    let refused = client
        .update_ensemble(incremental(&joinings, &[]), None)
        .await
        .expect_err("not the super user");
    assert_eq!(refused, zk::Error::NoAuth);
    client.auth("digest", b"super:test").await.expect("auth");

    // A stale config version and a wrong address are refused.
    let refused = client
        .update_ensemble(incremental(&joinings, &[]), Some(0x7fff_ffff))
        .await
        .expect_err("stale version");
    assert_eq!(refused, zk::Error::BadVersion);
    let elsewhere = [format!("server.4=10.9.9.9:{peer_port}:{peer_port}")];
    let elsewhere: Vec<&str> = elsewhere.iter().map(String::as_str).collect();
    let refused = client
        .update_ensemble(incremental(&elsewhere, &[]), None)
        .await
        .expect_err("wrong address");
    assert!(matches!(refused, zk::Error::BadArguments(_)), "{refused:?}");

    // Node 4 joins as a participant, answered with the new configuration.
    let (data, stat) = client
        .update_ensemble(incremental(&joinings, &[]), None)
        .await
        .expect("node 4 joins");
    let data = String::from_utf8(data).expect("text");
    assert!(
        data.contains(&format!(
            "server.4={prefix}.4:{peer_port}:{peer_port}:participant"
        )),
        "{data}"
    );
    let (config, config_stat) = client.get_config().await.expect("config");
    assert_eq!(String::from_utf8(config).expect("text"), data);
    assert_eq!(config_stat.mzxid, stat.mzxid);

    // It leaves again, with the version it was given.
    let (data, _) = client
        .update_ensemble(incremental(&[], &["4"]), Some(stat.mzxid))
        .await
        .expect("node 4 leaves");
    let data = String::from_utf8(data).expect("text");
    assert!(!data.contains("server.4="), "{data}");
    assert!(
        data.contains("server.1=") && data.contains("server.3="),
        "{data}"
    );
}
