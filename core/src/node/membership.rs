//! What an operator's membership call means against the committed
//! membership: a change to propose, nothing to do because the member is
//! already where it was asked to be, or a refusal. "Already done" is not
//! an error, so that an operator that crashed between two steps (or
//! retries a call that timed out) can send the same call again and learn
//! that it took effect, while a call that cannot be done (promoting a node
//! that is not a member) stays an error.

use crate::paxos::{Membership, NodeId, Slot};

/// A membership change asked for through the admin API: one member moves
/// one step (absent → observer ↔ voter, or out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    AddObserver,
    PromoteVoter,
    DemoteVoter,
    Remove,
}

/// What to do about a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipPlan {
    /// Propose this membership (the committed one with the change made).
    Propose(Membership),
    /// The committed membership already has the member where the change
    /// would put it.
    AlreadyDone,
    /// The change in flight at this slot puts the member where the call
    /// would: a retry of it, which waits for that change.
    InFlight(Slot, Membership),
}

/// Why a change cannot be made from the committed membership.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipRefusal {
    #[error("node {0} is already a voter; demote it to make it an observer")]
    AlreadyAVoter(NodeId),
    #[error("node {0} is not a member; add it as an observer first")]
    NotAMember(NodeId),
    #[error("node id 0 is reserved")]
    ReservedId,
    #[error("another membership change is still being committed; retry once it is")]
    OtherChangeInFlight,
}

/// Decides `change` of `node` against the committed membership `current`
/// and the change in flight, if any (`pending`: its slot and membership).
/// While a change is in flight the committed membership is about to be
/// replaced, so nothing is judged against it: a retry of that very change
/// waits for it, any other call waits its turn. Whether the node can be
/// reached and whether it has caught up are the driver's and the replica's
/// to check.
pub fn plan(
    current: &Membership,
    pending: Option<(Slot, &Membership)>,
    change: MembershipChange,
    node: NodeId,
) -> Result<MembershipPlan, MembershipRefusal> {
    if node == 0 {
        return Err(MembershipRefusal::ReservedId);
    }
    if let Some((slot, pending)) = pending {
        if has_taken_effect(pending, change, node) {
            return Ok(MembershipPlan::InFlight(slot, pending.clone()));
        }
        return Err(MembershipRefusal::OtherChangeInFlight);
    }
    let voter = current.voters.contains(&node);
    let observer = current.observers.contains(&node);
    let mut next = current.clone();
    match change {
        MembershipChange::AddObserver => {
            if observer {
                return Ok(MembershipPlan::AlreadyDone);
            }
            if voter {
                return Err(MembershipRefusal::AlreadyAVoter(node));
            }
            next.observers.push(node);
        }
        MembershipChange::PromoteVoter => {
            if voter {
                return Ok(MembershipPlan::AlreadyDone);
            }
            if !observer {
                return Err(MembershipRefusal::NotAMember(node));
            }
            next.observers.retain(|o| *o != node);
            next.voters.push(node);
        }
        MembershipChange::DemoteVoter => {
            if observer {
                return Ok(MembershipPlan::AlreadyDone);
            }
            if !voter {
                return Err(MembershipRefusal::NotAMember(node));
            }
            next.voters.retain(|v| *v != node);
            next.observers.push(node);
        }
        MembershipChange::Remove => {
            if !voter && !observer {
                return Ok(MembershipPlan::AlreadyDone);
            }
            next.voters.retain(|v| *v != node);
            next.observers.retain(|o| *o != node);
        }
    }
    Ok(MembershipPlan::Propose(next))
}

/// Whether `membership` has `node` where `change` puts it: how a waiting
/// caller tells that the membership committed at its slot is its own
/// change and not another leader's value that took the slot.
pub fn has_taken_effect(membership: &Membership, change: MembershipChange, node: NodeId) -> bool {
    match change {
        MembershipChange::AddObserver | MembershipChange::DemoteVoter => {
            membership.observers.contains(&node)
        }
        MembershipChange::PromoteVoter => membership.voters.contains(&node),
        MembershipChange::Remove => !membership.contains(node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembershipChange::*;

    fn three_and_observer() -> Membership {
        Membership::new(vec![1, 2, 3], vec![4])
    }

    #[test]
    fn each_change_moves_one_member_one_step() {
        let m = three_and_observer();
        assert_eq!(
            plan(&m, None, AddObserver, 5),
            Ok(MembershipPlan::Propose(Membership::new(
                vec![1, 2, 3],
                vec![4, 5]
            )))
        );
        assert_eq!(
            plan(&m, None, PromoteVoter, 4),
            Ok(MembershipPlan::Propose(Membership::new(
                vec![1, 2, 3, 4],
                vec![]
            )))
        );
        assert_eq!(
            plan(&m, None, DemoteVoter, 2),
            Ok(MembershipPlan::Propose(Membership::new(
                vec![1, 3],
                vec![4, 2]
            )))
        );
        assert_eq!(
            plan(&m, None, Remove, 4),
            Ok(MembershipPlan::Propose(Membership::new(
                vec![1, 2, 3],
                vec![]
            )))
        );
        assert_eq!(
            plan(&m, None, Remove, 3),
            Ok(MembershipPlan::Propose(Membership::new(
                vec![1, 2],
                vec![4]
            )))
        );
    }

    #[test]
    fn a_member_already_in_place_is_already_done() {
        let m = three_and_observer();
        assert_eq!(
            plan(&m, None, AddObserver, 4),
            Ok(MembershipPlan::AlreadyDone)
        );
        assert_eq!(
            plan(&m, None, PromoteVoter, 1),
            Ok(MembershipPlan::AlreadyDone)
        );
        assert_eq!(
            plan(&m, None, DemoteVoter, 4),
            Ok(MembershipPlan::AlreadyDone)
        );
        assert_eq!(plan(&m, None, Remove, 9), Ok(MembershipPlan::AlreadyDone));
    }

    #[test]
    fn impossible_changes_stay_errors() {
        let m = three_and_observer();
        assert_eq!(
            plan(&m, None, AddObserver, 2),
            Err(MembershipRefusal::AlreadyAVoter(2))
        );
        assert_eq!(
            plan(&m, None, PromoteVoter, 9),
            Err(MembershipRefusal::NotAMember(9))
        );
        assert_eq!(
            plan(&m, None, DemoteVoter, 9),
            Err(MembershipRefusal::NotAMember(9))
        );
        assert_eq!(
            plan(&m, None, Remove, 0),
            Err(MembershipRefusal::ReservedId)
        );
    }

    #[test]
    fn while_a_change_is_in_flight_only_its_retry_is_taken() {
        let m = three_and_observer();
        let demoting = Membership::new(vec![1, 3], vec![4, 2]);
        let pending = Some((7, &demoting));
        assert_eq!(
            plan(&m, pending, DemoteVoter, 2),
            Ok(MembershipPlan::InFlight(7, demoting.clone())),
            "the retry waits for the change in flight"
        );
        // Still a voter in the committed membership, but not for long:
        // "already done" would be wrong.
        assert_eq!(
            plan(&m, pending, PromoteVoter, 2),
            Err(MembershipRefusal::OtherChangeInFlight)
        );
        assert_eq!(
            plan(&m, pending, AddObserver, 5),
            Err(MembershipRefusal::OtherChangeInFlight)
        );
    }

    #[test]
    fn a_planned_change_has_taken_effect_in_what_it_proposes() {
        let m = three_and_observer();
        for change in [AddObserver, PromoteVoter, DemoteVoter, Remove] {
            for node in 1..=5 {
                match plan(&m, None, change, node) {
                    Ok(MembershipPlan::Propose(next)) => {
                        assert!(has_taken_effect(&next, change, node), "{change:?} {node}");
                        assert!(!has_taken_effect(&m, change, node), "{change:?} {node}");
                    }
                    Ok(MembershipPlan::AlreadyDone) => {
                        assert!(has_taken_effect(&m, change, node), "{change:?} {node}");
                    }
                    Ok(MembershipPlan::InFlight(..)) => panic!("nothing is in flight"),
                    Err(_) => assert!(!has_taken_effect(&m, change, node), "{change:?} {node}"),
                }
            }
        }
    }
}
