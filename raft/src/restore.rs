//! Building a member's data dir from a snapshot file (`keel snapshot restore`), as `etcdctl
//! snapshot restore` does for etcd: the store's data comes from the file, and the Raft state
//! starts fresh, so the member bootstraps a new cluster from its `--initial-cluster` flags.

use std::path::Path;

use crate::member::MemberError;
use crate::state_machine::RaftPosition;

/// Restores `snapshot` (keel's snapshot format, already stripped of any trailer) into a new
/// `data_dir`; refuses a data dir that holds a store already.
pub fn restore_snapshot(snapshot: &Path, data_dir: &Path) -> Result<store::SnapshotSummary, MemberError> {
    let store_dir = data_dir.join("store");
    if store_dir.exists() {
        return Err(MemberError::Io(format!("data-dir {} exists already", data_dir.display())));
    }
    store::Store::verify_snapshot(snapshot)?;
    std::fs::create_dir_all(&store_dir)?;
    let engine = store::RocksEngine::open(&store_dir, &store::RocksOptions::default())?;
    let opened = store::Store::open(std::sync::Arc::new(engine), store::StoreOptions::default())?;
    let summary = opened.install_snapshot(snapshot)?;
    // The old cluster's log position and membership mean nothing to the new cluster.
    opened.apply(&[], &crate::codec::encode(&RaftPosition::default())?)?;
    Ok(summary)
}
