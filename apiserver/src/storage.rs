//! The seam between the apiserver and its key-value store: etcd v3 semantics in a few calls, so
//! the native store (in process, [`crate::storage_native::NativeStorage`]) and an external etcd
//! (`--etcd-servers`, [`crate::storage_etcd::EtcdStorage`]) plug in alike. Keys and values are opaque bytes here; what they hold is
//! the apiserver's business (`keys.rs`, JSON objects).

use bytes::Bytes;
use futures::future::BoxFuture;
use store::{Event, KeyValue};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A create found the key already there.
    #[error("key exists")]
    KeyExists,
    #[error("key not found")]
    KeyNotFound,
    /// A conditional write or delete found another version; `current` is it.
    #[error("the key was modified (now at revision {})", .current.mod_revision)]
    Conflict { current: KeyValue },
    /// A read at a revision compaction removed.
    #[error("required revision {revision} has been compacted (compact revision {compact_revision})")]
    Compacted { revision: i64, compact_revision: i64 },
    /// No leader, a timeout: try again.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A [`Storage::commit`] found a condition false; `current` holds each condition's key as it
    /// is now (None: absent), in the order of the conditions.
    #[error("a condition of the write no longer holds")]
    ConditionsFailed { current: Vec<Option<KeyValue>> },
    #[error("{0}")]
    NotImplemented(String),
    #[error("storage: {0}")]
    Internal(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// One page of a range read.
#[derive(Debug, Clone, Default)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// More keys follow the page.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: i64,
}

/// A condition of a [`Storage::commit`], on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist (etcd's `create_revision == 0`).
    Absent(Bytes),
    /// The key's current version was written at this revision.
    ModRevision(Bytes, i64),
}

impl Condition {
    pub fn key(&self) -> &Bytes {
        match self {
            Condition::Absent(key) | Condition::ModRevision(key, _) => key,
        }
    }

    /// Whether the key as it is now (`current`) satisfies the condition.
    pub fn holds(&self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Condition::Absent(_), current) => current.is_none(),
            (Condition::ModRevision(_, revision), Some(current)) => current.mod_revision == *revision,
            (Condition::ModRevision(..), None) => false,
        }
    }
}

/// One write of a [`Storage::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Bytes, Bytes),
    Delete(Bytes),
    /// Deletes the key only if it holds exactly this value (a nested txn), and leaves it
    /// otherwise without failing the commit.
    DeleteIfValue(Bytes, Bytes),
}

/// What a change feed delivers, in revision order.
///
/// How often a feed reports progress depends on the storage
/// ([`Storage::progress_at_every_revision`]):
/// - keel's own store: a `Changes` item at every store revision, events or not, so a consumer
///   waiting for revision R is told as soon as it has everything up to R.
/// - etcd: a `Changes` item per watch response with events, its `revision` the last event's
///   (etcd's header revision can run ahead of the events while a watcher catches up, so it is not
///   used), and a pure progress item only at etcd's periodic progress notification
///   (`--experimental-watch-progress-notify-interval`, 10 minutes by default), which etcd sends
///   only to a watcher that is synced, through the watcher's own channel. Progress is never
///   *requested* (etcd before 3.4.31/3.5.13 can answer a request ahead of the events it covers).
///   So a revision at which this resource did not change may never be reported.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// Events (each with its previous version), then: every change of the watched range up to
    /// `revision` has now been delivered. Empty `events` is a pure progress notification.
    Changes { events: Vec<Event>, revision: i64 },
    /// The feed fell behind compaction and stopped; the consumer must list again.
    Compacted { compact_revision: i64 },
}

/// etcd v3 semantics the apiserver needs.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The current version of a key (linearizable).
    fn get(&self, key: Bytes) -> BoxFuture<'_, StorageResult<Option<KeyValue>>>;

    /// Writes a key that must not exist; returns the new revision.
    fn create(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, StorageResult<i64>>;

    /// Writes a key whose current version must have `expected_mod_revision`.
    fn update(&self, key: Bytes, value: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>>;

    /// Deletes a key whose current version must have `expected_mod_revision`.
    fn delete(&self, key: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>>;

    /// Applies every write if every condition holds, all in one store revision (one etcd txn),
    /// and returns that revision; otherwise writes nothing and answers
    /// [`StorageError::ConditionsFailed`]. Keys may not repeat among the writes.
    fn commit(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> BoxFuture<'_, StorageResult<i64>>;

    /// Up to `limit` keys (0: all) of [start, end) at `revision` (0: a linearizable read now).
    fn range(&self, start: Bytes, end: Bytes, revision: i64, limit: i64) -> BoxFuture<'_, StorageResult<RangePage>>;

    /// The store revision after everything committed before the call (a linearizable read).
    fn current_revision(&self) -> BoxFuture<'_, StorageResult<i64>>;

    /// Compacts history below `revision`.
    fn compact(&self, revision: i64) -> BoxFuture<'_, StorageResult<()>>;

    /// The revision below which history is compacted, when known without a request (keel's own
    /// replica knows it; over etcd, None). A LIST at an older revision must answer 410 Expired
    /// even while the watch cache could still rebuild it.
    fn known_compact_revision(&self) -> Option<i64> {
        None
    }

    /// Whether [`Storage::watch`]'s feed reports progress at every store revision. Only then may
    /// a consistent read wait for a cache fed by it to reach the store's current revision; without
    /// it the cache may never hear of a revision at which its resource did not change.
    fn progress_at_every_revision(&self) -> bool;

    /// The changes of [start, end) from `start_revision` on, with previous versions, and progress
    /// notifications as [`FeedItem`] describes for this storage.
    fn watch(
        &self,
        start: Bytes,
        end: Bytes,
        start_revision: i64,
    ) -> BoxFuture<'_, StorageResult<mpsc::Receiver<FeedItem>>>;
}
