//! The members under test: keel (`keel store`) or etcd, launched with the same etcd flags, each
//! process controlled by its PID (SIGKILL, SIGSTOP/SIGCONT, restart, restart with failpoints),
//! and membership changed through the Cluster API.
//!
//! Each member's output goes to `n<i>.log` in the run directory; every start appends a header
//! line (`=== jepsen: ...`), so the panic check can tell incarnations apart and excuse the ones
//! started with failpoints armed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use jepsen::lazyfs::{self, LazyFs, Loss};

use crate::net::Net;
use crate::recorder::Clock;
use crate::teardown::Teardown;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Keel,
    Etcd,
}

/// Where a member listens and what it advertises; `netns` is the namespace it runs in.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    pub client_listen: String,
    pub client_url: String,
    pub peer_listen: String,
    pub peer_url: String,
    pub netns: Option<String>,
}

/// The header line that starts each incarnation's part of a member log.
pub const LOG_HEADER: &str = "=== jepsen:";

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub addrs: NodeAddrs,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pub incarnation: u32,
    pub paused: bool,
    /// Removed from the membership (a member fault) and not running.
    pub removed: bool,
    /// Its data dir was created by joining the running cluster, so restarts say `existing`.
    joined: bool,
    /// The failpoints the running incarnation was started with.
    pub failpoints: Option<String>,
    /// Exits the runner did not cause, outside failpoint incarnations.
    pub unexpected_exits: Vec<String>,
    /// The power-loss filesystem the member's directory (`n<i>/`, the data dir's parent) is
    /// mounted on, backed by `n<i>.disk/`; only when power-loss faults are on.
    disk: Option<LazyFs>,
}

#[derive(Debug)]
pub struct Cluster {
    pub target: Target,
    bin: PathBuf,
    token: String,
    extra_args: Vec<String>,
    pub nodes: Vec<Node>,
    teardown: Arc<Teardown>,
    net: Arc<Net>,
    clock: Clock,
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: Target,
        bin: PathBuf,
        dir: &Path,
        size: usize,
        extra_args: Vec<String>,
        net: Arc<Net>,
        teardown: Arc<Teardown>,
        clock: Clock,
    ) -> Cluster {
        let nodes = (0..size)
            .map(|index| {
                let name = format!("n{}", index + 1);
                Node {
                    addrs: net.addrs(index),
                    data_dir: dir.join(&name).join("data"),
                    log: dir.join(format!("{name}.log")),
                    name,
                    child: None,
                    incarnation: 0,
                    paused: false,
                    removed: false,
                    joined: false,
                    failpoints: None,
                    unexpected_exits: Vec::new(),
                    disk: None,
                }
            })
            .collect();
        let token = format!("jepsen-{}", std::process::id());
        Cluster { target, bin, token, extra_args, nodes, teardown, net, clock }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.addrs.client_url.clone()).collect()
    }

    fn initial_cluster(&self) -> String {
        let members: Vec<String> =
            self.nodes.iter().map(|node| format!("{}={}", node.name, node.addrs.peer_url)).collect();
        members.join(",")
    }

    /// Puts every member's directory on a LazyFS (power-loss faults), before any member starts:
    /// `n<i>/` becomes a mount whose backing directory is `n<i>.disk/`.
    pub fn mount_disks(&mut self) -> Result<(), lazyfs::Error> {
        for node in &mut self.nodes {
            let mountpoint = node.data_dir.parent().expect("a data dir inside the member's directory").to_path_buf();
            let backing = mountpoint.with_extension("disk");
            let disk = LazyFs::mount(&backing, &mountpoint)?;
            self.teardown.add_mount(&mountpoint);
            node.disk = Some(disk);
        }
        Ok(())
    }

    /// The power cut of member `index`'s disk: its unsynced writes are lost. The member must be
    /// stopped (killed and reaped) first.
    pub fn lose_unsynced(&mut self, index: usize) -> Result<Loss, String> {
        let node = &self.nodes[index];
        assert!(node.child.is_none(), "{}: losing unsynced data under a running member", node.name);
        let disk = node.disk.as_ref().ok_or_else(|| format!("{} has no power-loss filesystem", node.name))?;
        disk.lose_unsynced_by_file().map_err(|error| format!("{}: losing unsynced data: {error}", node.name))
    }

    pub fn start_all(&mut self) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            self.spawn(index, None)?;
        }
        Ok(())
    }

    /// Starts member `index` (which must not be running), with `FAILPOINTS` set if given.
    pub fn spawn(&mut self, index: usize, failpoints: Option<&str>) -> Result<(), String> {
        let initial_cluster = self.initial_cluster();
        let node = &mut self.nodes[index];
        std::fs::create_dir_all(&node.data_dir).map_err(|error| format!("{}: {error}", node.data_dir.display()))?;
        node.incarnation += 1;
        let state = if node.joined { "existing" } else { "new" };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|error| format!("{}: {error}", node.log.display()))?;
        let armed = failpoints.map(|spec| format!(" FAILPOINTS={spec}")).unwrap_or_default();
        let _ = writeln!(
            log,
            "\n{LOG_HEADER} {} incarnation {} at {:.3}s, --initial-cluster-state {state}{armed} ===",
            node.name,
            node.incarnation,
            self.clock.secs()
        );
        let mut command = match &node.addrs.netns {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        if self.target == Target::Keel {
            command.arg("store");
        }
        command
            .args(["--name", &node.name])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen-client-urls", &node.addrs.client_listen])
            .args(["--advertise-client-urls", &node.addrs.client_url])
            .args(["--listen-peer-urls", &node.addrs.peer_listen])
            .args(["--initial-advertise-peer-urls", &node.addrs.peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--snapshot-count", "1000"])
            .args(&self.extra_args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|error| error.to_string())?)
            .stderr(log);
        match failpoints {
            Some(spec) => command.env("FAILPOINTS", spec),
            None => command.env_remove("FAILPOINTS"),
        };
        let child = command.spawn().map_err(|error| format!("starting {}: {error}", self.bin.display()))?;
        self.teardown.add_pid(child.id());
        self.net.set_pid(index, Some(child.id()));
        node.child = Some(child);
        node.paused = false;
        node.failpoints = failpoints.map(str::to_string);
        Ok(())
    }

    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes[index].child.as_ref().map(Child::id)
    }

    /// SIGKILL (a paused process dies too) and reap.
    pub fn kill(&mut self, index: usize) {
        self.poll_exit(index);
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.teardown.remove_pid(child.id());
        }
        node.paused = false;
        node.failpoints = None;
        self.net.set_pid(index, None);
    }

    fn signal(&self, index: usize, signal: &str) -> Result<(), String> {
        let pid = self.pid(index).ok_or_else(|| format!("{} is not running", self.nodes[index].name))?;
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().map_err(|e| e.to_string())?;
        status.success().then_some(()).ok_or_else(|| format!("kill {signal} {pid} failed"))
    }

    pub fn pause(&mut self, index: usize) -> Result<(), String> {
        self.signal(index, "-STOP")?;
        self.nodes[index].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, index: usize) -> Result<(), String> {
        if self.nodes[index].paused {
            self.nodes[index].paused = false;
            self.signal(index, "-CONT")?;
        }
        Ok(())
    }

    /// Notices a process that exited by itself; returns whether it is running.
    pub fn poll_exit(&mut self, index: usize) -> bool {
        let node = &mut self.nodes[index];
        let Some(child) = node.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.teardown.remove_pid(child.id());
                if node.failpoints.is_none() && !node.removed {
                    node.unexpected_exits.push(format!("incarnation {} exited: {status}", node.incarnation));
                }
                node.child = None;
                node.paused = false;
                self.net.set_pid(index, None);
                false
            }
            Err(_) => true,
        }
    }

    /// Whether the process of `index` exited by itself (returns true once, then forgets it).
    pub fn exited_by_itself(&mut self, index: usize) -> bool {
        self.nodes[index].child.is_some() && !self.poll_exit(index)
    }

    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&index| self.poll_exit(index)).collect()
    }

    /// Running, not paused, not removed: members a request can be sent to.
    pub fn available(&mut self) -> Vec<usize> {
        self.running().into_iter().filter(|&index| !self.nodes[index].paused && !self.nodes[index].removed).collect()
    }

    pub async fn admin_client(&self, index: usize) -> Result<Client, String> {
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(1)).with_timeout(Duration::from_secs(5));
        Client::connect([self.nodes[index].addrs.client_url.as_str()], Some(options))
            .await
            .map_err(|error| error.to_string())
    }

    /// (member id, leader id) as member `index` reports them.
    pub async fn status(&self, index: usize) -> Result<(u64, u64, i64), String> {
        let mut client = self.admin_client(index).await?;
        let status = tokio::time::timeout(Duration::from_secs(3), client.status())
            .await
            .map_err(|_| "status timed out".to_string())?
            .map_err(|error| error.to_string())?;
        let header = status.header().ok_or("no header")?;
        Ok((header.member_id(), status.leader(), header.revision()))
    }

    /// The member every available member names as leader, if they agree.
    pub async fn leader(&mut self) -> Option<usize> {
        let available = self.available();
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for &index in &available {
            if let Ok((id, leader, _)) = self.status(index).await {
                ids.push((id, index));
                leaders.push(leader);
            }
        }
        let first = *leaders.first()?;
        if first == 0 || leaders.iter().any(|leader| *leader != first) {
            return None;
        }
        ids.into_iter().find(|(id, _)| *id == first).map(|(_, index)| index)
    }

    /// Waits until every available member answers a linearizable read and they agree on a leader.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.ready_once().await {
                Ok(leader) => return Ok(leader),
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(format!("cluster not ready after {timeout:?}: {last}"))
    }

    async fn ready_once(&mut self) -> Result<usize, String> {
        for index in 0..self.nodes.len() {
            if !self.nodes[index].removed && !self.poll_exit(index) {
                return Err(format!("{} is not running", self.nodes[index].name));
            }
        }
        let leader = self.leader().await.ok_or("no agreed leader")?;
        for index in self.available() {
            let mut client = self.admin_client(index).await?;
            tokio::time::timeout(Duration::from_secs(3), client.get("jepsen-ready", Some(GetOptions::new())))
                .await
                .map_err(|_| format!("{}: read timed out", self.nodes[index].name))?
                .map_err(|error| format!("{}: {error}", self.nodes[index].name))?;
        }
        Ok(leader)
    }

    /// A client on an available member other than `except` that answers a member list, and the
    /// id that list gives `except` (matched by peer URL).
    async fn other_client(&mut self, except: usize) -> Result<(Client, Option<u64>), String> {
        let others: Vec<usize> = self.available().into_iter().filter(|&index| index != except).collect();
        let mut last = "no other member available".to_string();
        for index in others {
            let mut client = self.admin_client(index).await?;
            match tokio::time::timeout(Duration::from_secs(5), client.member_list()).await {
                Ok(Ok(list)) => {
                    let peer_url = &self.nodes[except].addrs.peer_url;
                    let id = list
                        .members()
                        .iter()
                        .find(|member| member.peer_urls().iter().any(|url| url == peer_url))
                        .map(|member| member.id());
                    return Ok((client, id));
                }
                Ok(Err(error)) => last = format!("{}: {error}", self.nodes[index].name),
                Err(_) => last = format!("{}: member list timed out", self.nodes[index].name),
            }
        }
        Err(last)
    }

    /// The id the membership has for member `index`.
    async fn member_id(&mut self, index: usize) -> Result<Option<u64>, String> {
        Ok(self.other_client(index).await?.1)
    }

    /// Removes member `index` from the membership, then stops it and wipes its data.
    pub async fn remove_member(&mut self, index: usize) -> Result<(), String> {
        let (mut client, id) = self.other_client(index).await?;
        let id = id.ok_or("not in the member list")?;
        let removed = tokio::time::timeout(Duration::from_secs(10), client.member_remove(id)).await;
        let outcome = match removed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("member remove timed out".to_string()),
        };
        // Whatever the answer, look: a timed-out removal may still have happened.
        if outcome.is_err() && self.member_id(index).await.ok().flatten().is_some() {
            return outcome;
        }
        self.nodes[index].removed = true;
        self.kill(index);
        let data = self.nodes[index].data_dir.clone();
        std::fs::remove_dir_all(&data).map_err(|error| format!("wiping {}: {error}", data.display()))?;
        Ok(())
    }

    /// Adds member `index` back (same name and peer URL) and starts it with an empty data dir and
    /// `--initial-cluster-state existing`.
    pub async fn add_member(&mut self, index: usize) -> Result<(), String> {
        let (mut client, id) = self.other_client(index).await?;
        if id.is_none() {
            let peer_url = self.nodes[index].addrs.peer_url.clone();
            tokio::time::timeout(Duration::from_secs(10), client.member_add([peer_url], None))
                .await
                .map_err(|_| "member add timed out".to_string())?
                .map_err(|error| error.to_string())?;
        }
        self.nodes[index].removed = false;
        self.nodes[index].joined = true;
        self.spawn(index, None)
    }

    /// Everything back: paused members resumed, stopped ones restarted, removed ones re-added.
    pub async fn restore_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for index in 0..self.nodes.len() {
            if let Err(error) = self.resume(index) {
                errors.push(error);
            }
            if self.nodes[index].failpoints.is_some() {
                self.kill(index);
            }
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index].removed {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match self.add_member(index).await {
                        Ok(()) => break,
                        Err(error) if Instant::now() > deadline => {
                            errors.push(format!("re-adding {}: {error}", self.nodes[index].name));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            } else if !self.poll_exit(index) {
                if let Err(error) = self.spawn(index, None) {
                    errors.push(error);
                }
            }
        }
        errors
    }

    /// Stops every member (SIGKILL) at the end of the run, then unmounts their disks.
    pub fn stop_all(&mut self) {
        for index in 0..self.nodes.len() {
            let _ = self.resume(index);
            self.poll_exit(index);
            self.kill(index);
        }
        for node in &mut self.nodes {
            if let Some(disk) = node.disk.take() {
                let _ = disk.unmount();
            }
        }
    }
}

/// Whether a keel binary was built with the `failpoints` feature (it then carries the panic
/// hook's message).
pub fn keel_has_failpoints(bin: &Path) -> bool {
    std::fs::read(bin).is_ok_and(|bytes| bytes.windows(15).any(|window| window == b"failpoint crash"))
}
