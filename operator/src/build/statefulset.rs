//! The StatefulSet of node pods: `Parallel` (a fresh ensemble needs every
//! pod up before any is Ready, T10), `OnDelete` (the operator chooses the
//! restart order, T12–T14), one volume claim template for the log and one for
//! snapshots, HTTP probes only (no probe or hook touches membership, T23).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ADMIN_PORT, BuildContext, CLIENT_PORT, CONFIG_DIR, CONFIG_HASH_ANNOTATION, CONFIG_KEY,
    DATA_DIR, HTTP_PORT, INITIAL_STATE_KEY, Names, PEER_PORT, Recorded, SNAPSHOT_MOUNT, SpecError,
    labels, metadata, selector_labels, tls,
};
use crate::crd::{AntiAffinityType, CoordinationEnsemble, ReclaimOnDelete, VolumeSpec};

/// The node's defaults when the spec leaves them unset (node/src/config.rs).
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 2_000;
const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1_000;

/// Unprivileged user of the node image (the distroless `nonroot` uid).
const NODE_UID: i64 = 65_532;

const STARTUP_PERIOD_SECONDS: i32 = 5;

pub fn statefulset(
    ce: &CoordinationEnsemble,
    recorded: &Recorded,
    ctx: &BuildContext,
    config_hash: &str,
) -> Result<StatefulSet, SpecError> {
    let names = Names::of(ce)?;
    let spec = &ce.spec;
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(labels(&names, "node"));
    let mut annotations = spec.pod.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());

    let retention = match spec.storage.reclaim_on_delete {
        ReclaimOnDelete::Retain => "Retain",
        ReclaimOnDelete::Delete => "Delete",
    };
    Ok(StatefulSet {
        metadata: metadata(ce, &names, names.statefulset(), "node"),
        spec: Some(StatefulSetSpec {
            replicas: Some(recorded.statefulset_replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names)),
                ..LabelSelector::default()
            },
            service_name: Some(names.peer_service()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // whenScaled Retain: a scale-down by hand outside the operator
            // loses no member's data; the operator deletes a removed
            // member's volumes itself, after the removal committed (T6, T7).
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some(retention.into()),
                },
            ),
            revision_history_limit: Some(10),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(ce, &names, ctx)?),
            },
            volume_claim_templates: Some(vec![
                claim_template(&names, "log", &spec.storage.log),
                claim_template(&names, "snapshot", &spec.storage.snapshot),
            ]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn claim_template(names: &Names, name: &str, volume: &VolumeSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            // The operator lists a member's volumes by these labels.
            labels: Some(selector_labels(names)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: volume.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(volume.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Seconds the kubelet waits after SIGTERM: a leader first hands off (at most
/// two election timeouts), then clients get the shutdown grace; plus margin
/// for the process to flush and exit (docs/operations.md, "Stopping").
pub fn termination_grace_seconds(ce: &CoordinationEnsemble) -> i64 {
    let config = &ce.spec.config;
    let grace = config
        .shutdown_grace_ms
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);
    let election = config
        .election_timeout_ms
        .unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS);
    let total_ms = grace.saturating_add(election.saturating_mul(2));
    i64::try_from(total_ms.div_ceil(1000))
        .unwrap_or(i64::MAX / 2)
        .saturating_add(10)
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn pod_spec(
    ce: &CoordinationEnsemble,
    names: &Names,
    ctx: &BuildContext,
) -> Result<PodSpec, SpecError> {
    let spec = &ce.spec;
    let image_spec = spec.image.clone().unwrap_or_default();
    let repository = image_spec
        .repository
        .unwrap_or_else(|| ctx.default_image_repository.clone());
    let tag = spec
        .version
        .clone()
        .unwrap_or_else(|| ctx.default_version.clone());
    // The startup probe covers recovery (snapshot load + log replay), when
    // the HTTP endpoint is not listening yet; liveness starts after it.
    let startup_failures = i32::try_from(
        spec.upgrade
            .startup_timeout_seconds
            .div_ceil(STARTUP_PERIOD_SECONDS as u64),
    )
    .unwrap_or(i32::MAX);
    let mut args = vec![
        "serve".to_owned(),
        "--config".to_owned(),
        format!("{CONFIG_DIR}/{CONFIG_KEY}"),
    ];
    args.extend(tls::node_args(ce));
    let mut ports = vec![
        port("client", CLIENT_PORT),
        port("peer", PEER_PORT),
        port("http", HTTP_PORT),
    ];
    ports.extend(
        tls::zookeeper_ports(ce)
            .into_iter()
            .map(|(name, number)| port(name, number)),
    );
    // The operator finds a pod's admin port by this name.
    ports.push(port("admin", ADMIN_PORT));
    let (tls_volumes, tls_mounts) = tls::volumes(ce)?;
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "log".into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "snapshot".into(),
            mount_path: SNAPSHOT_MOUNT.into(),
            ..VolumeMount::default()
        },
    ];
    mounts.extend(tls_mounts);
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config_map(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(tls_volumes);

    let container = Container {
        name: "synod".into(),
        image: Some(format!("{repository}:{tag}")),
        image_pull_policy: image_spec.pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "SYNOD_INITIAL_CLUSTER_STATE".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: names.state_config_map(),
                    key: INITIAL_STATE_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(ports),
        // The node's last log lines become the termination message, which
        // is how the operator learns that a node refused its volume.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        startup_probe: Some(http_probe(
            "/healthz",
            STARTUP_PERIOD_SECONDS,
            startup_failures.max(1),
        )),
        resources: spec.resources.as_ref().map(|r| ResourceRequirements {
            requests: quantities(&r.requests),
            limits: quantities(&r.limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    Ok(PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(termination_grace_seconds(ce)),
        // The node never calls the Kubernetes API.
        automount_service_account_token: Some(false),
        service_account_name: spec.pod.service_account_name.clone(),
        priority_class_name: spec.pod.priority_class_name.clone(),
        node_selector: (!spec.pod.node_selector.is_empty()).then(|| spec.pod.node_selector.clone()),
        image_pull_secrets: (!image_spec.pull_secrets.is_empty()).then(|| {
            image_spec
                .pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NODE_UID),
            run_as_group: Some(NODE_UID),
            fs_group: Some(NODE_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        affinity: anti_affinity(ce, names),
        ..PodSpec::default()
    })
}

fn quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

fn anti_affinity(ce: &CoordinationEnsemble, names: &Names) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(names)),
            ..LabelSelector::default()
        }),
        topology_key: ce.spec.anti_affinity.topology_key.clone(),
        ..PodAffinityTerm::default()
    };
    let anti = match ce.spec.anti_affinity.kind {
        AntiAffinityType::None => return None,
        AntiAffinityType::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..PodAntiAffinity::default()
        },
        AntiAffinityType::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    })
}
