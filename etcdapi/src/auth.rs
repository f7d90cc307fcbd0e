//! etcd's Auth service: users, roles, permissions, enable/disable, and Authenticate.
//!
//! Changes go through the log as `Command::Auth` on the caller's behalf (the store requires the
//! root role for them while auth is enabled); reads wait for a read barrier and answer from the
//! local replica. Passwords are hashed with bcrypt here, before proposing, as etcd 3.5 does, so
//! the log never carries a clear-text password.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use store::{AuthCommand, AuthError, Command, Permission, PermissionType, Response};
use tonic::{Request, Status};

use crate::access::{now_unix, Caller};
use crate::protos::authpb;
use crate::protos::etcdserverpb::auth_server::Auth;
use crate::protos::etcdserverpb::*;
use crate::{status, token, Context};

/// How long a token lasts, as etcd's `--auth-token-ttl` (default 300 s); and the bcrypt cost
/// (`--bcrypt-cost`, default 10).
#[derive(Debug, Clone, Copy)]
pub struct AuthOptions {
    pub token_ttl: Duration,
    pub bcrypt_cost: u32,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions { token_ttl: Duration::from_secs(300), bcrypt_cost: bcrypt::DEFAULT_COST }
    }
}

#[derive(Debug)]
pub struct AuthService {
    context: Arc<Context>,
}

impl AuthService {
    pub fn new(context: Arc<Context>) -> Self {
        AuthService { context }
    }

    /// Proposes `change` on behalf of the request's caller; answers the header revision.
    async fn change<T>(&self, request: &Request<T>, change: AuthCommand) -> Result<i64, Status> {
        let caller = self.context.caller(request.metadata())?;
        let command = caller.command(Command::Auth(change));
        let response = self.context.member.write(command).await.map_err(status::from_member)?;
        match response.map_err(status::from_store)? {
            Response::Auth { revision } => Ok(revision),
            other => Err(Status::internal(format!("an auth change answered {other:?}"))),
        }
    }

    /// The caller and the auth state after a read barrier, for the read-only calls.
    async fn read<T>(&self, request: &Request<T>) -> Result<(Caller, Arc<store::AuthState>), Status> {
        let caller = self.context.caller(request.metadata())?;
        self.context.member.read_barrier().await.map_err(status::from_member)?;
        Ok((caller, self.context.auth()))
    }

    fn header(&self) -> Option<etcd_client::proto::PbResponseHeader> {
        self.context.header(self.context.member.store().revision())
    }

    /// The bcrypt hash to store for a new password: the client's own hash (base64, etcd 3.5's
    /// `hashedPassword`) or one made here.
    async fn password_hash(&self, password: String, hashed: String) -> Result<String, Status> {
        if !hashed.is_empty() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(hashed)
                .map_err(|_| Status::invalid_argument("etcdserver: hashedPassword is not base64"))?;
            return String::from_utf8(bytes)
                .map_err(|_| Status::invalid_argument("etcdserver: invalid hashedPassword"));
        }
        let cost = self.context.auth_options.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|error| Status::internal(format!("hashing a password: {error}")))?
            .map_err(|error| Status::internal(format!("hashing a password: {error}")))
    }
}

fn permission_type(wire: i32) -> Result<PermissionType, Status> {
    match authpb::permission::Type::try_from(wire) {
        Ok(authpb::permission::Type::Read) => Ok(PermissionType::Read),
        Ok(authpb::permission::Type::Write) => Ok(PermissionType::Write),
        Ok(authpb::permission::Type::Readwrite) => Ok(PermissionType::ReadWrite),
        Err(_) => Err(status::from_auth(AuthError::InvalidAuthManagement)),
    }
}

fn to_wire(permission: Permission) -> authpb::Permission {
    let perm_type = match permission.permission_type {
        PermissionType::Read => authpb::permission::Type::Read,
        PermissionType::Write => authpb::permission::Type::Write,
        PermissionType::ReadWrite => authpb::permission::Type::Readwrite,
    };
    authpb::Permission {
        perm_type: perm_type as i32,
        key: permission.key.to_vec(),
        range_end: permission.range_end.to_vec(),
    }
}

fn random_token_key() -> Result<Vec<u8>, Status> {
    let mut key = vec![0; 32];
    getrandom::getrandom(&mut key)
        .map_err(|error| Status::internal(format!("no randomness for a token key: {error}")))?;
    Ok(key)
}

type Answer<T> = Result<tonic::Response<T>, Status>;

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Answer<AuthEnableResponse> {
        let revision = self.change(&request, AuthCommand::Enable { token_key: random_token_key()? }).await?;
        Ok(tonic::Response::new(AuthEnableResponse { header: self.context.header(revision) }))
    }

    async fn auth_disable(&self, request: Request<AuthDisableRequest>) -> Answer<AuthDisableResponse> {
        let revision = self.change(&request, AuthCommand::Disable).await?;
        Ok(tonic::Response::new(AuthDisableResponse { header: self.context.header(revision) }))
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Answer<AuthStatusResponse> {
        let (caller, auth) = self.read(&request).await?;
        caller.check_admin(&auth)?;
        Ok(tonic::Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: auth.enabled,
            auth_revision: auth.revision,
        }))
    }

    async fn authenticate(&self, request: Request<AuthenticateRequest>) -> Answer<AuthenticateResponse> {
        self.context.member.read_barrier().await.map_err(status::from_member)?;
        let AuthenticateRequest { name, password } = request.into_inner();
        let auth = self.context.auth();
        if !auth.enabled {
            return Err(status::from_auth(AuthError::AuthNotEnabled));
        }
        let failed = || status::from_auth(AuthError::AuthFailed);
        let user = auth.users.get(&name).ok_or_else(failed)?;
        let hash = user.password_hash.clone().ok_or_else(|| status::from_auth(AuthError::NoPasswordUser))?;
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(|error| Status::internal(format!("checking a password: {error}")))?
            .unwrap_or(false);
        if !matches {
            return Err(failed());
        }
        let claims = token::Claims {
            user: name,
            password_revision: user.password_revision,
            expires_unix: now_unix() + self.context.auth_options.token_ttl.as_secs(),
        };
        let token = token::issue(&auth.token_key, &claims);
        Ok(tonic::Response::new(AuthenticateResponse { header: self.header(), token }))
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        let body = request.get_ref().clone();
        if body.name.is_empty() {
            return Err(status::from_auth(AuthError::UserEmpty));
        }
        let no_password = body.options.is_some_and(|options| options.no_password);
        let password_hash =
            if no_password { None } else { Some(self.password_hash(body.password, body.hashed_password).await?) };
        let revision = self.change(&request, AuthCommand::UserAdd { name: body.name, password_hash }).await?;
        Ok(tonic::Response::new(AuthUserAddResponse { header: self.context.header(revision) }))
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        let (caller, auth) = self.read(&request).await?;
        let name = &request.get_ref().name;
        // Anyone may read their own roles; other users' need the root role.
        if caller.user.as_deref() != Some(name.as_str()) {
            caller.check_admin(&auth)?;
        }
        let user = auth.users.get(name).ok_or_else(|| status::from_auth(AuthError::UserNotFound))?;
        Ok(tonic::Response::new(AuthUserGetResponse { header: self.header(), roles: user.roles.clone() }))
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Answer<AuthUserListResponse> {
        let (caller, auth) = self.read(&request).await?;
        caller.check_admin(&auth)?;
        let users = auth.users.keys().cloned().collect();
        Ok(tonic::Response::new(AuthUserListResponse { header: self.header(), users }))
    }

    async fn user_delete(&self, request: Request<AuthUserDeleteRequest>) -> Answer<AuthUserDeleteResponse> {
        let name = request.get_ref().name.clone();
        let revision = self.change(&request, AuthCommand::UserDelete { name }).await?;
        Ok(tonic::Response::new(AuthUserDeleteResponse { header: self.context.header(revision) }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        let body = request.get_ref().clone();
        let password_hash = Some(self.password_hash(body.password, body.hashed_password).await?);
        let revision =
            self.change(&request, AuthCommand::UserChangePassword { name: body.name, password_hash }).await?;
        Ok(tonic::Response::new(AuthUserChangePasswordResponse { header: self.context.header(revision) }))
    }

    async fn user_grant_role(&self, request: Request<AuthUserGrantRoleRequest>) -> Answer<AuthUserGrantRoleResponse> {
        let AuthUserGrantRoleRequest { user, role } = request.get_ref().clone();
        let revision = self.change(&request, AuthCommand::UserGrantRole { user, role }).await?;
        Ok(tonic::Response::new(AuthUserGrantRoleResponse { header: self.context.header(revision) }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        let AuthUserRevokeRoleRequest { name, role } = request.get_ref().clone();
        let revision = self.change(&request, AuthCommand::UserRevokeRole { user: name, role }).await?;
        Ok(tonic::Response::new(AuthUserRevokeRoleResponse { header: self.context.header(revision) }))
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        let name = request.get_ref().name.clone();
        let revision = self.change(&request, AuthCommand::RoleAdd { name }).await?;
        Ok(tonic::Response::new(AuthRoleAddResponse { header: self.context.header(revision) }))
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        let (caller, auth) = self.read(&request).await?;
        let role = &request.get_ref().role;
        // Anyone may read a role they hold; other roles need the root role.
        if !caller.user.as_deref().is_some_and(|user| auth.has_role(user, role)) {
            caller.check_admin(&auth)?;
        }
        let permissions = auth.role_permissions(role).ok_or_else(|| status::from_auth(AuthError::RoleNotFound))?;
        let perm = permissions.into_iter().map(to_wire).collect();
        Ok(tonic::Response::new(AuthRoleGetResponse { header: self.header(), perm }))
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Answer<AuthRoleListResponse> {
        let (caller, auth) = self.read(&request).await?;
        caller.check_admin(&auth)?;
        let roles = auth.roles.keys().cloned().collect();
        Ok(tonic::Response::new(AuthRoleListResponse { header: self.header(), roles }))
    }

    async fn role_delete(&self, request: Request<AuthRoleDeleteRequest>) -> Answer<AuthRoleDeleteResponse> {
        let name = request.get_ref().role.clone();
        let revision = self.change(&request, AuthCommand::RoleDelete { name }).await?;
        Ok(tonic::Response::new(AuthRoleDeleteResponse { header: self.context.header(revision) }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        let body = request.get_ref().clone();
        let perm = body.perm.ok_or_else(|| status::from_auth(AuthError::PermissionNotGiven))?;
        let permission = Permission {
            key: perm.key.into(),
            range_end: perm.range_end.into(),
            permission_type: permission_type(perm.perm_type)?,
        };
        let revision = self.change(&request, AuthCommand::RoleGrantPermission { role: body.name, permission }).await?;
        Ok(tonic::Response::new(AuthRoleGrantPermissionResponse { header: self.context.header(revision) }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        let body = request.get_ref().clone();
        let change = AuthCommand::RoleRevokePermission {
            role: body.role,
            key: body.key.into(),
            range_end: body.range_end.into(),
        };
        let revision = self.change(&request, change).await?;
        Ok(tonic::Response::new(AuthRoleRevokePermissionResponse { header: self.context.header(revision) }))
    }
}
