//! Encoding of what the log and the state machine persist: postcard, framed with a crc32 that
//! is checked on every read.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = postcard::to_stdvec(value).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
}

/// Decodes a record written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    let corrupt = |detail: String| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {detail}"));
    if bytes.len() < 4 {
        return Err(corrupt("shorter than its checksum".into()));
    }
    let (payload, stored) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(payload).to_le_bytes() != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    postcard::from_bytes(payload).map_err(|error| corrupt(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_corruption() {
        let value = (7u64, String::from("entry"));
        let mut bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u64, String)>(&bytes, "test").unwrap(), value);
        bytes[1] ^= 1;
        let error = decode::<(u64, String)>(&bytes, "log entry 7").unwrap_err();
        assert!(error.to_string().contains("log entry 7: checksum mismatch"), "{error}");
    }
}
