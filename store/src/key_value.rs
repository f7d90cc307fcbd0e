//! The values the store hands out: versions of keys and the events that changed them.

use bytes::Bytes;

/// One version of a key, with etcd's fields.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Main revision of the put that started this key's current generation.
    pub create_revision: i64,
    /// Main revision of the change that wrote this version.
    pub mod_revision: i64,
    /// 1 for the first version of a generation, then +1 per put. A delete ends the generation.
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key, as a watcher sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new version. For a delete, as etcd sends it: only `key` and `mod_revision`
    /// (the delete's revision) are set.
    pub kv: KeyValue,
    /// The version the change replaced, if the key existed. A delete leaves it out unless its
    /// request asked `prev_kv` (etcd's deletes read no values either), and history leaves it out
    /// once compacted: [`crate::Store::deleted_version`] reads it back for a watcher that wants it.
    pub prev_kv: Option<KeyValue>,
    /// The sub revision of this change inside its main revision.
    pub sub_revision: i64,
}

/// The events of one main revision, in sub-revision order: the unit of the change feed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub events: Vec<Event>,
}
