//! The replicated state machine: committed entries go to `store::Store::apply` as one batch per
//! `apply` call, with the Raft position (last applied log id and membership) as the store's
//! applied position, in the same write as the data. Snapshots are the store's own
//! (`Store::snapshot`), kept as files beside the store.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};
use store::{Change, Store};

use crate::codec;
use crate::types::{Reply, TypeConfig};

/// Told about every applied batch, after it is durable: the watch hub's feed.
pub trait ChangeListener: Send + Sync + 'static {
    fn applied(&self, changes: &[Change], revision: i64);
    /// The store was replaced by a snapshot and is now at `revision`: there were no change
    /// events for the revisions it skipped, so watchers must read them from history.
    fn restored(&self, revision: i64);
}

/// What the store records as its applied position.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RaftPosition {
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

/// A snapshot as a file in keel's snapshot format, with its Raft metadata beside it. A snapshot
/// this member built is at first only a checkpoint of its store (hard links to its files); the
/// file is written from it the first time the snapshot is read, to send it to a member that fell
/// behind. Writing every snapshot out whole as it was built cost a share of the CPU that grew
/// with the store (5-8 % of a member's CPU in profiles of `etcdctl check perf` taken while one was
/// built, BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
    /// The store checkpoint the file is written from, for a snapshot this member built.
    pub checkpoint: Option<PathBuf>,
}

impl SnapshotFile {
    /// A snapshot that is a file already (one received from the leader).
    pub fn written(path: PathBuf) -> Self {
        SnapshotFile { path, checkpoint: None }
    }

    /// Writes the file from the checkpoint unless it exists. Blocking: seconds for a large store.
    pub fn write_out(&self) -> io::Result<()> {
        // One at a time: a checkpoint is a database, which one opener at a time may hold.
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _writing = WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.path.exists() {
            return Ok(());
        }
        let Some(checkpoint) = &self.checkpoint else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no snapshot {}", self.path.display())));
        };
        let copy = store::StoreSnapshot::open_kept(checkpoint).map_err(store_error)?;
        let partial = self.path.with_extension("partial");
        {
            let mut file = io::BufWriter::new(std::fs::File::create(&partial)?);
            copy.write_to(&mut file).map_err(store_error)?;
            file.into_inner().map_err(|error| error.into_error())?.sync_all()?;
        }
        // Losing the rename to a power cut only means writing the file again.
        std::fs::rename(&partial, &self.path)
    }
}

pub struct StateMachine {
    store: Arc<Store>,
    snapshots: Arc<SnapshotDir>,
    listener: Option<Arc<dyn ChangeListener>>,
    /// Commands (and blank or membership entries) applied since start: `--snapshot-count`
    /// counts these, as etcd counts applied requests, not log entries (which carry batches).
    applied_commands: Arc<AtomicU64>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("StateMachine").field("snapshots", &self.snapshots.dir).finish_non_exhaustive()
    }
}

impl StateMachine {
    /// A state machine over `store`, keeping snapshot files in `snapshot_dir`.
    pub fn new(store: Arc<Store>, snapshot_dir: &Path, listener: Option<Arc<dyn ChangeListener>>) -> io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        let snapshots = Arc::new(SnapshotDir { dir: snapshot_dir.to_path_buf(), next_scratch: AtomicU64::new(0) });
        snapshots.remove_leftovers()?;
        Ok(StateMachine { store, snapshots, listener, applied_commands: Arc::default() })
    }

    /// The count of commands applied since start, shared with whoever triggers snapshots.
    pub fn applied_commands(&self) -> Arc<AtomicU64> {
        self.applied_commands.clone()
    }

    fn position(&self) -> io::Result<RaftPosition> {
        match self.store.applied_position() {
            Some(bytes) => codec::decode(&bytes, "store applied position"),
            None => Ok(RaftPosition::default()),
        }
    }
}

fn store_error(error: store::Error) -> io::Error {
    io::Error::other(error.to_string())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let position = self.position()?;
        Ok((position.last_applied, position.membership))
    }

    async fn apply<Entries>(&mut self, mut entries: Entries) -> Result<(), io::Error>
    where
        Entries: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut position = self.position()?;
        let mut commands = Vec::new();
        // One slot per entry: who waits for its reply, and how many commands it carried (a
        // blank or membership entry carries none).
        let mut slots = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            position.last_applied = Some(entry.log_id);
            let carried = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(request) => {
                    let count = request.commands.len();
                    commands.extend(request.commands);
                    Some(count)
                }
                EntryPayload::Membership(membership) => {
                    position.membership = openraft::StoredMembership::new(Some(entry.log_id), membership);
                    None
                }
            };
            slots.push((responder, carried));
        }
        if slots.is_empty() {
            return Ok(());
        }
        let applied = slots.iter().map(|(_, carried)| carried.unwrap_or(1) as u64).sum::<u64>();
        let output = self.store.apply(&commands, &codec::encode(&position)?).map_err(store_error)?;
        if let Some(listener) = &self.listener {
            listener.applied(&output.changes, self.store.revision());
        }
        self.applied_commands.fetch_add(applied, Ordering::Relaxed);
        let mut results = output.results.into_iter();
        for (responder, carried) in slots {
            let reply = match carried {
                Some(count) => Reply::Applied(results.by_ref().take(count).collect()),
                None => Reply::NoCommand,
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), snapshots: self.snapshots.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        crate::failpoint("raft::snapshot::before_install")?;
        // Restoring from this member's own snapshot at startup reads it like a send does.
        snapshot.write_out()?;
        // Keep our own copy first: it becomes this member's current snapshot.
        let kept = self.snapshots.keep(meta, &snapshot.path)?;
        self.store.install_snapshot(&kept).map_err(store_error)?;
        let position = self.position()?;
        if position.last_applied != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot metadata says {:?} but its data was applied up to {:?}",
                meta.last_log_id, position.last_applied
            )));
        }
        self.snapshots.remove_older_than(meta)?;
        if let Some(listener) = &self.listener {
            listener.restored(self.store.revision());
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        self.snapshots.current()
    }
}

/// Builds snapshots from a consistent copy of the store, on openraft's snapshot task.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Arc<Store>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        // Copying the store and writing it out is blocking disk work of up to seconds: off the
        // runtime's workers, which would otherwise stop serving (on two cores, half of them).
        let (store, snapshots) = (self.store.clone(), self.snapshots.clone());
        tokio::task::spawn_blocking(move || build_snapshot_file(&store, &snapshots))
            .await
            .map_err(|error| io::Error::other(format!("building a snapshot: {error}")))?
    }
}

/// Keeps a checkpoint of the store as the newest snapshot, with its metadata; the snapshot file
/// is written from it when first read ([`SnapshotFile::write_out`]).
fn build_snapshot_file(store: &Store, snapshots: &SnapshotDir) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
    let scratch = snapshots.scratch_path();
    let copy = store.snapshot(&scratch).map_err(store_error)?;
    // The position inside the copy is the one its data is at.
    let position: RaftPosition = match copy.applied_position().map_err(store_error)? {
        Some(bytes) => codec::decode(&bytes, "snapshot applied position")?,
        None => RaftPosition::default(),
    };
    let meta = openraft::SnapshotMeta { last_log_id: position.last_applied, last_membership: position.membership };
    let kept = copy.keep().ok_or_else(|| io::Error::other("the store's copy has no files to keep"))?;
    let checkpoint = snapshots.checkpoint_path(&meta);
    if checkpoint.exists() {
        // Built at this position before (nothing was applied since): that one serves.
        std::fs::remove_dir_all(&kept)?;
    } else {
        std::fs::rename(&kept, &checkpoint)?;
        std::fs::File::open(&snapshots.dir)?.sync_all()?;
    }
    write_durably(&snapshots.meta_path(&meta), &codec::encode(&meta)?)?;
    snapshots.remove_older_than(&meta)?;
    let path = snapshots.data_path(&meta);
    Ok(Snapshot { meta, snapshot: SnapshotFile { path, checkpoint: Some(checkpoint) } })
}

/// The directory of snapshots: `<last index>-<term>.meta` with the data beside it, as a `.snap`
/// file, a `.checkpoint` store copy, or both. The newest complete one is the member's current
/// snapshot.
#[derive(Debug)]
struct SnapshotDir {
    dir: PathBuf,
    next_scratch: AtomicU64,
}

impl SnapshotDir {
    fn name(meta: &SnapshotMetaOf<TypeConfig>) -> String {
        match &meta.last_log_id {
            Some(log_id) => format!("{:020}-{}", log_id.index, log_id.leader_id),
            None => "00000000000000000000-none".to_string(),
        }
    }

    fn data_path(&self, meta: &SnapshotMetaOf<TypeConfig>) -> PathBuf {
        self.dir.join(format!("{}.snap", Self::name(meta)))
    }

    fn meta_path(&self, meta: &SnapshotMetaOf<TypeConfig>) -> PathBuf {
        self.dir.join(format!("{}.meta", Self::name(meta)))
    }

    fn checkpoint_path(&self, meta: &SnapshotMetaOf<TypeConfig>) -> PathBuf {
        self.dir.join(format!("{}.checkpoint", Self::name(meta)))
    }

    /// Removes what a member that died while building or writing a snapshot left behind: store
    /// copies, partial files, and a checkpoint whose metadata was never written.
    fn remove_leftovers(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let orphan_checkpoint = path.extension().is_some_and(|extension| extension == "checkpoint")
                && !path.with_extension("meta").exists();
            if name.starts_with("copy-") || orphan_checkpoint {
                std::fs::remove_dir_all(&path)?;
            } else if path.extension().is_some_and(|extension| extension == "partial") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// A fresh path for a store copy (it must not exist yet).
    fn scratch_path(&self) -> PathBuf {
        let number = self.next_scratch.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("copy-{}-{number}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    /// Copies a received snapshot into the directory (unless it is already there).
    fn keep(&self, meta: &SnapshotMetaOf<TypeConfig>, source: &Path) -> io::Result<PathBuf> {
        let path = self.data_path(meta);
        if source != path {
            let partial = path.with_extension("partial");
            std::fs::copy(source, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &path)?;
        }
        write_durably(&self.meta_path(meta), &codec::encode(meta)?)?;
        Ok(path)
    }

    fn metas(&self) -> io::Result<Vec<SnapshotMetaOf<TypeConfig>>> {
        let mut metas = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|extension| extension == "meta") {
                let meta: SnapshotMetaOf<TypeConfig> = codec::decode(&std::fs::read(&path)?, "snapshot metadata")?;
                if self.data_path(&meta).exists() || self.checkpoint_path(&meta).exists() {
                    metas.push(meta);
                }
            }
        }
        metas.sort_by_key(|meta| meta.last_log_id);
        Ok(metas)
    }

    fn current(&self) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>> {
        Ok(self.metas()?.pop().map(|meta| {
            let path = self.data_path(&meta);
            let checkpoint = Some(self.checkpoint_path(&meta)).filter(|checkpoint| checkpoint.exists());
            Snapshot { meta, snapshot: SnapshotFile { path, checkpoint } }
        }))
    }

    fn remove_older_than(&self, keep: &SnapshotMetaOf<TypeConfig>) -> io::Result<()> {
        for meta in self.metas()? {
            if meta.last_log_id < keep.last_log_id {
                let _ = std::fs::remove_file(self.data_path(&meta));
                let _ = std::fs::remove_dir_all(self.checkpoint_path(&meta));
                let _ = std::fs::remove_file(self.meta_path(&meta));
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a power cut leaves the old file or the new one, complete:
/// a synced temporary file renamed over it, then the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = path.with_extension("meta-partial");
    std::fs::write(&partial, bytes)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, path)?;
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
