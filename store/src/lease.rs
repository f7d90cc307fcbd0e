//! Lease records in the Lease space and the lease → keys index in the LeaseKeys space.

use crate::codec;
use crate::command::LeaseInfo;
use crate::engine::{Reader, Space};
use crate::error::{Error, Result};

pub fn encode(info: &LeaseInfo) -> Vec<u8> {
    let key = codec::lease_key(info.id);
    let mut payload = Vec::with_capacity(16);
    payload.extend_from_slice(&info.ttl_seconds.to_be_bytes());
    payload.extend_from_slice(&info.remaining_ttl_seconds.to_be_bytes());
    codec::seal(Space::Lease, &key, payload)
}

fn decode(key: &[u8], record: &[u8]) -> Result<LeaseInfo> {
    let payload = codec::unseal(Space::Lease, key, record)?;
    let corrupt = || Error::Corrupt { what: format!("lease record {}", codec::printable(key)) };
    let id = codec::lease_id_of(key).ok_or_else(corrupt)?;
    if payload.len() != 16 {
        return Err(corrupt());
    }
    let field = |index: usize| i64::from_be_bytes(payload[index * 8..index * 8 + 8].try_into().expect("8 bytes"));
    Ok(LeaseInfo { id, ttl_seconds: field(0), remaining_ttl_seconds: field(1) })
}

pub fn get(reader: &dyn Reader, id: i64) -> Result<Option<LeaseInfo>> {
    let key = codec::lease_key(id);
    reader.get(Space::Lease, &key)?.map(|record| decode(&key, &record)).transpose()
}

/// Every lease, in id order.
pub fn list(reader: &dyn Reader) -> Result<Vec<LeaseInfo>> {
    let mut cursor = reader.cursor(Space::Lease, None);
    cursor.seek(&[]);
    let mut leases = Vec::new();
    while let Some(key) = cursor.key() {
        leases.push(decode(key, cursor.value())?);
        cursor.next();
    }
    cursor.status()?;
    Ok(leases)
}

/// The keys attached to lease `id`, in key order.
pub fn keys(reader: &dyn Reader, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = codec::lease_key(id);
    let upper = codec::lease_key(id.wrapping_add(1));
    let upper = (id != i64::MAX).then_some(upper.as_slice());
    let mut cursor = reader.cursor(Space::LeaseKeys, upper);
    cursor.seek(&prefix);
    let mut keys = Vec::new();
    while let Some(key) = cursor.key() {
        if !key.starts_with(&prefix) {
            break;
        }
        codec::unseal(Space::LeaseKeys, key, cursor.value())?;
        keys.push(key[prefix.len()..].to_vec());
        cursor.next();
    }
    cursor.status()?;
    Ok(keys)
}

pub fn attach_record(id: i64, user_key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let key = codec::lease_keys_key(id, user_key);
    let record = codec::seal(Space::LeaseKeys, &key, Vec::new());
    (key, record)
}
