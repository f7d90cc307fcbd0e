//! The nemesis: a seeded random schedule of faults. About every `--fault-interval` seconds
//! (uniformly 0.6 to 1.4 times it) the fault in force, if any, is healed, and with probability
//! 0.8 a new one, drawn from `--faults`, starts. One fault is in force at a time, unless
//! `--overlap-faults`: then a network fault and a process fault may be in force together (a
//! partition while the leader is paused), each healed after one or two ticks; a membership change
//! or a power loss still runs alone. At the end everything is healed: the network, paused and
//! stopped members, removed members re-added.
//! Every action goes to `faults.jsonl` (on the history's clock) and to the console.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::net::{Links, Net};
use crate::recorder::Clock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Partition,
    Kill,
    Pause,
    Delay,
    Loss,
    Member,
    Failpoint,
    /// SIGKILL and the loss of every write not yet fsynced (members on LazyFS), of one member or,
    /// a quarter of the time, of all at once.
    PowerLoss,
    /// No faults (only valid alone).
    None,
}

impl FaultKind {
    /// The name `--faults` takes, also used in logs and summaries (`power-loss`).
    pub fn label(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|value| value.get_name().to_string()).unwrap_or_default()
    }

    fn class(self) -> FaultClass {
        match self {
            FaultKind::Partition | FaultKind::Delay | FaultKind::Loss => FaultClass::Network,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Failpoint => FaultClass::Process,
            FaultKind::Member | FaultKind::PowerLoss | FaultKind::None => FaultClass::Alone,
        }
    }
}

/// Which faults may be in force together: one of the network's and one of a member process's.
/// The network has one state (healing heals it all), and one member fault at a time keeps the
/// victims apart; membership changes and power losses need the rest of the cluster intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultClass {
    Network,
    Process,
    Alone,
}

impl FaultClass {
    fn fits_with(self, other: FaultClass) -> bool {
        self != other && self != FaultClass::Alone && other != FaultClass::Alone
    }
}

/// A fault in force: what to undo, its label and class, and since when (history clock).
#[derive(Debug)]
struct InForce {
    active: Active,
    label: String,
    class: FaultClass,
    since_ns: u64,
}

/// The share of power-loss faults that cut every member at once (a data-centre power cut).
const POWER_LOSS_ALL_SHARE: f64 = 0.25;

/// keel's crash points (`keel` built with `--features keel/failpoints`).
pub const FAILPOINTS: [&str; 8] = [
    "raft::log::before_append",
    "raft::log::after_append",
    "raft::log::before_sync",
    "store::apply::before_write",
    "store::apply::after_write",
    "raft::snapshot::before_install",
    "store::snapshot::after_marker",
    "store::compaction::before_batch",
];

#[derive(Debug)]
enum Active {
    Partition,
    Slow,
    Killed(usize),
    Paused(usize),
    Removed(usize),
    Failpoint(usize),
    PowerLost(Vec<usize>),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultSummary {
    /// Faults started, by kind.
    pub started: BTreeMap<String, u64>,
    /// Faults that could not be started or healed, with why.
    pub errors: Vec<String>,
    /// Failpoint incarnations that crashed (the point fired) before being healed.
    pub failpoints_fired: u64,
    /// Power-loss faults that cut every member at once.
    pub power_loss_all: u64,
    /// What power-loss faults dropped, over all members: files with unsynced writes, and
    /// bytes (restored durable bytes plus cut unsynced appends).
    pub power_loss_files: u64,
    pub power_loss_bytes: u64,
    /// (kind, start, end) of every fault, on the history's clock.
    pub windows: Vec<(String, u64, u64)>,
}

#[derive(Serialize)]
struct LogLine<'a> {
    time_ns: u64,
    action: &'a str,
    fault: &'a str,
    detail: &'a str,
}

#[derive(Debug)]
pub struct Nemesis {
    cluster: Arc<Mutex<Cluster>>,
    net: Arc<Net>,
    rng: StdRng,
    kinds: Vec<FaultKind>,
    interval: Duration,
    /// A network fault and a process fault may be in force together.
    overlap: bool,
    clock: Clock,
    log: File,
    summary: FaultSummary,
}

/// What the nemesis draws from, and how often.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub kinds: Vec<FaultKind>,
    /// Mean time between fault changes.
    pub interval: Duration,
    /// A network fault and a process fault may be in force together.
    pub overlap: bool,
}

impl Nemesis {
    pub fn new(cluster: Arc<Mutex<Cluster>>, net: Arc<Net>, schedule: Schedule, clock: Clock, log: File) -> Nemesis {
        let Schedule { seed, kinds, interval, overlap } = schedule;
        // A stream of its own, so that the workload's draws do not shift the schedule.
        let rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
        Nemesis { cluster, net, rng, kinds, interval, overlap, clock, log, summary: FaultSummary::default() }
    }

    fn note(&mut self, action: &str, fault: &str, detail: &str) {
        let line = LogLine { time_ns: self.clock.now_ns(), action, fault, detail };
        let _ = serde_json::to_writer(&mut self.log, &line);
        let _ = self.log.write_all(b"\n");
        println!("[{:8.3}s] nemesis {action} {fault}: {detail}", self.clock.secs());
    }

    fn error(&mut self, fault: &str, error: String) {
        self.note("error", fault, &error);
        self.summary.errors.push(format!("{fault}: {error}"));
    }

    /// Runs the schedule until `until`, then heals everything.
    pub async fn run(mut self, until: Instant) -> FaultSummary {
        let mut in_force: Vec<InForce> = Vec::new();
        loop {
            let next = Instant::now() + self.interval.mul_f64(self.rng.gen_range(0.6..1.4));
            if next >= until {
                tokio::time::sleep_until(until).await;
                break;
            }
            tokio::time::sleep_until(next).await;
            // Alone, a fault lasts one tick; overlapping, the oldest is healed when two are in
            // force or by a coin flip, so faults last one or two ticks and start and end apart.
            while !in_force.is_empty() && (!self.overlap || in_force.len() == 2 || self.rng.gen_bool(0.5)) {
                let oldest = in_force.remove(0);
                self.stop(oldest).await;
                if self.overlap {
                    break;
                }
            }
            // A new fault only if it has time to matter before the end, and fits those in force.
            let worth_it = until.saturating_duration_since(Instant::now()) > self.interval / 2;
            let fitting: Vec<FaultKind> = self
                .kinds
                .iter()
                .copied()
                .filter(|kind| in_force.iter().all(|fault| kind.class().fits_with(fault.class)))
                .collect();
            if !fitting.is_empty() && self.rng.gen_bool(0.8) && worth_it {
                let kind = *fitting.choose(&mut self.rng).expect("a fault kind");
                in_force.extend(self.start(kind).await);
            }
        }
        for fault in in_force {
            self.stop(fault).await;
        }
        self.heal_all().await;
        self.summary
    }

    fn name(&self, index: usize) -> String {
        format!("n{}", index + 1)
    }

    /// The leader half the time (when there is one), else any member.
    async fn victim(&mut self) -> usize {
        let size = self.cluster.lock().await.len();
        if self.rng.gen_bool(0.5) {
            if let Some(leader) = self.cluster.lock().await.leader().await {
                return leader;
            }
        }
        self.rng.gen_range(0..size)
    }

    async fn start(&mut self, kind: FaultKind) -> Option<InForce> {
        let label = kind.label();
        let started = match kind {
            FaultKind::Partition => self.start_partition().await,
            FaultKind::Delay | FaultKind::Loss => self.start_slow(kind).await,
            FaultKind::Kill => {
                let victim = self.victim().await;
                self.cluster.lock().await.kill(victim);
                self.note("start", &label, &format!("SIGKILL {}", self.name(victim)));
                Ok(Active::Killed(victim))
            }
            FaultKind::Pause => {
                let victim = self.victim().await;
                let paused = self.cluster.lock().await.pause(victim);
                paused.map(|()| {
                    self.note("start", &label, &format!("SIGSTOP {}", self.name(victim)));
                    Active::Paused(victim)
                })
            }
            FaultKind::Member => {
                let victim = self.victim().await;
                let removed = self.cluster.lock().await.remove_member(victim).await;
                removed.map(|()| {
                    self.note(
                        "start",
                        &label,
                        &format!("removed {} from the membership, wiped its data", self.name(victim)),
                    );
                    Active::Removed(victim)
                })
            }
            FaultKind::Failpoint => {
                let victim = self.victim().await;
                let point = *FAILPOINTS.choose(&mut self.rng).expect("a failpoint");
                let spec = format!("{point}={}*off->panic", self.rng.gen_range(3..40));
                let mut cluster = self.cluster.lock().await;
                cluster.kill(victim);
                let spawned = cluster.spawn(victim, Some(&spec));
                drop(cluster);
                spawned.map(|()| {
                    self.note("start", &label, &format!("restarted {} with FAILPOINTS={spec}", self.name(victim)));
                    Active::Failpoint(victim)
                })
            }
            FaultKind::PowerLoss => self.start_power_loss().await,
            FaultKind::None => return None,
        };
        match started {
            Ok(active) => {
                *self.summary.started.entry(label.clone()).or_default() += 1;
                Some(InForce { active, label, class: kind.class(), since_ns: self.clock.now_ns() })
            }
            Err(error) => {
                self.error(&label, error);
                None
            }
        }
    }

    /// SIGKILL, then the loss of every unsynced write, of one member or of all: the page cache
    /// goes with the power, which SIGKILL alone does not simulate. Healed by a restart.
    async fn start_power_loss(&mut self) -> Result<Active, String> {
        let size = self.cluster.lock().await.len();
        let victims: Vec<usize> = if size > 1 && self.rng.gen_bool(POWER_LOSS_ALL_SHARE) {
            (0..size).collect()
        } else {
            vec![self.victim().await]
        };
        let mut cluster = self.cluster.lock().await;
        // Every process dies before any disk loses its data, as in one power cut.
        for &victim in &victims {
            cluster.kill(victim);
        }
        let mut details = Vec::new();
        for &victim in &victims {
            let loss = cluster.lose_unsynced(victim)?;
            self.summary.power_loss_files += loss.total.files;
            self.summary.power_loss_bytes += loss.total.bytes_restored + loss.total.bytes_cut;
            let files: Vec<String> = loss
                .files
                .iter()
                .map(|(path, lost)| format!("{} -{}/+{} B", path.display(), lost.bytes_restored, lost.bytes_cut))
                // Directory entries not fsynced, undone: `path: create lost`, `path: rename to X lost`.
                .chain(loss.entries.iter().map(|undone| format!("{}: {} lost", undone.path.display(), undone.what)))
                .collect();
            details.push(format!("{} [{}]", self.name(victim), files.join(", ")));
        }
        drop(cluster);
        if victims.len() == size && size > 1 {
            self.summary.power_loss_all += 1;
        }
        // Per file: durable bytes put back over unsynced overwrites (-) and unsynced appends cut (+).
        self.note("start", "power-loss", &format!("SIGKILL, unsynced writes lost: {}", details.join("; ")));
        Ok(Active::PowerLost(victims))
    }

    async fn start_partition(&mut self) -> Result<Active, String> {
        let size = self.cluster.lock().await.len();
        let mut nodes: Vec<usize> = (0..size).collect();
        nodes.shuffle(&mut self.rng);
        let (description, blocked) = match self.rng.gen_range(0..4) {
            0 => {
                let leader = self.cluster.lock().await.leader().await.unwrap_or(nodes[0]);
                let rest: Vec<usize> = (0..size).filter(|&n| n != leader).collect();
                (format!("isolate leader {}", self.name(leader)), split(&[vec![leader], rest]))
            }
            1 => {
                let minority = nodes[..size / 2].to_vec();
                let majority = nodes[size / 2..].to_vec();
                (
                    format!("minority {} / majority {}", self.names(&minority), self.names(&majority)),
                    split(&[minority, majority]),
                )
            }
            2 => {
                let mut blocked = Links::new();
                for (i, &a) in nodes.iter().enumerate() {
                    for (j, &b) in nodes.iter().enumerate() {
                        let distance = i.abs_diff(j);
                        if size >= 4 && distance > 1 && distance < size - 1 {
                            blocked.insert((a, b));
                        }
                    }
                }
                if size < 4 {
                    // Three members: a bridge, the middle one sees both ends, the ends not each other.
                    blocked.insert((nodes[0], nodes[2]));
                    blocked.insert((nodes[2], nodes[0]));
                }
                (format!("ring {}", self.names(&nodes)), blocked)
            }
            _ => {
                let victim = nodes[0];
                let inbound = self.rng.gen_bool(0.5);
                let blocked: Links =
                    nodes[1..].iter().map(|&other| if inbound { (other, victim) } else { (victim, other) }).collect();
                let how = if inbound { "receives nothing from" } else { "is not heard by" };
                (format!("one-way: {} {how} the others", self.name(victim)), blocked)
            }
        };
        self.net.partition(&blocked).await?;
        self.note("start", "partition", &description);
        Ok(Active::Partition)
    }

    fn names(&self, nodes: &[usize]) -> String {
        nodes.iter().map(|&n| self.name(n)).collect::<Vec<_>>().join(",")
    }

    async fn start_slow(&mut self, kind: FaultKind) -> Result<Active, String> {
        let size = self.cluster.lock().await.len();
        if kind == FaultKind::Delay {
            if !self.net.supports_delay() {
                return Err("delay is not available in this network mode".to_string());
            }
            let delay = Duration::from_millis(self.rng.gen_range(30..150));
            let all: Vec<usize> = (0..size).collect();
            self.net.slow(&all, Some(delay), None).await?;
            self.note("start", "delay", &format!("{delay:?} (±20%) on every member's outgoing packets"));
        } else {
            let mut nodes: Vec<usize> = (0..size).collect();
            nodes.shuffle(&mut self.rng);
            nodes.truncate(self.rng.gen_range(1..=size));
            let loss = self.rng.gen_range(0.1..0.4);
            self.net.slow(&nodes, None, Some(loss)).await?;
            self.note("start", "loss", &format!("{:.0}% of packets into {}", loss * 100.0, self.names(&nodes)));
        }
        Ok(Active::Slow)
    }

    async fn stop(&mut self, fault: InForce) {
        self.summary.windows.push((fault.label, fault.since_ns, self.clock.now_ns()));
        let result = match fault.active {
            Active::Partition | Active::Slow => {
                let healed = self.net.heal().await;
                self.note("stop", "network", "healed");
                healed
            }
            Active::Killed(index) => {
                let spawned = self.cluster.lock().await.spawn(index, None);
                self.note("stop", "kill", &format!("restarted {}", self.name(index)));
                spawned
            }
            Active::Paused(index) => {
                let resumed = self.cluster.lock().await.resume(index);
                self.note("stop", "pause", &format!("SIGCONT {}", self.name(index)));
                resumed
            }
            Active::Removed(index) => {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let added = self.cluster.lock().await.add_member(index).await;
                    match added {
                        Ok(()) => {
                            self.note(
                                "stop",
                                "member",
                                &format!("re-added {} (empty data dir, existing)", self.name(index)),
                            );
                            break Ok(());
                        }
                        Err(error) if Instant::now() > deadline => break Err(error),
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            Active::PowerLost(victims) => {
                let mut cluster = self.cluster.lock().await;
                let spawned: Result<(), String> = victims.iter().try_for_each(|&index| cluster.spawn(index, None));
                drop(cluster);
                self.note("stop", "power-loss", &format!("restarted {}", self.names(&victims)));
                spawned
            }
            Active::Failpoint(index) => {
                let mut cluster = self.cluster.lock().await;
                let fired = cluster.exited_by_itself(index);
                cluster.kill(index);
                let spawned = cluster.spawn(index, None);
                drop(cluster);
                if fired {
                    self.summary.failpoints_fired += 1;
                }
                let what = if fired { "crashed (fired)" } else { "did not fire" };
                self.note("stop", "failpoint", &format!("{} {what}; restarted without failpoints", self.name(index)));
                spawned
            }
        };
        if let Err(error) = result {
            self.error("heal", error);
        }
    }

    async fn heal_all(&mut self) {
        if let Err(error) = self.net.heal().await {
            self.error("heal", error);
        }
        let errors = self.cluster.lock().await.restore_all().await;
        for error in errors {
            self.error("heal", error);
        }
        self.note("stop", "all", "network healed, every member running and in the membership");
    }
}

/// Every link between different groups, both ways.
fn split(groups: &[Vec<usize>]) -> Links {
    let mut blocked = Links::new();
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate() {
            if i != j {
                for &x in a {
                    for &y in b {
                        blocked.insert((x, y));
                    }
                }
            }
        }
    }
    blocked
}
