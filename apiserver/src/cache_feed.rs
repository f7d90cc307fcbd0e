//! Feeds a [`WatchCache`] from the storage's change feed: list the resource's key range at a
//! revision R, load it, then apply the feed from R + 1. When the feed stops (it fell behind
//! compaction, or the store went away), list again.
//!
//! States: `Listing ─(loaded at R)─► Following(R) ─(feed ended)─► Listing`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::WatchCache;
use crate::cached_object::CachedObject;
use crate::storage::{FeedItem, Storage};

/// Keys read per range request while loading the cache, so a load holds one page of raw values.
pub const LOAD_PAGE_KEYS: i64 = 500;
/// Pause before retrying after a failed list or feed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Runs until the storage's feed can no longer be opened for good (the server is stopping).
pub async fn run(cache: Arc<WatchCache>, storage: Arc<dyn Storage>) {
    let prefix = cache.info.key_prefix();
    let start = Bytes::from(prefix.clone());
    let end = Bytes::from(store::prefix_end(prefix.as_bytes()).expect("a registry prefix has an end"));
    loop {
        let revision = match load(&cache, storage.as_ref(), &start, &end).await {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(resource = cache.info.plural, %error, "loading the watch cache failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let mut feed = match storage.watch(start.clone(), end.clone(), revision + 1).await {
            Ok(feed) => feed,
            Err(error) => {
                tracing::warn!(resource = cache.info.plural, %error, "opening the change feed failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        while let Some(item) = feed.recv().await {
            match item {
                FeedItem::Changes { events, revision } => cache.apply(&events, revision),
                FeedItem::Compacted { compact_revision } => {
                    tracing::info!(
                        resource = cache.info.plural,
                        compact_revision,
                        "the feed fell behind compaction; listing again"
                    );
                    break;
                }
            }
        }
    }
}

/// Lists the whole range at one revision, page by page, and loads it. Returns the revision.
async fn load(cache: &WatchCache, storage: &dyn Storage, start: &Bytes, end: &Bytes) -> Result<i64, String> {
    let revision = storage.current_revision().await.map_err(|error| error.to_string())?;
    let mut objects = Vec::new();
    let mut from = start.clone();
    loop {
        let page = storage
            .range(from.clone(), end.clone(), revision, LOAD_PAGE_KEYS)
            .await
            .map_err(|error| error.to_string())?;
        for kv in &page.kvs {
            match CachedObject::decode(cache.info, kv.key.clone(), &kv.value, kv.mod_revision) {
                Ok(object) => objects.push(object),
                Err(error) => tracing::error!(%error, "skipping an undecodable object"),
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                let mut next = last.key.to_vec();
                next.push(0);
                from = Bytes::from(next);
            }
            _ => break,
        }
    }
    cache.reset(objects, revision);
    Ok(revision)
}
