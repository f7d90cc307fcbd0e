//! Kubernetes protobuf request bodies against a real `keel server`. kubectl's generators (`create
//! configmap`, `create deployment`, ...) go through client-go's typed clients, which send
//! `application/vnd.kubernetes.protobuf` and accept JSON after it; kubectl 1.33 and 1.32 are
//! checked on what the server stored, and against the same objects sent as JSON; the answers they
//! read back are protobuf too. Then the HTTP answers to bodies a real client would not send:
//! malformed, of an unknown kind, too large.

mod support;

use support::keel_server::{kubectl_binary, KeelServer};

use std::path::Path;

use serde_json::{json, Value};

/// What two creates of the same object share: everything but identity and creation.
fn comparable(mut object: Value) -> Value {
    let meta = object["metadata"].as_object_mut().unwrap();
    for field in ["name", "uid", "resourceVersion", "creationTimestamp"] {
        meta.remove(field);
    }
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        labels.remove("kubernetes.io/metadata.name");
    }
    if object["kind"] == "Service" {
        // Each Service gets its own cluster IP.
        let spec = object["spec"].as_object_mut().unwrap();
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    if object["kind"] == "Job" {
        // The server's selector names the job's uid.
        let spec = object["spec"].as_object_mut().unwrap();
        spec.remove("selector");
        spec["template"]["metadata"].as_object_mut().unwrap().remove("labels");
    }
    object
}

/// Go's JSON of a struct writes an empty struct as `{}` and the zero time as `null` where keel's
/// stored JSON may have nothing.
fn without_empty_objects(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (key.clone(), without_empty_objects(field)))
                .filter(|(_, field)| !field.is_null() && field.as_object().is_none_or(|inner| !inner.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_empty_objects).collect()),
        other => other.clone(),
    }
}

/// Runs a generator (protobuf), and the same generator's `--dry-run=client -o json` output
/// created under `twin` with `create -f` (JSON); both objects must come out the same. Returns
/// the one the generator created.
fn check_generator(server: &KeelServer, kubectl: &Path, resource: &str, name: &str, args: &[&str]) -> Value {
    // The flags go before any `--`, after which come the container's arguments.
    let mut dry_run = args.to_vec();
    let flags_end = args.iter().position(|arg| *arg == "--").unwrap_or(args.len());
    dry_run.splice(flags_end..flags_end, ["--dry-run=client", "-o", "json"]);
    let printed = server.ok(kubectl, &dry_run);
    let mut manifest: Value =
        serde_json::from_str(&printed).unwrap_or_else(|error| panic!("{dry_run:?}: {error}: {printed}"));
    let twin = format!("{name}-json");
    manifest["metadata"]["name"] = json!(twin);
    server.ok_with_input(kubectl, &["create", "-f", "-"], Some(&manifest.to_string()));
    let created = server.ok(kubectl, args);
    assert!(created.contains("created"), "{args:?}: {created}");
    let from_protobuf = server.json(kubectl, &["get", resource, name]);
    let from_json = server.json(kubectl, &["get", resource, &twin]);
    assert_eq!(comparable(from_protobuf.clone()), comparable(from_json), "{args:?}");
    from_protobuf
}

fn generators(kubectl: &Path) {
    let server = KeelServer::start();
    let k = kubectl;

    // The generators do send protobuf: otherwise this test would prove nothing.
    let verbose = server.run_kubectl(k, &["create", "configmap", "probe", "-v=8"], None);
    let trace = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "{trace}");
    assert!(trace.contains("Content-Type: application/vnd.kubernetes.protobuf"), "{trace}");
    // And they read protobuf answers: the server's answer is protobuf, and what kubectl prints
    // from it (`-o json` of the decoded Go object) is what a JSON GET reads.
    let answer = trace.find("Response").map(|at| &trace[at..]).unwrap_or("");
    assert!(answer.contains("Content-Type: application/vnd.kubernetes.protobuf"), "{trace}");
    for (resource, name, args) in [
        ("configmap", "printed", &["create", "configmap", "printed", "--from-literal=a=b", "-o", "json"][..]),
        ("deployment", "printed", &["create", "deployment", "printed", "--image=nginx", "--port=80", "-o", "json"][..]),
        ("secret", "printed", &["create", "secret", "generic", "printed", "--from-literal=p=q", "-o", "json"][..]),
    ] {
        let printed: Value = serde_json::from_str(&server.ok(k, args)).unwrap();
        let read = server.json(k, &["get", resource, name]);
        assert_eq!(without_empty_objects(&printed), without_empty_objects(&read), "{args:?}");
    }
    // typed GETs and LISTs (describe's) read protobuf too.
    let verbose = server.run_kubectl(k, &["describe", "configmap", "printed", "-v=8"], None);
    let trace = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "{trace}");
    assert!(String::from_utf8_lossy(&verbose.stdout).contains("printed"));
    let answers = trace.matches("Content-Type: application/vnd.kubernetes.protobuf").count();
    assert!(answers >= 2, "a protobuf GET and event LIST: {trace}");

    let namespace = check_generator(&server, k, "namespace", "gen", &["create", "namespace", "gen"]);
    assert_eq!(namespace["status"]["phase"], "Active");
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));

    let configmap = check_generator(
        &server,
        k,
        "configmap",
        "settings",
        &["create", "configmap", "settings", "--from-literal=a=b", "--from-literal=empty="],
    );
    assert_eq!(configmap["data"], json!({"a": "b", "empty": ""}));

    let secret =
        check_generator(&server, k, "secret", "token", &["create", "secret", "generic", "token", "--from-literal=p=q"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(server.ok(k, &["get", "secret", "token", "-o", "jsonpath={.data.p}"]), "cQ==", "base64 of q");
    check_generator(
        &server,
        k,
        "secret",
        "registry",
        &[
            "create",
            "secret",
            "docker-registry",
            "registry",
            "--docker-server=r",
            "--docker-username=u",
            "--docker-password=p",
        ],
    );

    let deployment = check_generator(
        &server,
        k,
        "deployment",
        "web",
        &["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=8080"],
    );
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["selector"]["matchLabels"], json!({"app": "web"}));
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%", "an IntOrString default");
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["ports"], json!([{"containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(container["resources"], json!({}));
    assert_eq!(deployment["metadata"]["generation"], 1);
    // replicas is a pointer: an explicit 0 is kept, not defaulted to 1.
    let idle = check_generator(
        &server,
        k,
        "deployment",
        "idle",
        &["create", "deployment", "idle", "--image=nginx", "--replicas=0"],
    );
    assert_eq!(idle["spec"]["replicas"], 0);

    let job =
        check_generator(&server, k, "job", "once", &["create", "job", "once", "--image=busybox", "--", "echo", "hi"]);
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"], json!(["echo", "hi"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let service = check_generator(
        &server,
        k,
        "service",
        "front",
        &["create", "service", "clusterip", "front", "--tcp=80:8080", "--tcp=443:https"],
    );
    let ports = &service["spec"]["ports"];
    assert_eq!(ports[0]["targetPort"], 8080, "an IntOrString number");
    assert_eq!(ports[1]["targetPort"], "https", "an IntOrString name");
    check_generator(&server, k, "serviceaccount", "robot", &["create", "serviceaccount", "robot"]);

    // `run`, `expose` and `scale` send JSON; they work with what the generators created.
    server.ok(k, &["run", "sleeper", "--image=busybox", "--restart=Never", "--command", "--", "sleep", "1"]);
    let pod = server.json(k, &["get", "pod", "sleeper"]);
    assert_eq!(pod["spec"]["containers"][0]["command"], json!(["sleep", "1"]));
    server.ok(k, &["expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=web"]);
    let exposed = server.json(k, &["get", "service", "web"]);
    assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(exposed["spec"]["selector"], json!({"app": "web"}));
    server.ok(k, &["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(server.json(k, &["get", "deployment", "web"])["spec"]["replicas"], 3);

    // The server's errors come back through the protobuf path as they do through JSON.
    let exists = server.fails(k, &["create", "configmap", "settings"], None);
    assert!(exists.contains("configmaps \"settings\" already exists"), "{exists}");
    let invalid = server.fails(k, &["create", "configmap", "Bad_Name"], None);
    assert!(invalid.contains("is invalid") && invalid.contains("metadata.name"), "{invalid}");
    let missing = server.fails(k, &["create", "configmap", "lost", "-n", "nowhere"], None);
    assert!(missing.contains("namespaces \"nowhere\" not found"), "{missing}");
    // A dry run stores nothing.
    server.ok(k, &["create", "configmap", "dry", "--dry-run=server"]);
    server.fails(k, &["get", "configmap", "dry"], None);
    // A subresource keel does not serve is a 404 whatever the body.
    let token = server.fails(k, &["create", "token", "robot"], None);
    assert!(token.contains("could not find the requested resource") || token.contains("NotFound"), "{token}");

    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn kubectl_1_33_generators_send_protobuf() {
    generators(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_generators_send_protobuf() {
    generators(&kubectl_binary("1.32"));
}

/// One length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    assert!(number < 16 && bytes.len() < 128, "a short field");
    let mut encoded = vec![(number << 3) | 2, bytes.len() as u8];
    encoded.extend_from_slice(bytes);
    encoded
}

/// A Kubernetes protobuf body: the magic, then the envelope around `raw`.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
}

/// One HTTP/1.1 request on its own connection; the status and the body as text.
fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let answer = support::raw_http::request(address, method, path, headers, body);
    (answer.code, String::from_utf8_lossy(&answer.body).into_owned())
}

#[test]
fn protobuf_bodies_over_http() {
    let server = KeelServer::start();
    let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let url = kubeconfig.lines().find_map(|line| line.trim().strip_prefix("server: ")).unwrap();
    let address = url.trim_start_matches("http://").to_string();
    let protobuf = [("Content-Type", "application/vnd.kubernetes.protobuf"), ("Accept", "application/json")];
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let status_of = |body: &str| -> Value { serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}")) };

    // A ConfigMap {metadata: {name: raw}, data: {k: v}}, answered in JSON.
    let raw = [field(1, &field(1, b"raw")), field(2, &[field(1, b"k"), field(2, b"v")].concat())].concat();
    let (code, body) = request(&address, "POST", configmaps, &protobuf, &envelope("v1", "ConfigMap", &raw));
    assert_eq!(code, 201, "{body}");
    let created = status_of(&body);
    assert_eq!((created["metadata"]["name"].clone(), created["data"].clone()), (json!("raw"), json!({"k": "v"})));

    // PUT replaces it; DELETE takes protobuf DeleteOptions (a wrong precondition: Conflict).
    let replaced = [field(1, &field(1, b"raw")), field(2, &[field(1, b"k"), field(2, b"w")].concat())].concat();
    let (code, body) =
        request(&address, "PUT", &format!("{configmaps}/raw"), &protobuf, &envelope("v1", "ConfigMap", &replaced));
    assert_eq!((code, status_of(&body)["data"]["k"].clone()), (200, json!("w")), "{body}");
    let options = field(2, &field(1, b"not-the-uid"));
    let (code, body) = request(
        &address,
        "DELETE",
        &format!("{configmaps}/raw"),
        &protobuf,
        &envelope("v1", "DeleteOptions", &options),
    );
    assert_eq!((code, status_of(&body)["reason"].clone()), (409, json!("Conflict")), "{body}");

    // Malformed: 400 with a Status.
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("no magic", b"{\"kind\":\"ConfigMap\"}".to_vec(), "expected prefix"),
        ("truncated", envelope("v1", "ConfigMap", &raw)[..20].to_vec(), "unexpected end"),
        ("unknown kind", envelope("v1", "Bogus", &raw), "no kind \"Bogus\" is registered"),
        ("wrong wire type", envelope("v1", "ConfigMap", &[0x08, 0x01]), "wrong wire type"),
    ];
    for (case, body, message) in cases {
        let (code, answer) = request(&address, "POST", configmaps, &protobuf, &body);
        let status = status_of(&answer);
        assert_eq!((code, status["reason"].clone()), (400, json!("BadRequest")), "{case}: {answer}");
        assert!(status["message"].as_str().unwrap().contains(message), "{case}: {answer}");
    }
    // Over the body limit (3 MiB): 413, as for JSON.
    let huge = vec![0u8; 4 * 1024 * 1024];
    let (code, answer) = request(&address, "POST", configmaps, &protobuf, &huge);
    assert_eq!(code, 413, "{answer}");
    // A path keel does not serve is a 404 before any decoding.
    let (code, _) = request(
        &address,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        &protobuf,
        &envelope("authentication.k8s.io/v1", "TokenRequest", &[]),
    );
    assert_eq!(code, 404);

    // Answers are protobuf when the client prefers it, client-go's typed clients as one that takes
    // protobuf only (`protobuf_responses.rs` compares them with the JSON answers).
    for accept in ["application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf,application/json"] {
        let (code, answer) = request(&address, "GET", configmaps, &[("Accept", accept)], b"");
        assert_eq!(code, 200, "{accept}: {answer}");
        assert!(answer.starts_with("k8s\0"), "{accept}: {answer}");
    }

    assert!(!server.log().contains("panicked"), "{}", server.log());
}
