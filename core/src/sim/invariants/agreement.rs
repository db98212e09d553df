//! Agreement: no two nodes ever apply different values in one slot.
//! `chosen` holds, per slot, the value applied there first (by anyone).

use crate::paxos::{Slot, Value};

/// Node `node` applies `value` at `slot`. Records the slot's value if it
/// is the first apply of the next slot; returns a violation if the slot's
/// value differs from the one applied before, or the slot skips ahead.
pub(in crate::sim) fn on_apply<T: PartialEq + std::fmt::Debug>(
    chosen: &mut Vec<Value<T>>,
    node: u64,
    slot: Slot,
    value: Value<T>,
) -> Result<bool, String> {
    let idx = (slot - 1) as usize;
    match idx.cmp(&chosen.len()) {
        std::cmp::Ordering::Less if chosen[idx] != value => Err(format!(
            "slot {slot}: node {node} applied {value:?} but {:?} was committed",
            chosen[idx]
        )),
        std::cmp::Ordering::Less => Ok(false),
        std::cmp::Ordering::Equal => {
            chosen.push(value);
            Ok(true)
        }
        std::cmp::Ordering::Greater => Err(format!("slot {slot} applied before slot {idx}")),
    }
}
