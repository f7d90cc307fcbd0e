//! The workloads: concurrent client processes, each bound to one member, recording every op.
//!
//! Each workload runs until the main phase is stopped, then does its final phase (final reads,
//! draining watchers, waiting for leases to expire) and returns what its checker needs beyond the
//! history. A process whose op ended with unknown outcome continues under a new process id, as in
//! Jepsen: the old op may still be in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jepsen::history::{EventKind, Key, Op, Operation};
use jepsen::watches::WatchEvent;
use rand::rngs::StdRng;
use rand::Rng;

use crate::client::Failure;
use crate::recorder::Recorder;
use crate::report::Verdict;

pub mod leases;
pub mod list_append;
pub mod mixed;
pub mod register;
pub mod watches;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    Register,
    ListAppend,
    Watch,
    Lease,
    Mixed,
}

#[derive(Debug)]
pub struct Ctx {
    pub recorder: Arc<Recorder>,
    pub endpoints: Vec<String>,
    pub concurrency: usize,
    pub seed: u64,
    /// Target ops per second over all processes.
    pub rate: f64,
    /// Ops on one key before it is retired for a fresh one (bounds the checkers' work per key).
    pub ops_per_key: u64,
    /// When the faulted phase ends (then everything heals and the quiet phase begins).
    pub faults_until: tokio::time::Instant,
    pub stop: AtomicBool,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A random pause between a process's ops: exponential, so the whole run averages `rate`;
    /// 200 ms more after a refused connection (a member that is down), instead of a burst of
    /// instant failures.
    pub async fn pace(&self, rng: &mut StdRng, process: &mut Process) {
        let mean = self.concurrency as f64 / self.rate.max(0.1);
        let mut wait = (-mean * (1.0 - rng.gen::<f64>()).ln()).min(mean * 5.0);
        if std::mem::take(&mut process.refused) {
            wait += 0.2;
        }
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// Process ids of final-phase readers start here, one per member.
pub const FINAL_PROCESS: u64 = 1_000_000;

/// One logical client process: records its ops and moves to a fresh id after an unknown outcome.
#[derive(Debug)]
pub struct Process {
    pub id: u64,
    stride: u64,
    recorder: Arc<Recorder>,
    /// The last op found its member down.
    refused: bool,
}

impl Process {
    pub fn new(id: u64, stride: u64, recorder: Arc<Recorder>) -> Process {
        Process { id, stride, recorder, refused: false }
    }

    pub fn invoke(&self, op: &Op) {
        self.recorder.invoke(self.id, op);
    }

    pub fn ok(&self, op: &Op, revision: Option<i64>) {
        self.recorder.complete(self.id, EventKind::Ok, op, revision);
    }

    /// Completes with an error: `fail` when it certainly had no effect (or is a read, which has
    /// none), else `info`.
    pub fn failed(&mut self, op: &Op, failure: &Failure, read_only: bool) {
        let error = failure.message();
        self.refused = error.contains("connect");
        match failure {
            Failure::Definite(_) => self.recorder.complete_with_error(self.id, EventKind::Fail, op, error),
            Failure::Indefinite(_) if read_only => {
                self.recorder.complete_with_error(self.id, EventKind::Fail, op, error)
            }
            Failure::Indefinite(_) => {
                self.recorder.complete_with_error(self.id, EventKind::Info, op, error);
                self.id += self.stride;
            }
        }
    }
}

/// The keys in use: a few slots, each retired for a fresh key after `per_key` ops.
#[derive(Debug)]
pub struct KeySpace {
    inner: Mutex<(Vec<(Key, u64)>, Key)>,
    per_key: u64,
}

impl KeySpace {
    pub fn new(slots: usize, per_key: u64) -> KeySpace {
        let keys = (0..slots as Key).map(|key| (key, 0)).collect();
        KeySpace { inner: Mutex::new((keys, slots as Key)), per_key: per_key.max(1) }
    }

    pub fn pick(&self, rng: &mut StdRng) -> Key {
        let mut inner = self.inner.lock().unwrap();
        let (slots, next) = &mut *inner;
        let slot = rng.gen_range(0..slots.len());
        slots[slot].1 += 1;
        let key = slots[slot].0;
        if slots[slot].1 >= self.per_key {
            slots[slot] = (*next, 0);
            *next += 1;
        }
        key
    }

    /// Every key handed out so far is below this.
    pub fn used(&self) -> Key {
        self.inner.lock().unwrap().1
    }
}

/// What a workload leaves for its checker besides the history.
#[derive(Debug)]
pub enum Extra {
    None,
    Watch(watches::Observed),
    Lease { unexpired: Vec<i64>, checked: usize },
    Mixed { unexpected_errors: HashMap<String, u64> },
}

/// Watch events, one JSON line each.
pub fn save_watch_events(path: &std::path::Path, events: &[Vec<WatchEvent>]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events.iter().flatten() {
        serde_json::to_writer(&mut file, event)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}

pub async fn run(kind: WorkloadKind, ctx: Arc<Ctx>) -> Result<Extra, String> {
    match kind {
        WorkloadKind::Register => register::run(ctx).await,
        WorkloadKind::ListAppend => list_append::run(ctx).await,
        WorkloadKind::Watch => watches::run(ctx).await,
        WorkloadKind::Lease => leases::run(ctx).await,
        WorkloadKind::Mixed => mixed::run(ctx).await,
    }
}

pub fn check(kind: WorkloadKind, ops: &[Operation], extra: &Extra) -> Vec<Verdict> {
    let mut verdicts = check_workload(kind, ops, extra);
    verdicts.push(check_revisions(ops));
    verdicts
}

/// etcd's revision contract over every acknowledged op, whatever the workload.
fn check_revisions(ops: &[Operation]) -> Verdict {
    let summary = jepsen::revisions::check(ops);
    match summary.violation {
        None => Verdict::ok(
            "revisions",
            format!(
                "{} ops in revision order (unique write revisions, real time kept), {} key reads saw the last write at their revision",
                summary.placed, summary.reads
            ),
        ),
        Some(violation) => Verdict::fail("revisions", violation.explain(ops)),
    }
}

fn check_workload(kind: WorkloadKind, ops: &[Operation], extra: &Extra) -> Vec<Verdict> {
    match (kind, extra) {
        (WorkloadKind::Register, _) => vec![register::check(ops)],
        (WorkloadKind::ListAppend, _) => vec![list_append::check(ops)],
        (WorkloadKind::Watch, Extra::Watch(observed)) => watches::check(ops, observed),
        (WorkloadKind::Lease, Extra::Lease { unexpired, checked }) => leases::check(ops, unexpired, *checked),
        (WorkloadKind::Mixed, Extra::Mixed { unexpected_errors }) => vec![mixed::check(unexpected_errors)],
        _ => vec![Verdict::fail("workload", "the workload returned nothing to check")],
    }
}
