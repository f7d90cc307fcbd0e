//! etcd's auth state: users, roles, their key permissions, and whether auth is enabled.
//!
//! The whole state is one small record in the Meta space, changed only by [`AuthCommand`]s
//! applied through the log, so every replica holds the same users and roles. Passwords arrive
//! already hashed (the API layer hashes them, as etcd 3.5 does), and the token key arrives
//! chosen by the member that proposed `Enable`: nothing here reads a clock or a random source.
//!
//! Permission checks follow etcd's rules: a permission names a key (`range_end` empty), a range
//! `[key, range_end)`, or everything from `key` on (`range_end` = `"\0"`); a request is allowed
//! when the union of the user's permissions of that kind covers all of it; the `root` role
//! allows everything.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codec;
use crate::engine::{Reader, Space};
use crate::error::{Error, Result};
use crate::meta;
use crate::pending::PendingWrites;

/// The user and the role that may administer auth and that auth enable requires.
pub const ROOT: &str = "root";

/// The Meta key holding the encoded [`AuthState`].
const AUTH_STATE: &[u8] = b"auth";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PermissionType {
    Read,
    Write,
    ReadWrite,
}

impl PermissionType {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (PermissionType::ReadWrite, _)
                | (PermissionType::Read, Access::Read)
                | (PermissionType::Write, Access::Write)
        )
    }
}

/// What a request does to a range of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Permission {
    pub key: Bytes,
    pub range_end: Bytes,
    pub permission_type: PermissionType,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
    /// The bcrypt hash; `None` for a user added with `--no-password` (it cannot authenticate
    /// by password).
    pub password_hash: Option<String>,
    /// The auth revision of the last password change (or the user's creation): tokens issued
    /// before it are no longer valid.
    pub password_revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Role {
    /// Sorted by key, one per (key, range_end).
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    /// etcd's auth revision: one more after every change.
    pub revision: u64,
    /// Signs tokens. A new one is chosen at every enable, so disabling auth ends every token.
    pub token_key: Vec<u8>,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

/// A change to the auth state, as replicated in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AuthCommand {
    Enable { token_key: Vec<u8> },
    Disable,
    UserAdd { name: String, password_hash: Option<String> },
    UserDelete { name: String },
    UserChangePassword { name: String, password_hash: Option<String> },
    UserGrantRole { user: String, role: String },
    UserRevokeRole { user: String, role: String },
    RoleAdd { name: String },
    RoleDelete { name: String },
    RoleGrantPermission { role: String, permission: Permission },
    RoleRevokePermission { role: String, key: Bytes, range_end: Bytes },
}

/// etcd's auth errors, with the messages its gRPC layer sends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd sends this one unmapped (gRPC code Unknown), with its internal message.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthManagement,
}

impl AuthState {
    /// Applies `command`; on an error nothing changed.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<(), AuthError> {
        match command {
            AuthCommand::Enable { token_key } => {
                if self.enabled {
                    return Ok(());
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                self.token_key.clone_from(token_key);
            }
            AuthCommand::Disable => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
                self.token_key.clear();
            }
            AuthCommand::UserAdd { name, password_hash } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    roles: Vec::new(),
                    password_hash: password_hash.clone(),
                    password_revision: self.revision + 1,
                };
                self.users.insert(name.clone(), user);
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthCommand::UserChangePassword { name, password_hash } => {
                let next_revision = self.revision + 1;
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                // A user added without a password keeps having none, as in etcd.
                if user.password_hash.is_some() {
                    user.password_hash.clone_from(password_hash);
                }
                user.password_revision = next_revision;
            }
            AuthCommand::UserGrantRole { user, role } => {
                if role != ROOT && !self.roles.contains_key(role) {
                    if !self.users.contains_key(user) {
                        return Err(AuthError::UserNotFound);
                    }
                    return Err(AuthError::RoleNotFound);
                }
                let entry = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                if let Err(at) = entry.roles.binary_search(role) {
                    entry.roles.insert(at, role.clone());
                } else {
                    return Ok(()); // already granted: etcd ignores it without a new revision
                }
            }
            AuthCommand::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                let entry = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                let at = entry.roles.binary_search(role).map_err(|_| AuthError::RoleNotGranted)?;
                entry.roles.remove(at);
            }
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
            }
            AuthCommand::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|role| role != name);
                }
            }
            AuthCommand::RoleGrantPermission { role, permission } => {
                if !valid_permission_range(&permission.key, &permission.range_end) {
                    return Err(AuthError::InvalidAuthManagement);
                }
                let entry = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let same = |held: &Permission| held.key == permission.key && held.range_end == permission.range_end;
                match entry.permissions.iter_mut().find(|held| same(held)) {
                    Some(held) => held.permission_type = permission.permission_type,
                    None => {
                        entry.permissions.push(permission.clone());
                        entry.permissions.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
            }
            AuthCommand::RoleRevokePermission { role, key, range_end } => {
                let entry = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let before = entry.permissions.len();
                entry.permissions.retain(|held| held.key != *key || held.range_end != *range_end);
                if entry.permissions.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        self.revision += 1;
        Ok(())
    }

    /// Whether `user` may administer auth, members and maintenance (etcd's IsAdminPermitted).
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|name| !name.is_empty()).ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(name).ok_or(AuthError::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` may `access` the keys `key` (`range_end` empty) or `[key, range_end)`
    /// (`"\0"`: every key from `key` on).
    pub fn check(&self, user: Option<&str>, key: &[u8], range_end: &[u8], access: Access) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|name| !name.is_empty()).ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(name).ok_or(AuthError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let mut granted: Vec<Interval> = user
            .roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .flat_map(|role| &role.permissions)
            .filter(|permission| permission.permission_type.allows(access))
            .map(|permission| Interval::of(&permission.key, &permission.range_end))
            .collect();
        if covers(&mut granted, &Interval::of(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `name` holds `role` (a user may read its own roles without being root).
    pub fn has_role(&self, name: &str, role: &str) -> bool {
        self.users.get(name).is_some_and(|user| user.roles.binary_search_by(|held| held.as_str().cmp(role)).is_ok())
    }

    /// The permissions `role get` shows: root's is everything.
    pub fn role_permissions(&self, role: &str) -> Option<Vec<Permission>> {
        let held = self.roles.get(role)?;
        if role == ROOT {
            return Some(vec![Permission {
                key: Bytes::new(),
                range_end: Bytes::from_static(b"\0"),
                permission_type: PermissionType::ReadWrite,
            }]);
        }
        Some(held.permissions.clone())
    }

    pub(crate) fn read(reader: &dyn Reader) -> Result<AuthState> {
        match meta::read_bytes(reader, AUTH_STATE)? {
            None => Ok(AuthState::default()),
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|error| Error::Corrupt { what: format!("auth state record: {error}") }),
        }
    }

    pub(crate) fn write(&self, pending: &mut PendingWrites) {
        let bytes = postcard::to_stdvec(self).expect("the auth state always encodes");
        pending.put(Space::Meta, AUTH_STATE.to_vec(), codec::seal(Space::Meta, AUTH_STATE, bytes));
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.binary_search_by(|role| role.as_str().cmp(ROOT)).is_ok()
}

/// etcd refuses a permission whose range is empty or reversed.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    range_end.is_empty() || range_end == b"\0" || key < range_end
}

/// A half-open key interval; `end: None` reaches past every key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            b"" => {
                let mut point = key.to_vec();
                point.push(0);
                Some(point)
            }
            b"\0" => None,
            end => Some(end.to_vec()),
        };
        Interval { start: key.to_vec(), end }
    }

    /// Whether `self` ends before `other` starts, leaving a gap.
    fn ends_before(&self, start: &[u8]) -> bool {
        self.end.as_deref().is_some_and(|end| end < start)
    }

    fn ends_at_or_after(&self, end: &Option<Vec<u8>>) -> bool {
        match (&self.end, end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => mine >= theirs,
        }
    }
}

/// Whether the union of `granted` covers all of `wanted`.
fn covers(granted: &mut [Interval], wanted: &Interval) -> bool {
    if wanted.end.as_deref().is_some_and(|end| end <= wanted.start.as_slice()) {
        return false; // an empty or reversed request range names no key to allow
    }
    granted.sort_by(|a, b| a.start.cmp(&b.start));
    // Extend a run of touching intervals from wanted.start as far as it goes.
    let mut reach: Option<Interval> = None;
    for interval in granted.iter() {
        match &mut reach {
            None => {
                let reaches_past_start = interval.end.as_deref().is_none_or(|end| end > wanted.start.as_slice());
                if interval.start.as_slice() <= wanted.start.as_slice() && reaches_past_start {
                    reach = Some(interval.clone());
                }
            }
            Some(run) => {
                if run.ends_before(&interval.start) {
                    break;
                }
                if !run.ends_at_or_after(&interval.end) {
                    run.end.clone_from(&interval.end);
                }
            }
        }
        if reach.as_ref().is_some_and(|run| run.ends_at_or_after(&wanted.end)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(key: &str, range_end: &str, permission_type: PermissionType) -> Permission {
        Permission { key: Bytes::from(key.to_string()), range_end: Bytes::from(range_end.to_string()), permission_type }
    }

    /// Auth enabled, with a root user and `alice` holding `role` with `permissions`.
    fn state_with(permissions: Vec<Permission>) -> AuthState {
        let mut state = AuthState::default();
        let commands = [
            AuthCommand::UserAdd { name: ROOT.into(), password_hash: Some("x".into()) },
            AuthCommand::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthCommand::UserAdd { name: "alice".into(), password_hash: Some("y".into()) },
            AuthCommand::RoleAdd { name: "role".into() },
            AuthCommand::UserGrantRole { user: "alice".into(), role: "role".into() },
            AuthCommand::Enable { token_key: vec![1; 32] },
        ];
        for command in &commands {
            state.apply(command).unwrap();
        }
        for permission in permissions {
            state.apply(&AuthCommand::RoleGrantPermission { role: "role".into(), permission }).unwrap();
        }
        state
    }

    #[test]
    fn enable_needs_a_root_user_holding_the_root_role() {
        let mut state = AuthState::default();
        let enable = AuthCommand::Enable { token_key: vec![7] };
        assert_eq!(state.apply(&enable), Err(AuthError::RootUserNotExist));
        state.apply(&AuthCommand::UserAdd { name: ROOT.into(), password_hash: Some("h".into()) }).unwrap();
        assert_eq!(state.apply(&enable), Err(AuthError::RootRoleNotExist));
        state.apply(&AuthCommand::UserGrantRole { user: ROOT.into(), role: ROOT.into() }).unwrap();
        state.apply(&enable).unwrap();
        assert!(state.enabled);
        assert_eq!(state.apply(&AuthCommand::UserDelete { name: ROOT.into() }), Err(AuthError::InvalidAuthManagement));
        let revoke = AuthCommand::UserRevokeRole { user: ROOT.into(), role: ROOT.into() };
        assert_eq!(state.apply(&revoke), Err(AuthError::InvalidAuthManagement));
    }

    #[test]
    fn management_errors_are_etcds() {
        let mut state = AuthState::default();
        let add = AuthCommand::UserAdd { name: "u".into(), password_hash: None };
        state.apply(&add).unwrap();
        assert_eq!(state.apply(&add), Err(AuthError::UserAlreadyExist));
        let grant = AuthCommand::UserGrantRole { user: "u".into(), role: "missing".into() };
        assert_eq!(state.apply(&grant), Err(AuthError::RoleNotFound));
        let revoke = AuthCommand::UserRevokeRole { user: "u".into(), role: "r".into() };
        assert_eq!(state.apply(&revoke), Err(AuthError::RoleNotGranted));
        state.apply(&AuthCommand::RoleAdd { name: "r".into() }).unwrap();
        let revoke_permission =
            AuthCommand::RoleRevokePermission { role: "r".into(), key: "a".into(), range_end: "".into() };
        assert_eq!(state.apply(&revoke_permission), Err(AuthError::PermissionNotGranted));
        let reversed = permission("b", "a", PermissionType::Read);
        let grant = AuthCommand::RoleGrantPermission { role: "r".into(), permission: reversed };
        assert_eq!(state.apply(&grant), Err(AuthError::InvalidAuthManagement));
        assert_eq!(state.apply(&AuthCommand::RoleAdd { name: String::new() }), Err(AuthError::RoleEmpty));
    }

    #[test]
    fn deleting_a_role_takes_it_from_every_user() {
        let mut state = state_with(vec![]);
        assert!(state.has_role("alice", "role"));
        let revision = state.revision;
        state.apply(&AuthCommand::RoleDelete { name: "role".into() }).unwrap();
        assert!(!state.has_role("alice", "role"));
        assert_eq!(state.revision, revision + 1);
    }

    #[test]
    fn permissions_cover_keys_ranges_and_open_ranges() {
        let state = state_with(vec![
            permission("a", "", PermissionType::Read),
            permission("b", "d", PermissionType::ReadWrite),
            permission("d", "f", PermissionType::Read),
            permission("x", "\0", PermissionType::Write),
        ]);
        let check = |key: &str, end: &str, access| state.check(Some("alice"), key.as_bytes(), end.as_bytes(), access);
        assert_eq!(check("a", "", Access::Read), Ok(()));
        assert_eq!(check("a", "", Access::Write), Err(AuthError::PermissionDenied));
        assert_eq!(check("a", "a\0", Access::Read), Ok(()));
        assert_eq!(check("a", "b", Access::Read), Err(AuthError::PermissionDenied), "a\\0..b is not granted");
        // [b, d) and [d, f) touch: their union covers [b, f) for reads, not for writes.
        assert_eq!(check("b", "f", Access::Read), Ok(()));
        assert_eq!(check("c", "e", Access::Write), Err(AuthError::PermissionDenied));
        assert_eq!(check("c", "", Access::Write), Ok(()));
        assert_eq!(check("b", "g", Access::Read), Err(AuthError::PermissionDenied));
        assert_eq!(check("z", "\0", Access::Write), Ok(()));
        assert_eq!(check("x", "\0", Access::Read), Err(AuthError::PermissionDenied));
        assert_eq!(check("\0", "\0", Access::Write), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn root_may_do_anything_and_no_user_nothing() {
        let state = state_with(vec![]);
        assert_eq!(state.check(Some(ROOT), b"\0", b"\0", Access::Write), Ok(()));
        assert_eq!(state.check(None, b"a", b"", Access::Read), Err(AuthError::UserEmpty));
        assert_eq!(state.check(Some("ghost"), b"a", b"", Access::Read), Err(AuthError::PermissionDenied));
        assert_eq!(state.check_admin(Some("alice")), Err(AuthError::PermissionDenied));
        assert_eq!(state.check_admin(Some("ghost")), Err(AuthError::UserNotFound));
        assert_eq!(state.check_admin(Some(ROOT)), Ok(()));
        assert_eq!(AuthState::default().check(None, b"a", b"", Access::Write), Ok(()), "auth disabled");
    }

    #[test]
    fn a_password_change_moves_the_password_revision() {
        let mut state = state_with(vec![]);
        let before = state.users["alice"].password_revision;
        let change = AuthCommand::UserChangePassword { name: "alice".into(), password_hash: Some("z".into()) };
        state.apply(&change).unwrap();
        assert!(state.users["alice"].password_revision > before);
        assert_eq!(state.users["alice"].password_hash.as_deref(), Some("z"));
    }
}
