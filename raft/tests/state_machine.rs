//! The state machine applies client commands through the store, records the Raft position with
//! them, and after a restart neither loses nor re-applies an entry.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use openraft::type_config::alias::EntryOf;
use openraft::type_config::TypeConfigExt;
use openraft::{Entry, EntryPayload};
use raft::{ChangeListener, Request, StateMachine, TypeConfig};
use store::{Command, PutRequest, RangeRequest, Store};

fn open_store(path: &std::path::Path) -> Arc<Store> {
    let engine = store::RocksEngine::open(path, &store::RocksOptions::default()).unwrap();
    Arc::new(Store::open(Arc::new(engine), store::StoreOptions::default()).unwrap())
}

fn put(index: u64, key: &str) -> EntryOf<TypeConfig> {
    let command = Command::Put(PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        ..PutRequest::default()
    });
    Entry { log_id: log_id::<TypeConfig>(1, 0, index), payload: EntryPayload::Normal(Request::one(command)) }
}

#[derive(Default)]
struct Recorder {
    revisions: Mutex<Vec<i64>>,
}

impl ChangeListener for Recorder {
    fn applied(&self, changes: &[store::Change], revision: i64) {
        let mut revisions = self.revisions.lock().unwrap();
        revisions.extend(changes.iter().map(|change| change.revision));
        revisions.push(-revision);
    }

    fn restored(&self, revision: i64) {
        self.revisions.lock().unwrap().push(-revision);
    }
}

#[test]
fn commands_apply_once_across_restarts() {
    TypeConfig::run(async {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        {
            let store = open_store(&dir.path().join("store"));
            let mut machine =
                StateMachine::new(store.clone(), &dir.path().join("snapshots"), Some(recorder.clone())).unwrap();
            // (Replies reach clients through openraft's responders, which only a running Raft
            // creates; the cluster tests check them.)
            let entries = vec![
                Ok((openraft::testing::blank_ent::<TypeConfig>(1, 0, 1), None)),
                Ok((put(2, "a"), None)),
                Ok((put(3, "b"), None)),
            ];
            machine.apply(futures::stream::iter(entries)).await.unwrap();
            assert_eq!(*recorder.revisions.lock().unwrap(), [2, 3, -3], "the listener saw both revisions");
            let (applied, _) = machine.applied_state().await.unwrap();
            assert_eq!(applied, Some(log_id::<TypeConfig>(1, 0, 3)));
        }
        // Restart: the position came back with the data, so nothing is applied twice.
        let store = open_store(&dir.path().join("store"));
        let mut machine = StateMachine::new(store.clone(), &dir.path().join("snapshots"), None).unwrap();
        let (applied, _) = machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id::<TypeConfig>(1, 0, 3)));
        assert_eq!(store.revision(), 3);
        let all = store
            .range(&RangeRequest {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                ..RangeRequest::default()
            })
            .unwrap();
        assert_eq!(all.kvs.len(), 2);
    });
}

/// `--snapshot-count` counts applied commands: an entry carrying a batch counts each of its
/// commands (each at its own revision), a blank or membership entry counts one.
#[test]
fn applied_commands_count_each_command_of_a_batch_entry() {
    TypeConfig::run(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("store"));
        let mut machine = StateMachine::new(store.clone(), &dir.path().join("snapshots"), None).unwrap();
        let applied = machine.applied_commands();
        let commands: Vec<Command> = ["a", "b", "c"]
            .into_iter()
            .map(|key| {
                Command::Put(PutRequest {
                    key: Bytes::copy_from_slice(key.as_bytes()),
                    value: Bytes::from_static(b"v"),
                    ..PutRequest::default()
                })
            })
            .collect();
        let batch =
            Entry { log_id: log_id::<TypeConfig>(1, 0, 2), payload: EntryPayload::Normal(Request { commands }) };
        let entries = vec![Ok((openraft::testing::blank_ent::<TypeConfig>(1, 0, 1), None)), Ok((batch, None))];
        machine.apply(futures::stream::iter(entries)).await.unwrap();
        assert_eq!(applied.load(std::sync::atomic::Ordering::Relaxed), 4);
        assert_eq!(store.revision(), 4, "three puts, three revisions");
    });
}
