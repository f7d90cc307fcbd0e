//! The seam between MVCC and the bytes on disk: an ordered key-value engine with a few separate
//! key spaces and atomic multi-space write batches. [`crate::RocksEngine`] keeps them in RocksDB
//! column families; [`crate::MemoryEngine`] keeps them in B-trees for tests and simulation.
//!
//! **Architecture invariant:** no RocksDB type appears in this trait, so everything above it runs
//! unchanged on either engine.

use std::path::Path;
use std::sync::Arc;

use crate::codec;
use crate::error::Result;

/// The key spaces. Each is ordered by bytes on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Key-major versions: encoded key ‖ inverted revision → version record.
    Kv,
    /// Revision-major history: revision → the key changed at that revision (watch catch-up,
    /// and the list of keys a compaction must visit).
    History,
    /// Lease id → lease record.
    Lease,
    /// Lease id ‖ key → nothing: the keys attached to each lease.
    LeaseKeys,
    /// Store-wide values: revision, compact revision, applied position.
    Meta,
}

impl Space {
    pub const ALL: [Space; 5] = [Space::Kv, Space::History, Space::Lease, Space::LeaseKeys, Space::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Space::Kv => "kv",
            Space::History => "history",
            Space::Lease => "lease",
            Space::LeaseKeys => "lease_keys",
            Space::Meta => "meta",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
    /// Deletes every key in [from, to).
    DeleteRange {
        space: Space,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Changes that become visible together, or not at all, including after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put { space, key, value });
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete { space, key });
    }

    pub fn delete_range(&mut self, space: Space, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(WriteOp::DeleteRange { space, from, to });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Whether a write must reach stable storage before `write` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning: the write survives power loss.
    Sync,
    /// Written to the engine's log but not synced: survives a killed process, not power loss.
    /// For data that can be rebuilt (replayed from a Raft log, or redone by compaction).
    Buffered,
}

/// A forward cursor over one space. After `seek`, the cursor sits on the first key ≥ target.
pub trait Cursor {
    fn seek(&mut self, target: &[u8]);
    /// Moves to the next key. Only called while `key()` is Some.
    fn next(&mut self);
    /// The current key, or None when the cursor has run past the end (or failed: see `status`).
    fn key(&self) -> Option<&[u8]>;
    /// The current value; only called while `key()` is Some.
    fn value(&self) -> &[u8];
    /// An error that stopped the cursor early, if any.
    fn status(&self) -> Result<()>;
}

/// Reads from an engine, or from an engine seen through writes not yet committed.
pub trait Reader {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// A cursor over `space`; keys at or above `upper_bound` may be skipped by the engine.
    fn cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_>;
    /// A cursor for a long scan, whose reads do not fill the engine's cache: a large range
    /// then neither evicts what point reads keep warm nor grows the process by the cache.
    fn bulk_cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_> {
        self.cursor(space, upper_bound)
    }
    /// A cursor over the versions of one key in the Kv space, `encoded` being the key's encoded
    /// form ([`codec::encoded_key`]). The engine may skip whole files whose filters say they
    /// lack the key, which makes looking up a key that does not exist (every create) cheap.
    fn versions_cursor(&self, encoded: &[u8]) -> Box<dyn Cursor + '_> {
        self.cursor(Space::Kv, Some(&codec::past_all_versions(encoded)))
    }
}

/// An ordered key-value engine. Reads may run concurrently with one writer.
pub trait Engine: Reader + Send + Sync + std::fmt::Debug + 'static {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;
    /// Asks the engine to rewrite `space` so deleted data gives its space back. May be slow;
    /// never blocks concurrent reads or writes.
    fn reclaim_space(&self, space: Space) -> Result<()>;
    /// Bytes the engine holds on disk (or in memory, for the memory engine).
    fn size_bytes(&self) -> u64;
    /// A consistent, independent copy of every space, for snapshots; later writes to this
    /// engine do not reach it. `scratch` is a path that does not exist yet, where the copy may
    /// keep its files (RocksDB hard-links them there, so the copy is cheap).
    fn consistent_copy(&self, scratch: &Path) -> Result<Arc<dyn Engine>>;
    /// Deletes everything in every space, durably, in one write.
    fn clear(&self) -> Result<()>;
}
