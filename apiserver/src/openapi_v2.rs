//! `/openapi/v2`: the same schemas and operations in swagger 2.0 form (`definitions`,
//! `#/definitions/...`, body parameters), as JSON.
//!
//! kubectl asks for the gnostic protobuf encoding only
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), which keel does not encode:
//! that request gets 406, an error kubectl treats as having no v2 document, as it did for the 404
//! before. kubectl 1.27 and later read v3 instead for everything v2 served (`explain`, the patch
//! metadata of client-side apply, the check for server-side `fieldValidation`); only kubectl 1.26
//! and older, and `kubectl explain --output=plaintext-openapiv2`, need the protobuf.

use std::sync::OnceLock;

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::discovery::GIT_VERSION;
use crate::error::Result;
use crate::openapi::{self, Document};
use crate::openapi_schemas::{self, REF_PREFIX};
use crate::registry;

const V2_PREFIX: &str = "#/definitions/";

/// `GET /openapi/v2`.
pub fn serve(headers: &HeaderMap) -> Result<Response> {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| Document::new(&document())).serve(headers, None)
}

fn document() -> Value {
    let mut paths = Map::new();
    let mut group_versions = vec![("", "v1")];
    group_versions.extend(registry::groups());
    for (group, version) in group_versions {
        let v3 = openapi::document(group, version).expect("a served group version");
        for (path, item) in v3["paths"].as_object().expect("paths").clone() {
            paths.insert(path, path_item(item));
        }
    }
    let mut definitions: Map<String, Value> =
        openapi_schemas::schemas().definitions.iter().map(|(name, schema)| (name.clone(), schema.clone())).collect();
    let mut document = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "definitions": &mut definitions,
    });
    rewrite_references(&mut document);
    document
}

fn rewrite_references(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some(name) = reference.strip_prefix(REF_PREFIX) {
                    *reference = format!("{V2_PREFIX}{name}");
                }
            }
            map.values_mut().for_each(rewrite_references);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_references),
        _ => {}
    }
}

/// A v3 path item in swagger 2.0 form.
fn path_item(mut item: Value) -> Value {
    let map = item.as_object_mut().expect("a path item");
    for (key, value) in map.iter_mut() {
        if key == "parameters" {
            *value = parameters(value);
        } else {
            *value = operation(std::mem::take(value));
        }
    }
    item
}

/// v3 parameters keep their type in `schema`; v2 ones carry it themselves.
fn parameters(parameters: &Value) -> Value {
    let converted: Vec<Value> = parameters
        .as_array()
        .expect("parameters")
        .iter()
        .map(|parameter| {
            let mut parameter = parameter.clone();
            let map = parameter.as_object_mut().expect("a parameter");
            if let Some(Value::Object(schema)) = map.remove("schema") {
                map.extend(schema);
            }
            parameter
        })
        .collect();
    Value::Array(converted)
}

fn operation(mut operation: Value) -> Value {
    let map = operation.as_object_mut().expect("an operation");
    let mut parameters = parameters(&map.remove("parameters").unwrap_or(json!([])));
    let mut consumes = Vec::new();
    if let Some(body) = map.remove("requestBody") {
        let content = body["content"].as_object().expect("content");
        consumes.extend(content.keys().cloned());
        let schema = content.values().next().map(|media| media["schema"].clone()).unwrap_or(json!({}));
        parameters
            .as_array_mut()
            .expect("parameters")
            .insert(0, json!({ "name": "body", "in": "body", "required": body["required"] == true, "schema": schema }));
    }
    if let Some(Value::Object(responses)) = map.get_mut("responses") {
        for response in responses.values_mut() {
            let response = response.as_object_mut().expect("a response");
            if let Some(content) = response.remove("content") {
                response.insert("schema".into(), content["application/json"]["schema"].clone());
            }
        }
    }
    map.insert("parameters".into(), parameters);
    if !consumes.is_empty() {
        map.insert("consumes".into(), json!(consumes));
    }
    map.insert("produces".into(), json!(["application/json"]));
    map.insert("schemes".into(), json!(["https"]));
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swagger_form() {
        let document = document();
        assert_eq!(document["swagger"], "2.0");
        let pod = &document["definitions"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(pod["properties"]["spec"]["description"].is_string(), "v2 keeps a reference's siblings");
        let containers = &document["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let create = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        let body = create["parameters"].as_array().unwrap().iter().find(|p| p["in"] == "body").unwrap();
        assert_eq!(body["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        let validation =
            create["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "fieldValidation").unwrap();
        assert_eq!(validation["type"], "string");
        assert_eq!(create["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        assert!(!serde_json::to_string(&document).unwrap().contains("#/components/"));
    }
}
