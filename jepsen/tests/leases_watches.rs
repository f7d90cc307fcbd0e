//! The lease and watch checkers on small histories, valid and not.

use jepsen::history::{Op, Value};
use jepsen::history::{Operation, Status, NEVER};
use jepsen::watches::WatchEvent;

fn op(call_ns: u64, return_ns: u64, input: Op, output: Op) -> Operation {
    Operation { process: 0, call_ns, return_ns, input, output: Some(output), status: Status::Ok, revision: None }
}

fn read(key: u64, value: Option<Value>) -> Op {
    Op::Read { key, value, mod_revision: None }
}

fn leased_key(lease: i64) -> Vec<Operation> {
    vec![
        op(0, 1, Op::LeaseGrant { ttl: 2, lease: None }, Op::LeaseGrant { ttl: 2, lease: Some(lease) }),
        op(2, 3, Op::LeasePut { key: 1, value: 1, lease }, Op::LeasePut { key: 1, value: 1, lease }),
        op(4, 5, read(1, None), read(1, Some(1))),
    ]
}

#[test]
fn a_key_read_before_its_lease_ends_is_fine() {
    let mut ops = leased_key(7);
    ops.push(op(6, 7, Op::LeaseRevoke { lease: 7 }, Op::LeaseRevoke { lease: 7 }));
    ops.push(op(8, 9, read(1, None), read(1, None)));
    // A read concurrent with the revoke may still see the key.
    ops.push(op(6, 10, read(1, None), read(1, Some(1))));
    let report = jepsen::leases::check(&ops);
    assert!(report.is_valid(), "{report:?}");
    assert_eq!((report.present_reads, report.absent_reads), (2, 1));
}

#[test]
fn a_key_read_after_its_lease_was_revoked_is_a_violation() {
    let mut ops = leased_key(7);
    ops.push(op(6, 7, Op::LeaseRevoke { lease: 7 }, Op::LeaseRevoke { lease: 7 }));
    ops.push(op(8, 9, read(1, None), read(1, Some(1))));
    let report = jepsen::leases::check(&ops);
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].read, 4);
}

#[test]
fn a_key_read_after_its_lease_was_seen_expired_is_a_violation() {
    let mut ops = leased_key(7);
    ops.push(op(6, 7, Op::LeaseLookup { lease: 7, ttl: None }, Op::LeaseLookup { lease: 7, ttl: Some(-1) }));
    ops.push(op(8, 9, read(1, None), read(1, Some(1))));
    assert_eq!(jepsen::leases::check(&ops).violations.len(), 1);
    // Seen absent once (after the put returned), it may not come back.
    let mut ops = leased_key(7);
    ops.push(op(6, 7, read(1, None), read(1, None)));
    ops.push(op(8, 9, read(1, None), read(1, Some(1))));
    assert_eq!(jepsen::leases::check(&ops).violations.len(), 1);
}

#[test]
fn absence_before_an_unknown_put_proves_nothing() {
    let mut ops = leased_key(7);
    ops[1].status = Status::Info;
    ops[1].return_ns = NEVER;
    ops[1].output = None;
    ops.push(op(6, 7, read(1, None), read(1, None)));
    ops.push(op(8, 9, read(1, None), read(1, Some(1))));
    assert!(jepsen::leases::check(&ops).is_valid());
}

fn write(key: u64, value: Value, revision: i64) -> Operation {
    let mut op = op(0, 1, Op::Write { key, value }, Op::Write { key, value });
    op.revision = Some(revision);
    op
}

fn event(watcher: u64, revision: i64, key: u64, value: Value) -> WatchEvent {
    WatchEvent { watcher, revision, key, value: Some(value), time_ns: 0 }
}

#[test]
fn agreeing_gap_free_watchers_are_valid() {
    let ops = vec![write(1, 10, 6), write(2, 11, 7)];
    let watchers: Vec<Vec<WatchEvent>> = (0..2).map(|w| vec![event(w, 6, 1, 10), event(w, 7, 2, 11)]).collect();
    let report = jepsen::watches::check(&watchers, 5, 7, &ops);
    assert!(report.is_valid(), "{report:?}");
}

#[test]
fn gaps_duplicates_disagreement_and_missed_writes_are_reported() {
    let ops = vec![write(1, 10, 6), write(2, 11, 7), write(3, 12, 8)];
    let watchers = vec![
        // Skips 7 (a gap, and a missed acknowledged put).
        vec![event(0, 6, 1, 10), event(0, 8, 3, 12)],
        // Repeats 6.
        vec![event(1, 6, 1, 10), event(1, 6, 1, 10), event(1, 7, 2, 11), event(1, 8, 3, 12)],
        // Disagrees at 8 with a value never written.
        vec![event(2, 6, 1, 10), event(2, 7, 2, 11), event(2, 8, 3, 99)],
    ];
    let report = jepsen::watches::check(&watchers, 5, 8, &ops);
    let all = report.problems.join("\n");
    assert!(all.contains("gap"), "{all}");
    assert!(all.contains("again or out of order"), "{all}");
    assert!(all.contains("missed acknowledged put"), "{all}");
    assert!(all.contains("never written"), "{all}");
    assert!(all.contains("disagree"), "{all}");
}

#[test]
fn a_watcher_that_stops_early_is_reported() {
    let ops = vec![write(1, 10, 6), write(2, 11, 7)];
    let watchers = vec![vec![event(0, 6, 1, 10)]];
    let report = jepsen::watches::check(&watchers, 5, 7, &ops);
    assert!(report.problems.iter().any(|p| p.contains("stopped at revision 6")), "{report:?}");
}
