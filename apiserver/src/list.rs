//! GET of a collection (LIST) and of one object, served from the watch cache.
//!
//! resourceVersion semantics, as kube-apiserver's:
//! - unset: consistent. R = the store revision after a read barrier; wait until the cache has
//!   applied R; answer from memory. If the cache does not get there within
//!   [`crate::state::ApiState::cache_wait`], read the store at R instead. Over a storage whose
//!   feed does not report progress at every revision (etcd,
//!   [`crate::storage::Storage::progress_at_every_revision`]), the cache may never learn it has
//!   reached R: the LIST reads the store (a linearizable range), as kube-apiserver does when it
//!   cannot trust etcd's progress notifications.
//! - "0": whatever the cache holds now.
//! - N (NotOlderThan): wait until the cache reaches N, then answer from it. Over a feed without
//!   progress at every revision, wait only [`WAIT_WITHOUT_PROGRESS`], then read the store now
//!   (at least as new as N).
//! - N with resourceVersionMatch=Exact, and continue tokens: from the cache as it was at that
//!   revision while its event history covers it ([`crate::cache::WatchCache::list_at`]), else
//!   from store history at that revision (410 Expired once compacted).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::cache::WatchCache;
use crate::cached_object::CachedObject;
use crate::continue_token::ContinueToken;
use crate::error::{Error, ObjectRef, Result};
use crate::http::{self, Output, Params};
use crate::list_body::{FramesBody, ListBody, CHUNK_BYTES};
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector, ObjectFilter};
use crate::state::{storage_error, ApiState};
use crate::storage::StorageError;
use crate::{cache_feed, keys, object, protobuf, table, writer};

/// How long a LIST at resourceVersion N waits for a cache whose feed reports no progress at
/// every revision (it reaches N only if its resource changes at or after N) before it reads the
/// store instead.
pub const WAIT_WITHOUT_PROGRESS: std::time::Duration = std::time::Duration::from_millis(250);

/// A page read at one revision.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: i64,
    /// The last key served when more may follow.
    pub continue_after: Option<Bytes>,
}

pub fn filter(info: &ResourceInfo, params: &Params) -> Result<ObjectFilter> {
    Ok(ObjectFilter {
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or(""), info.selectable_fields)?,
    })
}

/// Waits until the cache has loaded (revision > 0) or times out.
async fn cache_ready(state: &ApiState, info: &ResourceInfo) -> Result<()> {
    if state.cache(info).wait_for(1, state.cache_wait).await {
        Ok(())
    } else {
        Err(Error::Timeout(format!("the {} cache is not loaded yet; try again", info.plural)))
    }
}

/// Serves a LIST page per the request's resourceVersion, limit and continue.
pub async fn page(state: &ApiState, info: &ResourceInfo, namespace: Option<&str>, params: &Params) -> Result<Page> {
    let filter = filter(info, params)?;
    let prefix = keys::collection_prefix(info, namespace);
    let limit = params.number("limit")?.unwrap_or(0).max(0) as usize;
    let cache = state.cache(info);
    if let Some(text) = params.get("continue") {
        let token = ContinueToken::decode(text)?;
        let after = Bytes::from(format!("{}{}", info.key_prefix(), token.after_key));
        if !after.starts_with(&prefix) {
            return Err(Error::BadRequest("continue key is not valid: it belongs to another collection".into()));
        }
        if servable_from_cache(state, cache, token.revision) {
            if let Some(page) = cache.list_at(&prefix, Some(&after), &filter, limit, token.revision) {
                return Ok(Page { items: page.items, revision: page.revision, continue_after: page.continue_after });
            }
        }
        return from_storage(state, info, &prefix, Some(after), token.revision, &filter, limit).await.map_err(
            |error| {
                match error {
            Error::Expired(_) => Error::Expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new \
                 list without the continue parameter."
                    .into(),
            ),
            other => other,
        }
            },
        );
    }
    let revision: Option<i64> =
        match params.get("resourceVersion") {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                Error::BadRequest(format!("resourceVersion: Invalid value: {text:?}: must be a number"))
            })?),
        };
    let exact = params.get("resourceVersionMatch") == Some("Exact");
    match revision {
        Some(0) => {
            cache_ready(state, info).await?;
        }
        Some(wanted) if exact => {
            if servable_from_cache(state, cache, wanted) {
                if let Some(page) = cache.list_at(&prefix, None, &filter, limit, wanted) {
                    return Ok(Page {
                        items: page.items,
                        revision: page.revision,
                        continue_after: page.continue_after,
                    });
                }
            }
            return from_storage(state, info, &prefix, None, wanted, &filter, limit).await;
        }
        Some(wanted) if !state.storage.progress_at_every_revision() => {
            if !cache.wait_for(wanted, WAIT_WITHOUT_PROGRESS).await {
                return from_storage(state, info, &prefix, None, 0, &filter, limit).await;
            }
        }
        Some(wanted) => {
            if !cache.wait_for(wanted, state.cache_wait).await {
                return Err(Error::Timeout(format!(
                    "Too large resource version: {wanted}, current: {}",
                    cache.revision()
                )));
            }
        }
        None if !state.storage.progress_at_every_revision() => {
            return from_storage(state, info, &prefix, None, 0, &filter, limit).await;
        }
        None => {
            let current = state
                .storage
                .current_revision()
                .await
                .map_err(|error| storage_error(ObjectRef::new(info, ""), error))?;
            if !cache.wait_for(current, state.cache_wait).await {
                tracing::warn!(resource = info.plural, current, "the cache is behind; listing from the store");
                return from_storage(state, info, &prefix, None, current, &filter, limit).await;
            }
        }
    }
    let page = cache.list(&prefix, None, &filter, limit);
    Ok(Page { items: page.items, revision: page.revision, continue_after: page.continue_after })
}

/// Whether the cache may answer a LIST at past `revision`: the store must not have compacted it
/// (a read there is 410 Expired, as over etcd). Where the compact revision is not known locally,
/// only the cache's current revision qualifies.
fn servable_from_cache(state: &ApiState, cache: &WatchCache, revision: i64) -> bool {
    match state.storage.known_compact_revision() {
        Some(compacted) => revision >= compacted,
        None => cache.revision() == revision,
    }
}

/// Reads a page from the store at `revision` (0: a linearizable read now, and the pages after
/// the first at the revision it was read at), filtering as it goes.
pub async fn from_storage(
    state: &ApiState,
    info: &ResourceInfo,
    prefix: &Bytes,
    after: Option<Bytes>,
    revision: i64,
    filter: &ObjectFilter,
    limit: usize,
) -> Result<Page> {
    let mut revision = revision;
    let end = keys::prefix_end(prefix);
    let mut from = match after {
        Some(after) => {
            let mut next = after.to_vec();
            next.push(0);
            Bytes::from(next)
        }
        None => prefix.clone(),
    };
    let mut items = Vec::new();
    loop {
        // Without a selector, read no more than the page needs (and one more key, to know whether
        // another page follows): a limit of 500 then costs one range of 501, not two of 500.
        let page_keys = if limit > 0 && filter.is_empty() {
            ((limit - items.len() + 1) as i64).min(cache_feed::LOAD_PAGE_KEYS)
        } else {
            cache_feed::LOAD_PAGE_KEYS
        };
        let page =
            state.storage.range(from.clone(), end.clone(), revision, page_keys).await.map_err(|error| match error {
                StorageError::Compacted { .. } => Error::Expired(format!("too old resource version: {revision}")),
                other => storage_error(ObjectRef::new(info, ""), other),
            })?;
        revision = page.revision;
        for kv in &page.kvs {
            let object =
                CachedObject::decode(info, kv.key.clone(), &kv.value, kv.mod_revision).map_err(Error::Internal)?;
            if !filter.matches(&object) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                let continue_after = items.last().map(|last: &Arc<CachedObject>| last.key.clone());
                return Ok(Page { items, revision, continue_after });
            }
            items.push(Arc::new(object));
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                let mut next = last.key.to_vec();
                next.push(0);
                from = Bytes::from(next);
            }
            _ => return Ok(Page { items, revision, continue_after: None }),
        }
    }
}

fn list_metadata(info: &ResourceInfo, page: &Page) -> Value {
    let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(last) = &page.continue_after {
        let relative = String::from_utf8_lossy(&last[info.key_prefix().len()..]).into_owned();
        metadata["continue"] = json!(ContinueToken { revision: page.revision, after_key: relative }.encode());
    }
    metadata
}

/// The LIST answer: the cached encodings streamed ([`ListBody`]), a protobuf list, or a Table.
pub async fn list(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    params: &Params,
    output: Output,
) -> Result<Response> {
    let page = page(state, info, namespace, params).await?;
    let metadata = list_metadata(info, &page);
    if let Output::Table(include, version) = output {
        // Streamed too: each object becomes its row as its frame is written.
        let head = serde_json::to_vec(&table::head(info, metadata, version)).expect("a JSON value encodes");
        let rows = Box::new(table::row_encoder(info, include, version));
        return Ok(json_stream(ListBody::encoded(&head, "rows", page.items, Some(rows))));
    }
    if let Output::Metadata(_, version) = output {
        let list =
            json!({ "kind": "PartialObjectMetadataList", "apiVersion": version.api_version(), "metadata": metadata });
        let head = serde_json::to_vec(&list).expect("a JSON value encodes");
        let partial = move |item: &CachedObject| {
            let partial = object::partial_metadata(&item.value(), version);
            Bytes::from(serde_json::to_vec(&partial).expect("a JSON value encodes"))
        };
        return Ok(json_stream(ListBody::encoded(&head, "items", page.items, Some(Box::new(partial)))));
    }
    if output == Output::Protobuf {
        // Each object is converted alone; the answer holds the list's protobuf bytes, not the
        // objects decoded.
        let list =
            json!({ "kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": metadata });
        let items = page.items.iter().map(|item| item.value());
        return Ok(match protobuf::encode_list(&list, items, CHUNK_BYTES) {
            Ok(frames) => http::protobuf_body_response(StatusCode::OK, Body::new(FramesBody::new(frames))),
            Err(error) => http::json_response(error.code(), &error.status()),
        });
    }
    let head = json!({ "kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": metadata });
    let head = serde_json::to_vec(&head).expect("a JSON value encodes");
    // Streamed: the objects' cached encodings are sent as they are, not copied into one body.
    Ok(json_stream(ListBody::new(&head, page.items)))
}

fn json_stream(body: ListBody) -> Response {
    let mut response = Response::new(Body::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// GET of one object: a linearizable read unless a resourceVersion lets the cache answer.
pub async fn get(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    params: &Params,
) -> Result<Value> {
    if params.get("resourceVersion").is_some() {
        cache_ready(state, info).await?;
        let key = keys::object_key(info, namespace, name);
        return state
            .cache(info)
            .get(&key)
            .map(|object| object.value())
            .ok_or_else(|| Error::NotFound(ObjectRef::new(info, name)));
    }
    let current = writer::current(state, info, namespace, name).await?;
    writer::decode(&current.value, current.mod_revision)
}

/// One object as JSON, protobuf or a one-row Table.
pub fn render_object(info: &ResourceInfo, object: Value, output: Output, code: StatusCode) -> Response {
    match output {
        Output::Json => http::json_response(code, &object),
        Output::Metadata(_, version) => http::json_response(code, &object::partial_metadata(&object, version)),
        Output::Protobuf => http::protobuf_response(code, &object),
        Output::Table(include, version) => {
            let metadata = json!({ "resourceVersion": object::resource_version(&object) });
            http::json_response(code, &table::table(info, &[object], metadata, include, version))
        }
    }
}
