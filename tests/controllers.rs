//! The controllers inside a real `keel server`, driven by kubectl 1.33 and the kube crate:
//! namespace deletion (the apiserver marks, the namespace controller empties and finalizes),
//! creates refused in a terminating namespace, cascading deletion by the garbage collector
//! (background, foreground, orphan) with owners and dependents the tests create by hand (there
//! is no workload controller yet), and graceful pod deletion.
//!
//! Every wait polls the server's state under a deadline; nothing sleeps for a fixed time.

mod support;

use support::keel_server::{kubectl_binary, KeelServer, WAIT};

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

/// Polls `condition` until it holds; fails after [`WAIT`] with `what` and the server's log.
fn eventually(server: &KeelServer, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nserver log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn eventually_async<F: std::future::Future<Output = bool>>(
    server: &KeelServer,
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nserver log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `kubectl get KIND NAME -n NAMESPACE` finds it.
fn exists(server: &KeelServer, kubectl: &Path, kind: &str, name: &str, namespace: &str) -> bool {
    server.run_kubectl(kubectl, &["get", kind, name, "-n", namespace, "-o", "name"], None).status.success()
}

fn create(server: &KeelServer, kubectl: &Path, object: &Value) {
    server.ok_with_input(kubectl, &["create", "-f", "-"], Some(&object.to_string()));
}

const DOOMED: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: doomed
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: doomed
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: doomed
stringData:
  key: value
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: doomed
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
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: doomed
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: lonely
  namespace: doomed
spec:
  containers:
  - name: main
    image: busybox
"#;

/// `kubectl delete ns` marks the namespace Terminating, refuses new content, and completes once
/// the controller has emptied it; an object with a finalizer holds it until the finalizer goes.
#[test]
fn kubectl_delete_namespace_waits_until_it_is_empty() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");
    let manifest = server.write_file("doomed.yaml", DOOMED);
    server.ok(k, &["create", "-f", &manifest]);
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]}});
    create(&server, k, &held);

    server.ok(k, &["delete", "ns", "doomed", "--wait=false"]);
    let namespace = server.json(k, &["get", "ns", "doomed"]);
    assert_eq!(namespace["status"]["phase"], "Terminating", "{namespace}");
    assert!(namespace["metadata"]["deletionTimestamp"].is_string(), "{namespace}");
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]), "held back by configmap/held: {namespace}");
    let table = server.ok(k, &["get", "ns", "doomed"]);
    assert!(table.contains("Terminating"), "{table}");

    // NamespaceLifecycle: no new content while it terminates.
    let late = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": "doomed"}});
    let refused = server.fails(k, &["create", "-f", "-"], Some(&late.to_string()));
    assert!(
        refused.contains("configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"),
        "{refused}"
    );

    // Everything else goes; the namespace says what it waits for.
    eventually(&server, "the namespace's content but configmap/held to go", || {
        let left = server.ok(k, &["get", "pods,services,deployments,configmaps,secrets", "-n", "doomed", "-o", "name"]);
        left.trim() == "configmap/held"
    });
    eventually(&server, "the namespace conditions to name the remaining finalizer", || {
        let namespace = server.json(k, &["get", "ns", "doomed"]);
        let conditions = namespace["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let message = |kind: &str| {
            conditions.iter().find(|c| c["type"] == kind).and_then(|c| c["message"].as_str()).unwrap_or("").to_string()
        };
        message("NamespaceFinalizersRemaining").contains("example.com/hold in 1 resource instances")
            && message("NamespaceContentRemaining").contains("configmaps. has 1 resource instances")
    });
    assert!(exists(&server, k, "ns", "doomed", "default"), "held back by configmap/held");

    // The finalizer's owner lets go: the namespace goes, and kubectl's wait ends.
    server.ok(
        k,
        &["patch", "cm", "held", "-n", "doomed", "--type", "merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
    );
    let deleted = server.ok(k, &["delete", "ns", "doomed", "--timeout=60s"]);
    assert!(deleted.contains("namespace \"doomed\" deleted"), "{deleted}");
    let missing = server.fails(k, &["get", "ns", "doomed"], None);
    assert!(missing.contains("NotFound"), "{missing}");

    // A namespace with nothing holding it goes within one `kubectl delete` (which waits).
    let manifest = server.write_file("again.yaml", &DOOMED.replace("doomed", "brief"));
    server.ok(k, &["create", "-f", &manifest]);
    server.ok(k, &["delete", "ns", "brief", "--timeout=60s"]);
    assert!(!exists(&server, k, "ns", "brief", "default"));
    let left = server.ok(
        k,
        &["get", "pods,deployments,configmaps", "-A", "--field-selector", "metadata.namespace=brief", "-o", "name"],
    );
    assert_eq!(left.trim(), "");

    // The system namespaces stay.
    let refused = server.fails(k, &["delete", "ns", "kube-system"], None);
    assert!(
        refused.contains("namespaces \"kube-system\" is forbidden: this namespace may not be deleted"),
        "{refused}"
    );
}

fn replica_set(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}})
}

fn owner_reference(owner: &Value, block: bool) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": block})
}

fn owned_pod(name: &str, owner: &Value, block: bool, finalizers: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "finalizers": finalizers,
                     "ownerReferences": [owner_reference(owner, block)]},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

fn owned_config_map(name: &str, owner: &Value, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "ownerReferences": [owner_reference(owner, block)]}})
}

/// Creates a ReplicaSet and returns it as stored (with its uid).
fn create_owner(server: &KeelServer, kubectl: &Path, name: &str) -> Value {
    create(server, kubectl, &replica_set(name));
    server.json(kubectl, &["get", "rs", name])
}

/// `kubectl delete` with each `--cascade`: background (the default) deletes the owner at once
/// and its dependents after; foreground deletes the dependents first and the owner last, held
/// by a blocking dependent; orphan keeps the dependents and frees them.
#[test]
fn kubectl_cascading_deletion() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");

    // Background.
    let owner = create_owner(&server, k, "bg");
    create(&server, k, &owned_pod("bg-1", &owner, true, &[]));
    create(&server, k, &owned_pod("bg-2", &owner, false, &[]));
    create(&server, k, &owned_config_map("bg-settings", &owner, false));
    let deleted = server.ok(k, &["delete", "rs", "bg"]);
    assert!(deleted.contains("replicaset.apps \"bg\" deleted"), "{deleted}");
    eventually(&server, "the garbage collector to delete bg's dependents", || {
        !exists(&server, k, "pod", "bg-1", "default")
            && !exists(&server, k, "pod", "bg-2", "default")
            && !exists(&server, k, "cm", "bg-settings", "default")
    });

    // Foreground: kubectl waits while a blocking dependent is held by its own finalizer.
    let owner = create_owner(&server, k, "fg");
    create(&server, k, &owned_pod("fg-held", &owner, true, &["example.com/hold"]));
    create(&server, k, &owned_pod("fg-free", &owner, true, &[]));
    create(&server, k, &owned_config_map("fg-loose", &owner, false));
    let mut waiting = server
        .command(k, &["delete", "rs", "fg", "--cascade=foreground", "--timeout=120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(&server, "fg's free dependents to go first", || {
        !exists(&server, k, "pod", "fg-free", "default") && !exists(&server, k, "cm", "fg-loose", "default")
    });
    let held = server.json(k, &["get", "pod", "fg-held"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "the held dependent is being deleted: {held}");
    let owner = server.json(k, &["get", "rs", "fg"]);
    assert!(owner["metadata"]["deletionTimestamp"].is_string(), "{owner}");
    assert_eq!(owner["metadata"]["finalizers"], json!(["foregroundDeletion"]), "{owner}");
    assert!(waiting.try_wait().unwrap().is_none(), "kubectl still waits for the owner");
    server.ok(k, &["patch", "pod", "fg-held", "--type", "merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kubectl delete --cascade=foreground did not finish:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = waiting.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("replicaset.apps \"fg\" deleted"));
    assert!(!exists(&server, k, "rs", "fg", "default") && !exists(&server, k, "pod", "fg-held", "default"));

    // Orphan: once kubectl's wait ends, the dependents are free.
    let owner = create_owner(&server, k, "or");
    create(&server, k, &owned_pod("or-1", &owner, true, &[]));
    create(&server, k, &owned_config_map("or-settings", &owner, false));
    server.ok(k, &["delete", "rs", "or", "--cascade=orphan", "--timeout=60s"]);
    assert!(!exists(&server, k, "rs", "or", "default"));
    for (kind, name) in [("pod", "or-1"), ("cm", "or-settings")] {
        let orphan = server.json(k, &["get", kind, name]);
        assert!(orphan["metadata"]["ownerReferences"].is_null(), "{orphan}");
        assert!(orphan["metadata"]["deletionTimestamp"].is_null(), "{orphan}");
    }
}

fn config_map(name: &str, owners: Vec<Value>, finalizers: &[&str]) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}}))
    .unwrap()
}

fn reference_to(owner: &ConfigMap, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
           "blockOwnerDeletion": block})
}

async fn gone(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_none()
}

/// The kube crate's `DeleteParams` carry the propagation policy; what the DELETE answers, and
/// what the garbage collector then does, follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_policy_through_delete_params() {
    let server = KeelServer::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();

    // Foreground: the owner answers marked, waits for its blocking dependents, then goes.
    let owner = cms.create(&post, &config_map("fg-owner", vec![], &[])).await.unwrap();
    cms.create(&post, &config_map("fg-held", vec![reference_to(&owner, true)], &["example.com/hold"])).await.unwrap();
    cms.create(&post, &config_map("fg-free", vec![reference_to(&owner, true)], &[])).await.unwrap();
    let marked = cms.delete("fg-owner", &DeleteParams::foreground()).await.unwrap().left().expect("the marked owner");
    assert_eq!(marked.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
    assert!(marked.metadata.deletion_timestamp.is_some());
    eventually_async(&server, "fg-free to go", || gone(&cms, "fg-free")).await;
    let waiting = cms.get("fg-owner").await.unwrap();
    assert_eq!(waiting.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]), "held by fg-held");
    let release = json!({"metadata": {"finalizers": null}});
    cms.patch("fg-held", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    eventually_async(&server, "the foreground owner to go", || gone(&cms, "fg-owner")).await;
    assert!(gone(&cms, "fg-held").await);

    // Orphan: the owner answers marked; once it is gone its dependent is free.
    let owner = cms.create(&post, &config_map("or-owner", vec![], &[])).await.unwrap();
    cms.create(&post, &config_map("or-kept", vec![reference_to(&owner, true)], &[])).await.unwrap();
    let marked = cms.delete("or-owner", &DeleteParams::orphan()).await.unwrap().left().expect("the marked owner");
    assert_eq!(marked.metadata.finalizers, Some(vec!["orphan".to_string()]));
    eventually_async(&server, "the orphaning owner to go", || gone(&cms, "or-owner")).await;
    let kept = cms.get("or-kept").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty(), "the reference is removed");

    // Background: the owner goes at once (a Status answers), the dependent after.
    let owner = cms.create(&post, &config_map("bg-owner", vec![], &[])).await.unwrap();
    cms.create(&post, &config_map("bg-dependent", vec![reference_to(&owner, false)], &[])).await.unwrap();
    let answer = cms.delete("bg-owner", &DeleteParams::background()).await.unwrap();
    assert!(answer.is_right(), "a deleted configmap answers with a Status");
    assert!(gone(&cms, "bg-owner").await);
    eventually_async(&server, "the background dependent to go", || gone(&cms, "bg-dependent")).await;

    // An owner is identified by uid: a namesake with another uid does not keep a dependent.
    let namesake = cms.create(&post, &config_map("namesake", vec![], &[])).await.unwrap();
    let mut stale = reference_to(&namesake, false);
    stale["uid"] = json!("00000000-0000-4000-8000-000000000000");
    cms.create(&post, &config_map("stale-dependent", vec![stale], &[])).await.unwrap();
    eventually_async(&server, "the dependent of a vanished owner to go", || gone(&cms, "stale-dependent")).await;
    assert!(!gone(&cms, "namesake").await);

    // batch/v1 jobs orphan their dependents when no policy is given (kube-apiserver's legacy default).
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "legacy"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}))
    .unwrap();
    let job = jobs.create(&post, &job).await.unwrap();
    let job_reference = json!({"apiVersion": "batch/v1", "kind": "Job", "name": "legacy", "uid": job.metadata.uid});
    cms.create(&post, &config_map("legacy-output", vec![job_reference], &[])).await.unwrap();
    let marked = jobs.delete("legacy", &DeleteParams::default()).await.unwrap().left().expect("the marked job");
    assert_eq!(marked.metadata.finalizers, Some(vec!["orphan".to_string()]));
    eventually_async(&server, "the job to go", || async { jobs.get_opt("legacy").await.unwrap().is_none() }).await;
    let output = cms.get("legacy-output").await.unwrap();
    assert!(output.metadata.owner_references.unwrap_or_default().is_empty());
}

/// kube-apiserver's Forbidden for a create in a terminating namespace, with its cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_in_a_terminating_namespace_is_forbidden() {
    let server = KeelServer::start();
    let client = server.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "closing"}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "closing");
    cms.create(&PostParams::default(), &config_map("held", vec![], &["example.com/hold"])).await.unwrap();
    let marked = namespaces.delete("closing", &DeleteParams::default()).await.unwrap().left().expect("the namespace");
    assert_eq!(marked.status.and_then(|status| status.phase).as_deref(), Some("Terminating"));
    let error = cms.create(&PostParams::default(), &config_map("late", vec![], &[])).await.unwrap_err();
    let kube::Error::Api(status) = error else { panic!("expected an API error, got {error:?}") };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"), "{status:?}");
    assert_eq!(
        status.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace closing because it is being terminated"
    );
    let cause = &status.details.as_ref().expect("details").causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("NamespaceTerminating", "metadata.namespace"));
    assert_eq!(cause.message, "namespace closing is being terminated");
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "main", "image": "busybox"}]}}))
    .unwrap()
}

/// Graceful pod deletion: an unbound pod goes at once; a bound one waits for its node (there is
/// no node agent yet) with its grace period recorded, which a later DELETE may only shorten,
/// and `gracePeriodSeconds=0` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_pod_deletion() {
    let server = KeelServer::start();
    let pods: Api<Pod> = Api::namespaced(server.client().await, "default");
    let post = PostParams::default();
    pods.create(&post, &pod("unbound", None)).await.unwrap();
    pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none());

    pods.create(&post, &pod("bound", Some("node-1"))).await.unwrap();
    let terminating = pods.delete("bound", &DeleteParams::default()).await.unwrap().left().expect("the pod");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    let deadline = terminating.metadata.deletion_timestamp.clone().expect("a deletionTimestamp").0;
    let stored = pods.get("bound").await.unwrap();
    assert_eq!(stored.metadata.deletion_timestamp.map(|time| time.0), Some(deadline));
    let longer = DeleteParams { grace_period_seconds: Some(60), ..DeleteParams::default() };
    let unchanged = pods.delete("bound", &longer).await.unwrap().left().expect("the pod");
    assert_eq!(unchanged.metadata.deletion_grace_period_seconds, Some(30), "a period only shortens");
    let shorter = DeleteParams { grace_period_seconds: Some(10), ..DeleteParams::default() };
    let shortened = pods.delete("bound", &shorter).await.unwrap().left().expect("the pod");
    assert_eq!(shortened.metadata.deletion_grace_period_seconds, Some(10));
    let shortened_deadline = shortened.metadata.deletion_timestamp.expect("a deletionTimestamp").0;
    assert_eq!(deadline.as_second() - shortened_deadline.as_second(), 20, "the deadline moves by the difference");
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());
}

/// `--controllers=false`: the API alone, as a cluster without kube-controller-manager.
#[test]
fn without_controllers_a_deleted_namespace_stays_terminating() {
    let server = KeelServer::start_with(&["--controllers=false"]);
    let k = &kubectl_binary("1.33");
    create(&server, k, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "idle"}}));
    server.ok(k, &["delete", "ns", "idle", "--wait=false"]);
    let namespace = server.json(k, &["get", "ns", "idle"]);
    assert_eq!(namespace["status"]["phase"], "Terminating");
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]), "no controller removes it");
    // The namespace controller's last step by hand: /finalize without `kubernetes` deletes it.
    let mut finalized = namespace.clone();
    finalized["spec"]["finalizers"] = json!([]);
    server.ok_with_input(
        k,
        &["replace", "--raw", "/api/v1/namespaces/idle/finalize", "-f", "-"],
        Some(&finalized.to_string()),
    );
    assert!(!exists(&server, k, "ns", "idle", "default"));
}
