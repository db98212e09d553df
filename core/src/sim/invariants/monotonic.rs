//! Monotonic state: within one run of a node (between restarts) its
//! commit index never goes back, and across restarts its durable promise
//! never does (an acceptor that forgot a promise could help elect two
//! leaders for one ballot range).

use crate::paxos::{Ballot, Slot};

/// What a node showed last.
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::sim) struct Seen {
    pub commit: Slot,
    pub durable_promise: Ballot,
}

/// Node `node`'s commit index is `commit` at the end of a turn.
pub(in crate::sim) fn on_commit(seen: &mut Seen, node: u64, commit: Slot) -> Option<String> {
    let before = seen.commit;
    seen.commit = commit;
    (commit < before)
        .then(|| format!("node {node}'s commit index went back from {before} to {commit}"))
}

/// Node `node`'s disk holds promise `promised` after a durable write.
pub(in crate::sim) fn on_durable(seen: &mut Seen, node: u64, promised: Ballot) -> Option<String> {
    let before = seen.durable_promise;
    seen.durable_promise = promised;
    (promised < before)
        .then(|| format!("node {node}'s durable promise went back from {before:?} to {promised:?}"))
}
