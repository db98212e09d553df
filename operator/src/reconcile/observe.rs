//! From the Kubernetes objects and the nodes' `Status` answers to the
//! planner's `Observed`. Nodes are asked by pod IP (no dependence on the
//! operator's own DNS view) on the port their pod declares as `admin`, all
//! at once, each with a short timeout; a node that does not answer simply
//! does not report. Over TLS the node's certificate is checked against the
//! pod's stable DNS name.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use synod_proto::v1 as pb;
use tracing::debug;

use crate::admin::{self, AdminCredentials, Target};
use crate::build::{CLIENT_PORT, Names};
use crate::planner::{ClaimRef, LeaderView, NodeId, NodeView, Observed, PodView, StatefulSetView};

/// The Kubernetes side, as listed.
#[derive(Debug, Clone)]
pub struct World {
    pub name: String,
    pub statefulset: Option<StatefulSet>,
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
}

/// The answers of the nodes, by the id of the pod they run in.
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses {
    pub by_pod: BTreeMap<NodeId, (Target, pb::StatusResponse)>,
}

impl NodeStatuses {
    /// The answer of the node that says it leads.
    pub fn leader(&self) -> Option<&pb::StatusResponse> {
        self.by_pod
            .values()
            .map(|(_, s)| s)
            .find(|s| admin::is_leader(s))
    }

    /// How to reach the leader's Admin API.
    pub fn leader_target(&self) -> Option<Target> {
        self.by_pod
            .values()
            .find(|(_, s)| admin::is_leader(s))
            .map(|(t, _)| t.clone())
    }
}

/// `<name>-<ordinal>` → id ordinal + 1, as the node derives it.
pub fn id_of(statefulset: &str, object_name: &str) -> Option<NodeId> {
    let ordinal: u64 = object_name
        .strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    ordinal.checked_add(1)
}

/// A claim's member: `log-<name>-<ordinal>` or `snapshot-<name>-<ordinal>`.
fn claim_id(statefulset: &str, claim: &str) -> Option<NodeId> {
    ["log-", "snapshot-"]
        .iter()
        .find_map(|prefix| id_of(statefulset, claim.strip_prefix(prefix)?))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the node prints when it refuses its data directory at start-up
/// (node/src/storage/identity.rs, node/src/driver/identity.rs); the pod's
/// `FallbackToLogsOnError` policy makes it the termination message.
const FOREIGN_DATA_MARKERS: [&str; 3] = [
    "but this node was started with --cluster",
    "the directories were mixed",
    "this node was put in another ensemble",
];

fn holds_foreign_data(pod: &Pod) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().any(|c| {
        [c.state.as_ref(), c.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|state| state.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .filter_map(|t| t.message.as_deref())
            .any(|m| FOREIGN_DATA_MARKERS.iter().any(|marker| m.contains(marker)))
    })
}

impl World {
    pub fn statefulset_replicas(&self) -> Option<i32> {
        self.statefulset.as_ref()?.spec.as_ref()?.replicas
    }

    /// The planner's input.
    pub fn to_observed(&self, nodes: &NodeStatuses) -> Observed {
        let now = Timestamp::now();
        let statefulset = self.statefulset.as_ref().map(|sts| StatefulSetView {
            replicas: sts
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(0),
            update_revision: sts.status.as_ref().and_then(|s| s.update_revision.clone()),
        });
        let pods = self
            .pods
            .iter()
            .filter_map(|pod| {
                let id = id_of(&self.name, pod.metadata.name.as_deref()?)?;
                let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let age = created
                    .map(|t| now.duration_since(t).as_secs().max(0))
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0);
                Some((
                    id,
                    PodView {
                        uid: pod.metadata.uid.clone().unwrap_or_default(),
                        ready: pod_ready(pod),
                        terminating: pod.metadata.deletion_timestamp.is_some(),
                        revision: pod
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("controller-revision-hash").cloned()),
                        age_seconds: age,
                        foreign_data: holds_foreign_data(pod),
                    },
                ))
            })
            .collect();
        let mut claims: BTreeMap<NodeId, Vec<ClaimRef>> = BTreeMap::new();
        for claim in &self.claims {
            let Some(name) = claim.metadata.name.as_deref() else {
                continue;
            };
            if let Some(id) = claim_id(&self.name, name) {
                claims.entry(id).or_default().push(ClaimRef {
                    name: name.to_owned(),
                    uid: claim.metadata.uid.clone().unwrap_or_default(),
                });
            }
        }
        let node_views = nodes
            .by_pod
            .iter()
            .map(|(id, (_, s))| {
                (
                    *id,
                    NodeView {
                        node_id: s.node_id,
                        awaiting_readd: admin::awaiting_readd(s),
                    },
                )
            })
            .collect();
        let leader = nodes.leader().map(|s| LeaderView {
            id: s.node_id,
            commit_index: s.commit_index,
            change_pending: s.membership_change_pending,
            members: s
                .members
                .iter()
                .map(|m| (m.id, admin::member_view(m)))
                .collect(),
        });
        Observed {
            statefulset,
            pods,
            claims,
            nodes: node_views,
            leader,
            bootstrapped: false,
        }
    }
}

/// The port a pod serves the Admin API on: the container port named
/// `admin` (7300). A pod started from a template of an operator before the
/// admin listener has none and serves it on the client port; it is asked
/// there until the roll replaces it.
pub fn admin_port(pod: &Pod) -> i32 {
    pod.spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("admin"))
        .map_or(CLIENT_PORT, |p| p.container_port)
}

/// `Status` of every running pod with an IP, concurrently; over TLS with
/// `credentials` (each node's certificate checked against its pod's name
/// under the headless Service).
pub async fn observe_nodes(
    world: &World,
    names: &Names,
    credentials: Option<&AdminCredentials>,
) -> NodeStatuses {
    let mut targets: Vec<(NodeId, Target)> = Vec::new();
    for pod in world
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(id) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| id_of(&world.name, n))
        else {
            continue;
        };
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        // An IPv6 pod address needs brackets in host:port.
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        let address = format!("{host}:{}", admin_port(pod));
        let target = match credentials {
            None => Target::plain(address),
            Some(credentials) => {
                let name = names.pod_host(&id.saturating_sub(1).to_string());
                match Target::tls(address, credentials, &name) {
                    Ok(target) => target,
                    Err(e) => {
                        debug!(id, error = %e, "node cannot be asked");
                        continue;
                    }
                }
            }
        };
        targets.push((id, target));
    }
    let answers = futures::future::join_all(targets.into_iter().map(|(id, target)| async move {
        let answer = admin::status(&target).await;
        (id, target, answer)
    }))
    .await;
    let mut statuses = NodeStatuses::default();
    for (id, target, answer) in answers {
        match answer {
            Ok(status) => {
                statuses.by_pod.insert(id, (target, status));
            }
            Err(e) => debug!(id, error = %e, "node did not report"),
        }
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::ADMIN_PORT;

    #[test]
    fn a_refused_data_directory_is_recognised_from_the_termination_message() {
        let pod = |exit: i32, message: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "synod-1"},
                "status": {"containerStatuses": [{
                    "name": "synod", "image": "synod", "imageID": "", "ready": false,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": exit, "message": message}},
                }]},
            }))
            .expect("pod")
        };
        let refusal = "Error: the data directory /var/lib/synod belongs to cluster \"blue\", but this node was started with --cluster \"green\": it is another ensemble's directory.";
        assert!(holds_foreign_data(&pod(1, refusal)));
        assert!(!holds_foreign_data(&pod(0, refusal)));
        assert!(!holds_foreign_data(&pod(1, "Error: address in use")));
    }

    #[test]
    fn the_admin_port_is_the_one_the_pod_names_admin_else_the_client_port() {
        let pod = |ports: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "synod-0"},
                "spec": {"containers": [{"name": "synod", "ports": ports}]},
            }))
            .expect("pod")
        };
        assert_eq!(
            admin_port(&pod(serde_json::json!([
                {"name": "client", "containerPort": 7000},
                {"name": "admin", "containerPort": ADMIN_PORT},
            ]))),
            7300
        );
        // A pod from before the admin listener: Admin on the client port.
        assert_eq!(
            admin_port(&pod(
                serde_json::json!([{"name": "client", "containerPort": 7000}])
            )),
            7000
        );
        let no_spec: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "synod-0"}}))
                .expect("pod");
        assert_eq!(admin_port(&no_spec), CLIENT_PORT);
    }

    #[test]
    fn ids_come_from_ordinals_as_numbers() {
        assert_eq!(id_of("synod", "synod-0"), Some(1));
        assert_eq!(id_of("synod", "synod-10"), Some(11));
        assert_eq!(id_of("my-ens", "my-ens-2"), Some(3));
        assert_eq!(id_of("synod", "synodx-1"), None);
        assert_eq!(id_of("synod", "synod-a"), None);
        assert_eq!(claim_id("synod", "log-synod-3"), Some(4));
        assert_eq!(claim_id("synod", "snapshot-synod-0"), Some(1));
        assert_eq!(claim_id("synod", "data-synod-0"), None);
    }
}
