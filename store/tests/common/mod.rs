//! Shared by the store's test suites: engines to run against, and short builders for commands.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use store::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Engine, MemoryEngine, PutRequest, RangeRequest,
    RequestOp, Response, RocksEngine, RocksOptions, Store, StoreOptions, TxnRequest,
};

/// Which engine a store runs on; each suite runs against every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Memory,
    Rocks,
}

pub const ENGINES: [EngineKind; 2] = [EngineKind::Memory, EngineKind::Rocks];

/// A store that can be closed and reopened on the same data.
pub struct Harness {
    pub kind: EngineKind,
    memory: MemoryEngine,
    _dir: Option<tempfile::TempDir>,
    path: Option<PathBuf>,
    pub options: StoreOptions,
    pub store: Option<Store>,
    next_position: u64,
}

impl Harness {
    pub fn new(kind: EngineKind) -> Harness {
        Self::with_options(kind, test_options())
    }

    pub fn with_options(kind: EngineKind, options: StoreOptions) -> Harness {
        let dir = (kind == EngineKind::Rocks).then(|| tempfile::tempdir().expect("tempdir"));
        let path = dir.as_ref().map(|dir| dir.path().join("store"));
        let mut harness =
            Harness { kind, memory: MemoryEngine::new(), _dir: dir, path, options, store: None, next_position: 1 };
        harness.reopen();
        harness
    }

    pub fn engine(&self) -> Arc<dyn Engine> {
        match self.kind {
            EngineKind::Memory => Arc::new(self.memory.clone()),
            EngineKind::Rocks => Arc::new(
                RocksEngine::open(self.path.as_ref().unwrap(), &RocksOptions::default()).expect("open rocksdb"),
            ),
        }
    }

    /// Closes the store (and its engine) and opens it again on the same data.
    pub fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(self.engine(), self.options.clone()).expect("open store"));
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// Applies one command in its own batch.
    pub fn apply(&mut self, command: Command) -> store::Result<Response> {
        self.apply_batch(vec![command]).pop().unwrap()
    }

    pub fn apply_batch(&mut self, commands: Vec<Command>) -> Vec<store::Result<Response>> {
        let position = self.next_position.to_be_bytes();
        self.next_position += 1;
        self.store().apply(&commands, &position).expect("engine failure").results
    }

    /// Applies a command that must succeed.
    pub fn must(&mut self, command: Command) -> Response {
        let description = format!("{command:?}");
        self.apply(command).unwrap_or_else(|error| panic!("{description} failed: {error}"))
    }

    pub fn range(&self, request: RangeRequest) -> store::Result<store::RangeResponse> {
        self.store().range(&request)
    }

    /// Keys (as strings) of a range that must succeed.
    pub fn keys(&self, request: RangeRequest) -> Vec<String> {
        self.range(request).unwrap().kvs.iter().map(|kv| text(&kv.key)).collect()
    }
}

/// Fast compaction for tests: small batches, no pauses.
pub fn test_options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.compaction.batch_keys_max = 3;
    options.compaction.pause_between_batches_ms = 0;
    options.compaction.busy_percent = 100;
    options
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn put(key: &str, value: &str) -> Command {
    Command::Put(put_request(key, value))
}

pub fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..PutRequest::default() }
}

pub fn put_with_lease(key: &str, value: &str, lease: i64) -> Command {
    Command::Put(PutRequest { lease, ..put_request(key, value) })
}

pub fn delete(key: &str, range_end: &str) -> Command {
    Command::DeleteRange(delete_request(key, range_end))
}

pub fn delete_request(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: b(key), range_end: b(range_end), prev_kv: true }
}

pub fn range(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest { key: b(key), range_end: b(range_end), ..RangeRequest::default() }
}

pub fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { result, target, key: b(key), range_end: Bytes::new() }
}

pub fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Command {
    Command::Txn(TxnRequest { compare, success, failure })
}

pub fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(put_request(key, value))
}

pub fn op_delete(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest { key: b(key), range_end: b(range_end), prev_kv: false })
}

pub fn op_range(key: &str, range_end: &str) -> RequestOp {
    RequestOp::Range(range(key, range_end))
}
