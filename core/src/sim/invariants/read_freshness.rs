//! Read freshness: a linearizable read (lease or read index) is answered by
//! the node it was asked at, at an index at or above every slot applied
//! anywhere when it was asked. A leader paused past its lease that serves a
//! read on waking shows here.

use crate::paxos::Slot;

/// Read `id`, asked at node `asked_at` when slot `floor` was the highest
/// applied anywhere, is answered by node `node` at `index`.
pub(in crate::sim) fn on_answer(
    id: u64,
    asked_at: usize,
    floor: Slot,
    node: usize,
    index: Slot,
) -> Option<String> {
    if node != asked_at {
        return Some(format!("read {id} answered by the wrong node"));
    }
    (index < floor).then(|| {
        format!(
            "stale read {id} at node {}: index {index} but slot {floor} was already applied \
             when the read started",
            node + 1
        )
    })
}
