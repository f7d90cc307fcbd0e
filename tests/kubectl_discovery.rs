//! Aggregated discovery (`apidiscovery.k8s.io/v2` and `v2beta1`) against a real `keel server`:
//! the documents' shape over plain HTTP, kubectl 1.33 and 1.32 discovering everything from `/api`
//! and `/apis` alone, without falling back to one request per group version, and the kube
//! crate's two discovery modes finding the same resources.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use serde_json::{json, Value};
use support::keel_server::{kubectl_binary, KeelServer, WAIT};

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
const PROTOBUF_V2: &str = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

struct Answer {
    status: u16,
    /// Lower-cased header lines.
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.lines().find_map(|line| line.strip_prefix(prefix.as_str())).map(str::trim)
    }

    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A plain HTTP/1.1 GET with these extra header lines, to the server's API port.
fn get(server: &KeelServer, path: &str, headers: &[String]) -> Answer {
    let address = format!("127.0.0.1:{}", server.api_port());
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|window| window == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer { status, headers: head.to_lowercase(), body: answer[split + 4..].to_vec() }
}

fn get_accepting(server: &KeelServer, path: &str, accept: &str) -> Answer {
    get(server, path, &[format!("Accept: {accept}")])
}

fn find<'a>(list: &'a Value, field: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|entry| entry[field] == name)
        .unwrap_or_else(|| panic!("no {field}={name} in {list}"))
}

#[test]
fn aggregated_documents_over_http() {
    let server = KeelServer::start();
    // kubectl's Accept header: v2 first, then v2beta1, then the legacy document.
    let kubectl_accept = format!("{V2},{V2BETA1},application/json");

    let apis = get_accepting(&server, "/apis", &kubectl_accept);
    assert_eq!(apis.header("content-type"), Some(V2.to_lowercase().as_str()), "{}", apis.headers);
    assert_eq!(apis.header("vary"), Some("accept"));
    let document = apis.json();
    assert_eq!(document["kind"], "APIGroupDiscoveryList");
    assert_eq!(document["apiVersion"], "apidiscovery.k8s.io/v2");
    let groups: Vec<&str> =
        document["items"].as_array().unwrap().iter().map(|item| item["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(groups, ["apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io"]);
    let apps = &document["items"][0]["versions"][0];
    assert_eq!(apps["version"], "v1");
    assert_eq!(apps["freshness"], "Current");
    let deployments = find(&apps["resources"], "resource", "deployments");
    assert_eq!(
        deployments,
        &json!({
            "resource": "deployments",
            "responseKind": {"group": "", "version": "", "kind": "Deployment"},
            "scope": "Namespaced",
            "singularResource": "deployment",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["deploy"],
            "categories": ["all"],
            "subresources": [
                {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                 "verbs": ["get", "patch", "update"]},
                {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                 "verbs": ["get", "patch", "update"]},
            ],
        })
    );

    // /api: the core group, unnamed, with pods' binding subresource and cluster-scoped nodes.
    let core = get_accepting(&server, "/api", &kubectl_accept).json();
    assert_eq!(core["items"].as_array().unwrap().len(), 1);
    assert_eq!(core["items"][0]["metadata"], json!({"creationTimestamp": null}));
    let v1 = &core["items"][0]["versions"][0];
    let pods = find(&v1["resources"], "resource", "pods");
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    let binding = find(&pods["subresources"], "subresource", "binding");
    assert_eq!(
        binding,
        &json!({"subresource": "binding", "responseKind": {"group": "", "version": "", "kind": "Binding"}, "verbs": ["create"]})
    );
    assert_eq!(find(&v1["resources"], "resource", "nodes")["scope"], "Cluster");
    assert_eq!(find(&v1["resources"], "resource", "services")["shortNames"], json!(["svc"]));

    // The aggregated and the legacy documents list the same resources.
    let legacy = get_accepting(&server, "/api/v1", "application/json").json();
    let legacy_names: Vec<&str> =
        legacy["resources"].as_array().unwrap().iter().map(|entry| entry["name"].as_str().unwrap()).collect();
    for resource in v1["resources"].as_array().unwrap() {
        let name = resource["resource"].as_str().unwrap();
        assert!(legacy_names.contains(&name), "{name}");
        for subresource in resource["subresources"].as_array().into_iter().flatten() {
            let full = format!("{name}/{}", subresource["subresource"].as_str().unwrap());
            assert!(legacy_names.contains(&full.as_str()), "{full}");
        }
    }

    // v2beta1 for clients that ask only for it (client-go 1.26 to 1.29).
    let beta = get_accepting(&server, "/apis", &format!("{V2BETA1},application/json"));
    assert_eq!(beta.header("content-type"), Some(V2BETA1.to_lowercase().as_str()));
    assert_eq!(beta.json()["apiVersion"], "apidiscovery.k8s.io/v2beta1");

    // Protobuf is not served: the next clause decides.
    let skipped = get_accepting(&server, "/apis", &format!("{PROTOBUF_V2},{V2},application/json"));
    assert_eq!(skipped.header("content-type"), Some(V2.to_lowercase().as_str()));
    let legacy_groups = get_accepting(&server, "/apis", &format!("{PROTOBUF_V2},application/json"));
    assert_eq!(legacy_groups.json()["kind"], "APIGroupList");
    assert_eq!(get_accepting(&server, "/api", "application/json").json()["kind"], "APIVersions");

    // The ETag: a client holding the document gets 304.
    let etag = apis.header("etag").expect("an ETag").to_uppercase();
    let cached = get(&server, "/apis", &[format!("Accept: {kubectl_accept}"), format!("If-None-Match: {etag}")]);
    assert_eq!(cached.status, 304, "{}", cached.headers);
    assert!(cached.body.is_empty());
}

/// kubectl discovers everything from the two aggregated documents: every request it makes for
/// discovery is `/api` or `/apis`, answered 200 with the aggregated Content-Type.
fn discovers_from_aggregated_documents(kubectl: &Path) {
    let server = KeelServer::start();
    for (index, command) in [&["api-resources"][..], &["get", "pods", "-A"][..]].into_iter().enumerate() {
        // A fresh discovery cache each time (a later --cache-dir wins over the harness's).
        let cache = server.dir.path().join(format!("cache-{index}"));
        let mut args = vec!["-v=8", "--cache-dir", cache.to_str().unwrap()];
        args.extend(command);
        let output = server.run_kubectl(kubectl, &args, None);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "kubectl {args:?}:\n{log}");
        // 1.33 logs `verb="GET" url="http://HOST/PATH"`, 1.32 `GET http://HOST/PATH`.
        let mut requested: Vec<&str> = log
            .lines()
            .filter_map(|line| line.split("GET").nth(1))
            .filter_map(|rest| rest.split("http://").nth(1))
            .filter_map(|url| url.split(['"', ' ']).next()?.split_once('/').map(|(_, path)| path))
            .collect();
        requested.dedup();
        let discovery: Vec<&&str> = requested.iter().filter(|path| !path.contains("pods")).collect();
        assert_eq!(discovery.len(), 2, "only /api and /apis: {requested:?}");
        assert!(discovery.iter().all(|path| path.starts_with("api?") || path.starts_with("apis?")), "{requested:?}");
        assert_eq!(log.matches(&format!("Content-Type: {V2}")).count(), 2, "{log}");
        assert!(!log.contains("falling back") && !log.contains("/apis/apps/v1"), "{log}");
    }

    // What kubectl makes of them.
    let resources = server.ok(kubectl, &["api-resources"]);
    for (name, short, api_version, namespaced, kind) in [
        ("pods", "po", "v1", "true", "Pod"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("services", "svc", "v1", "true", "Service"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
        ("jobs", "", "batch/v1", "true", "Job"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
        ("events", "ev", "events.k8s.io/v1", "true", "Event"),
    ] {
        let line = resources
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")) && line.contains(api_version))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{resources}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        let expected: Vec<&str> =
            [name, short, api_version, namespaced, kind].into_iter().filter(|column| !column.is_empty()).collect();
        assert_eq!(columns, expected, "{line}");
    }
    let in_all = server.ok(kubectl, &["api-resources", "--categories=all", "-o", "name"]);
    let in_all: Vec<&str> = in_all.lines().collect();
    assert_eq!(
        in_all,
        [
            "pods",
            "services",
            "daemonsets.apps",
            "deployments.apps",
            "replicasets.apps",
            "statefulsets.apps",
            "jobs.batch"
        ]
    );
    // Short names resolve through the aggregated document.
    let namespaces = server.ok(kubectl, &["get", "ns", "-o", "name"]);
    assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");
}

#[test]
fn kubectl_1_33_uses_aggregated_discovery() {
    discovers_from_aggregated_documents(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_uses_aggregated_discovery() {
    discovers_from_aggregated_documents(&kubectl_binary("1.32"));
}

/// What a kube `Discovery` found, comparable across its two modes: per group version, each
/// resource's plural, kind, scope and verbs, with its subresources' names, kinds and verbs.
fn discovered(discovery: &kube::Discovery) -> Vec<String> {
    let mut found = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, capabilities) in group.versioned_resources(version) {
                let mut subresources: Vec<String> = capabilities
                    .subresources
                    .iter()
                    .map(|(sub, sub_capabilities)| {
                        format!("{}:{}:{:?}", sub.plural, sub.kind, sub_capabilities.operations)
                    })
                    .collect();
                subresources.sort();
                found.push(format!(
                    "{}/{} {} {} {:?} {:?} {subresources:?}",
                    group.name(),
                    version,
                    resource.plural,
                    resource.kind,
                    capabilities.scope,
                    capabilities.operations
                ));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn kube_crate_aggregated_and_legacy_discovery_agree() {
    let server = KeelServer::start();
    let client = server.client().await;
    let aggregated = kube::Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let legacy = kube::Discovery::new(client).run().await.unwrap();
    let aggregated = discovered(&aggregated);
    assert_eq!(aggregated, discovered(&legacy));
    let pods = aggregated.iter().find(|line| line.starts_with("/v1 pods ")).expect("pods are discovered");
    assert!(pods.contains("Namespaced") && pods.contains("binding:Binding") && pods.contains("status:Pod"), "{pods}");
    let deployments = aggregated.iter().find(|line| line.starts_with("apps/v1 deployments ")).unwrap();
    assert!(deployments.contains("scale:Scale"), "{deployments}");
}
