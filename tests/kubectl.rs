//! kubectl 1.33 and 1.32 against a real `keel server` process: the everyday commands, each
//! checked on what the server answers, and the errors clients test for.
//!
//! Each test starts its own server on free loopback ports (`support::keel_server`), with its own
//! data directory and kubectl cache, and stops it by PID.

mod support;

use support::keel_server::{kubectl_binary, kubectl_dir, KeelServer, WAIT};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
  labels:
    app: web
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"#;

/// The whole everyday scenario with one kubectl binary.
fn scenario(kubectl: &Path) {
    let server = KeelServer::start();
    let k = kubectl;

    // The system namespaces exist from the start.
    let namespaces = server.ok(k, &["get", "ns", "-o", "name"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(&format!("namespace/{name}")), "{namespaces}");
    }

    // create -f of a multi-document manifest.
    let manifest = server.write_file("manifest.yaml", MANIFEST);
    let created = server.ok(k, &["create", "-f", &manifest]);
    for line in
        ["namespace/demo created", "configmap/settings created", "deployment.apps/web created", "service/web created"]
    {
        assert!(created.contains(line), "{created}");
    }

    // get in every output.
    let deployment = server.json(k, &["get", "deployment", "web", "-n", "demo"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["metadata"]["generation"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate", "defaulted");
    assert!(deployment["metadata"]["uid"].as_str().unwrap().len() == 36);
    let revision: i64 = deployment["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(revision > 0);
    let yaml = server.ok(k, &["get", "deploy", "web", "-n", "demo", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("  name: web\n"), "{yaml}");
    let wide = server.ok(k, &["get", "deploy", "-n", "demo", "-o", "wide"]);
    assert!(wide.contains("CONTAINERS") && wide.contains("nginx:1.27") && wide.contains("app=web"), "{wide}");
    let all_namespaces = server.ok(k, &["get", "cm,svc", "-A", "-l", "app=web"]);
    assert!(all_namespaces.contains("NAMESPACE") && all_namespaces.contains("configmap/settings"), "{all_namespaces}");
    assert!(all_namespaces.contains("service/web") && all_namespaces.contains("80/TCP"), "{all_namespaces}");
    let none = server.ok(k, &["get", "cm", "-A", "-l", "app=other", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let by_field = server.ok(k, &["get", "cm", "-A", "--field-selector", "metadata.namespace=demo", "-o", "name"]);
    assert_eq!(by_field.trim(), "configmap/settings");
    let by_name = server.ok(k, &["get", "ns", "--field-selector", "metadata.name=kube-system", "-o", "name"]);
    assert_eq!(by_name.trim(), "namespace/kube-system");
    // Pages of one object each: the continue token carries the list's revision.
    let paged = server.ok(k, &["get", "ns", "--chunk-size=1", "-o", "name"]);
    assert_eq!(paged.lines().count(), 5, "{paged}");

    // Client-side apply: the first adopts what create made, the second changes nothing, an
    // edit changes only what was edited.
    let applied = server.ok(k, &["apply", "-f", &manifest]);
    assert!(applied.contains("deployment.apps/web configured"), "{applied}");
    let again = server.ok(k, &["apply", "-f", &manifest]);
    assert_eq!(again.matches("unchanged").count(), 4, "{again}");
    let edited = server.write_file("edited.yaml", &MANIFEST.replace("color: blue", "color: red"));
    let applied = server.ok(k, &["apply", "-f", &edited]);
    assert!(
        applied.contains("configmap/settings configured") && applied.contains("deployment.apps/web unchanged"),
        "{applied}"
    );
    let settings = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    assert_eq!(settings["data"]["color"], "red");

    // patch: merge, JSON (with test), strategic (kubectl's default) on a merge-keyed list.
    server.ok(k, &["patch", "cm", "settings", "-n", "demo", "--type", "merge", "-p", r#"{"data":{"size":"L"}}"#]);
    server.ok(
        k,
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/size","value":"L"},{"op":"replace","path":"/data/size","value":"XL"}]"#,
        ],
    );
    let failed = server.fails(
        k,
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/size","value":"S"},{"op":"remove","path":"/data/color"}]"#,
        ],
        None,
    );
    assert!(failed.contains("test"), "{failed}");
    let settings = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    assert_eq!(settings["data"], serde_json::json!({"color": "red", "size": "XL"}));
    server.ok(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            "demo",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}"#,
        ],
    );
    let deployment = server.json(k, &["get", "deploy", "web", "-n", "demo"]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.28");
    assert_eq!(container["ports"][0]["containerPort"], 80, "the strategic merge kept the other fields");
    assert_eq!(deployment["metadata"]["generation"], 2, "a spec change bumps generation");

    // label, annotate, scale.
    server.ok(k, &["label", "cm", "settings", "-n", "demo", "tier=front"]);
    server.ok(k, &["annotate", "cm", "settings", "-n", "demo", "note=hello"]);
    let settings = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    assert_eq!(settings["metadata"]["labels"]["tier"], "front");
    assert_eq!(settings["metadata"]["annotations"]["note"], "hello");
    let scaled = server.ok(k, &["scale", "deployment", "web", "-n", "demo", "--replicas=5"]);
    assert!(scaled.contains("scaled"), "{scaled}");
    let deployment = server.json(k, &["get", "deploy", "web", "-n", "demo"]);
    assert_eq!(deployment["spec"]["replicas"], 5);

    // get -w sees an event.
    let mut watcher = server
        .command(k, &["get", "cm", "-n", "demo", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_sender, lines) = mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines.recv_timeout(WAIT).expect("the watch lists first");
    assert!(first.contains("NAME"), "{first}");
    let listed = lines.recv_timeout(WAIT).unwrap();
    assert!(listed.starts_with("settings"), "{listed}");
    server.ok_with_input(
        k,
        &["create", "-f", "-"],
        Some(
            "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"watched\",\"namespace\":\"demo\"}}",
        ),
    );
    let event = lines.recv_timeout(WAIT).expect("the watch sees the new configmap");
    assert!(event.starts_with("watched"), "{event}");
    let _ = Command::new("kill").arg(watcher.id().to_string()).status();
    let _ = watcher.wait();

    // api-resources.
    let resources = server.ok(k, &["api-resources"]);
    let deployments = resources.lines().find(|line| line.starts_with("deployments")).expect("deployments are listed");
    for column in ["deploy", "apps/v1", "true", "Deployment"] {
        assert!(deployments.contains(column), "{deployments}");
    }
    assert!(resources.lines().any(|line| line.starts_with("nodes ") && line.contains("false")), "{resources}");

    // Errors.
    let exists = server.fails(k, &["create", "-f", &manifest], None);
    assert!(exists.contains("AlreadyExists") && exists.contains("configmaps \"settings\" already exists"), "{exists}");
    let missing = server.fails(k, &["get", "cm", "nope", "-n", "demo"], None);
    assert!(missing.contains("NotFound") && missing.contains("configmaps \"nope\" not found"), "{missing}");
    let invalid = server.fails(k, &["create", "-f", "-"], Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"Bad_Name\",\"namespace\":\"demo\"}}"));
    assert!(invalid.contains("is invalid") && invalid.contains("metadata.name"), "{invalid}");
    let unknown_field = server.fails(k, &["create", "-f", "-"], Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"strict\",\"namespace\":\"demo\"},\"bogus\":1}"));
    assert!(unknown_field.contains("unknown field \"bogus\""), "{unknown_field}");
    let no_namespace = server.fails(
        k,
        &["create", "-f", "-"],
        Some("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"x\",\"namespace\":\"nowhere\"}}"),
    );
    assert!(no_namespace.contains("namespaces \"nowhere\" not found"), "{no_namespace}");
    let stale = server.ok(k, &["get", "cm", "settings", "-n", "demo", "-o", "json"]);
    server.ok(k, &["label", "cm", "settings", "-n", "demo", "moved=on"]);
    let conflict = server.fails(k, &["replace", "-f", "-"], Some(&stale));
    assert!(conflict.contains("Conflict") && conflict.contains("the object has been modified"), "{conflict}");

    // delete by name, then by label.
    let deleted = server.ok(k, &["delete", "cm", "watched", "-n", "demo"]);
    assert!(deleted.contains("configmap \"watched\" deleted"), "{deleted}");
    server.fails(k, &["get", "cm", "watched", "-n", "demo"], None);
    let deleted = server.ok(k, &["delete", "deploy,svc", "-n", "demo", "-l", "app=web"]);
    assert!(
        deleted.contains("deployment.apps \"web\" deleted") && deleted.contains("service \"web\" deleted"),
        "{deleted}"
    );
    let left = server.ok(k, &["get", "deploy,svc", "-n", "demo", "-o", "name"]);
    assert_eq!(left.trim(), "");
    // Deleting a namespace deletes what is in it.
    server.ok(k, &["delete", "ns", "demo"]);
    let left = server.ok(k, &["get", "cm", "-A", "--field-selector", "metadata.namespace=demo", "-o", "name"]);
    assert_eq!(left.trim(), "");
}

#[test]
fn kubectl_1_33_everyday_commands() {
    scenario(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_everyday_commands() {
    scenario(&kubectl_binary("1.32"));
}

/// The dispatcher `kubectl` picks the binary matching the server's version (v1.33).
#[test]
fn kubectl_dispatcher_matches_the_server_version() {
    let server = KeelServer::start();
    let version = server.ok(Path::new("kubectl"), &["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.33.0-keel");
    assert_eq!(version["clientVersion"]["minor"], "33", "{version}");
}

/// Older kubectl binaries on this machine: listing, creating and deleting still work (their
/// validation, from /openapi/v2's protobuf form, is tested in kubectl_openapi.rs).
#[test]
fn older_kubectl_smoke() {
    let server = KeelServer::start();
    for version in ["1.31", "1.30", "1.29", "1.28", "1.27"] {
        let binary = kubectl_dir().join(format!("kubectl.{version}"));
        if !binary.exists() {
            continue;
        }
        let name = format!("smoke-{}", version.replace('.', "-"));
        let namespaces = server.ok(&binary, &["get", "ns"]);
        assert!(namespaces.contains("kube-system"), "kubectl {version}: {namespaces}");
        let manifest = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"default\"}}}}");
        server.ok_with_input(&binary, &["create", "--validate=false", "-f", "-"], Some(&manifest));
        let got = server.ok(&binary, &["get", "cm", &name, "-o", "name"]);
        assert_eq!(got.trim(), format!("configmap/{name}"), "kubectl {version}");
        server.ok(&binary, &["delete", "cm", &name]);
    }
}
