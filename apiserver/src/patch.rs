//! PATCH: the patch types by Content-Type, applied to the current object inside a
//! read-modify-write (so a concurrent write means a retry, not a lost update).

use axum::http::HeaderMap;
use serde_json::Value;

use crate::error::{Cause, Error, ObjectRef, Result};
use crate::http::Params;
use crate::{json_patch, strategic_merge};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply (`apply.rs`).
    Apply,
}

/// The patch type of a PATCH, with kube's checks of its options (`ValidatePatchOptions`): an
/// apply names its field manager; only an apply may be forced.
pub fn patch_type(headers: &HeaderMap, params: &Params) -> Result<PatchType> {
    let patch_type = content_patch_type(headers)?;
    let invalid = |cause: Cause| Error::Invalid {
        object: ObjectRef { group: "meta.k8s.io", plural: "", kind: "PatchOptions", name: String::new() },
        causes: vec![cause],
    };
    if patch_type == PatchType::Apply && params.get("fieldManager").is_none() {
        return Err(invalid(Cause::required("fieldManager", "is required for apply patch")));
    }
    if patch_type != PatchType::Apply && params.get("force").is_some() {
        return Err(invalid(Cause {
            reason: "FieldValueForbidden",
            field: "force".into(),
            message: "Forbidden: may not be specified for non-apply patch".into(),
        }));
    }
    Ok(patch_type)
}

fn content_patch_type(headers: &HeaderMap) -> Result<PatchType> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    match content_type {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        "application/apply-patch+cbor" => Err(Error::UnsupportedMediaType(
            "keel does not decode CBOR: send server-side apply as application/apply-patch+yaml".into(),
        )),
        other => Err(Error::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, \
             application/apply-patch+yaml (got {other:?})"
        ))),
    }
}

/// The patched object (server-side apply is `apply.rs`'s; keel does not apply to `/scale`).
pub fn apply(patch_type: PatchType, current: &Value, patch: &[u8]) -> Result<Value> {
    if patch_type == PatchType::Apply {
        return Err(Error::UnsupportedMediaType(
            "server-side apply to the scale subresource is not supported by keel yet: apply spec.replicas to the object"
                .into(),
        ));
    }
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|error| Error::BadRequest(format!("the patch could not be decoded as JSON: {error}")))?;
    match patch_type {
        PatchType::Json => json_patch::apply(current, &patch),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(Error::BadRequest("a merge patch must be a JSON object".into()));
            }
            let mut patched = current.clone();
            json_patch::merge(&mut patched, &patch);
            Ok(patched)
        }
        PatchType::StrategicMerge => strategic_merge::apply(current, &patch),
        PatchType::Apply => unreachable!("handled above"),
    }
}
