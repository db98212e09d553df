//! The reconciler's reads and writes of Kubernetes objects for one
//! resource: list what it owns, server-side apply with the one field
//! manager, status through the status subresource, deletions with a `uid`
//! precondition so that a newer object of the same name is never deleted by
//! mistake.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    Preconditions,
};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use super::{Error, World};
use crate::admin::AdminCredentials;
use crate::build::tls::{
    CERTIFICATE_API_VERSION, CERTIFICATE_KIND, Certificate, SECRET_CA_KEY, SECRET_CERT_KEY,
    SECRET_KEY_KEY,
};
use crate::build::{
    FIELD_MANAGER, Names, Owned, Recorded, TlsSecretNames, selector_labels, state_config_map,
};
use crate::crd::{CoordinationEnsemble, CoordinationEnsembleStatus};

#[derive(Clone)]
pub struct KubeIo {
    client: Client,
    pub namespace: String,
    pub name: String,
    selector: String,
}

impl std::fmt::Debug for KubeIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeIo")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

impl KubeIo {
    pub fn new(client: Client, ce: &CoordinationEnsemble) -> Result<Self, Error> {
        let names = Names::of(ce)?;
        let selector = selector_labels(&names)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok(KubeIo {
            client,
            namespace: names.namespace,
            name: names.name,
            selector,
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn pod_name(&self, id: u64) -> String {
        format!("{}-{}", self.name, id.saturating_sub(1))
    }

    /// The StatefulSet, its pods and the ensemble's volumes.
    pub async fn observe(&self) -> Result<World, Error> {
        let statefulset = self.api::<StatefulSet>().get_opt(&self.name).await?;
        let by_label = ListParams::default().labels(&self.selector);
        let pods = self.api::<Pod>().list(&by_label).await?.items;
        let claims = self
            .api::<PersistentVolumeClaim>()
            .list(&by_label)
            .await?
            .items;
        Ok(World {
            name: self.name.clone(),
            statefulset,
            pods,
            claims,
        })
    }

    async fn apply_one<K>(&self, name: &str, object: &K) -> Result<(), Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        self.api::<K>()
            .patch(name, &apply_params(), &Patch::Apply(object))
            .await?;
        Ok(())
    }

    /// Server-side apply of every owned object, config first so that pods
    /// never start without it.
    pub async fn apply(&self, owned: &Owned) -> Result<(), Error> {
        self.apply_one(&name_of(&owned.config_map.metadata), &owned.config_map)
            .await?;
        self.apply_one(
            &name_of(&owned.state_config_map.metadata),
            &owned.state_config_map,
        )
        .await?;
        self.apply_one::<Service>(&name_of(&owned.peer_service.metadata), &owned.peer_service)
            .await?;
        self.apply_one::<Service>(
            &name_of(&owned.client_service.metadata),
            &owned.client_service,
        )
        .await?;
        self.apply_one::<NetworkPolicy>(
            &name_of(&owned.network_policy.metadata),
            &owned.network_policy,
        )
        .await?;
        // Before the StatefulSet: its pods cannot start without the
        // Secrets cert-manager writes from these. Without cert-manager's
        // CRD this fails, and the failure is reported: TLS needs it.
        for certificate in &owned.certificates {
            self.apply_certificate(certificate).await?;
        }
        self.apply_statefulset(&owned.statefulset).await?;
        if let Some(pdb) = &owned.pdb {
            self.apply_one::<PodDisruptionBudget>(&name_of(&pdb.metadata), pdb)
                .await?;
        }
        if let Some(sm) = &owned.service_monitor {
            // Optional: without the Prometheus Operator's CRD this fails;
            // the ensemble does not depend on it.
            if let Err(e) = self.apply_service_monitor(sm).await {
                warn!(ensemble = %self.name, error = %e, "cannot apply the ServiceMonitor");
            }
        }
        Ok(())
    }

    pub async fn apply_statefulset(&self, sts: &StatefulSet) -> Result<(), Error> {
        self.apply_one(&name_of(&sts.metadata), sts).await
    }

    pub async fn apply_state_config_map(
        &self,
        ce: &CoordinationEnsemble,
        recorded: &Recorded,
    ) -> Result<(), Error> {
        let cm: ConfigMap = state_config_map(ce, recorded)?;
        self.apply_one(&name_of(&cm.metadata), &cm).await
    }

    async fn apply_certificate(&self, certificate: &Certificate) -> Result<(), Error> {
        let (group, version) = CERTIFICATE_API_VERSION
            .split_once('/')
            .unwrap_or(("cert-manager.io", "v1"));
        let gvk = GroupVersionKind::gvk(group, version, CERTIFICATE_KIND);
        let resource = ApiResource::from_gvk_with_plural(&gvk, "certificates");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.patch(
            &name_of(&certificate.metadata),
            &apply_params(),
            &Patch::Apply(certificate),
        )
        .await?;
        Ok(())
    }

    /// The operator's admin credentials for a TLS ensemble: the node CA
    /// from the node Secret, the client certificate and key from the admin
    /// Secret.
    pub async fn admin_credentials(
        &self,
        secrets: &TlsSecretNames,
    ) -> Result<AdminCredentials, Error> {
        let api = self.api::<Secret>();
        let read = |secret: Option<Secret>, name: &str, keys: &[&'static str]| {
            let secret = secret.ok_or_else(|| Error::SecretMissing {
                name: name.to_owned(),
            })?;
            let data = secret.data.unwrap_or_default();
            keys.iter()
                .map(|key| {
                    data.get(*key).map(|bytes| bytes.0.clone()).ok_or_else(|| {
                        Error::SecretKeyMissing {
                            name: name.to_owned(),
                            key,
                        }
                    })
                })
                .collect::<Result<Vec<Vec<u8>>, Error>>()
        };
        let server = read(
            api.get_opt(&secrets.server).await?,
            &secrets.server,
            &[SECRET_CA_KEY],
        )?;
        let admin = read(
            api.get_opt(&secrets.admin).await?,
            &secrets.admin,
            &[SECRET_CERT_KEY, SECRET_KEY_KEY],
        )?;
        let credentials = AdminCredentials::from_pem(&server[0], &admin[0], &admin[1])
            .map_err(crate::admin::AdminError::from)?;
        Ok(credentials)
    }

    async fn apply_service_monitor(&self, sm: &serde_json::Value) -> Result<(), Error> {
        let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "servicemonitors");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.patch(&self.name, &apply_params(), &Patch::Apply(sm))
            .await?;
        Ok(())
    }

    /// The status subresource, by server-side apply: fields the operator
    /// stops setting (a leader no longer known) are removed.
    pub async fn write_status(&self, status: &CoordinationEnsembleStatus) -> Result<(), Error> {
        let body = json!({
            "apiVersion": "synod.io/v1alpha1",
            "kind": "CoordinationEnsemble",
            "status": status,
        });
        Api::<CoordinationEnsemble>::namespaced(self.client.clone(), &self.namespace)
            .patch_status(&self.name, &apply_params(), &Patch::Apply(&body))
            .await?;
        Ok(())
    }

    pub async fn delete_pod(&self, name: &str, uid: &str) -> Result<(), Error> {
        self.api::<Pod>().delete(name, &precondition(uid)).await?;
        Ok(())
    }

    pub async fn delete_claim(&self, name: &str, uid: &str) -> Result<(), Error> {
        self.api::<PersistentVolumeClaim>()
            .delete(name, &precondition(uid))
            .await?;
        Ok(())
    }
}

fn precondition(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}
