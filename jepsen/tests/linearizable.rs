//! The linearizability checker with the register model: it must accept what a real register can
//! do and reject what it cannot.

use jepsen::history::{Event, EventKind, History, Op, Operation};
use jepsen::register::{check_registers, CheckOptions, Verdict};

const K: u64 = 1;

/// Builds histories op by op; each method returns the op's index in `operations()`.
#[derive(Default)]
struct Builder {
    history: History,
    ops: usize,
}

impl Builder {
    fn done(&mut self, process: u64, call: u64, kind: EventKind, ret: u64, invoked: Op, completed: Op) -> usize {
        self.history.push(Event::new(process, EventKind::Invoke, call, invoked));
        self.history.push(Event::new(process, kind, ret, completed));
        self.ops += 1;
        self.ops - 1
    }

    fn read(&mut self, process: u64, call: u64, ret: u64, key: u64, saw: Option<u64>) -> usize {
        let invoked = Op::Read { key, value: None, mod_revision: None };
        self.done(process, call, EventKind::Ok, ret, invoked, Op::Read { key, value: saw, mod_revision: None })
    }

    fn write(&mut self, process: u64, call: u64, ret: u64, key: u64, value: u64) -> usize {
        self.done(process, call, EventKind::Ok, ret, Op::Write { key, value }, Op::Write { key, value })
    }

    /// A cas on key `K` that completed, applied or not.
    fn cas(&mut self, process: u64, call: u64, ret: u64, expected: Option<u64>, new: u64, applied: bool) -> usize {
        let key = K;
        let invoked = Op::Cas { key, expected, new, applied: None };
        self.done(process, call, EventKind::Ok, ret, invoked, Op::Cas { key, expected, new, applied: Some(applied) })
    }

    fn failed_write(&mut self, process: u64, call: u64, ret: u64, key: u64, value: u64) -> usize {
        self.done(process, call, EventKind::Fail, ret, Op::Write { key, value }, Op::Write { key, value })
    }

    /// A write whose outcome is unknown (it timed out at `ret`).
    fn info_write(&mut self, process: u64, call: u64, ret: u64, key: u64, value: u64) -> usize {
        self.done(process, call, EventKind::Info, ret, Op::Write { key, value }, Op::Write { key, value })
    }

    fn operations(&self) -> Vec<Operation> {
        self.history.operations().unwrap()
    }

    fn verdict(&self) -> Verdict {
        check_registers(&self.operations(), &CheckOptions::default())
    }
}

#[track_caller]
fn assert_illegal(b: &Builder, key: u64) -> jepsen::register::Illegal {
    match b.verdict() {
        Verdict::Illegal(illegal) => {
            assert_eq!(illegal.key, key);
            *illegal
        }
        other => panic!("expected an illegal history, got {other:?}"),
    }
}

#[test]
fn concurrent_history_with_a_valid_order_is_linearizable() {
    let mut b = Builder::default();
    b.read(1, 0, 5, K, None);
    b.write(1, 10, 50, K, 1);
    // Overlaps the write: may see either value.
    b.read(2, 20, 30, K, Some(1));
    b.read(3, 20, 60, K, None);
    b.cas(2, 60, 70, Some(1), 2, true);
    b.cas(3, 65, 80, Some(1), 3, false);
    b.read(1, 90, 95, K, Some(2));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(Builder::default().verdict(), Verdict::Linearizable);
}

#[test]
fn stale_read_after_a_completed_write_is_illegal() {
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 1);
    b.write(1, 20, 30, K, 2);
    let stale = b.read(2, 40, 50, K, Some(1));
    let illegal = assert_illegal(&b, K);
    assert_eq!(illegal.blocked, stale);
    assert_eq!(illegal.linearized, vec![0, 1]);
    assert_eq!(illegal.state.value, Some(2));
    let explanation = illegal.explain(&b.operations());
    assert!(explanation.contains("#2 p2 [40, 50]"), "{explanation}");
}

#[test]
fn absent_key_after_a_completed_write_is_illegal() {
    let mut b = Builder::default();
    b.read(1, 0, 10, K, None);
    b.write(1, 20, 30, K, 1);
    b.read(2, 40, 50, K, None);
    assert_illegal(&b, K);
}

#[test]
fn reads_that_order_concurrent_writes_oppositely_are_illegal() {
    let mut b = Builder::default();
    b.write(1, 0, 100, K, 1);
    b.write(2, 0, 100, K, 2);
    // Process 3 sees 1 then 2; process 4 sees 2 then 1: no single order of the writes explains both.
    b.read(3, 10, 20, K, Some(1));
    b.read(3, 30, 40, K, Some(2));
    b.read(4, 10, 20, K, Some(2));
    b.read(4, 30, 40, K, Some(1));
    assert_illegal(&b, K);
    // Either pair alone is fine.
    let mut b = Builder::default();
    b.write(1, 0, 100, K, 1);
    b.write(2, 0, 100, K, 2);
    b.read(3, 10, 20, K, Some(1));
    b.read(3, 30, 40, K, Some(2));
    b.read(4, 10, 20, K, Some(1));
    b.read(4, 30, 40, K, Some(2));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn two_cas_applied_from_the_same_expected_value_are_illegal() {
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 0);
    b.cas(2, 20, 40, Some(0), 1, true);
    b.cas(3, 20, 40, Some(0), 2, true);
    assert_illegal(&b, K);
    // One applies, the other sees the compare fail: fine.
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 0);
    b.cas(2, 20, 40, Some(0), 1, true);
    b.cas(3, 20, 40, Some(0), 2, false);
    b.read(1, 50, 60, K, Some(1));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn cas_that_did_not_apply_must_have_seen_another_value() {
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 5);
    b.cas(2, 20, 30, Some(5), 6, false);
    assert_illegal(&b, K);
    let mut b = Builder::default();
    b.cas(2, 20, 30, None, 6, false);
    assert_illegal(&b, K);
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 5);
    b.cas(2, 20, 30, Some(4), 6, false);
    b.cas(2, 40, 50, Some(5), 6, true);
    b.read(2, 60, 70, K, Some(6));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn failed_write_never_takes_effect() {
    let mut b = Builder::default();
    b.failed_write(1, 0, 10, K, 1);
    b.read(2, 20, 30, K, Some(1));
    assert_illegal(&b, K);
    let mut b = Builder::default();
    b.failed_write(1, 0, 10, K, 1);
    b.read(2, 5, 30, K, None);
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn info_write_may_take_effect_long_after_it_timed_out() {
    let mut b = Builder::default();
    b.info_write(1, 0, 10, K, 1);
    b.read(2, 20, 30, K, None);
    b.write(3, 40, 50, K, 2);
    b.read(2, 60, 70, K, Some(2));
    b.read(2, 80, 90, K, Some(1));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn info_write_seen_then_unseen_is_illegal() {
    let mut b = Builder::default();
    b.info_write(1, 0, 10, K, 1);
    b.read(2, 20, 30, K, Some(1));
    b.read(2, 40, 50, K, None);
    assert_illegal(&b, K);
}

#[test]
fn info_write_never_seen_may_never_take_effect() {
    let mut b = Builder::default();
    for value in 0..20 {
        b.info_write(100 + value, value, value + 1, K, 1000 + value);
    }
    b.read(1, 30, 40, K, None);
    b.write(1, 50, 60, K, 1);
    b.read(1, 70, 80, K, Some(1));
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

#[test]
fn info_cas_applies_only_if_its_compare_held() {
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 1);
    let cas = |value| Op::Cas { key: K, expected: Some(1), new: 2, applied: value };
    b.done(2, 20, EventKind::Info, 30, cas(None), cas(None));
    b.read(3, 40, 50, K, Some(2));
    assert_eq!(b.verdict(), Verdict::Linearizable);
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 3);
    b.done(2, 20, EventKind::Info, 30, cas(None), cas(None));
    b.read(3, 40, 50, K, Some(2));
    assert_illegal(&b, K);
}

#[test]
fn keys_are_checked_independently() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 1);
    b.write(1, 20, 30, 2, 1);
    b.write(2, 25, 35, 2, 2);
    b.read(3, 40, 50, 1, Some(1));
    b.read(3, 60, 70, 2, Some(2));
    b.read(4, 80, 90, 2, Some(1));
    assert_illegal(&b, 2);
}

#[test]
fn exhausted_budget_is_unknown() {
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 1);
    b.read(2, 20, 30, K, Some(1));
    let verdict = check_registers(&b.operations(), &CheckOptions { max_steps: 1 });
    assert_eq!(verdict, Verdict::Unknown { key: K, steps: 1 });
}

/// splitmix64: enough randomness for generating histories, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct Generated {
    process: u64,
    call: u64,
    effect: u64,
    ret: u64,
    kind: EventKind,
    /// Whether it took effect (always for `ok`, never for `fail`, either for `info`).
    effective: bool,
    input: Op,
    output: Op,
}

/// Simulates `processes` clients running random ops against a real register per key. Each op
/// takes effect at a random instant between its call and its return. A cas expects the value
/// last returned by a read of its key, as a read-modify-write client would. Some ops fail (no
/// effect) or time out (`info`, effect or not; the client then gets a new process id, as in
/// Jepsen). Written values are unique.
fn generate(seed: u64, processes: u64, keys: u64, count: usize) -> Vec<Generated> {
    let mut rng = Rng(seed);
    // Timing, kinds and outcomes first.
    let mut free_at: Vec<(u64, u64)> = (0..processes).map(|p| (rng.below(20), p)).collect();
    let mut next_process = processes;
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let slot = (0..free_at.len()).min_by_key(|&i| free_at[i]).unwrap();
        let (free, process) = free_at[slot];
        let call = free + rng.below(30);
        let effect = call + rng.below(60);
        let ret = effect + rng.below(60);
        let key = rng.below(keys);
        let input = match rng.below(10) {
            0..=4 => Op::Read { key, value: None, mod_revision: None },
            5..=7 => Op::Write { key, value: 0 },
            _ => Op::Cas { key, expected: None, new: 0, applied: None },
        };
        let (kind, effective) = match rng.below(100) {
            0..=2 => (EventKind::Fail, false),
            3..=5 => (EventKind::Info, rng.below(2) == 0),
            _ => (EventKind::Ok, true),
        };
        let next_id = if kind == EventKind::Info {
            next_process += 1;
            next_process - 1
        } else {
            process
        };
        free_at[slot] = (ret + 1, next_id);
        ops.push(Generated { process, call, effect, ret, kind, effective, output: input.clone(), input });
    }
    // Then values, running calls, effects and returns in time order.
    let mut steps: Vec<(u64, u8, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        steps.extend([(op.call, 0, i), (op.effect, 1, i), (op.ret, 2, i)]);
    }
    steps.sort_unstable();
    let mut state = vec![None; keys as usize];
    let mut last_read = vec![None; keys as usize];
    let mut next_value = 0;
    for (_, step, i) in steps {
        let op = &mut ops[i];
        match (step, &mut op.input) {
            (0, Op::Write { value, .. }) => {
                next_value += 1;
                *value = next_value;
            }
            (0, Op::Cas { key, expected, new, .. }) => {
                next_value += 1;
                *new = next_value;
                *expected = last_read[*key as usize];
            }
            (1, input) if op.effective => {
                op.output = match input.clone() {
                    Op::Read { key, .. } => Op::Read { key, value: state[key as usize], mod_revision: None },
                    Op::Write { key, value } => {
                        state[key as usize] = Some(value);
                        Op::Write { key, value }
                    }
                    Op::Cas { key, expected, new, .. } => {
                        let applied = state[key as usize] == expected;
                        if applied {
                            state[key as usize] = Some(new);
                        }
                        Op::Cas { key, expected, new, applied: Some(applied) }
                    }
                    _ => unreachable!("the generator makes register ops only"),
                };
            }
            (2, Op::Read { key, .. }) if op.kind == EventKind::Ok => {
                if let Op::Read { value, .. } = op.output {
                    last_read[*key as usize] = value;
                }
            }
            _ => {}
        }
        if step == 1 && !op.effective {
            // No effect; the completion still repeats the invocation's arguments.
            op.output = op.input.clone();
        }
    }
    ops
}

fn to_history(ops: &[Generated]) -> History {
    let mut events: Vec<(u64, usize, Event)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 2 * i, Event::new(op.process, EventKind::Invoke, op.call, op.input.clone())));
        events.push((op.ret, 2 * i + 1, Event::new(op.process, op.kind, op.ret, op.output.clone())));
    }
    events.sort_by_key(|(time, order, _)| (*time, *order));
    History { events: events.into_iter().map(|(_, _, e)| e).collect() }
}

/// Makes one late `ok` read return a value that two completed writes ago was overwritten: some
/// write W1 completed, then W2 was invoked and completed, then the read was invoked. Values are
/// unique, so no other op could have written it. Returns the key.
fn corrupt_a_read(ops: &mut [Generated]) -> Option<u64> {
    let writes = |ops: &[Generated], key| -> Vec<(usize, u64)> {
        ops.iter()
            .enumerate()
            .filter(|(_, op)| op.kind == EventKind::Ok && op.input.key() == Some(key))
            .filter_map(|(i, op)| match op.output {
                Op::Write { value, .. } | Op::Cas { new: value, applied: Some(true), .. } => Some((i, value)),
                _ => None,
            })
            .collect()
    };
    let reads: Vec<usize> =
        (0..ops.len()).filter(|&i| ops[i].kind == EventKind::Ok && matches!(ops[i].input, Op::Read { .. })).collect();
    // A read from the middle: late enough to have writes before it, not so late that the search
    // must exhaust the whole history.
    for &r in &reads[reads.len() / 2..] {
        let key = ops[r].input.key().unwrap();
        let writes = writes(ops, key);
        let Some(&(w1, stale)) = writes.iter().find(|&&(w, _)| ops[w].ret < ops[r].call) else { continue };
        let overwritten = writes.iter().any(|&(w2, _)| ops[w2].call > ops[w1].ret && ops[w2].ret < ops[r].call);
        if overwritten {
            ops[r].output = Op::Read { key, value: Some(stale), mod_revision: None };
            return Some(key);
        }
    }
    None
}

fn check(ops: &[Generated]) -> Verdict {
    check_registers(&to_history(ops).operations().unwrap(), &CheckOptions::default())
}

#[test]
fn random_register_executions_pass_and_fail_once_a_read_is_stale() {
    for seed in 0..20 {
        let mut ops = generate(seed, 10, 3, 1500);
        assert_eq!(check(&ops), Verdict::Linearizable, "seed {seed}");
        let key = corrupt_a_read(&mut ops).expect("a read to corrupt");
        match check(&ops) {
            Verdict::Illegal(illegal) => assert_eq!(illegal.key, key, "seed {seed}"),
            other => panic!("seed {seed}: expected illegal, got {other:?}"),
        }
    }
}

#[test]
fn ten_thousand_ops_on_one_key_pass_and_fail_within_the_default_budget() {
    let mut ops = generate(99, 10, 1, 10_000);
    assert_eq!(check(&ops), Verdict::Linearizable);
    corrupt_a_read(&mut ops).unwrap();
    assert!(matches!(check(&ops), Verdict::Illegal(_)));
}

#[test]
fn unread_writes_keep_their_place() {
    // Values 1 and 2 are never read, so the checker merges them; write 2 must still come after
    // write 3, or the cas could not see a value other than 3.
    let mut b = Builder::default();
    b.write(1, 0, 10, K, 1);
    b.write(2, 0, 100, K, 2);
    b.write(3, 20, 30, K, 3);
    b.read(4, 40, 50, K, Some(3));
    b.cas(4, 60, 70, Some(3), 4, false);
    assert_eq!(b.verdict(), Verdict::Linearizable);
}

/// Whether some order of all completed ops and any of the unknown-outcome ones respects real
/// time and the register: the definition, searched with no cleverness at all.
fn brute_force(ops: &[Operation]) -> bool {
    use jepsen::history::Status;
    use jepsen::linearizable::Model;
    use jepsen::register::{Register, RegisterInput, RegisterOutput};

    let model_ops: Vec<(u64, u64, bool, RegisterInput, RegisterOutput)> = ops
        .iter()
        .filter(|op| op.status != Status::Fail)
        .map(|op| {
            let done = op.status == Status::Ok;
            let revision = op.revision;
            let unknown = RegisterOutput::Unknown { revision: None };
            let (input, output) = match (&op.input, &op.output) {
                (Op::Read { .. }, Some(Op::Read { value, mod_revision, .. })) => (
                    RegisterInput::Read,
                    RegisterOutput::Read { value: *value, mod_revision: *mod_revision, header: revision },
                ),
                (Op::Read { .. }, _) => (RegisterInput::Read, unknown),
                (Op::Write { value, .. }, _) => {
                    (RegisterInput::Write(*value), if done { RegisterOutput::Written { revision } } else { unknown })
                }
                (Op::Cas { expected, new, .. }, output) => {
                    let output = match output {
                        Some(Op::Cas { applied, .. }) => {
                            RegisterOutput::Cas { applied: applied.unwrap_or(true), revision }
                        }
                        _ => unknown,
                    };
                    (RegisterInput::Cas { expected: *expected, new: *new }, output)
                }
                _ => unreachable!("the generator makes register ops only"),
            };
            (op.call_ns, op.return_ns, done, input, output)
        })
        .collect();
    fn search(
        ops: &[(u64, u64, bool, RegisterInput, RegisterOutput)],
        placed: &mut Vec<bool>,
        state: jepsen::register::RegisterState,
    ) -> bool {
        if ops.iter().zip(placed.iter()).all(|(op, &p)| p || !op.2) {
            return true;
        }
        for i in 0..ops.len() {
            let (call, _, _, input, output) = &ops[i];
            // Every op that returned before this call must already be placed.
            let ready = !placed[i] && ops.iter().zip(placed.iter()).all(|(other, &p)| p || other.1 >= *call);
            if !ready {
                continue;
            }
            if let Some(next) = Register::step(&state, input, output) {
                placed[i] = true;
                if search(ops, placed, next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    // Values are written once each in the revision histories, so a read that saw a value at a
    // revision dates the unknown-outcome write of it, as the checker does.
    let mut model_ops = model_ops;
    let dated: Vec<(u64, i64)> = model_ops
        .iter()
        .filter_map(|op| match op.4 {
            RegisterOutput::Read { value: Some(value), mod_revision: Some(revision), .. } => Some((value, revision)),
            _ => None,
        })
        .collect();
    for op in &mut model_ops {
        let written = match op.3 {
            RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => value,
            RegisterInput::Read => continue,
        };
        if let RegisterOutput::Unknown { revision } = &mut op.4 {
            *revision = dated.iter().find(|(value, _)| *value == written).map(|(_, revision)| *revision);
        }
    }
    search(&model_ops, &mut vec![false; model_ops.len()], Register::init())
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(7);
    let (mut linearizable, mut illegal) = (0, 0);
    for case in 0..3000 {
        let mut b = Builder::default();
        let value = |rng: &mut Rng| [None, Some(1), Some(2), Some(3)][rng.below(4) as usize];
        for process in 0..2 + rng.below(6) {
            let call = rng.below(20);
            let ret = call + rng.below(10);
            let (key, new) = (K, 1 + rng.below(3));
            let (invoked, completed) = match rng.below(3) {
                0 => (
                    Op::Read { key, value: None, mod_revision: None },
                    Op::Read { key, value: value(&mut rng), mod_revision: None },
                ),
                1 => (Op::Write { key, value: new }, Op::Write { key, value: new }),
                _ => {
                    let expected = value(&mut rng);
                    let applied = Some(rng.below(2) == 0);
                    (Op::Cas { key, expected, new, applied: None }, Op::Cas { key, expected, new, applied })
                }
            };
            let kind = match rng.below(10) {
                0 => EventKind::Fail,
                1 | 2 => EventKind::Info,
                _ => EventKind::Ok,
            };
            b.done(process, call, kind, ret, invoked, completed);
        }
        let ops = b.operations();
        let expected = brute_force(&ops);
        let verdict = check_registers(&ops, &CheckOptions::default());
        assert_eq!(verdict == Verdict::Linearizable, expected, "case {case}: {ops:#?}");
        if expected {
            linearizable += 1;
        } else {
            illegal += 1;
        }
    }
    // Both answers are common, so the comparison means something.
    assert!(linearizable > 500 && illegal > 500, "{linearizable} linearizable, {illegal} illegal");
}

/// Histories with revisions (values written once each, revisions drawn small so that they clash
/// often): the search over etcd's KV with revisions agrees with the brute force.
#[test]
fn agrees_with_brute_force_on_small_random_histories_with_revisions() {
    let mut rng = Rng(11);
    let (mut linearizable, mut illegal) = (0, 0);
    for case in 0..3000 {
        let mut b = Builder::default();
        let processes = 2 + rng.below(5);
        for process in 0..processes {
            let call = rng.below(20);
            let ret = call + rng.below(10);
            let (key, new) = (K, 100 + process);
            let written = |rng: &mut Rng| match rng.below(processes + 1) {
                0 => None,
                other => Some(100 + other - 1),
            };
            let header = 1 + rng.below(6) as i64;
            let (invoked, completed) = match rng.below(3) {
                0 => {
                    let value = written(&mut rng);
                    let mod_revision = Some(if value.is_some() { 1 + rng.below(6) as i64 } else { 0 });
                    (Op::Read { key, value: None, mod_revision: None }, Op::Read { key, value, mod_revision })
                }
                1 => (Op::Write { key, value: new }, Op::Write { key, value: new }),
                _ => {
                    let expected = written(&mut rng);
                    let applied = Some(rng.below(2) == 0);
                    (Op::Cas { key, expected, new, applied: None }, Op::Cas { key, expected, new, applied })
                }
            };
            let kind = match rng.below(10) {
                0 => EventKind::Fail,
                1 | 2 => EventKind::Info,
                _ => EventKind::Ok,
            };
            b.history.push(Event::new(process, EventKind::Invoke, call, invoked));
            let mut done = Event::new(process, kind, ret, completed);
            if kind == EventKind::Ok {
                done = done.with_revision(header);
            }
            b.history.push(done);
        }
        let ops = b.operations();
        let expected = brute_force(&ops);
        let verdict = check_registers(&ops, &CheckOptions::default());
        assert_eq!(verdict == Verdict::Linearizable, expected, "case {case}: {ops:#?}");
        if expected {
            linearizable += 1;
        } else {
            illegal += 1;
        }
    }
    assert!(linearizable > 300 && illegal > 300, "{linearizable} linearizable, {illegal} illegal");
}

/// A write acknowledged at revision 5 and read back as written at 7: the value is right, the
/// revision is not, which only the model with revisions sees.
#[test]
fn a_read_showing_another_revision_than_the_write_got_is_illegal() {
    let mut b = Builder::default();
    b.history.push(Event::new(1, EventKind::Invoke, 0, Op::Write { key: K, value: 1 }));
    b.history.push(Event::new(1, EventKind::Ok, 10, Op::Write { key: K, value: 1 }).with_revision(5));
    b.history.push(Event::new(2, EventKind::Invoke, 20, Op::Read { key: K, value: None, mod_revision: None }));
    let saw = Op::Read { key: K, value: Some(1), mod_revision: Some(7) };
    b.history.push(Event::new(2, EventKind::Ok, 30, saw).with_revision(7));
    assert_illegal(&b, K);
}

/// Two writes in real-time order that got their revisions the other way round: no read tells
/// them apart by value, but etcd promised revision order is linearization order.
#[test]
fn writes_whose_revisions_contradict_real_time_are_illegal() {
    let mut b = Builder::default();
    b.history.push(Event::new(1, EventKind::Invoke, 0, Op::Write { key: K, value: 1 }));
    b.history.push(Event::new(1, EventKind::Ok, 10, Op::Write { key: K, value: 1 }).with_revision(9));
    b.history.push(Event::new(1, EventKind::Invoke, 20, Op::Write { key: K, value: 2 }));
    b.history.push(Event::new(1, EventKind::Ok, 30, Op::Write { key: K, value: 2 }).with_revision(8));
    assert_illegal(&b, K);
    // The same two writes in revision order linearize.
    let mut ok = Builder::default();
    ok.history.push(Event::new(1, EventKind::Invoke, 0, Op::Write { key: K, value: 1 }));
    ok.history.push(Event::new(1, EventKind::Ok, 10, Op::Write { key: K, value: 1 }).with_revision(8));
    ok.history.push(Event::new(1, EventKind::Invoke, 20, Op::Write { key: K, value: 2 }));
    ok.history.push(Event::new(1, EventKind::Ok, 30, Op::Write { key: K, value: 2 }).with_revision(9));
    assert_eq!(ok.verdict(), Verdict::Linearizable);
}
