//! The reconciler's wire contract with the API server, against a mocked
//! server (tower-test): server-side apply with the operator's field manager,
//! the status subresource, events, deletions with a `uid` precondition, and
//! one whole reconcile of a new resource. Decisions are tested in the
//! planner's tests; these only check what goes over the wire.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Seen, finish, mock, serve, serve_failing};
use http::Method;
use serde_json::{Value, json};
use synod_operator::build::{BuildContext, Recorded, build_all};
use synod_operator::crd::CoordinationEnsemble;
use synod_operator::metrics::Metrics;
use synod_operator::reconcile::{Context, KubeIo, reconcile};

fn ensemble() -> CoordinationEnsemble {
    serde_yaml_ng::from_str(
        "apiVersion: synod.io/v1alpha1\nkind: CoordinationEnsemble\nmetadata:\n  name: demo\n  namespace: ns\n  uid: uid-ce\n  generation: 2\nspec:\n  replicas: 3\n",
    )
    .expect("valid resource")
}

/// The reconciler's context over `client`, with fresh metrics and the
/// default build settings.
fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Arc::new(Metrics::default()),
        BuildContext::default(),
    ))
}

#[tokio::test]
async fn the_statefulset_is_applied_server_side_with_the_field_manager() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ce = ensemble();
    let owned = build_all(&ce, &Recorded::initial(&ce), &BuildContext::default()).expect("builds");
    let io = KubeIo::new(client, &ce).expect("io");
    io.apply_statefulset(&owned.statefulset)
        .await
        .expect("applied");
    drop(io);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let call = &seen[0];
    assert_eq!(call.method, Method::PATCH);
    assert_eq!(
        call.uri,
        "/apis/apps/v1/namespaces/ns/statefulsets/demo?&force=true&fieldManager=synod-operator"
    );
    assert_eq!(call.content_type, "application/apply-patch+yaml");
    assert_eq!(call.body["kind"], "StatefulSet");
    assert_eq!(call.body["spec"]["replicas"], 3);
    assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "uid-ce");
}

#[tokio::test]
async fn status_goes_to_the_status_subresource() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ce = ensemble();
    let io = KubeIo::new(client, &ce).expect("io");
    let status = synod_operator::crd::CoordinationEnsembleStatus {
        observed_generation: Some(2),
        bootstrap_voters: vec![1, 2, 3],
        ..Default::default()
    };
    io.write_status(&status).await.expect("written");
    drop(io);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::PATCH);
    assert_eq!(
        seen[0].uri,
        "/apis/synod.io/v1alpha1/namespaces/ns/coordinationensembles/demo/status?&force=true&fieldManager=synod-operator"
    );
    assert_eq!(seen[0].body["status"]["bootstrapVoters"], json!([1, 2, 3]));
    assert_eq!(seen[0].body["kind"], "CoordinationEnsemble");
}

#[tokio::test]
async fn pods_and_claims_are_deleted_only_with_their_uid() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ce = ensemble();
    let io = KubeIo::new(client, &ce).expect("io");
    io.delete_pod("demo-1", "uid-pod")
        .await
        .expect("pod deleted");
    io.delete_claim("log-demo-4", "uid-pvc")
        .await
        .expect("claim deleted");
    drop(io);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, Method::DELETE);
    assert_eq!(seen[0].uri, "/api/v1/namespaces/ns/pods/demo-1?");
    assert_eq!(seen[0].body["preconditions"]["uid"], "uid-pod");
    assert_eq!(
        seen[1].uri,
        "/api/v1/namespaces/ns/persistentvolumeclaims/log-demo-4?"
    );
    assert_eq!(seen[1].body["preconditions"]["uid"], "uid-pvc");
}

#[tokio::test]
async fn a_new_resource_is_built_applied_given_a_status_and_events() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ctx = context(client);
    let requeue = reconcile(Arc::new(ensemble()), ctx.clone())
        .await
        .expect("reconciled");
    // Waiting for the first leader: look again soon.
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(5))
    );
    let metrics = ctx.metrics.render();
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let calls: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.method,
                s.uri.split('?').next().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        calls[..11],
        [
            "GET /apis/apps/v1/namespaces/ns/statefulsets/demo",
            "GET /api/v1/namespaces/ns/pods",
            "GET /api/v1/namespaces/ns/persistentvolumeclaims",
            "PATCH /api/v1/namespaces/ns/configmaps/demo-config",
            "PATCH /api/v1/namespaces/ns/configmaps/demo-bootstrap",
            "PATCH /api/v1/namespaces/ns/services/demo-peers",
            "PATCH /api/v1/namespaces/ns/services/demo",
            "PATCH /apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/demo",
            "PATCH /apis/apps/v1/namespaces/ns/statefulsets/demo",
            "PATCH /apis/policy/v1/namespaces/ns/poddisruptionbudgets/demo",
            "PATCH /apis/synod.io/v1alpha1/namespaces/ns/coordinationensembles/demo/status",
        ],
        "{calls:#?}"
    );
    // Pods and volumes are listed by the ensemble's labels.
    assert!(
        seen[1].uri.contains(
            "labelSelector=app.kubernetes.io%2Finstance%3Ddemo%2Capp.kubernetes.io%2Fname%3Dsynod"
        ),
        "{}",
        seen[1].uri
    );
    // Every apply uses the one field manager.
    for call in seen.iter().filter(|s| s.method == Method::PATCH) {
        assert!(
            call.uri.contains("fieldManager=synod-operator"),
            "{}",
            call.uri
        );
    }
    // Not formed yet: pods start `new`, and the status says so.
    assert_eq!(seen[4].body["data"]["initial-cluster-state"], "new");
    let status = &seen[10].body["status"];
    assert_eq!(status["bootstrapVoters"], json!([1, 2, 3]));
    assert!(status.get("bootstrap").is_none());
    assert_eq!(status["observedGeneration"], 2);
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(condition("Available")["status"], "False");
    assert_eq!(condition("Available")["reason"], "Bootstrapping");
    assert_eq!(condition("Progressing")["status"], "True");
    assert_eq!(condition("Blocked")["status"], "False");
    // Events: one per transition that is news, through events.k8s.io/v1.
    let events: Vec<&Seen> = seen[11..].iter().collect();
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event.method, Method::POST);
        assert!(
            event
                .uri
                .starts_with("/apis/events.k8s.io/v1/namespaces/ns/events"),
            "{}",
            event.uri
        );
        assert_eq!(event.body["regarding"]["name"], "demo");
    }
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e.body["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"Bootstrapping"), "{reasons:?}");
    assert!(
        metrics.contains("synod_operator_reconciles_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unbuildable_spec_is_refused_in_the_status_and_nothing_is_applied() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ctx = context(client);
    let mut ce = ensemble();
    ce.spec
        .config
        .extra
        .insert("peers".into(), "1=elsewhere:7100".into());
    reconcile(Arc::new(ce), ctx.clone())
        .await
        .expect("reconciled");
    let metrics = ctx.metrics.render();
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let writes: Vec<&Seen> = seen.iter().filter(|s| s.method != Method::GET).collect();
    assert!(
        writes[0]
            .uri
            .starts_with("/apis/synod.io/v1alpha1/namespaces/ns/coordinationensembles/demo/status"),
        "{writes:?}"
    );
    let blocked = &writes[0].body["status"]["conditions"][0];
    assert_eq!(blocked["type"], "Blocked");
    assert_eq!(blocked["status"], "True");
    assert_eq!(blocked["reason"], "InvalidSpec");
    assert!(
        blocked["message"]
            .as_str()
            .is_some_and(|m| m.contains("peers")),
        "{blocked}"
    );
    // One Warning event, and nothing else written.
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[1].body["type"], "Warning");
    assert!(
        metrics.contains("synod_operator_blocked{ensemble=\"ns/demo\",reason=\"InvalidSpec\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_paused_ensemble_gets_its_status_and_no_other_write() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ctx = context(client);
    let mut ce = ensemble();
    ce.spec.paused = true;
    reconcile(Arc::new(ce), ctx.clone())
        .await
        .expect("reconciled");
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let patches: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == Method::PATCH)
        .map(|s| s.uri.as_str())
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0].contains("/coordinationensembles/demo/status"));
    let progressing = seen
        .iter()
        .find(|s| s.method == Method::PATCH)
        .and_then(|s| s.body["status"]["conditions"].as_array().cloned())
        .and_then(|cs| cs.into_iter().find(|c| c["type"] == "Progressing"))
        .expect("Progressing");
    assert_eq!(progressing["reason"], "Paused");
}

#[tokio::test]
async fn a_refused_apply_is_reported_in_the_status_and_nothing_is_planned() {
    let (client, handle) = mock();
    let (task, seen) = serve_failing(handle, Some("/statefulsets/demo"));
    let ctx = context(client);
    let result = reconcile(Arc::new(ensemble()), ctx.clone()).await;
    assert!(result.is_err(), "the error goes to the error policy");
    let metrics = ctx.metrics.render();
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let status = seen
        .iter()
        .find(|s| s.uri.contains("/status"))
        .map(|s| s.body["status"].clone())
        .expect("the status is written even so");
    let progressing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .expect("Progressing");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ApplyFailed");
    assert!(
        progressing["message"]
            .as_str()
            .is_some_and(|m| m.contains("Forbidden")),
        "{progressing}"
    );
    // Nothing after the refused StatefulSet was applied.
    assert!(!seen.iter().any(|s| s.uri.contains("poddisruptionbudgets")));
    assert!(
        metrics.contains("synod_operator_reconcile_failures_total{reason=\"kube\"} 1"),
        "{metrics}"
    );
}

fn tls_ensemble() -> CoordinationEnsemble {
    serde_yaml_ng::from_str(
        "apiVersion: synod.io/v1alpha1\nkind: CoordinationEnsemble\nmetadata:\n  name: demo\n  namespace: ns\n  uid: uid-ce\n  generation: 1\nspec:\n  replicas: 3\n  tls:\n    issuerRef:\n      name: ca\n      kind: ClusterIssuer\n",
    )
    .expect("valid resource")
}

fn path_of(seen: &Seen) -> String {
    format!(
        "{} {}",
        seen.method,
        seen.uri.split('?').next().unwrap_or_default()
    )
}

fn progressing(seen: &[Seen]) -> Value {
    seen.iter()
        .find(|s| s.uri.contains("/status"))
        .and_then(|s| s.body["status"]["conditions"].as_array().cloned())
        .and_then(|cs| cs.into_iter().find(|c| c["type"] == "Progressing"))
        .expect("Progressing")
}

#[tokio::test]
async fn a_tls_ensemble_gets_its_certificates_and_network_policy_before_its_pods() {
    let (client, handle) = mock();
    let (task, seen) = serve(handle);
    let ctx = context(client);
    reconcile(Arc::new(tls_ensemble()), ctx.clone())
        .await
        .expect("reconciled");
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let calls: Vec<String> = seen.iter().map(path_of).collect();
    let at = |call: &str| {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("{call} not in {calls:#?}"))
    };
    let policy = at("PATCH /apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/demo");
    let server = at("PATCH /apis/cert-manager.io/v1/namespaces/ns/certificates/demo-server");
    let admin = at("PATCH /apis/cert-manager.io/v1/namespaces/ns/certificates/demo-operator-admin");
    let statefulset = at("PATCH /apis/apps/v1/namespaces/ns/statefulsets/demo");
    assert!(
        policy < server && server < admin && admin < statefulset,
        "{calls:#?}"
    );
    let certificate = &seen[server];
    assert!(certificate.uri.contains("fieldManager=synod-operator"));
    assert_eq!(certificate.content_type, "application/apply-patch+yaml");
    assert_eq!(certificate.body["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate.body["kind"], "Certificate");
    assert_eq!(certificate.body["spec"]["secretName"], "demo-tls");
    assert_eq!(
        certificate.body["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
    assert_eq!(
        certificate.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-ce"
    );
    assert_eq!(seen[admin].body["spec"]["secretName"], "demo-admin-tls");
    assert_eq!(
        seen[policy].body["spec"]["ingress"][2]["ports"],
        json!([{"port": 7300, "protocol": "TCP"}])
    );
    // The operator then reads its admin credentials; cert-manager has not
    // written them yet (the mock has no Secrets): nobody can be asked, and
    // the status says why.
    assert!(
        calls.contains(&"GET /api/v1/namespaces/ns/secrets/demo-tls".to_owned()),
        "{calls:#?}"
    );
    let progressing = progressing(&seen);
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "AdminCredentialsUnavailable");
    assert!(
        progressing["message"]
            .as_str()
            .is_some_and(|m| m.contains("demo-tls")),
        "{progressing}"
    );
}

#[tokio::test]
async fn with_its_secrets_written_a_tls_ensemble_is_observed_as_usual() {
    let ca = synod_tls::generate::DevCa::new("test CA").expect("CA");
    let admin = ca.issue("synod-operator", &[]).expect("admin cert");
    let secret = common::tls_secret;
    let ca_pem = ca.cert_pem();
    let server_secret = secret("demo-tls", &[("ca.crt", &ca_pem)]);
    let admin_secret = secret(
        "demo-admin-tls",
        &[
            ("tls.crt", &admin.cert_pem),
            ("tls.key", &admin.key_pem),
            ("ca.crt", &ca_pem),
        ],
    );
    let (client, handle) = mock();
    let (task, seen) = common::serve_with(handle, move |method, path| {
        if *method != Method::GET {
            return None;
        }
        if path.ends_with("/secrets/demo-tls") {
            return Some((http::StatusCode::OK, server_secret.clone()));
        }
        path.ends_with("/secrets/demo-admin-tls")
            .then(|| (http::StatusCode::OK, admin_secret.clone()))
    });
    let ctx = context(client);
    reconcile(Arc::new(tls_ensemble()), ctx.clone())
        .await
        .expect("reconciled");
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    let progressing = progressing(&seen);
    // The credentials loaded; the StatefulSet is not there yet (the mock
    // never shows it), as for an ensemble without TLS.
    assert_eq!(progressing["reason"], "Creating", "{progressing}");
    assert_eq!(progressing["status"], "True");
}

#[tokio::test]
async fn without_cert_manager_a_tls_ensemble_is_not_started() {
    let (client, handle) = mock();
    let (task, seen) = common::serve_with(handle, |method, path| {
        (*method == Method::PATCH && path.contains("/apis/cert-manager.io/")).then(|| {
            (
                http::StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
            )
        })
    });
    let ctx = context(client);
    let result = reconcile(Arc::new(tls_ensemble()), ctx.clone()).await;
    assert!(result.is_err());
    drop(ctx);
    finish(task).await;
    let seen = seen.lock().expect("lock").clone();
    // Pods that would wait forever for their Secrets are not created.
    assert!(
        !seen
            .iter()
            .any(|s| s.uri.contains("/statefulsets/demo?") && s.method == Method::PATCH)
    );
    let progressing = progressing(&seen);
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ApplyFailed");
}
