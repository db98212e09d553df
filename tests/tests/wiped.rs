//! A wiped voter does not vote, through real binaries. Three voters bind
//! their incarnations; a follower's data directory is deleted and it
//! restarts with the same flags (as a pod whose volume was lost). While the
//! other follower is down, the leader and the wiped node together commit
//! nothing: the leader refuses the wiped node's votes and reports it. The
//! operator's repair (remove, add as an observer, promote, through
//! `synodctl member`) brings it back, and no acknowledged write is lost. A
//! node started on an empty directory with `--initial-cluster-state
//! existing` says it awaits re-adding.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::{Ensemble, TempDir, every_member_bound, status_until};
use tonic::transport::Channel;

fn channel(addr: SocketAddr) -> Channel {
    synod_tests::channel(addr, Duration::from_secs(5))
}

async fn status(addr: SocketAddr) -> Option<pb::StatusResponse> {
    AdminClient::new(channel(addr))
        .status(pb::StatusRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

async fn create(addr: SocketAddr, path: &str) -> Result<(), tonic::Status> {
    CoordinationClient::new(channel(addr))
        .create(pb::CreateRequest {
            session_id: 0,
            path: path.to_owned(),
            data: path.as_bytes().to_vec(),
            acl: vec![],
            mode: 0,
            ttl_ms: 0,
        })
        .await
        .map(|_| ())
}

async fn read(addr: SocketAddr, path: &str) -> Result<Vec<u8>, tonic::Status> {
    CoordinationClient::new(channel(addr))
        .get_data(pb::GetDataRequest {
            session_id: 0,
            path: path.to_owned(),
            watch: false,
            linearizable: true,
        })
        .await
        .map(|r| r.into_inner().data)
}

async fn member(endpoints: &str, args: &[&str]) -> (bool, Value) {
    synod_tests::synodctl_member(endpoints, args).await
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_votes_in_nothing_until_it_is_removed_and_re_added() {
    let root = TempDir::new("wiped").expect("temp dir");
    let mut ensemble = blocking(|| {
        Ensemble::start(
            3,
            &["--cluster", "wiped", "--election-timeout-ms", "600"],
            Some(root.path()),
        )
    })
    .expect("start");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let leader = blocking(|| ensemble.leader(Duration::from_secs(10))).expect("a leader");
    let leader_addr = ensemble.client_addr(leader);
    let leader_admin = ensemble.admin_addr(leader);
    // The leader binds every member to its incarnation.
    status_until(
        leader_admin,
        Duration::from_secs(20),
        "every member bound",
        |s| every_member_bound(s, 3),
    )
    .await;

    let acknowledged: Vec<String> = (0..20).map(|i| format!("/before-{i}")).collect();
    for path in &acknowledged {
        create(leader_addr, path).await.expect("acknowledged write");
    }

    let followers: Vec<usize> = ensemble
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    let (wiped, other) = (followers[0], followers[1]);
    let wiped_id = u64::try_from(wiped).expect("small id");

    // The wiped follower restarts on an empty directory with the same
    // flags; the other follower goes down.
    blocking(|| ensemble.wipe_and_restart(wiped, &[])).expect("wiped node restarts");
    blocking(|| ensemble.kill(other)).expect("kill the other follower");

    // The two of them commit nothing: the leader refuses the wiped node's
    // votes (wait until the wiped node is up and talking first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for attempt in 0..3 {
        let path = format!("/during-{attempt}");
        let outcome =
            tokio::time::timeout(Duration::from_secs(3), create(leader_addr, &path)).await;
        assert!(
            !matches!(outcome, Ok(Ok(()))),
            "a write committed with only the leader and the wiped node"
        );
    }
    let commit_before = status(leader_admin).await.map_or(0, |s| s.commit_index);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = status(leader_admin).await.map_or(0, |s| s.commit_index);
    assert_eq!(after, commit_before, "the commit index moved");

    // The old leader reports the wiped member in Status and metrics.
    let view = status_until(
        leader_admin,
        Duration::from_secs(20),
        "the leader reports the wiped member",
        |s| {
            s.members
                .iter()
                .any(|m| m.id == wiped_id && m.foreign_incarnation)
        },
    )
    .await;
    assert_eq!(view.node_id, u64::try_from(leader).expect("id"), "{view:?}");
    assert!(
        blocking(|| ensemble.node(leader).metric("synod_foreign_members"))
            .expect("metrics")
            .is_some_and(|v| v >= 1.0)
    );

    // The other follower returns: a quorum without the wiped node.
    blocking(|| ensemble.restart(other)).expect("restart the other follower");
    let endpoints = ensemble.admin_endpoints();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (removed, answer) = loop {
        let (ok, answer) = member(&endpoints, &["remove", &wiped.to_string()]).await;
        if ok || Instant::now() > deadline {
            break (ok, answer);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(removed, "remove: {answer}");
    let (added, answer) = member(&endpoints, &["add", &wiped.to_string(), "--observer"]).await;
    assert!(added, "add observer: {answer}");
    let (promoted, answer) = member(&endpoints, &["add", &wiped.to_string()]).await;
    assert!(promoted, "promote: {answer}");
    assert_eq!(answer["committed"], true, "{answer}");

    // The re-added member serves every acknowledged write.
    let wiped_addr = ensemble.client_addr(wiped);
    let ready = status_until(
        ensemble.admin_addr(wiped),
        Duration::from_secs(30),
        "re-added and ready",
        |s| s.not_ready.is_empty() && !s.awaiting_readd,
    )
    .await;
    assert_ne!(ready.incarnation_id, 0);
    for path in &acknowledged {
        let data = read(wiped_addr, path)
            .await
            .expect("read at the re-added member");
        assert_eq!(data, path.as_bytes(), "{path}");
    }
    create(wiped_addr, "/after").await.expect("writes go on");

    // A member whose directory is lost, started as the operator starts it
    // once the ensemble exists, keeps out of every quorum and says why.
    let again = other;
    blocking(|| ensemble.wipe_and_restart(again, &["--initial-cluster-state", "existing"]))
        .expect("restart on an empty directory");
    let view = status_until(
        ensemble.admin_addr(again),
        Duration::from_secs(20),
        "awaiting re-adding",
        |s| s.awaiting_readd,
    )
    .await;
    assert!(view.not_ready.contains("re-added"), "{view:?}");
    let (listed, answer) = member(&endpoints, &["list"]).await;
    assert!(listed, "{answer}");
    blocking(|| ensemble.kill_all()).expect("stop");
}
