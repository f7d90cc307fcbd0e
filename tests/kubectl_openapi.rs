//! The OpenAPI documents of a real `keel server`, read by kubectl 1.33 and 1.32 (`explain`,
//! server-side field validation of `apply`) and checked as JSON: every served kind's schema with
//! its group-version-kind, the patch merge keys kubectl computes client-side apply patches from.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use serde_json::{json, Value};
use support::keel_server::{kubectl_binary, KeelServer};

/// The server's address from its kubeconfig (`server: http://127.0.0.1:PORT`).
fn address(server: &KeelServer) -> String {
    let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let line = kubeconfig.lines().find(|line| line.trim_start().starts_with("server:")).expect("a server line");
    line.split("http://").nth(1).expect("a plain HTTP server").trim().trim_matches('"').to_string()
}

struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 GET with these extra header lines.
fn get(server: &KeelServer, path: &str, headers: &[&str]) -> Answer {
    let address = address(server);
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(support::keel_server::WAIT)).unwrap();
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

fn get_json(server: &KeelServer, path: &str) -> Value {
    let answer = get(server, path, &["Accept: application/json"]);
    assert_eq!(answer.status, 200, "{path}: {}", String::from_utf8_lossy(&answer.body));
    assert!(answer.headers.contains("content-type: application/json"), "{}", answer.headers);
    serde_json::from_slice(&answer.body).unwrap()
}

/// Every kind discovery lists, as (group, version, kind).
fn served_kinds(server: &KeelServer) -> Vec<(String, String, String)> {
    let mut group_versions = vec![(String::new(), "/api/v1".to_string())];
    for group in get_json(server, "/apis")["groups"].as_array().unwrap() {
        let version = group["preferredVersion"]["groupVersion"].as_str().unwrap();
        group_versions.push((group["name"].as_str().unwrap().to_string(), format!("/apis/{version}")));
    }
    let mut kinds = Vec::new();
    for (group, path) in group_versions {
        let list = get_json(server, &path);
        let version = list["groupVersion"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        for resource in list["resources"].as_array().unwrap() {
            if !resource["name"].as_str().unwrap().contains('/') {
                kinds.push((group.clone(), version.clone(), resource["kind"].as_str().unwrap().to_string()));
            }
        }
    }
    kinds
}

#[test]
fn openapi_v3_has_every_served_kind_with_its_extensions() {
    let server = KeelServer::start();
    let root = get_json(&server, "/openapi/v3");
    let kinds = served_kinds(&server);
    assert!(kinds.len() >= 16, "{kinds:?}");
    for (group, version, kind) in &kinds {
        let path = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
        let url = root["paths"][&path]["serverRelativeURL"].as_str().unwrap_or_else(|| panic!("{path}: {root}"));
        let document = get_json(&server, url);
        assert_eq!(document["openapi"], "3.0.0");
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let gvk = json!({ "group": group, "version": version, "kind": kind });
        let (name, schema) = schemas
            .iter()
            .find(|(_, schema)| {
                schema["x-kubernetes-group-version-kind"].as_array().is_some_and(|list| list.contains(&gvk))
            })
            .unwrap_or_else(|| panic!("no schema for {gvk} in {path}"));
        assert!(name.starts_with("io.k8s.api.") && name.ends_with(&format!(".{kind}")), "{name}");
        assert!(schema["properties"]["metadata"]["allOf"][0]["$ref"].as_str().is_some_and(
            |reference| reference == "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        ));
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "{path}");
        // kubectl leaves validation to the server when the kind's PATCH offers fieldValidation.
        let patch = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .find(|patch| patch["x-kubernetes-group-version-kind"] == gvk)
            .unwrap_or_else(|| panic!("no PATCH for {gvk}"));
        let parameters: Vec<&Value> = patch["parameters"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
        assert!(parameters.contains(&&json!("fieldValidation")) && parameters.contains(&&json!("dryRun")), "{gvk}");
    }

    let core = get_json(&server, root["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap());
    let schemas = &core["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name", "{containers}");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
    assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["port", "protocol"]));
    assert!(schemas["io.k8s.api.core.v1.Pod"]["description"].as_str().unwrap().starts_with("Pod is a collection"));

    // ETag: the hash of the URL; a matching If-None-Match is answered 304 without a body.
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = url.split("hash=").nth(1).unwrap();
    let first = get(&server, url, &[]);
    assert!(first.headers.contains(&format!("etag: \"{}\"", hash.to_lowercase())), "{}", first.headers);
    let again = get(&server, url, &[&format!("If-None-Match: \"{hash}\"")]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // OpenAPI's protobuf form is not served: 406, so clients fall back.
    let protobuf = get(&server, url, &["Accept: application/com.github.proto-openapi.spec.v3@v1.0+protobuf"]);
    assert_eq!(protobuf.status, 406);
    assert_eq!(get(&server, "/openapi/v3/apis/nothing/v1", &[]).status, 404);
}

#[test]
fn openapi_v2_is_json_and_protobuf() {
    let server = KeelServer::start();
    let document = get_json(&server, "/openapi/v2");
    assert_eq!(document["swagger"], "2.0");
    let deployment = &document["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(deployment["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert_eq!(
        document["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
            ["x-kubernetes-patch-merge-key"],
        "name"
    );
    let patch = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    // What kubectl asks for: gnostic's protobuf Document (decoded and compared with the JSON in
    // apiserver's openapi_v2 tests), with the JSON's ETag.
    let json = get(&server, "/openapi/v2", &[]);
    let protobuf = get(&server, "/openapi/v2", &["Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"]);
    assert_eq!(protobuf.status, 200, "{}", String::from_utf8_lossy(&protobuf.body));
    assert!(
        protobuf.headers.contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        "{}",
        protobuf.headers
    );
    let etag = |headers: &str| headers.lines().find(|line| line.starts_with("etag:")).map(str::to_string);
    assert_eq!(etag(&protobuf.headers), etag(&json.headers));
    assert!(etag(&json.headers).is_some());
    // Document.swagger (field 1) = "2.0" first.
    assert_eq!(&protobuf.body[..5], b"\x0a\x032.0");
    let other = get(&server, "/openapi/v2", &["Accept: application/vnd.kubernetes.protobuf"]);
    assert_eq!(other.status, 406);
}

const UNKNOWN_FIELD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  namespace: default
spec:
  foo: bar
  selector:
    matchLabels:
      app: NAME
  template:
    metadata:
      labels:
        app: NAME
    spec:
      containers:
      - name: app
        image: nginx:1.27
"#;

fn explain_and_validate(kubectl: &Path) {
    let server = KeelServer::start();
    let k = kubectl;

    let pods = server.ok(k, &["explain", "pods"]);
    for expected in ["KIND:       Pod", "VERSION:    v1", "Pod is a collection of containers", "FIELDS:"] {
        assert!(pods.contains(expected), "{expected:?} in\n{pods}");
    }
    assert!(pods.lines().any(|line| line.starts_with("  spec\t<PodSpec>")), "{pods}");
    assert!(pods.lines().any(|line| line == "  metadata\t<ObjectMeta>"), "not required, as in kube:\n{pods}");

    let strategy = server.ok(k, &["explain", "deployment.spec.strategy"]);
    for expected in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "The deployment strategy to use to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "type\t<string>",
    ] {
        assert!(strategy.contains(expected), "{expected:?} in\n{strategy}");
    }

    let ports = server.ok(k, &["explain", "svc.spec.ports", "--recursive"]);
    assert!(ports.contains("FIELD: ports <[]ServicePort>"), "{ports}");
    for field in ["appProtocol", "name", "nodePort", "port", "protocol", "targetPort"] {
        assert!(ports.lines().any(|line| line.trim_start().starts_with(&format!("{field}\t<"))), "{field} in\n{ports}");
    }
    assert!(ports.contains("port\t<integer> -required-"), "{ports}");

    let missing = server.fails(k, &["explain", "pods.spec.nothing"], None);
    assert!(missing.contains("field \"nothing\" does not exist"), "{missing}");

    // apply of an unknown field: refused on the server under --validate=strict, a warning under
    // --validate=warn (the object is created without it).
    let strict = server.write_file("strict.yaml", &UNKNOWN_FIELD.replace("NAME", "strict"));
    let refused = server.fails(k, &["apply", "--validate=strict", "-f", &strict], None);
    assert!(refused.contains("unknown field \"spec.foo\""), "{refused}");
    assert!(refused.contains("BadRequest"), "{refused}");
    server.fails(k, &["get", "deploy", "strict"], None);
    let warn = server.write_file("warn.yaml", &UNKNOWN_FIELD.replace("NAME", "warn"));
    let output = server.run_kubectl(k, &["apply", "--validate=warn", "-f", &warn], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Warning: unknown field \"spec.foo\""), "{stderr}");
    let created = server.json(k, &["get", "deploy", "warn"]);
    assert!(created["spec"].get("foo").is_none());

    // Client-side apply computes its patch from the schemas' merge keys: a changed image of a
    // keyed container merges into it, keeping the container's other fields.
    let edited = server.write_file(
        "edited.yaml",
        &UNKNOWN_FIELD.replace("NAME", "warn").replace("  foo: bar\n", "").replace("nginx:1.27", "nginx:1.28"),
    );
    server.ok(
        k,
        &[
            "patch",
            "deploy",
            "warn",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/workingDir","value":"/srv"}]"#,
        ],
    );
    let applied = server.run_kubectl(k, &["apply", "-f", &edited], None);
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(applied.status.success(), "{stderr}");
    assert!(!stderr.contains("error calculating patch"), "{stderr}");
    let deployment = server.json(k, &["get", "deploy", "warn"]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.28");
    assert_eq!(container["workingDir"], "/srv", "the container was merged by name, not replaced");
}

#[test]
fn kubectl_1_33_explain_and_validation() {
    explain_and_validate(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_explain_and_validation() {
    explain_and_validate(&kubectl_binary("1.32"));
}

/// kubectl reads /openapi/v2 in its protobuf form: `explain --output=plaintext-openapiv2`, and
/// kubectl 1.27's `apply --validate=true`, which looks there for the server's `fieldValidation`.
#[test]
fn kubectl_reads_openapi_v2_protobuf() {
    let server = KeelServer::start();
    for version in ["1.33", "1.32"] {
        let explained = server
            .ok(&kubectl_binary(version), &["explain", "--output=plaintext-openapiv2", "deployment.spec.strategy"]);
        for expected in
            ["KIND:     Deployment", "RESOURCE: strategy <Object>", "rollingUpdate\t<Object>", "type\t<string>"]
        {
            assert!(explained.contains(expected), "kubectl {version}: {expected:?} in\n{explained}");
        }
    }
    let old = support::keel_server::kubectl_dir().join("kubectl.1.27");
    if !old.exists() {
        return;
    }
    let manifest = UNKNOWN_FIELD.replace("NAME", "validated").replace("  foo: bar\n", "");
    let applied = server.ok_with_input(&old, &["apply", "--validate=true", "-f", "-"], Some(&manifest));
    assert!(applied.contains("deployment.apps/validated created"), "{applied}");
    let refused = server.run_kubectl(
        &old,
        &["apply", "--validate=true", "-f", "-"],
        Some(&UNKNOWN_FIELD.replace("NAME", "refused")),
    );
    assert!(!refused.status.success());
    let refused = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.contains("unknown field \"spec.foo\""), "{refused}");
}
