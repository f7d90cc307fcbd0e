//! Aggregated discovery: `/api` and `/apis` answer an `APIGroupDiscoveryList` (every group
//! version with its resources and subresources, in one request) when the Accept header asks for
//! `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` (client-go 1.30 and
//! newer) or its `v2beta1` (client-go 1.26 to 1.29).
//!
//! The documents are converted from the legacy `APIResourceList`s (`discovery::resources`), the
//! way kube-apiserver converts its own (`ConvertGroupVersionIntoToDiscovery`), so the two forms
//! never disagree. That conversion keeps kube's quirk: a resource's `responseKind` has empty
//! group and version unless the legacy entry names them (only `/scale`'s autoscaling/v1 does).
//!
//! Only the JSON form is served. A protobuf clause in the Accept header is skipped, and the next
//! clause decides, as kube-apiserver does with a type it cannot negotiate; a clause without
//! `as=` picks the legacy documents.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::discovery;
use crate::http;
use crate::openapi::Document;
use crate::registry;

const GROUP: &str = "apidiscovery.k8s.io";
const KIND: &str = "APIGroupDiscoveryList";

/// The version of `apidiscovery.k8s.io` a client negotiated; both have the same JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedVersion {
    V2,
    V2Beta1,
}

impl AggregatedVersion {
    fn name(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "v2",
            AggregatedVersion::V2Beta1 => "v2beta1",
        }
    }

    /// The Content-Type of the answer: client-go recognises an aggregated document by it.
    pub fn media_type(self) -> String {
        format!("application/json;g={GROUP};v={};as={KIND}", self.name())
    }
}

/// Which discovery root: `/api` (the core group) or `/apis` (every named group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Core,
    Groups,
}

/// One clause of an Accept header.
struct Clause<'a> {
    media_type: &'a str,
    quality: f32,
    parameters: Vec<(&'a str, &'a str)>,
}

impl Clause<'_> {
    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }
}

fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = accept
        .split(',')
        .map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or("");
            let mut quality = 1.0;
            let mut parameters = Vec::new();
            for (key, value) in parts.filter_map(|part| part.split_once('=')) {
                let (key, value) = (key.trim(), value.trim().trim_matches('"'));
                if key == "q" {
                    quality = value.parse().unwrap_or(0.0);
                } else {
                    parameters.push((key, value));
                }
            }
            Clause { media_type, quality, parameters }
        })
        .filter(|clause| !clause.media_type.is_empty() && clause.quality > 0.0)
        .collect();
    // Highest quality first; equal ones keep the client's order (kube's goautoneg does alike).
    clauses.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    clauses
}

/// The aggregated form the Accept header asks for first, or None for the legacy documents.
pub fn negotiate(headers: &HeaderMap) -> Option<AggregatedVersion> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for clause in clauses(accept) {
        let json = matches!(clause.media_type, "application/json" | "application/*" | "*/*");
        match clause.parameter("as") {
            // A plain clause: the legacy document answers it (in JSON, keel's only encoding).
            None => return None,
            Some(KIND) if json && clause.parameter("g") == Some(GROUP) => match clause.parameter("v") {
                Some("v2") => return Some(AggregatedVersion::V2),
                Some("v2beta1") => return Some(AggregatedVersion::V2Beta1),
                _ => {}
            },
            // Protobuf, another kind or group: not negotiable here, the next clause decides.
            Some(_) => {}
        }
    }
    None
}

fn group_versions(root: Root) -> Vec<(&'static str, &'static str)> {
    match root {
        Root::Core => vec![("", "v1")],
        Root::Groups => registry::groups(),
    }
}

fn response_kind(entry: &Value) -> Value {
    let field = |name: &str| entry[name].as_str().unwrap_or("").to_string();
    json!({ "group": field("group"), "version": field("version"), "kind": field("kind") })
}

/// A legacy `APIResourceList`'s entries as `APIResourceDiscovery`s: each subresource
/// (`pods/status`) under its resource.
fn resources_of(list: &Value) -> Vec<Value> {
    let entries = list["resources"].as_array().expect("an APIResourceList has resources");
    let mut resources: Vec<Value> = Vec::new();
    for entry in entries {
        let name = entry["name"].as_str().expect("a resource has a name");
        if name.contains('/') {
            continue;
        }
        let scope = if entry["namespaced"] == true { "Namespaced" } else { "Cluster" };
        let mut resource = json!({
            "resource": name,
            "responseKind": response_kind(entry),
            "scope": scope,
            "singularResource": entry["singularName"],
            "verbs": entry["verbs"],
        });
        for optional in ["shortNames", "categories"] {
            if entry[optional].as_array().is_some_and(|values| !values.is_empty()) {
                resource[optional] = entry[optional].clone();
            }
        }
        resources.push(resource);
    }
    for entry in entries {
        let name = entry["name"].as_str().expect("a resource has a name");
        let Some((parent, subresource)) = name.split_once('/') else {
            continue;
        };
        let resource = resources
            .iter_mut()
            .find(|resource| resource["resource"] == parent)
            .unwrap_or_else(|| panic!("subresource {name} is listed without its resource"));
        let subresources = resource.as_object_mut().expect("an object").entry("subresources").or_insert(json!([]));
        subresources.as_array_mut().expect("an array").push(json!({
            "subresource": subresource,
            "responseKind": response_kind(entry),
            "verbs": entry["verbs"],
        }));
    }
    resources
}

/// The `APIGroupDiscoveryList` of a root, in the negotiated version.
pub fn document(root: Root, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = group_versions(root)
        .into_iter()
        .map(|(group, group_version)| {
            let list = discovery::resources(group, group_version).expect("the registry serves its own groups");
            // kube's ObjectMeta encodes an unset creationTimestamp as null, and leaves out the
            // core group's empty name.
            let mut metadata = json!({ "creationTimestamp": null });
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({
                "metadata": metadata,
                "versions": [{ "version": group_version, "resources": resources_of(&list), "freshness": "Current" }],
            })
        })
        .collect();
    json!({
        "kind": KIND,
        "apiVersion": format!("{GROUP}/{}", version.name()),
        "metadata": {},
        "items": items,
    })
}

/// The encoded documents, built once: the registry does not change while the server runs.
fn encoded(root: Root, version: AggregatedVersion) -> &'static Document {
    static DOCUMENTS: OnceLock<[Document; 4]> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        [
            Document::new(&document(Root::Core, AggregatedVersion::V2)),
            Document::new(&document(Root::Core, AggregatedVersion::V2Beta1)),
            Document::new(&document(Root::Groups, AggregatedVersion::V2)),
            Document::new(&document(Root::Groups, AggregatedVersion::V2Beta1)),
        ]
    });
    let index = match (root, version) {
        (Root::Core, AggregatedVersion::V2) => 0,
        (Root::Core, AggregatedVersion::V2Beta1) => 1,
        (Root::Groups, AggregatedVersion::V2) => 2,
        (Root::Groups, AggregatedVersion::V2Beta1) => 3,
    };
    &documents[index]
}

/// The answer to a GET of `/api` or `/apis` that negotiated `version`: the document with an
/// ETag, or 304 when the client already holds it (kube-apiserver's `ServeHTTPWithETag`).
pub fn serve(root: Root, version: AggregatedVersion, headers: &HeaderMap) -> Response {
    let document = encoded(root, version);
    let etag = format!("\"{}\"", document.hash);
    let cached =
        headers.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()).is_some_and(|tag| tag.trim() == etag);
    let mut response = if cached {
        let mut response = http::bytes_response(StatusCode::NOT_MODIFIED, Bytes::new());
        response.headers_mut().remove(header::CONTENT_TYPE);
        response
    } else {
        let mut response = http::bytes_response(StatusCode::OK, document.body.clone());
        let media_type = HeaderValue::from_str(&version.media_type()).expect("a media type is a header value");
        response.headers_mut().insert(header::CONTENT_TYPE, media_type);
        response
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a header value"));
    // The same URL answers the legacy form too: caches must key on Accept.
    response_headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<AggregatedVersion> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn negotiation_takes_the_first_form_served() {
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        let protobuf = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let cases: &[(String, Option<AggregatedVersion>)] = &[
            (format!("{v2},{v2beta1},application/json"), Some(AggregatedVersion::V2)),
            (format!("{protobuf},{v2},{v2beta1},application/json"), Some(AggregatedVersion::V2)),
            (format!("{v2beta1},application/json"), Some(AggregatedVersion::V2Beta1)),
            (format!("{protobuf},application/json"), None),
            (format!("application/json,{v2}"), None),
            (format!("application/json;q=0.5,{v2}"), Some(AggregatedVersion::V2)),
            (format!("{v2};q=0,application/json"), None),
            ("application/json;g=apidiscovery.k8s.io;v=v1;as=APIGroupDiscoveryList".to_string(), None),
            ("application/json".to_string(), None),
            ("*/*".to_string(), None),
        ];
        for (header, expected) in cases {
            assert_eq!(accept(header), *expected, "{header}");
        }
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn documents_hold_every_resource_with_its_subresources() {
        let core = document(Root::Core, AggregatedVersion::V2);
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none(), "the core group has no name");
        let version = &items[0]["versions"][0];
        assert_eq!(version["version"], "v1");
        assert_eq!(version["freshness"], "Current");
        let pods = version["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["responseKind"], json!({"group": "", "version": "", "kind": "Pod"}));
        let subresources: Vec<&Value> = pods["subresources"].as_array().unwrap().iter().collect();
        let binding = subresources.iter().find(|s| s["subresource"] == "binding").unwrap();
        assert_eq!(binding["responseKind"]["kind"], "Binding");
        assert_eq!(binding["verbs"], json!(["create"]));
        assert!(subresources.iter().any(|s| s["subresource"] == "status"));
        let nodes = version["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "nodes").unwrap();
        assert_eq!(nodes["scope"], "Cluster");
        assert!(nodes.get("categories").is_none());

        let groups = document(Root::Groups, AggregatedVersion::V2Beta1);
        assert_eq!(groups["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let names: Vec<&str> =
            groups["items"].as_array().unwrap().iter().map(|item| item["metadata"]["name"].as_str().unwrap()).collect();
        let legacy: Vec<&str> = registry::groups().into_iter().map(|(group, _)| group).collect();
        assert_eq!(names, legacy, "the same groups as /apis, in the same order");
        let apps = &groups["items"][0]["versions"][0]["resources"];
        let deployments = apps.as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        let scale =
            deployments["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    }

    /// Every legacy entry appears in the aggregated form, as a resource or a subresource.
    #[test]
    fn aggregated_and_legacy_documents_agree() {
        for (group, version) in group_versions(Root::Core).into_iter().chain(group_versions(Root::Groups)) {
            let legacy = discovery::resources(group, version).unwrap();
            let aggregated = resources_of(&legacy);
            let mut names = Vec::new();
            for resource in &aggregated {
                let name = resource["resource"].as_str().unwrap();
                names.push(name.to_string());
                for subresource in resource["subresources"].as_array().into_iter().flatten() {
                    names.push(format!("{name}/{}", subresource["subresource"].as_str().unwrap()));
                }
            }
            let mut legacy_names: Vec<String> = legacy["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            legacy_names.sort();
            assert_eq!(names, legacy_names, "{group}/{version}");
        }
    }

    #[test]
    fn a_held_etag_is_answered_not_modified() {
        let response = serve(Root::Groups, AggregatedVersion::V2, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        let etag = response.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(Root::Groups, AggregatedVersion::V2, &headers).status(), StatusCode::NOT_MODIFIED);
    }
}
