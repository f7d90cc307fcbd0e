//! The register workload: each key is an etcd key holding a value or absent, with read, write and
//! compare-and-set, checked for linearizability key by key against etcd's KV with revisions: a
//! write takes a revision above every earlier write of the key, and a read returns the value with
//! the revision that wrote it, in a response whose header revision is at least that.
//!
//! Revisions bind more than the search can see key by key; [`crate::revisions`] checks the rest
//! (real-time order across keys, and that a read at header revision H saw the last write at or
//! below H).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::history::{Key, Op, Operation, Status, Value, NEVER};
use crate::linearizable::{self, Model, ModelOp, Outcome};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    Read,
    Write(Value),
    Cas { expected: Option<Value>, new: Value },
}

/// What an op returned. Revisions are `None` where the history has none (they are then not
/// checked).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// What the read saw (`None`: absent), the revision that wrote it (0: absent) and the
    /// response's header revision.
    Read { value: Option<Value>, mod_revision: Option<i64>, header: Option<i64> },
    /// Written at `revision`.
    Written { revision: Option<i64> },
    /// `revision`: the write's if applied, the header's (when the compare read) if not.
    Cas { applied: bool, revision: Option<i64> },
    /// The op's outcome is unknown; `revision` is the one a read showed it took effect at.
    Unknown { revision: Option<i64> },
}

impl RegisterOutput {
    /// A completed read of `value`, without revisions.
    pub fn read(value: Option<Value>) -> Self {
        RegisterOutput::Read { value, mod_revision: None, header: None }
    }
}

/// A register op as the search sees it.
pub type RegisterOp = ModelOp<RegisterInput, RegisterOutput>;

/// One key as etcd holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterState {
    /// `None` while the key is absent.
    pub value: Option<Value>,
    /// The revision that wrote the value (0: never written); `None` when an op of unknown
    /// outcome wrote it and no read saw at which revision.
    pub mod_revision: Option<i64>,
    /// The highest write revision known so far: the next write's must be above it.
    pub floor: i64,
}

/// One key with etcd semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register;

impl Register {
    fn write(state: &RegisterState, value: Value, revision: Option<i64>) -> Option<RegisterState> {
        match revision {
            Some(revision) if revision <= state.floor => None,
            Some(revision) => Some(RegisterState { value: Some(value), mod_revision: Some(revision), floor: revision }),
            None => Some(RegisterState { value: Some(value), mod_revision: None, ..*state }),
        }
    }

    /// Whether a response at `header` can have seen `state`: not before the revision that wrote it.
    fn seen_at(state: &RegisterState, header: Option<i64>) -> bool {
        header.is_none_or(|header| header >= state.mod_revision.unwrap_or(state.floor))
    }
}

impl Model for Register {
    type State = RegisterState;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init() -> RegisterState {
        RegisterState { value: None, mod_revision: Some(0), floor: 0 }
    }

    fn step(state: &RegisterState, input: &RegisterInput, output: &RegisterOutput) -> Option<RegisterState> {
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::Read { value, mod_revision, header }) => {
                let same_revision = match (mod_revision, state.mod_revision) {
                    (Some(seen), Some(held)) => *seen == held,
                    _ => true,
                };
                (*value == state.value && same_revision && Register::seen_at(state, *header)).then_some(*state)
            }
            (
                RegisterInput::Write(value),
                RegisterOutput::Written { revision } | RegisterOutput::Unknown { revision },
            ) => Register::write(state, *value, *revision),
            // A cas of unknown outcome that took effect here applied iff the compare held; if it
            // did not hold, taking effect changed nothing, the same as never taking effect.
            (
                RegisterInput::Cas { expected, new },
                RegisterOutput::Cas { applied: true, revision } | RegisterOutput::Unknown { revision },
            ) => {
                if *expected != state.value {
                    return None;
                }
                Register::write(state, *new, *revision)
            }
            // A compare that failed is a read: the value was not `expected`.
            (RegisterInput::Cas { expected, .. }, RegisterOutput::Cas { applied: false, revision }) => {
                (*expected != state.value && Register::seen_at(state, *revision)).then_some(*state)
            }
            _ => None,
        }
    }

    fn read_only(input: &RegisterInput, output: &RegisterOutput) -> bool {
        matches!((input, output), (RegisterInput::Read, _) | (_, RegisterOutput::Cas { applied: false, .. }))
    }
}

/// Bounds of the search, per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Model steps the search may try on one key before giving up with `Unknown`. The cache holds
    /// at most one small entry per step, so this also bounds memory.
    pub max_steps: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { max_steps: 10_000_000 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Illegal(Box<Illegal>),
    /// No key was illegal, but this one's search ran out of steps.
    Unknown {
        key: Key,
        steps: u64,
    },
}

/// A key whose history has no linearization. Op numbers index the checked `&[Operation]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Illegal {
    pub key: Key,
    /// The longest linearizable prefix found, in linearization order.
    pub linearized: Vec<usize>,
    /// An op that had completed by then but could not follow the prefix.
    pub blocked: usize,
    /// The key after the prefix. If its value is one no op observed, it is the smallest such
    /// value written to the key: the checker does not tell those apart.
    pub state: RegisterState,
}

impl Illegal {
    /// A short account: the end of the prefix, the state it leaves, and the op that cannot follow.
    pub fn explain(&self, ops: &[Operation]) -> String {
        const TAIL: usize = 8;
        let mut out = format!("key {}: {} ops linearize, ", self.key, self.linearized.len());
        let _ = writeln!(out, "ending with:");
        for &i in &self.linearized[self.linearized.len().saturating_sub(TAIL)..] {
            let _ = writeln!(out, "  {}", describe(i, &ops[i]));
        }
        let _ = writeln!(out, "leaving {:?}; then no pending op fits, though this one had returned:", self.state);
        let _ = write!(out, "  {}", describe(self.blocked, &ops[self.blocked]));
        out
    }
}

fn describe(index: usize, op: &Operation) -> String {
    let end = if op.return_ns == NEVER { "?".to_string() } else { op.return_ns.to_string() };
    let seen = op.output.as_ref().unwrap_or(&op.input);
    format!("#{index} p{} [{}, {end}] {:?} {:?}", op.process, op.call_ns, op.status, seen)
}

/// Checks every register op of `ops` (transactions are ignored), one key at a time. An `Illegal`
/// key wins over an `Unknown` one, whatever their order.
pub fn check_registers(ops: &[Operation], options: &CheckOptions) -> Verdict {
    let mut by_key: BTreeMap<Key, Vec<(usize, RegisterOp)>> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        if let Some((key, model_op)) = to_model(op) {
            by_key.entry(key).or_default().push((index, model_op));
        }
    }
    let mut unknown = None;
    for (key, mut key_ops) in by_key {
        date_unknown_writes(&mut key_ops);
        merge_unread_writes(&mut key_ops);
        let (indices, model_ops): (Vec<usize>, Vec<_>) = key_ops.into_iter().unzip();
        match linearizable::check::<Register>(&model_ops, options.max_steps) {
            Outcome::Linearizable => {}
            Outcome::Illegal(c) => {
                return Verdict::Illegal(Box::new(Illegal {
                    key,
                    linearized: c.linearized.iter().map(|&i| indices[i]).collect(),
                    blocked: indices[c.blocked],
                    state: c.state,
                }));
            }
            Outcome::Unknown { steps } => {
                unknown.get_or_insert(Verdict::Unknown { key, steps });
            }
        }
    }
    unknown.unwrap_or(Verdict::Linearizable)
}

/// The model's view of a register op; `None` for ops that cannot matter: failed ones (they did
/// not take effect), reads of unknown outcome (they changed nothing) and transactions.
fn to_model(op: &Operation) -> Option<(Key, RegisterOp)> {
    let output = match (op.status, &op.output) {
        (Status::Fail, _) => return None,
        (Status::Ok, Some(output)) => Some(output),
        _ => None,
    };
    let revision = op.revision;
    let unknown = RegisterOutput::Unknown { revision: None };
    let (key, input, output) = match (&op.input, output) {
        (Op::Read { .. }, None) => return None,
        (Op::Read { key, .. }, Some(Op::Read { value, mod_revision, .. })) => {
            let output = RegisterOutput::Read { value: *value, mod_revision: *mod_revision, header: revision };
            (*key, RegisterInput::Read, output)
        }
        (Op::Write { key, value }, Some(_)) => {
            (*key, RegisterInput::Write(*value), RegisterOutput::Written { revision })
        }
        (Op::Cas { key, expected, new, .. }, Some(Op::Cas { applied, .. })) => {
            let output = RegisterOutput::Cas { applied: applied.unwrap_or(true), revision };
            (*key, RegisterInput::Cas { expected: *expected, new: *new }, output)
        }
        (Op::Write { key, value }, None) => (*key, RegisterInput::Write(*value), unknown),
        (Op::Cas { key, expected, new, .. }, None) => {
            (*key, RegisterInput::Cas { expected: *expected, new: *new }, unknown)
        }
        _ => return None,
    };
    let return_ns = if matches!(output, RegisterOutput::Unknown { .. }) { NEVER } else { op.return_ns };
    Some((key, ModelOp { call_ns: op.call_ns, return_ns, input, output }))
}

/// Gives each unknown-outcome write of one key whose value a read saw the revision that read
/// showed: values are written once, so the read names the write, which then certainly happened
/// at that revision.
fn date_unknown_writes(ops: &mut [(usize, RegisterOp)]) {
    let seen_at: HashMap<Value, i64> = ops
        .iter()
        .filter_map(|(_, op)| match op.output {
            RegisterOutput::Read { value: Some(value), mod_revision: Some(revision), .. } => Some((value, revision)),
            _ => None,
        })
        .collect();
    for (_, op) in ops.iter_mut() {
        let written = match op.input {
            RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => value,
            RegisterInput::Read => continue,
        };
        if let RegisterOutput::Unknown { revision } = &mut op.output {
            *revision = seen_at.get(&written).copied();
        }
    }
}

/// Simplifies one key's ops with a fact about values no op observed (no read saw them, no cas
/// expected them): after a write of such a value, until the next write, no read can be
/// linearized and no cas can apply. So, exactly:
/// - such writes are interchangeable, and all write the smallest such value instead: the search
///   then no longer tells apart orders of writes nobody read, and unknown-outcome ones become
///   identical, which it tries only in call order;
/// - unknown-outcome ones are dropped, when no cas on the key failed its compare (the only op
///   that could need one): they can always stay out of a linearization, and left in, each would be
///   tried at every point of the search. Timed-out writes are common under faults.
fn merge_unread_writes(ops: &mut Vec<(usize, RegisterOp)>) {
    let mut observed = HashSet::new();
    let mut failed_compares = false;
    for (_, op) in ops.iter() {
        match (&op.input, &op.output) {
            (_, RegisterOutput::Read { value: Some(value), .. }) => {
                observed.insert(*value);
            }
            (RegisterInput::Cas { expected, .. }, output) => {
                observed.extend(*expected);
                failed_compares |= matches!(output, RegisterOutput::Cas { applied: false, .. });
            }
            _ => {}
        }
    }
    let written = |op: &RegisterOp| match op.input {
        RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => Some(value),
        RegisterInput::Read => None,
    };
    let unread = |op: &ModelOp<_, _>| written(op).is_some_and(|value| !observed.contains(&value));
    if !failed_compares {
        ops.retain(|(_, op)| !(matches!(op.output, RegisterOutput::Unknown { .. }) && unread(op)));
    }
    let Some(representative) = ops.iter().filter(|(_, op)| unread(op)).filter_map(|(_, op)| written(op)).min() else {
        return;
    };
    for (_, op) in ops.iter_mut() {
        if unread(op) {
            match &mut op.input {
                RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => *value = representative,
                RegisterInput::Read => {}
            }
        }
    }
}
