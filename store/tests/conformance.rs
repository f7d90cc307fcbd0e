//! The store's KV semantics, etcd's as the spec, run against every engine. Each test names the
//! behaviour it pins down; tables hold (request, expected) rows checked by one helper.

mod common;

use bytes::Bytes;
use common::*;
use store::{
    Command, CompareResult, CompareTarget, Error, EventKind, PutRequest, RangeRequest, RequestOp, Response, ResponseOp,
    SortOrder, SortTarget,
};

fn each_engine(test: impl Fn(&mut Harness)) {
    for kind in ENGINES {
        let mut harness = Harness::new(kind);
        test(&mut harness);
    }
}

fn txn_response(response: Response) -> store::TxnResponse {
    match response {
        Response::Txn(txn) => txn,
        other => panic!("not a txn response: {other:?}"),
    }
}

#[test]
fn revision_moves_only_when_a_key_changes() {
    each_engine(|h| {
        let store_revision = |h: &Harness| h.store().revision();
        assert_eq!(store_revision(h), 1, "{:?}: an empty store is at revision 1, as etcd", h.kind);
        assert_eq!(h.must(put("a", "1")).revision(), 2);
        assert_eq!(h.must(put("b", "1")).revision(), 3);
        // No-ops, each of which etcd answers without a new revision.
        let unchanged = [
            delete("missing", ""),
            txn(vec![], vec![op_range("a", "")], vec![]),
            txn(vec![compare("a", CompareResult::Equal, CompareTarget::Version(9))], vec![op_put("a", "x")], vec![]),
            Command::LeaseGrant { id: 7, ttl_seconds: 60 },
            Command::LeaseRevoke { id: 7 },
            Command::Compact { revision: 2 },
            Command::LeaseGrant { id: 8, ttl_seconds: 60 },
            Command::LeaseCheckpoint { id: 8, remaining_ttl_seconds: 30 },
        ];
        for command in unchanged {
            let description = format!("{command:?}");
            assert_eq!(h.must(command).revision(), 3, "{description}");
            assert_eq!(store_revision(h), 3, "{description}");
        }
        // A txn that writes three keys is one revision with sub revisions 0, 1, 2.
        let output = h
            .store()
            .apply(&[txn(vec![], vec![op_put("x", "1"), op_put("y", "1"), op_delete("a", "")], vec![])], b"p")
            .unwrap();
        assert_eq!(output.changes.len(), 1);
        assert_eq!(output.changes[0].revision, 4);
        let subs: Vec<i64> = output.changes[0].events.iter().map(|event| event.sub_revision).collect();
        assert_eq!(subs, [0, 1, 2]);
        assert_eq!(store_revision(h), 4);
    });
}

#[test]
fn key_value_fields_follow_generations() {
    each_engine(|h| {
        h.must(Command::LeaseGrant { id: 5, ttl_seconds: 10 });
        h.must(put("k", "v1")); // 2
        h.must(put_with_lease("k", "v2", 5)); // 3
        h.must(delete("k", "")); // 4
        h.must(put("k", "v3")); // 5
        let kv = h.range(range("k", "")).unwrap().kvs.remove(0);
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.lease), (5, 5, 1, 0));
        let at_3 = h.range(RangeRequest { revision: 3, ..range("k", "") }).unwrap().kvs.remove(0);
        assert_eq!(
            (at_3.value.as_ref(), at_3.create_revision, at_3.mod_revision, at_3.version, at_3.lease),
            (&b"v2"[..], 2, 3, 2, 5)
        );
        assert!(h.range(RangeRequest { revision: 4, ..range("k", "") }).unwrap().kvs.is_empty());
    });
}

/// The data every range row below reads: (key, value) puts in order, then deletes.
fn range_fixture(h: &mut Harness) {
    for (key, value) in
        [("a", "3"), ("b", "1"), ("c", "2"), ("foo", "x"), ("foo1", "y"), ("foo2", "z"), ("zz", "0"), ("\0", "nul")]
    {
        h.must(put(key, value)); // revisions 2..=9
    }
    h.must(put("b", "11")); // 10: b version 2
    h.must(delete("zz", "")); // 11
}

#[test]
fn range_table() {
    struct Row {
        name: &'static str,
        request: RangeRequest,
        keys: &'static [&'static str],
        count: i64,
        more: bool,
    }
    let row = |name, request, keys, count, more| Row { name, request, keys, count, more };
    let rows = [
        row("single key", range("b", ""), &["b"][..], 1, false),
        row("missing key", range("nope", ""), &[], 0, false),
        row("interval", range("b", "foo"), &["b", "c"], 2, false),
        row("prefix", range("foo", "fop"), &["foo", "foo1", "foo2"], 3, false),
        row("from key", range("c", "\0"), &["c", "foo", "foo1", "foo2"], 4, false),
        row("all keys", range("\0", "\0"), &["\0", "a", "b", "c", "foo", "foo1", "foo2"], 7, false),
        row("end before start", range("foo", "b"), &[], 0, false),
        row("limit", RangeRequest { limit: 2, ..range("a", "\0") }, &["a", "b"], 6, true),
        row(
            "limit equal to count",
            RangeRequest { limit: 3, ..range("foo", "fop") },
            &["foo", "foo1", "foo2"],
            3,
            false,
        ),
        row("historical", RangeRequest { revision: 4, ..range("a", "\0") }, &["a", "b", "c"], 3, false),
        row("historical sees deleted key", RangeRequest { revision: 10, ..range("z", "\0") }, &["zz"], 1, false),
        row(
            "sort key descend",
            RangeRequest { sort_order: SortOrder::Descend, ..range("a", "d") },
            &["c", "b", "a"],
            3,
            false,
        ),
        row(
            "sort value ascend",
            RangeRequest { sort_target: SortTarget::Value, sort_order: SortOrder::Ascend, ..range("a", "d") },
            &["b", "c", "a"],
            3,
            false,
        ),
        row(
            "sort value, default order ascends",
            RangeRequest { sort_target: SortTarget::Value, ..range("a", "d") },
            &["b", "c", "a"],
            3,
            false,
        ),
        row(
            "sort version descend",
            RangeRequest { sort_target: SortTarget::Version, sort_order: SortOrder::Descend, ..range("a", "d") },
            &["b", "a", "c"],
            3,
            false,
        ),
        row(
            "sort create descend, limit",
            RangeRequest {
                sort_target: SortTarget::Create,
                sort_order: SortOrder::Descend,
                limit: 2,
                ..range("a", "d")
            },
            &["c", "b"],
            3,
            true,
        ),
        row(
            "sort mod descend",
            RangeRequest { sort_target: SortTarget::Mod, sort_order: SortOrder::Descend, ..range("a", "d") },
            &["b", "c", "a"],
            3,
            false,
        ),
        row("min mod revision", RangeRequest { min_mod_revision: 4, ..range("a", "d") }, &["b", "c"], 3, false),
        row("max mod revision", RangeRequest { max_mod_revision: 4, ..range("a", "d") }, &["a", "c"], 3, false),
        row("min create revision", RangeRequest { min_create_revision: 3, ..range("a", "d") }, &["b", "c"], 3, false),
        row("max create revision", RangeRequest { max_create_revision: 3, ..range("a", "d") }, &["a", "b"], 3, false),
        row("filter then limit", RangeRequest { min_mod_revision: 4, limit: 1, ..range("a", "d") }, &["b"], 3, true),
        row("count only", RangeRequest { count_only: true, ..range("a", "\0") }, &[], 6, false),
    ];
    each_engine(|h| {
        range_fixture(h);
        for row in &rows {
            let response = h.range(row.request.clone()).unwrap_or_else(|error| panic!("{}: {error}", row.name));
            let keys: Vec<String> = response.kvs.iter().map(|kv| text(&kv.key)).collect();
            assert_eq!(keys, row.keys, "{:?} {}: keys", h.kind, row.name);
            assert_eq!(response.count, row.count, "{:?} {}: count", h.kind, row.name);
            assert_eq!(response.more, row.more, "{:?} {}: more", h.kind, row.name);
            assert_eq!(response.revision, 11, "{}: header revision is the current one", row.name);
        }
        let keys_only = h.range(RangeRequest { keys_only: true, ..range("a", "d") }).unwrap();
        assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.mod_revision > 0));
        let by_value =
            h.range(RangeRequest { keys_only: true, sort_target: SortTarget::Value, ..range("a", "d") }).unwrap();
        let keys: Vec<String> = by_value.kvs.iter().map(|kv| text(&kv.key)).collect();
        assert_eq!(keys, ["b", "c", "a"], "keys-only still sorts by value");
    });
}

#[test]
fn range_errors() {
    each_engine(|h| {
        range_fixture(h);
        assert_eq!(h.range(range("", "")), Err(Error::EmptyKey));
        assert!(matches!(
            h.range(RangeRequest { revision: 12, ..range("a", "") }),
            Err(Error::FutureRevision { current_revision: 11 })
        ));
        h.must(Command::Compact { revision: 5 });
        assert!(matches!(
            h.range(RangeRequest { revision: 4, ..range("a", "") }),
            Err(Error::Compacted { compact_revision: 5 })
        ));
        assert_eq!(h.keys(RangeRequest { revision: 5, ..range("a", "\0") }), ["a", "b", "c", "foo"]);
    });
}

#[test]
fn put_options_and_their_errors() {
    each_engine(|h| {
        h.must(Command::LeaseGrant { id: 3, ttl_seconds: 30 });
        let Response::Put(first) = h.must(Command::Put(PutRequest { prev_kv: true, ..put_request("k", "v1") })) else {
            panic!()
        };
        assert_eq!(first.prev_kv, None);
        let Response::Put(second) =
            h.must(Command::Put(PutRequest { prev_kv: true, lease: 3, ..put_request("k", "v2") }))
        else {
            panic!()
        };
        assert_eq!(second.prev_kv.unwrap().value, b("v1"));
        // ignore_value keeps the value and takes the new lease; ignore_lease the reverse.
        h.must(Command::Put(PutRequest { ignore_value: true, ..put_request("k", "") }));
        let kv = h.range(range("k", "")).unwrap().kvs.remove(0);
        assert_eq!((kv.value.as_ref(), kv.lease), (&b"v2"[..], 0));
        assert_eq!(h.store().lease_keys(3).unwrap().len(), 0, "moving off a lease detaches the key");
        h.must(Command::Put(PutRequest { lease: 3, ..put_request("k", "v3") }));
        h.must(Command::Put(PutRequest { ignore_lease: true, ..put_request("k", "v4") }));
        let kv = h.range(range("k", "")).unwrap().kvs.remove(0);
        assert_eq!((kv.value.as_ref(), kv.lease, kv.version), (&b"v4"[..], 3, 5));
        assert_eq!(h.store().lease_keys(3).unwrap(), [b("k")]);
        let before = h.store().revision();
        let errors = [
            (Command::Put(PutRequest { ignore_value: true, ..put_request("k", "x") }), Error::ValueProvided),
            (Command::Put(PutRequest { ignore_lease: true, lease: 3, ..put_request("k", "x") }), Error::LeaseProvided),
            (Command::Put(PutRequest { ignore_value: true, ..put_request("missing", "") }), Error::KeyNotFound),
            (Command::Put(PutRequest { ignore_lease: true, ..put_request("missing", "x") }), Error::KeyNotFound),
            (put_with_lease("k", "x", 99), Error::LeaseNotFound { lease_id: 99 }),
            (put("", "x"), Error::EmptyKey),
            (delete("", ""), Error::EmptyKey),
        ];
        for (command, expected) in errors {
            let description = format!("{command:?}");
            assert_eq!(h.apply(command), Err(expected), "{description}");
        }
        assert_eq!(h.store().revision(), before, "failed commands change nothing");
    });
}

#[test]
fn delete_range_counts_and_returns_previous_versions() {
    each_engine(|h| {
        range_fixture(h);
        let Response::DeleteRange(deleted) = h.must(delete("foo", "fop")) else { panic!() };
        assert_eq!(deleted.deleted, 3);
        let keys: Vec<String> = deleted.prev_kvs.iter().map(|kv| text(&kv.key)).collect();
        assert_eq!(keys, ["foo", "foo1", "foo2"]);
        assert_eq!(deleted.revision, 12);
        let Response::DeleteRange(none) = h.must(delete("foo", "fop")) else { panic!() };
        assert_eq!((none.deleted, none.revision), (0, 12));
        assert_eq!(h.keys(range("a", "\0")), ["a", "b", "c"]);
    });
}

#[test]
fn deletes_read_no_values_unless_asked() {
    each_engine(|h| {
        h.must(put("d/a", "1"));
        h.must(put("d/b", "2"));
        h.must(put("d/b", "3"));
        h.must(put("e", "4"));
        let without = Command::DeleteRange(store::DeleteRangeRequest { prev_kv: false, ..delete_request("d/", "d0") });
        let output = h.store().apply(&[without], b"1").unwrap();
        let Ok(Response::DeleteRange(deleted)) = &output.results[0] else { panic!("{:?}", output.results) };
        assert_eq!((deleted.deleted, deleted.prev_kvs.len(), deleted.revision), (2, 0, 6));
        let events = &output.changes[0].events;
        assert!(events.iter().all(|event| event.kind == EventKind::Delete && event.prev_kv.is_none()));
        let read_back: Vec<_> = events.iter().map(|event| h.store().deleted_version(event).unwrap().unwrap()).collect();
        let shape: Vec<_> =
            read_back.iter().map(|kv| (text(&kv.key), text(&kv.value), kv.create_revision, kv.mod_revision)).collect();
        assert_eq!(shape, [("d/a".into(), "1".into(), 2, 2), ("d/b".into(), "3".into(), 3, 4)]);

        // Asked: the values come with the response and the events.
        let output = h.store().apply(&[delete("e", "")], b"2").unwrap();
        let Ok(Response::DeleteRange(deleted)) = &output.results[0] else { panic!("{:?}", output.results) };
        assert_eq!(text(&deleted.prev_kvs[0].value), "4");
        assert_eq!(output.changes[0].events[0].prev_kv, Some(deleted.prev_kvs[0].clone()));

        // Once compaction passes the revision before a delete, its version is gone, as in etcd.
        h.must(Command::Compact { revision: 6 });
        assert_eq!(h.store().deleted_version(&events[0]).unwrap(), None);
    });
}

#[test]
fn txn_compares() {
    use CompareResult::*;
    use CompareTarget::*;
    each_engine(|h| {
        h.must(Command::LeaseGrant { id: 4, ttl_seconds: 30 });
        h.must(put("a", "5")); // 2
        h.must(put_with_lease("a", "7", 4)); // 3: a version 2, create 2, mod 3
        h.must(put("b", "1")); // 4
        let rows = [
            (compare("a", Equal, Version(2)), true),
            (compare("a", NotEqual, Version(2)), false),
            (compare("a", Greater, Version(1)), true),
            (compare("a", Less, Version(2)), false),
            (compare("a", Equal, Create(2)), true),
            (compare("a", Equal, Mod(3)), true),
            (compare("a", Less, Mod(3)), false),
            (compare("a", Equal, Value(b("7"))), true),
            (compare("a", Greater, Value(b("6"))), true),
            (compare("a", Equal, Lease(4)), true),
            (compare("missing", Equal, Version(0)), true),
            (compare("missing", Equal, Create(0)), true),
            (compare("missing", Equal, Value(b(""))), false),
            (compare("missing", NotEqual, Value(b("x"))), false),
            (store::Compare { range_end: b("c"), ..compare("a", Greater, Mod(1)) }, true),
            (store::Compare { range_end: b("c"), ..compare("a", Equal, Version(2)) }, false),
            (store::Compare { range_end: b("c"), ..compare("x", Equal, Version(0)) }, true),
        ];
        for (compare, expected) in rows {
            let description = format!("{compare:?}");
            let response = txn_response(h.must(txn(vec![compare], vec![], vec![])));
            assert_eq!(response.succeeded, expected, "{description}");
        }
    });
}

/// Compare-and-swaps on one key in one batch: each compare sees the puts of the commands before
/// it, and each put's version follows the one its compare saw.
#[test]
fn compare_and_swaps_in_one_batch_see_the_writes_before_them() {
    use CompareResult::Equal;
    use CompareTarget::{Mod, Version};
    each_engine(|h| {
        let swap = |expected, value: &str| txn(vec![compare("k", Equal, expected)], vec![op_put("k", value)], vec![]);
        let results = h.apply_batch(vec![
            swap(Mod(0), "created"),
            swap(Mod(0), "created again"),
            swap(Version(1), "second"),
            swap(Mod(3), "third"),
            swap(Mod(3), "stale"),
        ]);
        let succeeded: Vec<bool> =
            results.into_iter().map(|result| txn_response(result.expect("applied")).succeeded).collect();
        assert_eq!(succeeded, [true, false, true, true, false]);
        let response = txn_response(h.must(txn(vec![], vec![op_range("k", "")], vec![])));
        let ResponseOp::Range(range) = &response.responses[0] else { panic!("a range answer") };
        let kv = &range.kvs[0];
        assert_eq!((kv.value.as_ref(), kv.version, kv.create_revision, kv.mod_revision), (&b"third"[..], 3, 2, 4));
    });
}

#[test]
fn txn_branches_nesting_and_reads_of_own_writes() {
    each_engine(|h| {
        h.must(put("a", "1")); // 2
        let nested = RequestOp::Txn(store::TxnRequest {
            compare: vec![compare("a", CompareResult::Equal, CompareTarget::Value(b("1")))],
            success: vec![op_put("n", "then")],
            failure: vec![op_put("n", "else")],
        });
        let response = txn_response(h.must(txn(
            vec![compare("a", CompareResult::Equal, CompareTarget::Version(1))],
            vec![op_put("a", "2"), op_range("a", ""), nested, op_range("n", "")],
            vec![op_put("f", "x")],
        )));
        assert!(response.succeeded);
        assert_eq!(response.revision, 3);
        let ResponseOp::Range(read_own) = &response.responses[1] else { panic!() };
        assert_eq!(read_own.kvs[0].value, b("2"), "a txn reads its own earlier writes");
        // Nested compares see the state before the txn (a was "1"), as etcd decides them.
        let ResponseOp::Range(nested_read) = &response.responses[3] else { panic!() };
        assert_eq!(nested_read.kvs[0].value, b("then"));
        assert_eq!(h.keys(range("a", "\0")), ["a", "n"]);
        let failed = txn_response(h.must(txn(
            vec![compare("a", CompareResult::Equal, CompareTarget::Version(1))],
            vec![op_put("s", "x")],
            vec![op_put("f", "x"), op_delete("n", "")],
        )));
        assert!(!failed.succeeded);
        assert_eq!(h.keys(range("a", "\0")), ["a", "f"]);
    });
}

#[test]
fn txn_rejects_what_etcd_rejects() {
    each_engine(|h| {
        h.must(put("a", "1"));
        let nested = |success, failure| RequestOp::Txn(store::TxnRequest { compare: vec![], success, failure });
        let rows = [
            ("put twice", txn(vec![], vec![op_put("a", "1"), op_put("a", "2")], vec![]), Error::DuplicateKey),
            ("put and delete", txn(vec![], vec![op_put("b", "1"), op_delete("a", "c")], vec![]), Error::DuplicateKey),
            (
                "nested put under outer delete",
                txn(vec![], vec![op_delete("a", "z"), nested(vec![op_put("b", "1")], vec![])], vec![]),
                Error::DuplicateKey,
            ),
            (
                "nested put and outer put",
                txn(vec![], vec![op_put("b", "1"), nested(vec![op_put("b", "2")], vec![])], vec![]),
                Error::DuplicateKey,
            ),
            (
                "unknown lease",
                txn(vec![], vec![RequestOp::Put(PutRequest { lease: 42, ..put_request("b", "1") })], vec![]),
                Error::LeaseNotFound { lease_id: 42 },
            ),
            ("empty key", txn(vec![], vec![op_put("", "1")], vec![]), Error::EmptyKey),
            (
                "future revision read",
                txn(vec![], vec![RequestOp::Range(RangeRequest { revision: 99, ..range("a", "") })], vec![]),
                Error::FutureRevision { current_revision: 2 },
            ),
            (
                "129 ops",
                txn(vec![], (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect(), vec![]),
                Error::TooManyOps { ops: 129, max_txn_ops: 128 },
            ),
        ];
        for (name, command, expected) in rows {
            assert_eq!(h.apply(command), Err(expected), "{name}");
            assert_eq!(h.store().revision(), 2, "{name} must change nothing");
        }
        // What etcd allows: the same key in the two branches of a nested txn, and 128 ops.
        h.must(txn(vec![], vec![nested(vec![op_put("b", "1")], vec![op_put("b", "2")])], vec![op_put("b", "3")]));
        h.must(txn(vec![], (0..128).map(|i| op_put(&format!("k{i}"), "v")).collect(), vec![]));
    });
}

#[test]
fn compaction_keeps_the_newest_version_at_or_below_it() {
    each_engine(|h| {
        h.must(put("a", "1")); // 2
        h.must(put("a", "2")); // 3
        h.must(put("b", "1")); // 4
        h.must(delete("b", "")); // 5
        h.must(put("c", "1")); // 6
        h.must(put("a", "3")); // 7
        assert_eq!(h.apply(Command::Compact { revision: 8 }), Err(Error::FutureRevision { current_revision: 7 }));
        h.must(Command::Compact { revision: 5 });
        assert_eq!(h.apply(Command::Compact { revision: 5 }), Err(Error::Compacted { compact_revision: 5 }));
        assert_eq!(h.apply(Command::Compact { revision: 4 }), Err(Error::Compacted { compact_revision: 5 }));
        h.store().wait_for_compaction().unwrap();
        let at_5 = h.range(RangeRequest { revision: 5, ..range("a", "\0") }).unwrap();
        let values: Vec<(String, String)> = at_5.kvs.iter().map(|kv| (text(&kv.key), text(&kv.value))).collect();
        assert_eq!(values, [("a".to_string(), "2".to_string())], "b's tombstone ends it; a keeps version 2");
        assert_eq!(h.keys(RangeRequest { revision: 6, ..range("a", "\0") }), ["a", "c"]);
        assert_eq!(h.store().hash_kv(7).unwrap().compact_revision, 5);
        // History below the compact revision is gone; from it on, intact, including the delete
        // made at the compact revision itself.
        assert!(matches!(h.store().changes(4, 7, 100), Err(Error::Compacted { compact_revision: 5 })));
        let changes = h.store().changes(5, 7, 100).unwrap();
        let revisions: Vec<i64> = changes.iter().map(|change| change.revision).collect();
        assert_eq!(revisions, [5, 6, 7]);
        assert_eq!(changes[0].events[0].kind, EventKind::Delete);
        assert_eq!(
            changes[0].events[0].prev_kv, None,
            "a previous version below the compact revision is gone, as in etcd"
        );
        // Survives a reopen, and a second compaction on top.
        h.reopen();
        assert_eq!(h.store().compact_revision(), 5);
        h.must(Command::Compact { revision: 7 });
        h.store().wait_for_compaction().unwrap();
        assert_eq!(h.keys(RangeRequest { revision: 7, ..range("a", "\0") }), ["a", "c"]);
        assert_eq!(h.store().hash_kv(7).unwrap().hash, h.store().hash_kv(0).unwrap().hash);
    });
}

/// Replicas compact physically at their own pace; the hash covers the logically retained set,
/// so a replica stopped half-way through a pass hashes like one that finished.
#[test]
fn hash_does_not_depend_on_physical_compaction_progress() {
    let mut slow = test_options();
    slow.compaction.batch_keys_max = 1;
    slow.compaction.pause_between_batches_ms = 3_600_000;
    for kind in ENGINES {
        let mut finished = Harness::new(kind);
        let mut halted = Harness::with_options(kind, slow.clone());
        for h in [&mut finished, &mut halted] {
            for round in 0..5 {
                for key in ["a", "b", "c", "d"] {
                    h.must(put(key, &round.to_string()));
                }
                h.must(delete("c", ""));
            }
            h.must(Command::Compact { revision: 22 });
        }
        finished.store().wait_for_compaction().unwrap();
        for revision in [22, 24, 26] {
            assert_eq!(
                halted.store().hash_kv(revision).unwrap(),
                finished.store().hash_kv(revision).unwrap(),
                "{kind:?} at {revision}"
            );
        }
        assert_eq!(halted.keys(RangeRequest { revision: 22, ..range("a", "\0") }), ["a", "b", "d"]);
    }
}

/// Single-key reads find each key in whichever file holds it: RocksDB filters its files by
/// the encoded key, and these keys are prefixes of one another and hold the encoding's bytes.
#[test]
fn single_key_reads_find_keys_in_every_file() {
    let keys: [&[u8]; 6] = [b"\0", b"\0\x01", b"a", b"a\0", b"a\0\xff\x01", b"ab"];
    let absent: [&[u8]; 5] = [b"\0\0", b"\x01", b"a\0\xff", b"a\x01", b"b"];
    let get = |h: &Harness, key: &[u8], revision: i64| {
        let request = RangeRequest { key: Bytes::copy_from_slice(key), revision, ..RangeRequest::default() };
        h.range(request).unwrap().kvs.first().map(|kv| (kv.value.clone(), kv.mod_revision))
    };
    each_engine(|h| {
        // Each key's first version in a file of its own (a reopen flushes the recovered log), the
        // second in the memtable.
        let mut first = Vec::new();
        for key in keys {
            let put = PutRequest { key: Bytes::copy_from_slice(key), value: b("first"), ..PutRequest::default() };
            first.push(h.must(Command::Put(put)).revision());
            h.reopen();
        }
        let put = PutRequest { key: Bytes::copy_from_slice(keys[2]), value: b("second"), ..PutRequest::default() };
        let second = h.must(Command::Put(put)).revision();
        for (key, revision) in keys.iter().zip(&first) {
            let expected = if *key == keys[2] { (b("second"), second) } else { (b("first"), *revision) };
            assert_eq!(get(h, key, 0), Some(expected), "{:?}: {key:?}", h.kind);
            assert_eq!(get(h, key, *revision), Some((b("first"), *revision)), "{:?}: {key:?}", h.kind);
            assert_eq!(get(h, key, revision - 1), None, "{:?}: {key:?} before it was written", h.kind);
        }
        for key in absent {
            assert_eq!(get(h, key, 0), None, "{:?}: {key:?}", h.kind);
        }
    });
}

#[test]
fn compaction_returns_space_on_rocksdb() {
    let mut options = test_options();
    options.compaction.batch_keys_max = 500;
    options.compaction.reclaim_space_after_pass = true;
    let mut h = Harness::with_options(EngineKind::Rocks, options);
    // Incompressible values, so the figures measure versions, not lz4.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut value = || {
        (0..1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect::<String>()
    };
    for _round in 0..20 {
        let batch: Vec<Command> = (0..500).map(|key| put(&format!("key{key:04}"), &value())).collect();
        h.apply_batch(batch).into_iter().for_each(|result| drop(result.unwrap()));
    }
    h.store().engine().reclaim_space(store::Space::Kv).unwrap();
    let before = h.store().size_bytes();
    let revision = h.store().revision();
    h.must(Command::Compact { revision });
    h.store().wait_for_compaction().unwrap();
    let after = h.store().size_bytes();
    assert!(after * 5 < before, "20 versions per key compacted to 1 should shrink the store: {before} -> {after}");
    assert_eq!(h.range(range("key0000", "\0")).unwrap().count, 500);
}

#[test]
fn leases_attach_detach_and_revoke_in_one_revision() {
    each_engine(|h| {
        h.must(Command::LeaseGrant { id: 1, ttl_seconds: 60 });
        assert_eq!(h.apply(Command::LeaseGrant { id: 1, ttl_seconds: 60 }), Err(Error::LeaseExists { lease_id: 1 }));
        assert_eq!(h.apply(Command::LeaseGrant { id: 0, ttl_seconds: 60 }), Err(Error::InvalidLeaseId { lease_id: 0 }));
        assert_eq!(
            h.apply(Command::LeaseGrant { id: 2, ttl_seconds: store::MAX_LEASE_TTL_SECONDS + 1 }),
            Err(Error::LeaseTtlTooLarge { ttl_seconds: store::MAX_LEASE_TTL_SECONDS + 1 })
        );
        h.must(Command::LeaseGrant { id: 2, ttl_seconds: 5 });
        h.must(put_with_lease("x", "1", 1)); // 2
        h.must(put_with_lease("y", "1", 1)); // 3
        h.must(put_with_lease("z", "1", 2)); // 4
        h.must(put("y", "2")); // 5: detaches y
        h.must(Command::LeaseCheckpoint { id: 2, remaining_ttl_seconds: 3 });
        assert_eq!(h.store().lease(2).unwrap().unwrap().remaining_ttl_seconds, 3);
        let ids: Vec<i64> = h.store().leases().unwrap().iter().map(|lease| lease.id).collect();
        assert_eq!(ids, [1, 2]);
        let output = h.store().apply(&[Command::LeaseRevoke { id: 1 }, Command::LeaseRevoke { id: 2 }], b"p").unwrap();
        assert_eq!(output.results[0].as_ref().unwrap().revision(), 6);
        assert_eq!(output.results[1].as_ref().unwrap().revision(), 7);
        let deleted: Vec<(i64, String)> = output
            .changes
            .iter()
            .flat_map(|change| change.events.iter().map(move |event| (change.revision, text(&event.kv.key))))
            .collect();
        assert_eq!(deleted, [(6, "x".to_string()), (7, "z".to_string())]);
        assert_eq!(h.keys(range("a", "\0")), ["y"]);
        assert_eq!(h.apply(Command::LeaseRevoke { id: 1 }), Err(Error::LeaseNotFound { lease_id: 1 }));
        assert_eq!(
            h.apply(Command::LeaseCheckpoint { id: 1, remaining_ttl_seconds: 1 }),
            Err(Error::LeaseNotFound { lease_id: 1 })
        );
        assert!(h.store().leases().unwrap().is_empty());
    });
}

#[test]
fn change_feed_matches_history() {
    each_engine(|h| {
        h.must(Command::LeaseGrant { id: 9, ttl_seconds: 60 });
        let commands = vec![
            put("a", "1"),
            put_with_lease("a", "2", 9),
            txn(vec![], vec![op_put("b", "1"), op_delete("a", "")], vec![]),
            delete("nothing", ""),
            Command::LeaseRevoke { id: 9 },
            put("\0weird\u{ff}", "bytes"),
        ];
        let output = h.store().apply(&commands, b"feed").unwrap();
        assert!(output.results.iter().all(Result::is_ok));
        let revisions: Vec<i64> = output.changes.iter().map(|change| change.revision).collect();
        assert_eq!(revisions, [2, 3, 4, 5]);
        let txn_events = &output.changes[2].events;
        assert_eq!(txn_events[1].kind, EventKind::Delete);
        assert_eq!(txn_events[1].kv.mod_revision, 4);
        assert_eq!(txn_events[1].prev_kv, None, "the delete did not ask prev_kv: no value read");
        assert_eq!(h.store().deleted_version(&txn_events[1]).unwrap().unwrap().value, b("2"));
        assert_eq!(output.changes[1].events[0].prev_kv.as_ref().unwrap().value, b("1"));
        // History reads every previous version back: the feed with its deleted versions read.
        let mut feed = output.changes.clone();
        for event in feed.iter_mut().flat_map(|change| change.events.iter_mut()) {
            if event.kind == EventKind::Delete && event.prev_kv.is_none() {
                event.prev_kv = h.store().deleted_version(event).unwrap();
            }
        }
        for from in 2..=5 {
            assert_eq!(h.store().changes(from, 5, 1000).unwrap(), feed[(from - 2) as usize..], "from {from}");
        }
        let first_two = h.store().changes(2, 5, 2).unwrap();
        assert_eq!(first_two.len(), 2, "stops at whole revisions once events_max is reached");
        assert_eq!(h.store().applied_position().unwrap(), b("feed"));
    });
}

#[test]
fn reopen_restores_the_last_applied_state() {
    each_engine(|h| {
        range_fixture(h);
        h.must(Command::Compact { revision: 4 });
        h.must(Command::LeaseGrant { id: 3, ttl_seconds: 9 });
        let hash = h.store().hash_kv(0).unwrap();
        let position = h.store().applied_position();
        h.reopen();
        assert_eq!(h.store().revision(), 11);
        assert_eq!(h.store().compact_revision(), 4);
        assert_eq!(h.store().applied_position(), position);
        assert_eq!(h.store().hash_kv(0).unwrap(), hash);
        assert_eq!(h.store().lease(3).unwrap().unwrap().ttl_seconds, 9);
        assert_eq!(h.must(put("new", "1")).revision(), 12);
    });
}

#[test]
fn corruption_is_an_error_never_data() {
    each_engine(|h| {
        h.must(put("a", "1"));
        h.must(put("b", "1"));
        // Flip a byte of a's record, underneath the store.
        let engine = h.store().engine().clone();
        let (key, mut record) = {
            let mut cursor = engine.cursor(store::Space::Kv, None);
            cursor.seek(&[]);
            (cursor.key().unwrap().to_vec(), cursor.value().to_vec())
        };
        record[3] ^= 0x40;
        let mut batch = store::WriteBatch::default();
        batch.put(store::Space::Kv, key, record);
        engine.write(batch, store::Durability::Sync).unwrap();
        let error = h.range(range("a", "\0")).unwrap_err();
        assert!(matches!(&error, Error::Corrupt { what } if what.contains("checksum")), "{error}");
        assert_eq!(h.keys(range("b", "")), ["b"], "other keys still read");
        assert!(matches!(h.store().hash_kv(0), Err(Error::Corrupt { .. })));
        // Applying over a corrupt record fails the store rather than writing on bad data. (After
        // a reopen: until then the store knows a's newest version from its own put, in memory,
        // and a put of a does not read the record.)
        drop(engine);
        h.reopen();
        let commands = [put("a", "2")];
        assert!(matches!(h.store().apply(&commands, b"x"), Err(Error::Corrupt { .. })));
        assert_eq!(h.store().apply(&commands, b"x").unwrap_err(), Error::Failed);
    });
}

#[test]
fn both_engines_give_the_same_bytes() {
    let mut hashes = Vec::new();
    for kind in ENGINES {
        let mut h = Harness::new(kind);
        range_fixture(&mut h);
        h.must(Command::LeaseGrant { id: 1, ttl_seconds: 1 });
        h.must(put_with_lease("l", "v", 1));
        h.must(Command::Compact { revision: 6 });
        h.must(txn(vec![], vec![op_put("t", "1"), op_delete("a", "c")], vec![]));
        h.store().wait_for_compaction().unwrap();
        hashes.push(h.store().hash_kv(0).unwrap());
    }
    assert_eq!(hashes[0], hashes[1]);
}

#[test]
fn snapshots_round_trip_between_engines() {
    for (source_kind, target_kind) in [(EngineKind::Rocks, EngineKind::Memory), (EngineKind::Memory, EngineKind::Rocks)]
    {
        let mut source = Harness::new(source_kind);
        range_fixture(&mut source);
        source.must(Command::LeaseGrant { id: 4, ttl_seconds: 40 });
        source.must(put_with_lease("leased", "v", 4));
        source.must(Command::Compact { revision: 6 });
        source.store().wait_for_compaction().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let snapshot = source.store().snapshot(&dir.path().join("copy")).unwrap();
        let hash = source.store().hash_kv(0).unwrap();
        let position = source.store().applied_position();
        // Writes after the snapshot was taken do not reach it.
        source.must(put("after", "snapshot"));
        assert_eq!(snapshot.revision().unwrap(), hash.revision);
        assert_eq!(snapshot.applied_position().unwrap(), position);
        let path = dir.path().join("snapshot");
        let written = snapshot.write_to(&mut std::fs::File::create(&path).unwrap()).unwrap();
        assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());
        drop(snapshot);
        assert!(!dir.path().join("copy").exists(), "dropping the snapshot removes its copy");

        let mut target = Harness::new(target_kind);
        target.must(put("stale", "data"));
        let installed = target.store().install_snapshot(&path).unwrap();
        assert_eq!(installed, written);
        assert_eq!(target.store().hash_kv(0).unwrap(), hash, "{source_kind:?} -> {target_kind:?}");
        assert_eq!(target.store().applied_position(), position);
        assert_eq!(target.store().compact_revision(), 6);
        assert_eq!(target.store().lease_keys(4).unwrap(), [b("leased")]);
        assert!(target.keys(range("stale", "")).is_empty(), "the install replaced everything");
        target.reopen();
        assert_eq!(target.store().hash_kv(0).unwrap(), hash, "and it is durable");
        assert_eq!(target.must(put("next", "1")).revision(), hash.revision + 1);
    }
}

/// The store keeps its keys' newest versions in memory for puts; an install replaces them too.
#[test]
fn after_a_snapshot_install_puts_see_the_installed_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, path) = fixture_snapshot(dir.path());
    each_engine(|target| {
        target.must(put("stale", "1"));
        target.must(put("stale", "2"));
        target.store().install_snapshot(&path).unwrap();
        let Response::Put(answer) =
            target.must(Command::Put(PutRequest { prev_kv: true, ..put_request("stale", "3") }))
        else {
            panic!("not a put response")
        };
        assert_eq!(answer.prev_kv, None, "the installed state has no such key");
        let kv = target.range(range("stale", "")).unwrap().kvs.remove(0);
        assert_eq!((kv.version, kv.create_revision), (1, kv.mod_revision), "a new key: {kv:?}");
    });
}

/// A memory store holding the range fixture, and a snapshot file of it in `dir`.
fn fixture_snapshot(dir: &std::path::Path) -> (Harness, std::path::PathBuf) {
    let mut source = Harness::new(EngineKind::Memory);
    range_fixture(&mut source);
    let path = dir.join("snapshot");
    let snapshot = source.store().snapshot(&dir.join("copy")).unwrap();
    snapshot.write_to(&mut std::fs::File::create(&path).unwrap()).unwrap();
    (source, path)
}

#[test]
fn a_corrupt_snapshot_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, path) = fixture_snapshot(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x08;
    let damaged = [
        ("flipped byte", flipped),
        ("truncated", bytes[..bytes.len() - 5].to_vec()),
        ("not a snapshot", b"hello".to_vec()),
    ];
    for kind in ENGINES {
        let mut target = Harness::new(kind);
        target.must(put("mine", "1"));
        let hash = target.store().hash_kv(0).unwrap();
        for (name, content) in &damaged {
            std::fs::write(&path, content).unwrap();
            let error = target.store().install_snapshot(&path).unwrap_err();
            assert!(matches!(error, Error::Corrupt { .. }), "{name}: {error}");
            assert_eq!(target.store().hash_kv(0).unwrap(), hash, "{name}: nothing changed");
        }
        assert_eq!(target.must(put("mine", "2")).revision(), 3);
    }
}

/// An install cut short (here by an injected engine error after it began) leaves a marker; the
/// next open clears the half-written store instead of serving it.
#[cfg(feature = "failpoints")]
#[test]
fn an_interrupted_install_is_cleared_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (source, path) = fixture_snapshot(dir.path());
    let mut target = Harness::new(EngineKind::Rocks);
    target.must(put("mine", "1"));
    fail::cfg("store::snapshot::after_marker", "return").unwrap();
    assert!(matches!(target.store().install_snapshot(&path), Err(Error::Engine(_))));
    fail::remove("store::snapshot::after_marker");
    assert_eq!(target.store().apply(&[put("refused", "1")], b"p").unwrap_err(), Error::Failed);
    target.reopen();
    assert_eq!(target.store().revision(), 1);
    assert!(target.keys(range("\0", "\0")).is_empty());
    target.store().install_snapshot(&path).unwrap();
    assert_eq!(target.store().hash_kv(0).unwrap(), source.store().hash_kv(0).unwrap());
}

#[test]
fn range_page_stops_at_its_limit_with_the_same_keys_and_more() {
    each_engine(|h| {
        for index in 0..10 {
            h.must(put(&format!("page/{index}"), "v"));
        }
        let request = |limit: i64, revision: i64| RangeRequest {
            key: "page/".into(),
            range_end: "page0".into(),
            limit,
            revision,
            ..RangeRequest::default()
        };
        for (limit, revision) in [(3, 0), (10, 0), (0, 0), (3, 5)] {
            let whole = h.store().range(&request(limit, revision)).unwrap();
            let page = h.store().range_page(&request(limit, revision)).unwrap();
            assert_eq!(page.kvs, whole.kvs, "{:?}: limit {limit} at {revision}", h.kind);
            assert_eq!(page.more, whole.more, "{:?}: limit {limit} at {revision}", h.kind);
        }
        let page = h.store().range_page(&request(3, 0)).unwrap();
        assert_eq!(page.count, 4, "{:?}: it read only one key past the limit", h.kind);
        assert_eq!(h.store().range(&request(3, 0)).unwrap().count, 10, "{:?}: range counts them all", h.kind);
    });
}
