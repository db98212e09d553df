//! State order at a node: `log start - 1 <= commit <= last slot held`, and
//! the state machine has applied no more than is committed. A commit index
//! past the log means slots committed without their values (the simulator
//! once found a leader that did that after a peer's snapshot moved its
//! commit index).

use crate::paxos::{Replica, Slot};

/// Node `node`'s replica at the end of a turn, with `applied` slots applied.
pub(in crate::sim) fn check<T: Clone>(
    node: u64,
    replica: &Replica<T>,
    applied: Slot,
) -> Option<String> {
    let (start, commit, last) = (
        replica.log_start(),
        replica.commit_index(),
        replica.log_last(),
    );
    if commit + 1 < start || commit > last || applied > commit {
        return Some(format!(
            "node {node}: log start {start}, commit {commit}, last held {last}, applied {applied} \
             are out of order"
        ));
    }
    None
}
