//! The lease checker: a key attached to a lease that was revoked, or seen to have expired, is
//! never read afterwards.
//!
//! A lease is known to be gone from the earliest return of: a revoke that succeeded; a
//! TimeToLive answering "not found" or a keep-alive answering TTL 0; or a read of its key that saw
//! the key absent, invoked after the put that attached the key had returned. A put carries the
//! lease's id, and a put on a lease that is gone fails, so from then on no read invoked later may
//! see the key. Expiry itself is not bounded in time here: a new leader restarts lease clocks, so
//! only its observation counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::history::{Key, Op, Operation, Status, Value};

/// How a lease was seen to be gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    Revoked,
    NotFound,
    KeyAbsent,
}

/// A read of `key` that saw it present though its lease was gone before the read was invoked.
/// Op numbers index the checked `&[Operation]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Key,
    pub lease: i64,
    pub read: usize,
    /// The op that showed the lease gone, and how.
    pub evidence: usize,
    pub how: Gone,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} (lease {:x}) read present by op #{} after op #{} showed the lease gone ({:?})",
            self.key, self.lease, self.read, self.evidence, self.how
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub leases: usize,
    /// Reads that saw a lease key present / absent.
    pub present_reads: usize,
    pub absent_reads: usize,
    pub violations: Vec<Violation>,
    /// Reads that saw a value no put wrote to that key: (read op, key, value).
    pub unknown_values: Vec<(usize, Key, Value)>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty() && self.unknown_values.is_empty()
    }
}

pub fn check(ops: &[Operation]) -> Report {
    let mut report = Report::default();
    // key → (lease, value, put op)
    let mut puts: HashMap<Key, (i64, Value, usize)> = HashMap::new();
    for (index, op) in ops.iter().enumerate() {
        if let Op::LeasePut { key, value, lease } = op.input {
            puts.insert(key, (lease, value, index));
        }
    }
    // lease → (time it was known gone, evidence op, how)
    let mut gone: BTreeMap<i64, (u64, usize, Gone)> = BTreeMap::new();
    let mut note = |lease: i64, time: u64, index: usize, how: Gone| {
        let entry = gone.entry(lease).or_insert((time, index, how));
        if time < entry.0 {
            *entry = (time, index, how);
        }
    };
    for (index, op) in ops.iter().enumerate() {
        if op.status != Status::Ok {
            continue;
        }
        match (&op.input, &op.output) {
            (Op::LeaseRevoke { lease }, _) => note(*lease, op.return_ns, index, Gone::Revoked),
            (_, Some(Op::LeaseLookup { lease, ttl: Some(ttl) })) if *ttl < 0 => {
                note(*lease, op.return_ns, index, Gone::NotFound)
            }
            (_, Some(Op::LeaseKeepAlive { lease, ttl: Some(ttl) })) if *ttl <= 0 => {
                note(*lease, op.return_ns, index, Gone::NotFound)
            }
            (Op::Read { key, .. }, Some(Op::Read { value: None, .. })) => {
                report.absent_reads += 1;
                if let Some(&(lease, _, put)) = puts.get(key) {
                    let put = &ops[put];
                    if put.status == Status::Ok && put.return_ns < op.call_ns {
                        note(lease, op.return_ns, index, Gone::KeyAbsent);
                    }
                }
            }
            _ => {}
        }
    }
    report.leases =
        ops.iter().filter(|op| matches!(op.input, Op::LeaseGrant { .. }) && op.status == Status::Ok).count();
    for (index, op) in ops.iter().enumerate() {
        let (Status::Ok, Op::Read { key, .. }, Some(Op::Read { value: Some(value), .. })) =
            (op.status, &op.input, &op.output)
        else {
            continue;
        };
        report.present_reads += 1;
        let Some(&(lease, written, _)) = puts.get(key) else {
            report.unknown_values.push((index, *key, *value));
            continue;
        };
        if written != *value {
            report.unknown_values.push((index, *key, *value));
        }
        if let Some(&(time, evidence, how)) = gone.get(&lease) {
            if op.call_ns > time {
                report.violations.push(Violation { key: *key, lease, read: index, evidence, how });
            }
        }
    }
    report
}
