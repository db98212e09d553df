//! A mocked Kubernetes API server for the operator's tests (tower-test): it
//! answers like a minimal API server (a GET of one object is NotFound, a
//! list is empty, a write echoes its body, a status patch answers the whole
//! object) unless a test answers a request itself, and records every
//! request for the test to assert on.

#![allow(dead_code, reason = "each test file uses a part of it")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

pub fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// Serves requests like a minimal API server until the client is dropped:
/// a GET of a single object is NotFound, a list is empty, a write echoes its
/// body. Records every request.
pub fn serve(handle: Handle) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Seen>>>) {
    serve_failing(handle, None)
}

/// As `serve`, but a PATCH of a path ending in `fail` is refused as invalid.
pub fn serve_failing(
    handle: Handle,
    fail: Option<&'static str>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Seen>>>) {
    serve_with(handle, move |method, path| {
        (*method == Method::PATCH && fail.is_some_and(|f| path.ends_with(f))).then(|| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": "StatefulSet.apps \"demo\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than ... are forbidden"}),
            )
        })
    })
}

/// As `serve`, but `answer` may answer a request itself (by method and
/// path) before the defaults do.
pub fn serve_with(
    mut handle: Handle,
    answer: impl Fn(&Method, &str) -> Option<(StatusCode, Value)> + Send + 'static,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let uri = parts.uri.to_string();
            let content_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            log.lock().expect("lock").push(Seen {
                method: parts.method.clone(),
                uri: uri.clone(),
                content_type,
                body: body.clone(),
            });
            let path = parts.uri.path().to_owned();
            let custom = answer(&parts.method, &path);
            let response = match parts.method {
                _ if custom.is_some() => {
                    let (code, body) = custom.expect("checked");
                    json_response(code, &body)
                }
                Method::GET
                    if path.ends_with("/pods") || path.ends_with("/persistentvolumeclaims") =>
                {
                    json_response(
                        StatusCode::OK,
                        &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}),
                    )
                }
                Method::GET => json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
                Method::DELETE => json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                _ => {
                    let mut echo = body.clone();
                    if echo["metadata"].is_null() {
                        echo["metadata"] = json!({"name": "demo", "namespace": "ns"});
                    }
                    // The API server answers a status patch with the whole
                    // object.
                    if path.ends_with("/status") {
                        echo["spec"] = json!({"replicas": 3});
                    }
                    json_response(StatusCode::OK, &echo)
                }
            };
            send.send_response(response);
        }
    });
    (task, seen)
}

pub async fn finish(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("mock server stops when the client is dropped")
        .expect("mock server task");
}

/// A `kubernetes.io/tls` Secret `name` in namespace `ns` holding `data`
/// (key, PEM text), as the API server returns it.
pub fn tls_secret(name: &str, data: &[(&str, &str)]) -> Value {
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    };
    let mut value = serde_json::to_value(secret).expect("json");
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    value
}
