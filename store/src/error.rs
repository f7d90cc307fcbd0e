//! The store's errors. The etcd API and the apiserver map them to their wire codes; the messages
//! here are etcd's own where etcd has one, so a mapping can pass them through.

/// What can go wrong in the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A read, watch or compaction asked for a revision that compaction has removed.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// A read or compaction asked for a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { current_revision: i64 },
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound { lease_id: i64 },
    #[error("etcdserver: lease already exists")]
    LeaseExists { lease_id: i64 },
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge { ttl_seconds: i64 },
    #[error("etcdserver: lease ID must be positive")]
    InvalidLeaseId { lease_id: i64 },
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps { ops: usize, max_txn_ops: usize },
    /// Refused by auth: a permission, a user or role that is missing, ... (etcd's messages).
    #[error(transparent)]
    Auth(#[from] crate::AuthError),
    /// A record failed its checksum or could not be decoded. The store never serves it.
    #[error("store corruption: {what}")]
    Corrupt { what: String },
    /// The storage engine failed (I/O error, full disk, ...).
    #[error("storage engine: {0}")]
    Engine(String),
    /// An earlier engine failure left the in-memory state unknown; the store must be reopened.
    #[error("store is failed after an earlier engine error and must be reopened")]
    Failed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
