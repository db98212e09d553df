//! Snapshots: an installed snapshot holds exactly the values chosen up to
//! its index.

use crate::paxos::{Slot, Value};

/// Node `node` installs a snapshot at `index` holding `values`.
pub(in crate::sim) fn on_install(
    chosen: &[Value<u64>],
    node: u64,
    index: Slot,
    values: &[Value<u64>],
) -> Vec<String> {
    let mut violations = Vec::new();
    if values.len() as Slot != index {
        violations.push(format!("snapshot at {index} holds {} slots", values.len()));
    }
    for (k, v) in values.iter().enumerate() {
        if chosen.get(k).is_some_and(|c| c != v) {
            violations.push(format!(
                "node {node} installed a snapshot with {v:?} at slot {}",
                k + 1
            ));
        }
    }
    violations
}
