//! Membership calls an operator can trust, through real binaries: three
//! voters and a fourth node that joins through `synodctl member` while a
//! client keeps writing. Every change returns once committed, a change
//! already in place answers "already done" instead of an error, a call
//! sent to a follower is forwarded to the leader, and `Status` reports the
//! version, the cluster, a pending change and the leader's commit index.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::{TestNode, loopback_prefix, port_free_on_loopbacks};
use tonic::transport::Channel;

type Admin = AdminClient<Channel>;

const CLUSTER: &str = "membership-test";

fn admin(addr: SocketAddr) -> Admin {
    AdminClient::new(synod_tests::channel(addr, Duration::from_secs(30)))
}

async fn status(api: &mut Admin) -> pb::StatusResponse {
    api.status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// Polls until every node names the same ready leader; returns its id.
async fn settled(apis: &mut [Admin], limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        for api in apis.iter_mut() {
            views.push(status(api).await);
        }
        let leader = views[0].leader_id;
        if leader != 0
            && views
                .iter()
                .all(|s| s.leader_id == leader && s.not_ready.is_empty())
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "no settled leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs synodctl with `args` and returns its output.
async fn synodctl(args: Vec<String>) -> std::process::Output {
    let bin = synod_tests::binary("synodctl").expect("synodctl");
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(&args)
            .output()
            .expect("run synodctl")
    })
    .await
    .expect("join")
}

/// `synodctl --json --endpoints <endpoints> member <args>`: its one JSON
/// answer, which must be a success.
async fn member(endpoints: &str, args: &[&str]) -> Value {
    let (ok, answer) = synod_tests::synodctl_member(endpoints, args).await;
    assert!(ok, "member {args:?}: {answer}");
    answer
}

fn ids(value: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = value
        .as_array()
        .expect("a list of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Member `id`'s role in `synodctl member list --json`, if a member.
fn role_in(list: &Value, id: u64) -> Option<String> {
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["role"].as_str().expect("role").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_is_promoted_demoted_and_removed_by_committed_calls() {
    let port = port_free_on_loopbacks(4);
    let peer = |id: u64| format!("{}.{id}:{port}", loopback_prefix());
    let template = format!("{}.{{id}}:{port}", loopback_prefix());
    let peers = (1..=3)
        .map(|id| format!("{id}={}", peer(id)))
        .collect::<Vec<_>>()
        .join(",");
    let start = |id: u64, observers: Option<String>| {
        let mut args = vec![
            "--node-id".to_owned(),
            id.to_string(),
            "--peers".to_owned(),
            peers.clone(),
            "--peer-address-template".to_owned(),
            template.clone(),
            "--cluster".to_owned(),
            CLUSTER.to_owned(),
        ];
        if let Some(observers) = observers {
            args.extend(["--observers".to_owned(), observers]);
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
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let index = |id: u64| usize::try_from(id - 1).expect("small id");
    let all = voters
        .iter()
        .map(|n| format!("http://{}", n.admin_addr()))
        .collect::<Vec<_>>()
        .join(",");
    let at_follower = format!("http://{}", voters[index(follower)].admin_addr());

    // A client keeps writing through the whole sequence.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let written = written.clone();
        let addr = voters[index(follower)].addr;
        tokio::spawn(async move {
            let mut client = CoordinationClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let created = client
                    .create(pb::CreateRequest {
                        session_id: 0,
                        path: format!("/w{n}"),
                        data: b"x".to_vec(),
                        acl: vec![],
                        mode: 0,
                        ttl_ms: 0,
                    })
                    .await;
                if created.is_ok() {
                    written.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Status tells the version and the cluster, and a follower the
    // leader's commit index as it last heard it. Right after the election
    // the follower may hold the change a new leader makes to bind the
    // members to their incarnations before it learns that it is chosen;
    // it must learn it.
    let view = synod_tests::status_until(
        voters[index(follower)].admin_addr(),
        Duration::from_secs(30),
        "the new leader's membership change to commit at the follower",
        |v| !v.membership_change_pending,
    )
    .await;
    assert_eq!(view.cluster, CLUSTER);
    assert!(!view.version.is_empty());
    assert!(view.leader_commit_index >= view.commit_index, "{view:?}");

    // Node 4 starts with the same bootstrap flags as the voters (a
    // StatefulSet's fourth pod): in no list, it boots not ready.
    let joiner = start(4, None);
    let why = status(&mut admin(joiner.admin_addr())).await.not_ready;
    assert!(why.contains("not in the configuration"), "{why}");

    // Added as an observer: answered once committed; again: already done.
    let added = member(&all, &["add", "4", "--observer"]).await;
    assert_eq!(added["already_done"], false, "{added}");
    assert_eq!(added["committed"], true, "{added}");
    assert_eq!(ids(&added["observers"]), vec![4], "{added}");
    assert_eq!(ids(&added["voters"]), vec![1, 2, 3], "{added}");
    let again = member(&all, &["add", "4", "--observer"]).await;
    assert_eq!(again["already_done"], true, "{again}");
    assert_eq!(ids(&again["observers"]), vec![4], "{again}");
    let listed = member(&all, &["list"]).await;
    assert_eq!(role_in(&listed, 4).as_deref(), Some("observer"), "{listed}");
    assert_eq!(listed["from_leader"], true, "{listed}");

    // `add` without --observer finds it added, waits for it to catch up and
    // promotes it; promoting again is already done.
    let promoted = member(&all, &["add", "4"]).await;
    assert_eq!(promoted["change"], "promote_voter", "{promoted}");
    assert_eq!(promoted["committed"], true, "{promoted}");
    assert_eq!(ids(&promoted["voters"]), vec![1, 2, 3, 4], "{promoted}");
    let again = member(&all, &["promote", "4"]).await;
    assert_eq!(again["already_done"], true, "{again}");

    // Demoted through a follower alone: forwarded to the leader, answered
    // once committed.
    let demoted = member(&at_follower, &["demote", "4"]).await;
    assert_eq!(demoted["already_done"], false, "{demoted}");
    assert_eq!(demoted["committed"], true, "{demoted}");
    assert_eq!(ids(&demoted["observers"]), vec![4], "{demoted}");
    let listed = member(&all, &["list"]).await;
    assert_eq!(role_in(&listed, 4).as_deref(), Some("observer"), "{listed}");

    // Promotion of a node that is not a member stays an error, also through
    // the follower, and names the reason.
    let refused = apis[index(follower)]
        .change_membership(pb::ChangeMembershipRequest {
            change: pb::MembershipChange::PromoteVoter as i32,
            node_id: 9,
            wait_for_commit: true,
            timeout_ms: 0,
        })
        .await
        .expect_err("node 9 is not a member");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("not a member"), "{refused:?}");

    // Removed through the Admin API at the follower; removing again is
    // already done, and the member is gone from every list.
    let removed = apis[index(follower)]
        .change_membership(pb::ChangeMembershipRequest {
            change: pb::MembershipChange::RemoveMember as i32,
            node_id: 4,
            wait_for_commit: true,
            timeout_ms: 20_000,
        })
        .await
        .expect("remove through the follower")
        .into_inner();
    assert!(removed.committed && !removed.already_done, "{removed:?}");
    assert!(
        !removed.voters.contains(&4) && !removed.observers.contains(&4),
        "{removed:?}"
    );
    let again = member(&all, &["remove", "4"]).await;
    assert_eq!(again["already_done"], true, "{again}");
    let listed = member(&all, &["list"]).await;
    assert_eq!(role_in(&listed, 4), None, "{listed}");
    let leader_view = status(&mut apis[index(leader)]).await;
    assert!(!leader_view.membership_change_pending, "{leader_view:?}");

    // The human table lists the three voters, the leader marked.
    let table = synodctl(vec![
        "--admin-endpoints".into(),
        all.clone(),
        "member".into(),
        "list".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID "), "{text}");
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");
    assert_eq!(text.matches(" voter ").count(), 2, "{text}");

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(
        written.load(Ordering::Relaxed) > 10,
        "the client kept writing through the changes"
    );
}

/// A change that cannot commit (the leader has lost both followers) is
/// answered within the bound the call set, with an error that says the
/// change may still commit; nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_commit_times_out_clearly() {
    // A long election timeout keeps the leader leading for a while after
    // it has lost its majority, so the change is proposed and then waits.
    let mut ensemble =
        synod_tests::Ensemble::start(3, &["--election-timeout-ms", "4000"], None).expect("start");
    ensemble
        .wait_ready(Duration::from_secs(60))
        .expect("the ensemble is ready");
    let leader = ensemble.leader(Duration::from_secs(30)).expect("a leader");
    let followers: Vec<usize> = ensemble
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let mut api = admin(ensemble.admin_addr(leader));
    // A new leader binds every member to its incarnation with a change of
    // its own; killed while that is in flight, the followers would leave
    // it pending, and the call below would be refused for it instead
    // (BindingInFlight). Ready does not wait for the binding; this does.
    synod_tests::status_until(
        ensemble.admin_addr(leader),
        Duration::from_secs(20),
        "the leader never bound every member",
        |s| synod_tests::every_member_bound(s, 3) && !s.membership_change_pending,
    )
    .await;
    for id in &followers {
        ensemble.kill(*id).expect("kill a follower");
    }
    let asked = Instant::now();
    let refused = api
        .change_membership(pb::ChangeMembershipRequest {
            change: pb::MembershipChange::DemoteVoter as i32,
            node_id: u64::try_from(followers[0]).expect("small id"),
            wait_for_commit: true,
            timeout_ms: 1_000,
        })
        .await
        .expect_err("nothing can commit");
    let took = asked.elapsed();
    assert_eq!(refused.code(), tonic::Code::DeadlineExceeded, "{refused:?}");
    assert!(
        refused.message().contains("not committed in time"),
        "{refused:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    let view = status(&mut api).await;
    assert!(view.membership_change_pending, "{view:?}");
}
