//! `keel server --etcd-servers`: the Kubernetes API over a real etcd 3.4 (Debian's etcd-server,
//! started here on free loopback ports), through the kube crate and kubectl: CRUD, conflicts,
//! pages, watch resume, consistent LISTs that see writes made behind the apiserver's back,
//! compaction (410) and an unreachable etcd (503).

mod support;

use support::keel_server::{kubectl_binary, KeelServer, WAIT};
use support::{etcdctl, free_port};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Api;

/// One etcd member on free loopback ports, in its own directory; stopped by PID when dropped.
struct Etcd {
    child: Option<Child>,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let peer_url = format!("http://127.0.0.1:{}", free_port());
            let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
            let child = Command::new("etcd")
                .args(["--name", "apiserver-test", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("apiserver-test={peer_url}")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd is installed by scripts/setup");
            let mut etcd = Etcd { child: Some(child), endpoint: client_url, _dir: dir };
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if etcd.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    break; // A port was taken between the pick and the bind: try others.
                }
                if etcdctl(&etcd.endpoint, &["endpoint", "health"], "").status.success() {
                    return etcd;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("etcd did not become healthy");
    }

    fn ctl(&self, args: &[&str]) -> String {
        let output = etcdctl(&self.endpoint, args, "");
        assert!(output.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn revision(&self) -> i64 {
        let status: serde_json::Value = serde_json::from_str(&self.ctl(&["endpoint", "status", "-w", "json"])).unwrap();
        status[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            support::terminate(child, WAIT);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_over(etcd: &Etcd) -> KeelServer {
    KeelServer::start_with(&["--etcd-servers", &etcd.endpoint, "--controllers=false"])
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"step": "created"},
    }))
    .unwrap()
}

fn status_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

fn names(list: &kube::api::ObjectList<ConfigMap>) -> Vec<String> {
    list.items.iter().map(|item| item.metadata.name.clone().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_conflicts_are_stored_in_etcd() {
    let etcd = Etcd::start();
    let server = start_over(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");

    let created = api.create(&PostParams::default(), &config_map("a")).await.unwrap();
    let revision: i64 = created.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(revision > 0 && revision <= etcd.revision(), "resourceVersion {revision} is an etcd revision");
    let stored = etcd.ctl(&["get", "/registry/configmaps/default/a", "--print-value-only"]);
    assert!(stored.contains("\"step\":\"created\""), "the object is in etcd: {stored}");

    assert_eq!(status_code(api.create(&PostParams::default(), &config_map("a")).await.unwrap_err()), 409);
    let mut updated = created.clone();
    updated.data = Some([("step".to_string(), "updated".to_string())].into());
    let updated = api.replace("a", &PostParams::default(), &updated).await.unwrap();
    assert_eq!(updated.data.as_ref().unwrap()["step"], "updated");
    // The first version's resourceVersion is stale now: 409 Conflict.
    let mut stale = created.clone();
    stale.data = Some([("step".to_string(), "stale".to_string())].into());
    assert_eq!(status_code(api.replace("a", &PostParams::default(), &stale).await.unwrap_err()), 409);
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["step"], "updated");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(api.get("a").await.unwrap_err()), 404);
    assert_eq!(status_code(api.delete("a", &DeleteParams::default()).await.unwrap_err()), 404);
    assert!(etcd.ctl(&["get", "/registry/configmaps/default/a"]).is_empty(), "deleted from etcd");

    // kubectl too, end to end.
    let kubectl = kubectl_binary("1.33");
    server.ok(&kubectl, &["create", "configmap", "from-kubectl", "--from-literal=k=v"]);
    let listed = server.json(&kubectl, &["get", "configmaps"]);
    let listed: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|item| item["metadata"]["name"].as_str().unwrap()).collect();
    assert!(listed.contains(&"from-kubectl"), "{listed:?}");
    let conflict = server.fails(&kubectl, &["create", "configmap", "from-kubectl"], None);
    assert!(conflict.contains("already exists"), "{conflict}");
    server.ok(&kubectl, &["delete", "configmap", "from-kubectl"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_list_sees_every_write_made_before_it() {
    let etcd = Etcd::start();
    let server = start_over(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    for index in 0..20 {
        let name = format!("through-api-{index}");
        api.create(&PostParams::default(), &config_map(&name)).await.unwrap();
        let list = api.list(&ListParams::default()).await.unwrap();
        assert!(names(&list).contains(&name), "a LIST right after the create sees it");
        // Written behind the apiserver's back: only etcd knows it when the LIST arrives.
        let behind = format!("behind-{index}");
        let value = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{behind}","namespace":"default"}}}}"#
        );
        etcd.ctl(&["put", &format!("/registry/configmaps/default/{behind}"), &value]);
        let list = api.list(&ListParams::default()).await.unwrap();
        assert!(names(&list).contains(&behind), "a LIST right after an etcd put sees it: {:?}", names(&list));
        let list_revision: i64 = list.metadata.resource_version.unwrap().parse().unwrap();
        assert!(list_revision >= etcd.revision() - 1, "the LIST is at etcd's revision");
    }
    // A LIST not older than a revision at which only another resource changed: the configmaps
    // feed never reports reaching it, so the apiserver reads etcd rather than timing out.
    etcd.ctl(&["put", "/registry/secrets/default/elsewhere", r#"{"apiVersion":"v1","kind":"Secret"}"#]);
    let wanted = etcd.revision();
    let list = api.list(&ListParams::default().at(&wanted.to_string())).await.unwrap();
    let list_revision: i64 = list.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(list_revision >= wanted, "a NotOlderThan LIST at {wanted} answered at {list_revision}");
    assert_eq!(names(&list).len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_continue_tokens_and_expire_after_compaction() {
    let etcd = Etcd::start();
    let server = start_over(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "paging");
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "paging"}});
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(server.client().await);
    namespaces.create(&PostParams::default(), &serde_json::from_value(namespace).unwrap()).await.unwrap();
    for index in 0..5 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{index}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut revisions = Vec::new();
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(names(&page));
        revisions.push(page.metadata.resource_version.clone().unwrap());
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = ListParams::default().limit(2).continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen, (0..5).map(|index| format!("cm-{index}")).collect::<Vec<_>>());
    assert_eq!(revisions.len(), 3);
    assert!(revisions.iter().all(|revision| *revision == revisions[0]), "every page at one revision: {revisions:?}");

    // A token whose revision etcd compacted away: 410 Expired.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    api.create(&PostParams::default(), &config_map("after-the-first-page")).await.unwrap();
    etcd.ctl(&["compact", &etcd.revision().to_string()]);
    let expired = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
    assert_eq!(status_code(expired), 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_a_resource_version() {
    let etcd = Etcd::start();
    let server = start_over(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    let first = api.create(&PostParams::default(), &config_map("first")).await.unwrap();
    let from = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &config_map("second")).await.unwrap();
    let mut changed = api.get("first").await.unwrap();
    changed.data = Some([("step".to_string(), "changed".to_string())].into());
    api.replace("first", &PostParams::default(), &changed).await.unwrap();
    api.delete("second", &DeleteParams::default()).await.unwrap();

    let mut stream = api.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    let mut events = Vec::new();
    while events.len() < 3 {
        let event = tokio::time::timeout(WAIT, stream.next()).await.expect("an event").unwrap().unwrap();
        events.push(match event {
            WatchEvent::Added(cm) => format!("ADDED {}", cm.metadata.name.unwrap()),
            WatchEvent::Modified(cm) => format!("MODIFIED {}", cm.metadata.name.unwrap()),
            WatchEvent::Deleted(cm) => format!("DELETED {}", cm.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(events, ["ADDED second", "MODIFIED first", "DELETED second"]);
    // And it goes on with a change made behind the apiserver's back.
    let value = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"third","namespace":"default"}}"#;
    etcd.ctl(&["put", "/registry/configmaps/default/third", value]);
    match tokio::time::timeout(WAIT, stream.next()).await.expect("an event").unwrap().unwrap() {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.unwrap(), "third"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_503_and_keel_serves_no_etcd_port_of_its_own() {
    let mut etcd = Etcd::start();
    let server = start_over(&etcd);
    // kube retries a 503 fifteen times with backoff by default: see the first one.
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    config.default_retry = false;
    let api: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    api.create(&PostParams::default(), &config_map("before")).await.unwrap();
    let own_client_url = server_flag(&server, "--listen-client-urls");
    let own_port = own_client_url.rsplit(':').next().unwrap();
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{own_port}")).is_err(),
        "keel's own etcd API is off over --etcd-servers"
    );
    etcd.stop();
    assert_eq!(status_code(api.get("before").await.unwrap_err()), 503);
    assert_eq!(status_code(api.create(&PostParams::default(), &config_map("after")).await.unwrap_err()), 503);
}

/// A flag the harness gave the server, read back from its command line in /proc.
fn server_flag(server: &KeelServer, flag: &str) -> String {
    let pid = server.pid();
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> =
        command_line.split(|byte| *byte == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
    let index = args.iter().position(|arg| arg == flag).unwrap_or_else(|| panic!("{flag} not given"));
    args[index + 1].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_run_over_etcd() {
    let etcd = Etcd::start();
    let server = KeelServer::start_with(&["--etcd-servers", &etcd.endpoint]);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(server.client().await);
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    namespaces.create(&PostParams::default(), &serde_json::from_value(namespace).unwrap()).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    // Only the namespace controller removes the finalizer that keeps it Terminating.
    let deadline = Instant::now() + WAIT;
    while namespaces.get_opt("doomed").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the namespace was never finalized:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_starts_with_what_etcd_holds() {
    let etcd = Etcd::start();
    let server = start_over(&etcd);
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    api.create(&PostParams::default(), &config_map("through-api")).await.unwrap();
    let value = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"behind","namespace":"default"}}"#;
    etcd.ctl(&["put", "/registry/configmaps/default/behind", value]);
    // sendInitialEvents with resourceVersion unset: a consistent read of the initial state.
    let mut stream = api.watch(&WatchParams::streaming_lists(), "").await.unwrap().boxed();
    let mut added = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.next()).await.expect("an event").unwrap().unwrap() {
            WatchEvent::Added(cm) => added.push(cm.metadata.name.unwrap()),
            WatchEvent::Bookmark(bookmark) => {
                assert!(bookmark.metadata.annotations.contains_key("k8s.io/initial-events-end"));
                let revision: i64 = bookmark.metadata.resource_version.parse().unwrap();
                assert!(revision >= etcd.revision(), "the initial state is at etcd's revision");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    added.sort();
    assert_eq!(added, ["behind", "through-api"]);
}
