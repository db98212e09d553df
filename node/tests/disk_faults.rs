//! The durable driver over a fault-injecting filesystem: a full disk is
//! answered as an error to the writer while the node stays up and serves,
//! writing works again once space returns, and after a crash the recovered
//! state holds exactly the acknowledged writes.

use std::path::PathBuf;
use std::sync::Arc;

use synod_core::acl::Identity;
use synod_core::txn::{CreateMode, OpOutcome, WriteOp};
use synod_core::{Error, ErrorCode};
use synod_node::NodeConfig;
use synod_node::driver::{self, DriverHandle};
use synod_node::durable::DurableLog;
use synod_node::storage::{FaultFs, StorageConfig};

fn storage_config() -> StorageConfig {
    let mut config = StorageConfig::new(&PathBuf::from("/data"));
    config.segment_bytes = 64 * 1024;
    // Without preallocation every append needs new space, so a full disk
    // shows on the next write rather than at the next segment.
    config.preallocate = false;
    config
}

fn start(fs: &Arc<FaultFs>) -> DriverHandle {
    let config = NodeConfig::parse_defaults();
    let (log, machine) =
        DurableLog::recover_with(storage_config(), config.state_config(), fs.clone())
            .expect("recover");
    driver::spawn(&config, machine, Some(log), Default::default()).0
}

async fn create(driver: &DriverHandle, path: &str) -> Result<OpOutcome, Error> {
    let op = WriteOp::Create {
        path: path.into(),
        data: vec![7; 100],
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
    let driver = start(&fs);
    create(&driver, "/before").await.expect("write with space");

    fs.set_capacity(Some(fs.used()));
    let refused = create(&driver, "/while-full")
        .await
        .expect_err("disk is full");
    assert_eq!(refused.code(), ErrorCode::SystemError, "{refused}");
    assert!(
        exists(&driver, "/before").await,
        "the node still serves reads"
    );
    assert!(
        !exists(&driver, "/while-full").await,
        "a refused write is not applied"
    );

    fs.set_capacity(None);
    create(&driver, "/after")
        .await
        .expect("write once space returns");

    fs.crash();
    drop(driver);
    let recovered = start(&fs);
    assert!(exists(&recovered, "/before").await);
    assert!(exists(&recovered, "/after").await);
    assert!(!exists(&recovered, "/while-full").await);
}

#[tokio::test]
async fn acknowledged_writes_survive_power_cuts_during_writes() {
    let fs = Arc::new(FaultFs::new());
    let mut acknowledged: Vec<String> = Vec::new();
    let mut refused = 0;
    for round in 0..6u32 {
        let driver = start(&fs);
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
        for wave in 0..4 {
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
    let driver = start(&fs);
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
    let driver = start(&fs);
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
        data: vec![],
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
