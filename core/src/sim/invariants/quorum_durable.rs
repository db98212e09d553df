//! Committed means durable on a majority: when a slot is applied for the
//! first time, a majority of the voters that govern it (the membership in
//! force before the slot) hold its value on disk, or a snapshot covering
//! it. A leader that counted its own vote before its write was durable, or
//! an acceptor that acknowledged early, shows here at once.

use crate::paxos::{Durable, Membership, NodeId, Slot, Value};

/// `slot` was first applied with `value`; `governing` is the membership in
/// force for it; `disks` are every node's durable state by id.
pub(in crate::sim) fn on_first_apply<T: PartialEq>(
    slot: Slot,
    value: &Value<T>,
    governing: &Membership,
    disks: &[(NodeId, &Durable<T>)],
) -> Option<String> {
    let holding = governing
        .voters
        .iter()
        .filter(|v| {
            disks.iter().any(|(id, disk)| {
                *id == **v
                    && (disk.snapshot.as_ref().is_some_and(|s| s.index >= slot)
                        || disk
                            .entries
                            .binary_search_by_key(&slot, |(s, _)| *s)
                            .is_ok_and(|k| disk.entries[k].1.value == *value))
            })
        })
        .count();
    (holding < governing.quorum()).then(|| {
        format!(
            "slot {slot} was applied while only {holding} of voters {:?} held it on disk",
            governing.voters
        )
    })
}
