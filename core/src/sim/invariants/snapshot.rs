//! Snapshots: a snapshot a node encodes (a slice at a time, while txns
//! keep applying) or installs from the leader holds exactly the state the
//! log reaches at its slot: its decoded state has the digest the first
//! node to apply that slot recorded ([`super::same_state`]).

use crate::paxos::Slot;
use crate::state::{StateConfig, StateMachine};

/// Node `node` encoded or installed (`what`) the snapshot `bytes` at
/// `slot`; `digests[s - 1]` is the state digest after slot `s`.
pub(in crate::sim) fn on_snapshot(
    digests: &[u64],
    node: u64,
    what: &str,
    slot: Slot,
    config: &StateConfig,
    bytes: &[u8],
) -> Option<String> {
    let machine = match StateMachine::decode_snapshot(config.clone(), bytes) {
        Ok(machine) => machine,
        Err(error) => {
            return Some(format!(
                "node {node} {what} a snapshot at {slot} that does not decode: {error}"
            ));
        }
    };
    if machine.applied() != i64::try_from(slot).unwrap_or(i64::MAX) {
        return Some(format!(
            "node {node} {what} a snapshot at {slot} whose state is at {}",
            machine.applied()
        ));
    }
    let expected = digests.get(slot.checked_sub(1)? as usize)?;
    (super::same_state::digest(&machine) != *expected).then(|| {
        format!("node {node} {what} a snapshot at {slot} whose state differs from the log's")
    })
}
