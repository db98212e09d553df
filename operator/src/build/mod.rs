//! Pure builders: from a `CoordinationEnsemble` (and the few facts the
//! operator recorded about it) to the Kubernetes objects it owns. No client,
//! no clock: the same input always gives the same objects, which is what
//! `render`, the server-side apply and the tests rely on.
//!
//! Owned objects: the node ConfigMap (the `--config` TOML file), the
//! bootstrap-state ConfigMap (`initial-cluster-state`), the headless peer
//! Service, the client Service, the NetworkPolicy, with `spec.tls` and an
//! issuer the cert-manager Certificates, the StatefulSet, the
//! PodDisruptionBudget and, if asked, a ServiceMonitor.

mod network_policy;
mod services;
mod statefulset;
pub mod tls;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use sha1::Digest as _;

use crate::crd::CoordinationEnsemble;

pub use network_policy::{NAMESPACE_NAME_LABEL, network_policy};
pub use services::{client_service, pdb, peer_service, service_monitor};
pub use statefulset::{statefulset, termination_grace_seconds};
pub use tls::{Certificate, TlsSecretNames, certificates};

/// Container ports of a node (the node's defaults; fixed so that every
/// address template, probe and Service agrees).
pub const CLIENT_PORT: i32 = 7000;
pub const PEER_PORT: i32 = 7100;
pub const HTTP_PORT: i32 = 7200;
pub const ZOOKEEPER_PORT: i32 = 2181;
/// ZooKeeper over TLS (ZooKeeper's `secureClientPort`), with `spec.tls`.
pub const ZOOKEEPER_SECURE_PORT: i32 = 2281;
/// The node's Admin API listener, which the operator calls.
pub const ADMIN_PORT: i32 = 7300;

/// Where the node reads its config file.
pub const CONFIG_DIR: &str = "/etc/synod";
pub const CONFIG_KEY: &str = "synod.toml";
/// The key of the bootstrap-state ConfigMap read into
/// `SYNOD_INITIAL_CLUSTER_STATE` when the container starts.
pub const INITIAL_STATE_KEY: &str = "initial-cluster-state";
/// The log volume holds the data directory (the identity file) and the log.
pub const DATA_DIR: &str = "/var/lib/synod";
/// The snapshot volume's mount; snapshots go in a subdirectory so that a
/// filesystem's own entries (`lost+found`) stay out of the node's way.
pub const SNAPSHOT_MOUNT: &str = "/var/lib/synod-snapshot";

/// Pod template annotation carrying the hash of the config file: a change of
/// the file changes the template, hence the StatefulSet's update revision,
/// hence a rolling restart in the operator's order (T22).
pub const CONFIG_HASH_ANNOTATION: &str = "synod.io/config-hash";

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "synod-operator";

/// Flags the operator sets itself; `spec.config.extra` may not name them.
pub const RESERVED_FLAGS: &[&str] = &[
    "config",
    "client-addr",
    "http-addr",
    "peer-addr",
    "zookeeper-addr",
    "data-dir",
    "log-dir",
    "snapshot-dir",
    "node-id",
    "peers",
    "observers",
    "peer-address-template",
    "zookeeper-address-template",
    "cluster",
    "initial-cluster-state",
    "admin-addr",
    "admin-allow-remote",
    "tls-cert",
    "tls-key",
    "tls-ca",
    "tls-admin-ca",
    "tls-client-certs",
    "zookeeper-secure-addr",
];

/// What the builders need beyond the resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// Node image repository when the resource names none.
    pub default_image_repository: String,
    /// Node image tag when the resource names no version.
    pub default_version: String,
    /// Where the operator's own pods run: the only ones the NetworkPolicy
    /// lets reach the admin port.
    pub operator: OperatorPods,
}

impl Default for BuildContext {
    fn default() -> Self {
        BuildContext {
            default_image_repository: "synod".into(),
            default_version: env!("CARGO_PKG_VERSION").into(),
            operator: OperatorPods::default(),
        }
    }
}

/// The operator's pods: their namespace and labels (the chart passes its
/// release namespace and selector labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPods {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
}

impl Default for OperatorPods {
    fn default() -> Self {
        OperatorPods {
            namespace: "synod-system".into(),
            pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "synod-operator".to_owned(),
            )]),
        }
    }
}

/// `key=value,key=value` (the form of `--operator-pod-labels`) as labels;
/// `None` if a pair has no `=` or an empty key.
pub fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// Facts recorded in the status that shape the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Ids in `--peers`: 1..=n. Fixed at creation (T11): later changes of
    /// `spec.replicas` never reach the pod template.
    pub bootstrap_voters: u32,
    /// The ensemble has formed once: new pods start `existing`.
    pub bootstrapped: bool,
    /// StatefulSet replicas; owned by the planner, never by the spec.
    pub statefulset_replicas: i32,
}

impl Recorded {
    /// For a resource the operator has not acted on yet: the spec's size.
    pub fn initial(ce: &CoordinationEnsemble) -> Self {
        let n = ce.spec.replicas.max(1);
        Recorded {
            bootstrap_voters: u32::try_from(n).unwrap_or(1),
            bootstrapped: false,
            statefulset_replicas: n,
        }
    }

    /// From the status: the frozen bootstrap voters once recorded (else the
    /// spec's size, as at creation) and whether the ensemble formed.
    pub fn from_status(ce: &CoordinationEnsemble, statefulset_replicas: Option<i32>) -> Self {
        let initial = Recorded::initial(ce);
        let status = ce.status.as_ref();
        Recorded {
            bootstrap_voters: status
                .and_then(|s| s.bootstrap_voters.iter().max().copied())
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(initial.bootstrap_voters),
            bootstrapped: status.is_some_and(|s| s.bootstrap.is_some()),
            statefulset_replicas: statefulset_replicas.unwrap_or(initial.statefulset_replicas),
        }
    }
}

/// A spec the builders cannot turn into objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the resource has no {0}")]
    Missing(&'static str),
    #[error("spec.config.extra may not set {0:?}: the operator sets it")]
    ReservedFlag(String),
    #[error("spec.config.extra key {0:?} is not a flag name (lowercase letters, digits and '-')")]
    BadFlagName(String),
    #[error("{0}")]
    Invalid(&'static str),
}

/// Names of the ensemble's objects and DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub name: String,
    pub namespace: String,
    pub domain: Option<String>,
}

impl Names {
    pub fn of(ce: &CoordinationEnsemble) -> Result<Self, SpecError> {
        Ok(Names {
            name: ce
                .metadata
                .name
                .clone()
                .ok_or(SpecError::Missing("metadata.name"))?,
            namespace: ce
                .metadata
                .namespace
                .clone()
                .ok_or(SpecError::Missing("metadata.namespace"))?,
            domain: ce
                .spec
                .cluster_domain
                .as_ref()
                .map(|d| d.trim_matches('.').to_owned())
                .filter(|d| !d.is_empty()),
        })
    }

    pub fn statefulset(&self) -> String {
        self.name.clone()
    }
    pub fn peer_service(&self) -> String {
        format!("{}-peers", self.name)
    }
    pub fn client_service(&self) -> String {
        self.name.clone()
    }
    pub fn config_map(&self) -> String {
        format!("{}-config", self.name)
    }
    pub fn state_config_map(&self) -> String {
        format!("{}-bootstrap", self.name)
    }
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// `<svc>.<ns>.svc` plus the domain only when one was given (T9): the
    /// relative name resolves through the pod's search path.
    fn service_host(&self, service: &str) -> String {
        match &self.domain {
            Some(domain) => format!("{service}.{}.svc.{domain}", self.namespace),
            None => format!("{service}.{}.svc", self.namespace),
        }
    }

    /// Every name of a Service a certificate must cover: `<svc>.<ns>.svc`,
    /// and with the domain too when one was given.
    pub fn service_hosts(&self, service: &str) -> Vec<String> {
        let relative = format!("{service}.{}.svc", self.namespace);
        match &self.domain {
            Some(domain) => vec![relative.clone(), format!("{relative}.{domain}")],
            None => vec![relative],
        }
    }

    /// Every name of pod `ordinal` under the headless Service.
    pub fn pod_hosts(&self, ordinal: &str) -> Vec<String> {
        self.service_hosts(&self.peer_service())
            .into_iter()
            .map(|host| format!("{}-{ordinal}.{host}", self.name))
            .collect()
    }

    /// Host of pod `ordinal` through the headless peer Service.
    pub fn pod_host(&self, ordinal: &str) -> String {
        format!(
            "{}-{ordinal}.{}",
            self.name,
            self.service_host(&self.peer_service())
        )
    }

    /// The client Service's host.
    pub fn client_host(&self) -> String {
        self.service_host(&self.client_service())
    }
}

/// Labels every object and pod carries; the first two are the selector.
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "synod".into()),
        ("app.kubernetes.io/instance".into(), names.name.clone()),
    ])
}

pub fn labels(names: &Names, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert("app.kubernetes.io/component".into(), component.into());
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "synod-operator".into(),
    );
    labels
}

/// The controller owner reference to the resource, so that deleting it
/// garbage-collects everything built here (no finalizer: research §7.6).
pub fn owner_reference(ce: &CoordinationEnsemble) -> Option<OwnerReference> {
    ce.controller_owner_ref(&())
}

fn metadata(ce: &CoordinationEnsemble, names: &Names, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names, component)),
        owner_references: owner_reference(ce).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The node config file (`synod serve --config`). It depends on the spec
/// and on the bootstrap voters, never on `spec.replicas` directly, so that
/// scaling does not restart pods (T11). `initial-cluster-state` is not in
/// it: a file setting wins over the environment, and that value must change
/// without changing the file (see `state_config_map`).
pub fn node_config(ce: &CoordinationEnsemble, recorded: &Recorded) -> Result<String, SpecError> {
    let names = Names::of(ce)?;
    let settings = &ce.spec.config;
    let mut table = toml::Table::new();
    let mut put = |key: &str, value: toml::Value| {
        table.insert(key.to_owned(), value);
    };
    let text = |s: String| toml::Value::String(s);
    let number = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));

    put("cluster", text(ce.cluster_name()));
    let peers = (1..=recorded.bootstrap_voters.max(1))
        .map(|id| format!("{id}={}:{PEER_PORT}", names.pod_host(&(id - 1).to_string())))
        .collect::<Vec<_>>()
        .join(",");
    put("peers", text(peers));
    put(
        "peer-address-template",
        text(format!("{}:{PEER_PORT}", names.pod_host("{ordinal}"))),
    );
    // The address ZooKeeper clients are told about (`/zookeeper/config`):
    // the secure port when there is one.
    let zookeeper_ports = tls::zookeeper_ports(ce);
    let advertised = zookeeper_ports
        .iter()
        .map(|(_, port)| *port)
        .max()
        .unwrap_or(ZOOKEEPER_PORT);
    put(
        "zookeeper-address-template",
        text(format!("{}:{advertised}", names.pod_host("{ordinal}"))),
    );
    put("client-addr", text(format!("0.0.0.0:{CLIENT_PORT}")));
    put("peer-addr", text(format!("0.0.0.0:{PEER_PORT}")));
    put("http-addr", text(format!("0.0.0.0:{HTTP_PORT}")));
    let plaintext_zookeeper = zookeeper_ports
        .iter()
        .any(|(_, port)| *port == ZOOKEEPER_PORT);
    put(
        "zookeeper-addr",
        text(if plaintext_zookeeper {
            format!("0.0.0.0:{ZOOKEEPER_PORT}")
        } else {
            "off".into()
        }),
    );
    put("data-dir", text(DATA_DIR.into()));
    put("log-dir", text(format!("{DATA_DIR}/log")));
    put("snapshot-dir", text(format!("{SNAPSHOT_MOUNT}/snapshot")));
    let typed = [
        ("heartbeat-ms", settings.heartbeat_ms),
        ("election-timeout-ms", settings.election_timeout_ms),
        ("request-timeout-ms", settings.request_timeout_ms),
        ("tick-ms", settings.tick_ms),
        ("snapshot-every-txns", settings.snapshot_every_txns),
        ("keep-snapshots", settings.keep_snapshots),
        ("max-data-bytes", settings.max_data_bytes),
        ("max-sessions", settings.max_sessions),
        ("shutdown-grace-ms", settings.shutdown_grace_ms),
    ];
    for (key, value) in typed {
        if let Some(value) = value {
            put(key, number(value));
        }
    }
    for (key, value) in &settings.extra {
        let flag = key.replace('_', "-");
        if RESERVED_FLAGS.contains(&flag.as_str()) {
            return Err(SpecError::ReservedFlag(key.clone()));
        }
        if flag.is_empty()
            || !flag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(SpecError::BadFlagName(key.clone()));
        }
        put(&flag, text(value.clone()));
    }
    Ok(format!(
        "# Written by synod-operator for {}/{}; edits are overwritten.\n{table}",
        names.namespace, names.name
    ))
}

/// First 16 hex digits of the SHA-1 of the config file: stable across
/// operator builds (unlike std's hasher), so an operator upgrade alone never
/// rolls the pods.
pub fn config_hash(config: &str) -> String {
    let digest = sha1::Sha1::digest(config.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn config_map(ce: &CoordinationEnsemble, recorded: &Recorded) -> Result<ConfigMap, SpecError> {
    let names = Names::of(ce)?;
    Ok(ConfigMap {
        metadata: metadata(ce, &names, names.config_map(), "config"),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            node_config(ce, recorded)?,
        )])),
        ..ConfigMap::default()
    })
}

/// `new` until the ensemble has formed, `existing` afterwards. Pods read it
/// into `SYNOD_INITIAL_CLUSTER_STATE` through a `configMapKeyRef` when their
/// container starts, so flipping it changes no pod template and restarts
/// nothing: running pods keep the value they started with (it only matters
/// on an empty data directory), and every pod started later, a scaled-up
/// one or a bootstrap voter whose volume was wiped, starts `existing` and
/// waits to be (re-)added instead of voting with an empty disk.
pub fn state_config_map(
    ce: &CoordinationEnsemble,
    recorded: &Recorded,
) -> Result<ConfigMap, SpecError> {
    let names = Names::of(ce)?;
    let state = if recorded.bootstrapped {
        "existing"
    } else {
        "new"
    };
    Ok(ConfigMap {
        metadata: metadata(ce, &names, names.state_config_map(), "bootstrap-state"),
        data: Some(BTreeMap::from([(
            INITIAL_STATE_KEY.to_owned(),
            state.to_owned(),
        )])),
        ..ConfigMap::default()
    })
}

/// Every object the operator applies for the resource, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub config_map: ConfigMap,
    pub state_config_map: ConfigMap,
    pub peer_service: k8s_openapi::api::core::v1::Service,
    pub client_service: k8s_openapi::api::core::v1::Service,
    pub network_policy: k8s_openapi::api::networking::v1::NetworkPolicy,
    /// cert-manager Certificates (with `spec.tls.issuerRef` only).
    pub certificates: Vec<Certificate>,
    pub statefulset: k8s_openapi::api::apps::v1::StatefulSet,
    pub pdb: Option<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    pub service_monitor: Option<serde_json::Value>,
}

pub fn build_all(
    ce: &CoordinationEnsemble,
    recorded: &Recorded,
    ctx: &BuildContext,
) -> Result<Owned, SpecError> {
    let config_map = config_map(ce, recorded)?;
    let hash = config_hash(
        config_map
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .map(String::as_str)
            .unwrap_or_default(),
    );
    Ok(Owned {
        state_config_map: state_config_map(ce, recorded)?,
        peer_service: peer_service(ce)?,
        client_service: client_service(ce)?,
        network_policy: network_policy(ce, ctx)?,
        certificates: certificates(ce)?,
        statefulset: statefulset(ce, recorded, ctx, &hash)?,
        pdb: pdb(ce)?,
        service_monitor: service_monitor(ce)?,
        config_map,
    })
}

impl Owned {
    /// Every object as JSON, in apply order (for `render` and the tests).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        fn typed<T: k8s_openapi::Resource + serde::Serialize>(
            object: &T,
        ) -> Result<serde_json::Value, serde_json::Error> {
            let mut value = serde_json::to_value(object)?;
            // k8s-openapi fills these on serialization; make sure anyway.
            value["apiVersion"] = T::API_VERSION.into();
            value["kind"] = T::KIND.into();
            Ok(value)
        }
        let mut out = vec![
            typed(&self.config_map)?,
            typed(&self.state_config_map)?,
            typed(&self.peer_service)?,
            typed(&self.client_service)?,
            typed(&self.network_policy)?,
        ];
        for certificate in &self.certificates {
            out.push(serde_json::to_value(certificate)?);
        }
        out.push(typed(&self.statefulset)?);
        if let Some(pdb) = &self.pdb {
            out.push(typed(pdb)?);
        }
        if let Some(sm) = &self.service_monitor {
            out.push(sm.clone());
        }
        Ok(out)
    }
}
