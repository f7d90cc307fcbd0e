//! keel's storage engine: an MVCC key-value store with etcd v3 semantics.
//!
//! **Architecture invariant:** this crate knows nothing of Raft, gRPC, HTTP or Kubernetes, and no
//! RocksDB type appears in its public API. Applying the same commands to the same state gives the
//! same results and the same bytes on every replica: nothing inside apply reads a clock or a
//! random source.
//!
//! Entry points: [`Store::open`] over a [`RocksEngine`] or [`MemoryEngine`], then
//! [`Store::apply`] for [`Command`]s and [`Store::range`] for reads. The layout of the data is
//! described in `engine.rs` (the spaces), `codec.rs` (keys and records) and `read_view.rs` (how
//! a read at a revision finds its versions).

mod apply;
mod auth;
mod codec;
mod command;
mod compaction;
mod engine;
mod engine_memory;
mod engine_rocks;
mod error;
mod hash;
mod history;
mod key_range;
mod key_value;
mod lease;
mod meta;
mod newest_versions;
mod pending;
mod range;
mod read_view;
mod revision;
mod snapshot;
mod store;
mod txn_check;

pub use auth::{Access, AuthCommand, AuthError, AuthState, Permission, PermissionType, Role, User, ROOT};
pub use command::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, LeaseInfo, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, Response, ResponseOp, SortOrder, SortTarget, TxnRequest,
    TxnResponse, MAX_LEASE_TTL_SECONDS,
};
pub use compaction::CompactionOptions;
pub use engine::{Cursor, Durability, Engine, Reader, Space, WriteBatch, WriteOp};
pub use engine_memory::MemoryEngine;
pub use engine_rocks::{RocksEngine, RocksOptions};
pub use error::{Error, Result};
pub use key_range::{prefix_end, KeyRange};
pub use key_value::{Change, Event, EventKind, KeyValue};
pub use range::RangeSummary;
pub use revision::Revision;
pub use snapshot::{SnapshotSummary, StoreSnapshot};
pub use store::{ApplyOutput, HashKv, Store, StoreOptions};

/// A named point where tests can inject a crash, a pause or an engine error (the `failpoints`
/// feature; `fail::cfg(name, "return")` makes it fail with [`Error::Engine`]).
#[inline]
pub(crate) fn failpoint(name: &str) -> Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| Err(Error::Engine(format!("failpoint {name}"))));
    let _ = name;
    Ok(())
}
