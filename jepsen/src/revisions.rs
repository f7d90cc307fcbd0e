//! etcd's revision contract, checked over a whole history across keys.
//!
//! Every write (put, delete that deleted something, txn that wrote) is one step of a single
//! global revision counter, and every response header carries the revision the request saw or
//! made. For a linearizable store the revisions *are* the linearization order, so:
//! - **unique**: no two acknowledged writes share a revision;
//! - **real time**: if op A returned before op B was invoked, B is not ordered before A. A write
//!   at revision r sits at position 2r, a read at header revision h at 2h+1 (after the write that
//!   made h, before the next), and positions never decrease along real time;
//! - **reads see their revision**: a read of a register key at header revision h that returned
//!   the version written at m saw the last write of the key at or below h, so no acknowledged
//!   write of that key has a revision in (m, h], and an acknowledged write of the value it saw
//!   was made at m.
//!
//! The per-key linearizability search ([`crate::register`]) cannot see the first two across keys:
//! a read of key B served at an old revision is a stale read even when B itself did not change.

use std::collections::{BTreeMap, HashMap};

use crate::history::{Key, MicroOp, Op, Operation, Status, Value};

/// Where an acknowledged op sits in etcd's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// It made revision `r`.
    Write(i64),
    /// It read the store at header revision `h`.
    Read(i64),
}

impl Place {
    fn position(self) -> i64 {
        match self {
            Place::Write(revision) => 2 * revision,
            Place::Read(revision) => 2 * revision + 1,
        }
    }
}

/// A broken revision contract, with the ops (indices into the checked slice) that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two acknowledged writes got the same revision.
    SharedRevision { revision: i64, first: usize, second: usize },
    /// `later` was invoked after `earlier` returned, yet sits before it in revision order.
    RealTime { earlier: usize, later: usize },
    /// A read at header revision `read`'s missed the write `missed`, made at or below it after
    /// the version it returned.
    MissedWrite { read: usize, missed: usize },
    /// A read returned a value with a revision other than the one its acknowledged write got, or
    /// one above its own header revision.
    WrongRevision { read: usize, write: Option<usize> },
}

impl Violation {
    /// One line for people, with each op as the history holds it.
    pub fn explain(&self, ops: &[Operation]) -> String {
        let show = |index: usize| {
            let op = &ops[index];
            let seen = op.output.as_ref().unwrap_or(&op.input);
            format!(
                "#{index} p{} [{}, {}] {seen:?} at revision {:?}",
                op.process, op.call_ns, op.return_ns, op.revision
            )
        };
        match self {
            Violation::SharedRevision { revision, first, second } => {
                format!("two writes acknowledged at revision {revision}: {} and {}", show(*first), show(*second))
            }
            Violation::RealTime { earlier, later } => format!(
                "{} was invoked after {} returned, but is ordered before it by revision",
                show(*later),
                show(*earlier)
            ),
            Violation::MissedWrite { read, missed } => {
                format!("{} did not see {}, made at or below the read's revision", show(*read), show(*missed))
            }
            Violation::WrongRevision { read, write: Some(write) } => {
                format!("{} shows the value of {} at another revision", show(*read), show(*write))
            }
            Violation::WrongRevision { read, write: None } => {
                format!("{} returned a version newer than the revision it was read at", show(*read))
            }
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Acknowledged ops placed in revision order.
    pub placed: usize,
    /// Reads of a key compared with that key's writes.
    pub reads: usize,
    /// The first violation found.
    pub violation: Option<Violation>,
}

/// Checks the contract over every acknowledged op that has a revision; ops of unknown outcome
/// and failed ops take no place.
pub fn check(ops: &[Operation]) -> Summary {
    let placed: Vec<(usize, Place)> =
        ops.iter().enumerate().filter_map(|(index, op)| place(op).map(|place| (index, place))).collect();
    let (writes, reads) = key_writes_and_reads(ops);
    let violation = shared_revision(&placed)
        .or_else(|| real_time(ops, &placed))
        .or_else(|| reads_see_their_revision(ops, &writes, &reads));
    Summary { placed: placed.len(), reads: reads.len(), violation }
}

/// The op's place, if it was acknowledged with a header revision and its kind says whether it
/// wrote. Serializable reads (the mixed workload's `get-serializable`) promise no order and
/// lease calls move no revision they report, so they take none.
fn place(op: &Operation) -> Option<Place> {
    if op.status != Status::Ok {
        return None;
    }
    let revision = op.revision?;
    let output = op.output.as_ref()?;
    let wrote = match output {
        Op::Read { .. } => false,
        Op::Write { .. } | Op::LeasePut { .. } => true,
        Op::Cas { applied, .. } => applied.unwrap_or(true),
        Op::Txn { mops } => mops.iter().any(|mop| matches!(mop, MicroOp::Append { .. })),
        Op::Other { name, detail, .. } => match (name.as_str(), detail.as_deref()) {
            ("get" | "range", _) => false,
            ("put" | "lease-put", _) => true,
            ("delete", Some(detail)) => !detail.starts_with("0 deleted"),
            ("txn", Some(detail)) => detail.contains("succeeded true"),
            _ => return None,
        },
        Op::LeaseGrant { .. } | Op::LeaseRevoke { .. } | Op::LeaseKeepAlive { .. } | Op::LeaseLookup { .. } => {
            return None
        }
    };
    Some(if wrote { Place::Write(revision) } else { Place::Read(revision) })
}

fn shared_revision(placed: &[(usize, Place)]) -> Option<Violation> {
    let mut writers: HashMap<i64, usize> = HashMap::new();
    for &(index, place) in placed {
        if let Place::Write(revision) = place {
            if let Some(&first) = writers.get(&revision) {
                return Some(Violation::SharedRevision { revision, first, second: index });
            }
            writers.insert(revision, index);
        }
    }
    None
}

/// Sweeps invocations in time order, keeping the highest position among ops that had returned
/// before: an op placed below it was ordered before something that finished before it began.
fn real_time(ops: &[Operation], placed: &[(usize, Place)]) -> Option<Violation> {
    let mut by_return: Vec<(u64, i64, usize)> =
        placed.iter().map(|&(index, place)| (ops[index].return_ns, place.position(), index)).collect();
    by_return.sort_unstable();
    let mut by_call: Vec<(u64, i64, usize)> =
        placed.iter().map(|&(index, place)| (ops[index].call_ns, place.position(), index)).collect();
    by_call.sort_unstable();
    let mut returned = by_return.iter().peekable();
    let mut highest: Option<(i64, usize)> = None;
    for &(call_ns, position, index) in &by_call {
        while let Some(&&(return_ns, earlier_position, earlier)) = returned.peek() {
            if return_ns >= call_ns {
                break;
            }
            if highest.is_none_or(|(top, _)| earlier_position > top) {
                highest = Some((earlier_position, earlier));
            }
            returned.next();
        }
        if let Some((top, earlier)) = highest {
            if position < top {
                return Some(Violation::RealTime { earlier, later: index });
            }
        }
    }
    None
}

/// A write of one key at a known revision.
#[derive(Clone, Copy, Debug)]
struct KeyWrite {
    op: usize,
    /// `None`: a delete.
    value: Option<Value>,
    /// Put on a lease: the key may vanish later at a revision nobody reports (expiry).
    leased: bool,
}

/// A read of one key: what it returned at header revision `header`.
#[derive(Clone, Copy, Debug)]
struct KeyRead {
    op: usize,
    key: Key,
    header: i64,
    /// (value, mod_revision), or `None`: absent.
    seen: Option<(Value, i64)>,
}

/// Every acknowledged write of a key with its revision, and every read of a key with what it
/// returned: register ops, lease puts, and the mixed workload's puts, deletes, txns, gets and
/// ranges (a range only for the keys it returned). Serializable reads count here: they read a
/// consistent snapshot at their header revision, though not a current one.
fn key_writes_and_reads(ops: &[Operation]) -> (HashMap<Key, BTreeMap<i64, KeyWrite>>, Vec<KeyRead>) {
    let mut writes: HashMap<Key, BTreeMap<i64, KeyWrite>> = HashMap::new();
    let mut reads = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let (Status::Ok, Some(header), Some(output)) = (op.status, op.revision, op.output.as_ref()) else {
            continue;
        };
        let mut write = |key: Key, value: Option<Value>, leased: bool| {
            writes.entry(key).or_default().insert(header, KeyWrite { op: index, value, leased });
        };
        match output {
            Op::Write { key, value } => write(*key, Some(*value), false),
            Op::Cas { key, new, applied, .. } if applied.unwrap_or(true) => write(*key, Some(*new), false),
            Op::LeasePut { key, value, .. } => write(*key, Some(*value), true),
            Op::Read { key, value, mod_revision: Some(seen) } => {
                reads.push(KeyRead { op: index, key: *key, header, seen: value.map(|value| (value, *seen)) })
            }
            Op::Other { name, key: Some(key), detail, value, seen } => match (name.as_str(), detail.as_deref()) {
                ("put", _) => write(*key, *value, false),
                ("lease-put", _) => write(*key, *value, true),
                ("txn", Some(detail)) if detail.contains("succeeded true") => write(*key, *value, false),
                // The compare (version > 0) failed: the key was absent.
                ("txn", Some(_)) => reads.push(KeyRead { op: index, key: *key, header, seen: None }),
                ("delete", Some(detail)) if !detail.starts_with("0 deleted") => write(*key, None, false),
                ("delete", Some(_)) => reads.push(KeyRead { op: index, key: *key, header, seen: None }),
                ("get" | "get-serializable", _) => {
                    let found = seen.as_ref().and_then(|kvs| kvs.iter().find(|kv| kv.0 == *key));
                    reads.push(KeyRead { op: index, key: *key, header, seen: found.map(|kv| (kv.1, kv.2)) });
                }
                ("range", _) => {
                    for &(key, value, revision) in seen.iter().flatten() {
                        reads.push(KeyRead { op: index, key, header, seen: Some((value, revision)) });
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    (writes, reads)
}

/// Each read returned the last write of its key at or below its header revision. Values are
/// written once each, so the write a read returned is known by its value. What may delete a key
/// at a revision nobody reports (a lease's expiry, a delete or lease put of unknown outcome) makes
/// an absent read prove nothing.
fn reads_see_their_revision(
    ops: &[Operation],
    writes: &HashMap<Key, BTreeMap<i64, KeyWrite>>,
    reads: &[KeyRead],
) -> Option<Violation> {
    let mut write_of_value: HashMap<(Key, Value), usize> = HashMap::new();
    for (key, by_revision) in writes {
        for write in by_revision.values() {
            if let Some(value) = write.value {
                write_of_value.insert((*key, value), write.op);
            }
        }
    }
    // key → the earliest invocation of an unknown-outcome op that may have deleted it
    let mut may_delete_from: HashMap<Key, u64> = HashMap::new();
    for op in ops.iter().filter(|op| op.status == Status::Info) {
        if let Op::Other { name, key: Some(key), .. } = &op.input {
            if matches!(name.as_str(), "delete" | "lease-put") {
                let earliest = may_delete_from.entry(*key).or_insert(op.call_ns);
                *earliest = (*earliest).min(op.call_ns);
            }
        }
    }
    for read in reads {
        let by_revision = writes.get(&read.key);
        let last_write_at_or_below =
            |revision: i64| by_revision.and_then(|writes| writes.range(..=revision).next_back());
        match read.seen {
            Some((value, seen)) => {
                if seen > read.header {
                    return Some(Violation::WrongRevision { read: read.op, write: None });
                }
                if let Some(&write) = write_of_value.get(&(read.key, value)) {
                    if ops[write].revision != Some(seen) {
                        return Some(Violation::WrongRevision { read: read.op, write: Some(write) });
                    }
                }
                if let Some((_, missed)) = last_write_at_or_below(read.header).filter(|(revision, _)| **revision > seen)
                {
                    return Some(Violation::MissedWrite { read: read.op, missed: missed.op });
                }
            }
            None => {
                let Some((_, last)) = last_write_at_or_below(read.header) else { continue };
                let uncertain = may_delete_from.get(&read.key).is_some_and(|&call| call < ops[read.op].return_ns);
                if last.value.is_some() && !last.leased && !uncertain {
                    return Some(Violation::MissedWrite { read: read.op, missed: last.op });
                }
            }
        }
    }
    None
}
