//! etcd's HashKV, over the *logically* retained versions: those above the compact revision, and
//! each key's newest version at or below it unless that is a tombstone older than it (see
//! `compaction.rs`). Replicas compact
//! physically at their own pace, so hashing what is on disk would differ between healthy ones.

use crate::codec::{self, VersionRecord};
use crate::engine::{Reader, Space};
use crate::error::Result;
use crate::revision::{Revision, REVISION_BYTES};

/// crc32 of every retained version at or below `revision`, in key-major order.
pub fn hash_kv(reader: &dyn Reader, revision: i64, compact_revision: i64) -> Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut cursor = reader.cursor(Space::Kv, None);
    cursor.seek(&[]);
    let mut current_key: Vec<u8> = Vec::new();
    let mut passed_compact_revision = false;
    while let Some(kv_key) = cursor.key() {
        let split = kv_key.len().saturating_sub(REVISION_BYTES);
        let (encoded, revision_bytes) = kv_key.split_at(split);
        let version_revision = Revision::from_inverted_bytes(revision_bytes)
            .ok_or_else(|| crate::Error::Corrupt { what: format!("kv key {}", codec::printable(kv_key)) })?;
        if encoded != current_key.as_slice() {
            current_key = encoded.to_vec();
            passed_compact_revision = false;
        }
        let payload = codec::unseal(Space::Kv, kv_key, cursor.value())?;
        let retained = if version_revision.main > revision {
            false
        } else if version_revision.main > compact_revision {
            true
        } else if !passed_compact_revision {
            passed_compact_revision = true;
            !VersionRecord::is_tombstone(payload) || version_revision.main == compact_revision
        } else {
            false
        };
        if retained {
            hasher.update(kv_key);
            hasher.update(payload);
        }
        cursor.next();
    }
    cursor.status()?;
    Ok(hasher.finalize())
}
