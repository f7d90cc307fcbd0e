//! The list-append checker: each anomaly is found, with the right class, and serializable
//! histories pass.

use jepsen::elle::{check, Anomaly, CycleClass, DepKind, Report};
use jepsen::history::{Event, EventKind, History, MicroOp, Op};

const X: u64 = 1;
const Y: u64 = 2;
const Z: u64 = 3;
const W: u64 = 4;

fn a(key: u64, value: u64) -> MicroOp {
    MicroOp::Append { key, value }
}

fn r(key: u64, list: &[u64]) -> MicroOp {
    MicroOp::Read { key, value: Some(list.to_vec()) }
}

/// Builds histories transaction by transaction; each method returns the transaction's index in
/// `operations()`. Each transaction runs in its own process, one after another: the checker
/// does not look at time.
#[derive(Default)]
struct Txns {
    history: History,
    count: u64,
}

impl Txns {
    fn add(&mut self, kind: EventKind, mops: Vec<MicroOp>) -> usize {
        let invoked = mops
            .iter()
            .map(|m| match m {
                MicroOp::Read { key, .. } => MicroOp::Read { key: *key, value: None },
                append => append.clone(),
            })
            .collect();
        let (process, time) = (self.count, 10 * self.count);
        self.history.push(Event::new(process, EventKind::Invoke, time, Op::Txn { mops: invoked }));
        self.history.push(Event::new(process, kind, time + 5, Op::Txn { mops }));
        self.count += 1;
        self.count as usize - 1
    }

    fn ok(&mut self, mops: Vec<MicroOp>) -> usize {
        self.add(EventKind::Ok, mops)
    }

    fn report(&self) -> Report {
        check(&self.history.operations().unwrap())
    }
}

/// The only anomaly is one cycle of `class` through exactly `txns`; its edges chain up.
#[track_caller]
fn assert_single_cycle(report: &Report, class: CycleClass, txns: &[usize]) -> Vec<(usize, DepKind)> {
    let [Anomaly::Cycle(cycle)] = report.anomalies.as_slice() else {
        panic!("expected one cycle, got {:#?}", report.anomalies);
    };
    assert_eq!(cycle.class, class, "{cycle:#?}");
    for (step, next) in cycle.steps.iter().zip(cycle.steps.iter().cycle().skip(1)) {
        assert_eq!(step.to, next.from, "{cycle:#?}");
    }
    let mut members: Vec<usize> = cycle.steps.iter().map(|s| s.from).collect();
    members.sort_unstable();
    assert_eq!(members, txns, "{cycle:#?}");
    cycle.steps.iter().map(|s| (s.from, s.kind)).collect()
}

#[test]
fn serializable_history_is_valid() {
    let mut t = Txns::default();
    t.ok(vec![a(X, 1), a(Y, 1)]);
    t.ok(vec![r(X, &[1]), a(X, 2)]);
    t.ok(vec![r(X, &[1, 2]), r(Y, &[1]), a(Y, 2), r(Y, &[1, 2])]);
    t.ok(vec![r(Y, &[1, 2]), r(X, &[1, 2])]);
    t.ok(vec![r(Y, &[]), a(Y, 3)]);
    let report = t.report();
    // The last transaction read y empty, then appended after 1 and 2: it must come first, and
    // nothing it wrote was read, so there is no cycle.
    assert!(report.is_valid(), "{:#?}", report.anomalies);
}

#[test]
fn g0_write_cycle_is_detected() {
    let mut t = Txns::default();
    let t0 = t.ok(vec![a(X, 1), a(Y, 2)]);
    let t1 = t.ok(vec![a(X, 2), a(Y, 1)]);
    // x shows t0 before t1; y shows t1 before t0.
    t.ok(vec![r(X, &[1, 2]), r(Y, &[1, 2])]);
    let report = t.report();
    let steps = assert_single_cycle(&report, CycleClass::G0, &[t0, t1]);
    assert!(steps.iter().all(|(_, kind)| *kind == DepKind::Ww));
    assert_eq!(report.names(), ["G0"]);
    let text = report.anomalies[0].to_string();
    assert!(text == "G0: T0 -ww 1:2-> T1 -ww 2:2-> T0" || text == "G0: T1 -ww 2:2-> T0 -ww 1:2-> T1", "{text}");
}

#[test]
fn g1c_circular_information_flow_is_detected() {
    let mut t = Txns::default();
    // t1 appended x after t0 (ww), and t0 read t1's append to y (wr).
    let t0 = t.ok(vec![a(X, 1), r(Y, &[1])]);
    let t1 = t.ok(vec![a(X, 2), a(Y, 1)]);
    t.ok(vec![r(X, &[1, 2])]);
    let steps = assert_single_cycle(&t.report(), CycleClass::G1c, &[t0, t1]);
    assert!(steps.contains(&(t0, DepKind::Ww)) && steps.contains(&(t1, DepKind::Wr)), "{steps:?}");
}

#[test]
fn g_single_read_skew_is_detected() {
    let mut t = Txns::default();
    let t0 = t.ok(vec![a(X, 1), a(Y, 1)]);
    // Sees t0's y but not its x.
    let t1 = t.ok(vec![r(X, &[]), r(Y, &[1])]);
    t.ok(vec![r(X, &[1])]);
    let steps = assert_single_cycle(&t.report(), CycleClass::GSingle, &[t0, t1]);
    assert!(steps.contains(&(t0, DepKind::Wr)) && steps.contains(&(t1, DepKind::Rw)), "{steps:?}");
}

#[test]
fn g_single_is_preferred_to_a_shorter_g2_in_the_same_component() {
    let mut t = Txns::default();
    // t0 and t1 write-skew: t0 → t1 and t1 → t0 are rw. t1 also reaches t0 without rw edges,
    // through t2: t1 → t2 (wr on z), t2 → t0 (wr on w). The longer cycle is the worse anomaly.
    let t0 = t.ok(vec![r(X, &[]), a(Y, 1), r(W, &[1])]);
    let t1 = t.ok(vec![r(Y, &[]), a(X, 1), a(Z, 1)]);
    let t2 = t.ok(vec![r(Z, &[1]), a(W, 1)]);
    t.ok(vec![r(X, &[1]), r(Y, &[1])]);
    let steps = assert_single_cycle(&t.report(), CycleClass::GSingle, &[t0, t1, t2]);
    assert_eq!(steps.iter().filter(|(_, kind)| *kind == DepKind::Rw).count(), 1, "{steps:?}");
}

#[test]
fn g2_write_skew_is_detected() {
    let mut t = Txns::default();
    let t0 = t.ok(vec![r(X, &[]), a(Y, 1)]);
    let t1 = t.ok(vec![r(Y, &[]), a(X, 1)]);
    t.ok(vec![r(X, &[1]), r(Y, &[1])]);
    let steps = assert_single_cycle(&t.report(), CycleClass::G2, &[t0, t1]);
    assert!(steps.iter().all(|(_, kind)| *kind == DepKind::Rw));
}

#[test]
fn g1a_aborted_read_is_detected() {
    let mut t = Txns::default();
    let writer = t.add(EventKind::Fail, vec![a(X, 1)]);
    let reader = t.ok(vec![r(X, &[1])]);
    assert_eq!(t.report().anomalies, [Anomaly::G1a { reader, writer, key: X, value: 1 }]);
}

#[test]
fn g1b_intermediate_read_is_detected() {
    let mut t = Txns::default();
    let writer = t.ok(vec![a(X, 1), a(X, 2)]);
    let reader = t.ok(vec![r(X, &[1])]);
    t.ok(vec![r(X, &[1, 2])]);
    let report = t.report();
    assert_eq!(report.anomalies[0], Anomaly::G1b { reader, writer, key: X, value: 1 });
    // Reading the writer's first append but not its second is also a cycle: wr one way, rw back.
    assert_eq!(report.names(), ["G-single", "G1b"]);
}

#[test]
fn incompatible_orders_are_detected() {
    let mut t = Txns::default();
    t.ok(vec![a(X, 1)]);
    t.ok(vec![a(X, 2)]);
    let first = t.ok(vec![r(X, &[1, 2])]);
    let second = t.ok(vec![r(X, &[2, 1])]);
    assert_eq!(
        t.report().anomalies,
        [Anomaly::IncompatibleOrder { key: X, reads: [(first, vec![1, 2]), (second, vec![2, 1])] }]
    );
}

#[test]
fn duplicates_and_values_never_appended_are_detected() {
    let mut t = Txns::default();
    t.ok(vec![a(X, 1)]);
    t.ok(vec![a(X, 1)]);
    t.ok(vec![r(X, &[1, 1]), r(Y, &[7])]);
    assert_eq!(t.report().names(), ["duplicate-append", "duplicate-elements", "unknown-value"]);
}

#[test]
fn reads_that_contradict_their_own_transaction_are_detected() {
    let mut t = Txns::default();
    // Its own append is missing from its read.
    let t0 = t.ok(vec![a(X, 1), r(X, &[])]);
    // Its second read is not its first read plus its own append.
    let t1 = t.ok(vec![r(Y, &[]), a(Y, 5), r(Y, &[5, 6])]);
    t.ok(vec![a(Y, 6)]);
    let internal: Vec<usize> = t
        .report()
        .anomalies
        .iter()
        .filter_map(|a| match a {
            Anomaly::Internal { op, .. } => Some(*op),
            _ => None,
        })
        .collect();
    assert_eq!(internal, [t0, t1]);
}

#[test]
fn info_transactions_may_have_committed() {
    let mut t = Txns::default();
    t.add(EventKind::Info, vec![a(X, 1), a(Y, 1)]);
    t.ok(vec![r(X, &[1]), a(X, 2)]);
    t.ok(vec![r(X, &[1, 2]), r(Y, &[])]);
    let report = t.report();
    assert!(report.is_valid(), "{:#?}", report.anomalies);
}

/// splitmix64, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[test]
fn random_serial_executions_are_valid_and_a_lost_append_is_caught() {
    for seed in 0..20 {
        let mut rng = Rng(seed);
        let mut lists: Vec<Vec<u64>> = vec![Vec::new(); 5];
        let mut next = 0;
        let mut t = Txns::default();
        for _ in 0..400 {
            let kind = match rng.below(20) {
                0 => EventKind::Fail,
                1 => EventKind::Info,
                _ => EventKind::Ok,
            };
            // Failed transactions and half the unknown ones take no effect.
            let effective = kind == EventKind::Ok || (kind == EventKind::Info && rng.below(2) == 0);
            let mut scratch = lists.clone();
            let mops = (0..1 + rng.below(4))
                .map(|_| {
                    let key = rng.below(5);
                    if rng.below(2) == 0 {
                        next += 1;
                        scratch[key as usize].push(next);
                        a(key, next)
                    } else {
                        r(key, &scratch[key as usize])
                    }
                })
                .collect();
            if effective {
                lists = scratch;
            }
            t.add(kind, mops);
        }
        let report = t.report();
        assert!(report.is_valid(), "seed {seed}: {:#?}", report.anomalies);

        // An append that a later transaction read over vanishes from every read after it: those
        // reads now miss a value that earlier ones saw.
        let ops = t.history.operations().unwrap();
        let key = (0..5).max_by_key(|&k| lists[k as usize].len()).unwrap();
        let lost = lists[key as usize][lists[key as usize].len() / 2];
        let mut corrupted = t.history.clone();
        let mut seen_whole = false;
        for event in corrupted.events.iter_mut().filter(|e| e.kind == EventKind::Ok) {
            let Op::Txn { mops } = &mut event.op else { unreachable!() };
            for mop in mops {
                if let MicroOp::Read { key: k, value: Some(list) } = mop {
                    if *k == key && list.contains(&lost) {
                        if seen_whole {
                            list.retain(|v| *v != lost);
                        }
                        seen_whole = true;
                    }
                }
            }
        }
        assert_eq!(ops.len(), corrupted.operations().unwrap().len());
        let report = check(&corrupted.operations().unwrap());
        assert!(report.names().contains(&"incompatible-order"), "seed {seed}: {:#?}", report.anomalies);
    }
}
