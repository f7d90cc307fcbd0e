//! Server-side apply and managedFields against a real `keel server`: kubectl 1.33 and 1.32
//! (`apply --server-side` of a multi-document manifest, conflicts between managers, forcing,
//! `scale` taking a field over, client-side apply beside it, `--show-managed-fields`), the `kube`
//! crate's `Patch::Apply`, and the errors of a bad apply request.

mod support;

use support::keel_server::{kubectl_binary, KeelServer};

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

const MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels:
    app: web
    tier: front
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
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
  namespace: default
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"#;

const REPLICAS_FIVE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 5
"#;

/// The managedFields entry of `manager` with `operation`, if the object has one.
fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|entry| entry["manager"] == manager && entry["operation"] == operation)
}

fn managed_entry<'a>(object: &'a Value, manager: &str, operation: &str) -> &'a Value {
    entry(object, manager, operation)
        .unwrap_or_else(|| panic!("no {operation} entry of {manager}: {:#}", object["metadata"]["managedFields"]))
}

fn resource_versions(server: &KeelServer, k: &Path) -> Vec<String> {
    ["configmap/settings", "deployment/web", "service/web"]
        .iter()
        .map(|object| server.json(k, &["get", object])["metadata"]["resourceVersion"].as_str().unwrap().to_string())
        .collect()
}

fn scenario(k: &Path) {
    let server = KeelServer::start();
    // kubectl scale names no field manager: kube-apiserver takes the User-Agent's program name,
    // the binary's file name.
    let scaler = k.file_name().unwrap().to_str().unwrap().to_string();
    let get = |object: &str| server.json(k, &["get", object, "--show-managed-fields"]);

    // apply --server-side of a multi-document manifest creates everything, owned by `kubectl`.
    let manifest = server.write_file("manifest.yaml", MANIFEST);
    let applied = server.ok(k, &["apply", "--server-side", "-f", &manifest]);
    for line in [
        "configmap/settings serverside-applied",
        "deployment.apps/web serverside-applied",
        "service/web serverside-applied",
    ] {
        assert!(applied.contains(line), "{applied}");
    }
    let deployment = get("deployment/web");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate", "defaulted after the merge");
    assert_eq!(deployment["metadata"]["managedFields"].as_array().unwrap().len(), 1, "{deployment:#}");
    let fields = &managed_entry(&deployment, "kubectl", "Apply")["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields["f:spec"]["f:selector"], json!({}), "a label selector is atomic");
    let nginx = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(nginx["."], json!({}), "{fields:#}");
    assert_eq!(nginx["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"], json!({}));
    assert!(fields["f:spec"].get("f:strategy").is_none(), "defaults are nobody's");
    assert_eq!(managed_entry(&deployment, "kubectl", "Apply")["apiVersion"], "apps/v1");
    let service = get("service/web");
    let ports = &managed_entry(&service, "kubectl", "Apply")["fieldsV1"]["f:spec"]["f:ports"];
    assert!(ports.get("k:{\"port\":80,\"protocol\":\"TCP\"}").is_some(), "{ports:#}");

    // Applying the same manifest again changes nothing.
    let before = resource_versions(&server, k);
    server.ok(k, &["apply", "--server-side", "-f", &manifest]);
    assert_eq!(resource_versions(&server, k), before, "a re-apply is a no-op");

    // A changed manifest updates; a field it no longer sets disappears.
    let changed = MANIFEST
        .replace("color: blue", "color: red")
        .replace("    tier: front\n", "")
        .replace("replicas: 2", "replicas: 3");
    let changed = server.write_file("changed.yaml", &changed);
    server.ok(k, &["apply", "--server-side", "-f", &changed]);
    let settings = get("configmap/settings");
    assert_eq!(settings["data"]["color"], "red");
    assert_eq!(settings["metadata"]["labels"], json!({"app": "web"}), "the dropped label is removed");
    assert_eq!(get("deployment/web")["spec"]["replicas"], 3);

    // A second manager setting replicas to another value conflicts with kubectl.
    let replicas_five = server.write_file("replicas.yaml", REPLICAS_FIVE);
    let other = ["apply", "--server-side", "--field-manager=other", "-f", replicas_five.as_str()];
    let conflict = server.fails(k, &other, None);
    assert!(conflict.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"), "{conflict}");
    assert_eq!(get("deployment/web")["spec"]["replicas"], 3, "a conflict changes nothing");

    // --force-conflicts takes the field over.
    server.ok(k, &[&other[..], &["--force-conflicts"]].concat());
    let deployment = get("deployment/web");
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(managed_entry(&deployment, "other", "Apply")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(managed_entry(&deployment, "kubectl", "Apply")["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    // kubectl's own manifest now conflicts with `other` on replicas.
    let conflict = server.fails(k, &["apply", "--server-side", "-f", &changed], None);
    assert!(conflict.contains("conflict with \"other\": .spec.replicas"), "{conflict}");

    // kubectl scale takes replicas through /scale; applying them again conflicts with it.
    server.ok(k, &["scale", "deployment", "web", "--replicas=7"]);
    let deployment = get("deployment/web");
    assert_eq!(deployment["spec"]["replicas"], 7);
    let scaled = managed_entry(&deployment, &scaler, "Update");
    assert_eq!(scaled["subresource"], "scale");
    assert_eq!(scaled["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&deployment, "other", "Apply").is_none(), "other owned nothing else");
    let conflict = server.fails(k, &other, None);
    let expected = format!("conflict with \"{scaler}\" with subresource \"scale\" using apps/v1: .spec.replicas");
    assert!(conflict.contains(&expected), "{conflict}");

    // A server-side dry run answers the result and stores nothing.
    let dry_run = server
        .ok(k, &[&other[..], &["--force-conflicts", "--dry-run=server", "-o", "jsonpath={.spec.replicas}"]].concat());
    assert_eq!(dry_run.trim(), "5");
    assert_eq!(get("deployment/web")["spec"]["replicas"], 7);

    // --show-managed-fields prints fieldsV1 in kube's encoding; without it kubectl hides them.
    let yaml = server.ok(k, &["get", "deployment", "web", "-o", "yaml", "--show-managed-fields"]);
    for text in [
        "fieldsType: FieldsV1",
        "f:spec:",
        "k:{\"name\":\"nginx\"}:",
        ".: {}",
        "manager: kubectl",
        "operation: Apply",
        "subresource: scale",
    ] {
        assert!(yaml.contains(text), "{text} in\n{yaml}");
    }
    let plain = server.ok(k, &["get", "deployment", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");

    // An empty managedFields entry clears them (kube's reset).
    server
        .ok(k, &["patch", "configmap", "settings", "--type", "merge", "-p", r#"{"metadata":{"managedFields":[{}]}}"#]);
    assert!(get("configmap/settings")["metadata"].get("managedFields").is_none());

    // Client-side apply still works beside it, recorded as an Update of its own manager.
    let plain_config =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: default\ndata:\n  a: \"1\"\n";
    let client_side = server.write_file("client-side.yaml", plain_config);
    assert!(server.ok(k, &["apply", "-f", &client_side]).contains("configmap/plain created"));
    let plain = get("configmap/plain");
    assert!(plain["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    let recorded = &managed_entry(&plain, "kubectl-client-side-apply", "Update")["fieldsV1"];
    assert_eq!(recorded["f:data"], json!({".": {}, "f:a": {}}), "{recorded:#}");
    let edited = server.write_file("client-side-2.yaml", &plain_config.replace("a: \"1\"", "a: \"2\""));
    assert!(server.ok(k, &["apply", "-f", &edited]).contains("configmap/plain configured"));
    assert_eq!(get("configmap/plain")["data"]["a"], "2");
    // ... and moves to server-side apply without conflicts: kubectl takes its fields over.
    let upgraded = server.write_file("client-side-3.yaml", &plain_config.replace("a: \"1\"", "a: \"3\""));
    server.ok(k, &["apply", "--server-side", "-f", &upgraded]);
    let plain = get("configmap/plain");
    assert_eq!(plain["data"]["a"], "3");
    assert_eq!(managed_entry(&plain, "kubectl", "Apply")["fieldsV1"]["f:data"], json!({"f:a": {}}));
}

#[test]
fn kubectl_1_33_server_side_apply() {
    scenario(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_server_side_apply() {
    scenario(&kubectl_binary("1.32"));
}

/// The address `keel server` wrote into its kubeconfig.
fn api_address(server: &KeelServer) -> String {
    let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let line = kubeconfig.lines().find(|line| line.trim().starts_with("server:")).unwrap();
    line.trim().trim_start_matches("server:").trim().to_string()
}

/// PATCH with curl; returns the status code and the answer.
fn patch(server: &KeelServer, path_and_query: &str, content_type: &str, body: &str) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-s", "-X", "PATCH", "-H", &format!("Content-Type: {content_type}"), "--data-binary", body])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path_and_query}", api_address(server)))
        .output()
        .expect("run curl");
    let text = String::from_utf8(output.stdout).unwrap();
    let (answer, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(answer).unwrap_or(Value::Null))
}

/// What kube-apiserver answers to apply requests it refuses, and a YAML body.
#[test]
fn apply_requests_as_kube_apiserver_checks_them() {
    let server = KeelServer::start();
    let path = "/api/v1/namespaces/default/configmaps/from-yaml";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  key: value\n";

    let (code, status) = patch(&server, path, "application/apply-patch+yaml", yaml);
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");

    let (code, status) = patch(&server, &format!("{path}?force=true"), "application/merge-patch+json", "{}");
    assert_eq!(code, 422, "{status}");
    assert!(status["message"].as_str().unwrap().contains("force: Forbidden: may not be specified for non-apply patch"));

    // A YAML body creates the object (201), and applying it again answers 200.
    let (code, created) = patch(&server, &format!("{path}?fieldManager=yaml"), "application/apply-patch+yaml", yaml);
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["data"]["key"], "value");
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "yaml");
    let (code, again) = patch(&server, &format!("{path}?fieldManager=yaml"), "application/apply-patch+yaml", yaml);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

    // A conflict is kube's Status: reason Conflict, one FieldManagerConflict cause per field.
    let changed = yaml.replace("key: value", "key: other");
    let (code, status) =
        patch(&server, &format!("{path}?fieldManager=second"), "application/apply-patch+yaml", &changed);
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["message"], "Apply failed with 1 conflict: conflict with \"yaml\": .data.key");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"yaml\"", "field": ".data.key"}])
    );

    // managedFields may not be applied; the type must be the resource's.
    let with_fields = yaml.replace("  name: from-yaml\n", "  name: from-yaml\n  managedFields: []\n");
    let (code, status) =
        patch(&server, &format!("{path}?fieldManager=yaml"), "application/apply-patch+yaml", &with_fields);
    assert_eq!((code, status["message"].as_str()), (400, Some("metadata.managedFields must be nil")));
    let (code, status) = patch(
        &server,
        &format!("{path}?fieldManager=yaml"),
        "application/apply-patch+yaml",
        &yaml.replace("kind: ConfigMap", "kind: Secret"),
    );
    assert_eq!((code, status["message"].as_str()), (400, Some("invalid object type: /v1, Kind=Secret")));
}

/// The kube crate's `Patch::Apply` with `PatchParams::apply(manager)` and `.force()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_patch_apply() {
    let server = KeelServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    let managers = |config_map: &ConfigMap| -> Vec<(String, String, Value)> {
        config_map
            .metadata
            .managed_fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                let fields = entry.fields_v1.map(|fields| fields.0).unwrap_or(Value::Null);
                (entry.manager.unwrap_or_default(), entry.operation.unwrap_or_default(), fields)
            })
            .collect()
    };
    let config =
        |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": data});

    let mine = config(json!({"owner": "mgr", "shared": "x"}));
    let created = api.patch("applied", &PatchParams::apply("mgr"), &Patch::Apply(&mine)).await.unwrap();
    assert_eq!(
        managers(&created),
        vec![("mgr".into(), "Apply".into(), json!({"f:data": {"f:owner": {}, "f:shared": {}}}))]
    );
    let again = api.patch("applied", &PatchParams::apply("mgr"), &Patch::Apply(&mine)).await.unwrap();
    assert_eq!(again.metadata.resource_version, created.metadata.resource_version, "no-op");

    // Another manager changing `owner` conflicts; forced, it takes `owner` over.
    let theirs = config(json!({"owner": "other"}));
    let error = api.patch("applied", &PatchParams::apply("other"), &Patch::Apply(&theirs)).await.unwrap_err();
    let kube::Error::Api(status) = error else { panic!("{error:?}") };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"), "{status:?}");
    assert!(status.message.contains("conflict with \"mgr\": .data.owner"), "{status:?}");
    let cause = &status.details.as_ref().unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".data.owner"));
    let forced = api.patch("applied", &PatchParams::apply("other").force(), &Patch::Apply(&theirs)).await.unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["owner"], "other");
    assert_eq!(
        managers(&forced),
        vec![
            ("mgr".into(), "Apply".into(), json!({"f:data": {"f:shared": {}}})),
            ("other".into(), "Apply".into(), json!({"f:data": {"f:owner": {}}})),
        ]
    );

    // A dry run changes nothing stored.
    let dry = api
        .patch("applied", &PatchParams::apply("mgr").dry_run(), &Patch::Apply(&config(json!({"shared": "y"}))))
        .await;
    assert_eq!(dry.unwrap().data.unwrap()["shared"], "y");
    assert_eq!(api.get("applied").await.unwrap().data.unwrap()["shared"], "x");

    // mgr dropping `shared` removes it; `owner` stays, as `other` owns it.
    let dropped = api.patch("applied", &PatchParams::apply("mgr"), &Patch::Apply(&config(json!({"kept": "y"})))).await;
    let data = dropped.unwrap().data.unwrap();
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!((data["owner"].as_str(), data["kept"].as_str()), ("other", "y"));

    // An ordinary patch through the crate is an Update of its field manager.
    let merge = PatchParams { field_manager: Some("merger".into()), ..PatchParams::default() };
    let patched = api.patch("applied", &merge, &Patch::Merge(json!({"data": {"merged": "z"}}))).await.unwrap();
    assert!(
        managers(&patched).contains(&("merger".into(), "Update".into(), json!({"f:data": {"f:merged": {}}}))),
        "{:?}",
        managers(&patched)
    );
}

/// An apply to `/status` owns status fields only, recorded with the subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_apply_to_status() {
    let server = KeelServer::start();
    let api: Api<Deployment> = Api::namespaced(server.client().await, "default");
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        // Not through the main resource: status is the status subresource's.
        "status": {"replicas": 9},
    });
    let created = api.patch("web", &PatchParams::apply("deployer"), &Patch::Apply(&deployment)).await.unwrap();
    assert!(created.status.is_none(), "{:?}", created.status);
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 4}, "status": {"replicas": 2, "readyReplicas": 1}});
    let updated = api.patch_status("web", &PatchParams::apply("controller"), &Patch::Apply(&status)).await.unwrap();
    assert_eq!(updated.status.as_ref().unwrap().ready_replicas, Some(1));
    assert_eq!(updated.spec.as_ref().unwrap().replicas, Some(2), "only status changes through /status");
    let entries = updated.metadata.managed_fields.unwrap();
    let controller = entries.iter().find(|entry| entry.manager.as_deref() == Some("controller")).unwrap();
    assert_eq!(controller.operation.as_deref(), Some("Apply"));
    assert_eq!(controller.subresource.as_deref(), Some("status"));
    assert_eq!(
        controller.fields_v1.as_ref().unwrap().0,
        json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}})
    );
    let deployer = entries.iter().find(|entry| entry.manager.as_deref() == Some("deployer")).unwrap();
    assert!(deployer.fields_v1.as_ref().unwrap().0.get("f:status").is_none());
}
