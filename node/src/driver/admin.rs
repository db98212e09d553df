//! What the Admin API asks of the driver: leadership transfer, membership
//! changes, a snapshot now, and the node's status.

use super::*;

/// A membership change asked for through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    AddObserver,
    PromoteVoter,
    DemoteVoter,
    Remove,
}

impl NodeState {
    /// At the leader: hands leadership to `to`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), PaxosError> {
        self.replica.transfer_leadership(to)
    }

    /// At the leader: proposes the membership with one member changed.
    /// Only nodes this node has an address for can take part.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
        node: NodeId,
    ) -> Result<(Slot, Membership), PaxosError> {
        let mut m = self.replica.membership().clone();
        let known = node == self.id || self.peers.as_ref().is_some_and(|p| p.knows(node));
        match change {
            MembershipChange::AddObserver => {
                if m.contains(node) {
                    return Err(PaxosError::InvalidConfig("already a member"));
                }
                if !known {
                    return Err(PaxosError::InvalidConfig(
                        "no peer address for that node (list it in --peers or --observers)",
                    ));
                }
                m.observers.push(node);
            }
            MembershipChange::PromoteVoter => {
                if !m.observers.contains(&node) {
                    return Err(PaxosError::InvalidConfig(
                        "only an observer can be promoted",
                    ));
                }
                m.observers.retain(|o| *o != node);
                m.voters.push(node);
            }
            MembershipChange::DemoteVoter => {
                if !m.voters.contains(&node) {
                    return Err(PaxosError::NotAVoter(node));
                }
                m.voters.retain(|v| *v != node);
                m.observers.push(node);
            }
            MembershipChange::Remove => {
                if !m.contains(node) {
                    return Err(PaxosError::InvalidConfig("not a member"));
                }
                m.voters.retain(|v| *v != node);
                m.observers.retain(|o| *o != node);
            }
        }
        let slot = self.replica.propose_membership(m.clone())?;
        Ok((slot, m))
    }

    /// Starts a snapshot now, unless one is running; returns the applied
    /// index it covers (or the running one's).
    pub fn take_snapshot(&mut self) -> Zxid {
        if let Some(running) = &self.snapshotting {
            return running.index;
        }
        if let Some(running) = self.snapshots.in_progress() {
            return i64::try_from(running.slot).unwrap_or(i64::MAX);
        }
        self.start_snapshot()
    }
}

/// A node's view of the ensemble.
#[derive(Debug, Clone)]
pub struct Status {
    pub node_id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub promised: Ballot,
    pub commit_index: Slot,
    pub applied_index: Slot,
    pub log_start: Slot,
    pub log_last: Slot,
    pub snapshot_index: Slot,
    pub membership: Membership,
    /// At the leader: each peer's commit index and ticks since heard.
    pub peers: Vec<(NodeId, Slot, u64)>,
}
