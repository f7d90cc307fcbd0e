//! Verdicts and the run's summary: one line per check on the console, `summary.json` and
//! `summary.txt` in the run directory.

use std::collections::BTreeMap;
use std::path::Path;

use jepsen::history::{Op, Operation, Status};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Fail,
    /// The checker could not decide (a search ran out of steps).
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
}

impl Verdict {
    pub fn ok(check: &str, detail: impl Into<String>) -> Verdict {
        Verdict { check: check.to_string(), status: CheckStatus::Ok, detail: detail.into() }
    }

    pub fn fail(check: &str, detail: impl Into<String>) -> Verdict {
        Verdict { check: check.to_string(), status: CheckStatus::Fail, detail: detail.into() }
    }

    pub fn unknown(check: &str, detail: impl Into<String>) -> Verdict {
        Verdict { check: check.to_string(), status: CheckStatus::Unknown, detail: detail.into() }
    }

    pub fn line(&self) -> String {
        let status = match self.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Unknown => "unknown",
        };
        format!("VERDICT {:<24} {status:<7} {}", self.check, self.detail)
    }
}

/// Operation counts by function and outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub total: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub by_f: BTreeMap<String, [u64; 3]>,
}

pub fn op_name(op: &Op) -> String {
    match op {
        Op::Read { .. } => "read".into(),
        Op::Write { .. } => "write".into(),
        Op::Cas { .. } => "cas".into(),
        Op::Txn { .. } => "txn".into(),
        Op::LeaseGrant { .. } => "lease-grant".into(),
        Op::LeasePut { .. } => "lease-put".into(),
        Op::LeaseRevoke { .. } => "lease-revoke".into(),
        Op::LeaseKeepAlive { .. } => "lease-keepalive".into(),
        Op::LeaseLookup { .. } => "lease-ttl".into(),
        Op::Other { name, .. } => name.clone(),
    }
}

pub fn count(ops: &[Operation]) -> Counts {
    let mut counts = Counts::default();
    for op in ops {
        counts.total += 1;
        let slot = match op.status {
            Status::Ok => {
                counts.ok += 1;
                0
            }
            Status::Fail => {
                counts.fail += 1;
                1
            }
            Status::Info => {
                counts.info += 1;
                2
            }
        };
        counts.by_f.entry(op_name(&op.input)).or_default()[slot] += 1;
    }
    counts
}

/// The share of ops that succeeded among those invoked while each kind of fault was in force
/// ("none": no fault): (kind, ops invoked, ok).
pub fn availability(ops: &[Operation], windows: &[(String, u64, u64)]) -> Vec<(String, u64, u64)> {
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for op in ops {
        let kind = windows
            .iter()
            .find(|(_, start, end)| (*start..*end).contains(&op.call_ns))
            .map_or("none", |(kind, _, _)| kind.as_str());
        let entry = by_kind.entry(kind.to_string()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(op.status == Status::Ok);
    }
    by_kind.into_iter().map(|(kind, (total, ok))| (kind, total, ok)).collect()
}

#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub command: String,
    pub target: String,
    pub nodes: usize,
    pub workload: String,
    pub faults: Vec<String>,
    pub seed: u64,
    pub net: String,
    pub notes: &'a [String],
    pub time_limit_s: u64,
    pub elapsed_s: f64,
    pub check_s: f64,
    pub ops: &'a Counts,
    /// (fault kind, ops invoked during it, of which ok)
    pub availability: &'a [(String, u64, u64)],
    pub fault_summary: &'a crate::faults::FaultSummary,
    pub verdicts: &'a [Verdict],
    pub valid: bool,
}

pub fn write(dir: &Path, summary: &Summary<'_>) -> std::io::Result<()> {
    std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?)?;
    let mut text = format!(
        "{}\nnet: {}\nops: {} ({} ok, {} fail, {} info)\n",
        summary.command, summary.net, summary.ops.total, summary.ops.ok, summary.ops.fail, summary.ops.info
    );
    for (f, [ok, fail, info]) in &summary.ops.by_f {
        text.push_str(&format!("  {f:<16} {ok:>7} ok {fail:>7} fail {info:>7} info\n"));
    }
    text.push_str(&format!("faults started: {:?}\n", summary.fault_summary.started));
    if summary.fault_summary.started.contains_key("power-loss") {
        text.push_str(&format!(
            "power losses: unsynced writes of {} files dropped ({} bytes); {} cut every member\n",
            summary.fault_summary.power_loss_files,
            summary.fault_summary.power_loss_bytes,
            summary.fault_summary.power_loss_all
        ));
    }
    for (kind, total, ok) in summary.availability {
        text.push_str(&format!("availability during {kind:<10} {ok:>7}/{total:<7} ok\n"));
    }
    for verdict in summary.verdicts {
        text.push_str(&verdict.line());
        text.push('\n');
    }
    std::fs::write(dir.join("summary.txt"), text)
}
