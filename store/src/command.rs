//! What the store is asked to do, and what it answers: etcd's KV and lease requests as plain Rust.
//!
//! A [`Command`] changes state and goes through [`crate::Store::apply`] (under Raft, after it is
//! committed). A [`RangeRequest`] only reads and goes through [`crate::Store::range`].

use bytes::Bytes;

use crate::key_value::KeyValue;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct RangeRequest {
    pub key: Bytes,
    /// See [`crate::KeyRange`] for how `key` and `range_end` name a set of keys.
    pub range_end: Bytes,
    /// At most this many keys; 0 means no limit.
    pub limit: i64,
    /// Read at this revision; 0 means the current one.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    /// Filters, 0 meaning "no filter", applied after the range is read, as etcd does.
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` let through.
    pub more: bool,
    /// How many keys the range holds at the read revision, before filters and limit.
    pub count: i64,
    /// The store's current revision when the read was served (etcd's header revision).
    pub revision: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the key's current value (the request's value must be empty).
    pub ignore_value: bool,
    /// Keep the key's current lease (the request's lease must be 0).
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    pub revision: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct DeleteRangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    pub revision: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a compare looks at, and the operand it compares with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Bytes),
    Lease(i64),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Bytes,
    pub range_end: Bytes,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
    pub revision: i64,
}

/// A state change. Applying the same commands to the same state gives the same results and the
/// same bytes on every replica: no command reads a clock or a random source.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Discard versions older than `revision` that are shadowed by a newer one at or below it.
    Compact {
        revision: i64,
    },
    /// Create lease `id` (chosen by the layer above; must be positive).
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
    },
    /// Delete the lease and, in one revision, every key attached to it.
    LeaseRevoke {
        id: i64,
    },
    /// Record a lease's remaining TTL, so a new leader does not restart it from the full TTL.
    LeaseCheckpoint {
        id: i64,
        remaining_ttl_seconds: i64,
    },
    /// Change users, roles or whether auth is enabled.
    Auth(crate::AuthCommand),
    /// `command` on behalf of an etcd API client: while auth is enabled it applies only if
    /// `user` may do it, checked against the auth state it applies on (etcd's auth applier).
    /// Commands without it come from keel itself (lease expiry, the apiserver) and are trusted.
    AsUser {
        user: Option<String>,
        command: Box<Command>,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact { revision: i64 },
    LeaseGrant { id: i64, ttl_seconds: i64, revision: i64 },
    LeaseRevoke { revision: i64 },
    LeaseCheckpoint { revision: i64 },
    Auth { revision: i64 },
}

impl Response {
    /// The store revision after this command (etcd's header revision).
    pub fn revision(&self) -> i64 {
        match self {
            Response::Put(put) => put.revision,
            Response::DeleteRange(delete) => delete.revision,
            Response::Txn(txn) => txn.revision,
            Response::Compact { revision }
            | Response::LeaseGrant { revision, .. }
            | Response::LeaseRevoke { revision }
            | Response::LeaseCheckpoint { revision }
            | Response::Auth { revision } => *revision,
        }
    }
}

/// A lease as the store records it. Remaining time is the lease keeper's business (it has the
/// clock); the store keeps the granted TTL and the last checkpointed remainder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub ttl_seconds: i64,
    /// The remaining TTL at the last checkpoint, 0 if never checkpointed.
    pub remaining_ttl_seconds: i64,
}

/// etcd's largest lease TTL (`MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;
