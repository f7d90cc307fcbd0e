//! The controllers' errors. Most are API errors a control loop retries with backoff; the helpers
//! here say which answers mean "already done" (404) or "lost a race, read again" (409).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An ownerReference or object names an apiVersion and kind discovery does not know.
    #[error("no served resource has apiVersion {api_version} and kind {kind}")]
    UnknownKind { api_version: String, kind: String },
    /// A cluster-scoped object names a namespaced owner: not valid, and retrying will not fix it.
    #[error("{dependent} is cluster-scoped but names a namespaced owner ({api_version} {kind})")]
    NamespacedOwnerOfClusterScoped { dependent: String, api_version: String, kind: String },
    /// A read-modify-write kept losing races.
    #[error("{0}: still conflicting after retries")]
    Conflicts(String),
    /// Objects remain in a namespace being deleted; look again after the estimate.
    #[error("namespace {namespace}: content remains, checking again in {estimate:?}")]
    ContentRemains { namespace: String, estimate: Duration },
    #[error("namespace {namespace}: {message}")]
    ContentDeletion { namespace: String, message: String },
    #[error("client configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The HTTP code of an API error answer, if the error is one.
pub fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub fn is_not_found(error: &kube::Error) -> bool {
    api_code(error) == Some(404)
}

pub fn is_conflict(error: &kube::Error) -> bool {
    api_code(error) == Some(409)
}
