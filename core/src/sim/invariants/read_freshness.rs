//! Read freshness: a linearizable read (lease or read index, at the leader
//! or relayed by a follower) is answered by the node it was asked at, and
//! only once that node has applied every slot applied anywhere when the
//! read was asked. A leader paused past its lease that serves a read on
//! waking shows here, and so does a node that serves a read before it has
//! applied the read's index.

use crate::paxos::Slot;

/// Read `id`, asked at node `asked_at` when slot `floor` was the highest
/// applied anywhere, is answered by node `node`, which has applied up to
/// `index`.
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
