//! The harness of `real_nodes`: it plays a StatefulSet with real `synod
//! serve` processes on loopback (one per ordinal, node id = ordinal + 1, at
//! `<prefix>.<id>` with the same ports on every address), keeps or deletes
//! their directories (the volumes), labels each process with the template
//! revision it was started from, observes them through the Admin API (on
//! each node's admin listener) and `/readyz`, and runs the planner's actions against them; plus a client
//! load and the check that every acknowledged write is still there.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synod_operator::admin::{self, AdminCredentials, Target};
use synod_operator::planner::{
    Action, Change, ClaimRef, Goal, LeaderView, NodeId, NodeView, Observed, PodView,
    StatefulSetView, plan, quorum,
};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;

/// The `synod` binary: `$SYNOD_BIN`, or the workspace's, built on demand
/// as every multi-process test gets it.
pub fn synod_binary() -> PathBuf {
    std::env::var_os("SYNOD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| synod_tests::binary("synod").expect("the synod binary"))
}

/// 127.x.y.* for this process and test, away from 127.0.0.x (other tests
/// use it): tests of one process run side by side, each on its own
/// addresses, so none can take a port another just found free.
pub fn loopback_prefix(test: &str) -> String {
    let [_, high, middle, low] = std::process::id().to_be_bytes();
    let salt = test
        .bytes()
        .fold(low, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    format!("127.{}.{}", 130 + (high & 0x3f), middle ^ salt)
}

/// `count` ports, each free on `<prefix>.1` .. `<prefix>.nodes`.
pub fn ports_free(prefix: &str, nodes: u64, count: usize) -> Vec<u16> {
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

/// TLS for the harness's nodes, as `spec.tls` sets it up: one node
/// certificate shared by every member (valid for each pod's DNS name, and
/// for the loopback addresses peers dial here), and the operator's admin
/// certificate from a separate admin CA.
pub struct HarnessTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub admin_ca: PathBuf,
    /// PEM of the node CA and of the operator's certificate and key, as
    /// the Secrets hold them.
    pub ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub credentials: AdminCredentials,
}

/// The pod name a node's certificate is checked against (ensemble `demo`
/// in namespace `ns`, as the reconciler tests name it).
pub fn pod_dns_name(id: NodeId) -> String {
    format!("demo-{}.demo-peers.ns.svc", id - 1)
}

impl HarnessTls {
    fn generate(dir: &std::path::Path, prefix: &str) -> HarnessTls {
        use synod_tls::generate::DevCa;
        let node_ca = DevCa::new("harness node CA").expect("CA");
        let admin_ca = DevCa::new("harness admin CA").expect("CA");
        let mut names: Vec<String> = (1..=7).map(pod_dns_name).collect();
        names.extend((1..=7).map(|id| format!("{prefix}.{id}")));
        let node = node_ca.issue("demo", &names).expect("node certificate");
        let operator = admin_ca
            .issue("synod-operator", &[])
            .expect("admin certificate");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let ca_pem = node_ca.cert_pem();
        HarnessTls {
            cert: write("node.crt", &node.cert_pem),
            key: write("node.key", &node.key_pem),
            ca: write("ca.crt", &ca_pem),
            admin_ca: write("admin-ca.crt", &admin_ca.cert_pem()),
            credentials: AdminCredentials::from_pem(
                ca_pem.as_bytes(),
                operator.cert_pem.as_bytes(),
                operator.key_pem.as_bytes(),
            )
            .expect("admin credentials"),
            ca_pem,
            admin_cert_pem: operator.cert_pem,
            admin_key_pem: operator.key_pem,
        }
    }
}

pub struct Proc {
    pub child: Child,
    pub uid: String,
    pub revision: String,
    pub started: Instant,
}

/// The StatefulSet and its pods, played by processes.
pub struct Harness {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub prefix: String,
    pub peer_port: u16,
    pub client_port: u16,
    pub http_port: u16,
    pub admin_port: u16,
    pub bootstrap: u64,
    pub replicas: u32,
    pub revision: String,
    pub pods: BTreeMap<NodeId, Proc>,
    pub bootstrapped: bool,
    pub next_uid: u64,
    /// Nodes with TLS on every port (and on their admin port) when set.
    pub tls: Option<HarnessTls>,
}

impl Harness {
    pub fn new(name: &str, bootstrap: u64) -> Harness {
        Harness::with_admin_port(name, bootstrap, None)
    }

    /// With the nodes' admin port fixed (the reconciler dials pod IPs on
    /// the port the pod declares as `admin`, 7300, as in a cluster).
    pub fn with_admin_port(name: &str, bootstrap: u64, admin_port: Option<u16>) -> Harness {
        Harness::build(name, bootstrap, admin_port, false)
    }

    /// As `with_admin_port`, with TLS on every node port (`HarnessTls`).
    pub fn with_tls(name: &str, bootstrap: u64, admin_port: Option<u16>) -> Harness {
        Harness::build(name, bootstrap, admin_port, true)
    }

    fn build(name: &str, bootstrap: u64, admin_port: Option<u16>, tls: bool) -> Harness {
        let prefix = loopback_prefix(name);
        let mut ports = ports_free(&prefix, 7, 4);
        if let Some(port) = admin_port {
            for i in 1..=7 {
                assert!(
                    TcpListener::bind(format!("{prefix}.{i}:{port}")).is_ok(),
                    "port {port} is taken on {prefix}.{i}"
                );
            }
            ports[3] = port;
        }
        let dir =
            std::env::temp_dir().join(format!("synod-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tls = tls.then(|| HarnessTls::generate(&dir, &prefix));
        let mut harness = Harness {
            bin: synod_binary(),
            dir,
            prefix,
            peer_port: ports[0],
            client_port: ports[1],
            http_port: ports[2],
            admin_port: ports[3],
            bootstrap,
            replicas: 0,
            revision: "r1".into(),
            pods: BTreeMap::new(),
            bootstrapped: false,
            next_uid: 0,
            tls,
        };
        harness.scale(u32::try_from(bootstrap).expect("small"));
        harness
    }

    pub fn client_addr(&self, id: NodeId) -> String {
        format!("{}.{id}:{}", self.prefix, self.client_port)
    }

    /// The node's admin listener (on loopback, so no `--admin-allow-remote`).
    pub fn admin_addr(&self, id: NodeId) -> String {
        format!("{}.{id}:{}", self.prefix, self.admin_port)
    }

    /// How the operator calls node `id`: over TLS, checking the node's
    /// certificate against its pod's DNS name, when the nodes have TLS.
    pub fn admin_target(&self, id: NodeId) -> Target {
        match &self.tls {
            None => Target::plain(self.admin_addr(id)),
            Some(tls) => Target::tls(self.admin_addr(id), &tls.credentials, &pod_dns_name(id))
                .expect("admin target"),
        }
    }

    /// The target of the node whose admin listener is at `address`.
    pub fn target_at(&self, address: &str) -> Target {
        (1..=9)
            .find(|id| self.admin_addr(*id) == address)
            .map_or_else(|| Target::plain(address), |id| self.admin_target(id))
    }

    pub fn start(&mut self, id: NodeId) {
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
            .args(["--admin-addr", &self.admin_addr(id)])
            .args(match &self.tls {
                None => Vec::new(),
                Some(tls) => vec![
                    "--tls-cert".into(),
                    tls.cert.display().to_string(),
                    "--tls-key".into(),
                    tls.key.display().to_string(),
                    "--tls-ca".into(),
                    tls.ca.display().to_string(),
                    "--tls-admin-ca".into(),
                    tls.admin_ca.display().to_string(),
                    "--zookeeper-secure-addr".into(),
                    "off".into(),
                ],
            })
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

    pub fn stop(&mut self, id: NodeId) {
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

    pub fn scale(&mut self, replicas: u32) {
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

    pub fn ready(&self, id: NodeId) -> bool {
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
    pub async fn observe(&mut self) -> (Observed, Option<String>) {
        let mut nodes = BTreeMap::new();
        let mut leader = None;
        for id in self.pods.keys().copied().collect::<Vec<_>>() {
            let address = self.admin_addr(id);
            if let Ok(status) = admin::status(&self.admin_target(id)).await {
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
    pub async fn act(&mut self, action: &Action, leader: Option<&str>) -> Result<(), String> {
        match action {
            Action::ScaleStatefulSet { replicas } => self.scale(*replicas),
            Action::ChangeMembership { change, id } => {
                let leader = leader.ok_or("no leader")?;
                admin::change_membership(&self.target_at(leader), *change, *id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::TransferLeadership { to, .. } => {
                let leader = leader.ok_or("no leader")?;
                admin::transfer_leadership(&self.target_at(leader), *to)
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

pub fn goal(replicas: u32) -> Goal {
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
pub struct Run {
    pub actions: Vec<Action>,
    /// Longest stretch without a known leader after the first one.
    pub longest_leaderless: Duration,
}

impl Run {
    /// The membership changes among the actions, in order.
    pub fn membership_changes(&self) -> Vec<(Change, NodeId)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::ChangeMembership { change, id } => Some((*change, *id)),
                _ => None,
            })
            .collect()
    }
}

/// Plans and acts until the world matches the goal and the planner is idle.
/// How the operator meets its Admin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Each call is answered.
    Answered,
    /// Each membership change is answered, then asked again, as by an
    /// operator that died before it learnt the answer.
    Repeated,
    /// Each membership change is cut off after a few milliseconds, as by an
    /// operator killed mid-call: it may or may not commit.
    Cut,
}

pub async fn converge(h: &mut Harness, goal: &Goal, limit: Duration, calls: Calls) -> Run {
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
            let leader = h.target_at(&leader);
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
                        let again = admin::change_membership(&h.target_at(&leader), change, id)
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
pub fn start_load(h: &Harness, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
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

pub async fn assert_all_present(h: &mut Harness, acked: &[String]) {
    let leader = h.observe().await.0.leader.expect("a leader at the end").id;
    let mut client = CoordinationClient::connect(format!("http://{}", h.client_addr(leader)))
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
