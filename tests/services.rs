//! Service cluster IPs and node ports against a real `keel server`, as kube-apiserver allocates
//! them: kubectl 1.33's generators (`create service`, `expose`), requested and duplicate values
//! with kube-apiserver's errors, type changes, releases on delete (by kubectl, and by the
//! namespace controller), concurrent creates through the kube crate, the `kubernetes` Service
//! with its Endpoints and EndpointSlice, and the flags.
//!
//! Every wait polls the server's state under a deadline; nothing sleeps for a fixed time.

mod support;

use support::keel_server::{kubectl_binary, KeelServer, TEST_ADVERTISE_ADDRESS, WAIT};

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

fn eventually(server: &KeelServer, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\nserver log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_ip(service: &Value) -> Ipv4Addr {
    service["spec"]["clusterIP"].as_str().unwrap_or_else(|| panic!("no clusterIP: {service}")).parse().unwrap()
}

fn node_port(service: &Value, index: usize) -> i64 {
    service["spec"]["ports"][index]["nodePort"].as_i64().unwrap_or_else(|| panic!("no nodePort: {service}"))
}

/// In the default 10.96.0.0/12 and outside its first 256 addresses, which are only given on
/// request.
fn assert_dynamic_ip(service: &Value) {
    let ip = u32::from(cluster_ip(service));
    let first = u32::from(Ipv4Addr::new(10, 96, 0, 1));
    let last = u32::from(Ipv4Addr::new(10, 111, 255, 254));
    assert!(ip >= first + 256 && ip <= last, "{service}");
    assert_eq!(service["spec"]["clusterIPs"], json!([service["spec"]["clusterIP"]]), "{service}");
    assert_eq!(service["spec"]["ipFamilies"], json!(["IPv4"]), "{service}");
    assert_eq!(service["spec"]["ipFamilyPolicy"], "SingleStack", "{service}");
}

/// In 30000-32767, outside its first 86 ports, which are only given on request.
fn assert_dynamic_port(port: i64) {
    assert!((30086..=32767).contains(&port), "{port}");
}

fn create(server: &KeelServer, kubectl: &Path, object: &Value) -> String {
    server.ok_with_input(kubectl, &["create", "-f", "-"], Some(&object.to_string()))
}

/// `kubectl create service` and `expose`: allocated and requested values, headless and
/// ExternalName Services, and the duplicate and out-of-range errors.
#[test]
fn kubectl_allocates_cluster_ips_and_node_ports() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");

    server.ok(k, &["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let web = server.json(k, &["get", "svc", "web"]);
    assert_dynamic_ip(&web);
    assert!(web["spec"]["ports"][0].get("nodePort").is_none(), "{web}");

    server.ok(k, &["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let np = server.json(k, &["get", "svc", "np"]);
    assert_dynamic_ip(&np);
    assert_dynamic_port(node_port(&np, 0));
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster", "{np}");
    assert_ne!(cluster_ip(&np), cluster_ip(&web));
    let table = server.ok(k, &["get", "svc", "np"]);
    assert!(table.contains(&format!("80:{}/TCP", node_port(&np, 0))), "{table}");

    // What a client asks for, it gets; twice, it is refused with kube-apiserver's words.
    server.ok(k, &["create", "service", "nodeport", "fixed", "--tcp=80:8080", "--node-port=30080"]);
    assert_eq!(node_port(&server.json(k, &["get", "svc", "fixed"]), 0), 30080);
    let taken =
        server.fails(k, &["create", "service", "nodeport", "again", "--tcp=81:8080", "--node-port=30080"], None);
    assert!(
        taken.contains("Service \"again\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"),
        "{taken}"
    );
    server.ok(k, &["create", "service", "clusterip", "pinned", "--tcp=80", "--clusterip=10.96.0.10"]);
    let pinned = server.json(k, &["get", "svc", "pinned"]);
    assert_eq!(pinned["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(pinned["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    let taken =
        server.fails(k, &["create", "service", "clusterip", "twin", "--tcp=80", "--clusterip=10.96.0.10"], None);
    assert!(
        taken.contains(
            "Service \"twin\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
        ),
        "{taken}"
    );
    let outside = server.fails(k, &["create", "service", "clusterip", "far", "--tcp=80", "--clusterip=10.0.0.5"], None);
    assert!(outside.contains("failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"), "{outside}");
    let outside = server.fails(k, &["create", "service", "nodeport", "low", "--tcp=80", "--node-port=29999"], None);
    assert!(
        outside.contains("spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{outside}"
    );
    let refused = server.run_kubectl(k, &["get", "svc", "again", "twin", "far", "low", "-o", "name"], None);
    assert!(String::from_utf8_lossy(&refused.stdout).trim().is_empty(), "nothing refused was stored");

    // A dry run shows what would be allocated and keeps nothing.
    let dry = server.ok(k, &["create", "service", "clusterip", "dry", "--tcp=80", "--dry-run=server", "-o", "json"]);
    assert_dynamic_ip(&serde_json::from_str(&dry).unwrap());
    assert!(!server.run_kubectl(k, &["get", "svc", "dry"], None).status.success());
    let dry_taken = server.fails(
        k,
        &["create", "service", "clusterip", "dry", "--tcp=80", "--clusterip=10.96.0.10", "--dry-run=server"],
        None,
    );
    assert!(dry_taken.contains("provided IP is already allocated"), "{dry_taken}");

    // Headless and ExternalName Services get no address.
    server.ok(k, &["create", "service", "clusterip", "headless", "--clusterip=None", "--tcp=80"]);
    let headless = server.json(k, &["get", "svc", "headless"]);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    server.ok(k, &["create", "service", "externalname", "ext", "--external-name", "example.com"]);
    let ext = server.json(k, &["get", "svc", "ext"]);
    assert!(ext["spec"].get("clusterIP").is_none() && ext["spec"].get("clusterIPs").is_none(), "{ext}");

    // `kubectl expose` of a deployment, as a NodePort.
    server.ok(k, &["create", "deployment", "app", "--image=nginx:1.27", "--port=80"]);
    server.ok(k, &["expose", "deployment", "app", "--type=NodePort", "--port=80"]);
    let app = server.json(k, &["get", "svc", "app"]);
    assert_dynamic_ip(&app);
    assert_dynamic_port(node_port(&app, 0));
    assert_eq!(app["spec"]["selector"], json!({"app": "app"}));

    // Every address and port differs.
    let services = server.json(k, &["get", "svc"]);
    let items = services["items"].as_array().unwrap();
    let ips: Vec<&str> =
        items.iter().filter_map(|item| item["spec"]["clusterIP"].as_str()).filter(|ip| *ip != "None").collect();
    assert_eq!(ips.len(), ips.iter().collect::<HashSet<_>>().len(), "{ips:?}");
    let ports: Vec<i64> = items
        .iter()
        .flat_map(|item| item["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|port| port["nodePort"].as_i64())
        .collect();
    assert_eq!(ports.len(), 3);
    assert_eq!(ports.len(), ports.iter().collect::<HashSet<_>>().len(), "{ports:?}");
}

/// Updates keep what was allocated, refuse a new cluster IP, and take and give up values as
/// the type changes; deletes (by kubectl or the namespace controller) give them back.
#[test]
fn updates_type_changes_and_deletes() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");
    let manifest = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}});
    create(&server, k, &manifest);
    let created = server.json(k, &["get", "svc", "web"]);
    let (ip, port) = (cluster_ip(&created), node_port(&created, 0));

    // `kubectl replace` of the original manifest, without the allocated values: they stay.
    let path = server.write_file("web.json", &manifest.to_string());
    server.ok(k, &["replace", "-f", &path]);
    let replaced = server.json(k, &["get", "svc", "web"]);
    assert_eq!((cluster_ip(&replaced), node_port(&replaced, 0)), (ip, port));
    server.ok(k, &["apply", "-f", &path]);
    assert_eq!(cluster_ip(&server.json(k, &["get", "svc", "web"])), ip);
    server.ok(k, &["apply", "--server-side", "--force-conflicts", "-f", &path]);
    let applied = server.json(k, &["get", "svc", "web"]);
    assert_eq!((cluster_ip(&applied), node_port(&applied, 0)), (ip, port));

    // The cluster IP may not change.
    let changed = server.fails(
        k,
        &[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.96.0.99","clusterIPs":["10.96.0.99"]}}"#,
        ],
        None,
    );
    assert!(
        changed.contains("spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.99\"}: may not change once set"),
        "{changed}"
    );

    // NodePort → ClusterIP gives the port up (another Service can have it); and back.
    server.ok(k, &["patch", "svc", "web", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    let cluster = server.json(k, &["get", "svc", "web"]);
    assert!(cluster["spec"]["ports"][0].get("nodePort").is_none(), "{cluster}");
    assert_eq!(cluster_ip(&cluster), ip, "the address stays");
    let port_text = port.to_string();
    server.ok(k, &["create", "service", "nodeport", "taker", "--tcp=80", &format!("--node-port={port_text}")]);
    server.ok(k, &["patch", "svc", "web", "--type=merge", "-p", r#"{"spec":{"type":"NodePort"}}"#]);
    let again = server.json(k, &["get", "svc", "web"]);
    assert_dynamic_port(node_port(&again, 0));
    assert_ne!(node_port(&again, 0), port);

    // ClusterIP ↔ ExternalName gives the address up and takes a new one.
    server.ok(
        k,
        &[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
        ],
    );
    let external = server.json(k, &["get", "svc", "web"]);
    assert!(external["spec"].get("clusterIP").is_none(), "{external}");
    assert!(external["spec"]["ports"][0].get("nodePort").is_none(), "{external}");
    let reuse = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reuse", "namespace": "default"},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"port": 80}]}});
    create(&server, k, &reuse);
    server.ok(k, &["delete", "svc", "reuse"]);
    server
        .ok(k, &["patch", "svc", "web", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","externalName":null}}"#]);
    assert_dynamic_ip(&server.json(k, &["get", "svc", "web"]));

    // Delete, then the same values again.
    let pinned = |name: &str, namespace: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.77", "ports": [{"port": 80, "nodePort": 30077}]}})
    };
    create(&server, k, &pinned("first", "default"));
    let refused = server.fails(k, &["create", "-f", "-"], Some(&pinned("second", "default").to_string()));
    assert!(refused.contains("provided IP is already allocated"), "{refused}");
    server.ok(k, &["delete", "svc", "first"]);
    create(&server, k, &pinned("second", "default"));

    // A namespace's deletion (the namespace controller deletes its Services) gives them back.
    create(&server, k, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}));
    server.ok(k, &["delete", "svc", "second"]);
    create(&server, k, &pinned("inside", "doomed"));
    server.ok(k, &["delete", "ns", "doomed", "--timeout=60s"]);
    create(&server, k, &pinned("after", "default"));
    let after = server.json(k, &["get", "svc", "after"]);
    assert_eq!((after["spec"]["clusterIP"].as_str(), node_port(&after, 0)), (Some("10.96.0.77"), 30077));
}

fn node_port_service(name: &str) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}]}}))
    .unwrap()
}

/// 50 Services created at once through the kube crate get 50 addresses and 50 node ports,
/// all different; deleted at once, their values can be had again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_get_distinct_values() {
    const SERVICES: usize = 50;
    let server = KeelServer::start();
    let services: Api<Service> = Api::namespaced(server.client().await, "default");
    let creates = (0..SERVICES).map(|index| {
        let services = services.clone();
        async move { services.create(&PostParams::default(), &node_port_service(&format!("svc-{index}"))).await }
    });
    let created: Vec<Service> = futures::future::join_all(creates).await.into_iter().map(Result::unwrap).collect();
    let values = |list: &[Service]| -> (HashSet<String>, HashSet<i32>) {
        let ips = list.iter().map(|service| service.spec.as_ref().unwrap().cluster_ip.clone().unwrap()).collect();
        let ports = list
            .iter()
            .map(|service| service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap())
            .collect();
        (ips, ports)
    };
    let (ips, ports) = values(&created);
    assert_eq!((ips.len(), ports.len()), (SERVICES, SERVICES), "{ips:?} {ports:?}");
    assert!(ports.iter().all(|port| (30086..=32767).contains(port)), "{ports:?}");
    // What the answers said is what is stored.
    let stored: Vec<Service> = services
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|service| service.metadata.name.as_deref().unwrap().starts_with("svc-"))
        .collect();
    assert_eq!(values(&stored), (ips.clone(), ports.clone()));

    let deletes = (0..SERVICES).map(|index| {
        let services = services.clone();
        async move { services.delete(&format!("svc-{index}"), &DeleteParams::default()).await }
    });
    for deleted in futures::future::join_all(deletes).await {
        deleted.unwrap();
    }
    // Each value is free again: a Service may ask for it.
    let (ip, port) = (ips.iter().next().unwrap().clone(), *ports.iter().next().unwrap());
    let pinned: Service =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pinned"},
        "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": port}]}}))
        .unwrap();
    let pinned = services.create(&PostParams::default(), &pinned).await.unwrap();
    assert_eq!(pinned.spec.unwrap().cluster_ip, Some(ip));
}

/// A range of 10 node ports and 13 free addresses: 10 concurrent creates must each retry past
/// the others' choices and still end with all 10 ports, all different; the 11th finds the range
/// full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_range_under_contention() {
    let server = KeelServer::start_with(&[
        "--service-node-port-range",
        "30000-30009",
        "--service-cluster-ip-range",
        "10.100.0.0/28",
    ]);
    let client = server.client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(kubernetes.spec.unwrap().cluster_ip.as_deref(), Some("10.100.0.1"), "the range's first address");
    let creates = (0..10).map(|index| {
        let services = services.clone();
        async move { services.create(&PostParams::default(), &node_port_service(&format!("tight-{index}"))).await }
    });
    let created: Vec<Service> = futures::future::join_all(creates).await.into_iter().map(Result::unwrap).collect();
    let mut ports: Vec<i32> = created
        .iter()
        .map(|service| service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, (30000..30010).collect::<Vec<_>>());
    let ips: HashSet<String> =
        created.iter().map(|service| service.spec.as_ref().unwrap().cluster_ip.clone().unwrap()).collect();
    assert_eq!(ips.len(), 10);
    assert!(ips.iter().all(|ip| ip.starts_with("10.100.0.") && ip != "10.100.0.1"), "{ips:?}");
    let full = services.create(&PostParams::default(), &node_port_service("one-too-many")).await.unwrap_err();
    let kube::Error::Api(status) = full else { panic!("expected an API error, got {full:?}") };
    assert_eq!(status.code, 500, "{status:?}");
    assert!(status.message.contains("failed to allocate a nodePort: range is full"), "{status:?}");
}

fn endpoint_slice_address(slice: &Value) -> &str {
    slice["endpoints"][0]["addresses"][0].as_str().unwrap_or("")
}

/// The `kubernetes` Service, its Endpoints and its EndpointSlice exist from the start with
/// `--advertise-address`, and come back when deleted or changed.
#[test]
fn the_kubernetes_service() {
    let server = KeelServer::start();
    let k = &kubectl_binary("1.33");
    let api_port = server.api_port() as i64;

    let service = server.json(k, &["get", "svc", "kubernetes", "-n", "default"]);
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.1", "{service}");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]),
        "{service}"
    );
    assert_eq!(service["metadata"]["labels"], json!({"component": "apiserver", "provider": "kubernetes"}));
    assert!(service["spec"].get("selector").is_none(), "{service}");
    let slice = server.json(k, &["get", "endpointslice", "kubernetes", "-n", "default"]);
    assert_eq!(endpoint_slice_address(&slice), TEST_ADVERTISE_ADDRESS, "{slice}");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
    assert_eq!(slice["ports"], json!([{"name": "https", "port": api_port, "protocol": "TCP"}]), "{slice}");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
    let endpoints = server.json(k, &["get", "endpoints", "kubernetes", "-n", "default"]);
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], TEST_ADVERTISE_ADDRESS, "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], api_port);

    // Deleted, it comes back (a new object, with the same address).
    let uid = service["metadata"]["uid"].clone();
    server.ok(k, &["delete", "svc", "kubernetes", "-n", "default"]);
    eventually(&server, "the kubernetes service to come back", || {
        let output = server.run_kubectl(k, &["get", "svc", "kubernetes", "-n", "default", "-o", "json"], None);
        output.status.success() && {
            let again: Value = serde_json::from_slice(&output.stdout).unwrap();
            again["metadata"]["uid"] != uid && again["spec"]["clusterIP"] == "10.96.0.1"
        }
    });
    server.ok(k, &["delete", "endpointslice", "kubernetes", "-n", "default"]);
    eventually(&server, "the kubernetes endpointslice to come back", || {
        let output =
            server.run_kubectl(k, &["get", "endpointslice", "kubernetes", "-n", "default", "-o", "json"], None);
        output.status.success()
            && endpoint_slice_address(&serde_json::from_slice(&output.stdout).unwrap()) == TEST_ADVERTISE_ADDRESS
    });

    // Changed, it is put back.
    server.ok(
        k,
        &[
            "patch",
            "endpoints",
            "kubernetes",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"subsets":[{"addresses":[{"ip":"192.0.2.99"}],"ports":[{"name":"https","port":1,"protocol":"TCP"}]}]}"#,
        ],
    );
    eventually(&server, "the kubernetes endpoints to be put back", || {
        let endpoints = server.json(k, &["get", "endpoints", "kubernetes", "-n", "default"]);
        endpoints["subsets"][0]["addresses"][0]["ip"] == TEST_ADVERTISE_ADDRESS
    });
    server.ok(
        k,
        &[
            "patch",
            "svc",
            "kubernetes",
            "-n",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/port","value":8443}]"#,
        ],
    );
    eventually(&server, "the kubernetes service's port to be put back", || {
        server.json(k, &["get", "svc", "kubernetes", "-n", "default"])["spec"]["ports"][0]["port"] == 443
    });
}

/// A different range gives the `kubernetes` Service its first address; an explicit
/// `--advertise-address` is what the endpoints list.
#[test]
fn service_range_and_advertise_address_flags() {
    let server =
        KeelServer::start_with(&["--service-cluster-ip-range", "10.200.0.0/24", "--advertise-address", "198.51.100.7"]);
    let k = &kubectl_binary("1.33");
    assert_eq!(server.json(k, &["get", "svc", "kubernetes"])["spec"]["clusterIP"], "10.200.0.1");
    assert_eq!(endpoint_slice_address(&server.json(k, &["get", "endpointslice", "kubernetes"])), "198.51.100.7");
    server.ok(k, &["create", "service", "clusterip", "web", "--tcp=80"]);
    let ip = cluster_ip(&server.json(k, &["get", "svc", "web"]));
    assert_eq!(ip.octets()[..3], [10, 200, 0], "{ip}");
    assert!(ip.octets()[3] > 16, "outside the static band: {ip}");
}

/// `keel server` refuses a loopback advertise address, and malformed ranges, at start.
#[test]
fn bad_flags_stop_the_start() {
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let client = format!("http://127.0.0.1:{}", support::free_port());
        let peer = format!("http://127.0.0.1:{}", support::free_port());
        let port = support::free_port().to_string();
        let output = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["server", "--data-dir", dir.path().to_str().unwrap(), "--listen-client-urls", &client])
            .args([
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--secure-port", &port])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success(), "keel server {extra:?} should not start");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let loopback = run(&["--advertise-address", "127.0.0.1"]);
    assert!(loopback.contains("--advertise-address 127.0.0.1 is a loopback address"), "{loopback}");
    let loopback = run(&["--advertise-address", "::1"]);
    assert!(loopback.contains("is a loopback address"), "{loopback}");
    let range = run(&["--advertise-address", "192.0.2.10", "--service-cluster-ip-range", "10.0.0.0/8"]);
    assert!(range.contains("--service-cluster-ip-range") && range.contains("the mask must be >= 12"), "{range}");
    let ports = run(&["--advertise-address", "192.0.2.10", "--service-node-port-range", "32767-30000"]);
    assert!(ports.contains("--service-node-port-range"), "{ports}");
}
