//! `metav1.Status`: the body of every error answer, with the code and reason clients test for
//! (client-go's `errors.IsNotFound`, `IsConflict`, ... look at `reason` and `code`).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::error::Error;

impl Error {
    pub fn code(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::AlreadyExists(_) | Error::Conflict { .. } | Error::ApplyConflict { .. } => StatusCode::CONFLICT,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Expired(_) | Error::Gone(_) => StatusCode::GONE,
            Error::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `metav1.StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "NotFound",
            Error::AlreadyExists(_) => "AlreadyExists",
            Error::Conflict { .. } | Error::ApplyConflict { .. } => "Conflict",
            Error::Invalid { .. } => "Invalid",
            Error::Forbidden { .. } => "Forbidden",
            Error::BadRequest(_) => "BadRequest",
            Error::MethodNotAllowed(_) => "MethodNotAllowed",
            Error::Expired(_) => "Expired",
            Error::Gone(_) => "Gone",
            Error::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::NotAcceptable(_) => "NotAcceptable",
            Error::Timeout(_) => "Timeout",
            Error::ServiceUnavailable(_) => "ServiceUnavailable",
            Error::NotImplemented(_) => "NotImplemented",
            Error::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let details = match self {
            Error::NotFound(object) | Error::AlreadyExists(object) | Error::Conflict { object, .. } => {
                let mut details = json!({ "name": object.name, "kind": object.plural });
                if !object.group.is_empty() {
                    details["group"] = json!(object.group);
                }
                Some(details)
            }
            Error::Invalid { object, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|cause| json!({ "reason": cause.reason, "message": cause.message, "field": cause.field }))
                    .collect();
                let mut details = json!({ "name": object.name, "kind": object.kind, "causes": causes });
                if !object.group.is_empty() {
                    details["group"] = json!(object.group);
                }
                Some(details)
            }
            Error::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|cause| json!({ "reason": cause.reason, "message": cause.message, "field": cause.field }))
                    .collect();
                Some(json!({ "causes": causes }))
            }
            Error::Forbidden { object, causes, .. } => {
                let mut details = json!({ "name": object.name, "kind": object.plural });
                if !object.group.is_empty() {
                    details["group"] = json!(object.group);
                }
                if !causes.is_empty() {
                    details["causes"] = causes
                        .iter()
                        .map(|cause| json!({ "reason": cause.reason, "message": cause.message, "field": cause.field }))
                        .collect();
                }
                Some(details)
            }
            _ => None,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        if self.code().is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        crate::http::json_response(self.code(), &self.status())
    }
}

/// The `Status` a successful immediate delete answers with.
pub fn deleted(plural: &str, group: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "kind": plural, "uid": uid });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details })
}
