//! The register workload: each key is an etcd key holding a value or absent, with read, write and
//! compare-and-set, checked for linearizability key by key.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::history::{Key, Op, Operation, Status, Value, NEVER};
use crate::linearizable::{self, Model, ModelOp, Outcome};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    Read,
    Write(Value),
    Cas { expected: Option<Value>, new: Value },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// What the read saw; `None`: absent.
    Read(Option<Value>),
    Written,
    Cas {
        applied: bool,
    },
    /// The op's outcome is unknown.
    Unknown,
}

/// A register op as the search sees it.
pub type RegisterOp = ModelOp<RegisterInput, RegisterOutput>;

/// One key with etcd semantics. The state is the current value, `None` while the key is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register;

impl Model for Register {
    type State = Option<Value>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init() -> Option<Value> {
        None
    }

    fn step(state: &Option<Value>, input: &RegisterInput, output: &RegisterOutput) -> Option<Option<Value>> {
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::Read(seen)) => (seen == state).then_some(*state),
            (RegisterInput::Write(value), RegisterOutput::Written | RegisterOutput::Unknown) => Some(Some(*value)),
            // A cas of unknown outcome that took effect here applied iff the compare held; if it
            // did not hold, taking effect changed nothing, the same as never taking effect.
            (RegisterInput::Cas { expected, new }, RegisterOutput::Cas { applied: true } | RegisterOutput::Unknown) => {
                (expected == state).then_some(Some(*new))
            }
            // A compare that failed is a read: the value was not `expected`.
            (RegisterInput::Cas { expected, .. }, RegisterOutput::Cas { applied: false }) => {
                (expected != state).then_some(*state)
            }
            _ => None,
        }
    }

    fn read_only(input: &RegisterInput, output: &RegisterOutput) -> bool {
        matches!((input, output), (RegisterInput::Read, _) | (_, RegisterOutput::Cas { applied: false }))
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
    /// The value after the prefix. If that is a value no op observed, it is the smallest such
    /// value written to the key: the checker does not tell those apart.
    pub state: Option<Value>,
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
        let _ = writeln!(out, "leaving value {:?}; then no pending op fits, though this one had returned:", self.state);
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
    let (key, input, output) = match (&op.input, output) {
        (Op::Read { .. }, None) => return None,
        (Op::Read { key, .. }, Some(Op::Read { value, .. })) => {
            (*key, RegisterInput::Read, RegisterOutput::Read(*value))
        }
        (Op::Write { key, value }, Some(_)) => (*key, RegisterInput::Write(*value), RegisterOutput::Written),
        (Op::Cas { key, expected, new, .. }, Some(Op::Cas { applied, .. })) => {
            let output = RegisterOutput::Cas { applied: applied.unwrap_or(true) };
            (*key, RegisterInput::Cas { expected: *expected, new: *new }, output)
        }
        (Op::Write { key, value }, None) => (*key, RegisterInput::Write(*value), RegisterOutput::Unknown),
        (Op::Cas { key, expected, new, .. }, None) => {
            (*key, RegisterInput::Cas { expected: *expected, new: *new }, RegisterOutput::Unknown)
        }
        _ => return None,
    };
    let return_ns = if output == RegisterOutput::Unknown { NEVER } else { op.return_ns };
    Some((key, ModelOp { call_ns: op.call_ns, return_ns, input, output }))
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
            (_, RegisterOutput::Read(Some(value))) => {
                observed.insert(*value);
            }
            (RegisterInput::Cas { expected, .. }, output) => {
                observed.extend(*expected);
                failed_compares |= *output == RegisterOutput::Cas { applied: false };
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
        ops.retain(|(_, op)| !(op.output == RegisterOutput::Unknown && unread(op)));
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
