//! The revision-contract checker: it passes histories etcd could produce and names the ops of
//! each kind of break.

use jepsen::history::{Event, EventKind, History, Op, Operation};
use jepsen::revisions::{check, Violation};

/// (ops placed, the first violation).
fn jepsen_check(ops: &[Operation]) -> (usize, Option<Violation>) {
    let summary = check(ops);
    (summary.placed, summary.violation)
}

#[derive(Default)]
struct Builder {
    history: History,
}

impl Builder {
    /// An acknowledged op invoked at `call`, returned at `ret` with header revision `revision`.
    fn ok(&mut self, process: u64, call: u64, ret: u64, invoked: Op, completed: Op, revision: i64) -> &mut Self {
        self.history.push(Event::new(process, EventKind::Invoke, call, invoked));
        self.history.push(Event::new(process, EventKind::Ok, ret, completed).with_revision(revision));
        self
    }

    fn write(&mut self, process: u64, call: u64, ret: u64, key: u64, value: u64, revision: i64) -> &mut Self {
        self.ok(process, call, ret, Op::Write { key, value }, Op::Write { key, value }, revision)
    }

    fn read(&mut self, process: u64, call: u64, ret: u64, key: u64, seen: Option<(u64, i64)>, at: i64) -> &mut Self {
        let invoked = Op::Read { key, value: None, mod_revision: None };
        let completed = Op::Read { key, value: seen.map(|s| s.0), mod_revision: Some(seen.map_or(0, |s| s.1)) };
        self.ok(process, call, ret, invoked, completed, at)
    }

    fn ops(&self) -> Vec<Operation> {
        self.history.operations().unwrap()
    }
}

#[test]
fn a_history_in_revision_order_passes() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 100, 2)
        .write(2, 5, 15, 2, 200, 3)
        .read(3, 12, 20, 1, Some((100, 2)), 3)
        .read(4, 16, 25, 2, Some((200, 3)), 3)
        .read(5, 0, 4, 3, None, 1)
        // Concurrent with the write at 4: may read before it.
        .write(1, 30, 40, 1, 101, 4)
        .read(2, 31, 39, 1, Some((100, 2)), 3);
    let (placed, violation) = jepsen_check(&b.ops());
    assert_eq!(violation, None);
    assert_eq!(placed, 7);
}

#[test]
fn two_writes_at_one_revision_are_reported() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 100, 2).write(2, 0, 10, 2, 200, 2);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::SharedRevision { revision: 2, first: 0, second: 1 }));
}

/// A read of another key, begun after a write returned, served at a revision below that write:
/// its own key never changed, so no per-key check can see it.
#[test]
fn a_stale_read_of_an_unchanged_key_is_reported() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 100, 5).read(2, 20, 30, 2, None, 4);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::RealTime { earlier: 0, later: 1 }));
    // At the write's revision or later it is fine.
    let mut ok = Builder::default();
    ok.write(1, 0, 10, 1, 100, 5).read(2, 20, 30, 2, None, 5);
    assert_eq!(jepsen_check(&ok.ops()).1, None);
}

#[test]
fn a_write_ordered_before_a_read_that_returned_earlier_is_reported() {
    let mut b = Builder::default();
    b.read(1, 0, 10, 1, None, 6).write(2, 20, 30, 2, 200, 6);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::RealTime { earlier: 0, later: 1 }));
}

#[test]
fn a_read_that_missed_a_write_below_its_revision_is_reported() {
    let mut b = Builder::default();
    // Concurrent, so real time allows either order, but the read claims revision 9, after the
    // write at 8, and still returned the version of 3.
    b.write(1, 0, 10, 1, 100, 3).write(1, 20, 40, 1, 101, 8).read(2, 21, 39, 1, Some((100, 3)), 9);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::MissedWrite { read: 2, missed: 1 }));
}

#[test]
fn a_value_shown_at_another_revision_than_its_write_got_is_reported() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 100, 3).read(2, 20, 30, 1, Some((100, 4)), 4);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::WrongRevision { read: 1, write: Some(0) }));
    let mut newer = Builder::default();
    newer.read(2, 20, 30, 1, Some((100, 7)), 6);
    assert_eq!(jepsen_check(&newer.ops()).1, Some(Violation::WrongRevision { read: 0, write: None }));
}

#[test]
fn ops_without_an_acknowledgement_take_no_place() {
    let mut b = Builder::default();
    b.write(1, 0, 10, 1, 100, 5);
    // A timed-out write and a failed read: neither is ordered.
    b.history.push(Event::new(2, EventKind::Invoke, 20, Op::Write { key: 2, value: 200 }));
    b.history.push(Event::new(2, EventKind::Info, 30, Op::Write { key: 2, value: 200 }));
    b.history.push(Event::new(3, EventKind::Invoke, 20, Op::Read { key: 2, value: None, mod_revision: None }));
    b.history.push(Event::new(3, EventKind::Fail, 30, Op::Read { key: 2, value: None, mod_revision: None }));
    assert_eq!(jepsen_check(&b.ops()), (1, None));
}

#[test]
fn serializable_gets_are_not_ordered_but_linearizable_ones_are() {
    let get = |name: &str| Op::Other {
        name: name.into(),
        key: Some(1),
        detail: Some("0 kvs".into()),
        value: None,
        seen: Some(Vec::new()),
    };
    let put = Op::Other { name: "put".into(), key: Some(1), detail: Some("put".into()), value: Some(100), seen: None };
    let mut b = Builder::default();
    b.ok(1, 0, 10, put.clone(), put.clone(), 7).ok(2, 20, 30, get("get-serializable"), get("get-serializable"), 3);
    assert_eq!(jepsen_check(&b.ops()).1, None);
    b.ok(3, 20, 30, get("get"), get("get"), 3);
    assert_eq!(jepsen_check(&b.ops()).1, Some(Violation::RealTime { earlier: 0, later: 2 }));
}

/// The mixed workload's requests, as the history records them.
fn other(name: &str, key: u64, detail: &str, value: Option<u64>, seen: Option<Vec<(u64, u64, i64)>>) -> Op {
    Op::Other { name: name.into(), key: Some(key), detail: Some(detail.into()), value, seen }
}

#[test]
fn mixed_reads_are_checked_against_puts_deletes_and_leases() {
    let put = |value| other("put", 1, "put", Some(value), None);
    let get = |seen: Vec<(u64, u64, i64)>| other("get", 1, "", None, Some(seen));
    let delete = other("delete", 1, "1 deleted", None, None);
    let lease_put = |value| other("lease-put", 1, "lease 7", Some(value), None);

    // put at 3, delete at 5: a get at 6 sees nothing, a serializable one at 4 still the put.
    let mut b = Builder::default();
    b.ok(1, 0, 10, put(100), put(100), 3).ok(1, 20, 30, delete.clone(), delete.clone(), 5);
    b.ok(2, 40, 50, get(vec![]), get(vec![]), 6);
    let old = other("get-serializable", 1, "", None, Some(vec![(1, 100, 3)]));
    b.ok(3, 40, 50, old.clone(), old, 4);
    assert_eq!(jepsen_check(&b.ops()).1, None);

    // A get at 6 that still shows the version of 3 missed the delete at 5.
    let mut missed_delete = Builder::default();
    missed_delete.ok(1, 0, 10, put(100), put(100), 3).ok(1, 20, 30, delete.clone(), delete, 5);
    missed_delete.ok(2, 40, 50, get(vec![(1, 100, 3)]), get(vec![(1, 100, 3)]), 6);
    assert_eq!(jepsen_check(&missed_delete.ops()).1, Some(Violation::MissedWrite { read: 2, missed: 1 }));

    // An absent get after a plain put missed it; after a lease put the lease may have expired.
    let mut missed_put = Builder::default();
    missed_put.ok(1, 0, 10, put(100), put(100), 3).ok(2, 20, 30, get(vec![]), get(vec![]), 4);
    assert_eq!(jepsen_check(&missed_put.ops()).1, Some(Violation::MissedWrite { read: 1, missed: 0 }));
    let mut expired = Builder::default();
    expired.ok(1, 0, 10, lease_put(100), lease_put(100), 3).ok(2, 20, 30, get(vec![]), get(vec![]), 4);
    assert_eq!(jepsen_check(&expired.ops()).1, None);

    // A range that returned a key at the wrong revision.
    let range = other("range", 0, "1 kvs, more false", None, Some(vec![(1, 100, 4)]));
    let mut wrong = Builder::default();
    wrong.ok(1, 0, 10, put(100), put(100), 3).ok(2, 20, 30, range.clone(), range, 4);
    assert_eq!(jepsen_check(&wrong.ops()).1, Some(Violation::WrongRevision { read: 1, write: Some(0) }));
}
