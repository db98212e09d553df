//! The planner drives real `synod serve` processes on loopback through a
//! harness that plays the StatefulSet: it starts and stops one process per
//! ordinal (node id = ordinal + 1, at `<prefix>.<id>` with the same ports on
//! every address, as `--peer-address-template` needs), keeps or deletes
//! their directories (the volumes), and labels each process with the
//! template revision it was started from. Observations go through the real
//! Admin API (`synod_operator::admin`) and `/readyz`; actions through the
//! same Admin calls the reconciler makes.
//!
//! The reconciler itself (`reconcile::reconcile`) also runs against real
//! nodes, with a mocked API server that lists the harness's processes as
//! pods whose IPs are their loopback addresses and whose `admin` container
//! port is the nodes' admin listener (7300).
//!
//! With TLS on every node port and a separate admin CA, the reconciler
//! reads the real nodes through the admin certificate it finds in the
//! (mocked) Secrets.
//!
//! Scenarios: 3 → 5 → 3 under client load (every acknowledged write still
//! there, a leader known throughout, repeated changes answered
//! `already_done`), a rolling restart (leader last, one hand-off), a stalled
//! roll and its revert, membership calls cut off mid-flight, growing from
//! one node, and a voter whose volume was wiped, replaced.
//!
//! Needs the `synod` binary: `$SYNOD_BIN`, or the one built next to this
//! test (built on demand unless `SYNOD_BINARIES_BUILT` says scripts/test
//! built it). `HARNESS_TRACE=1` prints every planned action.

#![allow(
    clippy::print_stderr,
    reason = "helpers report retried actions and where the node logs were kept"
)]

mod common;
mod harness;

use harness::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synod_operator::planner::{Action, Change, NodeId, plan};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_three_to_five_to_three_under_load() {
    let mut h = Harness::new("scale", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&h, stop.clone());
    let up = converge(&mut h, &goal(5), Duration::from_secs(120), Calls::Repeated).await;
    let changes = up.membership_changes();
    assert_eq!(
        changes,
        vec![
            (Change::AddObserver, 4),
            (Change::Promote, 4),
            (Change::AddObserver, 5),
            (Change::Promote, 5)
        ]
    );
    let down = converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Repeated).await;
    let changes = down.membership_changes();
    assert_eq!(
        changes,
        vec![
            (Change::Demote, 5),
            (Change::Remove, 5),
            (Change::Demote, 4),
            (Change::Remove, 4)
        ],
        "{:?}",
        down.actions
    );
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert!(
        acked.len() > 20,
        "the load made too little progress: {}",
        acked.len()
    );
    assert_all_present(&mut h, &acked).await;
    // The removed members' volumes went with them.
    assert!(!h.dir.join("4").exists() && !h.dir.join("5").exists());
    for run in [&up, &down] {
        assert!(
            run.longest_leaderless < Duration::from_secs(3),
            "the ensemble was without a leader for {:?}",
            run.longest_leaderless
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_goes_leader_last_with_one_hand_off() {
    let mut h = Harness::new("roll", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    let leader_before = h.observe().await.0.leader.expect("leader").id;
    h.revision = "r2".into();
    let run = converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Answered).await;
    let restarts: Vec<NodeId> = run
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let transfers = run
        .actions
        .iter()
        .filter(|a| matches!(a, Action::TransferLeadership { .. }))
        .count();
    assert_eq!(restarts.len(), 3, "{:?}", run.actions);
    assert_eq!(restarts.last(), Some(&leader_before), "{:?}", run.actions);
    assert_eq!(transfers, 1, "{:?}", run.actions);
    assert!(h.pods.values().all(|p| p.revision == "r2"));
    assert!(
        run.longest_leaderless < Duration::from_secs(3),
        "{:?}",
        run.longest_leaderless
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_calls_cut_off_mid_flight_still_converge() {
    let mut h = Harness::new("cut", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    converge(&mut h, &goal(5), Duration::from_secs(120), Calls::Cut).await;
    converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Cut).await;
    let (observed, _) = h.observe().await;
    let members: Vec<NodeId> = observed
        .leader
        .expect("leader")
        .members
        .into_keys()
        .collect();
    assert_eq!(members, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_never_becomes_ready_stops_the_roll_and_a_revert_recovers() {
    let mut h = Harness::new("stall", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    let mut g = goal(3);
    g.pod_ready_timeout_seconds = 3;
    h.revision = "broken".into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut restarted = Vec::new();
    let stalled = loop {
        assert!(
            Instant::now() < deadline,
            "the roll never stalled: {restarted:?}"
        );
        let (observed, leader) = h.observe().await;
        let action = plan(&observed, &g);
        if let Action::Blocked { reason, .. } = &action {
            break *reason;
        }
        if let Action::DeletePod { id, .. } = &action {
            restarted.push(*id);
        }
        h.act(&action, leader.as_deref()).await.expect("act");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        stalled,
        synod_operator::planner::BlockReason::UpgradeStalled
    );
    assert_eq!(
        restarted.len(),
        1,
        "restarted more than the first pod: {restarted:?}"
    );
    // Still blocked a while later: no further restarts.
    for _ in 0..5 {
        let (observed, _) = h.observe().await;
        let action = plan(&observed, &g);
        assert!(!action.mutates(), "{action:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The user reverts: the stuck pod is restarted first, and all is well.
    h.revision = "r1".into();
    let run = converge(&mut h, &g, Duration::from_secs(60), Calls::Answered).await;
    assert!(
        matches!(run.actions.first(), Some(Action::DeletePod { id, .. }) if *id == restarted[0]),
        "{:?}",
        run.actions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_from_one_node_keeps_its_data() {
    // T4: the new pods start outside the configuration, so they cannot form
    // a majority of their own; they join the one node and get its data.
    // (Slow: a node joining a one-voter ensemble answers Status only after
    // the node's 30 s start-up limit, while it cannot record its limits.)
    let mut h = Harness::new("grow", 1);
    converge(&mut h, &goal(1), Duration::from_secs(60), Calls::Answered).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&h, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Answered).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert!(!acked.is_empty());
    assert_all_present(&mut h, &acked).await;
    // Every new member serves the data written before it joined.
    for id in [2, 3] {
        let mut client = CoordinationClient::connect(format!("http://{}", h.client_addr(id)))
            .await
            .expect("connect to a new member");
        let read = client
            .get_data(pb::GetDataRequest {
                session_id: 0,
                path: acked[0].clone(),
                watch: false,
                linearizable: true,
            })
            .await;
        assert!(read.is_ok(), "node {id} lacks {}: {read:?}", acked[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_whose_volume_was_wiped_is_removed_re_added_and_promoted() {
    // T21: the pod comes back on an empty volume; it starts `existing`
    // (the ensemble had bound every voter), so it votes in nothing, says it
    // awaits re-adding, and the planner replaces it.
    let mut h = Harness::new("wiped", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    // The ensemble can be settled a moment before the leader has bound the
    // last voter's incarnation (a configuration entry of its own).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h.bootstrapped && std::time::Instant::now() < deadline {
        h.observe().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h.bootstrapped, "the leader bound every voter");
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&h, stop.clone());
    let leader = h.observe().await.0.leader.expect("leader").id;
    let victim = if leader == 2 { 3 } else { 2 };
    h.stop(victim);
    std::fs::remove_dir_all(h.dir.join(victim.to_string())).expect("wipe");
    h.start(victim);
    let run = converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Answered).await;
    let changes = run.membership_changes();
    assert_eq!(
        changes,
        vec![
            (Change::Remove, victim),
            (Change::AddObserver, victim),
            (Change::Promote, victim)
        ],
        "{:?}",
        run.actions
    );
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert_all_present(&mut h, &acked).await;
    let (observed, _) = h.observe().await;
    let view = observed.leader.expect("leader");
    assert!(
        view.members
            .values()
            .all(|m| m.voter && !m.foreign_incarnation),
        "{view:?}"
    );
    assert!(!observed.nodes.values().any(|n| n.awaiting_readd));
}

/// What the mocked API server lists: the StatefulSet and its pods, as the
/// harness runs them (pod IP = the node's loopback address).
fn cluster_objects(h: &Harness, sts_replicas: u32) -> (serde_json::Value, serde_json::Value) {
    use serde_json::json;
    let statefulset = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-sts"},
        "spec": {"replicas": sts_replicas, "selector": {}, "serviceName": "demo-peers", "template": {}},
        "status": {"replicas": h.pods.len(), "readyReplicas": h.pods.len(),
                   "currentRevision": h.revision, "updateRevision": h.revision},
    });
    let pods: Vec<serde_json::Value> = h
        .pods
        .iter()
        .map(|(id, p)| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("demo-{}", id - 1), "namespace": "ns", "uid": p.uid,
                             "labels": {"controller-revision-hash": p.revision},
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "synod", "ports": [
                    {"name": "client", "containerPort": 7000},
                    {"name": "admin", "containerPort": 7300},
                ]}]},
                "status": {"podIP": format!("{}.{id}", h.prefix),
                           "conditions": [{"type": "Ready", "status": if h.ready(*id) { "True" } else { "False" }}]},
            })
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": pods});
    (statefulset, list)
}

fn mocked_cluster(
    statefulset: serde_json::Value,
    pods: serde_json::Value,
) -> (
    std::sync::Arc<synod_operator::reconcile::Context>,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<common::Seen>>>,
) {
    mocked_cluster_with_secrets(statefulset, pods, Vec::new())
}

/// Waits (bounded) for the mocked API server to stop once its client is
/// dropped.
async fn mock_stops(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("mock stops")
        .expect("task");
}

/// A `kubernetes.io/tls` Secret as the API server returns it, with its path.
fn secret(name: &str, data: &[(&str, &str)]) -> (String, serde_json::Value) {
    (format!("/secrets/{name}"), common::tls_secret(name, data))
}

fn mocked_cluster_with_secrets(
    statefulset: serde_json::Value,
    pods: serde_json::Value,
    secrets: Vec<(String, serde_json::Value)>,
) -> (
    std::sync::Arc<synod_operator::reconcile::Context>,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<common::Seen>>>,
) {
    let (client, handle) = common::mock();
    let (task, seen) = common::serve_with(handle, move |method, path| {
        if *method != http::Method::GET {
            return None;
        }
        if path.ends_with("/statefulsets/demo") {
            return Some((http::StatusCode::OK, statefulset.clone()));
        }
        if let Some((_, secret)) = secrets.iter().find(|(p, _)| path.ends_with(p.as_str())) {
            return Some((http::StatusCode::OK, secret.clone()));
        }
        path.ends_with("/pods")
            .then(|| (http::StatusCode::OK, pods.clone()))
    });
    let ctx = Arc::new(synod_operator::reconcile::Context::new(
        client,
        Arc::new(synod_operator::metrics::Metrics::default()),
        synod_operator::build::BuildContext::default(),
    ));
    (ctx, task, seen)
}

fn resource(replicas: u32) -> synod_operator::crd::CoordinationEnsemble {
    serde_yaml_ng::from_str(&format!(
        "apiVersion: synod.io/v1alpha1\nkind: CoordinationEnsemble\nmetadata:\n  name: demo\n  namespace: ns\n  uid: uid-ce\n  generation: 1\nspec:\n  replicas: {replicas}\n  config:\n    electionTimeoutMs: 500\nstatus:\n  bootstrapVoters: [1, 2, 3]\n"
    ))
    .expect("resource")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_reads_real_nodes_records_the_bootstrap_and_reports_them() {
    let mut h = Harness::with_admin_port("reconcile-status", 3, Some(7300));
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    let leader = h.observe().await.0.leader.expect("leader").id;
    let (statefulset, pods) = cluster_objects(&h, 3);
    let (ctx, task, seen) = mocked_cluster(statefulset, pods);
    let requeue = synod_operator::reconcile::reconcile(Arc::new(resource(3)), ctx.clone())
        .await
        .expect("reconciled");
    // Nothing to do: the idle resync.
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
    drop(ctx);
    mock_stops(task).await;
    let seen = seen.lock().expect("lock").clone();
    // The leader had bound every voter: pods start `existing` from now on.
    let states: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|s| s.uri.contains("/configmaps/demo-bootstrap"))
        .map(|s| &s.body["data"]["initial-cluster-state"])
        .collect();
    assert_eq!(states, ["new", "existing"], "{states:?}");
    let status = seen
        .iter()
        .find(|s| s.uri.contains("/status"))
        .map(|s| s.body["status"].clone())
        .expect("status written");
    assert!(
        status["bootstrap"]["clusterId"]
            .as_str()
            .is_some_and(|id| id.len() == 16),
        "{status}"
    );
    assert_eq!(status["leader"]["id"], leader);
    assert_eq!(status["leader"]["pod"], format!("demo-{}", leader - 1));
    assert_eq!(status["voters"], serde_json::json!([1, 2, 3]));
    assert_eq!(status["voterCount"], 3);
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["caughtUp"] == true && m["ready"] == true),
        "{members:?}"
    );
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .expect("condition")
    };
    assert_eq!(condition("Available")["status"], "True", "{status}");
    assert_eq!(condition("Available")["reason"], "QuorumHealthy");
    assert_eq!(condition("Degraded")["status"], "False");
    assert_eq!(condition("Progressing")["reason"], "Stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_adds_a_new_pod_through_the_real_leader() {
    let mut h = Harness::with_admin_port("reconcile-add", 3, Some(7300));
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    // The StatefulSet was scaled to 4 (a step toward 5): pod demo-3 runs,
    // outside the configuration.
    h.scale(4);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h.observe().await.0.nodes.contains_key(&4) {
        assert!(Instant::now() < deadline, "node 4 never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (statefulset, pods) = cluster_objects(&h, 4);
    let (ctx, task, seen) = mocked_cluster(statefulset, pods);
    let requeue = synod_operator::reconcile::reconcile(Arc::new(resource(5)), ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(2))
    );
    let metrics = ctx.metrics.render();
    drop(ctx);
    mock_stops(task).await;
    // The change reached the real ensemble, committed.
    let view = h.observe().await.0.leader.expect("leader");
    assert_eq!(
        view.members.get(&4).map(|m| m.voter),
        Some(false),
        "{view:?}"
    );
    assert!(
        metrics.contains("synod_operator_actions_total{action=\"AddingObserver\"} 1"),
        "{metrics}"
    );
    let seen = seen.lock().expect("lock").clone();
    let status = seen
        .iter()
        .find(|s| s.uri.contains("/status"))
        .map(|s| s.body["status"].clone())
        .expect("status written");
    assert_eq!(status["lastAction"], "node 4 added as an observer");
    let progressing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .expect("Progressing");
    assert_eq!(progressing["status"], "True");
    assert_eq!(progressing["reason"], "AddingObserver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_reads_real_tls_nodes_with_its_admin_certificate_from_the_secrets() {
    let mut h = Harness::with_tls("reconcile-tls", 3, Some(7300));
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;
    let leader = h.observe().await.0.leader.expect("leader").id;
    let tls = h.tls.as_ref().expect("tls");
    let secrets = vec![
        secret("demo-tls", &[("ca.crt", &tls.ca_pem)]),
        secret(
            "demo-admin-tls",
            &[
                ("tls.crt", &tls.admin_cert_pem),
                ("tls.key", &tls.admin_key_pem),
            ],
        ),
    ];
    let (statefulset, pods) = cluster_objects(&h, 3);
    let (ctx, task, seen) = mocked_cluster_with_secrets(statefulset, pods, secrets);
    let mut ce = resource(3);
    ce.spec.tls = Some(serde_yaml_ng::from_str("issuerRef: {name: ca}").expect("tls spec"));
    let requeue = synod_operator::reconcile::reconcile(Arc::new(ce), ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
    drop(ctx);
    mock_stops(task).await;
    let seen = seen.lock().expect("lock").clone();
    // The nodes' admin ports take only TLS with a certificate from the
    // admin CA: the leader and members were read through the Secrets.
    let status = seen
        .iter()
        .find(|s| s.uri.contains("/status"))
        .map(|s| s.body["status"].clone())
        .expect("status written");
    assert_eq!(status["leader"]["id"], leader, "{status}");
    assert_eq!(status["voters"], serde_json::json!([1, 2, 3]));
    let available = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available").cloned())
        .expect("Available");
    assert_eq!(available["status"], "True", "{status}");
    assert!(
        seen.iter()
            .any(|s| s.uri.contains("/certificates/demo-operator-admin")),
        "the Certificates are applied"
    );
}
