//! The gRPC `Admin` service: the node's view of the ensemble (status with
//! members and lag) and the operations an operator runs against it
//! (leadership transfer, membership changes one member at a time, a
//! snapshot on demand). It decides nothing: the driver and the replica
//! check every change and refuse what is unsafe. A membership call may
//! wait here until its change is committed, so an operator knows it took
//! effect before the next step.

use std::time::{Duration, Instant};

use synod_core::paxos::{PaxosError, Role};
use synod_proto::v1 as pb;
use synod_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::driver::{
    DriverHandle, MembershipCall, MembershipChange, MembershipError, MembershipOutcome, NodeState,
};

type Reply<T> = Result<Response<T>, Status>;

/// How long a membership call waits for its commit unless it says.
const DEFAULT_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// The longest wait a call may ask for.
const MAX_COMMIT_WAIT: Duration = Duration::from_secs(300);

/// How long a membership call waits before it asks again after a refusal
/// that passes by itself.
const TRANSIENT_RETRY: Duration = Duration::from_millis(50);

/// How often a waiting call looks at the commit index: a change commits
/// in a few heartbeats, and each look is one small job for the driver.
const COMMIT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct AdminService {
    driver: DriverHandle,
    /// The ensemble's name (`--cluster`), reported by `Status`.
    cluster: String,
}

impl AdminService {
    pub fn new(driver: DriverHandle, cluster: String) -> Self {
        AdminService { driver, cluster }
    }

    /// Runs a membership call: here at the leader, or forwarded to it.
    async fn membership_call(
        &self,
        change: MembershipChange,
        node: u64,
        deadline: Instant,
    ) -> Result<MembershipOutcome, Status> {
        let call = self
            .driver
            .call(move |state| state.membership_call(change, node))
            .await
            .map_err(|_| shutting_down())?;
        match call {
            MembershipCall::Done(done) => done.map_err(|e| membership_status(&e)),
            MembershipCall::Forwarded { leader, answer } => {
                match tokio::time::timeout_at(deadline.into(), answer).await {
                    Ok(Ok(done)) => done.map_err(|e| membership_status(&e)),
                    Ok(Err(_)) => Err(shutting_down()),
                    Err(_) => Err(Status::deadline_exceeded(format!(
                        "the leader (node {leader}) did not answer the forwarded membership call in time; call again"
                    ))),
                }
            }
        }
    }

    /// [`AdminService::membership_call`], asking again after refusals that
    /// pass by themselves within a round trip or two (a leader just
    /// elected, an incarnation being recorded: their messages end in
    /// "retry"), within the deadline.
    async fn membership_call_retried(
        &self,
        change: MembershipChange,
        node: u64,
        deadline: Instant,
    ) -> Result<MembershipOutcome, Status> {
        loop {
            match self.membership_call(change, node, deadline).await {
                Err(status)
                    if status.message().ends_with("; retry")
                        && Instant::now() + TRANSIENT_RETRY < deadline =>
                {
                    tokio::time::sleep(TRANSIENT_RETRY).await;
                }
                done => return done,
            }
        }
    }

    /// Makes one membership change and waits until it is committed (or
    /// finds it already done); the ZooKeeper front end's `reconfig` runs
    /// its steps through this.
    pub async fn change_committed(
        &self,
        change: MembershipChange,
        node: u64,
        deadline: Instant,
    ) -> Result<synod_core::paxos::Membership, Status> {
        let outcome = self.membership_call_retried(change, node, deadline).await?;
        if outcome.already_done {
            return Ok(outcome.membership);
        }
        self.wait_for_commit(change, node, outcome.slot, deadline)
            .await
    }

    /// Waits until `slot` is committed here, then answers with the
    /// membership committed at it, or an error if the slot holds another
    /// value (a new leader filled it) or the deadline passes.
    async fn wait_for_commit(
        &self,
        change: MembershipChange,
        node: u64,
        slot: u64,
        deadline: Instant,
    ) -> Result<synod_core::paxos::Membership, Status> {
        loop {
            let committed = self
                .driver
                .call(move |state| state.membership_committed(slot, change, node))
                .await
                .map_err(|_| shutting_down())?;
            match committed {
                Some((membership, true)) => return Ok(membership),
                Some((membership, false)) => {
                    return Err(Status::aborted(format!(
                        "slot {slot} committed another value (the leader changed before the change committed); the membership is voters {:?}, observers {:?}; call again",
                        membership.voters, membership.observers
                    )));
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the membership change at slot {slot} was not committed in time; it may still commit: call again to find out"
                )));
            }
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }

    async fn run<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&mut NodeState) -> Result<R, PaxosError> + Send + 'static,
    {
        match self.driver.call(f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(paxos_status(&error)),
            Err(_) => Err(shutting_down()),
        }
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the node is shutting down")
}

fn membership_status(error: &MembershipError) -> Status {
    match error {
        MembershipError::Paxos(error) => paxos_status(error),
        MembershipError::Unforwarded { .. } => Status::unavailable(error.to_string()),
        _ => Status::failed_precondition(error.to_string()),
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
                        .map_or((0, 0), |(_, commit, heard_ms)| (*commit, *heard_ms))
                };
                pb::Member {
                    id,
                    voter,
                    commit_index,
                    lag: status.commit_index.saturating_sub(commit_index),
                    last_heard_ms,
                    incarnation_id: status.membership.incarnation(id),
                    foreign_incarnation: status.foreign.contains(&id),
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
            version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: self.cluster.clone(),
            membership_change_pending: status.membership_pending,
            leader_commit_index: status.leader_commit,
            cluster_id: status.cluster_id.unwrap_or(0),
            incarnation_id: status.incarnation,
            awaiting_readd: status.awaiting_readd,
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
        let wait = match request.timeout_ms {
            0 => DEFAULT_COMMIT_WAIT,
            ms => Duration::from_millis(ms).min(MAX_COMMIT_WAIT),
        };
        let deadline = Instant::now() + wait;
        let outcome = self.membership_call_retried(change, node, deadline).await?;
        let (membership, committed) = if outcome.already_done {
            (outcome.membership, true)
        } else if request.wait_for_commit {
            let membership = self
                .wait_for_commit(change, node, outcome.slot, deadline)
                .await?;
            (membership, true)
        } else {
            (outcome.membership, false)
        };
        tracing::info!(
            ?change,
            node,
            slot = outcome.slot,
            already_done = outcome.already_done,
            committed,
            voters = ?membership.voters,
            observers = ?membership.observers,
            "membership call answered"
        );
        Ok(Response::new(pb::ChangeMembershipResponse {
            slot: outcome.slot,
            voters: membership.voters,
            observers: membership.observers,
            already_done: outcome.already_done,
            committed,
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

/// What the client port answers to Admin calls: the Admin API has its own
/// port, which a NetworkPolicy or a firewall can keep apart from the data
/// API's clients. The refusal names that port, so a caller that still
/// dials the client port learns where to go instead of seeing
/// "unimplemented".
#[derive(Debug, Clone)]
pub struct AdminElsewhere {
    /// `--admin-addr`, or `None` when it is off.
    admin_addr: Option<std::net::SocketAddr>,
}

impl AdminElsewhere {
    pub fn new(admin_addr: Option<std::net::SocketAddr>) -> Self {
        AdminElsewhere { admin_addr }
    }

    fn refuse<T>(&self) -> Reply<T> {
        Err(Status::permission_denied(match self.admin_addr {
            Some(addr) => format!(
                "the Admin API is not served on the client port: use the admin port ({addr}, --admin-addr)"
            ),
            None => "the Admin API is not served on the client port, and this node's admin port is off (--admin-addr)".to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl Admin for AdminElsewhere {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        self.refuse()
    }

    async fn transfer_leadership(
        &self,
        _: Request<pb::TransferLeadershipRequest>,
    ) -> Reply<pb::TransferLeadershipResponse> {
        self.refuse()
    }

    async fn change_membership(
        &self,
        _: Request<pb::ChangeMembershipRequest>,
    ) -> Reply<pb::ChangeMembershipResponse> {
        self.refuse()
    }

    async fn take_snapshot(
        &self,
        _: Request<pb::TakeSnapshotRequest>,
    ) -> Reply<pb::TakeSnapshotResponse> {
        self.refuse()
    }
}
