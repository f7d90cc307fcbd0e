//! A cluster of real `keel store` processes on loopback ports, for the multi-process tests:
//! start, SIGKILL, SIGSTOP/SIGCONT, restart, add and remove members, and etcd-client
//! connections to each member. Every process is stopped by its PID when the cluster drops.
//! `keel_server` is the same for one `keel server` and the Kubernetes API clients.

#![allow(dead_code)]

pub mod keel_server;
pub mod raw_http;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};

/// A loopback port no other test holds (`jepsen::ports`).
pub fn free_port() -> u16 {
    jepsen::ports::claim().unwrap()
}

/// Runs Debian's etcdctl 3.4 (API v3) against `endpoint` with `input` on standard input.
pub fn etcdctl(endpoint: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "10s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed by scripts/setup");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Stops a process by SIGTERM and waits for it; SIGKILL if it has not exited within `wait`.
pub fn terminate(mut child: Child, wait: Duration) {
    signal(&child, "TERM");
    let deadline = Instant::now() + wait;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

/// One member: its flags, and its process while it runs.
pub struct Node {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub id: u64,
    process: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
    token: String,
    /// Extra flags for every member (e.g. a small --snapshot-count).
    pub extra_args: Vec<String>,
}

/// Generous bound for anything a healthy cluster does in well under a second.
pub const WAIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts `size` members as a new cluster and waits until they agree on a leader.
    pub async fn start(size: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=size)
            .map(|index| {
                let name = format!("n{index}");
                Node {
                    data_dir: dir.path().join(&name),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    peer_port: free_port(),
                    id: 0,
                    process: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            dir,
            token: format!("test-{}", free_port()),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        let initial = cluster.initial_cluster();
        for index in 0..size {
            cluster.spawn(index, &initial, "new", &[]);
        }
        cluster.wait_for_leader().await;
        for index in 0..size {
            let status = cluster.status(index).await;
            let status = status.unwrap_or_else(|error| panic!("n{}: {error}\n{}", index + 1, cluster.logs()));
            cluster.nodes[index].id = status.header().unwrap().member_id();
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.nodes.iter().map(|node| format!("{}={}", node.name, node.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, index: usize, initial_cluster: &str, state: &str, env: &[(&str, &str)]) {
        let node = &self.nodes[index];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .args(["store", "--name", &node.name, "--data-dir"])
            .arg(&node.data_dir)
            .args(["--listen-client-urls", &format!("http://{}", node.endpoint())])
            .args(["--advertise-client-urls", &format!("http://{}", node.endpoint())])
            .args(["--listen-peer-urls", &node.peer_url(), "--initial-advertise-peer-urls", &node.peer_url()])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.extra_args)
            .env_remove("FAILPOINTS")
            // keel's own start and stop steps, for the log a failed test prints.
            .env("KEEL_LOG", std::env::var("KEEL_LOG").unwrap_or_else(|_| "warn,keel=info".into()))
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start keel store");
        self.nodes[index].process = Some(child);
    }

    /// Restarts a stopped member from its data dir (its flags as at first start).
    pub fn restart(&mut self, index: usize) {
        self.restart_with_env(index, &[]);
    }

    pub fn restart_with_env(&mut self, index: usize, env: &[(&str, &str)]) {
        assert!(!self.nodes[index].is_running(), "{} is still running", self.nodes[index].name);
        let initial = self.initial_cluster();
        self.spawn(index, &initial, "new", env);
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].process.take() {
            signal(&child, "TERM");
            let deadline = Instant::now() + WAIT;
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "{} did not stop on SIGTERM", self.nodes[index].name);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn pause(&self, index: usize) {
        signal(self.nodes[index].process.as_ref().unwrap(), "STOP");
    }

    pub fn resume(&self, index: usize) {
        signal(self.nodes[index].process.as_ref().unwrap(), "CONT");
    }

    /// Adds a member with `etcdctl member add` semantics (through the etcd API) and starts it
    /// with `--initial-cluster-state existing`; returns its index.
    pub async fn add_member(&mut self, learner: bool) -> usize {
        let index = self.nodes.len();
        let name = format!("n{}", index + 1);
        let node = Node {
            data_dir: self.dir.path().join(&name),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            client_port: free_port(),
            peer_port: free_port(),
            id: 0,
            process: None,
        };
        let peer_url = node.peer_url();
        self.nodes.push(node);
        let mut client = self.any_client().await;
        let options = etcd_client::MemberAddOptions::new();
        let options = if learner { options.with_is_learner() } else { options };
        let added = client.member_add([peer_url.as_str()], Some(options)).await.unwrap();
        self.nodes[index].id = added.member().unwrap().id();
        let initial = self.initial_cluster();
        self.spawn(index, &initial, "existing", &[]);
        index
    }

    /// Removes a member from a running cluster and wipes its data dir; its index stays, unused.
    pub async fn remove_member(&mut self, index: usize) {
        let id = self.nodes[index].id;
        let mut client = self.any_client_except(Some(index)).await;
        client.member_remove(id).await.unwrap();
    }

    /// Puts a member back under a fresh data dir with the same name and peer URL.
    pub async fn replace_member(&mut self, index: usize) {
        self.kill(index);
        std::fs::remove_dir_all(&self.nodes[index].data_dir).unwrap();
        let peer_url = self.nodes[index].peer_url();
        let mut client = self.any_client_except(Some(index)).await;
        client.member_remove(self.nodes[index].id).await.unwrap();
        let added = client.member_add([peer_url.as_str()], None).await.unwrap();
        self.nodes[index].id = added.member().unwrap().id();
        let initial = self.initial_cluster();
        self.spawn(index, &initial, "existing", &[]);
    }

    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|index| self.nodes[*index].is_running()).collect()
    }

    pub async fn client(&self, index: usize) -> Client {
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(10));
        Client::connect([self.nodes[index].endpoint()], Some(options)).await.unwrap()
    }

    pub async fn any_client(&mut self) -> Client {
        self.any_client_except(None).await
    }

    async fn any_client_except(&mut self, except: Option<usize>) -> Client {
        let index = self.running().into_iter().find(|index| Some(*index) != except).expect("a running member");
        self.client(index).await
    }

    pub async fn status(&self, index: usize) -> Result<etcd_client::StatusResponse, etcd_client::Error> {
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_millis(500)).with_timeout(Duration::from_secs(2));
        let mut client = Client::connect([self.nodes[index].endpoint()], Some(options)).await?;
        client.status().await
    }

    /// Waits until every running member names the same leader; returns its index.
    pub async fn wait_for_leader(&mut self) -> usize {
        self.wait_for_leader_other_than(None).await
    }

    /// As `wait_for_leader`, for a leader other than `former` (after killing it).
    pub async fn wait_for_leader_other_than(&mut self, former: Option<usize>) -> usize {
        let former_id = former.map(|index| self.nodes[index].id);
        let deadline = Instant::now() + WAIT;
        loop {
            let running = self.running();
            let mut leaders = Vec::new();
            for index in &running {
                if let Ok(status) = self.status(*index).await {
                    leaders.push(status.leader());
                }
            }
            if leaders.len() == running.len()
                && leaders[0] != 0
                && Some(leaders[0]) != former_id
                && leaders.iter().all(|leader| *leader == leaders[0])
            {
                if let Some(index) = self.nodes.iter().position(|node| node.id == leaders[0]) {
                    return index;
                }
                // Ids are learned after start; the leader is one of the running members.
                for index in &running {
                    let status = self.status(*index).await.unwrap();
                    if status.header().unwrap().member_id() == leaders[0] {
                        return *index;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader among {running:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running member is at the same revision, then returns (revision, hash)
    /// after checking that all HashKV answers agree.
    pub async fn converged(&mut self) -> (i64, u32) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut answers = Vec::new();
            for index in self.running() {
                let Ok(mut client) = tokio::time::timeout(Duration::from_secs(2), self.client(index)).await else {
                    continue;
                };
                if let Ok(hash) = client.hash_kv(0).await {
                    answers.push((hash.header().unwrap().revision(), hash.hash()));
                }
            }
            if answers.len() == self.running().len() && answers.iter().all(|answer| answer.0 == answers[0].0) {
                assert!(
                    answers.iter().all(|answer| *answer == answers[0]),
                    "same revision, different hashes: {answers:?}"
                );
                return answers[0];
            }
            assert!(Instant::now() < deadline, "members did not converge: {answers:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts that every running member holds every key in `written` with its value.
    pub async fn assert_all_present(&mut self, written: &[(String, String)]) {
        for index in self.running() {
            let mut client = self.client(index).await;
            let response = client
                .get("", Some(GetOptions::new().with_from_key().with_serializable()))
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", self.nodes[index].name));
            let held: std::collections::HashMap<&[u8], &[u8]> =
                response.kvs().iter().map(|kv| (kv.key(), kv.value())).collect();
            for (key, value) in written {
                assert_eq!(
                    held.get(key.as_bytes()).copied(),
                    Some(value.as_bytes()),
                    "{} lost acknowledged write {key}",
                    self.nodes[index].name
                );
            }
        }
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|node| format!("--- {}:\n{}", node.name, node.log())).collect()
    }

    /// Fails if any member's log shows a panic (a failpoint crash excepted, when expected).
    pub fn assert_no_panics(&self) {
        for node in &self.nodes {
            let log = node.log();
            assert!(!log.contains("panicked") || log.contains("failpoint crash"), "{} panicked:\n{log}", node.name);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            if let Some(child) = &self.nodes[index].process {
                signal(child, "CONT");
            }
            self.kill(index);
        }
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
}

/// Writes keys through the given members, one at a time, round robin, moving on to the next
/// member on an error; returns the writes that were acknowledged.
pub struct Writer {
    pub acknowledged: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(endpoints: Vec<String>, prefix: &str) -> Writer {
        Writer::start_many(endpoints, prefix, 1)
    }

    /// `concurrency` writers at once, each with its own keys, all recorded in one list.
    pub fn start_many(endpoints: Vec<String>, prefix: &str, concurrency: usize) -> Writer {
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..concurrency)
            .map(|task| {
                let prefix = format!("{prefix}{task:02}-");
                let endpoints = endpoints.clone();
                let acknowledged = acknowledged.clone();
                let stop = stop.clone();
                tokio::spawn(write_until_stopped(endpoints, prefix, task, acknowledged, stop))
            })
            .collect();
        let task = tokio::spawn(async move {
            for task in tasks {
                task.await.unwrap();
            }
        });
        Writer { acknowledged, stop, task }
    }

    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond the current count are acknowledged; fails only if the
    /// count stops moving for [`WAIT`].
    pub async fn wait_for_more(&self, more: usize) {
        let target = self.count() + more;
        let (mut last, mut deadline) = (self.count(), Instant::now() + WAIT);
        while self.count() < target {
            let count = self.count();
            if count != last {
                (last, deadline) = (count, Instant::now() + WAIT);
            }
            assert!(Instant::now() < deadline, "writes stalled at {count} of {target}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn finish(self) -> Vec<(String, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap();
        let written = self.acknowledged.lock().unwrap().clone();
        written
    }
}

/// One writer: puts `prefix` + sequence number through the members round robin, moving on to
/// the next member on an error, until stopped; records what was acknowledged.
async fn write_until_stopped(
    endpoints: Vec<String>,
    prefix: String,
    first_member: usize,
    acknowledged: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut sequence = 0u64;
    let mut member = first_member;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let endpoint = &endpoints[member % endpoints.len()];
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_millis(300)).with_timeout(Duration::from_secs(3));
        let Ok(mut client) = Client::connect([endpoint.as_str()], Some(options)).await else {
            member += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let key = format!("{prefix}{sequence:08}");
            let value = format!("v{sequence}");
            sequence += 1;
            match client.put(key.as_str(), value.as_str(), None).await {
                Ok(_) => acknowledged.lock().unwrap().push((key, value)),
                Err(_) => {
                    member += 1;
                    break;
                }
            }
        }
    }
}
