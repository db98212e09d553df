//! The builders with and without `spec.tls`: the cert-manager Certificates
//! (their names, their DNS names against what peers dial, their shape
//! against cert-manager's `v1` API), the Secret volumes and read-only
//! mounts, the node flags, the ports of the container and the Services, and
//! the NetworkPolicy (client ports open, the peer port for the ensemble's
//! pods, the admin port for the operator's).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::CustomResourceExt as _;
use serde_json::{Value, json};
use synod_operator::build::tls::{MAX_MEMBERS, server_dns_names};
use synod_operator::build::{
    BuildContext, Certificate, Names, OperatorPods, Owned, Recorded, SpecError, build_all,
    node_config, parse_labels,
};
use synod_operator::crd::CoordinationEnsemble;

fn ensemble(yaml_spec: &str) -> CoordinationEnsemble {
    let text = format!(
        "apiVersion: synod.io/v1alpha1\nkind: CoordinationEnsemble\nmetadata:\n  name: demo\n  namespace: ns\n  uid: 6f1c-uid\nspec:\n{yaml_spec}"
    );
    serde_yaml_ng::from_str(&text).expect("valid test resource")
}

fn context() -> BuildContext {
    BuildContext {
        operator: OperatorPods {
            namespace: "ops".into(),
            pod_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "synod-operator".into()),
                ("app.kubernetes.io/instance".into(), "op".into()),
            ]),
        },
        ..BuildContext::default()
    }
}

fn build(ce: &CoordinationEnsemble) -> Owned {
    build_all(ce, &Recorded::initial(ce), &context()).expect("builds")
}

const ISSUER: &str = "  replicas: 3\n  tls:\n    issuerRef:\n      name: ca\n      kind: ClusterIssuer\n    clientCerts: Required\n";

fn pod(owned: &Owned) -> PodSpec {
    owned
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec")
}

fn container(owned: &Owned) -> Container {
    pod(owned).containers[0].clone()
}

fn args(owned: &Owned) -> Vec<String> {
    container(owned).args.expect("args")
}

/// The value after `flag` in the arguments.
fn flag(owned: &Owned, flag: &str) -> Option<String> {
    let args = args(owned);
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

fn container_ports(owned: &Owned) -> BTreeMap<String, i32> {
    container(owned)
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| (p.name.expect("named"), p.container_port))
        .collect()
}

fn service_ports(service: &Service) -> Vec<(String, i32)> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports")
        .into_iter()
        .map(|p| (p.name.expect("named"), p.port))
        .collect()
}

#[test]
fn without_tls_the_admin_listener_is_opened_to_the_pod_network_and_nothing_else_changes() {
    let owned = build(&ensemble("  replicas: 3\n"));
    let args = args(&owned);
    assert_eq!(
        args,
        [
            "serve",
            "--config",
            "/etc/synod/synod.toml",
            "--admin-addr",
            "0.0.0.0:7300",
            "--admin-allow-remote"
        ]
    );
    assert_eq!(
        container_ports(&owned),
        BTreeMap::from([
            ("admin".into(), 7300),
            ("client".into(), 7000),
            ("http".into(), 7200),
            ("peer".into(), 7100),
            ("zookeeper".into(), 2181),
        ])
    );
    assert!(owned.certificates.is_empty());
    let volumes: Vec<String> = pod(&owned)
        .volumes
        .expect("volumes")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(volumes, ["config"]);
    assert_eq!(
        service_ports(&owned.client_service),
        [("grpc".into(), 7000), ("zookeeper".into(), 2181)]
    );
    // The admin port is in no Service.
    assert!(
        !service_ports(&owned.peer_service)
            .iter()
            .any(|(_, p)| *p == 7300)
    );
    let ce = ensemble("  replicas: 3\n");
    let config = node_config(&ce, &Recorded::initial(&ce)).expect("config");
    assert!(
        config.contains(r#"zookeeper-addr = "0.0.0.0:2181""#),
        "{config}"
    );
}

#[test]
fn an_issuer_gives_a_node_certificate_and_the_operators_admin_certificate() {
    let owned = build(&ensemble(ISSUER));
    let [server, admin] = &owned.certificates[..] else {
        panic!("two certificates: {:?}", owned.certificates);
    };
    assert_eq!(server.metadata.name.as_deref(), Some("demo-server"));
    assert_eq!(server.spec.secret_name, "demo-tls");
    assert_eq!(server.spec.issuer_ref.name, "ca");
    assert_eq!(server.spec.issuer_ref.kind.as_str(), "ClusterIssuer");
    assert_eq!(server.spec.issuer_ref.group, "cert-manager.io");
    // Peers present it to each other: server and client use.
    assert!(server.spec.usages.contains(&"server auth".to_owned()));
    assert!(server.spec.usages.contains(&"client auth".to_owned()));
    assert_eq!(admin.metadata.name.as_deref(), Some("demo-operator-admin"));
    assert_eq!(admin.spec.secret_name, "demo-admin-tls");
    assert_eq!(admin.spec.usages, ["digital signature", "client auth"]);
    assert_eq!(admin.spec.common_name.as_deref(), Some("synod-operator"));
    assert!(admin.spec.dns_names.is_empty());
    // Without an admin issuer, the same one.
    assert_eq!(admin.spec.issuer_ref, server.spec.issuer_ref);
    for certificate in [server, admin] {
        assert_eq!(certificate.api_version, "cert-manager.io/v1");
        assert_eq!(certificate.kind, "Certificate");
        let owner = &certificate
            .metadata
            .owner_references
            .as_ref()
            .expect("owner")[0];
        assert_eq!(owner.uid, "6f1c-uid");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(certificate.spec.private_key.rotation_policy, "Always");
    }

    let separate = ensemble(&format!(
        "{ISSUER}    adminIssuerRef:\n      name: admin-ca\n"
    ));
    let owned = build(&separate);
    assert_eq!(owned.certificates[0].spec.issuer_ref.name, "ca");
    assert_eq!(owned.certificates[1].spec.issuer_ref.name, "admin-ca");
    assert_eq!(
        owned.certificates[1].spec.issuer_ref.kind.as_str(),
        "Issuer"
    );
}

#[test]
fn the_node_certificate_names_every_member_and_the_client_service_never_cluster_local() {
    let owned = build(&ensemble(ISSUER));
    let names = &owned.certificates[0].spec.dns_names;
    let mut expected: Vec<String> = (0..9)
        .map(|i| format!("demo-{i}.demo-peers.ns.svc"))
        .collect();
    expected.extend(["demo".into(), "demo.ns".into(), "demo.ns.svc".into()]);
    assert_eq!(names, &expected);
    assert!(!names.iter().any(|n| n.contains("cluster.local")));

    // With a cluster domain: both forms.
    let corp = ensemble(&format!("{ISSUER}  clusterDomain: corp.internal.\n"));
    let names = &build(&corp).certificates[0].spec.dns_names;
    for expected in [
        "demo-0.demo-peers.ns.svc",
        "demo-0.demo-peers.ns.svc.corp.internal",
        "demo-8.demo-peers.ns.svc.corp.internal",
        "demo.ns.svc",
        "demo.ns.svc.corp.internal",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected}: {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains("cluster.local")));
}

/// Every host a peer is dialled at (`--peers`, `--peer-address-template`)
/// is a name of the node certificate: a node checks that a peer's
/// certificate is valid for the host of the address it claims.
#[test]
fn every_address_peers_dial_is_a_name_of_the_node_certificate() {
    for domain in ["", "  clusterDomain: corp.internal\n"] {
        let ce = ensemble(&format!("{ISSUER}{domain}"));
        let names: BTreeSet<String> = build(&ce).certificates[0]
            .spec
            .dns_names
            .iter()
            .cloned()
            .collect();
        let config: toml::Table = node_config(&ce, &Recorded::initial(&ce))
            .expect("config")
            .parse()
            .expect("toml");
        let host = |address: &str| address.rsplit_once(':').expect("host:port").0.to_owned();
        let peers = config["peers"].as_str().expect("peers");
        for member in peers.split(',') {
            let (_, address) = member.split_once('=').expect("id=address");
            assert!(names.contains(&host(address)), "{address}: {names:?}");
        }
        let template = config["peer-address-template"].as_str().expect("template");
        for ordinal in 0..MAX_MEMBERS {
            let address = template.replace("{ordinal}", &ordinal.to_string());
            assert!(names.contains(&host(&address)), "{address}");
        }
    }
}

#[test]
fn the_certificates_cover_the_largest_ensemble_the_crd_admits() {
    let crd = serde_json::to_value(CoordinationEnsemble::crd()).expect("crd");
    let max = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["replicas"]["maximum"];
    assert_eq!(max.as_f64(), Some(f64::from(MAX_MEMBERS)), "{max}");
}

#[test]
fn tls_pods_mount_the_node_secret_and_only_the_admin_ca_read_only() {
    let owned = build(&ensemble(ISSUER));
    let pod = pod(&owned);
    let volumes = pod.volumes.expect("volumes");
    let tls = volumes
        .iter()
        .find(|v| v.name == "tls")
        .expect("tls volume");
    let secret = tls.secret.as_ref().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("demo-tls"));
    assert_eq!(secret.items, None, "tls.crt, tls.key and ca.crt");
    assert_eq!(secret.default_mode, Some(0o440));
    let admin = volumes
        .iter()
        .find(|v| v.name == "admin-ca")
        .expect("admin CA volume");
    let secret = admin.secret.as_ref().expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("demo-admin-tls"));
    // The operator's key stays out of the pods.
    let items = secret.items.as_ref().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("ca.crt", "ca.crt")
    );

    let mounts = container(&owned).volume_mounts.expect("mounts");
    for (name, path) in [
        ("tls", "/etc/synod-tls/server"),
        ("admin-ca", "/etc/synod-tls/admin-ca"),
    ] {
        let mount = mounts.iter().find(|m| m.name == name).expect(name);
        assert_eq!(mount.mount_path, path);
        assert_eq!(mount.read_only, Some(true));
        // Not under the config map's mount (a read-only volume).
        assert!(!mount.mount_path.starts_with("/etc/synod/"));
    }
}

#[test]
fn tls_nodes_get_the_certificate_flags_and_the_secure_zookeeper_port_only() {
    let owned = build(&ensemble(ISSUER));
    for (name, value) in [
        ("--admin-addr", "0.0.0.0:7300"),
        ("--tls-cert", "/etc/synod-tls/server/tls.crt"),
        ("--tls-key", "/etc/synod-tls/server/tls.key"),
        ("--tls-ca", "/etc/synod-tls/server/ca.crt"),
        ("--tls-admin-ca", "/etc/synod-tls/admin-ca/ca.crt"),
        ("--tls-client-certs", "required"),
        ("--zookeeper-secure-addr", "0.0.0.0:2281"),
    ] {
        assert_eq!(flag(&owned, name).as_deref(), Some(value), "{name}");
    }
    // TLS guards the admin port: it is not opened without it.
    assert!(!args(&owned).contains(&"--admin-allow-remote".to_owned()));
    let ports = container_ports(&owned);
    assert_eq!(ports.get("zookeeper-tls"), Some(&2281));
    assert_eq!(ports.get("admin"), Some(&7300));
    assert!(!ports.contains_key("zookeeper"), "{ports:?}");
    assert_eq!(
        service_ports(&owned.client_service),
        [("grpc".into(), 7000), ("zookeeper-tls".into(), 2281)]
    );
    assert!(service_ports(&owned.peer_service).contains(&("zookeeper-tls".into(), 2281)));
    let ce = ensemble(ISSUER);
    let config = node_config(&ce, &Recorded::initial(&ce)).expect("config");
    assert!(config.contains(r#"zookeeper-addr = "off""#), "{config}");
    assert!(
        config.contains(r#"zookeeper-address-template = "demo-{ordinal}.demo-peers.ns.svc:2281""#),
        "{config}"
    );

    // clientCerts defaults to Optional.
    let optional = build(&ensemble(
        "  replicas: 3\n  tls:\n    issuerRef:\n      name: ca\n",
    ));
    assert_eq!(
        flag(&optional, "--tls-client-certs").as_deref(),
        Some("optional")
    );
}

#[test]
fn plaintext_zookeeper_can_stay_open_beside_the_secure_port() {
    let ce = ensemble(&format!("{ISSUER}    plaintextZooKeeper: true\n"));
    let owned = build(&ce);
    let ports = container_ports(&owned);
    assert_eq!(ports.get("zookeeper"), Some(&2181));
    assert_eq!(ports.get("zookeeper-tls"), Some(&2281));
    assert_eq!(
        service_ports(&owned.client_service),
        [
            ("grpc".into(), 7000),
            ("zookeeper".into(), 2181),
            ("zookeeper-tls".into(), 2281)
        ]
    );
    let config = node_config(&ce, &Recorded::initial(&ce)).expect("config");
    assert!(
        config.contains(r#"zookeeper-addr = "0.0.0.0:2181""#),
        "{config}"
    );
    // Clients are told about the secure port.
    assert!(config.contains("demo-peers.ns.svc:2281"), "{config}");
    let open = ingress_ports(&owned.network_policy)[0].clone();
    assert_eq!(open, [7000, 2181, 2281, 7200]);
}

#[test]
fn existing_secrets_are_mounted_and_no_certificate_is_requested() {
    let owned = build(&ensemble(
        "  replicas: 3\n  tls:\n    secrets:\n      server: my-node-tls\n      admin: my-admin-tls\n",
    ));
    assert!(owned.certificates.is_empty());
    let volumes = pod(&owned).volumes.expect("volumes");
    let secret_of = |name: &str| {
        volumes
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
    };
    assert_eq!(secret_of("tls").as_deref(), Some("my-node-tls"));
    assert_eq!(secret_of("admin-ca").as_deref(), Some("my-admin-tls"));
    assert_eq!(
        flag(&owned, "--tls-cert").as_deref(),
        Some("/etc/synod-tls/server/tls.crt")
    );
}

#[test]
fn a_tls_spec_that_names_no_source_or_two_is_refused() {
    let refused = |tls: &str| {
        let ce = ensemble(&format!("  replicas: 3\n  tls:\n{tls}"));
        build_all(&ce, &Recorded::initial(&ce), &context()).expect_err(tls)
    };
    for tls in [
        "    clientCerts: Required\n",
        "    issuerRef: {name: ca}\n    secrets: {server: a, admin: b}\n",
        "    adminIssuerRef: {name: ca}\n    secrets: {server: a, admin: b}\n",
    ] {
        assert!(matches!(refused(tls), SpecError::Invalid(_)), "{tls}");
    }
}

#[test]
fn the_operator_owns_the_tls_and_admin_flags() {
    for name in [
        "tls-cert",
        "tls-admin-ca",
        "admin-addr",
        "admin-allow-remote",
        "zookeeper-secure-addr",
    ] {
        let mut ce = ensemble("  replicas: 3\n");
        ce.spec.config.extra.insert(name.into(), "x".into());
        assert_eq!(
            build_all(&ce, &Recorded::initial(&ce), &context()).expect_err(name),
            SpecError::ReservedFlag(name.into())
        );
    }
}

fn ingress_ports(policy: &NetworkPolicy) -> Vec<Vec<i32>> {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.ingress.clone())
        .expect("ingress")
        .into_iter()
        .map(|rule| {
            rule.ports
                .expect("ports")
                .into_iter()
                .map(|p| match p.port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => n,
                    other => panic!("port by number: {other:?}"),
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_network_policy_opens_client_ports_and_keeps_peers_and_admin_to_their_callers() {
    for (spec, open) in [
        ("  replicas: 3\n", vec![7000, 2181, 7200]),
        (ISSUER, vec![7000, 2281, 7200]),
    ] {
        let ce = ensemble(spec);
        let policy = build(&ce).network_policy;
        let value = serde_json::to_value(&policy).expect("json");
        assert_eq!(value["metadata"]["name"], "demo");
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "6f1c-uid");
        let own = json!({"matchLabels": {"app.kubernetes.io/name": "synod", "app.kubernetes.io/instance": "demo"}});
        assert_eq!(value["spec"]["podSelector"], own);
        assert_eq!(value["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = value["spec"]["ingress"].as_array().expect("rules");
        assert_eq!(rules.len(), 3);
        // Client ports and HTTP from anywhere.
        assert_eq!(rules[0].get("from"), None);
        assert_eq!(ingress_ports(&policy), [open, vec![7100], vec![7300]]);
        // Peers: the ensemble's own pods, in its namespace.
        assert_eq!(rules[1]["from"], json!([{"podSelector": own}]));
        // Admin: the operator's pods, in the operator's namespace.
        assert_eq!(
            rules[2]["from"],
            json!([{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "synod-operator", "app.kubernetes.io/instance": "op"}},
            }])
        );
        for rule in rules {
            for port in rule["ports"].as_array().expect("ports") {
                assert_eq!(port["protocol"], "TCP");
            }
        }
    }
}

#[test]
fn operator_pod_labels_parse_from_the_flag_form() {
    assert_eq!(
        parse_labels("app.kubernetes.io/name=synod-operator, app.kubernetes.io/instance=op"),
        Some(BTreeMap::from([
            ("app.kubernetes.io/instance".into(), "op".into()),
            ("app.kubernetes.io/name".into(), "synod-operator".into()),
        ]))
    );
    assert_eq!(parse_labels("novalue"), None);
    assert_eq!(parse_labels("=x"), None);
}

/// cert-manager's `Certificate` (`cert-manager.io/v1`), as far as the
/// operator uses it: no schema ships offline, so the fields and values the
/// operator emits are checked against the API's documented ones here.
fn assert_cert_manager_shape(certificate: &Value) {
    const SPEC_FIELDS: &[&str] = &[
        "secretName",
        "secretTemplate",
        "commonName",
        "dnsNames",
        "ipAddresses",
        "uris",
        "emailAddresses",
        "duration",
        "renewBefore",
        "usages",
        "privateKey",
        "issuerRef",
        "isCA",
        "subject",
    ];
    const KEY_USAGES: &[&str] = &[
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    ];
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate["kind"], "Certificate");
    let metadata = certificate["metadata"].as_object().expect("metadata");
    assert!(metadata["name"].as_str().is_some_and(|n| n.len() <= 253));
    assert!(metadata["namespace"].is_string());
    let spec = certificate["spec"].as_object().expect("spec");
    for key in spec.keys() {
        assert!(
            SPEC_FIELDS.contains(&key.as_str()),
            "unknown field spec.{key}"
        );
    }
    let secret = spec["secretName"].as_str().expect("secretName is required");
    assert!(!secret.is_empty() && secret.len() <= 253);
    let issuer = spec["issuerRef"]
        .as_object()
        .expect("issuerRef is required");
    assert!(issuer["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        issuer
            .keys()
            .all(|k| ["name", "kind", "group"].contains(&k.as_str()))
    );
    assert!(["Issuer", "ClusterIssuer"].contains(&issuer["kind"].as_str().expect("kind")));
    // cert-manager requires at least one name.
    assert!(
        [
            "commonName",
            "dnsNames",
            "ipAddresses",
            "uris",
            "emailAddresses"
        ]
        .iter()
        .any(|k| spec.contains_key(*k)),
        "{spec:?}"
    );
    if let Some(cn) = spec.get("commonName") {
        assert!(cn.as_str().is_some_and(|cn| cn.len() <= 64), "{cn}");
    }
    for name in spec
        .get("dnsNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().expect("text");
        assert!(name.len() <= 253, "{name}");
        assert!(
            name.split('.').all(|label| !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')),
            "not a DNS name: {name}"
        );
    }
    for usage in spec["usages"].as_array().expect("usages") {
        assert!(
            KEY_USAGES.contains(&usage.as_str().expect("text")),
            "{usage}"
        );
    }
    let key = spec["privateKey"].as_object().expect("privateKey");
    assert!(
        key.keys()
            .all(|k| ["algorithm", "size", "encoding", "rotationPolicy"].contains(&k.as_str()))
    );
    assert!(["RSA", "ECDSA", "Ed25519"].contains(&key["algorithm"].as_str().expect("text")));
    assert!([256, 384, 521].contains(&key["size"].as_u64().expect("size")));
    assert!(["PKCS1", "PKCS8"].contains(&key["encoding"].as_str().expect("text")));
    assert!(["Never", "Always"].contains(&key["rotationPolicy"].as_str().expect("text")));
    if let Some(template) = spec.get("secretTemplate") {
        assert!(
            template
                .as_object()
                .expect("object")
                .keys()
                .all(|k| ["labels", "annotations"].contains(&k.as_str()))
        );
    }
}

#[test]
fn certificates_have_cert_managers_v1_shape_and_round_trip() {
    for spec in [
        ISSUER.to_owned(),
        format!(
            "{ISSUER}    adminIssuerRef:\n      name: a\n      group: example.com\n  clusterDomain: corp.internal\n"
        ),
    ] {
        let owned = build(&ensemble(&spec));
        let values = owned.to_values().expect("values");
        let certificates: Vec<&Value> = values
            .iter()
            .filter(|v| v["kind"] == "Certificate")
            .collect();
        assert_eq!(certificates.len(), 2);
        for value in certificates {
            assert_cert_manager_shape(value);
            let back: Certificate = serde_json::from_value(value.clone()).expect("round trip");
            assert!(owned.certificates.contains(&back));
        }
    }
}

#[test]
fn certificates_are_applied_before_the_statefulset_whose_pods_mount_their_secrets() {
    let values = build(&ensemble(ISSUER)).to_values().expect("values");
    let kinds: Vec<&str> = values
        .iter()
        .map(|v| v["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "ConfigMap",
            "Service",
            "Service",
            "NetworkPolicy",
            "Certificate",
            "Certificate",
            "StatefulSet",
            "PodDisruptionBudget"
        ]
    );
}

#[test]
fn server_dns_names_are_stable_under_scaling() {
    let names = |replicas: u32| {
        let ce = ensemble(&format!(
            "  replicas: {replicas}\n  tls:\n    issuerRef:\n      name: ca\n"
        ));
        server_dns_names(&Names::of(&ce).expect("names"))
    };
    assert_eq!(names(1), names(9));
}
