//! Pure status logic: the four conditions (Available, Progressing,
//! Degraded, Blocked) from what was observed and the action decided, with
//! `lastTransitionTime` kept while a condition's status stays, and the list
//! of transitions, which are the only things that become events (a blocked
//! ensemble re-planned every resync does not repeat its event).

use crate::crd::Condition;
use crate::planner::{
    Action, BlockReason, Change, Health, Observed, RestartReason, WaitReason, quorum,
};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const BLOCKED: &str = "Blocked";

/// A condition as computed, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// A condition whose status or reason changed: worth one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
    /// Warning (Blocked=True, Available=False, Degraded=True) or Normal.
    pub warning: bool,
}

fn desired(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Desired {
    Desired {
        type_,
        status,
        reason: reason.to_owned(),
        message: message.into(),
    }
}

pub fn wait_reason(reason: WaitReason) -> &'static str {
    match reason {
        WaitReason::Creating => "Creating",
        WaitReason::Bootstrapping => "Bootstrapping",
        WaitReason::NoLeader => "NoLeader",
        WaitReason::MembershipChangePending => "MembershipChangePending",
        WaitReason::WaitingForPod => "WaitingForPod",
        WaitReason::CatchingUp => "CatchingUp",
        WaitReason::WaitingForPodReady => "WaitingForPodReady",
        WaitReason::WaitingForHealthyMembers => "WaitingForHealthyMembers",
    }
}

pub fn block_reason(reason: BlockReason) -> &'static str {
    match reason {
        BlockReason::EvenSize => "EvenSize",
        BlockReason::UnsafeScaleDown => "UnsafeScaleDown",
        BlockReason::InsufficientHealthyMembers => "InsufficientHealthyMembers",
        BlockReason::QuorumLost => "QuorumLost",
        BlockReason::WipedVoter => "WipedVoter",
        BlockReason::UpgradeStalled => "UpgradeStalled",
        BlockReason::ForeignData => "ForeignData",
    }
}

/// A PascalCase name of a mutating action (condition reason, metric label).
pub fn action_reason(action: &Action) -> &'static str {
    match action {
        Action::Idle { paused: true } => "Paused",
        Action::Idle { paused: false } => "Stable",
        Action::Wait { reason, .. } => wait_reason(*reason),
        Action::Blocked { reason, .. } => block_reason(*reason),
        Action::ScaleStatefulSet { .. } => "ScalingStatefulSet",
        Action::ChangeMembership { change, .. } => match change {
            Change::AddObserver => "AddingObserver",
            Change::Promote => "PromotingMember",
            Change::Demote => "DemotingMember",
            Change::Remove => "RemovingMember",
        },
        Action::TransferLeadership { .. } => "TransferringLeadership",
        Action::DeletePod { reason, .. } => match reason {
            RestartReason::UnreadyOutdated => "RestartingUnreadyPod",
            RestartReason::Observer | RestartReason::Follower => "RestartingPod",
            RestartReason::SingleNode => "SingleNodeRestart",
        },
        Action::DeleteClaims { .. } => "DeletingVolumes",
    }
}

/// A human sentence for the action.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Idle { paused: true } => "paused: no action is taken".into(),
        Action::Idle { paused: false } => "the ensemble matches the spec".into(),
        Action::Wait { message, .. } | Action::Blocked { message, .. } => message.clone(),
        Action::ScaleStatefulSet { replicas } => format!("StatefulSet scaled to {replicas}"),
        Action::ChangeMembership { change, id } => match change {
            Change::AddObserver => format!("node {id} added as an observer"),
            Change::Promote => format!("observer {id} promoted to voter"),
            Change::Demote => format!("voter {id} demoted to observer"),
            Change::Remove => format!("node {id} removed from the configuration"),
        },
        Action::TransferLeadership { from, to } => {
            format!("leadership handed from {from} to {to}")
        }
        Action::DeletePod { id, .. } => format!("pod of node {id} deleted to restart it"),
        Action::DeleteClaims { id, claims } => format!(
            "volumes of removed node {id} deleted: {}",
            claims
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The four conditions for this reconcile.
pub fn desired_conditions(
    observed: &Observed,
    health: Option<&Health<'_>>,
    action: &Action,
) -> Vec<Desired> {
    let available = match health {
        None if !observed.bootstrapped => {
            desired(AVAILABLE, false, "Bootstrapping", "no leader elected yet")
        }
        None => desired(AVAILABLE, false, "NoLeader", "no node reports a leader"),
        Some(health) => {
            let v = health.voters().len();
            let h = health.healthy_voters();
            if h >= quorum(v) {
                desired(
                    AVAILABLE,
                    true,
                    "QuorumHealthy",
                    format!("{h}/{v} voters healthy, quorum requires {}", quorum(v)),
                )
            } else {
                desired(
                    AVAILABLE,
                    false,
                    "QuorumAtRisk",
                    format!(
                        "{h}/{v} voters healthy, quorum requires {}: writes may stall",
                        quorum(v)
                    ),
                )
            }
        }
    };
    let unready: Vec<String> = observed
        .pods
        .iter()
        .filter(|(_, p)| !p.ready)
        .map(|(id, _)| id.to_string())
        .collect();
    let unhealthy: Vec<String> = health
        .map(|h| {
            h.voters()
                .into_iter()
                .filter(|v| !h.healthy(*v))
                .map(|v| v.to_string())
                .collect()
        })
        .unwrap_or_default();
    let degraded = if unready.is_empty() && unhealthy.is_empty() {
        desired(DEGRADED, false, "AllHealthy", "every pod is ready")
    } else {
        desired(
            DEGRADED,
            true,
            "MembersUnhealthy",
            format!(
                "pods not ready: [{}]; voters not healthy: [{}]",
                unready.join(","),
                unhealthy.join(",")
            ),
        )
    };
    let reason = action_reason(action);
    let message = describe(action);
    let (progressing, blocked) = match action {
        Action::Blocked {
            reason: BlockReason::UpgradeStalled,
            ..
        } => (
            desired(PROGRESSING, false, reason, message.clone()),
            desired(BLOCKED, true, reason, message),
        ),
        Action::Blocked { .. } => (
            desired(PROGRESSING, false, "Blocked", "see the Blocked condition"),
            desired(BLOCKED, true, reason, message),
        ),
        Action::Idle { .. } => (
            desired(PROGRESSING, false, reason, message),
            desired(BLOCKED, false, "None", ""),
        ),
        _ => (
            desired(PROGRESSING, true, reason, message),
            desired(BLOCKED, false, "None", ""),
        ),
    };
    vec![available, progressing, degraded, blocked]
}

/// Merges the desired conditions into the old ones: `lastTransitionTime`
/// moves only when the status changes; transitions of status or reason are
/// returned for events.
pub fn merge(
    old: &[Condition],
    desired: Vec<Desired>,
    now: &str,
    generation: Option<i64>,
) -> (Vec<Condition>, Vec<Transition>) {
    let mut out = Vec::new();
    let mut transitions = Vec::new();
    for d in desired {
        let status = if d.status { "True" } else { "False" };
        let previous = old.iter().find(|c| c.type_ == d.type_);
        let time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.to_owned(),
        };
        let changed = previous.is_none_or(|p| p.status != status || p.reason != d.reason);
        // A first Blocked=False or Degraded=False is no news.
        let news = changed && !(previous.is_none() && !d.status && d.type_ != AVAILABLE);
        if news {
            transitions.push(Transition {
                type_: d.type_,
                status: d.status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                warning: match d.type_ {
                    AVAILABLE => !d.status,
                    BLOCKED | DEGRADED => d.status,
                    _ => false,
                },
            });
        }
        out.push(Condition {
            type_: d.type_.to_owned(),
            status: status.to_owned(),
            reason: d.reason,
            message: d.message,
            last_transition_time: time,
            observed_generation: generation,
        });
    }
    (out, transitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(type_: &'static str, status: bool, reason: &str) -> Desired {
        desired(type_, status, reason, "m")
    }

    #[test]
    fn transition_time_moves_only_with_the_status_and_events_only_on_change() {
        let (first, t1) = merge(&[], vec![d(BLOCKED, true, "EvenSize")], "t1", Some(1));
        assert_eq!(first[0].last_transition_time, "t1");
        assert_eq!(t1.len(), 1);
        assert!(t1[0].warning);
        // Re-planned with the same refusal: no event, same time.
        let (second, t2) = merge(&first, vec![d(BLOCKED, true, "EvenSize")], "t2", Some(1));
        assert_eq!(second[0].last_transition_time, "t1");
        assert!(t2.is_empty());
        // Another reason with the same status: an event, the time stays.
        let (third, t3) = merge(&second, vec![d(BLOCKED, true, "QuorumLost")], "t3", Some(2));
        assert_eq!(third[0].last_transition_time, "t1");
        assert_eq!(t3.len(), 1);
        // Cleared: an event and a new time.
        let (fourth, t4) = merge(&third, vec![d(BLOCKED, false, "None")], "t4", Some(2));
        assert_eq!(fourth[0].last_transition_time, "t4");
        assert_eq!(t4.len(), 1);
        assert!(!t4[0].warning);
    }

    #[test]
    fn a_first_false_blocked_is_not_news() {
        let (_, t) = merge(&[], vec![d(BLOCKED, false, "None")], "t", None);
        assert!(t.is_empty());
        let (_, t) = merge(&[], vec![d(AVAILABLE, false, "Bootstrapping")], "t", None);
        assert_eq!(t.len(), 1);
    }
}
