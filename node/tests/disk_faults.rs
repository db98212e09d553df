//! The durable driver over a fault-injecting filesystem: while the disk is
//! full new writes are refused with a clear error and the node stays up and
//! serves reads; the write caught by the full disk is appended again and
//! completes once space returns; after a crash the recovered state holds
//! every acknowledged write.

use std::path::PathBuf;
use std::sync::Arc;

use synod_core::acl::Identity;
use synod_core::txn::{CreateMode, OpOutcome, WriteOp};
use synod_core::{Error, ErrorCode};
use synod_node::NodeConfig;
use synod_node::driver::DriverHandle;
use synod_node::storage::{FaultFs, StorageConfig};

mod common;

fn storage_config() -> StorageConfig {
    let mut config = StorageConfig::new(&PathBuf::from("/data"));
    config.segment_bytes = 64 * 1024;
    // Without preallocation every append needs new space, so a full disk
    // shows on the next write rather than at the next segment.
    config.preallocate = false;
    config
}

/// Starts a driver over `fs` and waits until it serves.
async fn start(fs: &Arc<FaultFs>) -> DriverHandle {
    common::serving(spawn(fs)).await
}

fn spawn(fs: &Arc<FaultFs>) -> DriverHandle {
    let mut config = NodeConfig::parse_defaults();
    // A write stuck behind a dead disk is answered within a second.
    config.request_timeout_ms = 1_000;
    common::spawn_on(fs, &config, storage_config())
}

async fn create(driver: &DriverHandle, path: &str) -> Result<OpOutcome, Error> {
    let op = WriteOp::Create {
        path: path.into(),
        data: Some(vec![7; 100]),
        acl: synod_core::acl::Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    let answer = driver
        .call(move |state| state.write(0, Identity::anonymous(), op))
        .await
        .expect("driver alive")?;
    answer.await.expect("answered").map(|(outcome, _)| outcome)
}

async fn exists(driver: &DriverHandle, path: &str) -> bool {
    let path = path.to_owned();
    driver
        .call(move |state| {
            state
                .machine()
                .tree()
                .exists(&path)
                .expect("valid path")
                .is_some()
        })
        .await
        .expect("driver alive")
}

#[tokio::test]
async fn full_disk_is_an_error_not_a_crash_and_heals() {
    let fs = Arc::new(FaultFs::new());
    let driver = start(&fs).await;
    create(&driver, "/before").await.expect("write with space");

    fs.set_capacity(Some(fs.used()));
    let caught = {
        let driver = driver.clone();
        tokio::spawn(async move { create(&driver, "/while-full").await })
    };
    // Once the log has failed, new writes are refused at once and say why.
    let mut probe = 0;
    let refused = loop {
        probe += 1;
        assert!(
            probe < 200,
            "writes were never refused while the disk was full"
        );
        match tokio::time::timeout(
            std::time::Duration::from_millis(50),
            create(&driver, &format!("/probe{probe}")),
        )
        .await
        {
            Ok(Err(error)) => break error,
            Ok(Ok(_)) => panic!("a write succeeded on a full disk"),
            Err(_) => continue,
        }
    };
    assert_eq!(refused.code(), ErrorCode::Throttled, "{refused}");
    assert!(refused.to_string().contains("write-ahead log"), "{refused}");
    assert!(
        exists(&driver, "/before").await,
        "the node still serves reads"
    );
    assert!(
        !exists(&driver, "/while-full").await,
        "a write is not applied before it is durable"
    );

    fs.set_capacity(None);
    // The caught write was appended again; it completes unless its wait
    // outlasted the request timeout, which reports an unknown outcome.
    match caught.await.expect("task") {
        Ok(_) => assert!(exists(&driver, "/while-full").await),
        Err(error) => assert_eq!(error.code(), ErrorCode::ConnectionLoss, "{error}"),
    }
    let mut attempts = 0;
    while let Err(error) = create(&driver, "/after").await {
        attempts += 1;
        assert!(attempts < 50, "writes did not resume: {error}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    fs.crash();
    drop(driver);
    let recovered = start(&fs).await;
    assert!(exists(&recovered, "/before").await);
    assert!(exists(&recovered, "/after").await);
}

#[tokio::test]
async fn acknowledged_writes_survive_power_cuts_during_writes() {
    let fs = Arc::new(FaultFs::new());
    let mut acknowledged: Vec<String> = Vec::new();
    let mut refused = 0;
    for round in 0..6u32 {
        let driver = start(&fs).await;
        for path in &acknowledged {
            assert!(
                exists(&driver, path).await,
                "{path} lost after power cut {round}"
            );
        }
        // The power goes out after a few more fsyncs, in the middle of the
        // concurrent writes below; every later operation fails, as if the
        // process had died with the machine.
        fs.cut_power_after(round % 3 + 3);
        for wave in 0..8 {
            let writes: Vec<_> = (0..10)
                .map(|i| {
                    let driver = driver.clone();
                    let path = format!("/r{round}-{wave}-{i}");
                    tokio::spawn(async move { (create(&driver, &path).await, path) })
                })
                .collect();
            for w in writes {
                match w.await.expect("task") {
                    (Ok(_), path) => acknowledged.push(path),
                    (Err(_), _) => refused += 1,
                }
            }
        }
        assert!(fs.is_dead(), "the power cut happened during round {round}");
        drop(driver);
        fs.crash();
    }
    let driver = start(&fs).await;
    for path in &acknowledged {
        assert!(exists(&driver, path).await, "{path} lost");
    }
    assert!(
        !acknowledged.is_empty() && refused > 0,
        "{} acknowledged, {refused} refused",
        acknowledged.len()
    );
}

#[tokio::test]
async fn a_read_waits_for_its_own_sessions_earlier_write() {
    let fs = Arc::new(FaultFs::new());
    let driver = start(&fs).await;
    let session = driver
        .call(|state| state.create_session(10_000))
        .await
        .expect("driver alive")
        .await
        .expect("answered")
        .expect("session")
        .0;
    let op = WriteOp::Create {
        path: "/fifo".into(),
        data: Some(vec![]),
        acl: synod_core::acl::Acl::open(),
        mode: CreateMode::Ephemeral,
        ttl_ms: 0,
    };
    // Both in one driver job: the write is not even in the log yet when
    // the read arrives, as with a client that pipelines the two.
    let (write, mine, other) = driver
        .call(move |state| {
            let write = state.write(session, Identity::anonymous(), op);
            let read = |state: &mut synod_node::driver::NodeState| {
                state
                    .machine()
                    .tree()
                    .exists("/fifo")
                    .map(|stat| stat.is_some())
            };
            let mine = state.in_order(session, read);
            let other = state.in_order(0, read);
            (write, mine, other)
        })
        .await
        .expect("driver alive");
    assert_eq!(
        other.await.expect("answered"),
        Ok(false),
        "another session's read does not wait"
    );
    assert_eq!(
        mine.await.expect("answered"),
        Ok(true),
        "the session reads its own write"
    );
    write
        .expect("submitted")
        .await
        .expect("answered")
        .expect("created");
}
