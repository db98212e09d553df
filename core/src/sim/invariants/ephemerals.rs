//! Ephemerals end with their session: once a node has applied the close
//! (by the client, or the leader's expiry) of a session, its tree holds no
//! znode owned by that session; and at the end of the run every ephemeral
//! on every node belongs to a session that is still open there. Checked on
//! the tree's nodes themselves (`ephemeralOwner`), not on the tree's own
//! index of ephemerals, which a bug could keep wrong in the same way.

use crate::SessionId;
use crate::state::StateMachine;

/// Whether `owner` (a `Stat.ephemeralOwner`) names a session: session ids
/// are positive zxids; containers and TTL nodes have negative marks.
fn is_session(owner: i64) -> bool {
    owner > 0
}

/// Node `node` applied the close of `session`.
pub(in crate::sim) fn on_close(
    node: u64,
    session: SessionId,
    machine: &StateMachine,
) -> Option<String> {
    let left: Vec<String> = machine
        .tree()
        .dump()
        .into_iter()
        .filter(|n| n.stat.ephemeral_owner == session)
        .map(|n| n.path)
        .collect();
    (!left.is_empty())
        .then(|| format!("node {node} closed session {session} but kept its ephemerals {left:?}"))
}

/// At the end of the run: node `node`'s ephemerals all belong to open
/// sessions.
pub(in crate::sim) fn at_end(node: u64, machine: &StateMachine) -> Option<String> {
    let orphans: Vec<(String, i64)> = machine
        .tree()
        .dump()
        .into_iter()
        .filter(|n| {
            is_session(n.stat.ephemeral_owner)
                && !machine.sessions().contains(n.stat.ephemeral_owner)
        })
        .map(|n| (n.path, n.stat.ephemeral_owner))
        .collect();
    (!orphans.is_empty())
        .then(|| format!("node {node} holds ephemerals of closed sessions: {orphans:?}"))
}
