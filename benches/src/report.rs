//! A workload's result: one human line (plus a detail line for watch and leases) and the same
//! figures as JSON for `--json`.

use serde::Serialize;

use crate::driver::Tally;
use crate::histogram::Histogram;

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl From<&Histogram> for Latency {
    fn from(histogram: &Histogram) -> Latency {
        let ms = |nanos: u64| nanos as f64 / 1e6;
        Latency {
            count: histogram.count(),
            mean: histogram.mean() / 1e6,
            p50: ms(histogram.quantile(0.50)),
            p99: ms(histogram.quantile(0.99)),
            p999: ms(histogram.quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

impl Latency {
    fn human(&self) -> String {
        format!(
            "p50 {} p99 {} p99.9 {} max {}",
            milliseconds(self.p50),
            milliseconds(self.p99),
            milliseconds(self.p999),
            milliseconds(self.max)
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    /// The keel-bench command line that produced it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    pub endpoints: Vec<String>,
    pub clients: u64,
    pub conns: u64,
    /// Answered operations (for `watch`: acknowledged writes; `leases`: keep-alives).
    pub ops: u64,
    pub errors: u64,
    /// `txn-cas` only: answered, but the compare failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<u64>,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Per operation (for `watch`: event delivery, write to receipt).
    pub latency_ms: Latency,
    pub error_samples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<LeaseStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_large: Option<RangeLargeStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchStats {
    pub watchers: u64,
    pub streams: u64,
    pub writes: u64,
    /// Acknowledged writes × watchers.
    pub expected_events: u64,
    pub received_events: u64,
    /// expected − received (0 when more arrived, e.g. from a write that timed out but applied).
    pub lost_events: u64,
    pub events_per_sec: f64,
    /// Watchers canceled by the server, or whose stream failed.
    pub watch_errors: u64,
    pub write_latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseStats {
    pub leases: u64,
    pub ttl_seconds: i64,
    pub keepalive_interval_ms: f64,
    pub grant_errors: u64,
    pub grant_latency_ms: Latency,
    /// Keep-alives unanswered, failed, or answered with TTL ≤ 0 (the lease had expired).
    pub keepalive_failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeLargeStats {
    pub keys: u64,
    pub keys_only: bool,
    pub preload_seconds: f64,
    /// The encoded size of one full reply (the RangeResponse protobuf), 0 if none was read.
    pub reply_bytes: u64,
}

impl Report {
    /// The driver's tally as a report; the workload adds its own details.
    pub fn new(workload: &str, common: &crate::cli::Common, tally: &Tally) -> Report {
        let seconds = tally.elapsed.as_secs_f64();
        Report {
            workload: workload.to_string(),
            command: String::new(),
            endpoints: common.endpoints.clone(),
            clients: common.clients,
            conns: common.conns,
            ops: tally.ops,
            errors: tally.errors,
            conflicts: None,
            seconds,
            ops_per_sec: if seconds > 0.0 { tally.ops as f64 / seconds } else { 0.0 },
            latency_ms: Latency::from(&tally.latency),
            error_samples: tally.error_samples.clone(),
            watch: None,
            leases: None,
            range_large: None,
        }
    }

    /// `put: 200 ops in 0.41 s = 487.1 ops/s; latency p50 1.92 ms ...; errors 0`, and a detail
    /// line for the workloads that have one.
    pub fn human(&self) -> String {
        let (ops, latency) = match self.workload.as_str() {
            "watch" => ("writes", "delivery latency"),
            "leases" => ("keep-alives", "latency"),
            _ => ("ops", "latency"),
        };
        let mut line = format!(
            "{}: {} {ops} in {:.2} s = {:.1} {ops}/s; {latency} {}; errors {}",
            self.workload,
            self.ops,
            self.seconds,
            self.ops_per_sec,
            self.latency_ms.human(),
            self.errors
        );
        if let Some(conflicts) = self.conflicts {
            line += &format!("; conflicts {conflicts}");
        }
        if let Some(watch) = &self.watch {
            line += &format!(
                "\n  watch: {} watchers on {} streams; {} writes acknowledged; events {}/{} received, {} lost, {:.1} events/s; \
                 watch errors {}; write latency {}",
                watch.watchers,
                watch.streams,
                watch.writes,
                watch.received_events,
                watch.expected_events,
                watch.lost_events,
                watch.events_per_sec,
                watch.watch_errors,
                watch.write_latency_ms.human()
            );
        }
        if let Some(leases) = &self.leases {
            line += &format!(
                "\n  leases: {} leases, TTL {} s, keep-alive every {:.0} ms; keep-alive failures {}; grant errors {}; \
                 grant latency {}",
                leases.leases,
                leases.ttl_seconds,
                leases.keepalive_interval_ms,
                leases.keepalive_failures,
                leases.grant_errors,
                leases.grant_latency_ms.human()
            );
        }
        if let Some(large) = &self.range_large {
            line += &format!(
                "\n  range-large: {} keys{} per range; preload {:.2} s",
                large.keys,
                if large.keys_only { " (keys only)" } else { "" },
                large.preload_seconds
            );
        }
        for sample in &self.error_samples {
            line += &format!("\n  error: {sample}");
        }
        line
    }
}

fn milliseconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 1.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.3} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_line_and_json_carry_the_same_figures() {
        let mut tally = Tally::default();
        for millis in 1..=100 {
            tally.count(crate::driver::Outcome::Ok, Duration::from_millis(millis));
        }
        tally.elapsed = Duration::from_secs(2);
        let common = <crate::cli::Cli as clap::Parser>::parse_from(["keel-bench", "put"]).common;
        let report = Report::new("put", &common, &tally);
        let line = report.human();
        assert!(line.starts_with("put: 100 ops in 2.00 s = 50.0 ops/s; latency p50 "), "{line}");
        assert!(line.contains("max 100 ms; errors 0"), "{line}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ops"], 100);
        assert_eq!(json["errors"], 0);
        assert_eq!(json["latency_ms"]["max"], 100.0);
        let p50 = json["latency_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 50.0).abs() <= 0.5, "p50 {p50}");
        assert!(json.get("watch").is_none());
    }
}
