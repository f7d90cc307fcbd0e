//! The history file format and the pairing of invocations with completions.

use jepsen::history::{Event, EventKind, History, HistoryError, MicroOp, Op, Status, NEVER};

fn read(key: u64, value: Option<u64>) -> Op {
    Op::Read { key, value, mod_revision: None }
}

#[test]
fn jsonl_lines_have_the_documented_shape_and_round_trip() {
    let mut history = History::new();
    history.push(Event::new(1, EventKind::Invoke, 10, Op::Cas { key: 3, expected: None, new: 7, applied: None }));
    history.push(
        Event::new(1, EventKind::Ok, 20, Op::Cas { key: 3, expected: None, new: 7, applied: Some(true) })
            .with_revision(42),
    );
    let txn = |value| Op::Txn { mops: vec![MicroOp::Append { key: 1, value: 5 }, MicroOp::Read { key: 2, value }] };
    history.push(Event::new(2, EventKind::Invoke, 11, txn(None)));
    history.push(Event::new(2, EventKind::Info, 30, txn(None)));

    let mut bytes = Vec::new();
    history.write_jsonl(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        r#"{"process":1,"kind":"invoke","time_ns":10,"op":{"f":"cas","key":3,"expected":null,"new":7}}"#
    );
    assert_eq!(
        lines[1],
        r#"{"process":1,"kind":"ok","time_ns":20,"op":{"f":"cas","key":3,"expected":null,"new":7,"applied":true},"revision":42}"#
    );
    assert_eq!(
        lines[2],
        r#"{"process":2,"kind":"invoke","time_ns":11,"op":{"f":"txn","mops":[{"f":"append","key":1,"value":5},{"f":"read","key":2,"value":null}]}}"#
    );
    assert_eq!(History::read_jsonl(text.as_bytes()).unwrap(), history);

    // Absent optional fields and blank lines are accepted.
    let sparse = "{\"process\":4,\"kind\":\"invoke\",\"time_ns\":1,\"op\":{\"f\":\"read\",\"key\":9}}\n\n";
    let parsed = History::read_jsonl(sparse.as_bytes()).unwrap();
    assert_eq!(parsed.events, vec![Event::new(4, EventKind::Invoke, 1, read(9, None))]);
}

#[test]
fn save_and_load_through_a_file() {
    let mut history = History::new();
    history.push(Event::new(1, EventKind::Invoke, 1, Op::Write { key: 1, value: 2 }));
    history.push(Event::new(1, EventKind::Ok, 2, Op::Write { key: 1, value: 2 }).with_revision(5));
    let path = std::env::temp_dir().join(format!("jepsen-history-{}.jsonl", std::process::id()));
    history.save(&path).unwrap();
    let loaded = History::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), history);
}

#[test]
fn pairs_each_invocation_with_its_process_next_completion() {
    let mut history = History::new();
    history.push(Event::new(1, EventKind::Invoke, 10, read(1, None)));
    history.push(Event::new(2, EventKind::Invoke, 11, Op::Write { key: 1, value: 4 }));
    history.push(Event::new(3, EventKind::Invoke, 12, Op::Write { key: 1, value: 5 }));
    history.push(Event::new(4, EventKind::Invoke, 13, Op::Write { key: 1, value: 6 }));
    history.push(Event::new(2, EventKind::Fail, 20, Op::Write { key: 1, value: 4 }));
    history.push(Event::new(1, EventKind::Ok, 21, read(1, Some(3))).with_revision(8));
    history.push(Event::new(3, EventKind::Info, 22, Op::Write { key: 1, value: 5 }));
    // Process 4 never completes.
    let ops = history.operations().unwrap();
    assert_eq!(ops.len(), 4);
    assert_eq!((ops[0].status, ops[0].call_ns, ops[0].return_ns), (Status::Ok, 10, 21));
    assert_eq!(ops[0].output, Some(read(1, Some(3))));
    assert_eq!(ops[0].revision, Some(8));
    assert_eq!((ops[1].status, ops[1].return_ns), (Status::Fail, 20));
    assert_eq!((ops[2].status, ops[2].return_ns, &ops[2].output), (Status::Info, NEVER, &None));
    assert_eq!((ops[3].status, ops[3].return_ns, &ops[3].output), (Status::Info, NEVER, &None));
}

#[test]
fn rejects_histories_that_cannot_be_paired() {
    let pair = |events: Vec<Event>| History { events }.operations().unwrap_err();
    let w = |value| Op::Write { key: 1, value };
    assert!(matches!(
        pair(vec![Event::new(1, EventKind::Ok, 1, w(1))]),
        HistoryError::NotInvoked { event: 0, process: 1 }
    ));
    assert!(matches!(
        pair(vec![Event::new(1, EventKind::Invoke, 1, w(1)), Event::new(1, EventKind::Invoke, 2, w(2))]),
        HistoryError::Outstanding { event: 1, process: 1, pending: 0 }
    ));
    assert!(matches!(
        pair(vec![Event::new(1, EventKind::Invoke, 1, w(1)), Event::new(1, EventKind::Ok, 2, w(2))]),
        HistoryError::Mismatch { event: 1, invoked: 0 }
    ));
    assert!(matches!(
        pair(vec![Event::new(1, EventKind::Invoke, 5, w(1)), Event::new(1, EventKind::Ok, 4, w(1))]),
        HistoryError::Backwards { event: 1, invoked: 0 }
    ));
    let bad =
        "\n{\"process\":1,\"kind\":\"invoke\",\"time_ns\":1,\"op\":{\"f\":\"read\",\"key\":1}}\n{\"process\":1}\n";
    assert!(matches!(History::read_jsonl(bad.as_bytes()), Err(HistoryError::Json { line: 3, .. })));
}
