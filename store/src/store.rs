//! [`Store`]: the MVCC key-value store over an [`Engine`]. One writer applies batches of commands;
//! any number of readers range, hash and read history concurrently.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::apply::Applier;
use crate::auth::AuthState;
use crate::command::{Command, LeaseInfo, RangeRequest, RangeResponse, Response};
use crate::compaction::{self, CompactionOptions, CompactionState};
use crate::engine::{Durability, Engine};
use crate::error::{Error, Result};
use crate::history;
use crate::key_value::{Change, Event, KeyValue};
use crate::lease;
use crate::meta;
use crate::newest_versions::NewestVersions;
use crate::range;
use crate::read_view::ReadView;
use crate::snapshot::{self, SnapshotSummary, StoreSnapshot};

/// Settings for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Whether an applied batch is fsynced before `apply` returns. Under Raft the log is the
    /// durable copy and this may be `Buffered`; standalone, `Sync` makes every acknowledged
    /// command survive power loss.
    pub durability: Durability,
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    pub compaction: CompactionOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { durability: Durability::Sync, max_txn_ops: 128, compaction: CompactionOptions::default() }
    }
}

/// What one applied batch did.
#[derive(Debug)]
pub struct ApplyOutput {
    /// One per command, in order. A command's error means it changed nothing.
    pub results: Vec<Result<Response>>,
    /// The change feed: the events of each new revision, in revision order.
    pub changes: Vec<Change>,
}

/// etcd's HashKV answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The revision hashed up to.
    pub revision: i64,
    pub compact_revision: i64,
}

#[derive(Debug)]
struct Shared {
    engine: Arc<dyn Engine>,
    options: StoreOptions,
    /// Held by the one applier. Also holds whether an engine failure poisoned the store.
    apply_lock: Mutex<ApplyState>,
    revision: AtomicI64,
    compact_revision: AtomicI64,
    compaction: Arc<CompactionState>,
    /// The auth state as of the last applied batch (read on every authenticated request).
    auth: RwLock<Arc<AuthState>>,
}

#[derive(Debug, Default)]
struct ApplyState {
    failed: bool,
    applied_position: Option<Bytes>,
    newest: NewestVersions,
}

/// The MVCC store. Dropping it stops background compaction (which resumes at the next open).
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    compactor: Option<JoinHandle<()>>,
}

/// The first revision of an empty store, as in etcd: the first write gets revision 2.
pub(crate) const INITIAL_REVISION: i64 = 1;

impl Store {
    /// Opens the store kept in `engine`, restoring exactly the state of the last applied batch,
    /// and resumes any unfinished compaction.
    pub fn open(engine: Arc<dyn Engine>, options: StoreOptions) -> Result<Store> {
        if meta::read_i64(engine.as_ref(), meta::INSTALLING)?.is_some() {
            tracing::warn!("a snapshot install was interrupted; clearing the store");
            engine.clear()?;
        }
        let revision = meta::read_i64(engine.as_ref(), meta::REVISION)?.unwrap_or(INITIAL_REVISION);
        let compact_revision = meta::read_i64(engine.as_ref(), meta::COMPACT_REVISION)?.unwrap_or(0);
        let compact_finished = meta::read_i64(engine.as_ref(), meta::COMPACT_FINISHED)?.unwrap_or(0);
        let applied_position = meta::read_bytes(engine.as_ref(), meta::APPLIED_POSITION)?.map(Bytes::from);
        let auth = RwLock::new(Arc::new(AuthState::read(engine.as_ref())?));
        let compaction = Arc::new(CompactionState::default());
        {
            let mut progress = compaction.progress.lock().expect("compaction lock");
            progress.target = compact_revision;
            progress.finished = compact_finished;
        }
        let compactor = {
            let (engine, state, options) = (engine.clone(), compaction.clone(), options.compaction.clone());
            std::thread::Builder::new()
                .name("keel-compaction".into())
                .spawn(move || compaction::run(engine, state, options))
                .map_err(|error| Error::Engine(format!("cannot start the compaction thread: {error}")))?
        };
        let shared = Arc::new(Shared {
            engine,
            options,
            apply_lock: Mutex::new(ApplyState { failed: false, applied_position, newest: NewestVersions::default() }),
            revision: AtomicI64::new(revision),
            compact_revision: AtomicI64::new(compact_revision),
            compaction,
            auth,
        });
        Ok(Store { shared, compactor: Some(compactor) })
    }

    /// Applies `commands` in order as one atomic batch, recording `position` (the caller's
    /// opaque log position) with them. An `Err` is an engine failure: nothing of the batch is
    /// applied, and the store refuses further batches until it is reopened.
    pub fn apply(&self, commands: &[Command], position: &[u8]) -> Result<ApplyOutput> {
        let shared = &self.shared;
        let mut guard = shared.apply_lock.lock().expect("apply lock");
        let state = &mut *guard;
        if state.failed {
            return Err(Error::Failed);
        }
        let revision = shared.revision.load(Ordering::Acquire);
        let compact_revision = shared.compact_revision.load(Ordering::Acquire);
        let mut applier = Applier::new(
            shared.engine.as_ref(),
            shared.options.max_txn_ops,
            revision,
            compact_revision,
            self.auth(),
            &state.newest,
        );
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            match applier.apply(command) {
                Err(fatal @ (Error::Engine(_) | Error::Corrupt { .. })) => {
                    state.failed = true;
                    return Err(fatal);
                }
                result => results.push(result),
            }
        }
        let (new_revision, new_compact_revision) = (applier.revision, applier.compact_revision);
        let new_auth = applier.auth_changed.then(|| applier.auth.clone());
        let (batch, changes, newest) = applier.finish(position);
        let written = crate::failpoint("store::apply::before_write")
            .and_then(|()| shared.engine.write(batch, shared.options.durability));
        if let Err(error) = written {
            state.failed = true;
            return Err(error);
        }
        if let Err(error) = crate::failpoint("store::apply::after_write") {
            // Written but not published: only a reopen knows the state again.
            state.failed = true;
            return Err(error);
        }
        state.newest.absorb(newest);
        shared.revision.store(new_revision, Ordering::Release);
        if let Some(auth) = new_auth {
            *shared.auth.write().expect("auth lock") = auth;
        }
        state.applied_position = Some(Bytes::copy_from_slice(position));
        if new_compact_revision != compact_revision {
            shared.compact_revision.store(new_compact_revision, Ordering::Release);
            let mut progress = shared.compaction.progress.lock().expect("compaction lock");
            progress.target = new_compact_revision;
            shared.compaction.changed.notify_all();
        }
        Ok(ApplyOutput { results, changes })
    }

    /// Serves a range at the request's revision (0: the current one).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse> {
        let mut kvs = Vec::new();
        let summary = self.range_into(request, &mut |kv| {
            kvs.push(kv);
            Ok(())
        })?;
        Ok(RangeResponse { kvs, more: summary.more, count: summary.count, revision: summary.revision })
    }

    /// Like [`Store::range`], but an unsorted range with a limit stops reading once it knows
    /// whether more keys follow, so `count` is only of the keys read: for paging through a large
    /// range (the apiserver's LISTs), where etcd's count would read the rest of the range for
    /// every page.
    pub fn range_page(&self, request: &RangeRequest) -> Result<RangeResponse> {
        let mut kvs = Vec::new();
        let summary = self.range_counting(request, range::Counting::UpToLimit, &mut |kv| {
            kvs.push(kv);
            Ok(())
        })?;
        Ok(RangeResponse { kvs, more: summary.more, count: summary.count, revision: summary.revision })
    }

    /// Like [`Store::range`], but hands each version of the reply to `sink` as it is produced,
    /// so a caller can encode a large reply without first holding it as `KeyValue`s. On an
    /// error the sink may have seen part of the reply, which the caller must discard.
    pub fn range_into(
        &self,
        request: &RangeRequest,
        sink: &mut dyn FnMut(KeyValue) -> Result<()>,
    ) -> Result<crate::RangeSummary> {
        self.range_counting(request, range::Counting::WholeRange, sink)
    }

    fn range_counting(
        &self,
        request: &RangeRequest,
        counting: range::Counting,
        sink: &mut dyn FnMut(KeyValue) -> Result<()>,
    ) -> Result<crate::RangeSummary> {
        if request.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let current = self.revision();
        let at = if request.revision > 0 { request.revision } else { current };
        self.check_readable(at, current)?;
        let view = ReadView { reader: self.shared.engine.as_ref(), revision: at };
        let mut summary = range::range_scan(&view, request, counting, sink)?;
        // A compaction that passed `at` during the read may have removed versions it needed.
        self.check_readable(at, current)?;
        summary.revision = current;
        Ok(summary)
    }

    fn check_readable(&self, revision: i64, current: i64) -> Result<()> {
        if revision > current {
            return Err(Error::FutureRevision { current_revision: current });
        }
        let compact_revision = self.compact_revision();
        if revision < compact_revision {
            return Err(Error::Compacted { compact_revision });
        }
        Ok(())
    }

    /// The changes of revisions `from..=to`, whole revisions only, about `events_max` events at
    /// most. Fails with [`Error::Compacted`] when `from` is below the compact revision.
    pub fn changes(&self, from: i64, to: i64, events_max: usize) -> Result<Vec<Change>> {
        let check = || {
            let compact_revision = self.compact_revision();
            if from < compact_revision {
                return Err(Error::Compacted { compact_revision });
            }
            Ok(())
        };
        check()?;
        let changes = history::changes(self.shared.engine.as_ref(), from, to, events_max, self.compact_revision());
        // A compaction that passed `from` meanwhile may have removed what the read needed: that
        // is `Compacted`, not the missing-version error the read may have run into.
        check()?;
        changes
    }

    /// The version a delete `event` removed, read at the revision before it: what the event
    /// leaves out unless its request asked `prev_kv`. None once compaction has passed that
    /// revision, as etcd then sends the event without it.
    pub fn deleted_version(&self, event: &Event) -> Result<Option<KeyValue>> {
        let revision = event.kv.mod_revision - 1;
        let compacted = || revision < self.compact_revision();
        if compacted() {
            return Ok(None);
        }
        let found = ReadView { reader: self.shared.engine.as_ref(), revision }.get(&event.kv.key)?;
        // A compaction that passed it meanwhile may have removed it halfway through the read.
        Ok(if compacted() { None } else { found })
    }

    /// etcd's HashKV at `revision` (0: the current one).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv> {
        let current = self.revision();
        let at = if revision > 0 { revision } else { current };
        self.check_readable(at, current)?;
        let compact_revision = self.compact_revision();
        let hash = crate::hash::hash_kv(self.shared.engine.as_ref(), at, compact_revision)?;
        self.check_readable(at, current)?;
        Ok(HashKv { hash, revision: at, compact_revision })
    }

    pub fn lease(&self, id: i64) -> Result<Option<LeaseInfo>> {
        lease::get(self.shared.engine.as_ref(), id)
    }

    pub fn leases(&self) -> Result<Vec<LeaseInfo>> {
        lease::list(self.shared.engine.as_ref())
    }

    /// The keys attached to a lease, in key order.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Bytes>> {
        Ok(lease::keys(self.shared.engine.as_ref(), id)?.into_iter().map(Bytes::from).collect())
    }

    /// Users, roles and whether auth is enabled, as of the last applied batch.
    pub fn auth(&self) -> Arc<AuthState> {
        self.shared.auth.read().expect("auth lock").clone()
    }

    pub fn revision(&self) -> i64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    pub fn compact_revision(&self) -> i64 {
        self.shared.compact_revision.load(Ordering::Acquire)
    }

    /// The position passed with the last applied batch.
    pub fn applied_position(&self) -> Option<Bytes> {
        self.shared.apply_lock.lock().expect("apply lock").applied_position.clone()
    }

    /// Blocks until physical compaction has caught up with the last Compact command (or
    /// stopped on an engine error). For tests and tools.
    pub fn wait_for_compaction(&self) -> Result<()> {
        let state = &self.shared.compaction;
        let mut progress = state.progress.lock().expect("compaction lock");
        while progress.finished < progress.target && !progress.failed {
            progress = state.changed.wait(progress).expect("compaction lock");
        }
        if progress.failed {
            return Err(Error::Engine("compaction stopped after an engine error".into()));
        }
        Ok(())
    }

    /// A consistent copy of the whole store for a snapshot, unaffected by later writes.
    /// `scratch` must not exist yet; the copy keeps its files there until dropped.
    pub fn snapshot(&self, scratch: &Path) -> Result<StoreSnapshot> {
        let copy = self.shared.engine.consistent_copy(scratch)?;
        Ok(StoreSnapshot::new(copy, Some(scratch.to_path_buf())))
    }

    /// Checks every record of the snapshot file at `path` without installing it.
    pub fn verify_snapshot(path: &Path) -> Result<SnapshotSummary> {
        let file = std::fs::File::open(path)
            .map_err(|error| Error::Engine(format!("opening snapshot {}: {error}", path.display())))?;
        snapshot::read_records(&mut std::io::BufReader::new(file), |_, _, _| Ok(()))
    }

    /// Replaces the whole store with the snapshot at `path`: verified first (a corrupt
    /// snapshot changes nothing), then installed under the apply lock, with compaction held off.
    pub fn install_snapshot(&self, path: &Path) -> Result<SnapshotSummary> {
        let summary = Self::verify_snapshot(path)?;
        let shared = &self.shared;
        let mut state = shared.apply_lock.lock().expect("apply lock");
        let _pass_lock = shared.compaction.pass_lock.lock().expect("compaction pass lock");
        shared.compaction.progress.lock().expect("compaction lock").generation += 1;
        state.newest.clear();
        if let Err(error) = snapshot::install(shared.engine.as_ref(), path) {
            state.failed = true;
            return Err(error);
        }
        let engine = shared.engine.as_ref();
        let revision = meta::read_i64(engine, meta::REVISION)?.unwrap_or(INITIAL_REVISION);
        let compact_revision = meta::read_i64(engine, meta::COMPACT_REVISION)?.unwrap_or(0);
        let compact_finished = meta::read_i64(engine, meta::COMPACT_FINISHED)?.unwrap_or(0);
        state.applied_position = meta::read_bytes(engine, meta::APPLIED_POSITION)?.map(Bytes::from);
        *shared.auth.write().expect("auth lock") = Arc::new(AuthState::read(engine)?);
        state.failed = false;
        shared.revision.store(revision, Ordering::Release);
        shared.compact_revision.store(compact_revision, Ordering::Release);
        let mut progress = shared.compaction.progress.lock().expect("compaction lock");
        progress.target = compact_revision;
        progress.finished = compact_finished;
        shared.compaction.changed.notify_all();
        Ok(summary)
    }

    /// Bytes the engine holds.
    pub fn size_bytes(&self) -> u64 {
        self.shared.engine.size_bytes()
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        {
            let mut progress = self.shared.compaction.progress.lock().expect("compaction lock");
            progress.shutdown = true;
            self.shared.compaction.changed.notify_all();
        }
        if let Some(compactor) = self.compactor.take() {
            let _ = compactor.join();
        }
    }
}
