//! Discovery: `/api`, `/apis`, `/apis/GROUP`, `/api/v1`, `/apis/GROUP/VERSION` (the legacy,
//! unaggregated documents; `aggregated_discovery.rs` converts them into the aggregated form), and
//! `/version`.

use serde_json::{json, Value};

use crate::registry::{self, ResourceInfo, RESOURCES};

/// The Kubernetes version keel serves.
pub const KUBERNETES_MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0-keel";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_document(group: &str, version: &str) -> Value {
    let group_version = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
    json!({ "name": group, "versions": [group_version.clone()], "preferredVersion": group_version })
}

pub fn groups() -> Value {
    let groups: Vec<Value> =
        registry::groups().into_iter().map(|(group, version)| group_document(group, version)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(name: &str) -> Option<Value> {
    let (group, version) = registry::groups().into_iter().find(|(group, _)| *group == name)?;
    let mut document = group_document(group, version);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

fn resource_entry(info: &ResourceInfo) -> Value {
    let mut entry = json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": info.verbs(),
    });
    if !info.short_names.is_empty() {
        entry["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        entry["categories"] = json!(info.categories);
    }
    entry
}

fn subresource_entry(info: &ResourceInfo, subresource: &str) -> Value {
    let mut entry = json!({
        "name": format!("{}/{subresource}", info.plural),
        "singularName": "",
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": ["get", "patch", "update"],
    });
    if subresource == "scale" {
        entry["group"] = json!("autoscaling");
        entry["version"] = json!("v1");
        entry["kind"] = json!("Scale");
    }
    entry
}

/// The APIResourceList of a group version, None if it is not served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> =
        RESOURCES.iter().filter(|info| info.group == group && info.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for info in served {
        entries.push(resource_entry(info));
        if info.status_subresource {
            entries.push(subresource_entry(info, "status"));
        }
        if info.scale_subresource {
            entries.push(subresource_entry(info, "scale"));
        }
        if info.kind == "Namespace" && info.group.is_empty() {
            let mut finalize = subresource_entry(info, "finalize");
            finalize["verbs"] = json!(["update"]);
            entries.push(finalize);
        }
        if info.kind == "Pod" && info.group.is_empty() {
            let mut binding = subresource_entry(info, "binding");
            binding["kind"] = json!("Binding");
            binding["verbs"] = json!(["create"]);
            entries.push(binding);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_with_subresources() {
        let list = resources("", "v1").unwrap();
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().map(|entry| entry["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"nodes/status"));
        let apps = resources("apps", "v1").unwrap();
        let scale =
            apps["resources"].as_array().unwrap().iter().find(|entry| entry["name"] == "deployments/scale").unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert!(resources("apps", "v2").is_none());
        assert_eq!(group("batch").unwrap()["preferredVersion"]["groupVersion"], "batch/v1");
    }
}
