//! The reconcile loop: observe → validate → build → server-side apply (one
//! field manager) → plan exactly one action → act → write status (always)
//! → requeue. Everything that decides lives in `build`, `planner` and
//! `status`; this module only reads and writes the world.

mod kube_io;
mod observe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource as _, ResourceExt as _};
use tracing::{info, warn};

pub use kube_io::KubeIo;
pub use observe::{World, observe_nodes};

use crate::admin::{self, AdminError};
use crate::build::{BuildContext, Names, Recorded, SpecError, TlsSecretNames, build_all};
use crate::crd::{BootstrapRecord, CoordinationEnsemble, CoordinationEnsembleStatus};
use crate::metrics::Metrics;
use crate::planner::{self, Action, Goal, Health};
use crate::status::{self, BLOCKED, Transition};

/// Label that marks every object the operator manages.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by=synod-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid spec: {0}")]
    Spec(#[from] SpecError),
    #[error("node Admin API: {0}")]
    Admin(#[from] AdminError),
    #[error("the resource has no {0}")]
    Missing(&'static str),
    #[error(
        "Secret {name} not found (cert-manager has not written it yet, or spec.tls.secrets names a Secret that does not exist)"
    )]
    SecretMissing { name: String },
    #[error("Secret {name} has no {key}")]
    SecretKeyMissing { name: String, key: &'static str },
}

impl Error {
    /// A short label for the failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Spec(_) => "spec",
            Error::Admin(e) => e.kind(),
            Error::Missing(_) => "missing",
            Error::SecretMissing { .. } | Error::SecretKeyMissing { .. } => "secret",
        }
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub build: BuildContext,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, build: BuildContext) -> Self {
        let reporter = Reporter {
            controller: "synod-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            build,
        }
    }
}

/// The goal the planner works toward, from the spec.
pub fn goal(ce: &CoordinationEnsemble) -> Goal {
    let spec = &ce.spec;
    let election = spec.config.election_timeout_ms.unwrap_or(1_000);
    Goal {
        replicas: u32::try_from(spec.replicas.max(0)).unwrap_or(0),
        paused: spec.paused,
        delete_claims_on_scale_down: spec.storage.reclaim_on_scale_down
            == crate::crd::ReclaimOnScaleDown::Delete,
        max_lag: spec.upgrade.max_lag_for_promotion,
        heard_within_ms: election.saturating_mul(2),
        pod_ready_timeout_seconds: spec.upgrade.pod_ready_timeout_seconds,
    }
}

/// How soon to look again after an action.
pub fn requeue_after(action: &Action) -> Duration {
    match action {
        _ if action.mutates() => Duration::from_secs(2),
        Action::Wait { .. } => Duration::from_secs(5),
        Action::Blocked { .. } => Duration::from_secs(30),
        // Ensemble health changes without any Kubernetes event.
        _ => Duration::from_secs(60),
    }
}

/// One reconcile of one resource.
pub async fn reconcile(ce: Arc<CoordinationEnsemble>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&ce, &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    if let Err(e) = &result {
        ctx.metrics.failed(e.kind());
    }
    result
}

async fn reconcile_inner(ce: &CoordinationEnsemble, ctx: &Context) -> Result<Requeue, Error> {
    let io = KubeIo::new(ctx.client.clone(), ce)?;
    let key = format!("{}/{}", io.namespace, io.name);

    // Observe the Kubernetes side.
    let world = io.observe().await?;
    let mut recorded = Recorded::from_status(ce, world.statefulset_replicas());

    // Build (pure). A spec that cannot be built is refused, not obeyed.
    let owned = match build_all(ce, &recorded, &ctx.build) {
        Ok(owned) => owned,
        Err(e) => {
            let mut new_status = ce.status.clone().unwrap_or_default();
            let (conditions, transitions) = status::merge(
                &new_status.conditions,
                vec![status::Desired {
                    type_: BLOCKED,
                    status: true,
                    reason: "InvalidSpec".into(),
                    message: e.to_string(),
                }],
                &now(),
                ce.metadata.generation,
            );
            merge_conditions(&mut new_status, conditions);
            new_status.observed_generation = ce.metadata.generation;
            io.write_status(&new_status).await?;
            publish(ctx, ce, &transitions).await;
            ctx.metrics.set_blocked(&key, Some("InvalidSpec"));
            // Nothing changes until the spec does (which triggers anyway).
            return Ok(Requeue::requeue(Duration::from_secs(300)));
        }
    };

    // Apply every owned object (server-side apply, one field manager);
    // a paused ensemble gets no writes but its status. A failed apply is
    // reported in the status, and nothing is planned on top of it.
    let applied = if ce.spec.paused {
        Ok(())
    } else {
        io.apply(&owned).await
    };

    // Observe the nodes: over mutual TLS with the operator's admin
    // certificate if the ensemble has TLS. Until its Secrets exist no node
    // can be asked, and the status says why.
    let names = Names::of(ce)?;
    let (nodes, credentials_error) = match &ce.spec.tls {
        None => (observe_nodes(&world, &names, None).await, None),
        Some(tls) => match io.admin_credentials(&TlsSecretNames::of(&names, tls)).await {
            Ok(credentials) => (
                observe_nodes(&world, &names, Some(&credentials)).await,
                None,
            ),
            Err(e) => {
                warn!(ensemble = %io.name, namespace = %io.namespace, error = %e, "no admin credentials: the nodes cannot be asked");
                (observe::NodeStatuses::default(), Some(e))
            }
        },
    };
    let mut observed = world.to_observed(&nodes);
    let mut new_status = ce.status.clone().unwrap_or_default();
    if new_status.bootstrap_voters.is_empty() {
        new_status.bootstrap_voters = (1..=u64::from(recorded.bootstrap_voters)).collect();
    }
    if new_status.bootstrap.is_none()
        && let Some(leader) = nodes.leader()
        && admin::every_voter_bound(leader)
    {
        // The ensemble formed and the leader bound every voter to its
        // incarnation (or it was adopted with its data, T19): from now on a
        // pod with an empty directory starts `existing`.
        new_status.bootstrap = Some(BootstrapRecord {
            formed_at: now(),
            cluster_id: (leader.cluster_id != 0).then(|| format!("{:016x}", leader.cluster_id)),
        });
        recorded.bootstrapped = true;
        if !ce.spec.paused {
            io.apply_state_config_map(ce, &recorded).await?;
        }
    }
    observed.bootstrapped = new_status.bootstrap.is_some();

    // Plan exactly one action, then act.
    let goal = goal(ce);
    let (action, acted) = match applied {
        Ok(()) => {
            let action = planner::plan(&observed, &goal);
            let acted = act(ctx, &io, ce, &recorded, &nodes, &action).await;
            (action, acted)
        }
        Err(e) => (Action::Idle { paused: false }, Err(e)),
    };

    // Status, always (even when acting failed).
    let health = observed
        .leader
        .as_ref()
        .map(|leader| Health::new(&observed, &goal, leader));
    fill_status(
        &mut new_status,
        ce,
        &io,
        &world,
        &observed,
        health.as_ref(),
        &action,
    );
    let mut desired = status::desired_conditions(&observed, health.as_ref(), &action);
    if let Some(e) = &credentials_error {
        for d in desired
            .iter_mut()
            .filter(|d| d.type_ == status::PROGRESSING)
        {
            d.status = false;
            d.reason = "AdminCredentialsUnavailable".into();
            d.message = e.to_string();
        }
    }
    if let Err(e) = &acted {
        // The step did not happen: say so instead of the plan.
        for d in desired
            .iter_mut()
            .filter(|d| d.type_ == status::PROGRESSING)
        {
            d.status = false;
            d.reason = if action.mutates() {
                "ActionFailed"
            } else {
                "ApplyFailed"
            }
            .into();
            d.message = e.to_string();
        }
    }
    let (conditions, transitions) = status::merge(
        &new_status.conditions,
        desired,
        &now(),
        ce.metadata.generation,
    );
    merge_conditions(&mut new_status, conditions);
    io.write_status(&new_status).await?;
    publish(ctx, ce, &transitions).await;
    ctx.metrics.set_blocked(
        &key,
        match &action {
            Action::Blocked { reason, .. } => Some(status::block_reason(*reason)),
            _ => None,
        },
    );
    acted?;
    Ok(Requeue::requeue(requeue_after(&action)))
}

fn merge_conditions(status: &mut CoordinationEnsembleStatus, new: Vec<crate::crd::Condition>) {
    for condition in new {
        match status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == condition.type_)
        {
            Some(old) => *old = condition,
            None => status.conditions.push(condition),
        }
    }
}

fn fill_status(
    status: &mut CoordinationEnsembleStatus,
    ce: &CoordinationEnsemble,
    io: &KubeIo,
    world: &World,
    observed: &planner::Observed,
    health: Option<&Health<'_>>,
    action: &Action,
) {
    status.observed_generation = ce.metadata.generation;
    status.cluster_name = Some(ce.cluster_name());
    status.replicas = world
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref()?.replicas);
    status.ready_replicas = world
        .statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref()?.ready_replicas);
    status.current_revision = world
        .statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref()?.current_revision.clone());
    status.update_revision = world
        .statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref()?.update_revision.clone());
    if action.mutates() {
        status.last_action = Some(status::describe(action));
    }
    let Some((leader, health)) = observed.leader.as_ref().zip(health) else {
        status.leader = None;
        return;
    };
    status.leader = Some(crate::crd::LeaderRef {
        id: leader.id,
        pod: io.pod_name(leader.id),
    });
    status.voters = health.voters();
    status.voter_count = i32::try_from(status.voters.len()).ok();
    status.observers = leader
        .members
        .iter()
        .filter(|(_, m)| !m.voter)
        .map(|(id, _)| *id)
        .collect();
    status.members = leader
        .members
        .iter()
        .map(|(id, m)| crate::crd::MemberStatus {
            id: *id,
            pod: io.pod_name(*id),
            voter: m.voter,
            role: if *id == leader.id {
                "leader"
            } else if m.voter {
                "follower"
            } else {
                "observer"
            }
            .into(),
            ready: observed.pods.get(id).is_some_and(|p| p.ready),
            caught_up: health.caught_up(*id),
            foreign_incarnation: m.foreign_incarnation,
        })
        .collect();
}

/// Carries out the one action.
async fn act(
    ctx: &Context,
    io: &KubeIo,
    ce: &CoordinationEnsemble,
    recorded: &Recorded,
    nodes: &observe::NodeStatuses,
    action: &Action,
) -> Result<(), Error> {
    if !action.mutates() {
        return Ok(());
    }
    info!(ensemble = %io.name, namespace = %io.namespace, ?action, "acting");
    let label = status::action_reason(action);
    match action {
        Action::ScaleStatefulSet { replicas } => {
            let scaled = Recorded {
                statefulset_replicas: i32::try_from(*replicas).unwrap_or(i32::MAX),
                ..recorded.clone()
            };
            let owned = build_all(ce, &scaled, &ctx.build)?;
            io.apply_statefulset(&owned.statefulset).await?;
        }
        Action::ChangeMembership { change, id } => {
            let leader = nodes
                .leader_target()
                .ok_or(Error::Missing("leader address"))?;
            let outcome = admin::change_membership(&leader, *change, *id).await?;
            info!(ensemble = %io.name, ?change, id, slot = outcome.slot, already_done = outcome.already_done, "membership change committed");
        }
        Action::TransferLeadership { to, .. } => {
            let leader = nodes
                .leader_target()
                .ok_or(Error::Missing("leader address"))?;
            admin::transfer_leadership(&leader, *to).await?;
        }
        Action::DeletePod { id, uid, .. } => {
            io.delete_pod(&io.pod_name(*id), uid).await?;
        }
        Action::DeleteClaims { claims, .. } => {
            for claim in claims {
                io.delete_claim(&claim.name, &claim.uid).await?;
            }
        }
        Action::Idle { .. } | Action::Wait { .. } | Action::Blocked { .. } => {}
    }
    ctx.metrics.acted(label);
    Ok(())
}

/// One event per condition transition.
async fn publish(ctx: &Context, ce: &CoordinationEnsemble, transitions: &[Transition]) {
    let reference = ce.object_ref(&());
    for t in transitions {
        let event = Event {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            note: Some(format!(
                "{}={}: {}",
                t.type_,
                if t.status { "True" } else { "False" },
                t.message
            )),
            action: t.type_.to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, "cannot publish an event");
        }
    }
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Retry soon on an error; the next reconcile observes again from scratch.
pub fn error_policy(ce: Arc<CoordinationEnsemble>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    warn!(ensemble = %ce.name_any(), error = %error, "reconcile failed");
    Requeue::requeue(Duration::from_secs(10))
}

/// Runs the controller until SIGTERM; `namespace` limits it to one.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (ensembles, statefulsets, pods) = match &namespace {
        Some(ns) => (
            Api::<CoordinationEnsemble>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let managed = watcher::Config::default().labels(MANAGED_BY);
    Controller::new(ensembles, watcher::Config::default().any_semantic())
        .owns(statefulsets, managed.clone())
        // Pods belong to the StatefulSet, not to the resource: map them
        // back by their instance label.
        .watches(pods, managed, |pod: Pod| {
            let name = pod.labels().get("app.kubernetes.io/instance")?.clone();
            let ns = pod.namespace()?;
            Some(ObjectRef::<CoordinationEnsemble>::new(&name).within(&ns))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller");
            }
        })
        .await;
}
