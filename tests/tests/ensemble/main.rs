//! Replication end to end: three real `synod serve` processes form an
//! ensemble on loopback. Writes through any node reach every node; the
//! ensemble survives the loss of its leader, of a follower, of every
//! process at once (with data directories), and of the network links of
//! one node; a client's session outlives the server it was connected to;
//! a node that catches up by installing a snapshot fires the watches the
//! changes it skipped would have fired;
//! and a node's peer port shrugs off frames it must refuse.
//!
//! Every wait is bounded and fails with what it waited for. Nothing here
//! asserts how fast the ensemble is; the bounds are generous so that a
//! slow, busy machine passes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use prost::Message as _;
use synod_client::{AddWatchMode, Client, ClientConfig, CreateOptions, EventType};
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::{Ensemble, TempDir};
use tonic::transport::{Channel, Endpoint};

type Api = CoordinationClient<Channel>;

/// Every node answers `/readyz` with 200 (members, leader known, caught up).
const READY: Duration = Duration::from_secs(60);
/// A leader is elected, or a new one after the old one is gone.
const ELECTION: Duration = Duration::from_secs(15);
/// One write succeeds, retried while the ensemble cannot take it.
const WRITE: Duration = Duration::from_secs(30);
/// A node that was behind has everything the others have.
const CONVERGE: Duration = Duration::from_secs(60);
/// A writer load makes the progress waited for.
const PROGRESS: Duration = Duration::from_secs(60);

/// Runs a blocking harness call (process start, HTTP polls, sleeps) without
/// stalling the runtime's other tasks, such as a writer load.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// A gRPC client of one node. Lazy, so it can be made for a node that is
/// down and works once the node is back; every call has its own timeout,
/// so a node that cannot answer (no leader, cut off) never hangs a test.
fn api(addr: SocketAddr) -> Api {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URI")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    CoordinationClient::new(channel)
}

fn apis(ensemble: &Ensemble, ids: &[usize]) -> Vec<Api> {
    ids.iter()
        .map(|&id| api(ensemble.client_addr(id)))
        .collect()
}

/// The error code in a failed call's `ErrorDetail`; `None` for a failure
/// of the transport (no detail).
fn code_of(status: &tonic::Status) -> Option<pb::ErrorCode> {
    let detail = pb::ErrorDetail::decode(status.details()).ok()?;
    pb::ErrorCode::try_from(detail.code)
        .ok()
        .filter(|&code| code != pb::ErrorCode::Ok)
}

fn create_request(path: &str, data: &[u8]) -> pb::CreateRequest {
    pb::CreateRequest {
        session_id: 0,
        path: path.into(),
        data: data.to_vec(),
        acl: vec![],
        mode: pb::CreateMode::Persistent as i32,
        ttl_ms: 0,
    }
}

/// Creates `path` through one of `apis`, moving to the next node after
/// each failure, until it succeeds or `limit` passes. A failed attempt may
/// still have been applied, so `NodeExists` after one counts as success.
async fn create_on_any(apis: &mut [Api], path: &str, data: &[u8], limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut target = 0;
    let mut attempted = false;
    loop {
        let status = match apis[target].create(create_request(path, data)).await {
            Ok(_) => return,
            Err(status) => status,
        };
        if code_of(&status) == Some(pb::ErrorCode::NodeExists) {
            assert!(
                attempted,
                "{path} existed before it was written: {status:?}"
            );
            return;
        }
        attempted = true;
        assert!(
            Instant::now() < deadline,
            "creating {path} did not succeed within {limit:?}; last error: {status:?}"
        );
        target = (target + 1) % apis.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `path` on one node: `Ok(None)` when it does not exist there.
async fn get(api: &mut Api, path: &str) -> Result<Option<Vec<u8>>, tonic::Status> {
    let request = pb::GetDataRequest {
        session_id: 0,
        path: path.into(),
        watch: false,
        linearizable: false,
    };
    match api.get_data(request).await {
        Ok(response) => Ok(Some(response.into_inner().data)),
        Err(status) if code_of(&status) == Some(pb::ErrorCode::NoNode) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Waits until `path` reads as `expected` on the node behind `api`.
async fn wait_for_data(api: &mut Api, path: &str, expected: &[u8], limit: Duration, node: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let read = get(api, path).await;
        if matches!(&read, Ok(Some(data)) if data == expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} did not have {path} = {:?} within {limit:?}; last read: {read:?}",
            String::from_utf8_lossy(expected)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Brings the node behind `api` up to date with everything committed
/// before the call, retrying while it cannot reach a leader.
async fn sync(api: &mut Api, node: &str) {
    let deadline = Instant::now() + WRITE;
    loop {
        let request = pb::SyncRequest {
            session_id: 0,
            path: "/".into(),
        };
        let status = match api.sync(request).await {
            Ok(_) => return,
            Err(status) => status,
        };
        assert!(
            Instant::now() < deadline,
            "sync on {node} did not succeed within {WRITE:?}; last error: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Syncs node `id` and asserts that every path of `acked` is there with
/// its own name as data (as [`Load`] writes them).
async fn assert_all_present(ensemble: &Ensemble, id: usize, acked: &[String]) {
    let node = format!("node {id}");
    let mut api = api(ensemble.client_addr(id));
    sync(&mut api, &node).await;
    for path in acked {
        // A read is local and needs no leader; retry only failures of the
        // call itself, never a wrong answer.
        let deadline = Instant::now() + WRITE;
        let read = loop {
            match get(&mut api, path).await {
                Ok(found) => break found,
                Err(status) => {
                    assert!(
                        Instant::now() < deadline,
                        "{node} did not answer a read of {path}: {status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(
            read.as_deref(),
            Some(path.as_bytes()),
            "{path} was acknowledged but is not on {node} after sync ({} acknowledged)",
            acked.len()
        );
    }
}

/// Concurrent writers, each creating its own numbered znodes through the
/// nodes of the ensemble in turn (moving on after an error), recording
/// every create that was acknowledged.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(ensemble: &Ensemble, writers: usize, prefix: &str) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ids = ensemble.ids();
        let writers = (0..writers)
            .map(|w| {
                let mut apis = apis(ensemble, &ids);
                let acked = Arc::clone(&acked);
                let stop = Arc::clone(&stop);
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let mut target = w % apis.len();
                    // A fresh path for every attempt: an attempt that failed
                    // may still be applied, and must not be confused with
                    // an acknowledged one.
                    for i in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let path = format!("/{prefix}-{w}-{i}");
                        let request = create_request(&path, path.as_bytes());
                        match apis[target].create(request).await {
                            Ok(_) => acked.lock().expect("acked list").push(path),
                            Err(_) => {
                                target = (target + 1) % apis.len();
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            acked,
            stop,
            writers,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().expect("acked list").len()
    }

    async fn wait_acked(&self, at_least: usize, what: &str) {
        let deadline = Instant::now() + PROGRESS;
        while self.acked() < at_least {
            assert!(
                Instant::now() < deadline,
                "{what}: {} writes acknowledged within {PROGRESS:?}, waited for {at_least}",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers and returns every acknowledged path.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.expect("writer task");
        }
        self.acked.lock().expect("acked list").clone()
    }
}

fn start(n: usize, extra: &[&str], data_root: Option<&std::path::Path>) -> Ensemble {
    let ensemble = blocking(|| Ensemble::start(n, extra, data_root)).expect("ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready");
    ensemble
}

fn leader(ensemble: &Ensemble, among: &[usize]) -> usize {
    blocking(|| ensemble.leader_among(among, ELECTION)).unwrap_or_else(|| {
        panic!(
            "no single leader among nodes {among:?} within {ELECTION:?}; leaders now: {:?}",
            ensemble.leaders()
        )
    })
}

fn others(ensemble: &Ensemble, than: usize) -> Vec<usize> {
    ensemble
        .ids()
        .into_iter()
        .filter(|&id| id != than)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate() {
    let ensemble = start(3, &[], None);
    let mut apis = apis(&ensemble, &ensemble.ids());

    create_on_any(&mut apis[..1], "/replicated", b"from node 1", WRITE).await;
    for id in [2, 3] {
        let node = format!("node {id}");
        wait_for_data(
            &mut apis[id - 1],
            "/replicated",
            b"from node 1",
            CONVERGE,
            &node,
        )
        .await;
    }

    // Every node takes writes (a follower forwards them to the leader) and
    // every node sees every write.
    for id in 1..=3 {
        let path = format!("/from-{id}");
        create_on_any(&mut apis[id - 1..id], &path, path.as_bytes(), WRITE).await;
    }
    for reader in 1..=3 {
        for writer in 1..=3 {
            let path = format!("/from-{writer}");
            let node = format!("node {reader}");
            wait_for_data(
                &mut apis[reader - 1],
                &path,
                path.as_bytes(),
                CONVERGE,
                &node,
            )
            .await;
        }
    }

    // The replicas hold the same state, Stat included: zxids and times are
    // fixed by the log, not by the replica that applies it.
    let mut stats = Vec::new();
    for api in &mut apis {
        let request = pb::ExistsRequest {
            session_id: 0,
            path: "/replicated".into(),
            watch: false,
            linearizable: false,
        };
        stats.push(api.exists(request).await.expect("exists").into_inner().stat);
    }
    assert!(stats[0].is_some());
    assert!(
        stats.iter().all(|stat| *stat == stats[0]),
        "the same Stat on every node: {stats:?}"
    );
}

/// A linearizable read on any node sees every write acknowledged before
/// it, through any other node: the reading node first applies the commit
/// index the leader confirms. (A plain read may trail; this one may not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_see_every_acknowledged_write() {
    let ensemble = start(3, &[], None);
    let mut apis = apis(&ensemble, &ensemble.ids());
    for i in 0..60usize {
        let writer = i % 3;
        let reader = (i + 1 + i / 3 % 2) % 3;
        let path = format!("/lin-{i}");
        create_on_any(&mut apis[writer..=writer], &path, path.as_bytes(), WRITE).await;
        let request = pb::GetDataRequest {
            session_id: 0,
            path: path.clone(),
            watch: false,
            linearizable: true,
        };
        let read = apis[reader]
            .get_data(request)
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "linearizable read of {path} on node {} after the write on node {}: {status:?}",
                    reader + 1,
                    writer + 1
                )
            });
        assert_eq!(read.into_inner().data, path.as_bytes());
    }
}

/// An observer applies the log, serves reads and forwards writes, but
/// does not vote: with one of the three voters down, losing the observer
/// too leaves a quorum, and it never becomes the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_serves_reads_and_forwards_writes() {
    let mut ensemble =
        blocking(|| Ensemble::start_with_observers(3, 1, &[], None)).expect("ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready");
    let mut apis = apis(&ensemble, &ensemble.ids());
    let leader = leader(&ensemble, &[1, 2, 3]);
    assert_ne!(leader, 4, "an observer never leads");

    create_on_any(&mut apis[3..4], "/via-observer", b"o", WRITE).await;
    create_on_any(&mut apis[leader - 1..leader], "/via-leader", b"l", WRITE).await;
    for id in 1..=4 {
        let node = format!("node {id}");
        wait_for_data(&mut apis[id - 1], "/via-observer", b"o", CONVERGE, &node).await;
        wait_for_data(&mut apis[id - 1], "/via-leader", b"l", CONVERGE, &node).await;
    }

    // Votes come from the voters only: one voter and the observer down
    // still leave two of three voters, a quorum.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    blocking(|| ensemble.kill(4)).expect("kill the observer");
    blocking(|| ensemble.kill(follower)).expect("kill a voter");
    let survivor = (1..=3)
        .find(|id| *id != leader && *id != follower)
        .expect("another voter");
    create_on_any(
        &mut apis[survivor - 1..survivor],
        "/two-of-three",
        b"q",
        WRITE,
    )
    .await;

    // The observer catches up when it comes back.
    blocking(|| ensemble.restart(4)).expect("restart the observer");
    wait_for_data(&mut apis[3], "/two-of-three", b"q", CONVERGE, "node 4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover() {
    let mut ensemble = start(3, &[], None);
    let old_leader = leader(&ensemble, &ensemble.ids());
    let load = Load::start(&ensemble, 6, "failover");
    load.wait_acked(200, "before the leader is killed").await;

    blocking(|| ensemble.kill(old_leader)).expect("kill the leader");
    let survivors = others(&ensemble, old_leader);
    let new_leader = leader(&ensemble, &survivors);
    assert_ne!(new_leader, old_leader);

    // Writes go on through the survivors under the new leader.
    let at_election = load.acked();
    load.wait_acked(at_election + 200, "after the new leader was elected")
        .await;
    let acked = load.stop().await;

    for id in survivors {
        assert_all_present(&ensemble, id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_restart_catches_up() {
    let dir = TempDir::new("ensemble-catch-up").expect("temp dir");
    // Snapshots every 100 txns, so the log behind the 500 writes the
    // follower misses is compacted: it may have to catch up from a
    // snapshot rather than from the log.
    let mut ensemble = start(
        3,
        &[
            "--snapshot-every-txns",
            "100",
            "--snapshot-txns-per-znode",
            "0",
        ],
        Some(dir.path()),
    );
    let first_leader = leader(&ensemble, &ensemble.ids());
    let follower = others(&ensemble, first_leader)[0];
    let survivors = others(&ensemble, follower);
    let mut writers = apis(&ensemble, &survivors);

    create_on_any(&mut writers, "/c", b"", WRITE).await;
    for i in 0..50 {
        let path = format!("/c/before-{i}");
        create_on_any(&mut writers, &path, path.as_bytes(), WRITE).await;
    }
    blocking(|| ensemble.kill(follower)).expect("kill the follower");
    for i in 0..500 {
        let path = format!("/c/while-down-{i}");
        create_on_any(&mut writers, &path, path.as_bytes(), WRITE).await;
    }

    blocking(|| ensemble.restart(follower)).expect("restart the follower");
    let mut behind = api(ensemble.client_addr(follower));
    let deadline = Instant::now() + CONVERGE;
    loop {
        let request = pb::GetChildrenRequest {
            session_id: 0,
            path: "/c".into(),
            watch: false,
            linearizable: false,
        };
        let children = behind
            .get_children(request)
            .await
            .map(|r| r.into_inner().children.len());
        if matches!(children, Ok(550)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node {follower} did not catch up within {CONVERGE:?}: \
             children of /c: {children:?}, expected 550"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let node = format!("restarted node {follower}");
    for i in 0..50 {
        let path = format!("/c/before-{i}");
        wait_for_data(&mut behind, &path, path.as_bytes(), WRITE, &node).await;
    }
    for i in 0..500 {
        let path = format!("/c/while-down-{i}");
        wait_for_data(&mut behind, &path, path.as_bytes(), WRITE, &node).await;
    }
    blocking(|| ensemble.wait_nodes_ready(&[follower], READY)).expect("caught-up node is ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_and_restart() {
    let dir = TempDir::new("ensemble-kill-all").expect("temp dir");
    let mut ensemble = start(3, &["--snapshot-every-txns", "150"], Some(dir.path()));
    let load = Load::start(&ensemble, 6, "crash");
    load.wait_acked(400, "before the crash").await;

    blocking(|| ensemble.kill_all()).expect("kill every node");
    let acked = load.stop().await;

    blocking(|| ensemble.restart_all()).expect("restart every node");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready after the restart");
    for id in ensemble.ids() {
        assert_all_present(&ensemble, id, &acked).await;
    }

    // And it takes writes again.
    let mut all = apis(&ensemble, &ensemble.ids());
    create_on_any(&mut all, "/after-restart", b"yes", WRITE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition() {
    let ensemble = blocking(|| Ensemble::start_proxied(3, &[], None)).expect("ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready");
    let the_leader = leader(&ensemble, &ensemble.ids());
    let cut_off = others(&ensemble, the_leader)[0];
    let majority = others(&ensemble, cut_off);
    let mut majority_apis = apis(&ensemble, &majority);
    let mut minority_api = api(ensemble.client_addr(cut_off));
    let minority = format!("cut-off node {cut_off}");

    create_on_any(&mut majority_apis, "/before", b"1", WRITE).await;
    wait_for_data(&mut minority_api, "/before", b"1", CONVERGE, &minority).await;

    blocking(|| ensemble.isolate(cut_off));

    // The majority still has a quorum: its writes succeed.
    for i in 0..50 {
        let path = format!("/during-{i}");
        create_on_any(&mut majority_apis, &path, path.as_bytes(), WRITE).await;
    }
    // The cut-off node cannot commit anything: a write through it fails or
    // is not answered. (Whether it reaches the log later is not asserted.)
    for i in 0..3 {
        let path = format!("/minority-{i}");
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            minority_api.create(create_request(&path, b"")),
        )
        .await;
        assert!(
            !matches!(attempt, Ok(Ok(_))),
            "a write through {minority} was acknowledged while it was partitioned"
        );
    }

    blocking(|| ensemble.heal_all());
    for i in 0..50 {
        let path = format!("/during-{i}");
        wait_for_data(
            &mut minority_api,
            &path,
            path.as_bytes(),
            CONVERGE,
            &minority,
        )
        .await;
    }
    // Healed, it takes writes again, and they reach the others.
    create_on_any(
        std::slice::from_mut(&mut minority_api),
        "/after-heal",
        b"2",
        WRITE,
    )
    .await;
    for (api, id) in majority_apis.iter_mut().zip(&majority) {
        wait_for_data(api, "/after-heal", b"2", CONVERGE, &format!("node {id}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_for_changes_a_snapshot_skipped() {
    let dir = TempDir::new("ensemble-snapshot-watches").expect("temp dir");
    // Snapshots every few dozen txns (whatever the tree's size), so that
    // the leader's log no longer reaches back to the cut-off follower and
    // it catches up by installing a snapshot.
    let ensemble = blocking(|| {
        Ensemble::start_proxied(
            3,
            &[
                "--snapshot-every-txns",
                "40",
                "--snapshot-txns-per-znode",
                "0",
            ],
            Some(dir.path()),
        )
    })
    .expect("ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready");
    let the_leader = leader(&ensemble, &ensemble.ids());
    let follower = others(&ensemble, the_leader)[0];
    let majority = others(&ensemble, follower);
    let mut majority_apis = apis(&ensemble, &majority);
    let mut watcher = api(ensemble.client_addr(follower));
    let node = format!("follower {follower}");

    create_on_any(&mut majority_apis, "/w", b"old", WRITE).await;
    create_on_any(&mut majority_apis, "/tree", b"", WRITE).await;
    wait_for_data(&mut watcher, "/tree", b"", CONVERGE, &node).await;
    // A session on the follower with a data watch, an exists watch on a
    // missing node and a recursive watch. The longest timeout, so that it
    // outlives the partition without pings.
    let session = watcher
        .create_session(pb::CreateSessionRequest { timeout_ms: 40_000 })
        .await
        .expect("session")
        .into_inner()
        .session_id;
    watcher
        .get_data(pb::GetDataRequest {
            session_id: session,
            path: "/w".into(),
            watch: true,
            linearizable: false,
        })
        .await
        .expect("data watch");
    watcher
        .exists(pb::ExistsRequest {
            session_id: session,
            path: "/new".into(),
            watch: true,
            linearizable: false,
        })
        .await
        .expect("exists watch");
    watcher
        .add_watch(pb::AddWatchRequest {
            session_id: session,
            path: "/tree".into(),
            mode: pb::AddWatchMode::PersistentRecursive as i32,
        })
        .await
        .expect("recursive watch");
    let mut events = watcher
        .watch_events(pb::WatchEventsRequest {
            session_id: session,
            after_seq: 0,
        })
        .await
        .expect("event stream")
        .into_inner();

    blocking(|| ensemble.isolate(follower));
    create_on_any(&mut majority_apis, "/new", b"", WRITE).await;
    create_on_any(&mut majority_apis, "/tree/a", b"", WRITE).await;
    for i in 0..200 {
        create_on_any(&mut majority_apis, &format!("/filler-{i}"), b"", WRITE).await;
    }
    let mut setter = majority_apis[0].clone();
    setter
        .set_data(pb::SetDataRequest {
            session_id: 0,
            path: "/w".into(),
            data: b"new".to_vec(),
            version: -1,
        })
        .await
        .expect("set /w");
    blocking(|| ensemble.heal_all());

    let mut expected = vec![
        (pb::EventType::NodeDataChanged, "/w".to_owned()),
        (pb::EventType::NodeCreated, "/new".to_owned()),
        (pb::EventType::NodeCreated, "/tree/a".to_owned()),
    ];
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while !expected.is_empty() {
        let event = tokio::time::timeout_at(deadline, events.message())
            .await
            .unwrap_or_else(|_| {
                panic!("{node} caught up without firing {expected:?} within {CONVERGE:?}")
            })
            .expect("event stream open")
            .expect("event stream not ended");
        let kind = pb::EventType::try_from(event.r#type).expect("known event type");
        expected.retain(|(k, p)| !(*k == kind && *p == event.path));
    }
    wait_for_data(&mut watcher, "/w", b"new", CONVERGE, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_replaced() {
    let ensemble = blocking(|| Ensemble::start_proxied(3, &[], None)).expect("ensemble starts");
    blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready");
    let old_leader = leader(&ensemble, &ensemble.ids());
    let majority = others(&ensemble, old_leader);
    let mut majority_apis = apis(&ensemble, &majority);
    let mut old_api = api(ensemble.client_addr(old_leader));

    blocking(|| ensemble.isolate(old_leader));
    // The old leader may still believe it leads for a while; only the
    // majority's view counts.
    let new_leader = leader(&ensemble, &majority);
    for i in 0..20 {
        let path = format!("/majority-{i}");
        create_on_any(&mut majority_apis, &path, path.as_bytes(), WRITE).await;
    }
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        old_api.create(create_request("/stale-leader", b"")),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the cut-off old leader {old_leader} acknowledged a write without a quorum"
    );

    blocking(|| ensemble.heal_all());
    let node = format!("old leader {old_leader}");
    for i in 0..20 {
        let path = format!("/majority-{i}");
        wait_for_data(&mut old_api, &path, path.as_bytes(), CONVERGE, &node).await;
    }
    // Exactly one node says it leads again: the old leader has stepped
    // down (it may be elected again later; that is not a fault).
    let deadline = Instant::now() + ELECTION;
    loop {
        let leaders = blocking(|| ensemble.leaders());
        if leaders.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the heal, leaders are {leaders:?} (new leader was {new_leader}, old {old_leader})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tokio runtime of its own for a client that the test later abandons:
/// shutting the runtime down stops the client's tasks without the close
/// that dropping a `Client` sends. Shut down in the background when
/// dropped, since a runtime cannot be dropped inside another one.
struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl ClientRuntime {
    fn new() -> ClientRuntime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("client runtime");
        ClientRuntime(Some(runtime))
    }

    /// Runs `future` on this runtime and waits for it from the caller's.
    async fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let runtime = self.0.as_ref().expect("runtime running");
        runtime.spawn(future).await.expect("client task")
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_server_death() {
    let dir = TempDir::new("ensemble-session").expect("temp dir");
    let mut ensemble = start(3, &[], Some(dir.path()));
    let runtime = ClientRuntime::new();
    let endpoints: Vec<String> = ensemble
        .ids()
        .iter()
        .map(|&id| ensemble.endpoint(id))
        .collect();
    let client = runtime
        .run(async move {
            let mut config = ClientConfig::new(endpoints);
            config.session_timeout = Duration::from_secs(10);
            Client::connect(config).await
        })
        .await
        .expect("client connects");
    let session = client.session_id();
    let c = client.clone();
    runtime
        .run(async move { c.create("/owner", b"me", &CreateOptions::ephemeral()).await })
        .await
        .expect("ephemeral created");
    let c = client.clone();
    let mut children = runtime
        .run(async move { c.watch("/", AddWatchMode::Persistent).await })
        .await
        .expect("watch set");

    // Twice: kill the server the client is connected to (a quorum of two
    // stays), check the session, then bring that server back.
    for round in 0..2 {
        let deadline = Instant::now() + CONVERGE;
        let connected = loop {
            if let Some(id) = client
                .endpoint()
                .and_then(|endpoint| ensemble.id_of_endpoint(&endpoint))
            {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the client is not connected to any node: {:?}",
                client.endpoint()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        blocking(|| ensemble.kill(connected)).expect("kill the client's server");
        let survivors = others(&ensemble, connected);

        // The client moves to a survivor and keeps its session and its
        // ephemeral node.
        let deadline = Instant::now() + CONVERGE;
        let stat = loop {
            let c = client.clone();
            match runtime.run(async move { c.exists("/owner").await }).await {
                Ok(found) => break found,
                Err(error) if error.is_session_gone() => {
                    panic!("round {round}: the session ended when node {connected} died: {error}")
                }
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "round {round}: the client did not recover within {CONVERGE:?}: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stat = stat.unwrap_or_else(|| panic!("round {round}: the ephemeral node is gone"));
        assert_eq!(stat.ephemeral_owner, session, "round {round}");
        assert_eq!(client.session_id(), session, "round {round}");
        assert!(!client.state().is_terminal(), "round {round}");

        // The client's watch was set again on its new server: a change
        // made through another node fires it.
        while children.next_event().now_or_never().flatten().is_some() {}
        let mut writers = apis(&ensemble, &survivors);
        let path = format!("/child-{round}");
        create_on_any(&mut writers, &path, b"", WRITE).await;
        let deadline = Instant::now() + CONVERGE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, children.next_event()).await {
                Ok(Some(event))
                    if event.event_type == EventType::NodeChildrenChanged && event.path == "/" =>
                {
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("round {round}: the watch stream ended with the session"),
                Err(_) => panic!(
                    "round {round}: no NodeChildrenChanged for / within {CONVERGE:?} \
                     after creating {path}"
                ),
            }
        }

        blocking(|| ensemble.restart(connected)).expect("restart the killed node");
        blocking(|| ensemble.wait_ready(READY)).expect("ensemble ready again");
    }

    // Abandon the client without closing its session, as a crashed client
    // process would: its ephemeral node must go when the session expires.
    let granted = client.session_timeout();
    drop(children);
    std::mem::forget(client);
    drop(runtime);
    let mut observers = apis(&ensemble, &ensemble.ids());
    let limit = granted + CONVERGE;
    let deadline = Instant::now() + limit;
    let mut target = 0;
    loop {
        let read = get(&mut observers[target], "/owner").await;
        if matches!(read, Ok(None)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned session's ephemeral node was still there {limit:?} after the \
             client went away (session timeout {granted:?}); last read: {read:?}"
        );
        target = (target + 1) % observers.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Gone everywhere, not just on the node asked last.
    for id in ensemble.ids() {
        let mut api = api(ensemble.client_addr(id));
        let node = format!("node {id}");
        sync(&mut api, &node).await;
        assert_eq!(
            get(&mut api, "/owner").await.expect("read"),
            None,
            "the expired session's ephemeral node is still on {node}"
        );
    }
}

/// The peer port refusing and shrugging off bad frames.
mod peer_input;
