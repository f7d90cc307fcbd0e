//! The served resources: one row per resource drives routing, discovery, storage keys, the
//! cache, validation (through the k8s-openapi type) and tables.

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events};
use k8s_openapi::schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::serializes_as::serializes_as;

/// A served resource.
#[derive(Debug)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `all` puts it in `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource: the main resource's writes keep `.status`, and `/status`
    /// writes keep everything else.
    pub status_subresource: bool,
    /// Has a `/scale` subresource (`autoscaling/v1` Scale over `.spec.replicas`).
    pub scale_subresource: bool,
    /// `metadata.generation` counts changes of `.spec`.
    pub tracks_generation: bool,
    /// Field selectors this type supports beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    /// Decodes the object as its k8s-openapi type and encodes it back: this rejects malformed
    /// objects and drops unknown fields, as kube-apiserver's decoding does. None: the object is
    /// already what encoding it back gives (`serializes_as.rs`).
    pub normalize: fn(&Value) -> Result<Option<Value>, String>,
    /// Adds the k8s-openapi type's schema and the schemas it references to the generator and
    /// returns a reference to it (the OpenAPI documents, `openapi_schemas.rs`).
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// For a resource stored in another's form, at that resource's keys (events.k8s.io/v1
    /// Events are core/v1 Events in the store): how to convert. None: stored as served.
    pub conversion: Option<&'static Conversion>,
}

/// Conversion between the served form of a resource and its stored form (both JSON, stored
/// without resourceVersion).
#[derive(Debug)]
pub struct Conversion {
    pub to_storage: fn(Value) -> Value,
    pub from_storage: fn(Value) -> Value,
}

impl ResourceInfo {
    /// `value` decoded as the type and encoded back (see `normalize`).
    pub fn normalized(&self, value: &Value) -> Result<Value, String> {
        Ok((self.normalize)(value)?.unwrap_or_else(|| value.clone()))
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of every object of this resource.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.plural)
    }

    /// The legacy default of a few group versions: a DELETE without a propagation policy orphans
    /// the dependents (kube-apiserver's `DefaultGarbageCollectionPolicy`). Of the served types
    /// only batch/v1 jobs keep it; every other one deletes its dependents in the background.
    pub fn orphans_dependents_by_default(&self) -> bool {
        self.group == "batch" && self.version == "v1" && self.kind == "Job"
    }

    /// A DELETE answers with the object rather than a Status (kube-apiserver's
    /// `ReturnDeletedObject`).
    pub fn returns_deleted_object(&self) -> bool {
        matches!(self.kind, "Pod" | "Service" | "Namespace" | "ServiceAccount") && self.group.is_empty()
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

/// A resource is its group and plural.
impl PartialEq for ResourceInfo {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && self.plural == other.plural
    }
}

impl Eq for ResourceInfo {}

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Option<Value>, String> {
    let typed = T::deserialize(value).map_err(|error| error.to_string())?;
    if serializes_as(&typed, value) {
        return Ok(None);
    }
    serde_json::to_value(&typed).map(Some).map_err(|error| error.to_string())
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];

macro_rules! resource {
    ($type:ty, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, namespaced: $namespaced:expr,
     short: $short:expr, categories: $categories:expr, status: $status:expr, scale: $scale:expr,
     generation: $generation:expr, fields: $fields:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $categories,
            status_subresource: $status,
            scale_subresource: $scale,
            tracks_generation: $generation,
            selectable_fields: $fields,
            normalize: round_trip::<$type>,
            schema: schema_of::<$type>,
            conversion: None,
        }
    };
}

pub static RESOURCES: &[ResourceInfo] = &[
    resource!(core::v1::Namespace, "", "v1", "Namespace", "namespaces", "namespace", namespaced: false,
        short: &["ns"], categories: NONE, status: true, scale: false, generation: false, fields: &["status.phase"]),
    resource!(core::v1::Pod, "", "v1", "Pod", "pods", "pod", namespaced: true,
        short: &["po"], categories: ALL, status: true, scale: false, generation: false,
        fields: &["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                  "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"]),
    resource!(core::v1::Service, "", "v1", "Service", "services", "service", namespaced: true,
        short: &["svc"], categories: ALL, status: true, scale: false, generation: false, fields: &["spec.clusterIP", "spec.type"]),
    resource!(core::v1::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints", namespaced: true,
        short: &["ep"], categories: NONE, status: false, scale: false, generation: false, fields: NONE),
    resource!(core::v1::Node, "", "v1", "Node", "nodes", "node", namespaced: false,
        short: &["no"], categories: NONE, status: true, scale: false, generation: false, fields: &["spec.unschedulable"]),
    resource!(core::v1::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap", namespaced: true,
        short: &["cm"], categories: NONE, status: false, scale: false, generation: false, fields: NONE),
    resource!(core::v1::Secret, "", "v1", "Secret", "secrets", "secret", namespaced: true,
        short: NONE, categories: NONE, status: false, scale: false, generation: false, fields: &["type"]),
    resource!(core::v1::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", namespaced: true,
        short: &["sa"], categories: NONE, status: false, scale: false, generation: false, fields: NONE),
    resource!(core::v1::Event, "", "v1", "Event", "events", "event", namespaced: true,
        short: &["ev"], categories: NONE, status: false, scale: false, generation: false,
        fields: &["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                  "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                  "reason", "reportingComponent", "source", "type"]),
    resource!(apps::v1::Deployment, "apps", "v1", "Deployment", "deployments", "deployment", namespaced: true,
        short: &["deploy"], categories: ALL, status: true, scale: true, generation: true, fields: NONE),
    resource!(apps::v1::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset", namespaced: true,
        short: &["rs"], categories: ALL, status: true, scale: true, generation: true, fields: NONE),
    resource!(apps::v1::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", "statefulset", namespaced: true,
        short: &["sts"], categories: ALL, status: true, scale: true, generation: true, fields: NONE),
    resource!(apps::v1::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", "daemonset", namespaced: true,
        short: &["ds"], categories: ALL, status: true, scale: false, generation: true, fields: NONE),
    resource!(batch::v1::Job, "batch", "v1", "Job", "jobs", "job", namespaced: true,
        short: NONE, categories: ALL, status: true, scale: false, generation: true, fields: &["status.successful"]),
    resource!(coordination::v1::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced: true,
        short: NONE, categories: NONE, status: false, scale: false, generation: false, fields: NONE),
    resource!(discovery::v1::EndpointSlice, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice",
        namespaced: true, short: NONE, categories: NONE, status: false, scale: false, generation: false, fields: NONE),
    // Stored as core/v1 Events, at their keys (`events_v1.rs`).
    ResourceInfo {
        conversion: Some(&crate::events_v1::CONVERSION),
        ..resource!(events::v1::Event, "events.k8s.io", "v1", "Event", "events", "event", namespaced: true,
            short: &["ev"], categories: NONE, status: false, scale: false, generation: false,
            fields: &["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "regarding.apiVersion",
                      "regarding.resourceVersion", "regarding.fieldPath", "reason", "reportingController", "type"])
    },
];

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|info| info.group == group && info.version == version && info.plural == plural)
}

/// The groups other than core, each with its one version, in the order discovery lists them.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
    for info in RESOURCES.iter().filter(|info| !info.group.is_empty()) {
        if !groups.contains(&(info.group, info.version)) {
            groups.push((info.group, info.version));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_drops_unknown_fields_and_checks_kind() {
        let namespaces = find("", "v1", "namespaces").unwrap();
        let value = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "bogus": 1});
        let normalized = namespaces.normalized(&value).unwrap();
        assert!(normalized.get("bogus").is_none());
        let wrong = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}});
        assert!((namespaces.normalize)(&wrong).is_err());
    }

    #[test]
    fn groups_are_listed_once() {
        let groups = groups();
        assert_eq!(groups[0], ("apps", "v1"));
        assert_eq!(groups.len(), 5);
    }
}
