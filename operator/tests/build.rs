//! The builders: targeted assertions for the failure stories they prevent
//! (T9, T10, T11, T17, T23) and property tests over random valid specs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use synod_operator::build::{
    BuildContext, CONFIG_HASH_ANNOTATION, Names, Recorded, SpecError, build_all, node_config,
    selector_labels, termination_grace_seconds,
};
use synod_operator::crd::{
    AntiAffinityType, CoordinationEnsemble, CoordinationEnsembleSpec, ReclaimOnDelete,
};

fn ensemble(yaml_spec: &str) -> CoordinationEnsemble {
    let text = format!(
        "apiVersion: synod.io/v1alpha1\nkind: CoordinationEnsemble\nmetadata:\n  name: demo\n  namespace: ns\n  uid: 6f1c-uid\nspec:\n{yaml_spec}"
    );
    serde_yaml_ng::from_str(&text).expect("valid test resource")
}

fn objects(ce: &CoordinationEnsemble) -> Vec<serde_json::Value> {
    build_all(ce, &Recorded::initial(ce), &BuildContext::default())
        .expect("builds")
        .to_values()
        .expect("serializes")
}

#[test]
fn no_cluster_local_unless_asked_and_the_domain_when_asked() {
    // T9: relative names by default.
    let plain = ensemble("  replicas: 3\n");
    let text = serde_json::to_string(&objects(&plain)).expect("json");
    assert!(!text.contains("cluster.local"), "{text}");
    let config = node_config(&plain, &Recorded::initial(&plain)).expect("config");
    assert!(
        config.contains(r#"peer-address-template = "demo-{ordinal}.demo-peers.ns.svc:7100""#),
        "{config}"
    );
    // A given domain is used everywhere a peer is named.
    let corp = ensemble("  replicas: 3\n  clusterDomain: corp.internal\n");
    let config = node_config(&corp, &Recorded::initial(&corp)).expect("config");
    assert!(
        config.contains("demo-{ordinal}.demo-peers.ns.svc.corp.internal:7100"),
        "{config}"
    );
    assert!(
        config.contains("1=demo-0.demo-peers.ns.svc.corp.internal:7100"),
        "{config}"
    );
    assert!(
        !serde_json::to_string(&objects(&corp))
            .expect("json")
            .contains("cluster.local")
    );
}

#[test]
fn fresh_ensemble_can_form_parallel_and_headless_publishing_not_ready() {
    // T10.
    let ce = ensemble("  replicas: 3\n");
    let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
    let sts = owned.statefulset.spec.expect("spec");
    assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        sts.update_strategy.and_then(|s| s.type_).as_deref(),
        Some("OnDelete")
    );
    assert_eq!(sts.service_name.as_deref(), Some("demo-peers"));
    let peers = owned.peer_service.spec.expect("spec");
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers.publish_not_ready_addresses, Some(true));
    let client = owned.client_service.spec.expect("spec");
    assert_eq!(
        client.publish_not_ready_addresses, None,
        "clients reach ready pods only"
    );
    let ports: Vec<i32> = client
        .ports
        .expect("ports")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![7000, 2181]);
}

#[test]
fn bootstrap_peers_come_from_the_record_not_from_replicas() {
    // T11: after bootstrap at 3, asking for 5 changes neither the config nor
    // the pod template.
    let three = ensemble("  replicas: 3\n");
    let five = ensemble("  replicas: 5\n");
    let recorded = Recorded {
        bootstrap_voters: 3,
        bootstrapped: true,
        statefulset_replicas: 3,
    };
    let a = build_all(&three, &recorded, &BuildContext::default()).expect("builds");
    let b = build_all(&five, &recorded, &BuildContext::default()).expect("builds");
    assert_eq!(a.config_map, b.config_map);
    assert_eq!(
        a.statefulset.spec.as_ref().map(|s| &s.template),
        b.statefulset.spec.as_ref().map(|s| &s.template)
    );
}

#[test]
fn initial_cluster_state_flips_without_touching_the_template() {
    let ce = ensemble("  replicas: 3\n");
    let before = Recorded {
        bootstrap_voters: 3,
        bootstrapped: false,
        statefulset_replicas: 3,
    };
    let after = Recorded {
        bootstrapped: true,
        ..before.clone()
    };
    let a = build_all(&ce, &before, &BuildContext::default()).expect("builds");
    let b = build_all(&ce, &after, &BuildContext::default()).expect("builds");
    let state = |o: &synod_operator::build::Owned| {
        o.state_config_map
            .data
            .as_ref()
            .and_then(|d| d.get("initial-cluster-state"))
            .cloned()
    };
    assert_eq!(state(&a).as_deref(), Some("new"));
    assert_eq!(state(&b).as_deref(), Some("existing"));
    assert_eq!(a.config_map, b.config_map);
    assert_eq!(a.statefulset, b.statefulset);
    // The config file never carries it: a file setting would win over the
    // environment variable the pod reads it into.
    let config = node_config(&ce, &after).expect("config");
    assert!(!config.contains("initial-cluster-state"), "{config}");
    let text = serde_json::to_string(&b.statefulset).expect("json");
    assert!(
        text.contains(
            r#""configMapKeyRef":{"key":"initial-cluster-state","name":"demo-bootstrap""#
        ),
        "{text}"
    );
}

#[test]
fn a_config_change_changes_the_template_hash() {
    // T22.
    let a = ensemble("  replicas: 3\n  config:\n    heartbeatMs: 100\n");
    let b = ensemble("  replicas: 3\n  config:\n    heartbeatMs: 50\n");
    let hash = |ce: &CoordinationEnsemble| {
        let owned =
            build_all(ce, &Recorded::initial(ce), &BuildContext::default()).expect("builds");
        owned
            .statefulset
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
            .expect("hash annotation")
    };
    assert_ne!(hash(&a), hash(&b));
    assert_eq!(hash(&a), hash(&a.clone()));
}

#[test]
fn pdb_is_max_unavailable_one_over_all_pods_at_every_size() {
    // T17.
    for n in [1, 3, 5] {
        let ce = ensemble(&format!("  replicas: {n}\n"));
        let owned =
            build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
        let pdb = owned.pdb.expect("pdb on by default").spec.expect("spec");
        assert_eq!(
            serde_json::to_value(&pdb.max_unavailable).expect("json"),
            serde_json::json!(1)
        );
        assert_eq!(pdb.min_available, None);
        assert_eq!(
            pdb.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        let names = Names::of(&ce).expect("names");
        assert_eq!(
            pdb.selector.and_then(|s| s.match_labels),
            Some(selector_labels(&names))
        );
    }
    let off = ensemble("  replicas: 3\n  podDisruptionBudget:\n    enabled: false\n");
    assert!(
        build_all(&off, &Recorded::initial(&off), &BuildContext::default())
            .expect("builds")
            .pdb
            .is_none()
    );
}

#[test]
fn probes_are_http_only_and_no_hook_touches_membership() {
    // T23: no exec probe, no lifecycle hook.
    let ce = ensemble("  replicas: 3\n");
    let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
    let pod = owned
        .statefulset
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    let container = &pod.containers[0];
    assert!(container.lifecycle.is_none());
    // A node's refusal of its volume reaches the operator (T19).
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    for (probe, path) in [
        (&container.readiness_probe, "/readyz"),
        (&container.liveness_probe, "/healthz"),
        (&container.startup_probe, "/healthz"),
    ] {
        let probe = probe.as_ref().expect("probe set");
        assert!(probe.exec.is_none() && probe.grpc.is_none() && probe.tcp_socket.is_none());
        assert_eq!(
            probe.http_get.as_ref().and_then(|h| h.path.as_deref()),
            Some(path)
        );
    }
    // The startup probe gives recovery the configured time.
    let startup = container.startup_probe.as_ref().expect("startup");
    let budget =
        startup.period_seconds.expect("period") * startup.failure_threshold.expect("failures");
    assert!(budget >= 900, "{budget}");
}

#[test]
fn the_pod_hostname_is_the_pod_name_so_the_node_derives_its_id() {
    // The node takes id N+1 from a hostname ending in -N (node/src/config.rs),
    // and the kubelet sets HOSTNAME to the pod name unless the pod spec
    // overrides it: it must not, and no SYNOD_NODE_ID may be pinned in the
    // shared template.
    let ce = ensemble("  replicas: 3\n");
    let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
    let pod = owned
        .statefulset
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    assert!(pod.hostname.is_none() && pod.subdomain.is_none());
    assert_ne!(pod.set_hostname_as_fqdn, Some(true));
    let env = pod.containers[0].env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .all(|e| e.name != "SYNOD_NODE_ID" && e.name != "HOSTNAME"),
        "{env:?}"
    );
    let config = node_config(&ce, &Recorded::initial(&ce)).expect("config");
    assert!(!config.contains("node-id"), "{config}");
}

#[test]
fn termination_grace_exceeds_hand_off_plus_shutdown_grace() {
    let ce = ensemble("  config:\n    shutdownGraceMs: 5000\n    electionTimeoutMs: 3000\n");
    // 5 s + 2 x 3 s = 11 s, plus margin.
    assert!(termination_grace_seconds(&ce) > 11);
    let default = ensemble("  replicas: 3\n");
    assert!(termination_grace_seconds(&default) > 4);
}

#[test]
fn volumes_retention_and_mounts() {
    let ce = ensemble(
        "  storage:\n    log: {size: 3Gi, storageClassName: fast}\n    snapshot: {size: 7Gi}\n    reclaimOnDelete: Delete\n",
    );
    let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
    let sts = owned.statefulset.spec.expect("spec");
    let retention = sts
        .persistent_volume_claim_retention_policy
        .expect("policy");
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    let claims = sts.volume_claim_templates.expect("claims");
    let summary: Vec<(String, Option<String>, String)> = claims
        .iter()
        .map(|c| {
            let spec = c.spec.as_ref().expect("spec");
            let size = spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_default();
            (
                c.metadata.name.clone().unwrap_or_default(),
                spec.storage_class_name.clone(),
                size,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("log".into(), Some("fast".into()), "3Gi".into()),
            ("snapshot".into(), None, "7Gi".into()),
        ]
    );
    assert_eq!(ce.spec.storage.reclaim_on_delete, ReclaimOnDelete::Delete);
}

#[test]
fn owner_references_point_at_the_resource() {
    let ce = ensemble("  replicas: 3\n  monitoring:\n    serviceMonitor:\n      enabled: true\n");
    let objects = objects(&ce);
    assert_eq!(
        objects.len(),
        8,
        "every object, the NetworkPolicy and the ServiceMonitor included"
    );
    for object in objects {
        let owners = &object["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["kind"], "CoordinationEnsemble", "{object}");
        assert_eq!(owners[0]["uid"], "6f1c-uid");
        assert_eq!(owners[0]["controller"], true);
    }
}

#[test]
fn reserved_and_malformed_extra_flags_are_refused() {
    let ce = ensemble("  config:\n    extra:\n      peers: \"1=x:1\"\n");
    assert_eq!(
        node_config(&ce, &Recorded::initial(&ce)),
        Err(SpecError::ReservedFlag("peers".into()))
    );
    let ce = ensemble("  config:\n    extra:\n      initial_cluster_state: new\n");
    assert!(matches!(
        node_config(&ce, &Recorded::initial(&ce)),
        Err(SpecError::ReservedFlag(_))
    ));
    let ce = ensemble("  config:\n    extra:\n      \"Max Children\": \"1\"\n");
    assert!(matches!(
        node_config(&ce, &Recorded::initial(&ce)),
        Err(SpecError::BadFlagName(_))
    ));
    let ce = ensemble("  config:\n    extra:\n      max_children: \"10\"\n");
    assert!(
        node_config(&ce, &Recorded::initial(&ce))
            .expect("config")
            .contains("max-children = \"10\"")
    );
}

fn arb_spec() -> impl Strategy<Value = CoordinationEnsembleSpec> {
    (
        prop::sample::select(vec![1, 3, 5, 7, 9]),
        prop::option::of("[a-z]{1,8}(\\.[a-z]{1,8}){0,2}"),
        prop::option::of(1u64..500),
        prop::sample::select(vec![
            AntiAffinityType::Preferred,
            AntiAffinityType::Required,
            AntiAffinityType::None,
        ]),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..3),
    )
        .prop_map(|(replicas, domain, heartbeat, anti, pdb, sm, pod_labels)| {
            let mut spec: CoordinationEnsembleSpec =
                serde_json::from_value(serde_json::json!({})).expect("defaults");
            spec.replicas = replicas;
            spec.cluster_domain = domain;
            spec.config.heartbeat_ms = heartbeat;
            spec.anti_affinity.kind = anti;
            spec.pod_disruption_budget.enabled = pdb;
            spec.monitoring.service_monitor.enabled = sm;
            spec.pod.labels = pod_labels;
            spec
        })
}

fn with_spec(spec: CoordinationEnsembleSpec) -> CoordinationEnsemble {
    let mut ce = ensemble("  replicas: 3\n");
    ce.spec = spec;
    ce
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

proptest! {
    #[test]
    fn selectors_match_the_pod_labels(spec in arb_spec()) {
        let ce = with_spec(spec);
        let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
        let sts = owned.statefulset.spec.expect("spec");
        let pod_labels = sts.template.metadata.and_then(|m| m.labels).expect("pod labels");
        let sts_selector = sts.selector.match_labels.expect("selector");
        prop_assert!(matches(&sts_selector, &pod_labels));
        for service in [&owned.peer_service, &owned.client_service] {
            let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).expect("selector");
            prop_assert!(matches(&selector, &pod_labels));
        }
        if let Some(pdb) = owned.pdb {
            let selector = pdb.spec.and_then(|s| s.selector).and_then(|s| s.match_labels).expect("selector");
            prop_assert!(matches(&selector, &pod_labels));
        }
        if let Some(sm) = owned.service_monitor {
            let selector: BTreeMap<String, String> =
                serde_json::from_value(sm["spec"]["selector"]["matchLabels"].clone()).expect("labels");
            let peer_labels = owned.peer_service.metadata.labels.clone().expect("labels");
            prop_assert!(matches(&selector, &peer_labels));
        }
    }

    #[test]
    fn the_pod_template_does_not_depend_on_replicas(spec in arb_spec(), other in prop::sample::select(vec![1, 3, 5, 7, 9]), bootstrap in 1u32..10, sts in 0i32..10) {
        let a = with_spec(spec.clone());
        let mut b = with_spec(spec);
        b.spec.replicas = other;
        let recorded = Recorded { bootstrap_voters: bootstrap, bootstrapped: true, statefulset_replicas: sts };
        let ctx = BuildContext::default();
        let oa = build_all(&a, &recorded, &ctx).expect("builds");
        let ob = build_all(&b, &recorded, &ctx).expect("builds");
        prop_assert_eq!(oa.statefulset, ob.statefulset);
        prop_assert_eq!(oa.config_map, ob.config_map);
    }

    #[test]
    fn no_cluster_local_unless_the_domain_says_so(spec in arb_spec()) {
        let ce = with_spec(spec);
        let text = serde_json::to_string(&objects(&ce)).expect("json");
        prop_assert!(!text.contains("cluster.local"));
        if let Some(domain) = &ce.spec.cluster_domain {
            let config = node_config(&ce, &Recorded::initial(&ce)).expect("config");
            let needle = format!("demo-peers.ns.svc.{domain}:7100");
            prop_assert!(config.contains(&needle));
        }
    }
}

#[test]
fn render_prints_every_owned_object_of_every_resource_in_a_stream() {
    let input = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/ensemble.yaml"
        ))
        .expect("example"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/ensemble-full.yaml"
        ))
        .expect("example"),
    );
    let out = synod_operator::render::render(&input, "default", &BuildContext::default())
        .expect("renders");
    let kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| {
            let v: serde_json::Value = serde::Deserialize::deserialize(d).expect("yaml");
            format!(
                "{}/{}",
                v["kind"].as_str().expect("kind"),
                v["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ConfigMap/synod-config",
            "ConfigMap/synod-bootstrap",
            "Service/synod-peers",
            "Service/synod",
            "NetworkPolicy/synod",
            "StatefulSet/synod",
            "PodDisruptionBudget/synod",
            "ConfigMap/coord-config",
            "ConfigMap/coord-bootstrap",
            "Service/coord-peers",
            "Service/coord",
            "NetworkPolicy/coord",
            "StatefulSet/coord",
            "PodDisruptionBudget/coord",
            "ServiceMonitor/coord",
        ]
    );
    assert!(out.contains("image: registry.example.com/synod/synod:0.1.0"));
    assert!(
        synod_operator::render::render("kind: ConfigMap\n", "default", &BuildContext::default())
            .is_err()
    );
}
