//! `synod-operator render`: the objects the operator would apply for a
//! resource, as a YAML stream like `helm template`, without a cluster (for
//! review, GitOps and debugging). Rendered as for a resource not yet acted
//! on: bootstrap voters = `spec.replicas`, `initial-cluster-state = new`,
//! unless the resource carries a status with a bootstrap record.

use serde::Deserialize as _;

use crate::build::{BuildContext, Recorded, SpecError, build_all};
use crate::crd::CoordinationEnsemble;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("document {index} is not YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("document {index} is not a CoordinationEnsemble: {source}")]
    NotAnEnsemble {
        index: usize,
        source: serde_json::Error,
    },
    #[error("document {index}: {source}")]
    Spec { index: usize, source: SpecError },
    #[error("cannot serialize the objects: {0}")]
    Serialize(String),
    #[error("no CoordinationEnsemble in the input")]
    Empty,
}

/// Renders every `CoordinationEnsemble` of a YAML stream; other kinds are
/// skipped. Resources without a namespace get `default_namespace`.
pub fn render(
    input: &str,
    default_namespace: &str,
    ctx: &BuildContext,
) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut rendered = 0;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(input).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .map_err(|source| RenderError::Yaml { index, source })?;
        if value.is_null()
            || value.get("kind").and_then(|k| k.as_str()) != Some("CoordinationEnsemble")
        {
            continue;
        }
        let mut ce: CoordinationEnsemble = serde_json::from_value(value)
            .map_err(|source| RenderError::NotAnEnsemble { index, source })?;
        if ce.metadata.namespace.is_none() {
            ce.metadata.namespace = Some(default_namespace.to_owned());
        }
        let recorded = Recorded::from_status(&ce, None);
        let owned =
            build_all(&ce, &recorded, ctx).map_err(|source| RenderError::Spec { index, source })?;
        let objects = owned
            .to_values()
            .map_err(|e| RenderError::Serialize(e.to_string()))?;
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let yaml = serde_yaml_ng::to_string(&object)
                .map_err(|e| RenderError::Serialize(e.to_string()))?;
            out.push_str(&format!("---\n# Source: {kind}/{name}\n{yaml}"));
        }
        rendered += 1;
    }
    if rendered == 0 {
        return Err(RenderError::Empty);
    }
    Ok(out)
}
