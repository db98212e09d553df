//! The operator's side of the node Admin API (`synod.v1.Admin`, through the
//! generated tonic client of synod-proto): `Status` of every pod, and the
//! membership and leadership changes the planner asks for. Every change
//! waits for its commit (`wait_for_commit`) so that the next reconcile sees
//! it in the committed configuration; a repeated change answers
//! `already_done`, which is how a change whose answer was lost is resolved.
//!
//! Calls go to the node's admin listener (port 7300), in plaintext or, for
//! an ensemble with `spec.tls`, over mutual TLS with the operator's admin
//! client certificate ([`credentials`]).

mod credentials;

use std::sync::Arc;
use std::time::Duration;

use synod_proto::v1 as pb;
use synod_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

pub use credentials::{AdminCredentials, CredentialsError};

use crate::planner::{Change, MemberView, NodeId};

/// One node's Admin API: where to dial, and how to speak TLS to it.
#[derive(Clone)]
pub struct Target {
    /// `host:port` (a pod IP and the admin port).
    pub address: String,
    /// With TLS: the configuration that presents the operator's certificate
    /// and verifies the node's against its stable DNS name.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Target {
    /// A plaintext admin listener.
    pub fn plain(address: impl Into<String>) -> Self {
        Target {
            address: address.into(),
            tls: None,
        }
    }

    /// Over TLS: `server_name` is the name the node's certificate must be
    /// valid for (its DNS name), whatever address is dialled.
    pub fn tls(
        address: impl Into<String>,
        credentials: &AdminCredentials,
        server_name: &str,
    ) -> Result<Self, AdminError> {
        Ok(Target {
            address: address.into(),
            tls: Some(credentials.client_config(server_name)?),
        })
    }
}

/// How long one `Status` call may take; a node that does not answer in time
/// counts as not reporting.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change may wait for its commit at the node.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("bad node address {address}: {source}")]
    Address {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("cannot reach the node at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("{call} at {address} failed: {status}")]
    Call {
        call: &'static str,
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("admin client certificate: {0}")]
    Credentials(#[from] CredentialsError),
}

impl AdminError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminError::Address { .. } => "admin_address",
            AdminError::Connect { .. } => "admin_connect",
            AdminError::Call { .. } => "admin_call",
            AdminError::Credentials(_) => "admin_credentials",
        }
    }
}

async fn connect(target: &Target, timeout: Duration) -> Result<AdminClient<Channel>, AdminError> {
    let address = &target.address;
    // `http` even over TLS: the connector does the TLS, tonic speaks h2 on it.
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|source| AdminError::Address {
            address: address.clone(),
            source,
        })?
        .connect_timeout(timeout)
        .timeout(timeout);
    let connected = match &target.tls {
        None => endpoint.connect().await,
        Some(config) => {
            endpoint
                .connect_with_connector(synod_tls::connect::Connector::new(config.clone()))
                .await
        }
    };
    let channel = connected.map_err(|source| AdminError::Connect {
        address: address.clone(),
        source,
    })?;
    Ok(AdminClient::new(channel))
}

/// One node's `Status`.
pub async fn status(target: &Target) -> Result<pb::StatusResponse, AdminError> {
    let address = &target.address;
    let mut client = connect(target, STATUS_TIMEOUT).await?;
    client
        .status(pb::StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| AdminError::Call {
            call: "Status",
            address: address.clone(),
            status: Box::new(status),
        })
}

/// What a committed (or already done) change reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub slot: u64,
    pub already_done: bool,
}

pub async fn change_membership(
    target: &Target,
    change: Change,
    id: NodeId,
) -> Result<ChangeOutcome, AdminError> {
    let address = &target.address;
    let mut client = connect(target, COMMIT_TIMEOUT + STATUS_TIMEOUT).await?;
    let change = match change {
        Change::AddObserver => pb::MembershipChange::AddObserver,
        Change::Promote => pb::MembershipChange::PromoteVoter,
        Change::Demote => pb::MembershipChange::DemoteVoter,
        Change::Remove => pb::MembershipChange::RemoveMember,
    };
    let response = client
        .change_membership(pb::ChangeMembershipRequest {
            change: change as i32,
            node_id: id,
            wait_for_commit: true,
            timeout_ms: u64::try_from(COMMIT_TIMEOUT.as_millis()).unwrap_or(10_000),
        })
        .await
        .map_err(|status| AdminError::Call {
            call: "ChangeMembership",
            address: address.clone(),
            status: Box::new(status),
        })?
        .into_inner();
    Ok(ChangeOutcome {
        slot: response.slot,
        already_done: response.already_done,
    })
}

pub async fn transfer_leadership(target: &Target, to: NodeId) -> Result<(), AdminError> {
    let address = &target.address;
    let mut client = connect(target, COMMIT_TIMEOUT).await?;
    client
        .transfer_leadership(pb::TransferLeadershipRequest { node_id: to })
        .await
        .map_err(|status| AdminError::Call {
            call: "TransferLeadership",
            address: address.clone(),
            status: Box::new(status),
        })?;
    Ok(())
}

/// The leader's view of one member, for the planner.
pub fn member_view(member: &pb::Member) -> MemberView {
    MemberView {
        voter: member.voter,
        lag: member.lag,
        last_heard_ms: member.last_heard_ms,
        foreign_incarnation: foreign_incarnation(member),
    }
}

/// `Member.foreign_incarnation`: at the leader, the member answers with
/// another incarnation than the configuration binds (its disk was wiped).
pub fn foreign_incarnation(member: &pb::Member) -> bool {
    member.foreign_incarnation
}

/// `StatusResponse.awaiting_readd`: the node started on an empty directory
/// with `--initial-cluster-state existing` (or is bound to another
/// incarnation) and votes in nothing until it is removed and re-added.
pub fn awaiting_readd(status: &pb::StatusResponse) -> bool {
    status.awaiting_readd
}

/// At the leader: every voter is bound to an incarnation. Before that, a
/// bootstrap voter that lost its disk cannot be told from one that never
/// started (docs/operations.md, "Replacing a member's disk"), so pods keep
/// starting `new` until it holds.
pub fn every_voter_bound(leader: &pb::StatusResponse) -> bool {
    let mut voters = leader.members.iter().filter(|m| m.voter).peekable();
    voters.peek().is_some() && voters.all(|m| m.incarnation_id != 0)
}

/// Whether the node says it leads.
pub fn is_leader(status: &pb::StatusResponse) -> bool {
    status.role == pb::Role::Leader as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, voter: bool, incarnation_id: u64) -> pb::Member {
        pb::Member {
            id,
            voter,
            incarnation_id,
            ..pb::Member::default()
        }
    }

    #[test]
    fn bootstrap_is_over_only_when_every_voter_is_bound() {
        let leader = |members| pb::StatusResponse {
            members,
            ..pb::StatusResponse::default()
        };
        assert!(every_voter_bound(&leader(vec![
            member(1, true, 7),
            member(2, true, 9)
        ])));
        assert!(!every_voter_bound(&leader(vec![
            member(1, true, 7),
            member(2, true, 0)
        ])));
        // Observers need no binding to end the bootstrap; no voters at all
        // is no ensemble yet.
        assert!(every_voter_bound(&leader(vec![
            member(1, true, 7),
            member(4, false, 0)
        ])));
        assert!(!every_voter_bound(&leader(vec![])));
    }
}
