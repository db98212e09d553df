//! Durability of a single node through its real binary: every acknowledged
//! write survives kill -9 and restart, snapshots and log purging keep the
//! state, and two processes cannot share a data directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prost::Message as _;
use synod_proto::v1 as pb;
use synod_proto::v1::coordination_client::CoordinationClient;
use synod_tests::TestNode;
use tokio::sync::Mutex;

async fn connect(node: &TestNode) -> CoordinationClient<tonic::transport::Channel> {
    CoordinationClient::connect(format!("http://{}", node.endpoint()))
        .await
        .expect("connect")
}

fn create(path: String, data: Vec<u8>) -> pb::CreateRequest {
    pb::CreateRequest {
        session_id: 0,
        path,
        data,
        acl: vec![],
        mode: 0,
        ttl_ms: 0,
    }
}

async fn get(
    api: &mut CoordinationClient<tonic::transport::Channel>,
    path: &str,
) -> Option<Vec<u8>> {
    match api
        .get_data(pb::GetDataRequest {
            session_id: 0,
            path: path.into(),
            watch: false,
            linearizable: false,
        })
        .await
    {
        Ok(r) => Some(r.into_inner().data),
        Err(status) => {
            let detail = pb::ErrorDetail::decode(status.details()).expect("detail");
            assert_eq!(detail.code, pb::ErrorCode::NoNode as i32, "{status:?}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let temp = synod_tests::TempDir::new("kill9").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let data_dir = dir.to_str().unwrap();
    let mut node =
        TestNode::start(&["--data-dir", data_dir, "--snapshot-every-txns", "150"]).expect("node");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16 {
        let mut api = connect(&node).await;
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let path = format!("/w{w}-{i}");
                match api
                    .create(create(path.clone(), i.to_le_bytes().to_vec()))
                    .await
                {
                    Ok(_) => acked.lock().await.push((path, i)),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the load run past a few snapshots, then crash mid-write.
    while acked.lock().await.len() < 700 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 700);

    let node = TestNode::start(&["--data-dir", data_dir]).expect("restart");
    let mut api = connect(&node).await;
    for (path, i) in &acked {
        assert_eq!(
            get(&mut api, path).await,
            Some(i.to_le_bytes().to_vec()),
            "{path} was acknowledged"
        );
    }
    let snapshots = std::fs::read_dir(dir.join("snapshot")).unwrap().count();
    assert!(
        (1..=4).contains(&snapshots),
        "snapshots are taken and purged: {snapshots} files"
    );
}

#[tokio::test]
async fn state_survives_a_clean_restart_with_separate_log_and_snapshot_dirs() {
    let temp = synod_tests::TempDir::new("restart").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let log = dir.join("wal-volume");
    let snap = dir.join("snap-volume");
    let args = [
        "--data-dir",
        dir.to_str().unwrap(),
        "--log-dir",
        log.to_str().unwrap(),
        "--snapshot-dir",
        snap.to_str().unwrap(),
        "--snapshot-every-txns",
        "10",
    ];
    let mut node = TestNode::start(&args).expect("node");
    let mut api = connect(&node).await;
    let session = api
        .create_session(pb::CreateSessionRequest { timeout_ms: 30_000 })
        .await
        .unwrap()
        .into_inner();
    for i in 0..25 {
        api.create(create(format!("/n{i}"), vec![i])).await.unwrap();
    }
    let mut seq = create("/seq-".into(), vec![]);
    seq.mode = pb::CreateMode::PersistentSequential as i32;
    api.create(seq).await.unwrap();
    api.set_data(pb::SetDataRequest {
        session_id: 0,
        path: "/n3".into(),
        data: b"changed".to_vec(),
        version: 0,
    })
    .await
    .unwrap();
    let before = api
        .exists(pb::ExistsRequest {
            session_id: 0,
            path: "/n3".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap();
    assert!(node.terminate(Duration::from_secs(10)).unwrap());
    assert!(
        std::fs::read_dir(&snap).unwrap().count() >= 1,
        "snapshots land in --snapshot-dir"
    );
    assert!(
        std::fs::read_dir(&log).unwrap().count() >= 1,
        "the log lands in --log-dir"
    );

    let node = TestNode::start(&args).expect("restart");
    let mut api = connect(&node).await;
    let after = api
        .exists(pb::ExistsRequest {
            session_id: 0,
            path: "/n3".into(),
            watch: false,
            linearizable: false,
        })
        .await
        .unwrap();
    assert_eq!(
        before.into_inner().stat,
        after.into_inner().stat,
        "Stat identical after restart"
    );
    assert_eq!(get(&mut api, "/n3").await, Some(b"changed".to_vec()));
    // The session survived too: it can still be used within its timeout.
    api.create(pb::CreateRequest {
        session_id: session.session_id,
        mode: pb::CreateMode::Ephemeral as i32,
        ..create("/e".into(), vec![])
    })
    .await
    .unwrap();
    // Sequence numbers continue from the recovered parent's cversion.
    let mut seq = create("/seq-".into(), vec![]);
    seq.mode = pb::CreateMode::PersistentSequential as i32;
    assert_eq!(
        api.create(seq).await.unwrap().into_inner().path,
        "/seq-0000000027",
        "26 children were created under / before the restart, /e after it"
    );
}

#[tokio::test]
async fn lowering_a_limit_keeps_what_was_accepted_under_the_old_one() {
    let temp = synod_tests::TempDir::new("limits").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let data_dir = dir.to_str().unwrap();
    let mut node = TestNode::start(&["--data-dir", data_dir]).expect("node");
    let mut api = connect(&node).await;
    api.create(create("/big".into(), vec![7; 2000]))
        .await
        .unwrap();
    assert!(node.terminate(Duration::from_secs(10)).unwrap());

    let node =
        TestNode::start(&["--data-dir", data_dir, "--max-data-bytes", "1000"]).expect("restart");
    let mut api = connect(&node).await;
    assert_eq!(
        get(&mut api, "/big").await,
        Some(vec![7; 2000]),
        "replayed under the old limit"
    );
    let refused = api
        .create(create("/big2".into(), vec![7; 2000]))
        .await
        .unwrap_err();
    let detail = pb::ErrorDetail::decode(refused.details()).unwrap();
    assert_eq!(
        detail.code,
        pb::ErrorCode::TooLarge as i32,
        "the new limit applies to new writes"
    );
    drop(api);
    drop(node);

    // And once more: the lowered limit is now in the log, so a third start
    // with the default flags neither loses /big nor accepts /big2 after the fact.
    let node = TestNode::start(&["--data-dir", data_dir]).expect("third start");
    let mut api = connect(&node).await;
    assert_eq!(get(&mut api, "/big").await, Some(vec![7; 2000]));
    assert_eq!(get(&mut api, "/big2").await, None);
}

#[tokio::test]
async fn snapshots_are_also_taken_by_logged_bytes() {
    let temp = synod_tests::TempDir::new("bytes").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let data_dir = dir.to_str().unwrap();
    // Never by count here; 64 KiB of log is enough.
    let args = [
        "--data-dir",
        data_dir,
        "--snapshot-every-txns",
        "1000000",
        "--snapshot-every-bytes",
        "65536",
    ];
    let node = TestNode::start(&args).expect("node");
    let mut api = connect(&node).await;
    for i in 0..40 {
        api.create(create(format!("/v{i}"), vec![1; 4096]))
            .await
            .unwrap();
    }
    let mut snapshots = 0;
    for _ in 0..100 {
        snapshots = std::fs::read_dir(dir.join("snapshot"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".snap")
            })
            .count();
        if snapshots > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshots >= 1, "160 KiB logged gave no snapshot");
}

#[tokio::test]
async fn a_second_process_cannot_share_the_data_directory() {
    let temp = synod_tests::TempDir::new("lock").expect("temp dir");
    let dir = temp.path().to_path_buf();
    let _first = TestNode::start(&["--data-dir", dir.to_str().unwrap()]).expect("node");
    let bin = synod_tests::binary("synod").unwrap();
    let addr = synod_tests::free_addr().unwrap().to_string();
    let http = synod_tests::free_addr().unwrap().to_string();
    let mut second = std::process::Command::new(bin)
        .args([
            "serve",
            "--client-addr",
            &addr,
            "--http-addr",
            &http,
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must give up by itself; if it started serving, stop it and fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second process on the same data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = second.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LOCK") || stderr.contains("lock"),
        "clear message: {stderr}"
    );
}

/// A follower that was down catches up from values the leader keeps only
/// in its write-ahead log: with `--log-cache-entries 0` the leader holds no
/// committed value in memory, and with snapshots far off it has no
/// snapshot to send instead, so every value the follower missed is read
/// back from the leader's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_from_the_leaders_log() {
    let root = synod_tests::TempDir::new("logged").expect("temp dir");
    let mut ensemble = tokio::task::block_in_place(|| {
        synod_tests::Ensemble::start(
            3,
            &[
                "--cluster",
                "logged",
                "--log-cache-entries",
                "0",
                "--snapshot-every-txns",
                "1000000",
            ],
            Some(root.path()),
        )
    })
    .expect("ensemble");
    ensemble
        .wait_ready(Duration::from_secs(30))
        .expect("ensemble ready");
    let leader = ensemble.leader(Duration::from_secs(30)).expect("a leader");
    let follower = ensemble
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    tokio::task::block_in_place(|| ensemble.kill(follower)).expect("kill the follower");

    let mut api = CoordinationClient::connect(format!("http://{}", ensemble.endpoint(leader)))
        .await
        .expect("connect");
    for i in 0..300 {
        api.create(create(format!("/n{i}"), vec![i as u8; 50]))
            .await
            .expect("create");
    }
    tokio::task::block_in_place(|| ensemble.restart(follower)).expect("restart the follower");
    let mut at_follower =
        CoordinationClient::connect(format!("http://{}", ensemble.endpoint(follower)))
            .await
            .expect("connect to the follower");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Not serving yet, or not there yet: both mean wait.
        let caught_up = at_follower
            .get_data(pb::GetDataRequest {
                session_id: 0,
                path: "/n299".into(),
                watch: false,
                linearizable: false,
            })
            .await
            .is_ok();
        if caught_up {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in [0usize, 150, 299] {
        assert_eq!(
            get(&mut at_follower, &format!("/n{i}")).await,
            Some(vec![i as u8; 50])
        );
    }
    let reads =
        tokio::task::block_in_place(|| ensemble.node(leader).metric("synod_log_reads_total"))
            .expect("metrics");
    assert!(
        reads.is_some_and(|n| n >= 1.0),
        "the leader read no catch-up from its log: {reads:?}"
    );
    let snapshots = tokio::task::block_in_place(|| ensemble.node(leader).metric("synod_snapshots"))
        .expect("metrics");
    assert!(
        snapshots.is_none_or(|n| n == 0.0),
        "the leader took a snapshot: {snapshots:?}"
    );
}
