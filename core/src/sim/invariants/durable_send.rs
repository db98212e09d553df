//! Persist before you promise: a `Promise` or `Accepted` leaves a node only
//! once its disk holds the promise and the accepted entries it vouches for,
//! so a crash right after the send cannot take them back. Checked at the
//! moment the message leaves: a random schedule almost never builds the
//! crash-restart-accept chain that would turn an early promise into a lost
//! value, so waiting for the consequence missed the bug in 3,000 seeds.

use crate::paxos::{Durable, Message, Slot};

/// Node `node` with durable state `disk` and commit index `commit` sends
/// `msg`.
pub(in crate::sim) fn on_send<T: Clone>(
    node: u64,
    disk: &Durable<T>,
    commit: Slot,
    msg: &Message<T>,
) -> Option<String> {
    let missing = match msg {
        Message::Promise { ballot, .. } if disk.promised < *ballot => Some(format!(
            "a promise of {ballot:?} (disk holds {:?})",
            disk.promised
        )),
        Message::Accepted {
            ballot,
            first,
            last,
            ..
        } => {
            // Slots at or below the commit index hold chosen values, which
            // the acceptor does not write again.
            let covered = disk.snapshot.as_ref().map_or(0, |s| s.index).max(commit);
            (*first..=*last)
                .filter(|s| *s > covered)
                .find(|s| {
                    disk.entries
                        .binary_search_by_key(s, |(slot, _)| *slot)
                        // A later write may have replaced the entry in a
                        // higher ballot since: the vote was cast.
                        .map_or(true, |k| disk.entries[k].1.ballot < *ballot)
                })
                .map(|s| format!("an acceptance of slot {s} in {ballot:?}"))
        }
        _ => None,
    }?;
    Some(format!("node {node} sent {missing} before it was durable"))
}
