//! Reading the key-major Kv space as it was at one revision.
//!
//! Versions of a key are stored newest first (`encoded key ‖ inverted revision`), so for a read
//! at revision R a seek to `key ‖ inverted(R, max)` lands on the newest version at or below R.
//! Worked example, key "a" written at 2 and 5, deleted at 7, written at 9 (newest first):
//!
//! ```text
//!   a‖9 live   a‖7 tombstone   a‖5 live   a‖2 live
//! ```
//! - read at 9 or later: the seek lands on a‖9 → the version written at 9;
//! - read at 8: skips a‖9, lands on a‖7, a tombstone → "a" does not exist at 8;
//! - read at 6: lands on a‖5;  read at 1: lands past every version of "a" → no "a".

use crate::codec::{self, VersionRecord};
use crate::engine::{Cursor, Reader, Space};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::key_value::KeyValue;
use crate::revision::{Revision, REVISION_BYTES};

/// Whether a scan goes on after a visited version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// A key's newest version at the view's revision, as found by a scan; decoded only on demand.
#[derive(Debug)]
pub struct VersionRef<'a> {
    pub encoded_key: &'a [u8],
    pub mod_revision: Revision,
    /// The record payload, checksum already verified.
    pub payload: &'a [u8],
}

impl VersionRef<'_> {
    /// The version without its value (keys-only ranges), which saves copying it.
    pub fn to_key_value_without_value(&self) -> Result<KeyValue> {
        self.decode(false)
    }

    pub fn to_key_value(&self) -> Result<KeyValue> {
        self.decode(true)
    }

    fn decode(&self, with_value: bool) -> Result<KeyValue> {
        let key = codec::decode_key(self.encoded_key)?;
        match VersionRecord::decode(self.payload, with_value) {
            Some(VersionRecord::Live { create_revision, version, lease, value }) => Ok(KeyValue {
                key: key.into(),
                value,
                create_revision,
                mod_revision: self.mod_revision.main,
                version,
                lease,
            }),
            _ => Err(Error::Corrupt { what: format!("kv record of {}", codec::printable(&key)) }),
        }
    }
}

/// How many `next()` calls a scan tries before it seeks past a key's older versions: most keys
/// have few versions, and a step is cheaper than a seek.
const STEPS_BEFORE_SEEK: usize = 3;

/// Keys a scan reads through the engine's cache before it goes on with a bulk cursor: ranges
/// this short are the ones worth keeping warm.
const BULK_SCAN_AFTER: usize = 1000;

/// The store as of `revision`, read through `reader`.
pub struct ReadView<'a> {
    pub reader: &'a dyn Reader,
    pub revision: i64,
}

impl ReadView<'_> {
    /// The key's version at the view's revision, or None if it did not exist then.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let mut found = None;
        self.scan(&KeyRange::Single(bytes::Bytes::copy_from_slice(key)), |version| {
            found = Some(version.to_key_value()?);
            Ok(Flow::Stop)
        })?;
        Ok(found)
    }

    /// Visits, in key order, the newest version at or below the view's revision of every key in
    /// `range` that existed at that revision.
    pub fn scan(&self, range: &KeyRange, mut visit: impl FnMut(&VersionRef) -> Result<Flow>) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let (start, upper_bound, mut cursor) = match range {
            KeyRange::Single(key) => {
                let encoded = codec::encoded_key(key);
                let upper = codec::past_all_versions(&encoded);
                let cursor = self.reader.versions_cursor(&encoded);
                (encoded, Some(upper), cursor)
            }
            KeyRange::Interval { start, end } => {
                let upper = end.as_ref().map(|end| codec::encoded_key(end));
                let cursor = self.reader.cursor(Space::Kv, upper.as_deref());
                (codec::encoded_key(start), upper, cursor)
            }
        };
        let newest_visible = Revision::last_of(self.revision).to_inverted_bytes();
        cursor.seek(&start);
        let mut steps = 0usize;
        while let Some(kv_key) = cursor.key() {
            steps += 1;
            if steps == BULK_SCAN_AFTER {
                // A long scan: it goes on from the same key without filling the engine's cache.
                let at = kv_key.to_vec();
                cursor = self.reader.bulk_cursor(Space::Kv, upper_bound.as_deref());
                cursor.seek(&at);
                continue;
            }
            let (encoded, revision_bytes) = split_kv_key(kv_key)?;
            let encoded = encoded.to_vec();
            if revision_bytes < newest_visible.as_slice() {
                // Newer than the view: jump to this key's newest version at or below it.
                let mut target = encoded.clone();
                target.extend_from_slice(&newest_visible);
                cursor.seek(&target);
                match cursor.key() {
                    Some(next) if split_kv_key(next)?.0 == encoded.as_slice() => {}
                    // No version of this key is old enough; the cursor is on the next key.
                    _ => continue,
                }
            }
            let kv_key = cursor.key().expect("cursor is on a version");
            let mod_revision = Revision::from_inverted_bytes(split_kv_key(kv_key)?.1).expect("16 bytes");
            let payload = codec::unseal(Space::Kv, kv_key, cursor.value())?;
            if !VersionRecord::is_tombstone(payload) {
                let version = VersionRef { encoded_key: &encoded, mod_revision, payload };
                if visit(&version)? == Flow::Stop {
                    return cursor.status();
                }
            }
            skip_older_versions(cursor.as_mut(), &encoded)?;
        }
        cursor.status()
    }
}

fn split_kv_key(kv_key: &[u8]) -> Result<(&[u8], &[u8])> {
    if kv_key.len() < REVISION_BYTES + 2 {
        return Err(Error::Corrupt { what: format!("kv key {}", codec::printable(kv_key)) });
    }
    Ok(kv_key.split_at(kv_key.len() - REVISION_BYTES))
}

/// Moves the cursor to the first entry of the next key.
pub fn skip_older_versions(cursor: &mut dyn Cursor, encoded: &[u8]) -> Result<()> {
    for _ in 0..STEPS_BEFORE_SEEK {
        cursor.next();
        match cursor.key() {
            Some(kv_key) if split_kv_key(kv_key)?.0 == encoded => {}
            _ => return Ok(()),
        }
    }
    cursor.seek(&codec::past_all_versions(encoded));
    Ok(())
}
