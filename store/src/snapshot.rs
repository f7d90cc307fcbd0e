//! Whole-store snapshots: what Raft sends a member too far behind to catch up from the log, and
//! what a backup saves. A snapshot is a consistent copy of every space, streamed in keel's own
//! format and checked record by record:
//!
//! ```text
//! "KEELSNAP" ‖ format version (u32 LE)
//! per record: 0x01 ‖ space (u8) ‖ key length (u32 LE) ‖ value length (u32 LE) ‖ key ‖ value ‖ crc32
//! 0xFF ‖ record count (u64 LE) ‖ crc32 of all record checksums
//! ```
//!
//! Records hold the engine's own bytes (sealed records included), so an installed snapshot is
//! byte for byte the store that produced it, applied position and compaction state included.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec;
use crate::engine::{Durability, Engine, Space, WriteBatch};
use crate::error::{Error, Result};
use crate::meta;

const MAGIC: &[u8; 8] = b"KEELSNAP";
const FORMAT_VERSION: u32 = 1;
const RECORD_TAG: u8 = 0x01;
const END_TAG: u8 = 0xFF;
/// Largest key or value a snapshot record may carry; anything larger is corruption.
const FIELD_BYTES_MAX: u32 = 64 << 20;
/// An install writes at most this many bytes per engine write.
const INSTALL_BATCH_BYTES_MAX: usize = 4 << 20;

/// What a snapshot holds, as read from its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub records: u64,
    pub bytes: u64,
    /// crc32 over every record's checksum: equal snapshots have equal checksums.
    pub checksum: u32,
}

/// A consistent copy of the store, independent of later writes. Dropping it deletes the copy.
#[derive(Debug)]
pub struct StoreSnapshot {
    copy: Option<Arc<dyn Engine>>,
    scratch: Option<PathBuf>,
}

impl StoreSnapshot {
    pub(crate) fn new(copy: Arc<dyn Engine>, scratch: Option<PathBuf>) -> Self {
        StoreSnapshot { copy: Some(copy), scratch }
    }

    /// Opens a copy kept by [`StoreSnapshot::keep`] (a RocksDB checkpoint directory). Dropping
    /// the snapshot closes it and leaves the files.
    pub fn open_kept(path: &Path) -> Result<StoreSnapshot> {
        // Read once, by bulk cursors that bypass the block cache: keep it tiny.
        let options = crate::RocksOptions { block_cache_bytes: 1 << 20, ..crate::RocksOptions::default() };
        Ok(StoreSnapshot::new(Arc::new(crate::RocksEngine::open(path, &options)?), None))
    }

    /// Closes the copy and keeps its files in the scratch path it was made in, which it returns
    /// (None for a copy opened by [`StoreSnapshot::open_kept`]): a snapshot that is written out
    /// only if it is ever read. Only a RocksDB copy has files to keep.
    pub fn keep(mut self) -> Option<PathBuf> {
        self.copy.take();
        self.scratch.take()
    }

    fn engine(&self) -> &dyn Engine {
        self.copy.as_deref().expect("present until drop")
    }

    /// The applied position of the last batch in the copy.
    pub fn applied_position(&self) -> Result<Option<Bytes>> {
        Ok(meta::read_bytes(self.engine(), meta::APPLIED_POSITION)?.map(Bytes::from))
    }

    /// The copy's revision.
    pub fn revision(&self) -> Result<i64> {
        Ok(meta::read_i64(self.engine(), meta::REVISION)?.unwrap_or(crate::store::INITIAL_REVISION))
    }

    /// Streams the snapshot to `out`.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<SnapshotSummary> {
        let io = |error: std::io::Error| Error::Engine(format!("writing snapshot: {error}"));
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
        let mut summary = SnapshotSummary { records: 0, bytes: 12, checksum: 0 };
        let mut checksums = crc32fast::Hasher::new();
        for space in Space::ALL {
            // Read once, start to end: through no block cache (a full one, 64 MiB, was a
            // resident spike at every snapshot).
            let mut cursor = self.engine().bulk_cursor(space, None);
            cursor.seek(&[]);
            while let Some(key) = cursor.key() {
                let value = cursor.value();
                let checksum = codec::checksum(space, key, value);
                out.write_all(&[RECORD_TAG, space as u8]).map_err(io)?;
                out.write_all(&(key.len() as u32).to_le_bytes()).map_err(io)?;
                out.write_all(&(value.len() as u32).to_le_bytes()).map_err(io)?;
                out.write_all(key).map_err(io)?;
                out.write_all(value).map_err(io)?;
                out.write_all(&checksum.to_le_bytes()).map_err(io)?;
                checksums.update(&checksum.to_le_bytes());
                summary.records += 1;
                summary.bytes += (2 + 4 + 4 + key.len() + value.len() + 4) as u64;
                cursor.next();
            }
            cursor.status()?;
        }
        summary.checksum = checksums.finalize();
        out.write_all(&[END_TAG]).map_err(io)?;
        out.write_all(&summary.records.to_le_bytes()).map_err(io)?;
        out.write_all(&summary.checksum.to_le_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
        summary.bytes += 13;
        Ok(summary)
    }
}

impl Drop for StoreSnapshot {
    fn drop(&mut self) {
        // The engine must be closed before its files go.
        self.copy.take();
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::Corrupt { what: format!("snapshot: {detail}") }
}

/// Reads a snapshot stream, checking every record and the trailer; `visit` sees each record.
pub fn read_records(
    input: &mut dyn Read,
    mut visit: impl FnMut(Space, Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<SnapshotSummary> {
    let mut header = [0u8; 12];
    read_exact(input, &mut header, "header")?;
    if &header[..8] != MAGIC {
        return Err(corrupt("not a keel snapshot"));
    }
    let version = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("format version {version}, expected {FORMAT_VERSION}")));
    }
    let mut summary = SnapshotSummary { records: 0, bytes: 12, checksum: 0 };
    let mut checksums = crc32fast::Hasher::new();
    loop {
        let mut tag = [0u8; 1];
        read_exact(input, &mut tag, "record tag")?;
        match tag[0] {
            RECORD_TAG => {
                let mut head = [0u8; 9];
                read_exact(input, &mut head, "record header")?;
                let space =
                    *Space::ALL.get(head[0] as usize).ok_or_else(|| corrupt(format!("unknown space {}", head[0])))?;
                let key_len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
                let value_len = u32::from_le_bytes(head[5..9].try_into().expect("4 bytes"));
                if key_len > FIELD_BYTES_MAX || value_len > FIELD_BYTES_MAX {
                    return Err(corrupt(format!("record {} claims {key_len} + {value_len} bytes", summary.records)));
                }
                let mut key = vec![0u8; key_len as usize];
                let mut value = vec![0u8; value_len as usize];
                read_exact(input, &mut key, "record key")?;
                read_exact(input, &mut value, "record value")?;
                let mut stored = [0u8; 4];
                read_exact(input, &mut stored, "record checksum")?;
                let checksum = codec::checksum(space, &key, &value);
                if u32::from_le_bytes(stored) != checksum {
                    return Err(corrupt(format!("record {} fails its checksum", summary.records)));
                }
                checksums.update(&stored);
                summary.records += 1;
                summary.bytes += (1 + 9 + key.len() + value.len() + 4) as u64;
                visit(space, key, value)?;
            }
            END_TAG => {
                let mut trailer = [0u8; 12];
                read_exact(input, &mut trailer, "trailer")?;
                let count = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
                let checksum = u32::from_le_bytes(trailer[8..].try_into().expect("4 bytes"));
                summary.checksum = checksums.finalize();
                if count != summary.records || checksum != summary.checksum {
                    return Err(corrupt("trailer does not match the records"));
                }
                summary.bytes += 13;
                return Ok(summary);
            }
            other => return Err(corrupt(format!("unknown tag {other:#x} after record {}", summary.records))),
        }
    }
}

fn read_exact(input: &mut dyn Read, buffer: &mut [u8], what: &str) -> Result<()> {
    input.read_exact(buffer).map_err(|error| corrupt(format!("{what}: {error}")))
}

/// Replaces everything in `engine` with the snapshot at `path`, which must already have been
/// verified. A crash part-way leaves the INSTALLING marker, and the next open clears the store.
pub(crate) fn install(engine: &dyn Engine, path: &Path) -> Result<()> {
    let open = || {
        std::fs::File::open(path)
            .map_err(|error| Error::Engine(format!("opening snapshot {}: {error}", path.display())))
    };
    engine.clear()?;
    let mut marker = WriteBatch::default();
    marker.put(Space::Meta, meta::INSTALLING.to_vec(), meta::sealed_i64(meta::INSTALLING, 1));
    engine.write(marker, Durability::Sync)?;
    crate::failpoint("store::snapshot::after_marker")?;
    let mut batch = WriteBatch::default();
    let mut batch_bytes = 0usize;
    read_records(&mut std::io::BufReader::new(open()?), |space, key, value| {
        batch_bytes += key.len() + value.len();
        batch.put(space, key, value);
        if batch_bytes >= INSTALL_BATCH_BYTES_MAX {
            engine.write(std::mem::take(&mut batch), Durability::Buffered)?;
            batch_bytes = 0;
        }
        Ok(())
    })?;
    batch.delete(Space::Meta, meta::INSTALLING.to_vec());
    engine.write(batch, Durability::Sync)
}
