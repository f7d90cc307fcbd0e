//! The patch merge keys and strategies of the served types' list fields: the facts strategic
//! merge patch needs and k8s-openapi does not carry (Go's `patchStrategy`/`patchMergeKey` struct
//! tags). Lists not named here are atomic: a patch replaces them whole.
//!
//! Server-side apply reads the same table through [`apply_list_type`] (kube's
//! `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`, which differ from the merge keys
//! only where a list is keyed by more than one field), plus which objects are atomic
//! (`x-kubernetes-map-type: atomic`, `+structType=atomic`) and which are maps rather than structs.

use serde_json::Value;

/// How a strategic merge patch treats a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the object's.
    Replace,
    /// Elements are objects matched by this key; matching elements merge, others are added.
    MergeByKey(&'static str),
    /// A list of scalars merged as a set (finalizers).
    MergeScalars,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The field that holds the last one of `path`; "" at the root.
fn parent_of<S: AsRef<str>>(path: &[S]) -> &str {
    path.len().checked_sub(2).map(|index| path[index].as_ref()).unwrap_or("")
}

/// The strategy of the list at `path`: field names from the object's root, list indices left out
/// (`spec.template.spec.containers` is `["spec", "template", "spec", "containers"]`).
pub fn list_strategy<S: AsRef<str>>(path: &[S]) -> ListStrategy {
    let Some(field) = path.last().map(AsRef::as_ref) else { return ListStrategy::Replace };
    let parent = parent_of(path);
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "conditions" | "addresses" => ListStrategy::MergeByKey("type"),
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeByKey("containerPort"),
        "ports" if path.len() == 2 && parent == "spec" => ListStrategy::MergeByKey("port"),
        "finalizers" if parent == "metadata" => ListStrategy::MergeScalars,
        "podCIDRs" => ListStrategy::MergeScalars,
        _ => ListStrategy::Replace,
    }
}

/// How server-side apply's structured merge treats a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyListType {
    /// Replaced whole; owned as one field.
    Atomic,
    /// A set of scalars: items are owned one by one, by value.
    Set,
    /// Objects keyed by these fields (`x-kubernetes-list-map-keys`): items merge and are owned
    /// one by one, by key.
    Map(Vec<&'static str>),
}

/// The list type at `path` (same path convention as [`list_strategy`]).
pub fn apply_list_type<S: AsRef<str>>(path: &[S]) -> ApplyListType {
    let field = path.last().map(AsRef::as_ref).unwrap_or("");
    let parent = parent_of(path);
    // Where kube keys a list by more fields than its patch merge key.
    match field {
        "ports" if CONTAINER_LISTS.contains(&parent) => return ApplyListType::Map(vec!["containerPort", "protocol"]),
        "ports" if path.len() == 2 && parent == "spec" => return ApplyListType::Map(vec!["port", "protocol"]),
        "topologySpreadConstraints" => return ApplyListType::Map(vec!["topologyKey", "whenUnsatisfiable"]),
        _ => {}
    }
    match list_strategy(path) {
        ListStrategy::Replace => ApplyListType::Atomic,
        ListStrategy::MergeScalars => ApplyListType::Set,
        ListStrategy::MergeByKey(key) => ApplyListType::Map(vec![key]),
    }
}

/// The schema default of a list-map key field that an item may leave out (`protocol` of ports).
pub fn list_key_default(key: &str) -> Option<Value> {
    match key {
        "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

/// Objects replaced whole and owned as one field: label selectors, node selectors, and the
/// reference types marked `+structType=atomic`.
pub fn object_is_atomic<S: AsRef<str>>(path: &[S]) -> bool {
    let field = path.last().map(AsRef::as_ref).unwrap_or("");
    let parent = parent_of(path);
    match field {
        "selector" | "nodeSelector" | "labelSelector" | "namespaceSelector" | "fieldRef" | "resourceFieldRef"
        | "configMapKeyRef" | "secretKeyRef" | "involvedObject" | "related" | "targetRef" | "preference" => true,
        "requiredDuringSchedulingIgnoredDuringExecution" => parent == "nodeAffinity",
        _ => false,
    }
}

/// Objects that are maps (string keys chosen by the user) rather than structs with declared
/// fields: their keys are not named fields.
pub fn object_is_map<S: AsRef<str>>(path: &[S]) -> bool {
    let field = path.last().map(AsRef::as_ref).unwrap_or("");
    matches!(
        field,
        "labels"
            | "annotations"
            | "data"
            | "binaryData"
            | "stringData"
            | "limits"
            | "requests"
            | "capacity"
            | "allocatable"
            | "allocatedResources"
            | "overhead"
            | "nodeSelector"
            | "matchLabels"
            | "selector"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('.').map(str::to_string).collect()
    }

    #[test]
    fn table() {
        assert_eq!(list_strategy(&path("spec.template.spec.containers")), ListStrategy::MergeByKey("name"));
        assert_eq!(list_strategy(&path("spec.containers.ports")), ListStrategy::MergeByKey("containerPort"));
        assert_eq!(list_strategy(&path("spec.ports")), ListStrategy::MergeByKey("port"));
        assert_eq!(list_strategy(&path("metadata.finalizers")), ListStrategy::MergeScalars);
        assert_eq!(list_strategy(&path("spec.finalizers")), ListStrategy::Replace);
        assert_eq!(list_strategy(&path("spec.tolerations")), ListStrategy::Replace);
    }

    #[test]
    fn apply_list_types() {
        assert_eq!(
            apply_list_type(&path("spec.template.spec.containers.ports")),
            ApplyListType::Map(vec!["containerPort", "protocol"])
        );
        assert_eq!(apply_list_type(&path("spec.ports")), ApplyListType::Map(vec!["port", "protocol"]));
        assert_eq!(apply_list_type(&path("spec.containers.env")), ApplyListType::Map(vec!["name"]));
        assert_eq!(apply_list_type(&path("metadata.finalizers")), ApplyListType::Set);
        assert_eq!(apply_list_type(&path("spec.containers.args")), ApplyListType::Atomic);
        assert!(object_is_atomic(&path("spec.selector")));
        assert!(!object_is_atomic(&path("spec.template")));
        assert!(object_is_map(&path("metadata.labels")));
        assert!(!object_is_map(&path("spec.strategy")));
    }
}
