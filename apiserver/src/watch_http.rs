//! WATCH over HTTP: newline-delimited JSON events (`{"type":"ADDED","object":{...}}`), read from
//! the watch cache's history by revision, each watch at its own pace.
//!
//! A watch starts (resourceVersion unset or "0", or sendInitialEvents=true) with an ADDED event
//! per existing object, or (resourceVersion N) with the events after N; one older than the
//! cache's history gets an in-stream ERROR event with a 410 Status, as kube-apiserver sends.
//! Bookmarks (allowWatchBookmarks) carry the cache's revision, which advances with every
//! applied revision, so idle watchers advance too.
//!
//! A client that negotiated protobuf gets the same events as length-prefixed protobuf frames
//! (`protobuf::watch_frame`), with Content-Type `application/vnd.kubernetes.protobuf;stream=watch`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cache::{CacheEvent, EventType, TooOld, WatchCache};
use crate::cached_object::CachedObject;
use crate::error::{Error, ObjectRef, Result};
use crate::http::{Output, Params};
use crate::registry::ResourceInfo;
use crate::selector::ObjectFilter;
use crate::state::{storage_error, ApiState};
use crate::{keys, list, protobuf, table};

/// Events read from the cache history per round.
const EVENTS_PER_ROUND: usize = 256;
/// Encoded events buffered per watch before it waits for the client.
const WATCH_BUFFER_EVENTS: usize = 64;
/// How often an idle watch with bookmarks gets one (kube-apiserver: about a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// A watch without timeoutSeconds ends after this, as kube-apiserver's `--min-request-timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What one watch asked for.
#[derive(Debug)]
struct WatchPlan {
    info: &'static ResourceInfo,
    prefix: Bytes,
    filter: ObjectFilter,
    output: Output,
    bookmarks: bool,
    timeout: Duration,
}

pub async fn watch(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    params: &Params,
    output: Output,
) -> Result<Response> {
    let filter = list::filter(info, params)?;
    let timeout =
        params.number("timeoutSeconds")?.map_or(DEFAULT_TIMEOUT, |seconds| Duration::from_secs(seconds.max(0) as u64));
    let plan = WatchPlan {
        info,
        prefix: keys::collection_prefix(info, namespace),
        filter,
        output,
        bookmarks: params.flag("allowWatchBookmarks"),
        timeout,
    };
    let cache = state.cache(info).clone();
    let requested =
        match params.get("resourceVersion") {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                Error::BadRequest(format!("resourceVersion: Invalid value: {text:?}: must be a number"))
            })?),
        };
    let send_initial = match params.get("sendInitialEvents") {
        Some(text) => text == "true",
        None => matches!(requested, None | Some(0)),
    };
    if send_initial && params.get("sendInitialEvents").is_some() && !plan.bookmarks {
        return Err(Error::Invalid {
            object: ObjectRef::new(info, ""),
            causes: vec![crate::error::Cause::invalid(
                "allowWatchBookmarks",
                "false",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            )],
        });
    }
    // A watch that starts with the current state reads it consistently, as a LIST does: from the
    // cache once it has reached the store's revision, or, over a feed that does not report
    // progress at every revision (etcd), from the store itself.
    let mut initial = None;
    if send_initial && requested.unwrap_or(0) == 0 && params.get("resourceVersion").is_none() {
        if state.storage.progress_at_every_revision() {
            let current = state
                .storage
                .current_revision()
                .await
                .map_err(|error| storage_error(ObjectRef::new(info, ""), error))?;
            cache.wait_for(current, state.cache_wait).await;
        } else {
            if !cache.wait_for(1, state.cache_wait).await {
                return Err(Error::Timeout(format!("the {} cache is not loaded yet; try again", info.plural)));
            }
            let page = list::from_storage(state, info, &plan.prefix, None, 0, &plan.filter, 0).await?;
            initial = Some((page.items, page.revision));
        }
    } else if !cache.wait_for(1, state.cache_wait).await {
        return Err(Error::Timeout(format!("the {} cache is not loaded yet; try again", info.plural)));
    }
    let (sender, receiver) = mpsc::channel::<Bytes>(WATCH_BUFFER_EVENTS);
    let initial_events = params.get("sendInitialEvents") == Some("true");
    let stopped = state.stopped();
    tokio::spawn(async move {
        tokio::select! {
            _ = run(cache, plan, requested, send_initial.then_some(initial), initial_events, sender) => {}
            _ = stopped => {}
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<Bytes, Infallible>(bytes), receiver))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let content_type = if output == Output::Protobuf { protobuf::WATCH_MEDIA_TYPE } else { "application/json" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The objects a watch starts with and the revision they were read at, when read from the store
/// rather than from the cache.
type InitialState = (Vec<Arc<CachedObject>>, i64);

/// Feeds one watch until its timeout, its client leaves, or it falls out of history.
/// `send_initial`: None to start after `requested`; Some(None) to start with the cache's
/// objects; Some(Some(state)) to start with objects read from the store.
async fn run(
    cache: Arc<WatchCache>,
    plan: WatchPlan,
    requested: Option<i64>,
    send_initial: Option<Option<InitialState>>,
    initial_end_bookmark: bool,
    sender: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + plan.timeout;
    let mut revisions = cache.subscribe();
    let mut position = match (requested, send_initial) {
        (Some(revision), None) if revision > 0 => revision,
        (_, initial) => {
            let (items, revision) = match initial.flatten() {
                Some(state) => state,
                None => {
                    let page = cache.list(&plan.prefix, None, &plan.filter, 0);
                    (page.items, page.revision)
                }
            };
            for object in &items {
                if sender.send(event_line(&plan, EventType::Added, object)).await.is_err() {
                    return;
                }
            }
            if initial_end_bookmark && sender.send(bookmark_line(&plan, revision, true)).await.is_err() {
                return;
            }
            revision
        }
    };
    let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
    loop {
        loop {
            match cache.events_after(position, EVENTS_PER_ROUND) {
                Err(TooOld { oldest }) => {
                    let _ = sender.send(too_old_line(&plan, position, oldest)).await;
                    return;
                }
                Ok((events, through)) => {
                    let count = events.len();
                    for event in events {
                        if let Some(line) = convert(&plan, &event) {
                            if sender.send(line).await.is_err() {
                                return;
                            }
                        }
                    }
                    position = position.max(through);
                    if count < EVENTS_PER_ROUND {
                        break;
                    }
                }
            }
        }
        tokio::select! {
            changed = revisions.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep_until(next_bookmark), if plan.bookmarks => {
                if sender.send(bookmark_line(&plan, position, false)).await.is_err() {
                    return;
                }
                next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
            }
            _ = sender.closed() => return,
        }
    }
}

/// The event this watch sees for a change, given its selectors: an object that starts matching
/// is ADDED, one that stops matching is DELETED.
fn convert(plan: &WatchPlan, event: &CacheEvent) -> Option<Bytes> {
    if !event.object.key.starts_with(&plan.prefix) {
        return None;
    }
    let now = plan.filter.matches(&event.object);
    let before = event.prev.as_ref().is_some_and(|prev| plan.filter.matches(prev));
    let kind = match event.kind {
        EventType::Deleted if before || (plan.filter.is_empty()) => EventType::Deleted,
        EventType::Deleted => return None,
        EventType::Added if now => EventType::Added,
        EventType::Modified if now && before => EventType::Modified,
        EventType::Modified if now => EventType::Added,
        EventType::Modified if before => EventType::Deleted,
        _ => return None,
    };
    Some(event_line(plan, kind, &event.object))
}

fn event_line(plan: &WatchPlan, kind: EventType, object: &CachedObject) -> Bytes {
    match plan.output {
        Output::Json => {
            let mut line = BytesMut::with_capacity(object.json.len() + 32);
            line.put_slice(b"{\"type\":\"");
            line.put_slice(kind.as_str().as_bytes());
            line.put_slice(b"\",\"object\":");
            line.put_slice(&object.json);
            line.put_slice(b"}\n");
            line.freeze()
        }
        Output::Protobuf => line(plan, kind.as_str(), &object.value()),
        Output::Metadata(_, version) => {
            line(plan, kind.as_str(), &crate::object::partial_metadata(&object.value(), version))
        }
        Output::Table(include, version) => {
            let metadata = json!({ "resourceVersion": object.revision.to_string() });
            let table = table::table(plan.info, &[object.value()], metadata, include, version);
            line(plan, kind.as_str(), &table)
        }
    }
}

fn bookmark_line(plan: &WatchPlan, revision: i64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": plan.info.kind, "apiVersion": plan.info.api_version(), "metadata": metadata });
    let object = match plan.output {
        Output::Metadata(_, version) => crate::object::partial_metadata(&object, version),
        _ => object,
    };
    line(plan, "BOOKMARK", &object)
}

fn too_old_line(plan: &WatchPlan, position: i64, oldest: i64) -> Bytes {
    let error = Error::Expired(format!("too old resource version: {position} ({oldest})"));
    line(plan, "ERROR", &error.status())
}

/// One event in the watch's format: a JSON line, or a protobuf frame. An object the protobuf
/// schema cannot carry becomes an ERROR event with the Status of why.
fn line(plan: &WatchPlan, kind: &str, object: &Value) -> Bytes {
    if plan.output == Output::Protobuf {
        return match protobuf::encode(object) {
            Ok(encoded) => protobuf::watch_frame(kind, &encoded),
            Err(error) => {
                tracing::warn!(%error, "a watch event could not be encoded as protobuf");
                let status = protobuf::encode(&error.status()).expect("a Status encodes");
                protobuf::watch_frame("ERROR", &status)
            }
        };
    }
    let mut text = serde_json::to_vec(&json!({ "type": kind, "object": object })).expect("a JSON value encodes");
    text.push(b'\n');
    Bytes::from(text)
}
