//! The RocksDB engine: one column family per [`Space`], one WAL for all of them, so a write batch
//! across spaces is atomic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, Options, ReadOptions, WriteOptions,
    DB,
};

use crate::codec;
use crate::engine::{Cursor, Durability, Engine, Reader, Space, WriteBatch, WriteOp};
use crate::error::{Error, Result};

/// Tuning for [`RocksEngine::open`].
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache for all spaces: the bound on cached data in memory.
    pub block_cache_bytes: usize,
    /// Memtable size per space before it is flushed. Resident: a space holds up to two (one
    /// filling, one flushing), so this bounds the store's write memory at ~4× it for Kv and
    /// History together.
    pub write_buffer_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        // 16 MiB memtables: 32 MiB ones sat ~30 MiB full in a `keel server` holding 100k pods
        // (RocksDB's LOG, BENCHMARKS.md) for no measurable gain in put throughput.
        RocksOptions { block_cache_bytes: 64 << 20, write_buffer_bytes: 16 << 20 }
    }
}

/// A RocksDB database in one directory.
#[derive(Debug)]
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
}

impl RocksEngine {
    pub fn open(path: impl AsRef<Path>, options: &RocksOptions) -> Result<RocksEngine> {
        let path = path.as_ref().to_path_buf();
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        // Recover up to the last intact record of the WAL, as a crash can leave a torn tail.
        db_options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        db_options.set_max_background_jobs(2);
        // Compactions (RocksDB's low-priority pool) yield the CPU to requests: on two cores,
        // rewriting the files a store compaction leaves behind raised put p99 (BENCHMARKS.md).
        let mut env = rocksdb::Env::new().map_err(engine_error)?;
        env.lower_thread_pool_cpu_priority();
        db_options.set_env(&env);
        db_options.set_paranoid_checks(true);
        let descriptors = Space::ALL.iter().map(|space| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            // Index and filter blocks stay with their table readers, outside the block cache:
            // cached, they were evicted and re-read (and LZ4-decompressed) on most point reads,
            // which cost ~200 µs per put (perf, BENCHMARKS.md). Their memory grows with the data,
            // about 1-2% of it.
            table.set_cache_index_and_filter_blocks(false);
            let mut cf_options = Options::default();
            if *space == Space::Kv {
                // Filters over encoded keys rather than whole keys (key ‖ revision): a lookup
                // seeks to a key without knowing its revision, so only these let it skip the
                // files that lack the key. Without them, every create read a block of each level
                // from disk to find its key absent: 13 % of a leader's CPU under `etcdctl check
                // perf` (perf, BENCHMARKS.md). Files written without them are read unfiltered.
                table.set_whole_key_filtering(false);
                cf_options.set_prefix_extractor(rocksdb::SliceTransform::create(
                    "keel.encoded_key",
                    codec::encoded_key_prefix,
                    Some(codec::has_encoded_key_prefix),
                ));
            }
            cf_options.set_block_based_table_factory(&table);
            cf_options.set_write_buffer_size(options.write_buffer_bytes);
            // LZ4 from the level below the base level on: flushes and the first compaction write
            // uncompressed, as RocksDB's tuning guide advises for write-heavy work. Compressing
            // flushes was ~3 % of a `keel server`'s CPU during creates (perf, BENCHMARKS.md).
            use rocksdb::DBCompressionType::{Lz4, None as Uncompressed};
            cf_options.set_compression_per_level(&[Uncompressed, Uncompressed, Lz4, Lz4, Lz4, Lz4, Lz4]);
            if matches!(space, Space::Kv | Space::History) {
                // Compaction leaves runs of deletes behind; compact a file early when a window of
                // 128k entries holds 32k deletes, so space returns without a manual compaction.
                cf_options.add_compact_on_deletion_collector_factory(128 * 1024, 32 * 1024, 0.0);
            }
            ColumnFamilyDescriptor::new(space.name(), cf_options)
        });
        let db = DB::open_cf_descriptors(&db_options, &path, descriptors).map_err(engine_error)?;
        Ok(RocksEngine { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn handle(&self, space: Space) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(space.name()).expect("every space's column family is created at open")
    }
}

impl RocksEngine {
    /// With `fill_cache` off, blocks read are dropped once the cursor moves past them, as
    /// RocksDB advises for bulk scans.
    fn cursor_with(&self, space: Space, upper_bound: Option<&[u8]>, fill_cache: bool) -> Box<dyn Cursor + '_> {
        let mut read_options = ReadOptions::default();
        if let Some(bound) = upper_bound {
            read_options.set_iterate_upper_bound(bound.to_vec());
        }
        read_options.fill_cache(fill_cache);
        // Across keys: the Kv space's prefix filters must not cut the scan short.
        read_options.set_total_order_seek(true);
        let iterator = self.db.raw_iterator_cf_opt(self.handle(space), read_options);
        Box::new(RocksCursor { iterator })
    }
}

fn engine_error(error: rocksdb::Error) -> Error {
    Error::Engine(error.into_string())
}

impl Reader for RocksEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.handle(space), key).map_err(engine_error)
    }

    fn cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_> {
        self.cursor_with(space, upper_bound, true)
    }

    fn bulk_cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_> {
        self.cursor_with(space, upper_bound, false)
    }

    fn versions_cursor(&self, encoded: &[u8]) -> Box<dyn Cursor + '_> {
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(codec::past_all_versions(encoded));
        // Within one key's versions, so the prefix filters apply.
        read_options.set_prefix_same_as_start(true);
        let iterator = self.db.raw_iterator_cf_opt(self.handle(Space::Kv), read_options);
        Box::new(RocksCursor { iterator })
    }
}

impl Engine for RocksEngine {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                WriteOp::Put { space, key, value } => rocks_batch.put_cf(self.handle(*space), key, value),
                WriteOp::Delete { space, key } => rocks_batch.delete_cf(self.handle(*space), key),
                WriteOp::DeleteRange { space, from, to } => rocks_batch.delete_range_cf(self.handle(*space), from, to),
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(durability == Durability::Sync);
        self.db.write_opt(rocks_batch, &write_options).map_err(engine_error)
    }

    fn reclaim_space(&self, space: Space) -> Result<()> {
        self.db.compact_range_cf::<&[u8], &[u8]>(self.handle(space), None, None);
        Ok(())
    }

    fn consistent_copy(&self, scratch: &Path) -> Result<Arc<dyn Engine>> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(engine_error)?;
        checkpoint.create_checkpoint(scratch).map_err(engine_error)?;
        // The copy is read once by bulk cursors, which bypass the block cache: keep it tiny.
        let options = RocksOptions { block_cache_bytes: 1 << 20, ..RocksOptions::default() };
        Ok(Arc::new(RocksEngine::open(scratch, &options)?))
    }

    fn clear(&self) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for space in Space::ALL {
            let handle = self.handle(space);
            let mut read_options = ReadOptions::default();
            read_options.set_total_order_seek(true);
            let mut iterator = self.db.raw_iterator_cf_opt(handle, read_options);
            iterator.seek_to_first();
            let first = iterator.key().map(<[u8]>::to_vec);
            iterator.seek_to_last();
            let last = iterator.key().map(<[u8]>::to_vec);
            iterator.status().map_err(engine_error)?;
            if let (Some(first), Some(last)) = (first, last) {
                // [first, last) by range, then last itself.
                batch.delete_range_cf(handle, &first, &last);
                batch.delete_cf(handle, &last);
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        self.db.write_opt(batch, &write_options).map_err(engine_error)
    }

    fn size_bytes(&self) -> u64 {
        Space::ALL
            .iter()
            .map(|space| {
                let handle = self.handle(*space);
                let sst = self.db.property_int_value_cf(handle, "rocksdb.live-sst-files-size");
                let memtables = self.db.property_int_value_cf(handle, "rocksdb.cur-size-all-mem-tables");
                sst.ok().flatten().unwrap_or(0) + memtables.ok().flatten().unwrap_or(0)
            })
            .sum()
    }
}

struct RocksCursor<'a> {
    iterator: DBRawIteratorWithThreadMode<'a, DB>,
}

impl Cursor for RocksCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        self.iterator.seek(target);
    }

    fn next(&mut self) {
        self.iterator.next();
    }

    fn key(&self) -> Option<&[u8]> {
        self.iterator.key()
    }

    fn value(&self) -> &[u8] {
        self.iterator.value().expect("value() is only called on a valid cursor")
    }

    fn status(&self) -> Result<()> {
        self.iterator.status().map_err(engine_error)
    }
}
