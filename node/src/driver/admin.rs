//! What the Admin API asks of the driver: leadership transfer, membership
//! changes, a snapshot now, and the node's status.

use synod_core::node::membership::{
    self, MembershipChange, MembershipPlan, MembershipRefusal, has_taken_effect,
};

use super::*;
use crate::peer::frame::MembershipAnswer;

/// What a membership call came to at the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipOutcome {
    /// The slot of the change; when already done, the commit index at
    /// which the committed membership already had it.
    pub slot: Slot,
    /// The membership proposed, or the committed one when already done.
    pub membership: Membership,
    pub already_done: bool,
}

/// Why a membership call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Paxos(#[from] PaxosError),
    #[error(transparent)]
    Refused(#[from] MembershipRefusal),
    #[error(
        "no peer address for node {0} (list it in --peers or --observers, or give every node --peer-address-template)"
    )]
    NoAddress(NodeId),
    #[error("the leader was just elected and is still committing what earlier leaders left; retry")]
    LeaderCatchingUp,
    /// The change in flight only binds members to their incarnations (no
    /// member's role changes): it commits in one round trip.
    #[error("the leader is recording a member's incarnation; retry")]
    BindingInFlight,
    /// The leader's refusal of a call this node forwarded to it.
    #[error("node {leader} (the leader) refused: {message}")]
    AtLeader { leader: NodeId, message: String },
    #[error("cannot forward the call to the leader (node {leader}): {message}")]
    Unforwarded { leader: NodeId, message: String },
}

/// Where the answer to a membership call goes.
pub type MembershipReply = oneshot::Sender<Result<MembershipOutcome, MembershipError>>;

/// A membership call as the driver takes it: answered here, or forwarded
/// to the leader, whose answer arrives on `answer`.
#[derive(Debug)]
pub enum MembershipCall {
    Done(Result<MembershipOutcome, MembershipError>),
    Forwarded {
        leader: NodeId,
        answer: oneshot::Receiver<Result<MembershipOutcome, MembershipError>>,
    },
}

/// A change as the peer frame carries it: the Admin API's numbering.
pub fn change_code(change: MembershipChange) -> u8 {
    match change {
        MembershipChange::AddObserver => 1,
        MembershipChange::PromoteVoter => 2,
        MembershipChange::DemoteVoter => 3,
        MembershipChange::Remove => 4,
    }
}

fn change_from_code(code: u8) -> Option<MembershipChange> {
    match code {
        1 => Some(MembershipChange::AddObserver),
        2 => Some(MembershipChange::PromoteVoter),
        3 => Some(MembershipChange::DemoteVoter),
        4 => Some(MembershipChange::Remove),
        _ => None,
    }
}

impl NodeState {
    /// At the leader: hands leadership to `to`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), PaxosError> {
        self.replica.transfer_leadership(to)
    }

    /// At the leader: proposes the membership with one member changed, or
    /// answers that the committed membership already has it. A retry of a
    /// change still being committed gets that change's slot, to wait on.
    /// Only nodes this node has an address for can be added.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
        node: NodeId,
    ) -> Result<MembershipOutcome, MembershipError> {
        // Only the leader's committed membership is current enough to say
        // "already done": a follower's may lag a change it has not learned.
        if self.replica.role() != Role::Leader {
            return Err(PaxosError::NotLeader {
                leader: self.replica.leader(),
            }
            .into());
        }
        if !self.replica.leader_caught_up() {
            return Err(MembershipError::LeaderCatchingUp);
        }
        let committed = self.replica.membership();
        let pending = self.replica.pending_membership();
        if let Some((_, p)) = &pending
            && p.voters == committed.voters
            && p.observers == committed.observers
        {
            return Err(MembershipError::BindingInFlight);
        }
        let planned = membership::plan(
            committed,
            pending.as_ref().map(|(slot, m)| (*slot, m)),
            change,
            node,
        );
        let next = match planned {
            Ok(MembershipPlan::Propose(next)) => next,
            Ok(MembershipPlan::AlreadyDone) => {
                return Ok(MembershipOutcome {
                    slot: self.replica.commit_index(),
                    membership: committed.clone(),
                    already_done: true,
                });
            }
            Ok(MembershipPlan::InFlight(slot, membership)) => {
                return Ok(MembershipOutcome {
                    slot,
                    membership,
                    already_done: false,
                });
            }
            // The same refusal the replica gives, so callers see one.
            Err(MembershipRefusal::OtherChangeInFlight) => {
                return Err(PaxosError::ConfigChangePending.into());
            }
            Err(refusal) => return Err(refusal.into()),
        };
        let known = node == self.id || self.peers.as_ref().is_some_and(|p| p.knows(node));
        if change == MembershipChange::AddObserver && !known {
            return Err(MembershipError::NoAddress(node));
        }
        let slot = self.replica.propose_membership(next.clone())?;
        Ok(MembershipOutcome {
            slot,
            membership: next,
            already_done: false,
        })
    }

    /// A membership call from the Admin API: decided here at the leader;
    /// at a follower that knows the leader, forwarded to it, so that an
    /// operator may call any member.
    pub fn membership_call(&mut self, change: MembershipChange, node: NodeId) -> MembershipCall {
        let leader = match self.change_membership(change, node) {
            Err(MembershipError::Paxos(PaxosError::NotLeader {
                leader: Some(leader),
            })) if leader != self.id => leader,
            done => return MembershipCall::Done(done),
        };
        self.membership_requests += 1;
        let request = self.membership_requests;
        let call = PeerMessage::Membership {
            request,
            change: change_code(change),
            node,
        };
        if let Err(error) = self.send_message(leader, &call) {
            return MembershipCall::Done(Err(MembershipError::Unforwarded {
                leader,
                message: error.to_string(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        self.membership_calls.insert(request, (leader, tx));
        MembershipCall::Forwarded { leader, answer: rx }
    }

    /// At the leader: a membership call a follower forwarded. It is
    /// decided here and never forwarded again, so a call cannot loop
    /// between two nodes that each think the other leads.
    pub(super) fn forwarded_membership_call(
        &mut self,
        from: NodeId,
        request: u64,
        change: u8,
        node: NodeId,
    ) {
        let answer = match change_from_code(change) {
            Some(change) => self
                .change_membership(change, node)
                .map(|outcome| MembershipAnswer {
                    slot: outcome.slot,
                    membership: outcome.membership,
                    already_done: outcome.already_done,
                })
                .map_err(|error| error.to_string()),
            None => Err(format!("unknown membership change {change}")),
        };
        let reply = PeerMessage::MembershipReply { request, answer };
        if let Err(error) = self.send_message(from, &reply) {
            tracing::debug!(%error, to = from, "cannot answer a forwarded membership call");
        }
    }

    /// The leader's answer to a call this node forwarded.
    pub(super) fn membership_answered(
        &mut self,
        from: NodeId,
        request: u64,
        answer: Result<MembershipAnswer, String>,
    ) {
        let Some((leader, reply)) = self.membership_calls.remove(&request) else {
            return;
        };
        if leader != from {
            // Not from the node it was sent to: keep waiting for that one.
            self.membership_calls.insert(request, (leader, reply));
            return;
        }
        let answer = answer
            .map(|a| MembershipOutcome {
                slot: a.slot,
                membership: a.membership,
                already_done: a.already_done,
            })
            .map_err(|message| MembershipError::AtLeader { leader, message });
        // The caller may have given up waiting.
        let _ = reply.send(answer);
    }

    /// Forgets forwarded calls whose callers stopped waiting (the leader
    /// never answered).
    pub(super) fn forget_abandoned_membership_calls(&mut self) {
        self.membership_calls
            .retain(|_, (_, reply)| !reply.is_closed());
    }

    /// Where a membership change proposed at `slot` stands here: `None`
    /// while the slot is not committed; then the membership committed at it
    /// and whether that has `node` where `change` puts it (it may not: a
    /// new leader can fill a slot its predecessor proposed with another
    /// value).
    pub fn membership_committed(
        &self,
        slot: Slot,
        change: MembershipChange,
        node: NodeId,
    ) -> Option<(Membership, bool)> {
        if self.replica.commit_index() < slot {
            return None;
        }
        let membership = self.replica.membership_at(slot);
        let done = has_taken_effect(&membership, change, node);
        Some((membership, done))
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
    /// At the leader: each peer's commit index and milliseconds since
    /// heard.
    pub peers: Vec<(NodeId, Slot, u64)>,
    /// At a follower, the leader's commit index as last heard (at the
    /// leader, its own).
    pub leader_commit: Slot,
    /// A membership change accepted and not yet committed.
    pub membership_pending: bool,
    /// The ensemble's id, once the first leader's is applied here.
    pub cluster_id: Option<u64>,
    /// This member's incarnation: drawn when its data directory was first
    /// initialised.
    pub incarnation: u64,
    /// Members whose recent messages are refused for their incarnation
    /// (at the leader: wiped voters to remove and re-add).
    pub foreign: Vec<NodeId>,
    /// This node is a voter that keeps out of every quorum until it is
    /// removed and re-added.
    pub awaiting_readd: bool,
}
