//! Three real `keel server` processes as one cluster (`--initial-cluster`, as `keel store`
//! members take it), each serving the Kubernetes API over its own replica: consistent reads and
//! watches across members, writes through followers, the store leader's SIGKILL and the killed
//! member's catch-up; and the controller-manager's Lease: one holder runs the controllers, a
//! new holder takes over after the holder's SIGKILL (or a stopped holder steps down, or a
//! terminated one releases it), a holder cut off from the quorum stops its controllers once its
//! renew deadline passes, and a namespace deletion completes on the new holder.
//!
//! Every wait polls under a deadline; nothing asserts on elapsed time.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use serde_json::json;

use support::free_port;

/// Generous bound for a failover (an election, then a lease duration of 15 s) or a start.
const WAIT: Duration = Duration::from_secs(90);
/// The test servers' `--advertise-address` (TEST-NET-1: valid, not loopback, never reached).
const ADVERTISE_ADDRESS: &str = "192.0.2.10";
const LEASE_NAMESPACE: &str = "kube-system";
const LEASE_NAME: &str = "kube-controller-manager";

/// One `keel server` member: its ports, directory and process.
struct Member {
    name: String,
    data_dir: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    client_port: u16,
    peer_port: u16,
    api_port: u16,
    process: Option<Child>,
}

impl Member {
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn has_exited(&mut self) -> bool {
        self.process.as_mut().is_none_or(|child| child.try_wait().unwrap().is_some())
    }
}

struct ServerCluster {
    members: Vec<Member>,
    token: String,
    _dir: tempfile::TempDir,
}

impl ServerCluster {
    /// Starts `size` members as a new cluster and waits until each has written its kubeconfig.
    /// Ports are picked free; if a parallel test takes one first, the cluster starts again.
    fn start(size: usize) -> ServerCluster {
        for _ in 0..5 {
            let mut cluster = ServerCluster::configure(size);
            let initial_cluster = cluster.initial_cluster();
            for index in 0..size {
                cluster.spawn(index, &initial_cluster);
            }
            match cluster.wait_until_up() {
                Ok(()) => return cluster,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("the cluster did not start:\n{log}"),
            }
        }
        panic!("the cluster did not find free ports in 5 attempts");
    }

    fn configure(size: usize) -> ServerCluster {
        let dir = tempfile::tempdir().unwrap();
        let members = (1..=size)
            .map(|index| {
                let name = format!("n{index}");
                Member {
                    data_dir: dir.path().join(&name),
                    kubeconfig: dir.path().join(format!("{name}.kubeconfig")),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    peer_port: free_port(),
                    api_port: free_port(),
                    process: None,
                }
            })
            .collect();
        ServerCluster { members, token: format!("server-cluster-{}", free_port()), _dir: dir }
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|member| format!("{}={}", member.name, member.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, index: usize, initial_cluster: &str) {
        let member = &self.members[index];
        let _ = std::fs::remove_file(&member.kubeconfig);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["server", "--name", &member.name, "--data-dir"])
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client_url(), "--advertise-client-urls", &member.client_url()])
            .args(["--listen-peer-urls", &member.peer_url(), "--initial-advertise-peer-urls", &member.peer_url()])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--secure-port", &member.api_port.to_string(), "--advertise-address", ADVERTISE_ADDRESS])
            .arg("--write-kubeconfig")
            .arg(&member.kubeconfig)
            // The controllers' log lines say which member leads and when its loops stop.
            .env("KEEL_LOG", "warn,controllers=info")
            .env_remove("FAILPOINTS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keel server");
        self.members[index].process = Some(child);
    }

    /// Waits for every running member's kubeconfig; answers the logs if one exits first.
    fn wait_until_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        for index in 0..self.members.len() {
            if self.members[index].process.is_none() {
                continue;
            }
            while !self.members[index].kubeconfig.exists() {
                if self.members[index].has_exited() {
                    return Err(self.logs());
                }
                assert!(Instant::now() < deadline, "{} did not start:\n{}", self.members[index].name, self.logs());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// SIGKILL by PID.
    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM by PID; waits for the exit.
    fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        self.signal(index, "TERM");
        let mut child = self.members[index].process.take().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit on SIGTERM", self.members[index].name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, index: usize, name: &str) {
        let pid = self.members[index].process.as_ref().expect("a running member").id();
        let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Starts a killed member again from its data directory, with its first flags.
    fn restart(&mut self, index: usize) {
        assert!(self.members[index].process.is_none(), "{} is running", self.members[index].name);
        let initial_cluster = self.initial_cluster();
        self.spawn(index, &initial_cluster);
        if let Err(log) = self.wait_until_up() {
            panic!("{} did not restart:\n{log}", self.members[index].name);
        }
    }

    async fn client(&self, index: usize) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(&self.members[index].kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn config_maps(&self, index: usize) -> Api<ConfigMap> {
        Api::namespaced(self.client(index).await, "default")
    }

    /// The store leader's index, once the running members agree on one other than `former`.
    async fn store_leader(&self, former: Option<usize>) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut answers = Vec::new();
            for (index, member) in self.members.iter().enumerate() {
                if member.process.is_none() {
                    continue;
                }
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_millis(500))
                    .with_timeout(Duration::from_secs(2));
                let status = match etcd_client::Client::connect([member.client_url()], Some(options)).await {
                    Ok(mut client) => client.status().await.ok(),
                    Err(_) => None,
                };
                if let Some(status) = status {
                    answers.push((index, status.header().unwrap().member_id(), status.leader()));
                }
            }
            let running = self.members.iter().filter(|member| member.process.is_some()).count();
            if answers.len() == running && answers.iter().all(|answer| answer.2 != 0 && answer.2 == answers[0].2) {
                if let Some((index, _, _)) = answers.iter().find(|answer| answer.1 == answer.2) {
                    if Some(*index) != former {
                        return *index;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed store leader: {answers:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The controller-manager's Lease as member `index` serves it, once it names a holder
    /// that `accept` takes.
    async fn lease_holder(&self, index: usize, accept: impl Fn(&str) -> bool) -> Lease {
        let leases: Api<Lease> = Api::namespaced(self.client(index).await, LEASE_NAMESPACE);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(lease)) = leases.get_opt(LEASE_NAME).await {
                let holder = lease.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref()).unwrap_or("");
                if !holder.is_empty() && accept(holder) {
                    return lease;
                }
            }
            assert!(Instant::now() < deadline, "no acceptable holder of the lease\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The member whose name `holder` (`name_uuid`) starts with.
    fn member_named_by(&self, holder: &str) -> usize {
        let (name, _) = holder.split_once('_').unwrap_or_else(|| panic!("holder {holder:?} is not name_uuid"));
        self.members.iter().position(|member| member.name == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The members whose log says they have started leading, `times` or more often.
    fn members_that_led(&self, times: usize) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].log().matches("acquired the controllers' lease").count() >= times)
            .collect()
    }

    /// How many times any member has started leading.
    fn terms_led(&self) -> usize {
        self.members.iter().map(|member| member.log().matches("acquired the controllers' lease").count()).sum()
    }

    fn logs(&self) -> String {
        self.members.iter().map(|member| format!("--- {}:\n{}", member.name, member.log())).collect()
    }
}

impl Drop for ServerCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].process.is_some() {
                self.signal(index, "CONT");
            }
            self.kill(index);
        }
    }
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"written": name}})).unwrap()
}

fn names(list: &kube::core::ObjectList<ConfigMap>) -> Vec<String> {
    list.items.iter().filter_map(|item| item.metadata.name.clone()).collect()
}

/// Creates `name` through member `index`, retrying while the member answers errors (after a
/// leader's death, until a new one is elected); panics after [`WAIT`].
async fn create_eventually(cluster: &ServerCluster, index: usize, name: &str) {
    let config_maps = cluster.config_maps(index).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match config_maps.create(&PostParams::default(), &config_map(name)).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "{name} through n{}: {error}\n{}", index + 1, cluster.logs())
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_serve_one_kubernetes_api_and_survive_the_store_leader() {
    let mut cluster = ServerCluster::start(3);
    let leader = cluster.store_leader(None).await;
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();

    // Each member's kubeconfig names its own API.
    for member in &cluster.members {
        let kubeconfig = std::fs::read_to_string(&member.kubeconfig).unwrap();
        assert!(
            kubeconfig.contains(&format!("server: http://127.0.0.1:{}\n", member.api_port)),
            "{}'s kubeconfig does not point at its API:\n{kubeconfig}",
            member.name
        );
    }

    // A watch through a follower, from the revision of a consistent list there.
    let watched = cluster.config_maps(followers[0]).await;
    let start = watched.list(&ListParams::default()).await.unwrap();
    let from = start.metadata.resource_version.clone().unwrap();
    let mut events = watched.watch(&WatchParams::default().timeout(60), &from).await.unwrap().boxed();

    // Written through the leader: a consistent list through each follower sees it at once.
    cluster.config_maps(leader).await.create(&PostParams::default(), &config_map("through-leader")).await.unwrap();
    for follower in &followers {
        let listed = cluster.config_maps(*follower).await.list(&ListParams::default()).await.unwrap();
        assert!(names(&listed).contains(&"through-leader".to_string()), "n{}: {:?}", follower + 1, names(&listed));
    }

    // Written through a follower: forwarded to the leader, visible everywhere at once; updates
    // through a follower are conditional on the resourceVersion as anywhere.
    let through_follower = cluster.config_maps(followers[1]).await;
    let created = through_follower.create(&PostParams::default(), &config_map("through-follower")).await.unwrap();
    for index in 0..3 {
        let listed = cluster.config_maps(index).await.list(&ListParams::default()).await.unwrap();
        assert!(names(&listed).contains(&"through-follower".to_string()), "n{}: {:?}", index + 1, names(&listed));
    }
    let mut changed = created.clone();
    changed.data = Some([("written".to_string(), "again".to_string())].into());
    let updated = through_follower.replace("through-follower", &PostParams::default(), &changed).await.unwrap();
    assert_ne!(updated.metadata.resource_version, created.metadata.resource_version);
    let stale = through_follower.replace("through-follower", &PostParams::default(), &changed).await.unwrap_err();
    assert!(matches!(&stale, kube::Error::Api(status) if status.code == 409), "stale update: {stale}");
    let read = cluster.config_maps(leader).await.get("through-follower").await.unwrap();
    assert_eq!(read.data.unwrap()["written"], "again");

    // The follower's watch saw the writes made through the other members, in order.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(WAIT, events.try_next()).await.expect("watch events").unwrap();
        match event.expect("the watch ended early") {
            WatchEvent::Added(object) => seen.push(("ADDED", object.metadata.name.unwrap())),
            WatchEvent::Modified(object) => seen.push(("MODIFIED", object.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected watch event {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "through-leader".to_string()),
            ("ADDED", "through-follower".to_string()),
            ("MODIFIED", "through-follower".to_string())
        ]
    );

    // SIGKILL of the store leader: the two others keep serving the API, writes included.
    cluster.kill(leader);
    let new_leader = cluster.store_leader(Some(leader)).await;
    assert!(followers.contains(&new_leader));
    for (index, name) in followers.iter().zip(["after-kill-a", "after-kill-b"]) {
        create_eventually(&cluster, *index, name).await;
    }
    for index in &followers {
        let listed = cluster.config_maps(*index).await.list(&ListParams::default()).await.unwrap();
        for name in ["after-kill-a", "after-kill-b"] {
            assert!(names(&listed).contains(&name.to_string()), "n{}: {:?}", index + 1, names(&listed));
        }
    }

    // The killed member comes back and catches up: its consistent list has what it missed.
    cluster.restart(leader);
    let restarted = cluster.config_maps(leader).await;
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(listed) = restarted.list(&ListParams::default()).await {
            let listed = names(&listed);
            if ["through-leader", "through-follower", "after-kill-a", "after-kill-b"]
                .iter()
                .all(|name| listed.contains(&name.to_string()))
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the restarted member did not catch up\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it takes writes again, which the others see.
    create_eventually(&cluster, leader, "after-restart").await;
    let listed = cluster.config_maps(followers[0]).await.list(&ListParams::default()).await.unwrap();
    assert!(names(&listed).contains(&"after-restart".to_string()));

    // The kubernetes Service's endpoints name the store leader's API (the reconcile loop's
    // periodic round moves them there after a failover), and stay put: the members do not
    // fight over them.
    let store_leader = cluster.store_leader(None).await;
    let endpoints: Api<Endpoints> = Api::namespaced(cluster.client(store_leader).await, "default");
    let leader_port = i32::from(cluster.members[store_leader].api_port);
    let endpoints_port = |endpoints: &Endpoints| {
        endpoints.subsets.as_ref().and_then(|subsets| subsets.first()?.ports.as_ref()?.first().map(|port| port.port))
    };
    let deadline = Instant::now() + WAIT;
    let settled = loop {
        let current = endpoints.get("kubernetes").await.unwrap();
        if endpoints_port(&current) == Some(leader_port) {
            break current;
        }
        assert!(Instant::now() < deadline, "the endpoints never named the leader's API: {current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for round in 0..20 {
        create_eventually(&cluster, round % 3, &format!("churn-{round}")).await;
    }
    let later = endpoints.get("kubernetes").await.unwrap();
    assert_eq!(later.metadata.resource_version, settled.metadata.resource_version, "the endpoints keep changing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_runs_the_controllers_and_another_takes_over() {
    let mut cluster = ServerCluster::start(3);

    // One holder, named by member and a unique id, with kube-controller-manager's durations.
    let lease = cluster.lease_holder(0, |_| true).await;
    let spec = lease.spec.clone().unwrap();
    let holder = spec.holder_identity.clone().unwrap();
    let holding = cluster.member_named_by(&holder);
    assert_eq!(spec.lease_duration_seconds, Some(15));
    // Renewed by updates: the renewTime moves while the holder stays.
    let deadline = Instant::now() + WAIT;
    let renewed = loop {
        let seen = cluster.lease_holder(1, |_| true).await;
        if seen.spec.as_ref().unwrap().renew_time != spec.renew_time {
            break seen;
        }
        assert!(Instant::now() < deadline, "the lease is not renewed\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(renewed.spec.as_ref().unwrap().holder_identity.as_deref(), Some(holder.as_str()));
    assert_eq!(cluster.members_that_led(1), [holding], "only the holder leads\n{}", cluster.logs());
    assert!(cluster.members[holding].log().contains(&holder), "the holder logs its identity");

    // SIGKILL of the holder's process: a survivor takes the Lease once it expires.
    cluster.kill(holding);
    let survivor = (0..3).find(|index| *index != holding).unwrap();
    let taken = cluster.lease_holder(survivor, |seen| seen != holder).await;
    let new_holder = taken.spec.as_ref().unwrap().holder_identity.clone().unwrap();
    let new_holding = cluster.member_named_by(&new_holder);
    assert_ne!(new_holding, holding);
    assert!(
        taken.spec.as_ref().unwrap().lease_transitions > spec.lease_transitions,
        "the transition is counted: {taken:?}"
    );
    let leaders: Vec<usize> = cluster.members_that_led(1).into_iter().filter(|index| *index != holding).collect();
    assert_eq!(leaders, [new_holding], "only the new holder leads\n{}", cluster.logs());

    // The controllers run on the new holder: a namespace deletion completes.
    let namespaces: Api<Namespace> = Api::all(cluster.client(survivor).await);
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    let contents: Api<ConfigMap> = Api::namespaced(cluster.client(survivor).await, "doomed");
    contents.create(&PostParams::default(), &config_map("settings")).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while namespaces.get_opt("doomed").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the namespace was not deleted after failover\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A holder that stops (SIGSTOP, as a long pause would) loses the Lease to another member
    // and, once resumed, sees it lost and stops leading.
    cluster.restart(holding);
    cluster.signal(new_holding, "STOP");
    let third = (0..3).find(|index| *index != new_holding).unwrap();
    let retaken = cluster.lease_holder(third, |seen| seen != new_holder).await;
    let third_holder = retaken.spec.as_ref().unwrap().holder_identity.clone().unwrap();
    assert_ne!(cluster.member_named_by(&third_holder), new_holding);
    cluster.signal(new_holding, "CONT");
    let deadline = Instant::now() + WAIT;
    while !cluster.members[new_holding].log().contains("lost the controllers' lease") {
        assert!(Instant::now() < deadline, "the paused holder did not step down\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lease = cluster.lease_holder(new_holding, |_| true).await;
    assert_eq!(lease.spec.unwrap().holder_identity, Some(third_holder.clone()));

    // SIGTERM: the holder stops its controllers and releases the Lease before it exits, and
    // another member takes it.
    let third_holding = cluster.member_named_by(&third_holder);
    let status = cluster.terminate(third_holding);
    assert!(status.success(), "SIGTERM exit: {status}\n{}", cluster.logs());
    assert!(cluster.members[third_holding].log().contains("released the controllers' lease"), "{}", cluster.logs());
    let other = (0..3).find(|index| *index != third_holding).unwrap();
    cluster.lease_holder(other, |seen| seen != third_holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_the_quorum_stops_its_controllers() {
    let cluster = ServerCluster::start(3);
    let lease = cluster.lease_holder(0, |_| true).await;
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let holding = cluster.member_named_by(&holder);
    let others: Vec<usize> = (0..3).filter(|index| *index != holding).collect();
    let stopped_before = cluster.members[holding].log().matches("controllers stopped").count();

    // With the two other members stopped, the holder's API can neither read nor write the
    // Lease: renewing fails until the renew deadline, and the controllers stop.
    for index in &others {
        cluster.signal(*index, "STOP");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let log = cluster.members[holding].log();
        if log.contains("lost the controllers' lease") && log.matches("controllers stopped").count() > stopped_before {
            break;
        }
        assert!(Instant::now() < deadline, "the cut-off holder kept leading\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for index in &others {
        cluster.signal(*index, "CONT");
    }

    // Once the quorum is back, a holder leads again (the same member may take its Lease back).
    let deadline = Instant::now() + WAIT;
    while cluster.terms_led() < 2 {
        assert!(Instant::now() < deadline, "nobody leads after the quorum came back\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
