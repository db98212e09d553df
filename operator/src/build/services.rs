//! The Services, the PodDisruptionBudget and the optional ServiceMonitor.
//! The peer Service publishes not-ready pods (a fresh ensemble's pods must
//! find each other before any is Ready, T10); the client Service routes only
//! to Ready members. The PDB covers every pod by a stable label, never by
//! role (T17).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::{
    CLIENT_PORT, HTTP_PORT, Names, PEER_PORT, SpecError, labels, metadata, owner_reference,
    selector_labels, tls,
};
use crate::crd::CoordinationEnsemble;

fn service_port(name: &str, port: i32, app_protocol: Option<&str>) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        app_protocol: app_protocol.map(str::to_owned),
        ..ServicePort::default()
    }
}

/// Headless: gives every pod its stable name `<pod>.<name>-peers.<ns>.svc`.
pub fn peer_service(ce: &CoordinationEnsemble) -> Result<Service, SpecError> {
    let names = Names::of(ce)?;
    Ok(Service {
        metadata: metadata(ce, &names, names.peer_service(), "peers"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names)),
            ports: Some({
                let mut ports = vec![
                    service_port("peer", PEER_PORT, None),
                    service_port("client", CLIENT_PORT, Some("grpc")),
                ];
                ports.extend(zookeeper_ports(ce));
                ports.push(service_port("http", HTTP_PORT, Some("http")));
                ports
            }),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The ZooKeeper ports: 2181, or with TLS 2281 (and 2181 if asked for).
fn zookeeper_ports(ce: &CoordinationEnsemble) -> Vec<ServicePort> {
    tls::zookeeper_ports(ce)
        .into_iter()
        .map(|(name, port)| service_port(name, port, None))
        .collect()
}

/// What clients connect to: gRPC on 7000, ZooKeeper on 2181 (with TLS on
/// 2281). The admin port is in no Service: only the operator calls it, by
/// pod IP.
pub fn client_service(ce: &CoordinationEnsemble) -> Result<Service, SpecError> {
    let names = Names::of(ce)?;
    let mut meta = metadata(ce, &names, names.client_service(), "client");
    if !ce.spec.service.annotations.is_empty() {
        meta.annotations = Some(ce.spec.service.annotations.clone());
    }
    Ok(Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(ce.spec.service.kind.as_str().into()),
            selector: Some(selector_labels(&names)),
            ports: Some({
                let mut ports = vec![ServicePort {
                    name: Some("grpc".into()),
                    port: CLIENT_PORT,
                    target_port: Some(IntOrString::String("client".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("grpc".into()),
                    ..ServicePort::default()
                }];
                ports.extend(zookeeper_ports(ce));
                ports
            }),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// maxUnavailable 1 over all pods, whatever the size: never impossible
/// (a `minAvailable` from the size can block drains at 1 replica), and
/// `AlwaysAllow` lets an already-unhealthy pod be evicted, which costs the
/// ensemble nothing.
pub fn pdb(ce: &CoordinationEnsemble) -> Result<Option<PodDisruptionBudget>, SpecError> {
    if !ce.spec.pod_disruption_budget.enabled {
        return Ok(None);
    }
    let names = Names::of(ce)?;
    Ok(Some(PodDisruptionBudget {
        metadata: metadata(ce, &names, names.statefulset(), "node"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }))
}

/// A `monitoring.coreos.com/v1` ServiceMonitor scraping `:7200/metrics` of
/// every pod through the peer Service (which includes not-ready pods, whose
/// metrics matter most). Built as JSON: its type is not in k8s-openapi.
pub fn service_monitor(ce: &CoordinationEnsemble) -> Result<Option<serde_json::Value>, SpecError> {
    let sm = &ce.spec.monitoring.service_monitor;
    if !sm.enabled {
        return Ok(None);
    }
    let names = Names::of(ce)?;
    let mut object_labels = sm.labels.clone();
    object_labels.extend(labels(&names, "metrics"));
    let mut selector = selector_labels(&names);
    selector.insert("app.kubernetes.io/component".into(), "peers".into());
    let mut value = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": names.name,
            "namespace": names.namespace,
            "labels": object_labels,
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [names.namespace]},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": sm.interval}],
        },
    });
    if let Some(owner) = owner_reference(ce) {
        value["metadata"]["ownerReferences"] = json!([{
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
            "controller": owner.controller,
            "blockOwnerDeletion": owner.block_owner_deletion,
        }]);
    }
    Ok(Some(value))
}
