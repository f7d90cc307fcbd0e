//! The apiserver's errors, each one a Kubernetes `Status` reason. `status.rs` turns them into
//! the `metav1.Status` body and HTTP code clients test for.

use crate::registry::ResourceInfo;

/// Which object an error is about, as `Status.details` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub group: &'static str,
    /// The resource's plural (`pods`): `details.kind` of NotFound, AlreadyExists and Conflict.
    pub plural: &'static str,
    /// The object's kind (`Pod`): `details.kind` of Invalid.
    pub kind: &'static str,
    pub name: String,
}

impl ObjectRef {
    pub fn new(info: &ResourceInfo, name: &str) -> ObjectRef {
        ObjectRef { group: info.group, plural: info.plural, kind: info.kind, name: name.to_string() }
    }

    /// `pods` or `deployments.apps`, as kube-apiserver's messages say it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

impl ObjectRef {
    /// `Pod` or `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// One field problem of an Invalid error (`Status.details.causes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: &str, value: &str, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    /// An invalid number: kube prints numbers bare (`Invalid value: -3: ...`), strings quoted.
    pub fn invalid_number(field: &str, value: i64, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> Cause {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired", field: field.to_string(), message }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(ObjectRef),
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(ObjectRef),
    #[error("Operation cannot be fulfilled on {} \"{}\": {detail}", .object.qualified(), .object.name)]
    Conflict { object: ObjectRef, detail: String },
    #[error("{} \"{}\" is invalid: {}", .object.qualified_kind(), .object.name, causes_text(.causes))]
    Invalid { object: ObjectRef, causes: Vec<Cause> },
    /// 409 Conflict of a server-side apply: fields other managers own (`FieldManagerConflict`
    /// causes).
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    /// 403: refused by a rule (a namespace being terminated, an immortal namespace), with causes.
    #[error("{}", forbidden_text(.object, .detail))]
    Forbidden { object: ObjectRef, detail: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 410 with reason Expired: a continue token or list revision past retained history.
    #[error("{0}")]
    Expired(String),
    /// 410 with reason Gone: a watch from a revision the cache no longer holds.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Internal(String),
}

/// kube-apiserver's `NewForbidden` message: `pods "x" is forbidden: ...`, without the name when
/// there is none (a create with generateName).
fn forbidden_text(object: &ObjectRef, detail: &str) -> String {
    if object.name.is_empty() {
        format!("{} is forbidden: {detail}", object.qualified())
    } else {
        format!("{} \"{}\" is forbidden: {detail}", object.qualified(), object.name)
    }
}

fn causes_text(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes.iter().map(|cause| format!("{}: {}", cause.field, cause.message)).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl Error {
    /// The object was changed since the client read it.
    pub fn modified(object: ObjectRef) -> Error {
        Error::Conflict {
            object,
            detail: "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
