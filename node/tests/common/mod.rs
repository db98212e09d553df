//! What the node's integration tests over a fault-injecting filesystem
//! share: a driver started on it, and the wait until it serves.

use std::sync::Arc;

use synod_node::NodeConfig;
use synod_node::driver::{self, DriverHandle};
use synod_node::storage::durable::DurableLog;
use synod_node::storage::{FaultFs, StorageConfig};

/// A single-node driver recovered from `storage` on `fs`, with `config`.
pub fn spawn_on(fs: &Arc<FaultFs>, config: &NodeConfig, storage: StorageConfig) -> DriverHandle {
    let (log, recovered) =
        DurableLog::recover_with(storage, config.state_config(), fs.clone()).expect("recover");
    let ensemble = config.ensemble().expect("ensemble");
    driver::spawn(
        config,
        &ensemble,
        recovered,
        Some(log),
        synod_node::storage::identity::IdentityFile::in_memory("synod", 1),
        Default::default(),
        None,
    )
    .expect("driver")
    .0
}

/// Waits (bounded) until `driver` serves clients: a restarted node
/// re-commits the tail of its log before it answers them.
pub async fn serving(driver: DriverHandle) -> DriverHandle {
    for _ in 0..200 {
        if driver
            .call(|state| state.readiness())
            .await
            .expect("driver alive")
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the node did not become ready");
}
