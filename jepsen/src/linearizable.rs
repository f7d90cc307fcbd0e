//! Linearizability checking against a sequential model: Wing & Gong's search with Lowe's cache
//! of visited configurations, as in Porcupine.
//!
//! The history is a doubly linked list of call and return entries in time order. The search walks
//! it from the front: a call may be linearized next if the model accepts it in the current state
//! (its entries are then unlinked and the walk restarts); reaching a return means that op had to
//! be linearized by now, so the search backtracks. A configuration (set of linearized ops, model
//! state) seen once is never explored again: without that cache every backtrack re-explores all
//! interleavings of the ops that follow, which is exponential in the concurrency.
//!
//! Three reductions keep failing searches (which must exhaust every configuration) tractable;
//! each only skips configurations equivalent to, or subsumed by, ones that are explored:
//! - a read-only op that is legal now is linearized without branching;
//! - of identical pending ops, only the one that must return first is tried;
//! - unknown-outcome ops are optional, so a configuration that adds only such ops to one already
//!   explored from the same state is skipped, and they are tried after all completed ops.
//!
//! Callers split a history by key first (P-compositionality): each key is an independent object,
//! and many small searches are far cheaper than one large one.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::history::NEVER;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Eq + Hash + Debug;
    type Output: Eq + Hash + Debug;

    fn init() -> Self::State;

    /// The state after `input` returning `output`, or `None` if it cannot return that here.
    /// An op whose outcome is unknown (`return_ns == NEVER`) may stay unlinearized, so a model
    /// may refuse it wherever it would leave the state unchanged.
    fn step(state: &Self::State, input: &Self::Input, output: &Self::Output) -> Option<Self::State>;

    /// Whether the op never changes the state, wherever it is legal (a read). The search
    /// linearizes such ops as soon as they are legal, without branching.
    fn read_only(input: &Self::Input, output: &Self::Output) -> bool;
}

/// One operation of a single object's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOp<I, O> {
    pub call_ns: u64,
    /// [`NEVER`]: the outcome is unknown; it took effect at some point after the call, or never.
    pub return_ns: u64,
    pub input: I,
    pub output: O,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<S> {
    Linearizable,
    Illegal(Counterexample<S>),
    /// The step budget ran out first.
    Unknown {
        steps: u64,
    },
}

/// Where the deepest branch of the search got stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample<S> {
    /// Indices of the ops of the longest linearizable prefix found, in linearization order.
    pub linearized: Vec<usize>,
    /// The op that had returned by then but could not follow `linearized` (nor could any other
    /// op pending at that point).
    pub blocked: usize,
    /// The model state after `linearized`.
    pub state: S,
}

/// Checks one object's history. `max_steps` bounds the model steps tried.
pub fn check<M: Model>(ops: &[ModelOp<M::Input, M::Output>], max_steps: u64) -> Outcome<M::State> {
    let mut search = Search::<M>::new(ops);
    search.run(max_steps)
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// The entries of a history as a doubly linked list with unlinking that can be undone in reverse
/// order (dancing links). Ops are numbered by rank (call order); node `1 + 2r` is the call of rank
/// `r` and `2 + 2r` its return; node 0 is the head.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Entries {
    fn new(calls_and_returns: &[(u64, u64)]) -> Self {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * calls_and_returns.len());
        for (rank, &(call, ret)) in calls_and_returns.iter().enumerate() {
            // At equal times calls sort before returns: the ops then overlap, the weaker claim.
            order.push((call, false, 1 + 2 * rank));
            order.push((ret.max(call), true, 2 + 2 * rank));
        }
        order.sort_unstable();
        let nodes = 1 + order.len();
        let mut entries = Entries { next: vec![NIL; nodes], prev: vec![NIL; nodes] };
        let mut last = HEAD;
        for &(_, _, node) in &order {
            entries.next[last] = node;
            entries.prev[node] = last;
            last = node;
        }
        entries
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, rank: usize) {
        self.unlink(1 + 2 * rank);
        self.unlink(2 + 2 * rank);
    }

    fn unlift(&mut self, rank: usize) {
        self.relink(2 + 2 * rank);
        self.relink(1 + 2 * rank);
    }
}

/// A set of small integers.
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }

    /// The positions where membership changes. Linearized sets of completed ops are long runs
    /// with a few holes (ops still concurrent), so a cache entry is a few words instead of one bit
    /// per op of the history.
    fn runs(&self) -> Box<[u32]> {
        let mut out = Vec::new();
        let mut carry = 0;
        for (w, &word) in self.0.iter().enumerate() {
            let mut changes = word ^ ((word << 1) | carry);
            while changes != 0 {
                out.push((w * 64) as u32 + changes.trailing_zeros());
                changes &= changes - 1;
            }
            carry = word >> 63;
        }
        out.into_boxed_slice()
    }
}

/// A configuration that was reached; the cache key is its completed part and state.
struct Seen<S> {
    completed: Box<[u32]>,
    state: S,
    /// The unknown-outcome ops it had linearized, by rank, sorted.
    optional: Box<[u32]>,
}

/// How the search got to a configuration, so that backtracking knows what to try next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A read-only op, linearized without branching: nothing else to try.
    Forced,
    /// Trying the calls of completed ops.
    Completed,
    /// Trying the calls of unknown-outcome ops.
    Optional,
}

/// The deepest point the search reached, kept incrementally: `ranks[..shared]` always equals the
/// bottom of the stack, so recording copies only what was pushed since.
struct Deepest<S> {
    ranks: Vec<usize>,
    shared: usize,
    found: Option<(usize, S)>,
}

struct Search<'a, M: Model> {
    ops: &'a [ModelOp<M::Input, M::Output>],
    /// rank → index into `ops`
    by_rank: Vec<usize>,
    /// rank → position among the completed ops, `None` for unknown-outcome ones.
    completed_index: Vec<Option<usize>>,
    /// rank → an identical op (same input and output) called no later and returning no later,
    /// if any: while it is not linearized, it is tried instead of this one. Whatever follows this
    /// one can follow it too, with this one taking its later place, which this one's later
    /// return allows. Typical twins: writes of values nobody read, all merged into one value.
    twin_before: Vec<Option<usize>>,
    entries: Entries,
    /// Linearized ops, by rank.
    linearized: Bits,
    /// Linearized completed ops, by `completed_index`.
    completed: Bits,
    /// Linearized unknown-outcome ops, by rank, in linearization order.
    optional: Vec<u32>,
    cache: HashMap<u64, Vec<Seen<M::State>>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(ops: &'a [ModelOp<M::Input, M::Output>]) -> Self {
        let mut by_rank: Vec<usize> = (0..ops.len()).collect();
        by_rank.sort_by_key(|&i| (ops[i].call_ns, i));
        let times: Vec<(u64, u64)> = by_rank.iter().map(|&i| (ops[i].call_ns, ops[i].return_ns)).collect();
        let mut completed = 0;
        let completed_index = by_rank
            .iter()
            .map(|&i| {
                (ops[i].return_ns != NEVER).then(|| {
                    completed += 1;
                    completed - 1
                })
            })
            .collect();
        let mut groups: HashMap<(&M::Input, &M::Output), Vec<usize>> = HashMap::new();
        for (rank, &i) in by_rank.iter().enumerate() {
            groups.entry((&ops[i].input, &ops[i].output)).or_default().push(rank);
        }
        let mut twin_before = vec![None; ops.len()];
        for mut ranks in groups.into_values() {
            ranks.sort_by_key(|&rank| (times[rank].1, rank));
            for pair in ranks.windows(2) {
                // Ranks are in call order.
                if pair[0] < pair[1] {
                    twin_before[pair[1]] = Some(pair[0]);
                }
            }
        }
        Search {
            ops,
            by_rank,
            completed_index,
            twin_before,
            entries: Entries::new(&times),
            linearized: Bits::new(ops.len()),
            completed: Bits::new(completed),
            optional: Vec::new(),
            cache: HashMap::new(),
        }
    }

    fn op(&self, rank: usize) -> &'a ModelOp<M::Input, M::Output> {
        &self.ops[self.by_rank[rank]]
    }

    /// Whether an identical op stands in for this one.
    fn has_twin_first(&self, rank: usize) -> bool {
        self.twin_before[rank].is_some_and(|twin| !self.linearized.contains(twin))
    }

    fn mark(&mut self, rank: usize) {
        self.linearized.flip(rank);
        match self.completed_index[rank] {
            Some(i) => self.completed.flip(i),
            None => self.optional.push(rank as u32),
        }
    }

    fn unmark(&mut self, rank: usize) {
        self.linearized.flip(rank);
        match self.completed_index[rank] {
            Some(i) => self.completed.flip(i),
            None => {
                self.optional.pop();
            }
        }
    }

    /// Records the current configuration; false if it, or one with the same completed ops and
    /// state but fewer optional ones, was reached before. From there every continuation of this
    /// one was possible too, so it was or is being explored.
    fn remember(&mut self, state: &M::State) -> bool {
        let completed = self.completed.runs();
        let mut optional = self.optional.clone();
        optional.sort_unstable();
        let mut hasher = DefaultHasher::new();
        completed.hash(&mut hasher);
        state.hash(&mut hasher);
        let bucket = self.cache.entry(hasher.finish()).or_default();
        let subsumed = bucket.iter().any(|seen| {
            seen.completed == completed
                && seen.state == *state
                && seen.optional.iter().all(|rank| optional.binary_search(rank).is_ok())
        });
        if subsumed {
            return false;
        }
        bucket.push(Seen { completed, state: state.clone(), optional: optional.into_boxed_slice() });
        true
    }

    /// A legal read-only op of a completed op, if any. It is linearized without branching: a
    /// linearization that places it later stays one when it is moved to the front, since it
    /// changes no state and every op that returned before its call is already linearized.
    /// Reads are most ops, so this prunes most of the search.
    fn find_forced(&self, state: &M::State, steps: &mut u64, max_steps: u64) -> Result<Option<usize>, ()> {
        let mut node = self.entries.next[HEAD];
        while node != NIL && node % 2 == 1 {
            let rank = (node - 1) / 2;
            let op = self.op(rank);
            if op.return_ns != NEVER && M::read_only(&op.input, &op.output) {
                if *steps >= max_steps {
                    return Err(());
                }
                *steps += 1;
                if M::step(state, &op.input, &op.output).is_some() {
                    return Ok(Some(rank));
                }
            }
            node = self.entries.next[node];
        }
        Ok(None)
    }

    /// Whether pass `pass` should try the op of this rank at all.
    fn candidate(&self, rank: usize, pass: Pass) -> bool {
        let op = self.op(rank);
        match pass {
            Pass::Completed => op.return_ns != NEVER && !self.has_twin_first(rank),
            // An optional read-only op changes nothing: linearizing it is pointless.
            Pass::Optional => {
                op.return_ns == NEVER && !M::read_only(&op.input, &op.output) && !self.has_twin_first(rank)
            }
            Pass::Forced => false,
        }
    }

    fn run(&mut self, max_steps: u64) -> Outcome<M::State> {
        // Unknown-outcome ops need not be linearized at all: done once every completed op is.
        let mut unplaced = self.ops.iter().filter(|op| op.return_ns != NEVER).count();
        let mut state = M::init();
        // (rank, state before it, the pass that linearized it)
        let mut stack: Vec<(usize, M::State, Pass)> = Vec::new();
        let mut deepest = Deepest { ranks: Vec::new(), shared: 0, found: None };
        let mut steps = 0u64;
        // Where to resume: `None` for a configuration just reached.
        let mut resume: Option<(usize, Pass)> = None;
        loop {
            if unplaced == 0 {
                return Outcome::Linearizable;
            }
            let (mut node, mut pass) = match resume {
                Some(at) => at,
                None => match self.find_forced(&state, &mut steps, max_steps) {
                    Err(()) => return Outcome::Unknown { steps },
                    Ok(Some(rank)) => (1 + 2 * rank, Pass::Forced),
                    Ok(None) => (self.entries.next[HEAD], Pass::Completed),
                },
            };
            // Try calls until one leads to a new configuration, or the first return entry ends
            // the pass.
            let mut advanced = false;
            loop {
                if node == NIL || node % 2 == 0 {
                    if pass != Pass::Completed {
                        break;
                    }
                    (node, pass) = (self.entries.next[HEAD], Pass::Optional);
                    continue;
                }
                let rank = (node - 1) / 2;
                if pass == Pass::Forced || self.candidate(rank, pass) {
                    if steps >= max_steps {
                        return Outcome::Unknown { steps };
                    }
                    steps += 1;
                    let op = self.op(rank);
                    if let Some(next) = M::step(&state, &op.input, &op.output) {
                        self.mark(rank);
                        if self.remember(&next) {
                            stack.push((rank, std::mem::replace(&mut state, next), pass));
                            self.entries.lift(rank);
                            if op.return_ns != NEVER {
                                unplaced -= 1;
                            }
                            advanced = true;
                            break;
                        }
                        self.unmark(rank);
                    }
                    if pass == Pass::Forced {
                        break;
                    }
                }
                node = self.entries.next[node];
            }
            if advanced {
                resume = None;
                continue;
            }
            // Dead configuration. If a return entry ended it, that op could not be linearized.
            if node != NIL && node % 2 == 0 && (deepest.found.is_none() || stack.len() > deepest.ranks.len()) {
                deepest.ranks.truncate(deepest.shared);
                deepest.ranks.extend(stack[deepest.shared..].iter().map(|(r, _, _)| *r));
                deepest.shared = stack.len();
                deepest.found = Some(((node - 2) / 2, state.clone()));
            }
            // Backtrack to the last choice and try the entries after it.
            resume = loop {
                let Some((top, previous, pass)) = stack.pop() else {
                    let (blocked, state) = deepest.found.expect("the first dead end is at a return entry");
                    return Outcome::Illegal(Counterexample {
                        linearized: deepest.ranks.iter().map(|&r| self.by_rank[r]).collect(),
                        blocked: self.by_rank[blocked],
                        state,
                    });
                };
                deepest.shared = deepest.shared.min(stack.len());
                state = previous;
                self.unmark(top);
                self.entries.unlift(top);
                if self.op(top).return_ns != NEVER {
                    unplaced += 1;
                }
                if pass != Pass::Forced {
                    break Some((self.entries.next[1 + 2 * top], pass));
                }
            };
        }
    }
}
