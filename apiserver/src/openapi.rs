//! OpenAPI v3, as kube-apiserver serves it: `/openapi/v3` lists a document per group version
//! (`serverRelativeURL` with the hash of its content), and `/openapi/v3/api/v1`,
//! `/openapi/v3/apis/GROUP/VERSION` are those documents: every served resource's operations
//! (each tagged with its group-version-kind; each write offers `dryRun`, `fieldManager` and
//! `fieldValidation`, which kubectl looks for on PATCH to leave validation to the server) and
//! `components.schemas` with the schemas of its kinds and all they reference
//! (`openapi_schemas.rs`), which `kubectl explain` renders and client-side apply computes its
//! strategic merge patches from.
//!
//! The documents are built once, on first use, and answered with an ETag (the hash): a request
//! with a matching `If-None-Match` gets 304, one naming the current hash may be cached for good.
//! They are JSON only: a client that accepts only the protobuf form gets 406.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::discovery::GIT_VERSION;
use crate::error::Result;
use crate::http::{self, Params};
use crate::openapi_schemas::{self, Schemas, PATCH, REF_PREFIX};
use crate::registry::{self, ResourceInfo, RESOURCES};

/// A document encoded once, with the hash clients cache it by.
pub struct Document {
    pub body: Bytes,
    /// Upper-case hex, as kube's.
    pub hash: String,
}

impl Document {
    pub fn new(value: &Value) -> Document {
        let body = Bytes::from(serde_json::to_vec(value).expect("a JSON value encodes"));
        Document { hash: content_hash(&body), body }
    }

    /// The document as an answer to a GET with these headers and `hash` parameter.
    pub fn serve(&self, headers: &HeaderMap, requested_hash: Option<&str>) -> Result<Response> {
        // A client that takes only another form (OpenAPI's protobuf) is refused, so it can fall
        // back; anything that takes JSON gets it.
        http::negotiate(headers, &Params::default())?;
        let etag = format!("\"{}\"", self.hash);
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
        let mut response = if matches {
            let mut response = http::bytes_response(StatusCode::NOT_MODIFIED, Bytes::new());
            response.headers_mut().remove(header::CONTENT_TYPE);
            response
        } else {
            http::bytes_response(StatusCode::OK, self.body.clone())
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a header value"));
        // A request naming the current hash asks for content that never changes.
        let cache = if requested_hash == Some(self.hash.as_str()) {
            "public, immutable, max-age=31536000"
        } else {
            "no-cache, private"
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        Ok(response)
    }
}

/// FNV-1a over the content, twice with different offsets for 128 bits: the hash only names a
/// version of a document for caches.
fn content_hash(bytes: &[u8]) -> String {
    let fnv = |offset: u64| bytes.iter().fold(offset, |hash, byte| (hash ^ *byte as u64).wrapping_mul(0x100000001b3));
    format!("{:016X}{:016X}", fnv(0xcbf29ce484222325), fnv(0x84222325cbf29ce4))
}

pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut group_versions = vec![("", "v1")];
    group_versions.extend(registry::groups());
    group_versions
}

struct Documents {
    root: Document,
    by_group_version: BTreeMap<(String, String), Document>,
}

fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut by_group_version = BTreeMap::new();
        let mut paths = Map::new();
        for (group, version) in group_versions() {
            let document = Document::new(&document(group, version).expect("a served group version"));
            let path = document_path(group, version);
            let url = format!("/openapi/v3/{path}?hash={}", document.hash);
            paths.insert(path, json!({ "serverRelativeURL": url }));
            by_group_version.insert((group.to_string(), version.to_string()), document);
        }
        Documents { root: Document::new(&json!({ "paths": paths })), by_group_version }
    })
}

/// `GET /openapi/v3`.
pub fn serve_root(headers: &HeaderMap) -> Result<Response> {
    documents().root.serve(headers, None)
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`; None if not served.
pub fn serve_document(group: &str, version: &str, headers: &HeaderMap, params: &Params) -> Option<Result<Response>> {
    let document = documents().by_group_version.get(&(group.to_string(), version.to_string()))?;
    Some(document.serve(headers, params.get("hash")))
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": kind, "uniqueItems": true } })
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

/// The parameters of an operation, by what it does.
fn parameters(action: &str) -> Vec<Value> {
    let mut parameters = Vec::new();
    if matches!(action, "post" | "put" | "patch" | "delete" | "deletecollection") {
        parameters.push(query("dryRun", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed", "string"));
    }
    if matches!(action, "post" | "put" | "patch") {
        parameters.push(query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).", "string"));
        parameters.push(query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.", "string"));
    }
    if action == "patch" {
        parameters.push(query("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "boolean"));
    }
    if matches!(action, "delete" | "deletecollection") {
        parameters.push(query("gracePeriodSeconds", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately.", "integer"));
        parameters.push(query(
            "propagationPolicy",
            "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
            "string",
        ));
    }
    if matches!(action, "list" | "deletecollection") {
        parameters.push(query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
            "string",
        ));
        parameters.push(query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
            "string",
        ));
        parameters.push(query("limit", "limit is a maximum number of responses to return for a list call.", "integer"));
        parameters.push(query(
            "continue",
            "The continue option should be set when retrieving more results from the server.",
            "string",
        ));
        parameters.push(query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
            "string",
        ));
        parameters.push(query("timeoutSeconds", "Timeout for the list/watch call.", "integer"));
    }
    if action == "list" {
        parameters.push(query("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.", "boolean"));
        parameters.push(query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
            "boolean",
        ));
        parameters.push(query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`: the stream begins with synthetic events for all objects.", "boolean"));
    }
    parameters
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// One operation. `kind` is the group-version-kind it is tagged with (the resource's, or
/// autoscaling/v1 Scale); `body` the definition it takes and answers.
fn operation(id: &str, action: &str, gvk: &Value, body: &str, schemas: &Schemas) -> Value {
    let answer = match action {
        "list" => format!("{body}List"),
        "deletecollection" => schemas.status.clone(),
        _ => body.to_string(),
    };
    let mut operation = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": parameters(action),
        "responses": {
            "200": { "description": "OK", "content": json_content(schema_ref(&answer)) },
            "401": { "description": "Unauthorized" },
        },
    });
    match action {
        "post" | "put" => {
            operation["requestBody"] = json!({ "content": json_content(schema_ref(body)), "required": true });
            operation["responses"]["201"] =
                json!({ "description": "Created", "content": json_content(schema_ref(body)) });
        }
        "patch" => {
            let patch = json!({ "schema": schema_ref(PATCH) });
            operation["requestBody"] = json!({ "content": {
                "application/json-patch+json": patch,
                "application/merge-patch+json": patch,
                "application/strategic-merge-patch+json": patch,
                "application/apply-patch+yaml": patch,
            }, "required": true });
            operation["responses"]["201"] =
                json!({ "description": "Created", "content": json_content(schema_ref(body)) });
        }
        "delete" | "deletecollection" => {
            operation["requestBody"] = json!({ "content": json_content(schema_ref(&schemas.delete_options)) });
        }
        _ => {}
    }
    operation
}

/// The paths of one resource: its collection (and, when namespaced, the list across
/// namespaces), its objects and their subresources.
fn resource_paths(info: &ResourceInfo, schemas: &Schemas, paths: &mut Map<String, Value>) {
    let base = format!("/{}", document_path(info.group, info.version));
    let kind = info.kind;
    let definition = schemas.kind(info);
    let gvk = json!({ "group": info.group, "kind": kind, "version": info.version });
    let name = path_parameter("name", &format!("name of the {kind}"));
    let namespace = path_parameter("namespace", "object name and auth scope, such as for teams and projects");
    let (collection, scope, scope_parameters) = if info.namespaced {
        paths.insert(
            format!("{base}/{}", info.plural),
            json!({ "get": operation(&format!("list{kind}ForAllNamespaces"), "list", &gvk, definition, schemas) }),
        );
        (format!("{base}/namespaces/{{namespace}}/{}", info.plural), "Namespaced", vec![namespace])
    } else {
        (format!("{base}/{}", info.plural), "", vec![])
    };
    let op = |verb: &str, action: &str, suffix: &str| {
        operation(&format!("{verb}{scope}{kind}{suffix}"), action, &gvk, definition, schemas)
    };
    paths.insert(
        collection.clone(),
        json!({
            "get": op("list", "list", ""),
            "post": op("create", "post", ""),
            "delete": op("deleteCollection", "deletecollection", ""),
            "parameters": scope_parameters,
        }),
    );
    let mut object_parameters = scope_parameters.clone();
    object_parameters.insert(0, name);
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": op("read", "get", ""),
            "put": op("replace", "put", ""),
            "patch": op("patch", "patch", ""),
            "delete": op("delete", "delete", ""),
            "parameters": object_parameters,
        }),
    );
    if info.status_subresource {
        paths.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": op("read", "get", "Status"),
                "put": op("replace", "put", "Status"),
                "patch": op("patch", "patch", "Status"),
                "parameters": object_parameters,
            }),
        );
    }
    if info.scale_subresource {
        let scale_gvk = json!({ "group": "autoscaling", "kind": "Scale", "version": "v1" });
        let op = |verb: &str, action: &str| {
            operation(&format!("{verb}{scope}{kind}Scale"), action, &scale_gvk, &schemas.scale, schemas)
        };
        paths.insert(
            format!("{collection}/{{name}}/scale"),
            json!({
                "get": op("read", "get"),
                "put": op("replace", "put"),
                "patch": op("patch", "patch"),
                "parameters": object_parameters,
            }),
        );
    }
}

/// The document of one group version, None if it is not served.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> =
        RESOURCES.iter().filter(|info| info.group == group && info.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let schemas = openapi_schemas::schemas();
    let mut paths = Map::new();
    let mut roots = vec![schemas.status.clone(), schemas.delete_options.clone(), PATCH.to_string()];
    for info in served {
        resource_paths(info, schemas, &mut paths);
        roots.push(schemas.kind(info).to_string());
        roots.push(schemas.list(info));
        if info.scale_subresource {
            roots.push(schemas.scale.clone());
        }
    }
    let mut components: Map<String, Value> = schemas.closure(roots).into_iter().collect();
    for definition in components.values_mut() {
        openapi_schemas::v3_form(definition);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": components },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn patch_operations_offer_field_validation() {
        let document = document("apps", "v1").unwrap();
        let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|parameter| parameter["name"] == "fieldValidation"));
        // Every PATCH does: kubectl decides from the first it finds for a kind.
        for (path, item) in document["paths"].as_object().unwrap() {
            if let Some(patch) = item.get("patch") {
                let names: Vec<&Value> = patch["parameters"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
                assert!(names.contains(&&json!("fieldValidation")), "{path}");
            }
        }
        let scale = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["get"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    }

    #[test]
    fn documents_are_self_contained() {
        for (group, version) in group_versions() {
            let document = document(group, version).unwrap();
            let schemas = document["components"]["schemas"].as_object().unwrap();
            let text = serde_json::to_string(&document).unwrap();
            for reference in text.split("\"$ref\":\"").skip(1) {
                let name = reference.split('"').next().unwrap().strip_prefix(REF_PREFIX).unwrap();
                assert!(schemas.contains_key(name), "{group}/{version}: {name}");
            }
        }
        let core = document("", "v1").unwrap();
        assert!(core["components"]["schemas"].get("io.k8s.api.apps.v1.Deployment").is_none());
        assert!(core["components"]["schemas"].get("io.k8s.api.core.v1.PodList").is_some());
    }

    #[test]
    fn root_lists_documents_by_content_hash() {
        let root: Value = serde_json::from_slice(&documents().root.body).unwrap();
        let url = root["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        let hash = url.strip_prefix("/openapi/v3/api/v1?hash=").unwrap();
        assert_eq!(hash, documents().by_group_version[&(String::new(), "v1".to_string())].hash);
        assert_eq!(hash.len(), 32);
    }

    #[test]
    fn etag_and_protobuf_only_clients() {
        let document = Document::new(&json!({ "a": 1 }));
        let mut headers = HeaderMap::new();
        let response = document.serve(&headers, Some(&document.hash)).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::ETAG], format!("\"{}\"", document.hash).as_str());
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"{}\"", document.hash)).unwrap());
        assert_eq!(document.serve(&headers, None).unwrap().status(), StatusCode::NOT_MODIFIED);
        headers.clear();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v3@v1.0+protobuf"),
        );
        assert!(matches!(document.serve(&headers, None), Err(Error::NotAcceptable(_))));
    }
}
