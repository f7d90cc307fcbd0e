//! The LIST continue token: the list's revision and the last key served, so the next page is
//! read at the same revision (from the cache while it is still there, else from store history).
//! Encoded as kube-apiserver encodes it: base64 of `{"v":"meta.k8s.io/v1","rv":R,"start":KEY}`,
//! with `start` relative to the resource's key prefix.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Wire {
    v: String,
    rv: i64,
    start: String,
}

/// Where a paginated list resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: i64,
    /// The last key served, relative to the resource's key prefix.
    pub after_key: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        // kube-apiserver's start key is the next key to read: the last one with a zero byte.
        let wire = Wire { v: TOKEN_VERSION.into(), rv: self.revision, start: format!("{}\u{0}", self.after_key) };
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&wire).expect("a token encodes"))
    }

    pub fn decode(text: &str) -> Result<ContinueToken> {
        let invalid = |why: &str| Error::BadRequest(format!("continue key is not valid: {why}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .map_err(|_| invalid("not base64"))?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
        if wire.v != TOKEN_VERSION {
            return Err(invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
        }
        if wire.rv <= 0 {
            return Err(invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
        }
        let after_key = wire.start.strip_suffix('\u{0}').unwrap_or(&wire.start).to_string();
        if after_key.contains("..") || after_key.starts_with('/') {
            return Err(invalid("the key is not a key of this resource"));
        }
        Ok(ContinueToken { revision: wire.rv, after_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let token = ContinueToken { revision: 42, after_key: "default/web".into() };
        assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);
        assert!(ContinueToken::decode("not a token").is_err());
        assert!(ContinueToken::decode(
            &base64::engine::general_purpose::STANDARD.encode(b"{\"v\":\"x\",\"rv\":1,\"start\":\"a\"}")
        )
        .is_err());
    }
}
