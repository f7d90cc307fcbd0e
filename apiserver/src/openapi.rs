//! OpenAPI v3 discovery, reduced to what clients read today: `/openapi/v3` lists a document per
//! group version, and each document has every resource's operations, each PATCH tagged with its
//! group-version-kind and offering the `fieldValidation` parameter. kubectl reads exactly that to
//! decide it can leave validation to the server (`fieldValidation=Strict`) instead of fetching
//! OpenAPI v2 for client-side validation. Schemas (`components`) are later work: without them
//! kubectl computes apply patches from its compiled-in types, as it does for any built-in type.
//! `/openapi/v2` answers 404 for now.

use serde_json::{json, Map, Value};

use crate::discovery::GIT_VERSION;
use crate::registry::{self, ResourceInfo, RESOURCES};

fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn root() -> Value {
    let mut paths = Map::new();
    let mut group_versions = vec![("", "v1")];
    group_versions.extend(registry::groups());
    for (group, version) in group_versions {
        let path = document_path(group, version);
        // The hash lets clients cache a document until it changes: it changes with the build.
        let url = format!("/openapi/v3/{path}?hash={}", document_hash(group, version));
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

fn document_hash(group: &str, version: &str) -> String {
    let text = format!("{GIT_VERSION}/{group}/{version}/{}", env!("CARGO_PKG_VERSION"));
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |hash, byte| (hash ^ byte as u64).wrapping_mul(0x100000001b3));
    format!("{hash:016X}")
}

fn parameter(name: &str, location: &str, description: &str) -> Value {
    json!({ "name": name, "in": location, "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(info: &ResourceInfo, action: &str, id: &str, write: bool, patch: bool) -> Value {
    let mut parameters = Vec::new();
    if write {
        parameters.push(parameter(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted.",
        ));
        parameters.push(parameter(
            "fieldManager",
            "query",
            "A name associated with the actor or entity that is making these changes.",
        ));
        parameters.push(parameter(
            "fieldValidation",
            "query",
            "How the server handles fields unknown to the type: Ignore, Warn (the default) or Strict.",
        ));
    }
    let mut operation = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": info.group, "version": info.version, "kind": info.kind },
        "parameters": parameters,
        "responses": { "200": { "description": "OK" }, "401": { "description": "Unauthorized" } },
    });
    if patch {
        operation["requestBody"] = json!({ "content": {
            "application/json-patch+json": { "schema": { "type": "object" } },
            "application/merge-patch+json": { "schema": { "type": "object" } },
            "application/strategic-merge-patch+json": { "schema": { "type": "object" } },
            "application/apply-patch+yaml": { "schema": { "type": "object" } },
        }, "required": true });
    } else if write {
        operation["requestBody"] =
            json!({ "content": { "application/json": { "schema": { "type": "object" } } }, "required": true });
    }
    operation
}

/// The document of one group version, None if it is not served.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> =
        RESOURCES.iter().filter(|info| info.group == group && info.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for info in served {
        let base = format!("/{}", document_path(group, version));
        let collection = if info.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", info.plural)
        } else {
            format!("{base}/{}", info.plural)
        };
        let kind = info.kind;
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(info, "list", &format!("list{kind}"), false, false),
                "post": operation(info, "post", &format!("create{kind}"), true, false),
                "delete": operation(info, "deletecollection", &format!("deleteCollection{kind}"), false, false),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(info, "get", &format!("read{kind}"), false, false),
                "put": operation(info, "put", &format!("replace{kind}"), true, false),
                "patch": operation(info, "patch", &format!("patch{kind}"), true, true),
                "delete": operation(info, "delete", &format!("delete{kind}"), false, false),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_offer_field_validation() {
        let document = document("apps", "v1").unwrap();
        let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|parameter| parameter["name"] == "fieldValidation"));
        let root = root();
        assert!(root["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/api/v1?hash="));
    }
}
