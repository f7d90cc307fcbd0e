//! The Raft log on RocksDB: entries by index, and the vote, committed id and purge point.
//!
//! Every write that openraft must find after a crash is synced before it is acknowledged: the
//! vote before `save_vote` returns, entries before the append callback fires. `append` only writes
//! (the entries are readable at once, as openraft requires) and hands its callback to
//! [`WalSyncer`], which syncs the write-ahead log on a blocking thread: Raft's core task never
//! waits for the disk, so a leader sends an entry to its followers while its own fsync runs, and
//! every append queued during one fsync shares the next (group commit).
//! The committed id is written without a sync: losing it only makes a restart re-learn the commit
//! point from the leader, and the log's order means it never survives without the entries it
//! names.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::codec;
use crate::recent_entries::RecentEntries;
use crate::types::TypeConfig;

const ENTRIES: &str = "entries";
const STATE: &str = "state";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";
/// Memtable size of the entries family.
const LOG_WRITE_BUFFER_BYTES: usize = 16 << 20;

/// The log. Cloning shares the database (openraft takes one clone as its reader).
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: Arc<WalSyncer>,
    /// The newest entries, decoded, for the readers that follow the log's end.
    recent: Arc<RecentEntries>,
}

/// Appends waiting for the write-ahead log's fsync, and whether a blocking thread is syncing.
#[derive(Default)]
struct WalSyncer {
    state: Mutex<SyncerState>,
}

#[derive(Default)]
struct SyncerState {
    waiting: Vec<IOFlushed<TypeConfig>>,
    syncing: bool,
}

impl Debug for WalSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalSyncer").finish_non_exhaustive()
    }
}

impl WalSyncer {
    /// Calls `callback` once everything written before now is on disk.
    fn after_next_sync(self: &Arc<Self>, db: &Arc<DB>, callback: IOFlushed<TypeConfig>) {
        let mut state = self.state.lock().expect("syncer lock");
        state.waiting.push(callback);
        if state.syncing {
            return; // the running round picks it up when its fsync returns
        }
        state.syncing = true;
        drop(state);
        let (syncer, db) = (Arc::clone(self), Arc::clone(db));
        tokio::task::spawn_blocking(move || syncer.sync_until_idle(&db));
    }

    /// One fsync per round, for every append queued before it started; stops when none wait.
    fn sync_until_idle(&self, db: &DB) {
        loop {
            let waiting = {
                let mut state = self.state.lock().expect("syncer lock");
                if state.waiting.is_empty() {
                    state.syncing = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let result = crate::failpoint("raft::log::before_sync").and_then(|()| db.flush_wal(true).map_err(io_error));
            for callback in waiting {
                callback.io_completed(match &result {
                    Ok(()) => Ok(()),
                    Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
                });
            }
        }
    }
}

fn io_error(error: rocksdb::Error) -> io::Error {
    io::Error::other(error.into_string())
}

impl LogStore {
    pub fn open(path: impl AsRef<Path>) -> io::Result<LogStore> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        // Entries are read back by followers and the applier soon after they are written, then
        // purged: RocksDB's default 64 MiB memtable (two while one flushes) only held up to
        // 128 MiB of already-applied entries in memory (BENCHMARKS.md, apiserver RSS).
        let mut entries_options = Options::default();
        entries_options.set_write_buffer_size(LOG_WRITE_BUFFER_BYTES);
        let families = [
            ColumnFamilyDescriptor::new(ENTRIES, entries_options),
            ColumnFamilyDescriptor::new(STATE, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&options, path, families).map_err(io_error)?;
        Ok(LogStore { db: Arc::new(db), syncer: Arc::default(), recent: Arc::default() })
    }

    fn family(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    fn read_state<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.db.get_cf(self.family(STATE), key).map_err(io_error)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes, &String::from_utf8_lossy(key))?)),
            None => Ok(None),
        }
    }

    /// Writes and syncs `batch` (and everything written before it).
    fn write(&self, batch: WriteBatch) -> io::Result<()> {
        self.write_with_sync(batch, true)
    }

    fn write_with_sync(&self, batch: WriteBatch, sync: bool) -> io::Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options).map_err(io_error)
    }

    fn last_entry(&self) -> io::Result<Option<EntryOf<TypeConfig>>> {
        let mut iterator = self.db.raw_iterator_cf(self.family(ENTRIES));
        iterator.seek_to_last();
        iterator.status().map_err(io_error)?;
        match iterator.value() {
            Some(bytes) => Ok(Some(codec::decode(bytes, "last log entry")?)),
            None => Ok(None),
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        if let Some(entries) = self.recent.get(&range) {
            return Ok(entries);
        }
        let mut iterator = self.db.raw_iterator_cf(self.family(ENTRIES));
        iterator.seek(index_key(start));
        let mut entries = Vec::new();
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            let index = u64::from_be_bytes(key.try_into().map_err(|_| io::Error::other("log key is not 8 bytes"))?);
            if !range.contains(&index) {
                break;
            }
            entries.push(codec::decode(value, &format!("log entry {index}"))?);
            iterator.next();
        }
        iterator.status().map_err(io_error)?;
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.read_state(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<TypeConfig>> = self.read_state(LAST_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(STATE), VOTE, codec::encode(vote)?);
        self.write(batch)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(STATE), COMMITTED, codec::encode(&committed)?);
        self.write_with_sync(batch, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self.read_state::<Option<LogIdOf<TypeConfig>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        for entry in entries {
            let encoded = codec::encode(&entry)?;
            batch.put_cf(self.family(ENTRIES), index_key(entry.log_id.index), &encoded);
            appended.push((entry, encoded.len()));
        }
        crate::failpoint("raft::log::before_append")?;
        self.write_with_sync(batch, false)?;
        self.recent.appended(appended);
        crate::failpoint("raft::log::after_append")?;
        self.syncer.after_next_sync(&self.db, callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |log_id| log_id.index + 1);
        // From the ring first: no reader may find there what RocksDB no longer holds.
        self.recent.truncated_after(last_log_id.map(|log_id| log_id.index));
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.family(ENTRIES), index_key(from), index_key(u64::MAX));
        batch.delete_cf(self.family(ENTRIES), index_key(u64::MAX));
        self.write(batch)
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        // The purge point first, so a crash in between never shows a hole.
        let mut record = WriteBatch::default();
        record.put_cf(self.family(STATE), LAST_PURGED, codec::encode(&log_id)?);
        self.write(record)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.family(ENTRIES), index_key(0), index_key(log_id.index + 1));
        self.recent.purged_through(log_id.index);
        self.write(batch)
    }
}
