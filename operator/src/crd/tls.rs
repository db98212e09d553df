//! `spec.tls` of a `CoordinationEnsemble`: where the node certificate and
//! the operator's admin client certificate come from (a cert-manager
//! issuer, or Secrets the user manages), and whether clients must present
//! a certificate. The builders turn it into cert-manager `Certificate`s,
//! volumes and node flags (`build::tls`); the reconciler reads the admin
//! Secret to call the nodes' Admin API over mutual TLS.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TLS on the client, peer, ZooKeeper secure and admin ports of every node
/// (mutual TLS between peers and for the Admin API). Set it when the
/// ensemble is created: it cannot be added or removed later, because
/// members with and without TLS cannot talk to each other during a roll.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.issuerRef) != has(self.secrets)").message("spec.tls needs exactly one of issuerRef (cert-manager issues the certificates) and secrets (existing Secrets)"),
    validation = Rule::new("!has(self.adminIssuerRef) || has(self.issuerRef)").message("spec.tls.adminIssuerRef goes with issuerRef; with secrets, name the admin Secret in secrets.admin"),
)]
pub struct TlsSpec {
    /// cert-manager issues the node certificate (and, unless
    /// `adminIssuerRef` is set, the operator's admin client certificate)
    /// from this issuer. It must fill `ca.crt` in the Secrets it writes
    /// (a CA, Vault or similar issuer, not ACME).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// A separate issuer for the operator's admin client certificate. The
    /// nodes then accept Admin calls only with a certificate from this
    /// issuer's CA, not from the one that signs node (and client)
    /// certificates. Recommended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_issuer_ref: Option<IssuerRef>,
    /// Existing `kubernetes.io/tls` Secrets (with `ca.crt`) instead of an
    /// issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<TlsSecrets>,
    /// Whether clients of the gRPC and ZooKeeper secure ports must present
    /// a certificate from the ensemble's CA.
    #[serde(default)]
    pub client_certs: ClientCertsMode,
    /// Keep the plaintext ZooKeeper port 2181 open beside the secure 2281,
    /// for ZooKeeper clients that cannot speak TLS. Off: 2281 only.
    #[serde(default)]
    pub plaintext_zoo_keeper: bool,
}

/// A cert-manager issuer (`cert-manager.io/v1` `Issuer` in the ensemble's
/// namespace, or a `ClusterIssuer`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default)]
    pub kind: IssuerKind,
    /// API group of the issuer; external issuers have their own.
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1))]
    pub group: String,
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        }
    }
}

/// Secrets of type `kubernetes.io/tls` in the ensemble's namespace, each
/// with `tls.crt`, `tls.key` and `ca.crt`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecrets {
    /// The node certificate, mounted into every pod: valid for every pod's
    /// name under the headless Service (`<name>-<ordinal>.<name>-peers.
    /// <namespace>.svc`, with the cluster domain if `clusterDomain` is
    /// set), for both server and client use; its `ca.crt` is the CA that
    /// peers and clients are verified against.
    #[schemars(length(min = 1, max = 253))]
    pub server: String,
    /// The operator's admin client certificate, read by the operator
    /// through the API server. Its `ca.crt` is the CA the nodes accept
    /// Admin calls from (only `ca.crt` is mounted into the pods).
    #[schemars(length(min = 1, max = 253))]
    pub admin: String,
}

/// `--tls-client-certs` of the nodes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientCertsMode {
    /// Clients are not asked for a certificate.
    None,
    /// A certificate is verified if presented (and then names the client
    /// in `x509` ACLs); clients without one are served too.
    #[default]
    Optional,
    /// Clients without a certificate from the ensemble's CA are refused.
    Required,
}

impl ClientCertsMode {
    /// The value of the node flag.
    pub fn flag_value(self) -> &'static str {
        match self {
            ClientCertsMode::None => "none",
            ClientCertsMode::Optional => "optional",
            ClientCertsMode::Required => "required",
        }
    }
}
