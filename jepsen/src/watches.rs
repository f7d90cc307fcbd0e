//! The watch checker: what every watcher of the workload's prefix received, against each other
//! and against the history of acknowledged writes.
//!
//! The workload's writes are single puts under the prefix, and nothing else changes the store
//! while it runs, so every revision after the start revision is exactly one put event. Each
//! watcher, resumed from its last revision + 1 after every reconnect, must then have received:
//! - events in strictly increasing revisions (ordered, no duplicates);
//! - every revision from the start to the final one (no gaps);
//! - the same events as every other watcher;
//! - each acknowledged put at the revision its response carried, with its key and value;
//! - no value that was never written, or whose write certainly failed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::history::{Key, Op, Operation, Status, Value};

/// One event as a watcher received it (one line of `watches.jsonl`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub watcher: u64,
    pub revision: i64,
    pub key: Key,
    /// `None` for a delete event.
    pub value: Option<Value>,
    /// When it was received, on the history's clock.
    pub time_ns: u64,
}

/// At most this many problems are listed; the count is still exact.
const MAX_LISTED: usize = 20;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub watchers: usize,
    pub events: usize,
    pub problem_count: usize,
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        }
    }
}

/// `watchers[w]` is watcher w's events in arrival order; they watched from `start + 1` and were
/// drained up to `end`, the store's revision after the last write.
pub fn check(watchers: &[Vec<WatchEvent>], start: i64, end: i64, ops: &[Operation]) -> Report {
    let mut report = Report { watchers: watchers.len(), ..Report::default() };
    // (key, value) → status of its write; revision → (key, value) of acknowledged writes.
    let mut writes: HashMap<(Key, Value), Status> = HashMap::new();
    let mut acknowledged: HashMap<i64, (Key, Value)> = HashMap::new();
    for op in ops {
        if let Op::Write { key, value } = op.input {
            writes.insert((key, value), op.status);
            if let (Status::Ok, Some(revision)) = (op.status, op.revision) {
                acknowledged.insert(revision, (key, value));
            }
        }
    }
    for (w, events) in watchers.iter().enumerate() {
        report.events += events.len();
        let mut expected = start + 1;
        for event in events {
            if event.revision < expected {
                report.problem(format!(
                    "watcher {w}: revision {} again or out of order (expected {expected})",
                    event.revision
                ));
                continue;
            }
            if event.revision > expected {
                report.problem(format!("watcher {w}: gap, revisions {expected}..{} missing", event.revision - 1));
            }
            expected = event.revision + 1;
            match event.value {
                None => {
                    report.problem(format!("watcher {w}: delete event at revision {}, nothing deleted", event.revision))
                }
                Some(value) => match writes.get(&(event.key, value)) {
                    None => report.problem(format!(
                        "watcher {w}: revision {} put {}={value}, a value never written",
                        event.revision, event.key
                    )),
                    Some(Status::Fail) => report.problem(format!(
                        "watcher {w}: revision {} put {}={value}, whose write failed",
                        event.revision, event.key
                    )),
                    Some(_) => {}
                },
            }
            if let Some(&(key, value)) = acknowledged.get(&event.revision) {
                if (event.key, event.value) != (key, Some(value)) {
                    report.problem(format!(
                        "watcher {w}: revision {} is {}={:?}, but the put acknowledged at that revision wrote {key}={value}",
                        event.revision, event.key, event.value
                    ));
                }
            }
        }
        if expected <= end {
            report.problem(format!("watcher {w}: stopped at revision {}, the final revision is {end}", expected - 1));
        }
    }
    for (revision, (key, value)) in &acknowledged {
        if *revision > start && *revision <= end {
            for (w, events) in watchers.iter().enumerate() {
                if !events.iter().any(|e| e.revision == *revision) {
                    report
                        .problem(format!("watcher {w}: missed acknowledged put {key}={value} at revision {revision}"));
                }
            }
        }
    }
    // Agreement, revision by revision.
    let mut seen: HashMap<i64, (usize, Key, Option<Value>)> = HashMap::new();
    for (w, events) in watchers.iter().enumerate() {
        for event in events {
            match seen.get(&event.revision) {
                Some(&(other, key, value)) if (key, value) != (event.key, event.value) => report.problem(format!(
                    "watchers {other} and {w} disagree at revision {}: {key}={value:?} vs {}={:?}",
                    event.revision, event.key, event.value
                )),
                Some(_) => {}
                None => {
                    seen.insert(event.revision, (w, event.key, event.value));
                }
            }
        }
    }
    report
}
