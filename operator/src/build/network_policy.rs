//! The ensemble's NetworkPolicy: who may reach which port of its pods.
//! Client ports (gRPC, ZooKeeper, its secure port) and the HTTP port
//! (probes, metrics) are open; the peer port admits only the ensemble's
//! own pods; the admin port admits only the operator's pods, found by the
//! namespace and labels the operator was configured with. Without TLS this
//! policy is all that keeps the Admin API from the rest of the cluster
//! (where the network plugin enforces NetworkPolicies).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ADMIN_PORT, BuildContext, CLIENT_PORT, HTTP_PORT, Names, PEER_PORT, SpecError, metadata,
    selector_labels, tls,
};
use crate::crd::CoordinationEnsemble;

/// The label every namespace carries with its own name (Kubernetes 1.22+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

pub fn network_policy(
    ce: &CoordinationEnsemble,
    ctx: &BuildContext,
) -> Result<NetworkPolicy, SpecError> {
    let names = Names::of(ce)?;
    let own_pods = LabelSelector {
        match_labels: Some(selector_labels(&names)),
        ..LabelSelector::default()
    };
    let mut open = vec![tcp(CLIENT_PORT)];
    open.extend(tls::zookeeper_ports(ce).into_iter().map(|(_, p)| tcp(p)));
    open.push(tcp(HTTP_PORT));
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    ctx.operator.namespace.clone(),
                )]
                .into(),
            ),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(ctx.operator.pod_labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    Ok(NetworkPolicy {
        metadata: metadata(ce, &names, names.name.clone(), "network-policy"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own_pods.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                // Clients, from anywhere.
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(open),
                },
                // Peers: the ensemble's own pods only.
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(own_pods),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![tcp(PEER_PORT)]),
                },
                // The Admin API: the operator only.
                NetworkPolicyIngressRule {
                    from: Some(vec![operator]),
                    ports: Some(vec![tcp(ADMIN_PORT)]),
                },
            ]),
            egress: None,
        }),
    })
}
