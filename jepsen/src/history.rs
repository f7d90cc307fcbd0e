//! The operation history: what a test run records and the checkers read.
//!
//! One JSON object per line, one line per event. A process *invokes* an op, then completes it
//! with `ok` (it took effect; the op carries what was observed), `fail` (it certainly did not take
//! effect) or `info` (unknown: a timeout or a dropped connection). Events are written as they
//! happen, so a file is in real-time order, and each process has at most one op outstanding.
//!
//! Ops on a key use `ok` only for a request that was applied: a compare-and-set whose compare
//! failed is `ok` with `applied: false` (it observed the value differed), not `fail`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A key of the workload; the client maps it to an etcd key.
pub type Key = u64;
/// A value; workloads write each value at most once per key, which is what lets a read tell
/// which write it saw.
pub type Value = u64;

/// `return_ns` of an op whose outcome is unknown: it may take effect at any time after its
/// invocation, or never.
pub const NEVER: u64 = u64::MAX;

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: u64,
    pub kind: EventKind,
    /// From one monotonic clock for the whole run.
    pub time_ns: u64,
    pub op: Op,
    /// The etcd revision of the response header, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Why a `fail` or `info` completion did not succeed, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    pub fn new(process: u64, kind: EventKind, time_ns: u64, op: Op) -> Self {
        Event { process, kind, time_ns, op, revision: None, error: None }
    }

    pub fn with_revision(mut self, revision: i64) -> Self {
        self.revision = Some(revision);
        self
    }
}

/// An operation as invoked (observations unset) or as completed (observations filled in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum Op {
    /// Reads a register; on completion `value` is what was seen, `None` meaning the key is absent,
    /// and `mod_revision` the revision that wrote it (0 for an absent key).
    Read {
        key: Key,
        #[serde(default)]
        value: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mod_revision: Option<i64>,
    },
    Write {
        key: Key,
        value: Value,
    },
    /// Writes `new` if the current value is `expected` (`None`: the key is absent).
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
        /// Set on completion. An `ok` completion without it counts as applied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied: Option<bool>,
    },
    /// A list-append transaction.
    Txn {
        mops: Vec<MicroOp>,
    },
    /// Grants a lease of `ttl` seconds; on completion `lease` is the granted id.
    LeaseGrant {
        ttl: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<i64>,
    },
    /// Puts `value` on `key` attached to `lease`.
    LeasePut {
        key: Key,
        value: Value,
        lease: i64,
    },
    LeaseRevoke {
        lease: i64,
    },
    /// One keep-alive round trip; on completion `ttl` is the TTL the server answered (0 or less:
    /// the lease is gone).
    LeaseKeepAlive {
        lease: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<i64>,
    },
    /// TimeToLive; on completion `ttl` is the remaining TTL, -1 when the lease is not found.
    LeaseLookup {
        lease: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<i64>,
    },
    /// Traffic no checker models (the mixed workload): `name` is the request (get, range, put,
    /// delete, txn, compact, ...), `key` its key if it has one, `detail` what came back.
    Other {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Key>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The value a put (or a txn's put) writes; unique in the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        /// What a get or range returned: (key, value, mod_revision) of each key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<Vec<(Key, Value, i64)>>,
    },
}

/// One step of a list-append transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum MicroOp {
    Append {
        key: Key,
        value: Value,
    },
    /// On completion `value` is the whole list seen (empty for an absent key).
    Read {
        key: Key,
        #[serde(default)]
        value: Option<Vec<Value>>,
    },
}

impl Op {
    /// The key of a register op; `None` for any other op.
    pub fn key(&self) -> Option<Key> {
        match self {
            Op::Read { key, .. } | Op::Write { key, .. } | Op::Cas { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// Whether `completion` completes this invocation: same kind and arguments, observations aside.
    fn completed_by(&self, completion: &Op) -> bool {
        match (self, completion) {
            (Op::Read { key: a, .. }, Op::Read { key: b, .. }) => a == b,
            (Op::Write { .. }, Op::Write { .. }) => self == completion,
            (Op::Cas { key, expected, new, .. }, Op::Cas { key: k, expected: e, new: n, .. }) => {
                (key, expected, new) == (k, e, n)
            }
            (Op::Txn { mops: a }, Op::Txn { mops: b }) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|pair| match pair {
                        (MicroOp::Append { .. }, MicroOp::Append { .. }) => pair.0 == pair.1,
                        (MicroOp::Read { key: a, .. }, MicroOp::Read { key: b, .. }) => a == b,
                        _ => false,
                    })
            }
            (Op::LeaseGrant { ttl: a, .. }, Op::LeaseGrant { ttl: b, .. }) => a == b,
            (Op::LeasePut { .. }, Op::LeasePut { .. }) | (Op::LeaseRevoke { .. }, Op::LeaseRevoke { .. }) => {
                self == completion
            }
            (Op::LeaseKeepAlive { lease: a, .. }, Op::LeaseKeepAlive { lease: b, .. })
            | (Op::LeaseLookup { lease: a, .. }, Op::LeaseLookup { lease: b, .. }) => a == b,
            (Op::Other { name: a, key: ka, .. }, Op::Other { name: b, key: kb, .. }) => (a, ka) == (b, kb),
            _ => false,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Fail,
    /// Unknown outcome, including ops still outstanding when the history ends.
    Info,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub call_ns: u64,
    /// [`NEVER`] when the status is `Info`.
    pub return_ns: u64,
    /// The op as invoked.
    pub input: Op,
    /// The op as completed, with its observations; `None` when the status is `Info`, since an
    /// unknown outcome observed nothing reliable.
    pub output: Option<Op>,
    pub status: Status,
    pub revision: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("history line {line}: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("event {event}: process {process} completes an op it never invoked")]
    NotInvoked { event: usize, process: u64 },
    #[error("event {event}: process {process} invokes while its op of event {pending} is outstanding")]
    Outstanding { event: usize, process: u64, pending: usize },
    #[error("event {event}: completion does not match the invocation of event {invoked}")]
    Mismatch { event: usize, invoked: usize },
    #[error("event {event}: completion is earlier than the invocation of event {invoked}")]
    Backwards { event: usize, invoked: usize },
}

/// Events in the order they were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Parses JSON lines; blank lines are skipped. Line numbers in errors start at 1.
    pub fn read_jsonl(reader: impl BufRead) -> Result<Self, HistoryError> {
        let mut events = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&line).map_err(|source| HistoryError::Json { line: i + 1, source })?;
            events.push(event);
        }
        Ok(History { events })
    }

    pub fn write_jsonl(&self, mut writer: impl Write) -> Result<(), HistoryError> {
        for event in &self.events {
            serde_json::to_writer(&mut writer, event).map_err(std::io::Error::from)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        History::read_jsonl(BufReader::new(File::open(path)?))
    }

    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        self.write_jsonl(BufWriter::new(File::create(path)?))
    }

    /// Pairs each invocation with the next completion of the same process, in invocation order.
    /// An invocation that never completes is `Info`: the process may have crashed mid-request.
    pub fn operations(&self) -> Result<Vec<Operation>, HistoryError> {
        let mut ops: Vec<Operation> = Vec::new();
        // process → (index into ops, event index of the invocation)
        let mut pending: HashMap<u64, (usize, usize)> = HashMap::new();
        for (event_index, event) in self.events.iter().enumerate() {
            let process = event.process;
            if event.kind == EventKind::Invoke {
                if let Some(&(_, invoked)) = pending.get(&process) {
                    return Err(HistoryError::Outstanding { event: event_index, process, pending: invoked });
                }
                pending.insert(process, (ops.len(), event_index));
                ops.push(Operation {
                    process,
                    call_ns: event.time_ns,
                    return_ns: NEVER,
                    input: event.op.clone(),
                    output: None,
                    status: Status::Info,
                    revision: None,
                });
                continue;
            }
            let Some((op_index, invoked)) = pending.remove(&process) else {
                return Err(HistoryError::NotInvoked { event: event_index, process });
            };
            let op = &mut ops[op_index];
            if !op.input.completed_by(&event.op) {
                return Err(HistoryError::Mismatch { event: event_index, invoked });
            }
            if event.time_ns < op.call_ns {
                return Err(HistoryError::Backwards { event: event_index, invoked });
            }
            op.revision = event.revision;
            match event.kind {
                EventKind::Ok | EventKind::Fail => {
                    op.status = if event.kind == EventKind::Ok { Status::Ok } else { Status::Fail };
                    op.return_ns = event.time_ns;
                    op.output = Some(event.op.clone());
                }
                EventKind::Info | EventKind::Invoke => {}
            }
        }
        Ok(ops)
    }
}
