//! How keys and records are laid out in the engine's spaces, and the checksum every record
//! carries.
//!
//! User keys are escaped so that `key ‖ revision` keeps key order for keys of any length and any
//! bytes: 0x00 becomes 0x00 0xFF and the key ends with 0x00 0x01. The encoding preserves order
//! and no encoded key is a prefix of another, so all versions of "a" sort before any version of
//! "a\0" or "ab".

use bytes::Bytes;

use crate::engine::Space;
use crate::error::{Error, Result};
use crate::revision::{Revision, REVISION_BYTES};

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;
/// Sorts after the terminator, and after every version of the key before it.
const PAST_TERMINATOR: u8 = 0x02;
const CHECKSUM_BYTES: usize = 4;

pub fn encode_key(user_key: &[u8], out: &mut Vec<u8>) {
    out.reserve(user_key.len() + 2 + REVISION_BYTES);
    for &byte in user_key {
        out.push(byte);
        if byte == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.push(ESCAPE);
    out.push(TERMINATOR);
}

pub fn encoded_key(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(user_key, &mut out);
    out
}

/// The encoded key a Kv-space key starts with: everything up to and including its terminator,
/// which is the first 0x00 0x01 (an escaped zero is 0x00 0xFF). The engine's filters are built
/// over these, so looking up a key that does not exist skips the files that lack it. A key with
/// no terminator (a seek target past one) is returned whole.
pub fn encoded_key_prefix(kv_key: &[u8]) -> &[u8] {
    match terminator_end(kv_key) {
        Some(end) => &kv_key[..end],
        None => kv_key,
    }
}

/// Whether `key` starts with an encoded key, so [`encoded_key_prefix`] applies to it.
pub fn has_encoded_key_prefix(key: &[u8]) -> bool {
    terminator_end(key).is_some()
}

fn terminator_end(key: &[u8]) -> Option<usize> {
    // RocksDB asks for every key it files and every target it seeks, so the usual shapes (a
    // version's key, an encoded key) are answered without a scan. Each is the terminator: the
    // encoding puts 0x00 0x01 nowhere else before it, and the revision comes after it.
    let length = key.len();
    if length >= 2 + REVISION_BYTES && key[length - REVISION_BYTES - 2..length - REVISION_BYTES] == [ESCAPE, TERMINATOR]
    {
        return Some(length - REVISION_BYTES);
    }
    if key.ends_with(&[ESCAPE, TERMINATOR]) {
        return Some(length);
    }
    let mut at = 0;
    while let Some(offset) = key[at..].iter().position(|&byte| byte == ESCAPE) {
        let escape = at + offset;
        match key.get(escape + 1) {
            Some(&TERMINATOR) => return Some(escape + 2),
            Some(&ESCAPED_ZERO) => at = escape + 2,
            _ => return None,
        }
    }
    None
}

/// `encoded key ‖ inverted revision`: the engine key of one version.
pub fn kv_key(user_key: &[u8], revision: Revision) -> Vec<u8> {
    let mut out = encoded_key(user_key);
    out.extend_from_slice(&revision.to_inverted_bytes());
    out
}

/// A seek target past every version of the key whose encoded form is `encoded`.
pub fn past_all_versions(encoded: &[u8]) -> Vec<u8> {
    let mut out = encoded.to_vec();
    let last = out.last_mut().expect("an encoded key ends with a terminator");
    assert_eq!(*last, TERMINATOR, "not an encoded key: {encoded:?}");
    *last = PAST_TERMINATOR;
    out
}

/// Splits a Kv-space key into the user key and the revision.
pub fn decode_kv_key(kv_key: &[u8]) -> Result<(Vec<u8>, Revision)> {
    let corrupt = || Error::Corrupt { what: format!("kv key {}", printable(kv_key)) };
    if kv_key.len() < 2 + REVISION_BYTES {
        return Err(corrupt());
    }
    let (encoded, revision) = kv_key.split_at(kv_key.len() - REVISION_BYTES);
    let user_key = decode_key(encoded).map_err(|_| corrupt())?;
    let revision = Revision::from_inverted_bytes(revision).ok_or_else(corrupt)?;
    Ok((user_key, revision))
}

/// The user key of an encoded key (the Kv-space key without its revision).
pub fn decode_key(encoded: &[u8]) -> Result<Vec<u8>> {
    decode_escaped(encoded).ok_or_else(|| Error::Corrupt { what: format!("encoded key {}", printable(encoded)) })
}

fn decode_escaped(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&byte) = bytes.next() {
        if byte != ESCAPE {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(&ESCAPED_ZERO) => out.push(ESCAPE),
            Some(&TERMINATOR) if bytes.as_slice().is_empty() => return Some(out),
            _ => return None,
        }
    }
    None
}

/// Lease ids sort by value, negative ones first, under the sign-flipped big-endian encoding.
pub fn lease_key(lease_id: i64) -> [u8; 8] {
    ((lease_id as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn lease_id_of(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

pub fn lease_keys_key(lease_id: i64, user_key: &[u8]) -> Vec<u8> {
    let mut out = lease_key(lease_id).to_vec();
    out.extend_from_slice(user_key);
    out
}

/// Appends a crc32 of (space, key, payload), so a record moved to another key or space fails
/// its check as surely as a flipped bit.
pub fn seal(space: Space, key: &[u8], mut payload: Vec<u8>) -> Vec<u8> {
    let checksum = checksum(space, key, &payload);
    payload.extend_from_slice(&checksum.to_le_bytes());
    payload
}

/// Checks a record's crc32 and returns its payload.
pub fn unseal<'a>(space: Space, key: &[u8], record: &'a [u8]) -> Result<&'a [u8]> {
    let corrupt =
        |detail: &str| Error::Corrupt { what: format!("{} record at key {}: {detail}", space.name(), printable(key)) };
    if record.len() < CHECKSUM_BYTES {
        return Err(corrupt("shorter than its checksum"));
    }
    let (payload, stored) = record.split_at(record.len() - CHECKSUM_BYTES);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    if stored != checksum(space, key, payload) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(payload)
}

/// crc32 of (space, key length, key, payload): the checksum of engine records and of snapshot
/// records alike.
pub fn checksum(space: Space, key: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[space as u8]);
    hasher.update(&(key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(payload);
    hasher.finalize()
}

/// One version of a key as stored in the Kv space (mod revision and key live in the engine key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRecord {
    Live { create_revision: i64, version: i64, lease: i64, value: Bytes },
    Tombstone,
}

const LIVE_TAG: u8 = 1;
const TOMBSTONE_TAG: u8 = 2;
const LIVE_HEADER_BYTES: usize = 1 + 3 * 8;

impl VersionRecord {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            VersionRecord::Live { create_revision, version, lease, value } => {
                let mut out = Vec::with_capacity(LIVE_HEADER_BYTES + value.len() + CHECKSUM_BYTES);
                out.push(LIVE_TAG);
                out.extend_from_slice(&create_revision.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&lease.to_be_bytes());
                out.extend_from_slice(value);
                out
            }
            VersionRecord::Tombstone => vec![TOMBSTONE_TAG],
        }
    }

    /// Decodes a payload; `with_value` false leaves the value empty instead of copying it.
    pub fn decode(payload: &[u8], with_value: bool) -> Option<VersionRecord> {
        match *payload.first()? {
            TOMBSTONE_TAG if payload.len() == 1 => Some(VersionRecord::Tombstone),
            LIVE_TAG if payload.len() >= LIVE_HEADER_BYTES => {
                let field = |index: usize| {
                    let start = 1 + index * 8;
                    i64::from_be_bytes(payload[start..start + 8].try_into().expect("8 bytes"))
                };
                Some(VersionRecord::Live {
                    create_revision: field(0),
                    version: field(1),
                    lease: field(2),
                    value: if with_value {
                        Bytes::copy_from_slice(&payload[LIVE_HEADER_BYTES..])
                    } else {
                        Bytes::new()
                    },
                })
            }
            _ => None,
        }
    }

    /// Whether an encoded payload is a tombstone, without copying the value.
    pub fn is_tombstone(payload: &[u8]) -> bool {
        payload.first() == Some(&TOMBSTONE_TAG)
    }
}

/// Keys in error messages: printable ASCII as is, other bytes as \xNN.
pub fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_keeps_order_across_versions() {
        let keys: [&[u8]; 6] = [b"", b"\0", b"\0\0", b"a", b"a\0", b"ab"];
        let newest = Revision::new(i64::MAX, 0);
        let oldest = Revision::new(1, 0);
        for pair in keys.windows(2) {
            assert!(kv_key(pair[0], oldest) < kv_key(pair[1], newest), "{pair:?}");
            assert!(past_all_versions(&encoded_key(pair[0])) <= encoded_key(pair[1]), "{pair:?}");
        }
        for key in keys {
            let (decoded, revision) = decode_kv_key(&kv_key(key, Revision::new(7, 3))).unwrap();
            assert_eq!((decoded.as_slice(), revision), (key, Revision::new(7, 3)));
        }
    }

    #[test]
    fn the_encoded_key_prefix_is_the_key_whatever_its_bytes_and_revision() {
        let keys: [&[u8]; 10] = [
            b"",
            b"\0",
            b"\0\x01",
            b"\x01\0",
            b"a\0\xff\x01",
            b"\xff",
            b"ab",
            &[0, 0, 1, 0xff],
            &[0; 20],
            b"0123456789abcdef\0\x01\0\x01",
        ];
        // Revisions whose bytes hold 0x00 0x01 and 0x00 0xFF themselves.
        let revisions = [Revision::new(1, 0), Revision::new(0x01_00_01, 0x00_ff), Revision::new(i64::MAX, 1)];
        for key in keys {
            let encoded = encoded_key(key);
            assert_eq!(encoded_key_prefix(&encoded), encoded.as_slice(), "{key:?}");
            for revision in revisions {
                let versioned = kv_key(key, revision);
                assert!(has_encoded_key_prefix(&versioned));
                assert_eq!(encoded_key_prefix(&versioned), encoded.as_slice(), "{key:?} at {revision:?}");
            }
            // The seek target past all versions is no encoded key.
            assert!(!has_encoded_key_prefix(&past_all_versions(&encoded)), "{key:?}");
        }
    }

    #[test]
    fn checksums_catch_flips_and_moves() {
        let record = seal(Space::Kv, b"k", b"payload".to_vec());
        assert_eq!(unseal(Space::Kv, b"k", &record).unwrap(), b"payload");
        let mut flipped = record.clone();
        flipped[2] ^= 1;
        assert!(matches!(unseal(Space::Kv, b"k", &flipped), Err(Error::Corrupt { .. })));
        assert!(unseal(Space::Kv, b"other", &record).is_err());
        assert!(unseal(Space::Meta, b"k", &record).is_err());
        assert!(unseal(Space::Kv, b"k", b"ab").is_err());
    }

    #[test]
    fn lease_keys_sort_by_id() {
        assert!(lease_key(-5) < lease_key(0));
        assert!(lease_key(0) < lease_key(1));
        assert!(lease_key(1) < lease_key(i64::MAX));
        assert_eq!(lease_id_of(&lease_key(-5)), Some(-5));
    }
}
