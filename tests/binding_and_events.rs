//! `pods/binding` (what a scheduler posts) and events served both as core/v1 and as
//! events.k8s.io/v1, against a real `keel server`, with the kube crate and kubectl 1.33
//! (`kubectl create --raw`, `kubectl events`, `kubectl get events.events.k8s.io`).

mod support;

use support::keel_server::{kubectl_binary, KeelServer};

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}}))
    .unwrap()
}

fn binding(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

async fn bind(pods: &Api<Pod>, name: &str, binding: &Value) -> kube::Result<Value> {
    pods.create_subresource("binding", name, &PostParams::default(), binding).await
}

fn api_error(result: kube::Result<Value>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A binding assigns an unbound pod to its node, once: binding it again, to another node or
/// the same, is 409 Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_assigns_a_pod_once() {
    let server = KeelServer::start();
    let pods: Api<Pod> = Api::namespaced(server.client().await, "default");
    let created = pods.create(&PostParams::default(), &pod("web")).await.unwrap();

    let mut first = binding("web", "node-1");
    first["metadata"]["annotations"] = json!({"example.com/placed-by": "test"});
    let answer = bind(&pods, "web", &first).await.unwrap();
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["status"], "Success");
    let bound = pods.get("web").await.unwrap();
    assert_eq!(bound.spec.as_ref().unwrap().node_name.as_deref(), Some("node-1"));
    assert_eq!(bound.metadata.annotations.as_ref().unwrap()["example.com/placed-by"], "test");
    let conditions = bound.status.as_ref().unwrap().conditions.clone().unwrap_or_default();
    let scheduled = conditions.iter().find(|condition| condition.type_ == "PodScheduled").expect("PodScheduled");
    assert_eq!(scheduled.status, "True");
    assert!(scheduled.last_transition_time.is_some());
    assert_eq!(bound.metadata.uid, created.metadata.uid);

    for node in ["node-2", "node-1"] {
        let status = api_error(bind(&pods, "web", &binding("web", node)).await);
        assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"), "{status:?}");
        assert_eq!(
            status.message,
            "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"node-1\""
        );
    }
    assert_eq!(pods.get("web").await.unwrap().spec.unwrap().node_name.as_deref(), Some("node-1"));

    // Preconditions, a missing pod, a malformed binding.
    pods.create(&PostParams::default(), &pod("other")).await.unwrap();
    let mut stale = binding("other", "node-1");
    stale["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000000");
    let status = api_error(bind(&pods, "other", &stale).await);
    assert_eq!(status.code, 409, "{status:?}");
    assert!(status.message.contains("Precondition failed: UID in precondition"), "{status:?}");
    let status = api_error(bind(&pods, "nope", &binding("nope", "node-1")).await);
    assert_eq!((status.code, status.message.as_str()), (404, "pods \"nope\" not found"));
    let status = api_error(bind(&pods, "other", &binding("web", "node-1")).await);
    assert_eq!((status.code, status.message.as_str()), (400, "name in URL does not match name in Binding object"));
    let status = api_error(bind(&pods, "other", &json!({"metadata": {"name": "other"}, "target": {}})).await);
    assert_eq!(
        (status.code, status.message.as_str()),
        (422, "Binding \"other\" is invalid: target.name: Required value")
    );
    assert!(pods.get("other").await.unwrap().spec.unwrap().node_name.is_none(), "nothing refused was written");
}

/// kubectl posts a Binding as a scheduler would; discovery lists the subresource.
#[test]
fn kubectl_posts_a_binding() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");
    server.ok(k, &["run", "sleeper", "--image=busybox", "--restart=Never"]);
    let path = server.write_file("binding.json", &binding("sleeper", "node-7").to_string());
    server.ok(k, &["create", "--raw", "/api/v1/namespaces/default/pods/sleeper/binding", "-f", &path]);
    let pod = server.json(k, &["get", "pod", "sleeper"]);
    assert_eq!(pod["spec"]["nodeName"], "node-7");
    let wide = server.ok(k, &["get", "pod", "sleeper", "-o", "wide"]);
    assert!(wide.contains("node-7"), "{wide}");
    let again =
        server.fails(k, &["create", "--raw", "/api/v1/namespaces/default/pods/sleeper/binding", "-f", &path], None);
    assert!(
        again.contains("pod sleeper is already assigned to node \\\"node-7\\\"") || again.contains("already assigned"),
        "{again}"
    );
    let resources: Value = serde_json::from_str(&server.ok(k, &["get", "--raw", "/api/v1"])).unwrap();
    let entry =
        resources["resources"].as_array().unwrap().iter().find(|entry| entry["name"] == "pods/binding").unwrap();
    assert_eq!((entry["kind"].as_str(), entry["verbs"].clone()), (Some("Binding"), json!(["create"])));
}

/// Now, to the second, as client-go writes metav1.Time.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An event written through either API is read through both, converted; `kubectl events`
/// lists them; events.k8s.io/v1 writes get its strict validation.
#[test]
fn events_through_both_apis() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");
    let time = now();
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.pulled", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Pulled", "message": "Container image pulled", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": time, "lastTimestamp": time, "count": 2});
    server.ok_with_input(k, &["create", "-f", "-"], Some(&core.to_string()));
    let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.scheduled", "namespace": "default"},
        "eventTime": format!("{}.000000Z", time.trim_end_matches('Z')), "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-keel", "action": "Binding", "reason": "Scheduled", "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default"},
        "note": "Successfully assigned default/web to node-1"});
    server.ok_with_input(k, &["create", "-f", "-"], Some(&new.to_string()));

    // The core event as events.k8s.io/v1.
    let converted = server.json(k, &["get", "events.events.k8s.io", "web.pulled"]);
    assert_eq!(converted["apiVersion"], "events.k8s.io/v1");
    assert_eq!(converted["note"], "Container image pulled");
    assert_eq!(converted["regarding"]["name"], "web");
    assert_eq!(converted["deprecatedSource"], json!({"component": "kubelet", "host": "node-1"}));
    assert_eq!(converted["deprecatedCount"], 2);
    assert!(converted.get("message").is_none() && converted.get("involvedObject").is_none(), "{converted}");
    // The events.k8s.io event as core/v1.
    let legacy = server.json(k, &["get", "events", "web.scheduled"]);
    assert_eq!(legacy["apiVersion"], "v1");
    assert_eq!(legacy["message"], "Successfully assigned default/web to node-1");
    assert_eq!(legacy["involvedObject"]["name"], "web");
    assert_eq!(legacy["reportingComponent"], "default-scheduler");
    assert_eq!(legacy["action"], "Binding");
    assert_eq!(
        converted["metadata"]["resourceVersion"],
        server.json(k, &["get", "events", "web.pulled"])["metadata"]["resourceVersion"]
    );

    // Both lists hold both.
    for resource in ["events", "events.events.k8s.io"] {
        let names = server.ok(k, &["get", resource, "-o", "name"]);
        assert_eq!(names.lines().count(), 2, "{resource}: {names}");
    }
    let table = server.ok(k, &["get", "events.events.k8s.io"]);
    for cell in ["LAST SEEN", "REASON", "OBJECT", "pod/web", "Scheduled", "Successfully assigned default/web to node-1"]
    {
        assert!(table.contains(cell), "{table}");
    }
    let by_reason = server.ok(k, &["get", "events.events.k8s.io", "--field-selector", "reason=Pulled", "-o", "name"]);
    assert_eq!(by_reason.trim(), "event.events.k8s.io/web.pulled");

    // kubectl events, all and for one object.
    let listed = server.ok(k, &["events"]);
    for cell in ["Pulled", "Container image pulled", "(x2 over", "Scheduled", "Pod/web"] {
        assert!(listed.contains(cell), "{listed}");
    }
    let for_pod = server.ok(k, &["events", "--for", "pod/web"]);
    assert!(for_pod.contains("Pulled") && for_pod.contains("Scheduled"), "{for_pod}");
    let for_other = server.run_kubectl(k, &["events", "--for", "pod/other"], None);
    assert!(!String::from_utf8_lossy(&for_other.stdout).contains("Pulled"));

    // events.k8s.io/v1 writes must be "new" events; core/v1 ones need not.
    let mut bare = new.clone();
    bare["metadata"]["name"] = json!("bare");
    bare.as_object_mut().unwrap().remove("eventTime");
    bare.as_object_mut().unwrap().remove("action");
    let refused = server.fails(k, &["create", "-f", "-"], Some(&bare.to_string()));
    assert!(refused.contains("Event \"bare\" is invalid: eventTime: Required value"), "{refused}");
    let mut changed = server.json(k, &["get", "events.events.k8s.io", "web.scheduled"]);
    changed["note"] = json!("rewritten");
    let immutable = server.fails(k, &["replace", "-f", "-"], Some(&changed.to_string()));
    assert!(immutable.contains("field is immutable"), "{immutable}");

    // Deleted through one API, gone from both.
    server.ok(k, &["delete", "events.events.k8s.io", "web.pulled"]);
    assert!(!server.run_kubectl(k, &["get", "events", "web.pulled"], None).status.success());
}
