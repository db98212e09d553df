//! Reaping removes only what qualifies: a `Reap` txn that deleted a znode
//! found, in the state just before it, a container that had no children
//! and had had one (`cversion > 0`), or a TTL node with no children whose
//! last modification (`mtime`) was more than its TTL before the txn's time.
//! Checked at every member that applies the txn, on the znode's `Stat`
//! itself rather than through the tree's index of containers and TTL
//! nodes or its `reap_candidates`, which a bug could keep wrong in the
//! same way; that every member reaps identically is the same-state check.

use crate::Millis;
use crate::codec::Proposal;
use crate::paxos::Value;
use crate::tree::{CONTAINER_OWNER, Stat, ttl_of};
use crate::txn::Txn;

/// The path and the time of a committed `Reap`, if `value` is one.
pub(in crate::sim) fn target(value: &Value<Vec<u8>>) -> Option<(String, Millis)> {
    let Value::Data(bytes) = value else {
        return None;
    };
    match Proposal::decode(bytes) {
        Ok(Proposal {
            txn: Txn::Reap { path },
            time,
            ..
        }) => Some((path, time)),
        _ => None,
    }
}

/// Node `node` applied the reap of `path` at `time`, which found the
/// znode as `before` and `deleted` it or not.
pub(in crate::sim) fn on_reap(
    node: u64,
    path: &str,
    time: Millis,
    before: Option<&Stat>,
    deleted: bool,
) -> Option<String> {
    if !deleted {
        return None;
    }
    let Some(stat) = before else {
        return Some(format!("node {node} reaped {path}, which did not exist"));
    };
    if stat.num_children != 0 {
        return Some(format!(
            "node {node} reaped {path} with {} children",
            stat.num_children
        ));
    }
    let owner = stat.ephemeral_owner;
    if owner == CONTAINER_OWNER {
        return (stat.cversion <= 0)
            .then(|| format!("node {node} reaped container {path}, which never had a child"));
    }
    match ttl_of(owner) {
        Some(ttl) if time.saturating_sub(stat.mtime) > ttl => None,
        Some(ttl) => Some(format!(
            "node {node} reaped TTL node {path} at {time}, modified at {} (TTL {ttl} ms)",
            stat.mtime
        )),
        None => Some(format!(
            "node {node} reaped {path}, neither a container nor a TTL node (owner {owner:#x})"
        )),
    }
}
