//! `/openapi/v2`: the same schemas and operations in swagger 2.0 form (`definitions`,
//! `#/definitions/...`, body parameters), as JSON or as gnostic's protobuf `Document`
//! (`openapi_v2_protobuf.rs`), which kubectl and client-go ask for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, or the `.v1.0+protobuf` form).
//!
//! Negotiation is kube-openapi's (`pkg/handler/handler.go`), not the resource endpoints': the
//! Accept clauses in preference order, each tried against JSON, then the two protobuf names; the
//! first match wins, nothing matching is 406. Both protobuf names are answered as
//! `application/com.github.proto-openapi.spec.v2.v1.0+protobuf`, and both forms carry the same
//! ETag, the JSON document's hash, as kube's do. kubectl 1.26 and older read the protobuf for
//! client-side validation, explain and apply's patch metadata; later ones read v3 except for
//! `kubectl explain --output=plaintext-openapiv2`.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::discovery::GIT_VERSION;
use crate::error::{Error, Result};
use crate::openapi::{self, Document};
use crate::openapi_schemas::{self, REF_PREFIX};
use crate::{openapi_v2_protobuf, registry};

const V2_PREFIX: &str = "#/definitions/";

/// The media type protobuf answers carry, whichever of the two names was asked for.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// What kube-openapi serves, in the order it tries them against each Accept clause.
const SERVED_SUBTYPES: [(&str, Form); 3] = [
    ("json", Form::Json),
    ("com.github.proto-openapi.spec.v2@v1.0+protobuf", Form::Protobuf),
    ("com.github.proto-openapi.spec.v2.v1.0+protobuf", Form::Protobuf),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Protobuf,
}

struct Documents {
    json: Document,
    /// The protobuf body with the JSON document's hash.
    protobuf: Document,
}

/// `GET /openapi/v2`.
pub fn serve(headers: &HeaderMap) -> Result<Response> {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        let value = document();
        let json = Document::new(&value);
        let protobuf = Document { body: openapi_v2_protobuf::encode(&value).into(), hash: json.hash.clone() };
        Documents { json, protobuf }
    });
    let form = negotiate(headers)?;
    // `Document::serve` answers JSON to what it negotiates; the form is chosen here already.
    let mut as_json = headers.clone();
    as_json.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let mut response = match form {
        Form::Json => documents.json.serve(&as_json, None)?,
        Form::Protobuf => {
            let mut response = documents.protobuf.serve(&as_json, None)?;
            if response.headers().contains_key(header::CONTENT_TYPE) {
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF_MEDIA_TYPE));
            }
            response
        }
    };
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

/// kube-openapi's choice: Accept clauses by quality, specific before wildcard (goautoneg), each
/// tried against [`SERVED_SUBTYPES`] in order; no header is `*/*`.
fn negotiate(headers: &HeaderMap) -> Result<Form> {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    let accept = if accept.trim().is_empty() { "*/*" } else { accept };
    let mut clauses: Vec<(f32, &str, &str)> = accept
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let range = parts.next()?.trim();
            let (media_type, subtype) = if range == "*" { ("*", "*") } else { range.split_once('/')? };
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(key, _)| key.trim() == "q")
                .map_or(1.0, |(_, value)| value.trim().parse().unwrap_or(0.0));
            Some((quality, media_type.trim(), subtype.trim()))
        })
        .collect();
    clauses.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then((a.1 == "*").cmp(&(b.1 == "*"))).then((a.2 == "*").cmp(&(b.2 == "*")))
    });
    for (_, media_type, subtype) in clauses {
        if media_type != "application" && media_type != "*" {
            continue;
        }
        if let Some((_, form)) = SERVED_SUBTYPES.iter().find(|(served, _)| subtype == "*" || subtype == *served) {
            return Ok(*form);
        }
    }
    Err(Error::NotAcceptable(format!(
        "only application/json and {PROTOBUF_MEDIA_TYPE} are served (asked for {accept})"
    )))
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

/// gnostic's OpenAPIv2 messages, generated by prost from the vendored proto (`build.rs`): an
/// independent decoder for the protobuf answers.
#[cfg(test)]
#[allow(dead_code, clippy::all, clippy::pedantic)]
mod gnostic {
    include!(concat!(env!("OUT_DIR"), "/openapi.v2.rs"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use gnostic::{non_body_parameter, parameter, parameters_item, response_value, schema_item};
    use prost::Message;

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

    const PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

    async fn get(accept: Option<&str>, if_none_match: Option<&str>) -> (u16, HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
        }
        match serve(&headers) {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                (status, headers, body.to_vec())
            }
            Err(error) => {
                assert!(matches!(error, Error::NotAcceptable(_)), "{error:?}");
                (406, HeaderMap::new(), Vec::new())
            }
        }
    }

    #[tokio::test]
    async fn negotiation_as_kube_openapi() {
        let content_type = |headers: &HeaderMap| headers[header::CONTENT_TYPE].to_str().unwrap().to_string();
        let (status, json_headers, json) = get(None, None).await;
        assert_eq!((status, content_type(&json_headers).as_str()), (200, "application/json"));
        assert_eq!(serde_json::from_slice::<Value>(&json).unwrap()["swagger"], "2.0");
        for accept in [
            PROTOBUF_ACCEPT,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            // kubectl's own header: protobuf preferred, JSON after it.
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json",
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        ] {
            let (status, headers, body) = get(Some(accept), None).await;
            assert_eq!((status, content_type(&headers).as_str()), (200, PROTOBUF_MEDIA_TYPE), "{accept}");
            assert_eq!(headers[header::ETAG], json_headers[header::ETAG], "one ETag for both forms, as kube's");
            assert_eq!(headers[header::VARY], "Accept");
            assert_eq!(gnostic::Document::decode(&body[..]).unwrap().swagger, "2.0");
        }
        for accept in
            ["*/*", "application/*", "application/json, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"]
        {
            assert_eq!(content_type(&get(Some(accept), None).await.1), "application/json", "{accept}");
        }
        assert_eq!(get(Some("application/vnd.kubernetes.protobuf"), None).await.0, 406);
        assert_eq!(get(Some("text/plain"), None).await.0, 406);
        let etag = json_headers[header::ETAG].to_str().unwrap();
        let (status, headers, body) = get(Some(PROTOBUF_ACCEPT), Some(etag)).await;
        assert_eq!(status, 304);
        assert!(body.is_empty() && !headers.contains_key(header::CONTENT_TYPE));
    }

    /// The protobuf answer, decoded by prost's generated types, holds the JSON document: every
    /// definition with its properties, references, required fields, types and extensions, and
    /// every operation with its parameters and responses.
    #[tokio::test]
    async fn protobuf_holds_the_json_document() {
        let json: Value = serde_json::from_slice(&get(Some("application/json"), None).await.2).unwrap();
        let decoded = gnostic::Document::decode(&get(Some(PROTOBUF_ACCEPT), None).await.2[..]).unwrap();
        assert_eq!(decoded.swagger, "2.0");
        let info = decoded.info.as_ref().unwrap();
        assert_eq!((info.title.as_str(), info.version.as_str()), ("Kubernetes", GIT_VERSION));

        let definitions = json["definitions"].as_object().unwrap();
        let decoded_definitions = &decoded.definitions.as_ref().unwrap().additional_properties;
        let names: Vec<&str> = decoded_definitions.iter().map(|pair| pair.name.as_str()).collect();
        assert_eq!(names, definitions.keys().map(String::as_str).collect::<Vec<_>>());
        for pair in decoded_definitions {
            check_schema(&definitions[&pair.name], pair.value.as_ref().unwrap(), &pair.name);
        }
        let pod = &decoded_definitions.iter().find(|pair| pair.name == "io.k8s.api.core.v1.Pod").unwrap().value;
        let gvk = &pod.as_ref().unwrap().vendor_extension[0];
        assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
        assert_eq!(gvk.value.as_ref().unwrap().yaml, "- group: \"\"\n  kind: Pod\n  version: v1\n");

        let paths = json["paths"].as_object().unwrap();
        let decoded_paths = &decoded.paths.as_ref().unwrap().path;
        assert_eq!(decoded_paths.len(), paths.len());
        for pair in decoded_paths {
            let item = paths[&pair.name].as_object().unwrap();
            let decoded_item = pair.value.as_ref().unwrap();
            let operations = [
                ("get", &decoded_item.get),
                ("put", &decoded_item.put),
                ("post", &decoded_item.post),
                ("delete", &decoded_item.delete),
                ("patch", &decoded_item.patch),
            ];
            for (method, decoded_operation) in operations {
                assert_eq!(item.contains_key(method), decoded_operation.is_some(), "{} {method}", pair.name);
                if let Some(operation) = decoded_operation {
                    check_operation(&item[method], operation, &format!("{} {method}", pair.name));
                }
            }
            let parameters = item.get("parameters").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            assert_eq!(parameters.len(), decoded_item.parameters.len());
            for (parameter, decoded_parameter) in parameters.iter().zip(&decoded_item.parameters) {
                check_parameter(parameter, decoded_parameter, &pair.name);
            }
            for key in item.keys() {
                assert!(["get", "put", "post", "delete", "patch", "parameters"].contains(&key.as_str()), "{key}");
            }
        }
    }

    fn check_schema(json: &Value, decoded: &gnostic::Schema, at: &str) {
        let object = json.as_object().unwrap();
        for key in object.keys() {
            assert!(
                key.starts_with("x-") || openapi_v2_protobuf::SCHEMA_KEYS.contains(&key.as_str()),
                "{at}: {key} is not a gnostic Schema field"
            );
        }
        let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        assert_eq!(decoded.r#ref, text("$ref"), "{at}");
        assert_eq!(decoded.description, text("description"), "{at}");
        assert_eq!(decoded.format, text("format"), "{at}");
        let required: Vec<String> =
            object.get("required").map(|value| serde_json::from_value(value.clone()).unwrap()).unwrap_or_default();
        assert_eq!(decoded.required, required, "{at}");
        match object.get("type") {
            Some(kind) => assert_eq!(decoded.r#type.as_ref().unwrap().value, [kind.as_str().unwrap()], "{at}"),
            None => assert!(decoded.r#type.is_none(), "{at}"),
        }
        match object.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                let decoded_properties = &decoded.properties.as_ref().unwrap().additional_properties;
                assert_eq!(decoded_properties.len(), properties.len(), "{at}");
                for pair in decoded_properties {
                    check_schema(&properties[&pair.name], pair.value.as_ref().unwrap(), &format!("{at}.{}", pair.name));
                }
            }
            None => assert!(decoded.properties.is_none(), "{at}"),
        }
        match object.get("items") {
            Some(items) => {
                let decoded_items = &decoded.items.as_ref().unwrap().schema;
                assert_eq!(decoded_items.len(), 1, "{at}");
                check_schema(items, &decoded_items[0], &format!("{at}[]"));
            }
            None => assert!(decoded.items.is_none(), "{at}"),
        }
        use gnostic::additional_properties_item::Oneof;
        match (object.get("additionalProperties"), decoded.additional_properties.as_ref().map(|item| &item.oneof)) {
            (None, None) => {}
            (Some(Value::Bool(allowed)), Some(Some(Oneof::Boolean(decoded)))) => assert_eq!(allowed, decoded, "{at}"),
            (Some(schema), Some(Some(Oneof::Schema(decoded)))) => check_schema(schema, decoded, &format!("{at}{{}}")),
            other => panic!("{at}: additionalProperties {other:?}"),
        }
        check_extensions(object, &decoded.vendor_extension, at);
    }

    /// Every `x-` key, in order, with a YAML value that reads back as the JSON value.
    fn check_extensions(object: &Map<String, Value>, decoded: &[gnostic::NamedAny], at: &str) {
        let expected: Vec<(&String, &Value)> = object.iter().filter(|(key, _)| key.starts_with("x-")).collect();
        assert_eq!(decoded.len(), expected.len(), "{at}");
        for ((name, value), pair) in expected.into_iter().zip(decoded) {
            assert_eq!(&pair.name, name, "{at}");
            let yaml = &pair.value.as_ref().unwrap().yaml;
            let read_back: Value = serde_saphyr::from_str(yaml).unwrap_or_else(|error| panic!("{at} {name}: {error}"));
            assert_eq!(&read_back, value, "{at} {name}: {yaml:?}");
        }
    }

    fn check_operation(json: &Value, decoded: &gnostic::Operation, at: &str) {
        let object = json.as_object().unwrap();
        let strings = |key: &str| -> Vec<String> {
            object.get(key).map(|value| serde_json::from_value(value.clone()).unwrap()).unwrap_or_default()
        };
        assert_eq!(decoded.operation_id, object["operationId"].as_str().unwrap(), "{at}");
        assert_eq!(decoded.produces, strings("produces"), "{at}");
        assert_eq!(decoded.consumes, strings("consumes"), "{at}");
        assert_eq!(decoded.schemes, strings("schemes"), "{at}");
        let parameters = object["parameters"].as_array().unwrap();
        assert_eq!(decoded.parameters.len(), parameters.len(), "{at}");
        for (parameter, decoded_parameter) in parameters.iter().zip(&decoded.parameters) {
            check_parameter(parameter, decoded_parameter, at);
        }
        let responses = object["responses"].as_object().unwrap();
        let decoded_responses = &decoded.responses.as_ref().unwrap().response_code;
        assert_eq!(decoded_responses.len(), responses.len(), "{at}");
        for pair in decoded_responses {
            let response = &responses[&pair.name];
            let Some(response_value::Oneof::Response(decoded_response)) = &pair.value.as_ref().unwrap().oneof else {
                panic!("{at} {}: not a response", pair.name)
            };
            assert_eq!(decoded_response.description, response["description"].as_str().unwrap(), "{at}");
            match response.get("schema") {
                Some(schema) => {
                    let Some(schema_item::Oneof::Schema(decoded_schema)) =
                        &decoded_response.schema.as_ref().unwrap().oneof
                    else {
                        panic!("{at} {}: not a schema", pair.name)
                    };
                    check_schema(schema, decoded_schema, &format!("{at} {}", pair.name));
                }
                None => assert!(decoded_response.schema.is_none(), "{at}"),
            }
        }
        for key in object.keys() {
            let known = ["operationId", "parameters", "produces", "consumes", "responses", "schemes"];
            assert!(key.starts_with("x-") || known.contains(&key.as_str()), "{at}: {key}");
        }
        check_extensions(object, &decoded.vendor_extension, at);
    }

    fn check_parameter(json: &Value, decoded: &gnostic::ParametersItem, at: &str) {
        let Some(parameters_item::Oneof::Parameter(decoded)) = &decoded.oneof else { panic!("{at}: a reference") };
        let at = format!("{at} {}", json["name"]);
        let description = json.get("description").and_then(Value::as_str).unwrap_or("");
        let required = json.get("required") == Some(&Value::Bool(true));
        match decoded.oneof.as_ref().unwrap() {
            parameter::Oneof::BodyParameter(body) => {
                assert_eq!(json["in"], "body", "{at}");
                assert_eq!(
                    (body.name.as_str(), body.r#in.as_str(), body.required),
                    (json["name"].as_str().unwrap(), "body", required)
                );
                check_schema(&json["schema"], body.schema.as_ref().unwrap(), &at);
            }
            parameter::Oneof::NonBodyParameter(non_body) => {
                let (location, name, kind, unique, sub_required, sub_description) = match non_body
                    .oneof
                    .as_ref()
                    .unwrap()
                {
                    non_body_parameter::Oneof::QueryParameterSubSchema(query) => {
                        ("query", &query.name, &query.r#type, query.unique_items, query.required, &query.description)
                    }
                    non_body_parameter::Oneof::PathParameterSubSchema(path) => {
                        ("path", &path.name, &path.r#type, path.unique_items, path.required, &path.description)
                    }
                    other => panic!("{at}: {other:?}"),
                };
                assert_eq!(json["in"], location, "{at}");
                assert_eq!(name, json["name"].as_str().unwrap(), "{at}");
                assert_eq!(kind, json["type"].as_str().unwrap(), "{at}");
                assert_eq!(unique, json.get("uniqueItems") == Some(&Value::Bool(true)), "{at}");
                assert_eq!((sub_required, sub_description.as_str()), (required, description), "{at}");
                for key in json.as_object().unwrap().keys() {
                    let known = ["name", "in", "description", "type", "uniqueItems", "required"];
                    assert!(known.contains(&key.as_str()), "{at}: {key}");
                }
            }
        }
    }
}
