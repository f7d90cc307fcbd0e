//! Who is asking, and may they: the token a client sends (gRPC metadata `token`, or
//! `authorization`, as etcd reads them) mapped to a user, and the checks etcd makes before a
//! request reaches the log. Writes carry their user into the log (`Command::AsUser`) and are
//! checked where they apply, against the auth state of that moment, as etcd's auth applier does.

use std::time::{SystemTime, UNIX_EPOCH};

use store::{Access, AuthError, AuthState, Command};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::{status, token, Context};

/// The caller of one request, as its token names it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `None` when no token came (or auth is disabled, when etcd ignores tokens).
    pub user: Option<String>,
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

impl Context {
    /// The caller of a request with `metadata`; a token that does not verify is refused.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = metadata.get("token").or_else(|| metadata.get("authorization")) else {
            return Ok(Caller::default());
        };
        let auth = self.member.store().auth();
        if !auth.enabled {
            return Ok(Caller::default());
        }
        let invalid = || status::from_auth(AuthError::InvalidAuthToken);
        let text = value.to_str().map_err(|_| invalid())?;
        let claims = token::verify(&auth.token_key, text, now_unix()).ok_or_else(invalid)?;
        let current = auth.users.get(&claims.user).map(|user| user.password_revision);
        if current != Some(claims.password_revision) {
            return Err(invalid()); // the user was deleted or changed password since
        }
        Ok(Caller { user: Some(claims.user) })
    }

    pub fn auth(&self) -> std::sync::Arc<AuthState> {
        self.member.store().auth()
    }

    /// Refuses the request unless its caller holds the root role (while auth is enabled).
    pub fn require_admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        self.caller(metadata)?.check_admin(&self.auth())
    }

    /// Refuses the request unless it carries a valid token (while auth is enabled).
    pub fn require_authenticated(&self, metadata: &MetadataMap) -> Result<(), Status> {
        self.caller(metadata)?.check_authenticated(&self.auth())
    }
}

impl Caller {
    /// `command` on this caller's behalf: the store checks it as it applies.
    pub fn command(&self, command: Command) -> Command {
        Command::AsUser { user: self.user.clone(), command: Box::new(command) }
    }

    fn name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// etcd's IsRangePermitted: reading `key` (`range_end` empty) or `[key, range_end)`.
    pub fn check_read(&self, auth: &AuthState, key: &[u8], range_end: &[u8]) -> Result<(), Status> {
        auth.check(self.name(), key, range_end, Access::Read).map_err(status::from_auth)
    }

    pub fn check_write(&self, auth: &AuthState, key: &[u8], range_end: &[u8]) -> Result<(), Status> {
        auth.check(self.name(), key, range_end, Access::Write).map_err(status::from_auth)
    }

    /// etcd's IsAdminPermitted: the caller holds the root role (anyone, while auth is off).
    pub fn check_admin(&self, auth: &AuthState) -> Result<(), Status> {
        auth.check_admin(self.name()).map_err(status::from_auth)
    }

    /// etcd's requireAuthInfo: any authenticated user (anyone, while auth is off).
    pub fn check_authenticated(&self, auth: &AuthState) -> Result<(), Status> {
        if auth.enabled && self.user.is_none() {
            return Err(status::from_auth(AuthError::UserEmpty));
        }
        Ok(())
    }
}
