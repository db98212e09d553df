//! The Admin API of a three-node ensemble through real binaries: status
//! agrees on one leader and lists the members, leadership moves where it is
//! asked to, a membership change commits and can be undone, a snapshot on
//! demand compacts the log, `synodctl status` prints every node, and with
//! an address template a node joins without restarting the others.

use std::process::Command;
use std::time::{Duration, Instant};

use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::{Ensemble, TestNode, admin, loopback_prefix, port_free_on_loopbacks};
use tonic::transport::Channel;

type Admin = AdminClient<Channel>;

async fn status(api: &mut Admin) -> pb::StatusResponse {
    api.status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// Polls until every node names the same leader and is ready; returns it.
async fn settled(apis: &mut [Admin], limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        for api in apis.iter_mut() {
            views.push(status(api).await);
        }
        let leader = views[0].leader_id;
        let agreed = leader != 0
            && views
                .iter()
                .all(|s| s.leader_id == leader && s.not_ready.is_empty());
        if agreed {
            let leaders: Vec<_> = views
                .iter()
                .filter(|s| s.role == pb::Role::Leader as i32)
                .map(|s| s.node_id)
                .collect();
            assert_eq!(leaders, vec![leader], "exactly the named leader leads");
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "the ensemble did not settle on a leader: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_reports_and_changes_the_ensemble() {
    let ensemble = Ensemble::start(3, &["--snapshot-every-txns", "1000000"], None).expect("start");
    let mut apis: Vec<Admin> = ensemble
        .ids()
        .into_iter()
        .map(|id| admin(ensemble.admin_addr(id)))
        .collect();
    let leader = settled(&mut apis, Duration::from_secs(20)).await;

    // The leader's status lists every member as a voter, with its lag.
    let view = status(&mut apis[leader as usize - 1]).await;
    let mut ids: Vec<u64> = view.members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(view.members.iter().all(|m| m.voter));
    assert!(view.commit_index > 0 && view.applied_index >= view.commit_index);

    // Leadership goes where it is asked to go.
    let target = if leader == 1 { 2 } else { 1 };
    apis[leader as usize - 1]
        .transfer_leadership(pb::TransferLeadershipRequest { node_id: target })
        .await
        .expect("transfer");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if settled(&mut apis, Duration::from_secs(20)).await == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leadership did not move to {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A follower refuses what only the leader may do, and says who leads.
    let follower = (1..=3).find(|id| *id != target).expect("a follower");
    let refused = apis[follower as usize - 1]
        .transfer_leadership(pb::TransferLeadershipRequest { node_id: follower })
        .await
        .expect_err("only the leader transfers");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(&format!("node {target}")),
        "{refused:?}"
    );

    // Demote a voter and promote it back: each change commits.
    let demoted = apis[target as usize - 1]
        .change_membership(pb::ChangeMembershipRequest {
            change: pb::MembershipChange::DemoteVoter as i32,
            node_id: follower,
            ..Default::default()
        })
        .await
        .expect("demote")
        .into_inner();
    assert!(!demoted.voters.contains(&follower));
    assert!(demoted.observers.contains(&follower));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let promoted = apis[target as usize - 1]
            .change_membership(pb::ChangeMembershipRequest {
                change: pb::MembershipChange::PromoteVoter as i32,
                node_id: follower,
                ..Default::default()
            })
            .await;
        match promoted {
            Ok(reply) => {
                assert!(reply.into_inner().voters.contains(&follower));
                break;
            }
            // The demotion may still be committing.
            Err(status) => assert!(
                Instant::now() < deadline,
                "promotion never accepted: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = status(&mut apis[target as usize - 1]).await;
        if view.members.iter().filter(|m| m.voter).count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "promotion did not commit: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A snapshot on demand compacts the log behind it.
    let taken = apis[follower as usize - 1]
        .take_snapshot(pb::TakeSnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    assert!(taken.index > 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = status(&mut apis[follower as usize - 1]).await;
        if view.snapshot_index >= taken.index && view.log_start > taken.index {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot did not compact the log: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `synodctl status` prints one line per node, and the leader's members.
    let synodctl = synod_tests::binary("synodctl").expect("synodctl");
    let printed = tokio::task::spawn_blocking(move || {
        Command::new(synodctl)
            .args(["status", "--admin-endpoints", &ensemble.admin_endpoints()])
            .output()
            .expect("run synodctl")
    })
    .await
    .expect("join");
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(text.matches("  node ").count(), 3, "{text}");
    assert_eq!(text.matches(" leader ").count(), 4, "{text}");
    assert_eq!(text.matches("    member ").count(), 3, "{text}");
}

/// With `--peer-address-template`, a node that no member was started with
/// joins through the Admin API alone: the leader dials it at its templated
/// address, and it receives the log and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_at_its_templated_address() {
    let port = port_free_on_loopbacks(4);
    let template = format!("{}.{{id}}:{port}", loopback_prefix());
    let peers = (1..=3)
        .map(|id| format!("{id}={}", synod_node_peer(id, port)))
        .collect::<Vec<_>>()
        .join(",");
    let start = |id: u64, observers: Option<String>| {
        let id_flag = id.to_string();
        let mut args = vec![
            "--node-id",
            &id_flag,
            "--peers",
            &peers,
            "--peer-address-template",
            &template,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<String>>();
        if let Some(observers) = observers {
            args.push("--observers".into());
            args.push(observers);
        }
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
    let voters: Vec<TestNode> = (1..=3).map(|id| start(id, None)).collect();
    let mut apis: Vec<Admin> = voters.iter().map(|n| admin(n.admin_addr())).collect();
    let leader = settled(&mut apis, Duration::from_secs(60)).await;
    let leader_index = usize::try_from(leader - 1).expect("small id");

    // Node 4 starts with the very flags the voters were started with (a
    // StatefulSet's fourth pod): it is in no list, so it joins at its
    // templated address and is not ready until the leader adds it.
    let joiner = start(4, None);
    let (status, why) = joiner.http_get("/readyz").expect("readyz");
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("not in the configuration"), "{why}");
    let added = apis[leader_index]
        .change_membership(pb::ChangeMembershipRequest {
            change: pb::MembershipChange::AddObserver as i32,
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("the leader adds node 4 by its templated address")
        .into_inner();
    assert!(added.observers.contains(&4), "{added:?}");

    let mut writer = CoordinationClient::connect(format!("http://{}", voters[leader_index].addr))
        .await
        .expect("connect to the leader");
    writer
        .create(pb::CreateRequest {
            session_id: 0,
            path: "/joined".into(),
            data: b"yes".to_vec(),
            acl: vec![],
            mode: 0,
            ttl_ms: 0,
        })
        .await
        .expect("create");
    let mut reader = CoordinationClient::connect(format!("http://{}", joiner.addr))
        .await
        .expect("connect to node 4");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = reader
            .get_data(pb::GetDataRequest {
                session_id: 0,
                path: "/joined".into(),
                watch: false,
                linearizable: false,
            })
            .await;
        if read.as_ref().is_ok_and(|r| r.get_ref().data == b"yes") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 did not serve the log within the bound: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node `id`'s peer address on its own loopback address.
fn synod_node_peer(id: u64, port: u16) -> String {
    format!("{}.{id}:{port}", loopback_prefix())
}
