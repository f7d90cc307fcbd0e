//! Store-wide values in the Meta space, each written in the same batch as the change it describes.

use crate::codec;
use crate::engine::{Reader, Space};
use crate::error::{Error, Result};
use crate::pending::PendingWrites;

/// The current main revision.
pub const REVISION: &[u8] = b"revision";
/// The revision of the last applied Compact command (the logical compaction).
pub const COMPACT_REVISION: &[u8] = b"compact_revision";
/// The revision up to which old versions are physically gone.
pub const COMPACT_FINISHED: &[u8] = b"compact_finished";
/// The caller's opaque position of the last applied batch (Raft's log id).
pub const APPLIED_POSITION: &[u8] = b"applied_position";
/// Present while a snapshot is being installed: found at open, the store is half-written and is
/// cleared.
pub const INSTALLING: &[u8] = b"installing";

pub fn read_bytes(reader: &dyn Reader, name: &[u8]) -> Result<Option<Vec<u8>>> {
    match reader.get(Space::Meta, name)? {
        Some(record) => Ok(Some(codec::unseal(Space::Meta, name, &record)?.to_vec())),
        None => Ok(None),
    }
}

pub fn read_i64(reader: &dyn Reader, name: &[u8]) -> Result<Option<i64>> {
    let Some(bytes) = read_bytes(reader, name)? else { return Ok(None) };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::Corrupt { what: format!("meta value {} is not 8 bytes", codec::printable(name)) })?;
    Ok(Some(i64::from_be_bytes(bytes)))
}

pub fn sealed_i64(name: &[u8], value: i64) -> Vec<u8> {
    codec::seal(Space::Meta, name, value.to_be_bytes().to_vec())
}

pub fn write_i64(pending: &mut PendingWrites, name: &[u8], value: i64) {
    pending.put(Space::Meta, name.to_vec(), sealed_i64(name, value));
}

pub fn write_bytes(pending: &mut PendingWrites, name: &[u8], value: &[u8]) {
    pending.put(Space::Meta, name.to_vec(), codec::seal(Space::Meta, name, value.to_vec()));
}
