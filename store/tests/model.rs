//! Model-based property test: random command sequences run on the store and on a plain model
//! (a full copy of the key space per revision), which must agree on every answer — including
//! after compactions, reopening, and on both engines.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use store::{
    Command, CompareResult, CompareTarget, DeleteRangeRequest, Error, KeyValue, PutRequest, RangeRequest, Response,
    TxnRequest,
};

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];
const LEASES: [i64; 2] = [1, 2];

/// What the test does, in terms small enough for proptest to shrink.
#[derive(Debug, Clone)]
enum Step {
    Put {
        key: usize,
        value: u8,
        lease: Option<usize>,
        ignore_value: bool,
    },
    Delete {
        from: usize,
        to: usize,
    },
    CasTxn {
        key: usize,
        version: i64,
        put_key: usize,
        else_delete: usize,
    },
    Compact {
        back: i64,
    },
    Grant {
        lease: usize,
    },
    Revoke {
        lease: usize,
    },
    /// Checks a range at the current revision minus `back`.
    Range {
        from: usize,
        to: usize,
        back: i64,
        limit: i64,
    },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (key.clone(), any::<u8>(), proptest::option::of(0..LEASES.len()), proptest::bool::weighted(0.1))
            .prop_map(|(key, value, lease, ignore_value)| Step::Put { key, value, lease, ignore_value }),
        2 => (key.clone(), key.clone()).prop_map(|(from, to)| Step::Delete { from, to }),
        2 => (key.clone(), 0..3i64, key.clone(), key.clone())
            .prop_map(|(key, version, put_key, else_delete)| Step::CasTxn { key, version, put_key, else_delete }),
        1 => (0..6i64).prop_map(|back| Step::Compact { back }),
        1 => (0..LEASES.len()).prop_map(|lease| Step::Grant { lease }),
        1 => (0..LEASES.len()).prop_map(|lease| Step::Revoke { lease }),
        4 => (key.clone(), key, 0..8i64, 0..3i64).prop_map(|(from, to, back, limit)| Step::Range { from, to, back, limit }),
        1 => Just(Step::Reopen),
    ]
}

/// The model: the whole key space after every revision.
struct Model {
    snapshots: Vec<BTreeMap<Bytes, KeyValue>>, // index = revision - 1
    compact_revision: i64,
    leases: BTreeSet<i64>,
}

impl Model {
    fn new() -> Model {
        Model { snapshots: vec![BTreeMap::new()], compact_revision: 0, leases: BTreeSet::new() }
    }

    fn revision(&self) -> i64 {
        self.snapshots.len() as i64
    }

    fn current(&self) -> &BTreeMap<Bytes, KeyValue> {
        self.snapshots.last().unwrap()
    }

    fn at(&self, revision: i64) -> &BTreeMap<Bytes, KeyValue> {
        &self.snapshots[(revision - 1) as usize]
    }

    /// Applies `writes` (key → Some(value, lease) or None for delete) as one revision if any.
    fn commit(&mut self, writes: Vec<(Bytes, Option<(Bytes, i64)>)>) {
        if writes.is_empty() {
            return;
        }
        let revision = self.revision() + 1;
        let mut next = self.current().clone();
        for (key, write) in writes {
            match write {
                Some((value, lease)) => {
                    let prev = next.get(&key);
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision: prev.map_or(revision, |prev| prev.create_revision),
                        mod_revision: revision,
                        version: prev.map_or(1, |prev| prev.version + 1),
                        lease,
                    };
                    next.insert(key, kv);
                }
                None => {
                    next.remove(&key);
                }
            }
        }
        self.snapshots.push(next);
    }

    fn keys_in(&self, from: &str, to: &str) -> Vec<Bytes> {
        self.current()
            .keys()
            .filter(|key| key.as_ref() >= from.as_bytes() && key.as_ref() < to.as_bytes())
            .cloned()
            .collect()
    }
}

fn run(kind: EngineKind, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(kind);
    let mut model = Model::new();
    for step in steps {
        match step.clone() {
            Step::Put { key, value, lease, ignore_value } => {
                let lease_id = lease.map_or(0, |index| LEASES[index]);
                let value = if ignore_value { Bytes::new() } else { Bytes::from(vec![value]) };
                let request = PutRequest {
                    key: b(KEYS[key]),
                    value: value.clone(),
                    lease: lease_id,
                    ignore_value,
                    ..Default::default()
                };
                let result = h.apply(Command::Put(request));
                let current = model.current().get(KEYS[key].as_bytes()).cloned();
                let expected_error = if ignore_value && current.is_none() {
                    Some(Error::KeyNotFound)
                } else if lease_id != 0 && !model.leases.contains(&lease_id) {
                    Some(Error::LeaseNotFound { lease_id })
                } else {
                    None
                };
                match expected_error {
                    Some(error) => prop_assert_eq!(result, Err(error)),
                    None => {
                        let value = if ignore_value { current.unwrap().value } else { value };
                        model.commit(vec![(b(KEYS[key]), Some((value, lease_id)))]);
                        prop_assert_eq!(result.unwrap().revision(), model.revision());
                    }
                }
            }
            Step::Delete { from, to } => {
                let (from, to) = (KEYS[from], KEYS[to]);
                let doomed = model.keys_in(from, to);
                let result = h.apply(Command::DeleteRange(DeleteRangeRequest {
                    key: b(from),
                    range_end: b(to),
                    prev_kv: false,
                }));
                let Ok(Response::DeleteRange(response)) = result else { panic!("{result:?}") };
                prop_assert_eq!(response.deleted, doomed.len() as i64);
                model.commit(doomed.into_iter().map(|key| (key, None)).collect());
                prop_assert_eq!(response.revision, model.revision());
            }
            Step::CasTxn { key, version, put_key, else_delete } => {
                let command = Command::Txn(TxnRequest {
                    compare: vec![compare(KEYS[key], CompareResult::Equal, CompareTarget::Version(version))],
                    success: vec![op_put(KEYS[put_key], "txn")],
                    failure: vec![op_delete(KEYS[else_delete], "")],
                });
                let Ok(Response::Txn(response)) = h.apply(command) else { panic!() };
                let model_version = model.current().get(KEYS[key].as_bytes()).map_or(0, |kv| kv.version);
                let succeeded = model_version == version;
                prop_assert_eq!(response.succeeded, succeeded);
                if succeeded {
                    let lease = 0;
                    model.commit(vec![(b(KEYS[put_key]), Some((b("txn"), lease)))]);
                } else if model.current().contains_key(KEYS[else_delete].as_bytes()) {
                    model.commit(vec![(b(KEYS[else_delete]), None)]);
                }
                prop_assert_eq!(response.revision, model.revision());
            }
            Step::Compact { back } => {
                let revision = model.revision() - back;
                let result = h.apply(Command::Compact { revision });
                if revision <= model.compact_revision {
                    prop_assert_eq!(result, Err(Error::Compacted { compact_revision: model.compact_revision }));
                } else {
                    prop_assert!(result.is_ok());
                    model.compact_revision = revision;
                }
            }
            Step::Grant { lease } => {
                let id = LEASES[lease];
                let result = h.apply(Command::LeaseGrant { id, ttl_seconds: 10 });
                if model.leases.insert(id) {
                    prop_assert!(result.is_ok());
                } else {
                    prop_assert_eq!(result, Err(Error::LeaseExists { lease_id: id }));
                }
            }
            Step::Revoke { lease } => {
                let id = LEASES[lease];
                let result = h.apply(Command::LeaseRevoke { id });
                if model.leases.remove(&id) {
                    let doomed: Vec<Bytes> =
                        model.current().values().filter(|kv| kv.lease == id).map(|kv| kv.key.clone()).collect();
                    model.commit(doomed.into_iter().map(|key| (key, None)).collect());
                    prop_assert_eq!(result.unwrap().revision(), model.revision());
                } else {
                    prop_assert_eq!(result, Err(Error::LeaseNotFound { lease_id: id }));
                }
            }
            Step::Range { from, to, back, limit } => {
                let revision = (model.revision() - back).max(1);
                let request =
                    RangeRequest { key: b(KEYS[from]), range_end: b(KEYS[to]), revision, limit, ..Default::default() };
                let result = h.range(request);
                if revision < model.compact_revision {
                    prop_assert_eq!(result, Err(Error::Compacted { compact_revision: model.compact_revision }));
                    continue;
                }
                let expected: Vec<KeyValue> = model
                    .at(revision)
                    .values()
                    .filter(|kv| kv.key.as_ref() >= KEYS[from].as_bytes() && kv.key.as_ref() < KEYS[to].as_bytes())
                    .cloned()
                    .collect();
                let response = result.unwrap();
                prop_assert_eq!(response.count, expected.len() as i64);
                let shown = if limit > 0 { expected.len().min(limit as usize) } else { expected.len() };
                prop_assert_eq!(&response.kvs[..], &expected[..shown]);
                prop_assert_eq!(response.more, shown < expected.len());
                prop_assert_eq!(response.revision, model.revision());
            }
            Step::Reopen => h.reopen(),
        }
        prop_assert_eq!(h.store().revision(), model.revision());
    }
    // Every retained revision still reads exactly as the model, after compaction has finished.
    h.store().wait_for_compaction().unwrap();
    for revision in model.compact_revision.max(1)..=model.revision() {
        let all = h.range(RangeRequest { key: b("\0"), range_end: b("\0"), revision, ..Default::default() }).unwrap();
        let expected: Vec<KeyValue> = model.at(revision).values().cloned().collect();
        prop_assert_eq!(all.kvs, expected, "at revision {}", revision);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_engine_matches_the_model(steps in proptest::collection::vec(step(), 1..80)) {
        run(EngineKind::Memory, &steps)?;
    }

    #[test]
    fn rocksdb_engine_matches_the_model(steps in proptest::collection::vec(step(), 1..80)) {
        run(EngineKind::Rocks, &steps)?;
    }

    /// One random command stream on both engines gives identical hashes.
    #[test]
    fn engines_agree_on_hash(steps in proptest::collection::vec(step(), 1..60)) {
        let mut hashes = Vec::new();
        for kind in ENGINES {
            let mut h = Harness::new(kind);
            for step in &steps {
                let command = match step.clone() {
                    Step::Put { key, value, .. } => put(KEYS[key], &value.to_string()),
                    Step::Delete { from, to } => delete(KEYS[from], KEYS[to]),
                    Step::Compact { back } => Command::Compact { revision: h.store().revision() - back },
                    Step::Grant { lease } => Command::LeaseGrant { id: LEASES[lease], ttl_seconds: 5 },
                    Step::Revoke { lease } => Command::LeaseRevoke { id: LEASES[lease] },
                    _ => continue,
                };
                let _ = h.apply(command);
            }
            h.store().wait_for_compaction().unwrap();
            hashes.push(h.store().hash_kv(0).unwrap());
        }
        prop_assert_eq!(hashes[0], hashes[1]);
    }
}
