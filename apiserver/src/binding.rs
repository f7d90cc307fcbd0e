//! `pods/binding`: `POST .../namespaces/NS/pods/NAME/binding` with a v1 Binding assigns a pod
//! to a node, as a scheduler does (kube-apiserver's `BindingREST`).
//!
//! The pod gets `spec.nodeName` = the Binding's `target.name`, the Binding's annotations, and a
//! `PodScheduled=True` condition, in one conditional write of the pod (retried when another
//! write got in between, as `GuaranteedUpdate` does). A pod already assigned to a node (the
//! same one included), being deleted, or held by scheduling gates is a 409 Conflict on
//! `pods/binding`; the Binding's `metadata.uid` and `resourceVersion`, when set, are
//! preconditions on the pod. The pod's managed fields do not change: the write is the
//! subresource's, not a client's update of the pod.
//!
//! kube-apiserver answers an invalid Binding (no `target.name`, a target kind other than Node)
//! with a 500 that carries the field errors; keel answers 422 Invalid with the same field
//! errors.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::{Cause, Error, ObjectRef, Result};
use crate::http::{self, Params};
use crate::route::ResourcePath;
use crate::state::{storage_error, ApiState};
use crate::storage::StorageError;
use crate::writer::{self, WriteOptions, CONFLICT_RETRIES_MAX};
use crate::{keys, object};

/// `pods/binding` as errors name it.
fn binding_ref(name: &str) -> ObjectRef {
    ObjectRef { group: "", plural: "pods/binding", kind: "Binding", name: name.to_string() }
}

fn conflict(name: &str, detail: String) -> Error {
    Error::Conflict { object: binding_ref(name), detail }
}

/// `ValidatePodBinding`.
fn validate(binding: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kind = binding["target"]["kind"].as_str().unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "target.kind".into(),
            message: format!("Unsupported value: {kind:?}: supported values: \"Node\", \"<empty>\""),
        });
    }
    if binding["target"]["name"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("target.name", ""));
    }
    causes
}

/// The pod bound to `node`: what the binding changes, or why it may not.
fn bind(pod: &Value, node: &str, annotations: &Value, now: &str) -> std::result::Result<Value, String> {
    let name = object::name(pod);
    if object::metadata(pod).is_some_and(|meta| meta.contains_key("deletionTimestamp")) {
        return Err(format!("pod {name} is being deleted, cannot be assigned to a host"));
    }
    let assigned = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if !assigned.is_empty() {
        return Err(format!("pod {name} is already assigned to node {assigned:?}"));
    }
    if pod["spec"]["schedulingGates"].as_array().is_some_and(|gates| !gates.is_empty()) {
        return Err(format!("pod {name} has non-empty .spec.schedulingGates"));
    }
    let mut pod = pod.clone();
    pod["spec"]["nodeName"] = json!(node);
    if let Some(added) = annotations.as_object().filter(|added| !added.is_empty()) {
        let meta = object::metadata_mut(&mut pod);
        if !meta.get("annotations").is_some_and(Value::is_object) {
            meta.insert("annotations".into(), json!({}));
        }
        let existing = meta["annotations"].as_object_mut().expect("just made an object");
        for (key, value) in added {
            existing.insert(key.clone(), value.clone());
        }
    }
    // `UpdatePodCondition`: the transition time moves only when the status does.
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"].as_array_mut().expect("just made a list");
    match conditions.iter_mut().find(|condition| condition["type"] == "PodScheduled") {
        Some(condition) if condition["status"] == "True" => {}
        Some(condition) => {
            condition["status"] = json!("True");
            condition["lastTransitionTime"] = json!(now);
            if let Some(fields) = condition.as_object_mut() {
                fields.remove("reason");
                fields.remove("message");
            }
        }
        None => conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now})),
    }
    Ok(pod)
}

/// POST on `pods/NAME/binding`.
pub async fn serve(
    state: &ApiState,
    method: &Method,
    resource: &ResourcePath,
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Result<Response> {
    let info = resource.info;
    let namespace = resource.namespace.as_deref();
    let name = resource.name.as_deref().unwrap_or("");
    if *method != Method::POST {
        return Err(Error::MethodNotAllowed(format!("{method} is not supported on pods/binding")));
    }
    let binding = http::read_object(headers, body).await?;
    let options = WriteOptions::from_params(params)?;
    let kind = binding["kind"].as_str().unwrap_or("");
    let api_version = binding["apiVersion"].as_str().unwrap_or("");
    if (!kind.is_empty() && kind != "Binding") || (!api_version.is_empty() && api_version != "v1") {
        return Err(Error::BadRequest(format!(
            "the API version in the data ({api_version}) and the kind ({kind}) do not match the resource v1/pods/binding (Binding)"
        )));
    }
    let body_namespace = object::namespace(&binding);
    if !body_namespace.is_empty() && Some(body_namespace) != namespace {
        return Err(Error::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    if object::name(&binding) != name {
        return Err(Error::BadRequest("name in URL does not match name in Binding object".into()));
    }
    let causes = validate(&binding);
    if !causes.is_empty() {
        return Err(Error::Invalid { object: binding_ref(name), causes });
    }
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    let wanted_uid = object::meta_str(&binding, "uid").to_string();
    let wanted_revision = object::resource_version(&binding).to_string();
    let annotations = binding["metadata"]["annotations"].clone();
    let pod_ref = ObjectRef::new(info, name);
    let key = keys::object_key(info, namespace, name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = writer::current(state, info, namespace, name).await?;
        let pod = writer::decode(&current.value, current.mod_revision)?;
        let uid = object::meta_str(&pod, "uid");
        if !wanted_uid.is_empty() && wanted_uid != uid {
            return Err(Error::Conflict {
                object: pod_ref,
                detail: format!("Precondition failed: UID in precondition: {wanted_uid}, UID in object meta: {uid}"),
            });
        }
        if !wanted_revision.is_empty() && wanted_revision != current.mod_revision.to_string() {
            return Err(Error::Conflict {
                object: pod_ref,
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {wanted_revision}, ResourceVersion in object meta: {}",
                    current.mod_revision
                ),
            });
        }
        let bound = bind(&pod, &node, &annotations, &object::now_rfc3339()).map_err(|detail| conflict(name, detail))?;
        if options.dry_run {
            break;
        }
        match state.storage.update(key.clone(), writer::encode(&bound), current.mod_revision).await {
            Ok(_) => break,
            Err(StorageError::Conflict { .. }) if attempt < CONFLICT_RETRIES_MAX => continue,
            Err(error) => return Err(storage_error(pod_ref, error)),
        }
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    let output = http::negotiate(headers, params).unwrap_or(http::Output::Json);
    Ok(http::response_as(output, StatusCode::CREATED, &status))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2025-01-01T00:00:00Z";

    #[test]
    fn binding_sets_the_node_annotations_and_condition() {
        let pod = json!({"metadata": {"name": "p", "annotations": {"a": "1"}}, "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        let bound = bind(&pod, "node-1", &json!({"b": "2"}), NOW).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "node-1");
        assert_eq!(bound["metadata"]["annotations"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            bound["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": NOW}])
        );
        assert_eq!(
            bind(&bound, "node-2", &Value::Null, NOW).unwrap_err(),
            "pod p is already assigned to node \"node-1\""
        );
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(NOW);
        assert_eq!(
            bind(&deleting, "node-1", &Value::Null, NOW).unwrap_err(),
            "pod p is being deleted, cannot be assigned to a host"
        );
    }

    #[test]
    fn a_binding_needs_a_node_target() {
        let fields = |binding: Value| validate(&binding).into_iter().map(|cause| cause.field).collect::<Vec<_>>();
        assert_eq!(fields(json!({"target": {"name": "n"}})), Vec::<String>::new());
        assert_eq!(fields(json!({"target": {"kind": "Pod", "name": "n"}})), vec!["target.kind"]);
        assert_eq!(fields(json!({"target": {}})), vec!["target.name"]);
    }
}
