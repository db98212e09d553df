//! Prefix: a node applies the log in order, each slot once, with no gaps
//! (from its snapshot's index after a restart).

use crate::paxos::Slot;

/// Node `node`, which has applied up to `applied`, applies from `first`.
pub(in crate::sim) fn on_apply(node: u64, applied: Slot, first: Slot) -> Option<String> {
    (first != applied + 1)
        .then(|| format!("node {node} applied slot {first} after slot {applied}: not a prefix"))
}
