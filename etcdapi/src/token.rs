//! Auth tokens: signed, so any member can check one without asking the member that issued it.
//!
//! A token names the user, the user's password revision (a password change ends older tokens)
//! and its expiry, and carries an HMAC-SHA256 over them keyed with the cluster's token key,
//! which lives in the replicated auth state and is replaced at every auth enable. Clients treat
//! it as opaque, as they do etcd's simple and JWT tokens.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    pub password_revision: u64,
    pub expires_unix: u64,
}

pub fn issue(key: &[u8], claims: &Claims) -> String {
    let body = format!("{}.{}.{}", hex(claims.user.as_bytes()), claims.password_revision, claims.expires_unix);
    let signature = hex(&sign(key, &body));
    format!("{body}.{signature}")
}

/// The claims of `token` if `key` signed it and it has not expired at `now_unix`.
pub fn verify(key: &[u8], token: &str, now_unix: u64) -> Option<Claims> {
    let (body, signature) = token.rsplit_once('.')?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(body.as_bytes());
    mac.verify_slice(&unhex(signature)?).ok()?;
    let mut fields = body.split('.');
    let user = String::from_utf8(unhex(fields.next()?)?).ok()?;
    let password_revision = fields.next()?.parse().ok()?;
    let expires_unix = fields.next()?.parse().ok()?;
    if fields.next().is_some() || expires_unix <= now_unix {
        return None;
    }
    Some(Claims { user, password_revision, expires_unix })
}

fn sign(key: &[u8], body: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims { user: "al.ice".into(), password_revision: 7, expires_unix: 1_000 }
    }

    #[test]
    fn a_token_verifies_with_its_key_until_it_expires() {
        let token = issue(b"key", &claims());
        assert_eq!(verify(b"key", &token, 999), Some(claims()));
        assert_eq!(verify(b"key", &token, 1_000), None, "expired");
        assert_eq!(verify(b"other key", &token, 10), None, "another cluster's or an older enable's key");
    }

    #[test]
    fn a_changed_token_does_not_verify() {
        let token = issue(b"key", &claims());
        let forged = token.replacen(".7.", ".8.", 1);
        assert_ne!(forged, token);
        assert_eq!(verify(b"key", &forged, 10), None);
        assert_eq!(verify(b"key", "garbage", 10), None);
        assert_eq!(verify(b"key", "", 10), None);
    }
}
