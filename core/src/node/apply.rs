//! How a committed log value reaches the state machine: a client's
//! proposal is decoded and its txn applied at the slot's zxid; a no-op or
//! a membership change applies as a no-op, so that the applied zxid always
//! equals the slot; a value that does not decode (a bug, or a log written
//! by a newer version) applies as a no-op too and is reported, so that
//! every replica still reaches the same state.
//!
//! The node's driver (when it applies committed slots and when it replays
//! its log at recovery) and the simulator both apply values through
//! [`apply_value`].

use crate::codec::{CodecError, Proposal};
use crate::paxos::{NodeId, Slot, Value};
use crate::state::{Applied, StateMachine};
use crate::txn::Txn;

/// What applying one committed value did.
#[derive(Debug)]
pub enum AppliedValue {
    /// A client's (or the node's own) txn: the node `origin` answers its
    /// `request` with `applied`.
    Txn {
        origin: NodeId,
        request: u64,
        applied: Applied,
    },
    /// A no-op or a membership change.
    Noop,
    /// The value did not decode; it was applied as a no-op.
    Undecodable(CodecError),
}

/// Applies the committed `value` at `slot` to `machine`.
pub fn apply_value(machine: &mut StateMachine, slot: Slot, value: &Value<Vec<u8>>) -> AppliedValue {
    let zxid = i64::try_from(slot).unwrap_or(i64::MAX);
    match value {
        Value::Data(bytes) => match Proposal::decode(bytes) {
            Ok(p) => AppliedValue::Txn {
                origin: p.origin,
                request: p.request,
                applied: machine.apply(zxid, p.time, &p.txn),
            },
            Err(error) => {
                machine.apply(zxid, 0, &Txn::Noop);
                AppliedValue::Undecodable(error)
            }
        },
        Value::Noop | Value::Config(_) => {
            machine.apply(zxid, 0, &Txn::Noop);
            AppliedValue::Noop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::Membership;
    use crate::state::StateConfig;
    use crate::txn::TxnOutcome;

    #[test]
    fn every_value_advances_the_applied_zxid_to_its_slot() {
        let mut m = StateMachine::new(StateConfig::default());
        assert!(matches!(
            apply_value(&mut m, 1, &Value::Noop),
            AppliedValue::Noop
        ));
        let config = Value::Config(Box::new(Membership::new(vec![1], vec![])));
        assert!(matches!(
            apply_value(&mut m, 2, &config),
            AppliedValue::Noop
        ));
        let garbage = Value::Data(vec![1, 2, 3]);
        assert!(matches!(
            apply_value(&mut m, 3, &garbage),
            AppliedValue::Undecodable(_)
        ));
        let noop = Proposal {
            origin: 2,
            request: 9,
            time: 5,
            txn: Txn::Noop,
        };
        match apply_value(&mut m, 4, &Value::Data(noop.encode())) {
            AppliedValue::Txn {
                origin,
                request,
                applied,
            } => {
                assert_eq!((origin, request), (2, 9));
                assert_eq!((applied.zxid, applied.outcome), (4, TxnOutcome::Noop));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.applied(), 4);
    }
}
