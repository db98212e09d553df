//! The gRPC `Admin` service: the node's view of the ensemble (status with
//! members and lag) and the operations an operator runs against it
//! (leadership transfer, membership changes one member at a time, a
//! snapshot on demand). It decides nothing: the replica checks every
//! change and refuses what is unsafe.

use synod_core::paxos::{PaxosError, Role};
use synod_proto::v1 as pb;
use synod_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::driver::{DriverHandle, MembershipChange, NodeState};

type Reply<T> = Result<Response<T>, Status>;

#[derive(Debug, Clone)]
pub struct AdminService {
    driver: DriverHandle,
    /// Milliseconds per replica tick, to report "last heard" in time.
    tick_ms: u64,
}

impl AdminService {
    pub fn new(driver: DriverHandle, tick_ms: u64) -> Self {
        AdminService { driver, tick_ms }
    }

    async fn run<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&mut NodeState) -> Result<R, PaxosError> + Send + 'static,
    {
        match self.driver.call(f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(paxos_status(&error)),
            Err(_) => Err(Status::unavailable("the node is shutting down")),
        }
    }
}

/// Consensus refusals as statuses: "not the leader" names the leader so a
/// tool can go there.
fn paxos_status(error: &PaxosError) -> Status {
    match error {
        PaxosError::NotLeader { leader } => Status::failed_precondition(format!(
            "not the leader; the leader is {}",
            leader.map_or("unknown".to_owned(), |l| format!("node {l}"))
        )),
        PaxosError::Backpressure { .. } => Status::resource_exhausted(error.to_string()),
        _ => Status::failed_precondition(error.to_string()),
    }
}

fn role(role: Role) -> pb::Role {
    match role {
        Role::Follower => pb::Role::Follower,
        Role::PreCandidate => pb::Role::PreCandidate,
        Role::Candidate => pb::Role::Candidate,
        Role::Leader => pb::Role::Leader,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        let tick_ms = self.tick_ms;
        let (status, readiness) = self
            .run(|state| Ok((state.status(), state.readiness())))
            .await?;
        let members = status
            .membership
            .voters
            .iter()
            .map(|id| (*id, true))
            .chain(status.membership.observers.iter().map(|id| (*id, false)))
            .map(|(id, voter)| {
                let (commit_index, last_heard_ms) = if id == status.node_id {
                    (status.commit_index, 0)
                } else {
                    status
                        .peers
                        .iter()
                        .find(|(p, _, _)| *p == id)
                        .map_or((0, 0), |(_, commit, heard)| (*commit, heard * tick_ms))
                };
                pb::Member {
                    id,
                    voter,
                    commit_index,
                    lag: status.commit_index.saturating_sub(commit_index),
                    last_heard_ms,
                }
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            node_id: status.node_id,
            role: role(status.role) as i32,
            leader_id: status.leader.unwrap_or(0),
            ballot_round: status.promised.round,
            ballot_node: status.promised.node,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            log_start: status.log_start,
            log_last: status.log_last,
            snapshot_index: status.snapshot_index,
            members,
            not_ready: readiness.err().unwrap_or_default(),
        }))
    }

    async fn transfer_leadership(
        &self,
        request: Request<pb::TransferLeadershipRequest>,
    ) -> Reply<pb::TransferLeadershipResponse> {
        let to = request.into_inner().node_id;
        self.run(move |state| state.transfer_leadership(to)).await?;
        Ok(Response::new(pb::TransferLeadershipResponse {}))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Reply<pb::ChangeMembershipResponse> {
        let request = request.into_inner();
        let change = match pb::MembershipChange::try_from(request.change) {
            Ok(pb::MembershipChange::AddObserver) => MembershipChange::AddObserver,
            Ok(pb::MembershipChange::PromoteVoter) => MembershipChange::PromoteVoter,
            Ok(pb::MembershipChange::DemoteVoter) => MembershipChange::DemoteVoter,
            Ok(pb::MembershipChange::RemoveMember) => MembershipChange::Remove,
            _ => return Err(Status::invalid_argument("unknown membership change")),
        };
        let node = request.node_id;
        let (slot, membership) = self
            .run(move |state| state.change_membership(change, node))
            .await?;
        Ok(Response::new(pb::ChangeMembershipResponse {
            slot,
            voters: membership.voters,
            observers: membership.observers,
        }))
    }

    async fn take_snapshot(
        &self,
        _: Request<pb::TakeSnapshotRequest>,
    ) -> Reply<pb::TakeSnapshotResponse> {
        let index = self.run(|state| Ok(state.take_snapshot())).await?;
        Ok(Response::new(pb::TakeSnapshotResponse {
            index: u64::try_from(index).unwrap_or(0),
        }))
    }
}
