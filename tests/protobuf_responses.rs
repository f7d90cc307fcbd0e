//! Kubernetes protobuf answers of a real `keel server`, as client-go negotiates them (`Accept:
//! application/vnd.kubernetes.protobuf,application/json`): each answer is decoded and compared
//! with the JSON answer to the same request. GET, LIST (pages with their continue token), the
//! writes, `/scale`, errors (a protobuf Status), Tables (JSON only, as kube-apiserver serves
//! them), and watches, whose length-prefixed frames must carry the events of the JSON watch.
//! kubectl's typed clients reading these answers are in `kubectl_protobuf.rs`.

mod support;

use apiserver::protobuf_to_json;
use serde_json::{json, Value};
use support::keel_server::{kubectl_binary, KeelServer};
use support::raw_http::{request, PROTOBUF};

const CLIENT_GO: &str = "application/vnd.kubernetes.protobuf,application/json";

/// What both forms carry: Go's structs have no "absent" struct (an empty one is `{}`), and the
/// protobuf decoder leaves out a zero scalar of a non-pointer field even where Go's JSON writes it
/// (`Scale.status.replicas: 0`). So empty objects are left out, and a zero scalar on one side
/// matches its absence on the other.
fn comparable(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (key.clone(), comparable(field)))
                .filter(|(_, field)| field.as_object().is_none_or(|inner| !inner.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

fn is_zero_scalar(value: &Value) -> bool {
    matches!(value, Value::Bool(false)) || value.as_i64() == Some(0) || value.as_str() == Some("")
}

/// Asserts that `from_protobuf` is `from_json` (see [`comparable`]).
fn assert_same(from_protobuf: &Value, from_json: &Value, context: &str) {
    fn walk(protobuf: &Value, json: &Value, at: &str, context: &str) {
        match (protobuf, json) {
            (Value::Object(left), Value::Object(right)) => {
                for key in left.keys().chain(right.keys()) {
                    match (left.get(key), right.get(key)) {
                        (Some(l), Some(r)) => walk(l, r, &format!("{at}.{key}"), context),
                        (Some(only), None) | (None, Some(only)) => {
                            assert!(is_zero_scalar(only), "{context}: {at}.{key} is {only} on one side only")
                        }
                        (None, None) => unreachable!(),
                    }
                }
            }
            (Value::Array(left), Value::Array(right)) => {
                assert_eq!(left.len(), right.len(), "{context}: {at}");
                for (index, (l, r)) in left.iter().zip(right).enumerate() {
                    walk(l, r, &format!("{at}[{index}]"), context);
                }
            }
            (left, right) => assert_eq!(left, right, "{context}: {at}"),
        }
    }
    walk(&comparable(from_protobuf), &comparable(from_json), "", context);
}

fn without_item_types(mut list: Value) -> Value {
    for item in list.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
        let fields = item.as_object_mut().unwrap();
        fields.remove("kind");
        fields.remove("apiVersion");
    }
    list
}

/// GET `path` in JSON and in protobuf: the same object.
fn check_get(address: &str, path: &str) -> Value {
    let from_json = request(address, "GET", path, &[("Accept", "application/json")], b"").json();
    let answer = request(address, "GET", path, &[("Accept", CLIENT_GO)], b"");
    assert_eq!(answer.code, 200, "{path}");
    let from_protobuf = answer.protobuf();
    assert_same(&without_item_types(from_protobuf.clone()), &without_item_types(from_json), path);
    from_protobuf
}

/// The events of a watch stream: JSON lines, or protobuf frames (a 4-byte big-endian length, a
/// WatchEvent {1: type, 2: RawExtension {1: raw}}, raw being an enveloped object).
fn json_events(body: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            (event["type"].as_str().unwrap().to_string(), event["object"].clone())
        })
        .collect()
}

fn protobuf_events(mut body: &[u8]) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while !body.is_empty() {
        let length = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        let event = &body[4..4 + length];
        body = &body[4 + length..];
        let fields = message_fields(event);
        assert_eq!(fields.iter().map(|(number, _)| *number).collect::<Vec<_>>(), [1, 2], "type, then object");
        let raw_extension = message_fields(fields[1].1);
        assert_eq!(raw_extension.len(), 1);
        let object = protobuf_to_json(raw_extension[0].1).unwrap();
        events.push((String::from_utf8(fields[0].1.to_vec()).unwrap(), object));
    }
    events
}

/// The length-delimited fields of a message, in order (the watch event has no others).
fn message_fields(mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = bytes[0];
        assert_eq!(key & 7, 2, "a length-delimited field");
        let (mut length, mut used) = (0usize, 1);
        loop {
            let byte = bytes[used];
            length |= usize::from(byte & 0x7f) << (7 * (used - 1));
            used += 1;
            if byte < 0x80 {
                break;
            }
        }
        fields.push((key >> 3, &bytes[used..used + length]));
        bytes = &bytes[used + length..];
    }
    fields
}

fn check_watch(address: &str, path: &str) -> Vec<(String, Value)> {
    let from_json = request(address, "GET", path, &[("Accept", "application/json")], b"");
    let answer = request(address, "GET", path, &[("Accept", CLIENT_GO)], b"");
    assert_eq!((answer.code, answer.content_type.as_str()), (200, "application/vnd.kubernetes.protobuf;stream=watch"));
    let (from_json, from_protobuf) = (json_events(&from_json.body), protobuf_events(&answer.body));
    assert_eq!(from_json.len(), from_protobuf.len(), "{path}");
    for ((json_type, json_object), (protobuf_type, protobuf_object)) in from_json.iter().zip(&from_protobuf) {
        assert_eq!(json_type, protobuf_type, "{path}");
        assert_same(protobuf_object, json_object, &format!("{path}: {json_type}"));
    }
    from_protobuf
}

#[test]
fn protobuf_answers_match_json_answers() {
    // Without controllers nothing changes an object between the two reads being compared.
    let server = KeelServer::start_with(&["--controllers=false"]);
    let k = &kubectl_binary("1.33");
    let address = format!("127.0.0.1:{}", server.api_port());
    let address = address.as_str();
    server.ok(k, &["create", "namespace", "pb"]);
    server.ok(k, &["create", "deployment", "web", "-n", "pb", "--image=nginx", "--replicas=2", "--port=80"]);
    server.ok(k, &["create", "secret", "generic", "token", "-n", "pb", "--from-literal=p=q"]);
    for name in ["a", "b", "c"] {
        server.ok(k, &["create", "configmap", name, "-n", "pb", "--from-literal=k=v"]);
    }
    server.ok(k, &["run", "sleeper", "-n", "pb", "--image=busybox", "--labels=app=sleeper"]);
    let start = server.json(k, &["get", "configmap", "c", "-n", "pb"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // GET of each kind, /scale included.
    let deployment = check_get(address, "/apis/apps/v1/namespaces/pb/deployments/web");
    assert_eq!((deployment["kind"].as_str(), deployment["spec"]["replicas"].as_i64()), (Some("Deployment"), Some(2)));
    let secret = check_get(address, "/api/v1/namespaces/pb/secrets/token");
    assert_eq!(secret["data"]["p"], "cQ==");
    check_get(address, "/api/v1/namespaces/pb/pods/sleeper");
    check_get(address, "/api/v1/namespaces/pb");
    let scale = check_get(address, "/apis/apps/v1/namespaces/pb/deployments/web/scale");
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(2)));

    // LIST: whole, and in pages whose continue token and resourceVersion come through.
    let list = check_get(address, "/api/v1/namespaces/pb/configmaps");
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "a, b and c: {list}");
    let page = check_get(address, "/api/v1/namespaces/pb/configmaps?limit=2");
    let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
    assert!(page["metadata"]["resourceVersion"].as_str().is_some_and(|version| !version.is_empty()));
    let rest = check_get(address, &format!("/api/v1/namespaces/pb/configmaps?limit=2&continue={token}"));
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["metadata"].get("continue").is_none(), "{rest}");
    check_get(address, "/apis/apps/v1/deployments?labelSelector=app%3Dweb");
    check_get(address, "/api/v1/pods?fieldSelector=metadata.name%3Dsleeper");

    // Errors come back as a protobuf Status; one that cannot be negotiated (406) in JSON.
    let missing = request(address, "GET", "/api/v1/namespaces/pb/configmaps/none", &[("Accept", CLIENT_GO)], b"");
    let status = missing.protobuf();
    assert_eq!(
        (missing.code, status["kind"].as_str(), status["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    let from_json =
        request(address, "GET", "/api/v1/namespaces/pb/configmaps/none", &[("Accept", "application/json")], b"").json();
    assert_same(&status, &from_json, "a 404");
    let unknown = request(address, "GET", "/api/v1/namespaces/pb/widgets", &[("Accept", PROTOBUF)], b"");
    assert_eq!((unknown.code, unknown.protobuf()["reason"].as_str()), (404, Some("NotFound")));
    let table_only = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io";
    let refused = request(address, "GET", "/api/v1/namespaces/pb/configmaps", &[("Accept", table_only)], b"");
    assert_eq!((refused.code, refused.json()["reason"].as_str()), (406, Some("NotAcceptable")));
    // A Table has no protobuf form: the JSON Table after it is served, as kube-apiserver does.
    let table = request(
        address,
        "GET",
        "/api/v1/namespaces/pb/configmaps",
        &[("Accept", &format!("{table_only},application/json;as=Table;v=v1;g=meta.k8s.io"))],
        b"",
    );
    assert_eq!(table.json()["kind"], "Table");
    // Preferences: a lower quality for protobuf means JSON.
    let preferred = request(
        address,
        "GET",
        "/api/v1/namespaces/pb/configmaps/a",
        &[("Accept", "application/vnd.kubernetes.protobuf;q=0.5,application/json")],
        b"",
    );
    assert_eq!(preferred.json()["metadata"]["name"], "a");

    // Writes: create, update, patch and delete answer in protobuf what a JSON GET then reads.
    let configmap = |name: &str, value: &str| {
        serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}}),
        )
        .unwrap()
    };
    let json_body = [("Accept", CLIENT_GO), ("Content-Type", "application/json")];
    let path = "/api/v1/namespaces/pb/configmaps";
    let created = request(address, "POST", path, &json_body, &configmap("w", "1"));
    assert_eq!(created.code, 201);
    let read =
        |name: &str| request(address, "GET", &format!("{path}/{name}"), &[("Accept", "application/json")], b"").json();
    assert_same(&created.protobuf(), &read("w"), "created");
    let updated = request(address, "PUT", &format!("{path}/w"), &json_body, &configmap("w", "2"));
    assert_eq!((updated.code, updated.protobuf()["data"]["k"].as_str()), (200, Some("2")));
    assert_same(&updated.protobuf(), &read("w"), "updated");
    let patched = request(
        address,
        "PATCH",
        &format!("{path}/w"),
        &[("Accept", CLIENT_GO), ("Content-Type", "application/merge-patch+json")],
        br#"{"data":{"k":"3"}}"#,
    );
    assert_same(&patched.protobuf(), &read("w"), "patched");
    let conflict = request(address, "POST", path, &json_body, &configmap("w", "4"));
    let status = conflict.protobuf();
    assert_eq!((conflict.code, status["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(status["details"], json!({"name": "w", "kind": "configmaps"}));
    let deleted = request(address, "DELETE", &format!("{path}/w"), &[("Accept", CLIENT_GO)], b"");
    let deleted = deleted.protobuf();
    assert!(matches!(deleted["kind"].as_str(), Some("Status" | "ConfigMap")), "{deleted}");
    let invalid = request(address, "POST", path, &json_body, &configmap("Bad_Name", "1"));
    let status = invalid.protobuf();
    assert_eq!((invalid.code, status["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let scaled = request(
        address,
        "PATCH",
        "/apis/apps/v1/namespaces/pb/deployments/web/scale",
        &[("Accept", CLIENT_GO), ("Content-Type", "application/merge-patch+json")],
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(scaled.protobuf()["spec"]["replicas"], 3);
    let collection =
        request(address, "DELETE", &format!("{path}?labelSelector=none%3Dnone"), &[("Accept", CLIENT_GO)], b"");
    assert_eq!(collection.protobuf()["kind"], "ConfigMapList");

    // Watches: from a revision (ADDED, MODIFIED, DELETED after it), and with the initial state and
    // its closing bookmark; each frame is the event the JSON watch has.
    let events = check_watch(
        address,
        &format!("/api/v1/namespaces/pb/configmaps?watch=true&resourceVersion={start}&timeoutSeconds=1"),
    );
    let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "MODIFIED", "DELETED"], "w's life");
    assert!(events.iter().all(|(_, object)| object["kind"] == "ConfigMap" && object["metadata"]["name"] == "w"));
    let events = check_watch(
        address,
        "/api/v1/namespaces/pb/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    );
    let (last_type, bookmark) = events.last().unwrap();
    assert_eq!(last_type, "BOOKMARK");
    assert_eq!(bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(events.len(), 4, "a, b, c and the bookmark");
    check_watch(address, "/apis/apps/v1/namespaces/pb/deployments?watch=true&resourceVersion=0&timeoutSeconds=1");

    // A JSON create answers with the bytes it stored plus the resourceVersion, spliced in: the
    // object exactly as a GET then reads it, and as encoding the decoded answer writes it.
    let json_only = [("Accept", "application/json"), ("Content-Type", "application/json")];
    let created = request(address, "POST", "/api/v1/namespaces/default/configmaps", &json_only, &configmap("j", "1"));
    assert_eq!(created.code, 201, "{}", String::from_utf8_lossy(&created.body));
    let read_back =
        request(address, "GET", "/api/v1/namespaces/default/configmaps/j", &[("Accept", "application/json")], b"");
    assert_eq!(String::from_utf8_lossy(&created.body), String::from_utf8_lossy(&read_back.body));
    assert_eq!(created.body, serde_json::to_vec(&created.json()).unwrap());
    assert!(created.json()["metadata"]["resourceVersion"].as_str().is_some_and(|version| !version.is_empty()));
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
