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
//! pods whose IPs are their loopback addresses.
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

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synod_operator::admin;
use synod_operator::planner::{
    Action, Change, ClaimRef, Goal, LeaderView, NodeId, NodeView, Observed, PodView,
    StatefulSetView, plan, quorum,
};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;

fn synod_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SYNOD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("inside a target directory")
        .to_path_buf();
    let path = dir.join("synod");
    if std::env::var_os("SYNOD_BINARIES_BUILT").is_none() || !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "synod-node", "--bin", "synod"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --bin synod failed");
    }
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// 127.x.y.* for this process and test, away from 127.0.0.x (other tests
/// use it): tests of one process run side by side, each on its own
/// addresses, so none can take a port another just found free.
fn loopback_prefix(test: &str) -> String {
    let [_, high, middle, low] = std::process::id().to_be_bytes();
    let salt = test
        .bytes()
        .fold(low, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    format!("127.{}.{}", 130 + (high & 0x3f), middle ^ salt)
}

/// `count` ports, each free on `<prefix>.1` .. `<prefix>.nodes`.
fn ports_free(prefix: &str, nodes: u64, count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    'search: for _ in 0..200 {
        let Ok(first) = TcpListener::bind(format!("{prefix}.1:0")) else {
            continue;
        };
        let port = first.local_addr().expect("addr").port();
        let mut probes = vec![first];
        for i in 2..=nodes {
            match TcpListener::bind(format!("{prefix}.{i}:{port}")) {
                Ok(l) => probes.push(l),
                Err(_) => continue 'search,
            }
        }
        held.push(probes);
        ports.push(port);
        if ports.len() == count {
            return ports;
        }
    }
    panic!("no ports free on every loopback address");
}

struct Proc {
    child: Child,
    uid: String,
    revision: String,
    started: Instant,
}

/// The StatefulSet and its pods, played by processes.
struct Harness {
    bin: PathBuf,
    dir: PathBuf,
    prefix: String,
    peer_port: u16,
    client_port: u16,
    http_port: u16,
    bootstrap: u64,
    replicas: u32,
    revision: String,
    pods: BTreeMap<NodeId, Proc>,
    bootstrapped: bool,
    next_uid: u64,
}

impl Harness {
    fn new(name: &str, bootstrap: u64) -> Harness {
        Harness::with_client_port(name, bootstrap, None)
    }

    /// With the nodes' client port fixed (the reconciler dials pod IPs on
    /// the node's port 7000, as in a cluster).
    fn with_client_port(name: &str, bootstrap: u64, client_port: Option<u16>) -> Harness {
        let prefix = loopback_prefix(name);
        let mut ports = ports_free(&prefix, 7, 3);
        if let Some(port) = client_port {
            for i in 1..=7 {
                assert!(
                    TcpListener::bind(format!("{prefix}.{i}:{port}")).is_ok(),
                    "port {port} is taken on {prefix}.{i}"
                );
            }
            ports[1] = port;
        }
        let dir =
            std::env::temp_dir().join(format!("synod-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut harness = Harness {
            bin: synod_binary(),
            dir,
            prefix,
            peer_port: ports[0],
            client_port: ports[1],
            http_port: ports[2],
            bootstrap,
            replicas: 0,
            revision: "r1".into(),
            pods: BTreeMap::new(),
            bootstrapped: false,
            next_uid: 0,
        };
        harness.scale(u32::try_from(bootstrap).expect("small"));
        harness
    }

    fn client_addr(&self, id: NodeId) -> String {
        format!("{}.{id}:{}", self.prefix, self.client_port)
    }

    fn start(&mut self, id: NodeId) {
        let peers = (1..=self.bootstrap)
            .map(|i| format!("{i}={}.{i}:{}", self.prefix, self.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let data = self.dir.join(id.to_string());
        let log = std::fs::File::create(self.dir.join(format!("node-{id}-{}.log", self.next_uid)))
            .expect("log file");
        let child = Command::new(&self.bin)
            .args([
                "serve",
                "--node-id",
                &id.to_string(),
                "--cluster",
                "harness",
            ])
            .args(["--client-addr", &self.client_addr(id)])
            .args([
                "--http-addr",
                &format!("{}.{id}:{}", self.prefix, self.http_port),
            ])
            .args([
                "--peer-addr",
                &format!("{}.{id}:{}", self.prefix, self.peer_port),
            ])
            .args(["--peers", &peers])
            .args([
                "--peer-address-template",
                &format!("{}.{{id}}:{}", self.prefix, self.peer_port),
            ])
            .args(["--zookeeper-addr", "off", "--heartbeat-ms", "50"])
            .args(["--election-timeout-ms", "500", "--shutdown-grace-ms", "200"])
            // The "broken" revision is a template the node refuses to start
            // with (a bad image or flag): the process exits at once.
            .args(if self.revision == "broken" {
                &["--max-data-bytes", "0"][..]
            } else {
                &[][..]
            })
            .arg("--data-dir")
            .arg(&data)
            // As the bootstrap-state ConfigMap would deliver it; a node
            // without the flag ignores the variable.
            .env(
                "SYNOD_INITIAL_CLUSTER_STATE",
                if self.bootstrapped { "existing" } else { "new" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn synod");
        self.next_uid += 1;
        self.pods.insert(
            id,
            Proc {
                child,
                uid: format!("uid-{}", self.next_uid),
                revision: self.revision.clone(),
                started: Instant::now(),
            },
        );
    }

    fn stop(&mut self, id: NodeId) {
        if let Some(mut pod) = self.pods.remove(&id) {
            let _ = Command::new("kill")
                .args(["-TERM", &pod.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = pod.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = pod.child.kill();
            let _ = pod.child.wait();
        }
    }

    fn scale(&mut self, replicas: u32) {
        self.replicas = replicas;
        let want = u64::from(replicas);
        let extra: Vec<NodeId> = self.pods.keys().copied().filter(|id| *id > want).collect();
        for id in extra {
            self.stop(id);
        }
        for id in 1..=want {
            if !self.pods.contains_key(&id) {
                self.start(id);
            }
        }
    }

    fn ready(&self, id: NodeId) -> bool {
        let address = format!("{}.{id}:{}", self.prefix, self.http_port);
        let Ok(mut stream) = TcpStream::connect_timeout(
            &address.parse().expect("address"),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    /// What the reconciler's observe step would see.
    async fn observe(&mut self) -> (Observed, Option<String>) {
        let mut nodes = BTreeMap::new();
        let mut leader = None;
        for id in self.pods.keys().copied().collect::<Vec<_>>() {
            let address = self.client_addr(id);
            if let Ok(status) = admin::status(&address).await {
                nodes.insert(
                    id,
                    NodeView {
                        node_id: status.node_id,
                        awaiting_readd: admin::awaiting_readd(&status),
                    },
                );
                if admin::is_leader(&status) {
                    leader = Some((address, status));
                }
            }
        }
        // As the reconciler records it: pods start `existing` once the
        // leader has bound every voter.
        if leader
            .as_ref()
            .is_some_and(|(_, status)| admin::every_voter_bound(status))
        {
            self.bootstrapped = true;
        }
        let pods = self
            .pods
            .iter()
            .map(|(id, p)| {
                (
                    *id,
                    PodView {
                        uid: p.uid.clone(),
                        ready: self.ready(*id),
                        terminating: false,
                        revision: Some(p.revision.clone()),
                        age_seconds: p.started.elapsed().as_secs(),
                        foreign_data: false,
                    },
                )
            })
            .collect();
        let claims = (1..=9)
            .filter(|id| self.dir.join(id.to_string()).exists())
            .map(|id| {
                (
                    id,
                    vec![ClaimRef {
                        name: format!("data-{id}"),
                        uid: format!("claim-{id}"),
                    }],
                )
            })
            .collect();
        let leader_view = leader.as_ref().map(|(_, s)| LeaderView {
            id: s.node_id,
            commit_index: s.commit_index,
            change_pending: s.membership_change_pending,
            members: s
                .members
                .iter()
                .map(|m| (m.id, admin::member_view(m)))
                .collect(),
        });
        (
            Observed {
                statefulset: Some(StatefulSetView {
                    replicas: self.replicas,
                    update_revision: Some(self.revision.clone()),
                }),
                pods,
                claims,
                nodes,
                leader: leader_view,
                bootstrapped: self.bootstrapped,
            },
            leader.map(|(a, _)| a),
        )
    }

    /// Carries out an action as the reconciler does; Admin errors are
    /// returned (the reconciler retries by planning again).
    async fn act(&mut self, action: &Action, leader: Option<&str>) -> Result<(), String> {
        match action {
            Action::ScaleStatefulSet { replicas } => self.scale(*replicas),
            Action::ChangeMembership { change, id } => {
                let leader = leader.ok_or("no leader")?;
                admin::change_membership(leader, *change, *id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::TransferLeadership { to, .. } => {
                let leader = leader.ok_or("no leader")?;
                admin::transfer_leadership(leader, *to)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::DeletePod { id, uid, .. } => {
                if self.pods.get(id).is_some_and(|p| &p.uid == uid) {
                    self.stop(*id);
                    self.start(*id);
                }
            }
            Action::DeleteClaims { id, .. } => {
                assert!(!self.pods.contains_key(id), "volumes of a running pod");
                std::fs::remove_dir_all(self.dir.join(id.to_string()))
                    .map_err(|e| e.to_string())?;
            }
            Action::Idle { .. } | Action::Wait { .. } | Action::Blocked { .. } => {}
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for id in self.pods.keys().copied().collect::<Vec<_>>() {
            self.stop(id);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("node logs kept in {}", self.dir.display());
        }
    }
}

fn goal(replicas: u32) -> Goal {
    Goal {
        replicas,
        paused: false,
        delete_claims_on_scale_down: true,
        max_lag: 1000,
        heard_within_ms: 1000,
        pod_ready_timeout_seconds: 60,
    }
}

#[derive(Debug, Default)]
struct Run {
    actions: Vec<Action>,
    /// Longest stretch without a known leader after the first one.
    longest_leaderless: Duration,
}

/// Plans and acts until the world matches the goal and the planner is idle.
/// How the operator meets its Admin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calls {
    /// Each call is answered.
    Answered,
    /// Each membership change is answered, then asked again, as by an
    /// operator that died before it learnt the answer.
    Repeated,
    /// Each membership change is cut off after a few milliseconds, as by an
    /// operator killed mid-call: it may or may not commit.
    Cut,
}

async fn converge(h: &mut Harness, goal: &Goal, limit: Duration, calls: Calls) -> Run {
    let deadline = Instant::now() + limit;
    let mut run = Run::default();
    let mut leaderless_since: Option<Instant> = None;
    loop {
        let (observed, leader) = h.observe().await;
        if observed.bootstrapped {
            match (&observed.leader, leaderless_since) {
                (None, None) => leaderless_since = Some(Instant::now()),
                (Some(_), Some(since)) => {
                    run.longest_leaderless = run.longest_leaderless.max(since.elapsed());
                    leaderless_since = None;
                }
                _ => {}
            }
        }
        if let Some(view) = &observed.leader {
            // Quorum safety at every observation of a settled ensemble.
            let voters: Vec<_> = view.members.iter().filter(|(_, m)| m.voter).collect();
            let alive = voters
                .iter()
                .filter(|(id, _)| h.pods.contains_key(id))
                .count();
            assert!(
                alive >= quorum(voters.len()),
                "fewer live voters than a majority: {view:?}"
            );
        }
        let action = plan(&observed, goal);
        if std::env::var_os("HARNESS_TRACE").is_some() {
            eprintln!("{:?} {action:?}", Instant::now());
        }
        let members_match = observed.leader.as_ref().is_some_and(|l| {
            l.members.len() == goal.replicas as usize
                && l.members
                    .iter()
                    .all(|(id, m)| m.voter && *id <= u64::from(goal.replicas))
        });
        if action == (Action::Idle { paused: false })
            && members_match
            && observed.pods.values().all(|p| p.ready)
        {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence to {} in {limit:?}; last action {action:?}; observed {observed:#?}",
            goal.replicas
        );
        if let Action::Blocked { .. } = action {
            panic!("blocked: {action:?}");
        }
        if calls == Calls::Cut
            && let Action::ChangeMembership { change, id } = action
        {
            let leader = leader
                .clone()
                .expect("a change is planned only with a leader");
            let call = admin::change_membership(&leader, change, id);
            let cut = Duration::from_millis(1 + run.actions.len() as u64 % 7);
            let _ = tokio::time::timeout(cut, call).await;
            run.actions.push(action);
        } else if action.mutates() {
            match h.act(&action, leader.as_deref()).await {
                Ok(()) => {
                    if calls == Calls::Repeated
                        && let Action::ChangeMembership { change, id } = action
                    {
                        // The operator died before it learnt the answer and
                        // asks again: the node must say it is already done.
                        let leader = h.observe().await.1.expect("a leader after a change");
                        let again = admin::change_membership(&leader, change, id)
                            .await
                            .expect("a repeated change is answered");
                        assert!(again.already_done, "{change:?} {id} repeated: {again:?}");
                    }
                    run.actions.push(action);
                }
                Err(e) => eprintln!("action {action:?} failed, planning again: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes `/load-<n>` in a loop to whichever member answers; returns the
/// acknowledged paths.
fn start_load(h: &Harness, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    let addresses: Vec<String> = (1..=5).map(|id| h.client_addr(id)).collect();
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut n = 0u64;
        let mut target = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let address = &addresses[target % addresses.len()];
            let Ok(mut client) = CoordinationClient::connect(format!("http://{address}")).await
            else {
                target += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/load-{n}");
                let create = client.create(pb::CreateRequest {
                    session_id: 0,
                    path: path.clone(),
                    data: n.to_be_bytes().to_vec(),
                    acl: vec![],
                    mode: 0,
                    ttl_ms: 0,
                });
                match tokio::time::timeout(Duration::from_secs(5), create).await {
                    Ok(Ok(_)) => {
                        acked.push(path);
                        n += 1;
                    }
                    // Not acknowledged: may or may not exist; never counted.
                    _ => {
                        n += 1;
                        target += 1;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        acked
    })
}

async fn assert_all_present(h: &mut Harness, acked: &[String]) {
    let leader = h.observe().await.1.expect("a leader at the end");
    let mut client = CoordinationClient::connect(format!("http://{leader}"))
        .await
        .expect("connect to the leader");
    for path in acked {
        let read = client
            .get_data(pb::GetDataRequest {
                session_id: 0,
                path: path.clone(),
                watch: false,
                linearizable: true,
            })
            .await;
        assert!(read.is_ok(), "acknowledged write {path} is gone: {read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_three_to_five_to_three_under_load() {
    let mut h = Harness::new("scale", 3);
    converge(&mut h, &goal(3), Duration::from_secs(60), Calls::Answered).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&h, stop.clone());
    let up = converge(&mut h, &goal(5), Duration::from_secs(120), Calls::Repeated).await;
    let changes: Vec<(Change, NodeId)> = up
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ChangeMembership { change, id } => Some((*change, *id)),
            _ => None,
        })
        .collect();
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
    let changes: Vec<(Change, NodeId)> = down
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ChangeMembership { change, id } => Some((*change, *id)),
            _ => None,
        })
        .collect();
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
    assert!(h.bootstrapped, "the leader bound every voter");
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&h, stop.clone());
    let leader = h.observe().await.0.leader.expect("leader").id;
    let victim = if leader == 2 { 3 } else { 2 };
    h.stop(victim);
    std::fs::remove_dir_all(h.dir.join(victim.to_string())).expect("wipe");
    h.start(victim);
    let run = converge(&mut h, &goal(3), Duration::from_secs(120), Calls::Answered).await;
    let changes: Vec<(Change, NodeId)> = run
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ChangeMembership { change, id } => Some((*change, *id)),
            _ => None,
        })
        .collect();
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
    let (client, handle) = common::mock();
    let (task, seen) = common::serve_with(handle, move |method, path| {
        if *method != http::Method::GET {
            return None;
        }
        if path.ends_with("/statefulsets/demo") {
            return Some((http::StatusCode::OK, statefulset.clone()));
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
    let mut h = Harness::with_client_port("reconcile-status", 3, Some(7000));
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
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("mock stops")
        .expect("task");
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
    let mut h = Harness::with_client_port("reconcile-add", 3, Some(7000));
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
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("mock stops")
        .expect("task");
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
