//! The committed CRD matches the Rust type, and its CEL rules accept and
//! refuse what they should, evaluated offline by kube-cel (an approximation
//! of the API server's CEL: no cost budget, same semantics for these rules).

use kube::CustomResourceExt;
use kube_cel::Validator;
use serde_json::{Value, json};
use synod_operator::crd::{CoordinationEnsemble, crd_yaml};

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn committed_crds_match_the_type() {
    let generated = crd_yaml().expect("crd serializes");
    for path in [
        "crds/coordinationensemble.yaml",
        "charts/synod-operator/crds/coordinationensemble.yaml",
    ] {
        assert!(
            repo_file(path) == generated,
            "{path} drifted from operator/src/crd.rs: run \
             `cargo run -p synod-operator -- crdgen` from the repository root"
        );
    }
}

fn root_schema() -> Value {
    let crd = serde_json::to_value(CoordinationEnsemble::crd()).expect("crd to json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "synod.io/v1alpha1",
        "kind": "CoordinationEnsemble",
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": spec,
    })
}

fn errors(new: Value, old: Option<Value>) -> Vec<String> {
    let validator = Validator::new();
    let new = object(new);
    let old = old.map(object);
    match validator.validate(&root_schema(), &new, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errs) => errs.into_vec().into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn odd_sizes_are_accepted_even_refused() {
    for n in [1, 3, 5, 7, 9] {
        assert_eq!(
            errors(json!({"replicas": n}), None),
            Vec::<String>::new(),
            "{n}"
        );
    }
    for n in [2, 4, 6] {
        let errs = errors(json!({"replicas": n}), None);
        assert!(
            errs.iter().any(|e| e.contains("must be odd")),
            "{n}: {errs:?}"
        );
    }
}

#[test]
fn a_shrink_to_one_from_three_or_more_is_refused() {
    let errs = errors(json!({"replicas": 1}), Some(json!({"replicas": 3})));
    assert!(
        errs.iter().any(|e| e.contains("cannot shrink to 1")),
        "{errs:?}"
    );
    let errs = errors(json!({"replicas": 1}), Some(json!({"replicas": 5})));
    assert!(
        errs.iter().any(|e| e.contains("cannot shrink to 1")),
        "{errs:?}"
    );
    // Growing from 1, and stepping 5 -> 3, are fine.
    assert!(errors(json!({"replicas": 3}), Some(json!({"replicas": 1}))).is_empty());
    assert!(errors(json!({"replicas": 3}), Some(json!({"replicas": 5}))).is_empty());
    // On create there is no old object: 1 is allowed (a dev ensemble).
    assert!(errors(json!({"replicas": 1}), None).is_empty());
}

#[test]
fn cluster_name_is_immutable_including_setting_or_clearing_it() {
    let with = |name: &str| json!({"replicas": 3, "clusterName": name});
    assert!(errors(with("blue"), Some(with("blue"))).is_empty());
    for (new, old) in [
        (with("green"), with("blue")),
        (json!({"replicas": 3}), with("blue")),
        (with("blue"), json!({"replicas": 3})),
    ] {
        let errs = errors(new, Some(old));
        assert!(
            errs.iter().any(|e| e.contains("clusterName is immutable")),
            "{errs:?}"
        );
    }
}

#[test]
fn storage_classes_are_immutable() {
    let spec = |log: Option<&str>, snap: Option<&str>| {
        let mut storage = json!({"log": {"size": "1Gi"}, "snapshot": {"size": "1Gi"}});
        if let Some(c) = log {
            storage["log"]["storageClassName"] = json!(c);
        }
        if let Some(c) = snap {
            storage["snapshot"]["storageClassName"] = json!(c);
        }
        json!({"replicas": 3, "storage": storage})
    };
    assert!(errors(spec(Some("fast"), None), Some(spec(Some("fast"), None))).is_empty());
    let errs = errors(spec(Some("slow"), None), Some(spec(Some("fast"), None)));
    assert!(
        errs.iter()
            .any(|e| e.contains("storage.log.storageClassName")),
        "{errs:?}"
    );
    let errs = errors(spec(None, Some("x")), Some(spec(None, None)));
    assert!(
        errs.iter()
            .any(|e| e.contains("storage.snapshot.storageClassName")),
        "{errs:?}"
    );
    // Resizing is not a class change.
    let mut bigger = spec(Some("fast"), None);
    bigger["storage"]["log"]["size"] = json!("10Gi");
    assert!(errors(bigger, Some(spec(Some("fast"), None))).is_empty());
}

#[test]
fn tls_names_exactly_one_source_and_the_admin_issuer_only_with_an_issuer() {
    let with = |tls: Value| json!({"replicas": 3, "tls": tls});
    let issuer = json!({"name": "ca", "kind": "ClusterIssuer"});
    let secrets = json!({"server": "node-tls", "admin": "admin-tls"});
    for good in [
        json!({"issuerRef": issuer}),
        json!({"issuerRef": issuer, "adminIssuerRef": {"name": "admin-ca"}, "clientCerts": "Required"}),
        json!({"secrets": secrets, "plaintextZooKeeper": true}),
    ] {
        assert_eq!(
            errors(with(good.clone()), None),
            Vec::<String>::new(),
            "{good}"
        );
    }
    for (bad, message) in [
        (json!({"clientCerts": "None"}), "exactly one of issuerRef"),
        (
            json!({"issuerRef": issuer, "secrets": secrets}),
            "exactly one of issuerRef",
        ),
        (
            json!({"secrets": secrets, "adminIssuerRef": {"name": "x"}}),
            "adminIssuerRef goes with issuerRef",
        ),
    ] {
        let errs = errors(with(bad.clone()), None);
        assert!(errs.iter().any(|e| e.contains(message)), "{bad}: {errs:?}");
    }
    // Unknown kinds and modes are the schema's to refuse (enums), which
    // kube-cel does not check: tests/k8s/check.py does.
}

#[test]
fn tls_cannot_be_added_or_removed_on_an_existing_ensemble() {
    let plain = json!({"replicas": 3});
    let tls = json!({"replicas": 3, "tls": {"issuerRef": {"name": "ca"}}});
    for (new, old) in [(tls.clone(), plain.clone()), (plain.clone(), tls.clone())] {
        let errs = errors(new, Some(old));
        assert!(
            errs.iter()
                .any(|e| e.contains("tls cannot be added or removed")),
            "{errs:?}"
        );
    }
    // Within TLS, settings may change (a new issuer re-issues in place).
    let mut other = tls.clone();
    other["tls"]["clientCerts"] = json!("Required");
    assert!(errors(other, Some(tls)).is_empty());
    assert!(errors(plain.clone(), Some(plain)).is_empty());
}

#[test]
fn volume_sizes_must_be_quantities() {
    let spec =
        |size: &str| json!({"storage": {"log": {"size": size}, "snapshot": {"size": "1Gi"}}});
    assert!(errors(spec("10Gi"), None).is_empty());
    assert!(errors(spec("1.5Ti"), None).is_empty());
    let errs = errors(spec("ten gigs"), None);
    assert!(errs.iter().any(|e| e.contains("quantity")), "{errs:?}");
}

#[test]
fn the_example_resources_parse_into_the_type() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read example");
            let ce: CoordinationEnsemble = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let value = serde_json::to_value(&ce.spec).expect("spec to json");
            assert!(errors(value, None).is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "no example resources found");
}
