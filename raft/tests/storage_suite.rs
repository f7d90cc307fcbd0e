//! openraft's own storage suite against keel's log store and state machine, on RocksDB.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use raft::{LogStore, StateMachine, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let fail = |error: std::io::Error| StorageError::read(TypeConfig::err_from_error(&error));
        let dir = tempfile::tempdir().map_err(fail)?;
        let log = LogStore::open(dir.path().join("log")).map_err(fail)?;
        let engine = store::RocksEngine::open(dir.path().join("store"), &store::RocksOptions::default())
            .map_err(|error| fail(std::io::Error::other(error.to_string())))?;
        let store = store::Store::open(Arc::new(engine), store::StoreOptions::default())
            .map_err(|error| fail(std::io::Error::other(error.to_string())))?;
        let machine = StateMachine::new(Arc::new(store), &dir.path().join("snapshots"), None).map_err(fail)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite() {
    TypeConfig::run(async { Suite::test_all(Builder).await.unwrap() });
}
