//! The `CoordinationEnsemble` resource (group `synod.io`, `v1alpha1`): its
//! spec, its status and the CEL rules the API server enforces at admission.
//! This type is the single source of truth for `crds/coordinationensemble.yaml`
//! (written by `synod-operator crdgen`, checked for drift by a test).

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod tls;

pub use tls::{ClientCertsMode, IssuerKind, IssuerRef, TlsSecrets, TlsSpec};

/// API group of the resource.
pub const GROUP: &str = "synod.io";

/// A Synod ensemble: a StatefulSet of `synod serve` pods that replicate over
/// stable DNS names, whose membership the operator changes one committed step
/// at a time through the Admin API.
// clippy reads the repeated `printcolumn(type_ = ...)` arguments of the
// derive as duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "synod.io",
    version = "v1alpha1",
    kind = "CoordinationEnsemble",
    namespaced,
    shortname = "ce",
    status = "CoordinationEnsembleStatus",
    derive = "PartialEq",
    doc = "A Synod ensemble managed by the Synod operator",
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired voters (and pods)"
    ),
    printcolumn(
        name = "Voters",
        type_ = "integer",
        json_path = ".status.voterCount",
        description = "Voters in the committed configuration"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader.pod",
        description = "Pod of the current leader"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready pods"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// Transition rules (need `oldSelf`, so they sit on the spec, which always
// exists). Absent optional fields are compared as '' so that adding or
// dropping them also counts as a change.
#[x_kube(
    validation = Rule::new("!(oldSelf.replicas >= 3 && self.replicas < 3)").message("replicas cannot shrink to 1 from 3 or more: the remaining node would have to take over alone; scale down one step at a time to 3"),
    validation = Rule::new("(has(self.clusterName) ? self.clusterName : '') == (has(oldSelf.clusterName) ? oldSelf.clusterName : '')").message("clusterName is immutable: the data directories are bound to it"),
    validation = Rule::new("(has(self.storage) && has(self.storage.log) && has(self.storage.log.storageClassName) ? self.storage.log.storageClassName : '') == (has(oldSelf.storage) && has(oldSelf.storage.log) && has(oldSelf.storage.log.storageClassName) ? oldSelf.storage.log.storageClassName : '')").message("storage.log.storageClassName is immutable (volumeClaimTemplates cannot change)"),
    validation = Rule::new("(has(self.storage) && has(self.storage.snapshot) && has(self.storage.snapshot.storageClassName) ? self.storage.snapshot.storageClassName : '') == (has(oldSelf.storage) && has(oldSelf.storage.snapshot) && has(oldSelf.storage.snapshot.storageClassName) ? oldSelf.storage.snapshot.storageClassName : '')").message("storage.snapshot.storageClassName is immutable (volumeClaimTemplates cannot change)"),
    validation = Rule::new("has(self.tls) == has(oldSelf.tls)").message("tls cannot be added or removed on an existing ensemble: members with and without TLS cannot talk to each other while the pods roll"),
)]
#[serde(rename_all = "camelCase")]
pub struct CoordinationEnsembleSpec {
    /// Desired voters, and pods: 1, 3, 5, 7 or 9. Even sizes tolerate no more
    /// failures than the odd size below them and are refused.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self % 2 == 1").message("replicas must be odd (1, 3, 5, 7 or 9)"))]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// Synod version: the node image tag. Changing it rolls the pods,
    /// followers first and the leader last. Default: the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Where the node image comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,

    /// The ensemble's name, passed to every node as `--cluster` and written
    /// into each data directory; immutable. Default: `<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster_name: Option<String>,

    /// DNS suffix of the cluster (e.g. `cluster.local`). Unset: peers use
    /// relative `<pod>.<service>.<namespace>.svc` names, which resolve
    /// through the pod's search path whatever the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,

    /// Node settings rendered into the `--config` TOML file.
    #[serde(default)]
    pub config: NodeSettings,

    /// Persistent volumes for the write-ahead log and the snapshots.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Container resources of each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Pod-level settings passed through to every node pod.
    #[serde(default)]
    pub pod: PodSettings,

    /// Default pod anti-affinity between the ensemble's pods.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,

    /// The PodDisruptionBudget over all the ensemble's pods.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,

    /// The client Service (gRPC 7000, ZooKeeper 2181; ready pods only).
    #[serde(default)]
    pub service: ServiceSpec,

    /// Prometheus Operator integration.
    #[serde(default)]
    pub monitoring: Monitoring,

    /// TLS on every node port and mutual TLS for peers and the Admin API,
    /// with certificates from cert-manager or existing Secrets. Fixed at
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Gates of scale-up and rolling restarts.
    #[serde(default)]
    pub upgrade: UpgradeSpec,

    /// Take no mutating action (status is still written).
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// Image source of the node pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Repository without tag. Default: the operator's `--node-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of Secrets in the namespace used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A typed subset of `synod serve` settings; anything else goes in `extra`.
/// Unset fields keep the node's defaults. Heartbeat and election timeout
/// must be equal on every node: a change rolls the pods one at a time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub heartbeat_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub election_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub request_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tick_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub snapshot_every_txns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_snapshots: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_data_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions: Option<u64>,
    /// How long a stopping node gives clients; the pod's
    /// terminationGracePeriodSeconds is derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// Other `synod serve` flags by name (without `--`), as strings. Flags
    /// the operator owns (addresses, directories, peers, cluster) are
    /// refused with a Blocked condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The two volumes of each member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    #[serde(default = "default_log_volume")]
    pub log: VolumeSpec,
    #[serde(default = "default_snapshot_volume")]
    pub snapshot: VolumeSpec,
    /// What happens to a removed member's volumes once it is out of the
    /// committed configuration and its pod is gone.
    #[serde(default)]
    pub reclaim_on_scale_down: ReclaimOnScaleDown,
    /// What happens to the volumes when the resource is deleted (the
    /// StatefulSet's `persistentVolumeClaimRetentionPolicy.whenDeleted`).
    #[serde(default)]
    pub reclaim_on_delete: ReclaimOnDelete,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            log: default_log_volume(),
            snapshot: default_snapshot_volume(),
            reclaim_on_scale_down: ReclaimOnScaleDown::default(),
            reclaim_on_delete: ReclaimOnDelete::default(),
        }
    }
}

fn default_log_volume() -> VolumeSpec {
    VolumeSpec {
        size: "2Gi".into(),
        storage_class_name: None,
    }
}

fn default_snapshot_volume() -> VolumeSpec {
    VolumeSpec {
        size: "4Gi".into(),
        storage_class_name: None,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size, a Kubernetes quantity such as `10Gi`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')").message("size must be a quantity such as 10Gi"))]
    pub size: String,
    /// Storage class; unset uses the cluster's default. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimOnScaleDown {
    #[default]
    Delete,
    Retain,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimOnDelete {
    #[default]
    Retain,
    Delete,
}

/// Container resources as quantities (`cpu: "500m"`, `memory: 1Gi`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Pod-level pass-through settings (a trimmed, typed subset).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Extra labels on the pods (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    #[serde(default, rename = "type")]
    pub kind: AntiAffinityType,
    #[serde(default = "default_topology_key")]
    pub topology_key: String,
}

impl Default for AntiAffinity {
    fn default() -> Self {
        AntiAffinity {
            kind: AntiAffinityType::default(),
            topology_key: default_topology_key(),
        }
    }
}

fn default_topology_key() -> String {
    "kubernetes.io/hostname".into()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AntiAffinityType {
    #[default]
    Preferred,
    Required,
    None,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PdbSpec {
    fn default() -> Self {
        PdbSpec { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create a `monitoring.coreos.com/v1` ServiceMonitor for `:7200/metrics`
    /// (needs the Prometheus Operator's CRDs).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Labels on the ServiceMonitor (for the Prometheus selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        ServiceMonitorSpec {
            enabled: false,
            interval: default_interval(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_interval() -> String {
    "30s".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// A restarted pod that is not Ready after this long stops the rolling
    /// restart (`Blocked`, reason `UpgradeStalled`) until the spec changes.
    #[serde(default = "default_pod_ready_timeout")]
    #[schemars(range(min = 10))]
    pub pod_ready_timeout_seconds: u64,
    /// An observer is promoted, and a voter counts as caught up, only while
    /// the leader reports its lag at most this many log entries.
    #[serde(default = "default_max_lag")]
    pub max_lag_for_promotion: u64,
    /// How long the startup probe lets a node recover (load its snapshot,
    /// replay its log) before liveness checks start.
    #[serde(default = "default_startup_timeout")]
    #[schemars(range(min = 10))]
    pub startup_timeout_seconds: u64,
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        UpgradeSpec {
            pod_ready_timeout_seconds: default_pod_ready_timeout(),
            max_lag_for_promotion: default_max_lag(),
            startup_timeout_seconds: default_startup_timeout(),
        }
    }
}

fn default_pod_ready_timeout() -> u64 {
    600
}

// The node refuses a promotion beyond `--max-batch-txns` (4096) of lag
// anyway (docs/consensus.md); asking for less keeps the window short.
fn default_max_lag() -> u64 {
    1000
}

fn default_startup_timeout() -> u64 {
    900
}

/// What the operator observed and decided, written on every reconcile.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CoordinationEnsembleStatus {
    /// The spec generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Progressing, Degraded, Blocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `--cluster` value in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The ids given in `--peers`, recorded at the first reconcile and never
    /// changed: scaling never changes the pod template (T11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_voters: Vec<u64>,
    /// Set once, when a leader first reported every voter bound to its
    /// incarnation (the ensemble formed, or was adopted with its data): from
    /// then on pods start with `--initial-cluster-state existing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapRecord>,
    /// Committed voters and observers, from the leader.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<u64>,
    /// Number of voters (for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// The last action taken, for humans; the planner never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
}

/// The ensemble formed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRecord {
    /// When the operator first saw every voter bound (RFC 3339).
    pub formed_at: String,
    /// The ensemble's cluster id (16 hex digits) once a node reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRef {
    pub id: u64,
    pub pod: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub id: u64,
    pub pod: String,
    pub voter: bool,
    /// leader, follower or observer.
    pub role: String,
    pub ready: bool,
    /// The leader reports it within `upgrade.maxLagForPromotion` and heard
    /// from recently. (Lag and commit index themselves are not recorded:
    /// they change with every write, and each status change would trigger
    /// another reconcile; `synodctl member list` shows them.)
    pub caught_up: bool,
    /// The member came back with another data directory than the one the
    /// configuration binds (a wiped disk): it must be removed and re-added.
    #[serde(default)]
    pub foreign_incarnation: bool,
}

/// A `metav1.Condition` (kept local so that the schema stays small and the
/// CRD does not depend on the k8s-openapi `schemars` feature).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML, as `crdgen` writes it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let crd = CoordinationEnsemble::crd();
    let body = serde_yaml_ng::to_string(&crd)?;
    Ok(format!(
        "# Generated by `synod-operator crdgen` from operator/src/crd.rs; do not edit.\n{body}"
    ))
}

impl CoordinationEnsemble {
    /// The `--cluster` name: the spec's, else `<namespace>.<name>`.
    pub fn cluster_name(&self) -> String {
        if let Some(name) = &self.spec.cluster_name {
            return name.clone();
        }
        format!(
            "{}.{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}
