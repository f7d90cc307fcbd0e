//! PATCH: the patch types by Content-Type, applied to the current object inside a
//! read-modify-write (so a concurrent write means a retry, not a lost update).

use axum::http::HeaderMap;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::{json_patch, strategic_merge};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

pub fn patch_type(headers: &HeaderMap) -> Result<PatchType> {
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
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(Error::UnsupportedMediaType(
            "server-side apply (application/apply-patch+yaml) is not implemented yet by keel; use client-side apply"
                .into(),
        )),
        other => Err(Error::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json \
             (got {other:?})"
        ))),
    }
}

/// The patched object.
pub fn apply(patch_type: PatchType, current: &Value, patch: &[u8]) -> Result<Value> {
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
    }
}
