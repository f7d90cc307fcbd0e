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

/// A built snapshot is a checkpoint of the store until something reads it: the file written
/// from it then holds the store as of the snapshot's position, whatever was applied after, and
/// installs elsewhere as that store. A restart finds the snapshot again and clears what a build
/// that died midway left behind.
#[test]
fn snapshots_are_checkpoints_written_out_when_first_read() {
    TypeConfig::run(async {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        let store = open_store(&dir.path().join("store"));
        let mut machine = StateMachine::new(store.clone(), &snapshots, None).unwrap();
        machine.apply(futures::stream::iter([Ok((put(1, "a"), None)), Ok((put(2, "b"), None))])).await.unwrap();
        let mut builder = machine.get_snapshot_builder().await;
        let built = openraft::storage::RaftSnapshotBuilder::build_snapshot(&mut builder).await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id::<TypeConfig>(1, 0, 2)));
        let checkpoint = built.snapshot.checkpoint.clone().expect("a built snapshot has a checkpoint");
        assert!(checkpoint.is_dir());
        assert!(!built.snapshot.path.exists(), "no snapshot file until one is read");
        // Applied after the snapshot: not in it.
        machine.apply(futures::stream::iter([Ok((put(3, "c"), None))])).await.unwrap();

        // A restart finds it; leftovers of a build that died are removed.
        drop(machine);
        std::fs::create_dir(snapshots.join("copy-1-0")).unwrap();
        std::fs::create_dir(snapshots.join("00000000000000000009-1-0.checkpoint")).unwrap();
        std::fs::write(snapshots.join("00000000000000000002-1-0.partial"), b"torn").unwrap();
        let mut machine = StateMachine::new(store.clone(), &snapshots, None).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let checkpoint_name = checkpoint.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(left, [checkpoint_name.clone(), checkpoint_name.replace(".checkpoint", ".meta")]);
        let current = machine.get_current_snapshot().await.unwrap().expect("the built snapshot");
        assert_eq!(current.meta, built.meta);
        current.snapshot.write_out().unwrap();
        assert!(current.snapshot.path.is_file());

        // The file installs as the store at the snapshot's position.
        let other = dir.path().join("other");
        let other_store = open_store(&other.join("store"));
        let mut other_machine = StateMachine::new(other_store.clone(), &other.join("snapshots"), None).unwrap();
        let received = raft::SnapshotFile::written(current.snapshot.path.clone());
        other_machine.install_snapshot(&current.meta, received).await.unwrap();
        assert_eq!(other_store.revision(), 3, "a and b, not c");
        let (applied, _) = other_machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id::<TypeConfig>(1, 0, 2)));

        // A newer snapshot replaces the old one, checkpoint and file.
        let mut builder = machine.get_snapshot_builder().await;
        let newer = openraft::storage::RaftSnapshotBuilder::build_snapshot(&mut builder).await.unwrap();
        assert_eq!(newer.meta.last_log_id, Some(log_id::<TypeConfig>(1, 0, 3)));
        assert!(!checkpoint.exists() && !current.snapshot.path.exists(), "the older snapshot is removed");
    });
}
