//! What `spec.tls` adds to an ensemble: the cert-manager `Certificate`s
//! (the node certificate shared by every pod, and the operator's admin
//! client certificate), the Secret volumes and mounts of the node pods, and
//! the node flags that point at them. Without `spec.tls` the nodes still
//! get their own admin listener, opened to the pod network
//! (`--admin-allow-remote`) for the operator and fenced by the
//! NetworkPolicy alone.
//!
//! One certificate for every member, not one per member: a StatefulSet's
//! pod template cannot name a per-pod Secret, and mounting every member's
//! Secret into every pod (to pick one by pod name) would hand each pod the
//! others' keys anyway (docs/architecture.md).

use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{
    ADMIN_PORT, Names, SpecError, ZOOKEEPER_PORT, ZOOKEEPER_SECURE_PORT, labels, metadata,
};
use crate::crd::{CoordinationEnsemble, IssuerRef, TlsSpec};

/// Where the node Secret is mounted: `tls.crt`, `tls.key`, `ca.crt`.
pub const SERVER_TLS_DIR: &str = "/etc/synod-tls/server";
/// Where the admin Secret's `ca.crt` (and nothing else) is mounted.
pub const ADMIN_CA_DIR: &str = "/etc/synod-tls/admin-ca";
/// The most members an ensemble can have (the CRD's `replicas` maximum):
/// the node certificate names every ordinal below it, so scaling never
/// re-issues it.
pub const MAX_MEMBERS: u32 = 9;

/// API version and kind of cert-manager certificates.
pub const CERTIFICATE_API_VERSION: &str = "cert-manager.io/v1";
pub const CERTIFICATE_KIND: &str = "Certificate";

/// Keys of a `kubernetes.io/tls` Secret as cert-manager writes it.
pub const SECRET_CERT_KEY: &str = "tls.crt";
pub const SECRET_KEY_KEY: &str = "tls.key";
pub const SECRET_CA_KEY: &str = "ca.crt";

/// The Secrets an ensemble with `spec.tls` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSecretNames {
    /// The node certificate (mounted into every pod).
    pub server: String,
    /// The operator's admin client certificate (only its `ca.crt` is
    /// mounted into the pods).
    pub admin: String,
}

impl TlsSecretNames {
    /// The Secrets of `spec.tls`: the user's, or `<name>-tls` and
    /// `<name>-admin-tls`, which cert-manager writes.
    pub fn of(names: &Names, tls: &TlsSpec) -> Self {
        match &tls.secrets {
            Some(secrets) => TlsSecretNames {
                server: secrets.server.clone(),
                admin: secrets.admin.clone(),
            },
            None => TlsSecretNames {
                server: format!("{}-tls", names.name),
                admin: format!("{}-admin-tls", names.name),
            },
        }
    }
}

/// A cert-manager `Certificate` (`cert-manager.io/v1`): the subset of its
/// spec the operator sets. Typed so that tests check its shape; applied as
/// a dynamic object (cert-manager's types are not in k8s-openapi).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CertificateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    /// Labels cert-manager puts on the Secret it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    pub usages: Vec<String>,
    pub private_key: PrivateKey,
    pub issuer_ref: IssuerRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    pub algorithm: String,
    pub size: u32,
    pub encoding: String,
    /// `Always`: every renewal makes a new key.
    pub rotation_policy: String,
}

fn private_key() -> PrivateKey {
    PrivateKey {
        algorithm: "ECDSA".into(),
        size: 256,
        encoding: "PKCS8".into(),
        rotation_policy: "Always".into(),
    }
}

/// Every name the node certificate must be valid for: each member's name
/// under the headless Service (what peers dial and check, and what the
/// operator verifies), and the client Service's names, with the cluster
/// domain only when the spec gives one.
pub fn server_dns_names(names: &Names) -> Vec<String> {
    let mut out: Vec<String> = (0..MAX_MEMBERS)
        .flat_map(|ordinal| names.pod_hosts(&ordinal.to_string()))
        .collect();
    let client = names.client_service();
    out.push(client.clone());
    out.push(format!("{client}.{}", names.namespace));
    out.extend(names.service_hosts(&client));
    out
}

/// The Certificates to apply: none without an issuer (Secrets given, or
/// no TLS); else the node certificate and the operator's admin client
/// certificate.
pub fn certificates(ce: &CoordinationEnsemble) -> Result<Vec<Certificate>, SpecError> {
    let Some(tls) = &ce.spec.tls else {
        return Ok(Vec::new());
    };
    let issuer = match (&tls.issuer_ref, &tls.secrets, &tls.admin_issuer_ref) {
        (Some(_), Some(_), _) => {
            return Err(SpecError::Invalid(
                "spec.tls names both issuerRef and secrets: choose one",
            ));
        }
        (None, None, _) => {
            return Err(SpecError::Invalid(
                "spec.tls needs issuerRef (cert-manager) or secrets (existing Secrets)",
            ));
        }
        (None, Some(_), Some(_)) => {
            return Err(SpecError::Invalid(
                "spec.tls.adminIssuerRef goes with issuerRef, not with secrets",
            ));
        }
        (None, Some(_), None) => return Ok(Vec::new()),
        (Some(issuer), None, _) => issuer,
    };
    let names = Names::of(ce)?;
    let secrets = TlsSecretNames::of(&names, tls);
    let certificate = |name: String, component: &str, spec: CertificateSpec| {
        let meta = metadata(ce, &names, name, component);
        Certificate {
            api_version: CERTIFICATE_API_VERSION.into(),
            kind: CERTIFICATE_KIND.into(),
            metadata: meta,
            spec,
        }
    };
    let server = certificate(
        format!("{}-server", names.name),
        "tls",
        CertificateSpec {
            secret_name: secrets.server,
            secret_template: Some(SecretTemplate {
                labels: labels(&names, "tls"),
            }),
            common_name: None,
            dns_names: server_dns_names(&names),
            // Peers dial each other with the same certificate.
            usages: vec![
                "digital signature".into(),
                "server auth".into(),
                "client auth".into(),
            ],
            private_key: private_key(),
            issuer_ref: issuer.clone(),
        },
    );
    let admin = certificate(
        format!("{}-operator-admin", names.name),
        "admin-tls",
        CertificateSpec {
            secret_name: secrets.admin,
            secret_template: Some(SecretTemplate {
                labels: labels(&names, "admin-tls"),
            }),
            common_name: Some("synod-operator".into()),
            dns_names: Vec::new(),
            usages: vec!["digital signature".into(), "client auth".into()],
            private_key: private_key(),
            issuer_ref: tls
                .admin_issuer_ref
                .clone()
                .unwrap_or_else(|| issuer.clone()),
        },
    );
    Ok(vec![server, admin])
}

/// The node flags beyond the config file: the admin listener (opened to
/// the pod network; without TLS that takes `--admin-allow-remote`) and,
/// with TLS, the certificate files and the ZooKeeper secure port.
pub fn node_args(ce: &CoordinationEnsemble) -> Vec<String> {
    let mut args = vec!["--admin-addr".into(), format!("0.0.0.0:{ADMIN_PORT}")];
    let Some(tls) = &ce.spec.tls else {
        args.push("--admin-allow-remote".into());
        return args;
    };
    let file = |dir: &str, key: &str| format!("{dir}/{key}");
    args.extend([
        "--tls-cert".into(),
        file(SERVER_TLS_DIR, SECRET_CERT_KEY),
        "--tls-key".into(),
        file(SERVER_TLS_DIR, SECRET_KEY_KEY),
        "--tls-ca".into(),
        file(SERVER_TLS_DIR, SECRET_CA_KEY),
        "--tls-admin-ca".into(),
        file(ADMIN_CA_DIR, SECRET_CA_KEY),
        "--tls-client-certs".into(),
        tls.client_certs.flag_value().into(),
        "--zookeeper-secure-addr".into(),
        format!("0.0.0.0:{ZOOKEEPER_SECURE_PORT}"),
    ]);
    args
}

/// The ZooKeeper ports a node serves, as (port name, number): 2181 without
/// TLS; 2281 with it, plus 2181 if `plaintextZooKeeper`.
pub fn zookeeper_ports(ce: &CoordinationEnsemble) -> Vec<(&'static str, i32)> {
    match &ce.spec.tls {
        None => vec![("zookeeper", ZOOKEEPER_PORT)],
        Some(tls) if tls.plaintext_zoo_keeper => vec![
            ("zookeeper", ZOOKEEPER_PORT),
            ("zookeeper-tls", ZOOKEEPER_SECURE_PORT),
        ],
        Some(_) => vec![("zookeeper-tls", ZOOKEEPER_SECURE_PORT)],
    }
}

/// The Secret volumes and their read-only mounts (none without TLS). Only
/// `ca.crt` of the admin Secret reaches the pods: its key is the
/// operator's.
pub fn volumes(ce: &CoordinationEnsemble) -> Result<(Vec<Volume>, Vec<VolumeMount>), SpecError> {
    let Some(tls) = &ce.spec.tls else {
        return Ok((Vec::new(), Vec::new()));
    };
    let names = Names::of(ce)?;
    let secrets = TlsSecretNames::of(&names, tls);
    let volume = |name: &str, secret: String, items: Option<Vec<KeyToPath>>| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            // Read by the node's group (fsGroup), by no one else.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Ok((
        vec![
            volume("tls", secrets.server, None),
            volume(
                "admin-ca",
                secrets.admin,
                Some(vec![KeyToPath {
                    key: SECRET_CA_KEY.into(),
                    path: SECRET_CA_KEY.into(),
                    mode: None,
                }]),
            ),
        ],
        vec![
            mount("tls", SERVER_TLS_DIR),
            mount("admin-ca", ADMIN_CA_DIR),
        ],
    ))
}
