//! Replicas agree on the state, not only on the log: after applying a
//! slot, every node's state machine (tree with every `Stat`, ACLs and data;
//! session table) is the one the first node to apply that slot had. The
//! first applier records a digest of its state after each slot; every
//! other node compares its digest at the end of each batch it applies, and
//! at the end of the run. Catches a state machine that is not
//! deterministic, a txn applied twice or skipped around a restart, and a
//! snapshot restored wrong.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::paxos::Slot;
use crate::state::StateMachine;

/// A digest of the whole state; the default hasher's keys are fixed, so it
/// is the same on every node and in every run.
pub(in crate::sim) fn digest(machine: &StateMachine) -> u64 {
    let mut h = DefaultHasher::new();
    machine.applied().hash(&mut h);
    for (id, info) in machine.sessions().iter() {
        (id, info.timeout_ms).hash(&mut h);
    }
    for node in machine.tree().dump() {
        (&node.path, &node.data, &node.acl, node.stat).hash(&mut h);
    }
    h.finish()
}

/// Node `node` has applied up to `slot` with state digest `digest`.
pub(in crate::sim) fn on_applied(
    digests: &[u64],
    node: u64,
    slot: Slot,
    digest: u64,
) -> Option<String> {
    let expected = digests.get(slot.checked_sub(1)? as usize)?;
    (digest != *expected)
        .then(|| format!("node {node}'s state after slot {slot} differs from the first applier's"))
}
