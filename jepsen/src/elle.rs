//! Isolation checking of list-append transactions, as Elle does it.
//!
//! Every append writes a value unique to its key, and every read returns a key's whole list, so a
//! read shows the order of all the appends before it. The longest read of a key is then its version
//! order (every other read must be a prefix of it), and from the version orders follow the
//! dependencies between committed transactions:
//! - ww: T1 appended a value and T2 appended the next one;
//! - wr: T1 appended the last value T2 read;
//! - rw: T1 read the key without the value T2 appended next (an anti-dependency).
//!
//! A serializable history has an acyclic dependency graph. A cycle is classified by its edges, after
//! Adya: G0 (ww only), G1c (ww and wr), G-single (exactly one rw), G2 (more). Each strongly
//! connected component is reported once, with a short cycle of its most severe class. Other
//! anomalies need no graph: reads of failed appends (G1a), of a transaction's intermediate state
//! (G1b), of values never appended, appends of the same value twice, and reads that disagree.
//!
//! Edges come from reads only, not from real time, so this checks serializability, not strict
//! serializability.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::graph::Graph;
use crate::history::{Key, MicroOp, Op, Operation, Status, Value};

/// The kind of a dependency between two transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DepKind {
    Ww,
    Wr,
    Rw,
}

impl DepKind {
    const ALL: [DepKind; 3] = [DepKind::Ww, DepKind::Wr, DepKind::Rw];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One edge of a cycle. Op numbers index the checked `&[Operation]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub from: usize,
    pub to: usize,
    pub kind: DepKind,
    /// Why: ww, `to` appended `value` to `key` right after `from`'s append; wr, `to` read `value`,
    /// appended by `from`, last; rw, `from` read `key` without `value`, which `to` appended next.
    pub key: Key,
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CycleClass {
    G0,
    G1c,
    GSingle,
    G2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub class: CycleClass,
    /// Consecutive edges; the last one ends where the first starts.
    pub steps: Vec<Dependency>,
}

/// Op numbers index the checked `&[Operation]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    Cycle(Cycle),
    /// `reader` saw `value`, appended by the failed `writer`.
    G1a {
        reader: usize,
        writer: usize,
        key: Key,
        value: Value,
    },
    /// `reader`'s list ended at `value`, after which `writer` appended more to the key.
    G1b {
        reader: usize,
        writer: usize,
        key: Key,
        value: Value,
    },
    /// More than one append (possibly in one transaction) of the same value.
    DuplicateAppend {
        key: Key,
        value: Value,
        writers: Vec<usize>,
    },
    /// A read list holding a value twice: an append applied twice.
    DuplicateElements {
        reader: usize,
        key: Key,
        observed: Vec<Value>,
    },
    /// A read of a value no transaction appended.
    UnknownValue {
        reader: usize,
        key: Key,
        value: Value,
    },
    /// Two reads of a key, neither a prefix of the other. The key then has no version order and
    /// adds no edges.
    IncompatibleOrder {
        key: Key,
        reads: [(usize, Vec<Value>); 2],
    },
    /// A read that contradicts the transaction's own earlier read and appends: `expected` is
    /// the list they imply or, when the key had not been read yet, the appends the list must end with.
    Internal {
        op: usize,
        key: Key,
        observed: Vec<Value>,
        expected: Vec<Value>,
    },
}

impl Anomaly {
    /// Elle's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::Cycle(cycle) => match cycle.class {
                CycleClass::G0 => "G0",
                CycleClass::G1c => "G1c",
                CycleClass::GSingle => "G-single",
                CycleClass::G2 => "G2",
            },
            Anomaly::G1a { .. } => "G1a",
            Anomaly::G1b { .. } => "G1b",
            Anomaly::DuplicateAppend { .. } => "duplicate-append",
            Anomaly::DuplicateElements { .. } => "duplicate-elements",
            Anomaly::UnknownValue { .. } => "unknown-value",
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::Internal { .. } => "internal",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match self {
            Anomaly::Cycle(cycle) => {
                for step in &cycle.steps {
                    let kind = format!("{:?}", step.kind).to_lowercase();
                    write!(f, "T{} -{kind} {}:{}-> ", step.from, step.key, step.value)?;
                }
                write!(f, "T{}", cycle.steps.first().map_or(0, |s| s.from))
            }
            Anomaly::G1a { reader, writer, key, value } => {
                write!(f, "T{reader} read {key}:{value} appended by failed T{writer}")
            }
            Anomaly::G1b { reader, writer, key, value } => {
                write!(f, "T{reader} read {key} ending at {value}, an intermediate append of T{writer}")
            }
            Anomaly::DuplicateAppend { key, value, writers } => write!(f, "{key}:{value} appended by {writers:?}"),
            Anomaly::DuplicateElements { reader, key, observed } => write!(f, "T{reader} read {key} = {observed:?}"),
            Anomaly::UnknownValue { reader, key, value } => write!(f, "T{reader} read {key}:{value}, never appended"),
            Anomaly::IncompatibleOrder { key, reads: [(a, la), (b, lb)] } => {
                write!(f, "key {key}: T{a} read {la:?}, T{b} read {lb:?}")
            }
            Anomaly::Internal { op, key, observed, expected } => {
                write!(f, "T{op} read {key} = {observed:?}, its own ops imply {expected:?}")
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The distinct anomaly names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.anomalies.iter().map(Anomaly::name).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Checks the transactions of `ops` (register ops are ignored).
pub fn check(ops: &[Operation]) -> Report {
    let mut anomalies = Vec::new();
    let appends = Appends::collect(ops, &mut anomalies);
    let reads = collect_reads(ops, &mut anomalies);
    for read in &reads {
        check_read(read, &appends, &mut anomalies);
    }
    let orders = version_orders(&reads, &mut anomalies);
    let edges = dependencies(&reads, &orders, &appends);
    anomalies.extend(cycles(ops.len(), &edges).into_iter().map(Anomaly::Cycle));
    Report { anomalies }
}

/// Who appended what.
struct Appends {
    /// (key, value) → (committed or possibly committed txn, whether it was that txn's last
    /// append to the key)
    committed: BTreeMap<(Key, Value), (usize, bool)>,
    failed: BTreeMap<(Key, Value), usize>,
}

impl Appends {
    fn collect(ops: &[Operation], anomalies: &mut Vec<Anomaly>) -> Self {
        let mut all: BTreeMap<(Key, Value), Vec<usize>> = BTreeMap::new();
        let mut appends = Appends { committed: BTreeMap::new(), failed: BTreeMap::new() };
        for (index, op) in ops.iter().enumerate() {
            let Op::Txn { mops } = &op.input else { continue };
            for (position, mop) in mops.iter().enumerate() {
                let MicroOp::Append { key, value } = *mop else { continue };
                all.entry((key, value)).or_default().push(index);
                if op.status == Status::Fail {
                    appends.failed.insert((key, value), index);
                } else {
                    // Info txns may have committed: their appends explain what reads saw.
                    let last =
                        !mops[position + 1..].iter().any(|m| matches!(m, MicroOp::Append { key: k, .. } if *k == key));
                    appends.committed.insert((key, value), (index, last));
                }
            }
        }
        for ((key, value), writers) in all {
            if writers.len() > 1 {
                anomalies.push(Anomaly::DuplicateAppend { key, value, writers });
            }
        }
        appends
    }
}

/// A committed transaction's read of one key.
struct Read<'a> {
    op: usize,
    key: Key,
    list: &'a [Value],
}

/// The reads of committed transactions, checking on the way that each agrees with its own
/// transaction's earlier read and appends.
fn collect_reads<'a>(ops: &'a [Operation], anomalies: &mut Vec<Anomaly>) -> Vec<Read<'a>> {
    let mut reads = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let (Status::Ok, Some(Op::Txn { mops })) = (op.status, &op.output) else { continue };
        // key → (the list as the txn knows it, if it read the key; its appends not yet read back)
        let mut known: BTreeMap<Key, (Option<Vec<Value>>, Vec<Value>)> = BTreeMap::new();
        for mop in mops {
            match mop {
                MicroOp::Append { key, value } => {
                    let (list, pending) = known.entry(*key).or_default();
                    list.as_mut().unwrap_or(pending).push(*value);
                }
                MicroOp::Read { key, value: Some(list) } => {
                    let (known_list, pending) = known.entry(*key).or_default();
                    let expected = known_list.as_ref().unwrap_or(pending);
                    let consistent = if known_list.is_some() { expected == list } else { list.ends_with(expected) };
                    if !consistent {
                        anomalies.push(Anomaly::Internal {
                            op: index,
                            key: *key,
                            observed: list.clone(),
                            expected: expected.clone(),
                        });
                    }
                    *known_list = Some(list.clone());
                    pending.clear();
                    reads.push(Read { op: index, key: *key, list });
                }
                MicroOp::Read { value: None, .. } => {}
            }
        }
    }
    reads
}

/// The anomalies one read shows by itself.
fn check_read(read: &Read<'_>, appends: &Appends, anomalies: &mut Vec<Anomaly>) {
    let (reader, key) = (read.op, read.key);
    let mut seen = HashSet::new();
    if !read.list.iter().all(|v| seen.insert(*v)) {
        anomalies.push(Anomaly::DuplicateElements { reader, key, observed: read.list.to_vec() });
    }
    for &value in read.list {
        if appends.committed.contains_key(&(key, value)) {
            continue;
        }
        anomalies.push(match appends.failed.get(&(key, value)) {
            Some(&writer) => Anomaly::G1a { reader, writer, key, value },
            None => Anomaly::UnknownValue { reader, key, value },
        });
    }
    if let Some(&value) = read.list.last() {
        if let Some(&(writer, false)) = appends.committed.get(&(key, value)) {
            if writer != reader {
                anomalies.push(Anomaly::G1b { reader, writer, key, value });
            }
        }
    }
}

/// Each key's version order: its longest read, provided every read of it is a prefix of that.
fn version_orders<'a>(reads: &[Read<'a>], anomalies: &mut Vec<Anomaly>) -> BTreeMap<Key, &'a [Value]> {
    let mut longest: BTreeMap<Key, &Read<'a>> = BTreeMap::new();
    let mut incompatible = HashSet::new();
    for read in reads {
        let Some(&current) = longest.get(&read.key) else {
            longest.insert(read.key, read);
            continue;
        };
        let (short, long) = if read.list.len() > current.list.len() { (current, read) } else { (read, current) };
        if !long.list.starts_with(short.list) {
            if incompatible.insert(read.key) {
                anomalies.push(Anomaly::IncompatibleOrder {
                    key: read.key,
                    reads: [(current.op, current.list.to_vec()), (read.op, read.list.to_vec())],
                });
            }
            continue;
        }
        longest.insert(read.key, long);
    }
    longest.into_iter().filter(|(key, _)| !incompatible.contains(key)).map(|(key, read)| (key, read.list)).collect()
}

/// An edge between two transactions: its kinds, and for each kind the first (key, value) that
/// implied it.
#[derive(Default)]
struct Edge {
    why: [Option<(Key, Value)>; 3],
}

impl Edge {
    fn kinds(&self) -> u8 {
        DepKind::ALL.iter().filter(|k| self.why[**k as usize].is_some()).map(|k| k.bit()).sum()
    }
}

type Edges = BTreeMap<(usize, usize), Edge>;

fn dependencies(reads: &[Read<'_>], orders: &BTreeMap<Key, &[Value]>, appends: &Appends) -> Edges {
    let mut edges = Edges::new();
    let writer = |key: Key, value: Value| appends.committed.get(&(key, value)).map(|&(op, _)| op);
    let mut add = |from: Option<usize>, to: Option<usize>, kind: DepKind, key: Key, value: Value| {
        if let (Some(from), Some(to)) = (from, to) {
            if from != to {
                edges.entry((from, to)).or_default().why[kind as usize].get_or_insert((key, value));
            }
        }
    };
    for (&key, order) in orders {
        for pair in order.windows(2) {
            add(writer(key, pair[0]), writer(key, pair[1]), DepKind::Ww, key, pair[1]);
        }
    }
    for read in reads {
        let Some(order) = orders.get(&read.key) else { continue };
        if let Some(&last) = read.list.last() {
            add(writer(read.key, last), Some(read.op), DepKind::Wr, read.key, last);
        }
        if let Some(&next) = order.get(read.list.len()) {
            add(Some(read.op), writer(read.key, next), DepKind::Rw, read.key, next);
        }
    }
    edges
}

/// How many nodes the search for a G-single cycle may visit in one component before settling
/// for a cycle of any class. Only reached in pathological histories.
const G_SINGLE_BUDGET: usize = 1_000_000;

/// One cycle per strongly connected component of the dependency graph, of its most severe class.
fn cycles(nodes: usize, edges: &Edges) -> Vec<Cycle> {
    let mut graph = Graph::new(nodes);
    for (&(from, to), edge) in edges {
        graph.add_edge(from, to, edge.kinds());
    }
    let all = DepKind::ALL.iter().map(|k| k.bit()).sum();
    let mut found = Vec::new();
    for component in graph.components(all) {
        let sub = graph.induced(&component);
        let cycle = shortest_cycle(&sub, DepKind::Ww.bit())
            .or_else(|| shortest_cycle(&sub, DepKind::Ww.bit() | DepKind::Wr.bit()))
            .or_else(|| single_anti_dependency_cycle(&sub))
            .or_else(|| shortest_cycle(&sub, all))
            .expect("a strongly connected component has a cycle");
        let nodes: Vec<usize> = cycle.iter().map(|&i| component[i]).collect();
        found.push(describe_cycle(&nodes, edges));
    }
    found
}

/// A shortest cycle through some node of `graph` using only edges of `kinds`.
fn shortest_cycle(graph: &Graph, kinds: u8) -> Option<Vec<usize>> {
    let component = graph.components(kinds).into_iter().next()?;
    let mut inside = vec![false; graph.len()];
    for &n in &component {
        inside[n] = true;
    }
    let mut unbounded = usize::MAX;
    graph.shortest_path(component[0], component[0], kinds, &|n| inside[n], &mut unbounded)
}

/// A cycle with exactly one rw edge: an rw edge a → b closed by a path b → a without rw edges.
fn single_anti_dependency_cycle(graph: &Graph) -> Option<Vec<usize>> {
    let no_rw = DepKind::Ww.bit() | DepKind::Wr.bit();
    let mut component_of = vec![usize::MAX; graph.len()];
    for (c, nodes) in graph.components(no_rw).into_iter().enumerate() {
        for n in nodes {
            component_of[n] = c;
        }
    }
    let anti: Vec<(usize, usize)> = (0..graph.len())
        .flat_map(|a| graph.edges(a).filter(|(_, k)| k & DepKind::Rw.bit() != 0).map(move |(b, _)| (a, b)))
        .collect();
    // Ends in one component without rw edges are joined by such a path for sure: try those first.
    let (sure, rest): (Vec<_>, Vec<_>) =
        anti.into_iter().partition(|&(a, b)| component_of[a] != usize::MAX && component_of[a] == component_of[b]);
    let mut unbounded = usize::MAX;
    for (a, b) in sure {
        let c = component_of[a];
        if let Some(path) = graph.shortest_path(b, a, no_rw, &|n| component_of[n] == c, &mut unbounded) {
            return Some([vec![a], path].concat());
        }
    }
    let mut budget = G_SINGLE_BUDGET;
    for (a, b) in rest {
        if let Some(path) = graph.shortest_path(b, a, no_rw, &|_| true, &mut budget) {
            return Some([vec![a], path].concat());
        }
    }
    None
}

/// Labels a cycle's hops (preferring ww, then wr, over rw, so the class is the least severe the
/// edges allow) and classifies it.
fn describe_cycle(nodes: &[usize], edges: &Edges) -> Cycle {
    let steps: Vec<Dependency> = nodes
        .windows(2)
        .map(|hop| {
            let (from, to) = (hop[0], hop[1]);
            let edge = &edges[&(from, to)];
            let (kind, (key, value)) = DepKind::ALL
                .iter()
                .find_map(|&k| edge.why[k as usize].map(|why| (k, why)))
                .expect("an edge has a kind");
            Dependency { from, to, kind, key, value }
        })
        .collect();
    let rw = steps.iter().filter(|s| s.kind == DepKind::Rw).count();
    let class = match rw {
        0 if steps.iter().all(|s| s.kind == DepKind::Ww) => CycleClass::G0,
        0 => CycleClass::G1c,
        1 => CycleClass::GSingle,
        _ => CycleClass::G2,
    };
    Cycle { class, steps }
}
