//! The network between members, and its faults.
//!
//! Two modes, probed at startup (`--net auto`):
//! - `netns`: each member in its own network namespace, with a veth pair into a bridge in the
//!   runner's namespace and an address in a private /24 that no existing route uses. Partitions
//!   are iptables DROP rules in the receiving member's INPUT chain (so one-way cuts are exact),
//!   loss is an iptables `statistic` DROP rule, delay is `tc netem` on the member's interface when
//!   the kernel has it. Clients connect from the bridge address, which no partition blocks.
//! - `proxy`: everything on loopback; each member's advertised peer URL is a TCP proxy in the
//!   runner that forwards to the member's real peer port. The proxy tells which member opened a
//!   connection by finding the socket's owner through /proc, so it can stall (drop), delay or
//!   slow each direction of each link.
//!
//! A fault is described by the set of directed links `(from, to)` that carry nothing: packets
//! sent by `from` are dropped on their way to `to`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;

use crate::cluster::NodeAddrs;
use crate::proxy::Proxies;
use crate::teardown::Teardown;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    Auto,
    Netns,
    Proxy,
}

pub type Links = BTreeSet<(usize, usize)>;

#[derive(Debug)]
pub enum Net {
    Netns(Netns),
    Proxy(Proxies),
}

impl Net {
    /// Sets up `size` members' network. In `auto` mode a failed namespace setup (not root, no
    /// iptables, no bridge) falls back to the proxy; `notes` says why.
    pub async fn setup(
        mode: NetMode,
        size: usize,
        teardown: &Arc<Teardown>,
        notes: &mut Vec<String>,
    ) -> Result<Net, String> {
        if mode != NetMode::Proxy {
            match Netns::setup(size, teardown).await {
                Ok(netns) => return Ok(Net::Netns(netns)),
                Err(error) if mode == NetMode::Auto => {
                    teardown.run();
                    notes.push(format!("network namespaces unavailable ({error}); using the userspace proxy"));
                }
                Err(error) => return Err(format!("network namespaces: {error}")),
            }
        }
        Ok(Net::Proxy(Proxies::start(size).await?))
    }

    pub fn describe(&self) -> String {
        match self {
            Net::Netns(netns) => {
                format!(
                "netns: one namespace per member ({}.0/24 on bridge {}), partitions and loss by iptables, delay by {}",
                netns.subnet,
                netns.bridge,
                if netns.netem { "tc netem" } else { "nothing (the kernel has no sch_netem: delay faults are skipped)" }
            )
            }
            Net::Proxy(_) => "proxy: members on loopback, peer traffic through per-member TCP proxies in the runner \
                 (stall = drop, delay, loss = random stalls)"
                .to_string(),
        }
    }

    /// A line about the run's network, for the summary (proxy: connections attributed).
    pub fn stats(&self) -> Option<String> {
        match self {
            Net::Netns(_) => None,
            Net::Proxy(proxies) => {
                let (connections, unattributed) = proxies.stats();
                Some(format!("proxy: {connections} peer connections, {unattributed} not attributed to a member"))
            }
        }
    }

    pub fn supports_delay(&self) -> bool {
        match self {
            Net::Netns(netns) => netns.netem,
            Net::Proxy(_) => true,
        }
    }

    pub fn addrs(&self, index: usize) -> NodeAddrs {
        match self {
            Net::Netns(netns) => netns.addrs(index),
            Net::Proxy(proxies) => proxies.addrs(index),
        }
    }

    /// Tells the proxy which process is member `index` (it attributes connections by PID).
    pub fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Net::Proxy(proxies) = self {
            proxies.set_pid(index, pid);
        }
    }

    /// Replaces the partition with `blocked` (empty: heal).
    pub async fn partition(&self, blocked: &Links) -> Result<(), String> {
        match self {
            Net::Netns(netns) => netns.partition(blocked).await,
            Net::Proxy(proxies) => {
                proxies.update(|rules| rules.blocked = blocked.clone());
                Ok(())
            }
        }
    }

    /// Slows the links out of `nodes`: a delay (with 20% jitter) and/or a loss probability.
    pub async fn slow(&self, nodes: &[usize], delay: Option<Duration>, loss: Option<f64>) -> Result<(), String> {
        match self {
            Net::Netns(netns) => netns.slow(nodes, delay, loss).await,
            Net::Proxy(proxies) => {
                proxies.update(|rules| {
                    for &node in nodes {
                        rules.delay[node] = delay.unwrap_or_default();
                        rules.loss[node] = loss.unwrap_or_default();
                    }
                });
                Ok(())
            }
        }
    }

    pub async fn heal(&self) -> Result<(), String> {
        self.partition(&Links::new()).await?;
        match self {
            Net::Netns(netns) => netns.clear_slow().await,
            Net::Proxy(proxies) => {
                proxies.update(|rules| {
                    rules.delay.iter_mut().for_each(|delay| *delay = Duration::ZERO);
                    rules.loss.iter_mut().for_each(|loss| *loss = 0.0);
                });
                Ok(())
            }
        }
    }
}

#[derive(Debug)]
pub struct Netns {
    /// `10.a.b`
    subnet: String,
    bridge: String,
    namespaces: Vec<String>,
    netem: bool,
}

async fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().await.map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("`{program} {}`: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

async fn in_ns(namespace: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", namespace, program];
    full.extend_from_slice(args);
    sh("ip", &full).await
}

impl Netns {
    async fn setup(size: usize, teardown: &Arc<Teardown>) -> Result<Netns, String> {
        let pid = std::process::id();
        let subnet = free_subnet(pid).await?;
        let prefix = format!("kj{pid}");
        let bridge = format!("{prefix}br");
        teardown.add_link(&bridge);
        sh("ip", &["link", "add", &bridge, "type", "bridge"]).await?;
        sh("ip", &["addr", "add", &format!("{subnet}.254/24"), "dev", &bridge]).await?;
        sh("ip", &["link", "set", &bridge, "up"]).await?;
        let mut namespaces = Vec::new();
        for index in 0..size {
            let namespace = format!("{prefix}n{}", index + 1);
            let host = format!("{prefix}h{}", index + 1);
            let member = format!("{prefix}m{}", index + 1);
            teardown.add_namespace(&namespace);
            sh("ip", &["netns", "add", &namespace]).await?;
            teardown.add_link(&host);
            sh("ip", &["link", "add", &host, "type", "veth", "peer", "name", &member]).await?;
            sh("ip", &["link", "set", &host, "master", &bridge]).await?;
            sh("ip", &["link", "set", &host, "up"]).await?;
            sh("ip", &["link", "set", &member, "netns", &namespace]).await?;
            sh("ip", &["-n", &namespace, "link", "set", &member, "name", "eth0"]).await?;
            let address = format!("{subnet}.{}/24", index + 1);
            sh("ip", &["-n", &namespace, "addr", "add", &address, "dev", "eth0"]).await?;
            sh("ip", &["-n", &namespace, "link", "set", "eth0", "up"]).await?;
            sh("ip", &["-n", &namespace, "link", "set", "lo", "up"]).await?;
            for chain in ["JEPSEN-PART", "JEPSEN-LOSS"] {
                in_ns(&namespace, "iptables", &["-N", chain]).await?;
                in_ns(&namespace, "iptables", &["-A", "INPUT", "-j", chain]).await?;
            }
            namespaces.push(namespace);
        }
        let netem = match in_ns(&namespaces[0], "tc", &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"])
            .await
        {
            Ok(_) => {
                in_ns(&namespaces[0], "tc", &["qdisc", "del", "dev", "eth0", "root"]).await?;
                true
            }
            Err(_) => false,
        };
        let netns = Netns { subnet, bridge, namespaces, netem };
        netns.probe().await?;
        Ok(netns)
    }

    /// A TCP connection from the first namespace to a listener on the bridge address.
    async fn probe(&self) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind(format!("{}.254:0", self.subnet))
            .await
            .map_err(|error| format!("binding the bridge address: {error}"))?;
        let port = listener.local_addr().map_err(|error| error.to_string())?.port();
        let script = format!("exec 3<>/dev/tcp/{}.254/{port}", self.subnet);
        let probe_args = ["3", "bash", "-c", &script];
        let connect = in_ns(&self.namespaces[0], "timeout", &probe_args);
        let (accepted, connected) =
            tokio::join!(tokio::time::timeout(Duration::from_secs(4), listener.accept()), connect);
        connected.map_err(|error| format!("namespace cannot reach the bridge: {error}"))?;
        accepted.map_err(|_| "no connection from the namespace".to_string())?.map_err(|error| error.to_string())?;
        Ok(())
    }

    fn ip(&self, index: usize) -> String {
        format!("{}.{}", self.subnet, index + 1)
    }

    fn addrs(&self, index: usize) -> NodeAddrs {
        let ip = self.ip(index);
        NodeAddrs {
            client_listen: format!("http://{ip}:2379"),
            client_url: format!("http://{ip}:2379"),
            peer_listen: format!("http://{ip}:2380"),
            peer_url: format!("http://{ip}:2380"),
            netns: Some(self.namespaces[index].clone()),
        }
    }

    async fn partition(&self, blocked: &Links) -> Result<(), String> {
        for (to, namespace) in self.namespaces.iter().enumerate() {
            in_ns(namespace, "iptables", &["-F", "JEPSEN-PART"]).await?;
            for &(from, _) in blocked.iter().filter(|(_, t)| *t == to) {
                let source = format!("{}/32", self.ip(from));
                in_ns(namespace, "iptables", &["-A", "JEPSEN-PART", "-s", &source, "-j", "DROP"]).await?;
            }
        }
        Ok(())
    }

    async fn slow(&self, nodes: &[usize], delay: Option<Duration>, loss: Option<f64>) -> Result<(), String> {
        for &node in nodes {
            let namespace = &self.namespaces[node];
            if let Some(loss) = loss {
                let probability = format!("{loss:.3}");
                in_ns(
                    namespace,
                    "iptables",
                    &[
                        "-A",
                        "JEPSEN-LOSS",
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )
                .await?;
            }
            if let (Some(delay), true) = (delay, self.netem) {
                let ms = format!("{}ms", delay.as_millis());
                let jitter = format!("{}ms", delay.as_millis() / 5);
                in_ns(namespace, "tc", &["qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &ms, &jitter])
                    .await?;
            }
        }
        Ok(())
    }

    async fn clear_slow(&self) -> Result<(), String> {
        for namespace in &self.namespaces {
            in_ns(namespace, "iptables", &["-F", "JEPSEN-LOSS"]).await?;
            if self.netem {
                let _ = in_ns(namespace, "tc", &["qdisc", "del", "dev", "eth0", "root"]).await;
            }
        }
        Ok(())
    }
}

/// A `10.a.b` /24 that no address or route of this machine touches, picked from the PID so that
/// parallel runs differ.
async fn free_subnet(pid: u32) -> Result<String, String> {
    let addresses = sh("ip", &["-4", "-o", "addr"]).await?;
    let routes = sh("ip", &["-4", "route"]).await?;
    for attempt in 0..64u32 {
        let seed = pid.wrapping_add(attempt * 7919);
        let subnet = format!("10.{}.{}", 200 + (seed >> 8) % 50, seed % 250);
        let taken = |text: &str| text.contains(&format!(" {subnet}.")) || text.contains(&format!("\n{subnet}."));
        let in_use = taken(&addresses) || taken(&format!("\n{routes}")) || routes.contains("default via 10.");
        if !in_use {
            return Ok(subnet);
        }
    }
    Err("no free 10.x.y.0/24".to_string())
}
