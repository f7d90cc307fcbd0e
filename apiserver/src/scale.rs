//! The `/scale` subresource: an `autoscaling/v1` Scale over `.spec.replicas` of deployments,
//! replica sets and stateful sets.

use serde_json::{json, Value};

use crate::object;

/// The Scale view of an object.
pub fn to_scale(object: &Value) -> Value {
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = object::metadata(object).cloned().unwrap_or_default();
    let mut metadata = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(value) = meta.get(field) {
            metadata[field] = value.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

/// Applies a Scale to the object: its replicas, and its resourceVersion as a precondition.
pub fn apply_scale(mut object: Value, scale: &Value) -> Result<Value, String> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"));
    }
    object["spec"]["replicas"] = json!(replicas);
    let wanted = object::resource_version(scale).to_string();
    if !wanted.is_empty() {
        object::set_resource_version(&mut object, wanted.parse().unwrap_or(-1));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_and_back() {
        let deployment = json!({"metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 1}});
        let scale = to_scale(&deployment);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web");
        let scaled = apply_scale(deployment, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert_eq!(scaled["metadata"]["resourceVersion"], "7");
    }
}
