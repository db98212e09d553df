//! The pure planner: from what the operator observed (StatefulSet, pods,
//! volumes, each node's Status and the leader's view of the members) and the
//! goal (the spec), exactly one next action. It keeps no memory between
//! calls: an operator killed between any two steps decides the same next
//! step from the same world (T20), and every Admin call it asks for is
//! idempotent (`already_done`).
//!
//! Safety rules, all checked here and nowhere else:
//! - one membership change at a time, never while one is pending;
//! - no change, demotion, removal or restart that leaves fewer healthy voters
//!   than a majority of the voters that remain (and, for ensembles of 3 or
//!   more, no scale-down step that leaves no fault tolerance);
//! - a new member joins as an observer and is promoted only once caught up;
//! - a member leaves the configuration before its pod goes, and its volumes
//!   go last (T7);
//! - rolling restarts: unready outdated pods first, then observers, then
//!   followers most-lagged first, the leader last after a hand-off; a
//!   restarted pod that does not become Ready in time stops the roll (T12).

use std::collections::BTreeMap;

/// A node's id is its pod ordinal + 1 (the node derives it from its
/// hostname `<name>-<ordinal>`; id 0 is reserved).
pub type NodeId = u64;

/// The StatefulSet as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetView {
    pub replicas: u32,
    /// `status.updateRevision`; pods labelled otherwise need a restart.
    pub update_revision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub ready: bool,
    pub terminating: bool,
    /// Its `controller-revision-hash` label.
    pub revision: Option<String>,
    /// Seconds since the pod was created.
    pub age_seconds: u64,
    /// The node refused to start because its volume holds another
    /// ensemble's data (its last termination message says so).
    pub foreign_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub name: String,
    pub uid: String,
}

/// A node's own `Status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The id the node runs as: a pod answering with another id than its
    /// ordinal + 1 is not counted as that member.
    pub node_id: NodeId,
    /// Started on an empty directory with `--initial-cluster-state existing`
    /// (or bound to another incarnation): votes in nothing until re-added.
    pub awaiting_readd: bool,
}

/// A member as the leader reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberView {
    pub voter: bool,
    pub lag: u64,
    pub last_heard_ms: u64,
    /// The member answers with another incarnation than the configuration
    /// binds: its disk was wiped; its votes count toward no quorum.
    pub foreign_incarnation: bool,
}

/// The leader's `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    pub id: NodeId,
    pub commit_index: u64,
    pub change_pending: bool,
    pub members: BTreeMap<NodeId, MemberView>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub statefulset: Option<StatefulSetView>,
    pub pods: BTreeMap<NodeId, PodView>,
    pub claims: BTreeMap<NodeId, Vec<ClaimRef>>,
    pub nodes: BTreeMap<NodeId, NodeView>,
    pub leader: Option<LeaderView>,
    /// The status records that the ensemble formed once.
    pub bootstrapped: bool,
}

/// What the spec asks for, reduced to what the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub replicas: u32,
    pub paused: bool,
    pub delete_claims_on_scale_down: bool,
    pub max_lag: u64,
    /// A voter not heard from for longer is unhealthy (2 x election timeout).
    pub heard_within_ms: u64,
    pub pod_ready_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    AddObserver,
    Promote,
    Demote,
    Remove,
}

/// Why the planner waits (the `Progressing` condition's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    Creating,
    Bootstrapping,
    NoLeader,
    MembershipChangePending,
    WaitingForPod,
    CatchingUp,
    WaitingForPodReady,
    WaitingForHealthyMembers,
}

/// Why the planner refuses (the `Blocked` condition's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    EvenSize,
    UnsafeScaleDown,
    InsufficientHealthyMembers,
    QuorumLost,
    WipedVoter,
    UpgradeStalled,
    ForeignData,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// Outdated and not Ready: restarting it costs nothing (T12, T13).
    UnreadyOutdated,
    Observer,
    Follower,
    /// The only voter (an ensemble of one).
    SingleNode,
}

/// Exactly one next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do; `paused` says why it may be so.
    Idle {
        paused: bool,
    },
    Wait {
        reason: WaitReason,
        message: String,
    },
    Blocked {
        reason: BlockReason,
        message: String,
    },
    ScaleStatefulSet {
        replicas: u32,
    },
    ChangeMembership {
        change: Change,
        id: NodeId,
    },
    TransferLeadership {
        from: NodeId,
        to: NodeId,
    },
    DeletePod {
        id: NodeId,
        uid: String,
        reason: RestartReason,
    },
    DeleteClaims {
        id: NodeId,
        claims: Vec<ClaimRef>,
    },
}

impl Action {
    /// Whether the action changes the world (and so is worth an event and a
    /// short requeue).
    pub fn mutates(&self) -> bool {
        !matches!(
            self,
            Action::Idle { .. } | Action::Wait { .. } | Action::Blocked { .. }
        )
    }
}

/// Votes needed for a majority of `voters`.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn wait(reason: WaitReason, message: impl Into<String>) -> Action {
    Action::Wait {
        reason,
        message: message.into(),
    }
}

fn blocked(reason: BlockReason, message: impl Into<String>) -> Action {
    Action::Blocked {
        reason,
        message: message.into(),
    }
}

fn change(change: Change, id: NodeId) -> Action {
    Action::ChangeMembership { change, id }
}

/// Health as the planner judges it, from the leader's view and the pods.
#[derive(Debug)]
pub struct Health<'a> {
    observed: &'a Observed,
    goal: &'a Goal,
    leader: &'a LeaderView,
}

impl<'a> Health<'a> {
    pub fn new(observed: &'a Observed, goal: &'a Goal, leader: &'a LeaderView) -> Self {
        Health {
            observed,
            goal,
            leader,
        }
    }

    fn pod_ready(&self, id: NodeId) -> bool {
        self.observed
            .pods
            .get(&id)
            .is_some_and(|p| p.ready && !p.terminating)
    }

    /// A member is caught up when the leader heard from it recently and its
    /// lag is within the promotion bound.
    pub fn caught_up(&self, id: NodeId) -> bool {
        if id == self.leader.id {
            return true;
        }
        self.leader.members.get(&id).is_some_and(|m| {
            !m.foreign_incarnation
                && m.lag <= self.goal.max_lag
                && m.last_heard_ms <= self.goal.heard_within_ms
        })
    }

    /// A voter that counts toward a quorum right now.
    pub fn healthy(&self, id: NodeId) -> bool {
        self.leader.members.get(&id).is_some_and(|m| m.voter)
            && self.caught_up(id)
            && self.pod_ready(id)
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.leader
            .members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn healthy_voters(&self) -> usize {
        self.voters()
            .into_iter()
            .filter(|v| self.healthy(*v))
            .count()
    }
}

/// The next action. Pure: same inputs, same answer.
pub fn plan(observed: &Observed, goal: &Goal) -> Action {
    if goal.paused {
        return Action::Idle { paused: true };
    }
    if goal.replicas.is_multiple_of(2) {
        return blocked(
            BlockReason::EvenSize,
            format!(
                "replicas {} is even: an even ensemble tolerates no more failures than the odd size below it",
                goal.replicas
            ),
        );
    }
    let Some(sts) = &observed.statefulset else {
        return wait(WaitReason::Creating, "waiting for the StatefulSet");
    };
    // A volume of another ensemble (a left-over claim, a wrong mount): the
    // node refuses it and no action here can fix it (T19).
    if let Some((id, _)) = observed.pods.iter().find(|(_, p)| p.foreign_data) {
        return blocked(
            BlockReason::ForeignData,
            format!(
                "the volumes of node {id} hold another ensemble's data and the node refuses to start: delete its PersistentVolumeClaims (or fix spec.clusterName) to let it rejoin empty"
            ),
        );
    }
    let update_revision = sts.update_revision.as_deref();
    let outdated =
        |pod: &PodView| update_revision.is_some_and(|rev| pod.revision.as_deref() != Some(rev));

    // Outdated pods that are not Ready first: they add nothing to any quorum,
    // and a reverted bad template is only fixed by restarting them (T13).
    // Without a leader every pod is unready (an election): then only a pod
    // whose node does not even answer `Status` (crashlooping, a bad image) is
    // restarted, never one that is taking part in the election.
    let leader_known = observed.leader.is_some();
    if let Some((id, pod)) = observed.pods.iter().find(|(id, p)| {
        !p.ready
            && !p.terminating
            && outdated(p)
            && (leader_known || !observed.nodes.contains_key(id))
    }) {
        return Action::DeletePod {
            id: *id,
            uid: pod.uid.clone(),
            reason: RestartReason::UnreadyOutdated,
        };
    }

    let Some(leader) = &observed.leader else {
        if !observed.bootstrapped {
            return wait(
                WaitReason::Bootstrapping,
                "waiting for the bootstrap voters to elect a first leader",
            );
        }
        // No leader: nothing can commit, so no membership change and no
        // StatefulSet change; restarts of lost pods are not removals (T2, T5).
        if goal.replicas != sts.replicas {
            return blocked(
                BlockReason::QuorumLost,
                format!(
                    "no leader is known: the change to {} replicas waits until a majority is back",
                    goal.replicas
                ),
            );
        }
        return wait(WaitReason::NoLeader, "no leader is known");
    };
    if leader.change_pending {
        return wait(
            WaitReason::MembershipChangePending,
            "a membership change is being committed",
        );
    }
    let health = Health::new(observed, goal, leader);
    let voters = health.voters();
    let v = voters.len();
    let h = health.healthy_voters();
    let max_member = leader.members.keys().max().copied().unwrap_or(0);

    // Pods for every member: a StatefulSet scaled down by hand, outside the
    // operator, comes back (its volumes were retained; T16).
    if u64::from(sts.replicas) < max_member {
        return Action::ScaleStatefulSet {
            replicas: u32::try_from(max_member).unwrap_or(u32::MAX),
        };
    }

    // A member whose disk was wiped: out, then back in as a new member (T21).
    if let Some(action) = replace_wiped(observed, leader, &health, v, h) {
        return action;
    }

    // While there are more voters than asked for, shrink first; otherwise
    // grow first: a swap (voters {1,2,4} for a goal of 3) promotes 3 before
    // it demotes 4, so that the fault tolerance never drops on the way.
    let shrinking = v > usize::try_from(goal.replicas).unwrap_or(usize::MAX);
    if shrinking && let Some(action) = scale_down(leader, goal, &health, &voters, h) {
        return action;
    }
    if !shrinking
        && u64::from(sts.replicas) >= u64::from(goal.replicas)
        && let Some(action) = scale_up(observed, goal, sts, leader, &health, v, h)
    {
        return action;
    }
    if let Some(action) = scale_down(leader, goal, &health, &voters, h) {
        return action;
    }

    // Only pods of members or of the goal remain.
    let wanted = u64::from(goal.replicas).max(max_member);
    if u64::from(sts.replicas) > wanted {
        return Action::ScaleStatefulSet {
            replicas: u32::try_from(wanted).unwrap_or(u32::MAX),
        };
    }
    // A removed member's volumes, once it is out and its pod is gone (T7).
    if goal.delete_claims_on_scale_down
        && let Some((id, claims)) = observed.claims.iter().find(|(id, claims)| {
            **id > u64::from(sts.replicas)
                && !claims.is_empty()
                && !leader.members.contains_key(id)
                && !observed.pods.contains_key(id)
        })
    {
        return Action::DeleteClaims {
            id: *id,
            claims: claims.clone(),
        };
    }

    if let Some(action) = scale_up(observed, goal, sts, leader, &health, v, h) {
        return action;
    }

    if let Some(action) = roll(observed, goal, leader, &health, &voters, h, &outdated) {
        return action;
    }
    Action::Idle { paused: false }
}

fn replace_wiped(
    observed: &Observed,
    leader: &LeaderView,
    health: &Health<'_>,
    v: usize,
    h: usize,
) -> Option<Action> {
    let (id, member) = leader.members.iter().find(|(id, m)| {
        **id != leader.id
            && (m.foreign_incarnation
                || observed
                    .nodes
                    .get(id)
                    .is_some_and(|n| n.node_id == **id && n.awaiting_readd))
    })?;
    if !member.voter {
        return Some(change(Change::Remove, *id));
    }
    // Removing it leaves v - 1 voters; it does not count now (wiped), so
    // the healthy ones stay as they are, unless the leader still counted it.
    let remaining = h - usize::from(health.healthy(*id));
    if remaining >= quorum(v - 1) {
        Some(change(Change::Remove, *id))
    } else {
        Some(blocked(
            BlockReason::WipedVoter,
            format!(
                "voter {id} lost its data and must be removed and re-added, but only {remaining} healthy voters would remain of {} (a majority needs {})",
                v - 1,
                quorum(v - 1)
            ),
        ))
    }
}

fn scale_down(
    leader: &LeaderView,
    goal: &Goal,
    health: &Health<'_>,
    voters: &[NodeId],
    h: usize,
) -> Option<Action> {
    let goal_ids = u64::from(goal.replicas);
    // Highest id first, as numbers (T15): it is the pod the StatefulSet
    // removes when it shrinks.
    let (&top, member) = leader
        .members
        .iter()
        .rev()
        .find(|(id, _)| **id > goal_ids)?;
    let v = voters.len();
    if goal.replicas < 3 && v >= 3 {
        return Some(blocked(
            BlockReason::UnsafeScaleDown,
            format!(
                "replicas {} from {v} voters: an ensemble of 3 or more is not shrunk to 1; scale to 3",
                goal.replicas
            ),
        ));
    }
    if !member.voter {
        return Some(change(Change::Remove, top));
    }
    let top_healthy = health.healthy(top);
    let remaining = h - usize::from(top_healthy);
    let needed = quorum(v - 1) + usize::from(goal.replicas >= 3 && top_healthy);
    if remaining < needed {
        return Some(blocked(
            BlockReason::InsufficientHealthyMembers,
            format!(
                "removing voter {top} would leave {remaining} healthy of {} voters; {needed} needed (a majority{})",
                v - 1,
                if needed > quorum(v - 1) {
                    " plus one failure tolerated"
                } else {
                    ""
                }
            ),
        ));
    }
    if top == leader.id {
        return Some(match transfer_target(health, voters, top, |_| true) {
            Some(to) => Action::TransferLeadership { from: top, to },
            None => wait(
                WaitReason::WaitingForHealthyMembers,
                format!("leader {top} is leaving, but no other voter is caught up to take over"),
            ),
        });
    }
    Some(change(Change::Demote, top))
}

/// The healthy voter with the least lag (ties: lowest id, which is never
/// the next one removed) other than `from`, among those `eligible` (T18).
fn transfer_target(
    health: &Health<'_>,
    voters: &[NodeId],
    from: NodeId,
    eligible: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    voters
        .iter()
        .copied()
        .filter(|id| *id != from && health.healthy(*id) && eligible(*id))
        .min_by_key(|id| {
            (
                health.leader.members.get(id).map_or(u64::MAX, |m| m.lag),
                *id,
            )
        })
}

fn scale_up(
    observed: &Observed,
    goal: &Goal,
    sts: &StatefulSetView,
    leader: &LeaderView,
    health: &Health<'_>,
    v: usize,
    h: usize,
) -> Option<Action> {
    for k in 1..=u64::from(goal.replicas) {
        match leader.members.get(&k) {
            Some(m) if m.voter => continue,
            Some(m) => {
                // Promotion raises the voters by one: the new majority must
                // be within reach of the healthy ones plus this one.
                if !health.caught_up(k) || !health.pod_ready(k) {
                    return Some(wait(
                        WaitReason::CatchingUp,
                        format!(
                            "observer {k} is catching up (lag {}, heard {} ms ago)",
                            m.lag, m.last_heard_ms
                        ),
                    ));
                }
                if h + 1 < quorum(v + 1) {
                    return Some(wait(
                        WaitReason::WaitingForHealthyMembers,
                        format!(
                            "promoting {k} needs {} healthy voters; {h} are",
                            quorum(v + 1) - 1
                        ),
                    ));
                }
                return Some(change(Change::Promote, k));
            }
            None => {
                if k > u64::from(sts.replicas) {
                    // Before the pods exist: volumes left by an earlier
                    // scale-down go first, so that no member starts on a
                    // stale log (T6); with Retain they are kept and the node
                    // catches up as an observer.
                    if goal.delete_claims_on_scale_down
                        && let Some((id, claims)) = observed.claims.iter().find(|(id, c)| {
                            **id > u64::from(sts.replicas)
                                && **id <= u64::from(goal.replicas)
                                && !c.is_empty()
                                && !observed.pods.contains_key(id)
                        })
                    {
                        return Some(Action::DeleteClaims {
                            id: *id,
                            claims: claims.clone(),
                        });
                    }
                    return Some(Action::ScaleStatefulSet {
                        replicas: goal.replicas,
                    });
                }
                let reporting = observed.nodes.get(&k).is_some_and(|n| n.node_id == k);
                let pod_up = observed.pods.get(&k).is_some_and(|p| !p.terminating);
                if !reporting || !pod_up {
                    return Some(wait(
                        WaitReason::WaitingForPod,
                        format!("waiting for pod of node {k} to answer Status"),
                    ));
                }
                return Some(change(Change::AddObserver, k));
            }
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn roll(
    observed: &Observed,
    goal: &Goal,
    leader: &LeaderView,
    health: &Health<'_>,
    voters: &[NodeId],
    h: usize,
    outdated: &dyn Fn(&PodView) -> bool,
) -> Option<Action> {
    let stale: Vec<NodeId> = observed
        .pods
        .iter()
        .filter(|(_, p)| outdated(p))
        .map(|(id, _)| *id)
        .collect();
    if stale.is_empty() {
        return None;
    }
    // A restarted pod that never became Ready stops the roll (T12).
    if let Some((id, pod)) = observed
        .pods
        .iter()
        .find(|(_, p)| !outdated(p) && !p.ready && p.age_seconds > goal.pod_ready_timeout_seconds)
    {
        return Some(blocked(
            BlockReason::UpgradeStalled,
            format!(
                "pod of node {id} is not Ready {}s after its restart (timeout {}s): no further restarts until it is, or the spec changes",
                pod.age_seconds, goal.pod_ready_timeout_seconds
            ),
        ));
    }
    if let Some((id, _)) = observed
        .pods
        .iter()
        .find(|(_, p)| !p.ready || p.terminating)
    {
        return Some(wait(
            WaitReason::WaitingForPodReady,
            format!("waiting for pod of node {id} to be Ready before the next restart"),
        ));
    }
    let v = voters.len();
    if h < v {
        return Some(wait(
            WaitReason::WaitingForHealthyMembers,
            format!("{h} of {v} voters are healthy; restarts wait for all"),
        ));
    }
    let is_voter = |id: &NodeId| leader.members.get(id).is_some_and(|m| m.voter);
    // Observers and pods outside the configuration first.
    if let Some(id) = stale.iter().find(|id| !is_voter(id)) {
        return delete(observed, *id, RestartReason::Observer);
    }
    // Then followers, most lagged first.
    let mut followers: Vec<NodeId> = stale
        .iter()
        .copied()
        .filter(|id| is_voter(id) && *id != leader.id)
        .collect();
    followers.sort_by_key(|id| {
        (
            std::cmp::Reverse(leader.members.get(id).map_or(0, |m| m.lag)),
            std::cmp::Reverse(*id),
        )
    });
    if let Some(id) = followers.first() {
        if h - 1 < quorum(v) {
            return Some(blocked(
                BlockReason::InsufficientHealthyMembers,
                format!(
                    "restarting voter {id} would leave {} healthy of {v} voters; a majority needs {}",
                    h - 1,
                    quorum(v)
                ),
            ));
        }
        return delete(observed, *id, RestartReason::Follower);
    }
    // The leader last: hand off to an updated, caught-up voter first (T14).
    if v <= 1 {
        return delete(observed, leader.id, RestartReason::SingleNode);
    }
    let updated = |id: NodeId| observed.pods.get(&id).is_some_and(|p| !outdated(p));
    Some(match transfer_target(health, voters, leader.id, updated) {
        Some(to) => Action::TransferLeadership {
            from: leader.id,
            to,
        },
        None => wait(
            WaitReason::WaitingForHealthyMembers,
            "no updated voter is caught up to take over from the leader",
        ),
    })
}

fn delete(observed: &Observed, id: NodeId, reason: RestartReason) -> Option<Action> {
    observed.pods.get(&id).map(|pod| Action::DeletePod {
        id,
        uid: pod.uid.clone(),
        reason,
    })
}
