//! SIGTERM on the leader hands leadership to the most caught-up voter
//! before the process stops: the ensemble gets a new leader without any
//! member waiting out an election timeout (counted in the metrics), and no
//! acknowledged write is lost, while a client keeps writing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use synod_tests::Ensemble;
use zookeeper_client as zk;

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// A counter from node `id`'s metrics (0 when it is not exported).
fn metric(ensemble: &Ensemble, id: usize, name: &str) -> u64 {
    ensemble
        .node(id)
        .metric(name)
        .expect("metrics")
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_over_without_an_election_timeout() {
    let mut ensemble = blocking(|| Ensemble::start(3, &[], None)).expect("ensemble");
    blocking(|| ensemble.wait_ready(Duration::from_secs(30))).expect("ready");
    let leader = blocking(|| ensemble.leader(Duration::from_secs(10))).expect("a leader");
    let survivors: Vec<usize> = ensemble
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    let timeouts_before: u64 = survivors
        .iter()
        .map(|&id| metric(&ensemble, id, "synod_elections_on_timeout"))
        .sum();

    // A client writes through a survivor, all along.
    let hosts = survivors
        .iter()
        .map(|&id| ensemble.zookeeper_addr(id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&hosts)
        .await
        .expect("connects");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/w", b"", &open).await.expect("parent");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let client = client.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            for i in 0..400u32 {
                let path = format!("/w/{i}");
                if client.create(&path, b"x", &open).await.is_ok() {
                    acked.lock().expect("lock").push(path);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exited =
        blocking(|| ensemble.terminate(leader, Duration::from_secs(10))).expect("terminate");
    assert!(
        exited,
        "the leader stopped by itself within its grace period"
    );
    let new_leader = blocking(|| ensemble.leader_among(&survivors, Duration::from_secs(10)))
        .expect("new leader");
    writer.await.expect("writer");

    let timeouts_after: u64 = survivors
        .iter()
        .map(|&id| metric(&ensemble, id, "synod_elections_on_timeout"))
        .sum();
    assert_eq!(
        timeouts_after, timeouts_before,
        "no survivor waited out an election timeout"
    );
    assert_eq!(
        metric(&ensemble, new_leader, "synod_elections_on_transfer"),
        1,
        "the new leader was elected on the hand-off"
    );
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "the client kept writing: {}",
        acked.len()
    );
    client.sync("/w").await.expect("sync");
    for path in &acked {
        assert!(
            client.check_stat(path).await.expect("exists").is_some(),
            "acknowledged {path} was lost"
        );
    }
}
