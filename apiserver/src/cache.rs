//! [`WatchCache`]: one resource's objects and recent events, in memory, current up to a known
//! store revision, fed in process by the local replica's change feed (`cache_feed.rs`).
//!
//! It answers consistent LISTs without a range read: the handler takes R = the store revision
//! after a read barrier, waits until [`WatchCache::revision`] ≥ R (the feed reports progress at
//! every applied revision, events or not), then lists from memory. Watches read the event
//! history by revision, each at its own pace; none of them can slow the feed.
//!
//! Worked example, history bound 3:
//!
//! ```text
//! reset(objects at 10)          oldest = 10, history = []            revision 10
//! apply(put a @11, put b @12)   history = [a@11, b@12]               revision 12
//! apply(progress @15)           (another resource changed)           revision 15
//! apply(del a @16, put c @17)   history = [b@12, a@16, c@17]         oldest = 11, revision 17
//! events_after(11) → [b@12, a@16, c@17]; events_after(10) → TooOld (a@11 was dropped)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use store::EventKind;

use crate::cache_handoff::Handoff;
use crate::cached_object::CachedObject;
use crate::registry::ResourceInfo;
use crate::selector::ObjectFilter;

/// How much event history each resource's cache keeps for watches that resume from a
/// resourceVersion: at most `events` events, and at most `bytes` of the objects they carry, so a
/// resource of large objects (1 MiB ConfigMaps) keeps fewer events rather than gigabytes. The
/// newest event is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBound {
    pub events: usize,
    pub bytes: usize,
}

impl Default for HistoryBound {
    fn default() -> HistoryBound {
        HistoryBound { events: 10_000, bytes: 64 << 20 }
    }
}

impl HistoryBound {
    pub fn events(events: usize) -> HistoryBound {
        HistoryBound { events, ..HistoryBound::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    pub revision: i64,
    pub kind: EventType,
    /// The new object; for a delete, the last version stamped with the delete's revision.
    pub object: Arc<CachedObject>,
    /// The version before the change, for selectors: an object that leaves a watcher's selection
    /// is a DELETED to it, one that enters it is ADDED.
    pub prev: Option<Arc<CachedObject>>,
}

/// A watch asked for events the history no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub oldest: i64,
}

/// One page of a LIST served from memory.
#[derive(Debug)]
pub struct CachePage {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: i64,
    /// The key of the last item when more matching items follow.
    pub continue_after: Option<Bytes>,
}

#[derive(Debug, Default)]
struct CacheState {
    objects: BTreeMap<Bytes, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// The JSON bytes of the objects `history`'s events carry.
    history_bytes: usize,
    /// Every event with a revision above this one is in `history`.
    oldest: i64,
    revision: i64,
}

#[derive(Debug)]
pub struct WatchCache {
    pub info: &'static ResourceInfo,
    state: RwLock<CacheState>,
    /// The revision the cache is current to; 0 until the first list is loaded.
    revision: tokio::sync::watch::Sender<i64>,
    history_bound: HistoryBound,
    /// Objects this server's writers are about to store, prepared for [`WatchCache::apply`].
    pub handoff: Handoff,
}

impl WatchCache {
    pub fn new(info: &'static ResourceInfo, history_bound: HistoryBound) -> WatchCache {
        let (revision, _) = tokio::sync::watch::channel(0);
        WatchCache {
            info,
            state: RwLock::new(CacheState::default()),
            revision,
            history_bound,
            handoff: Handoff::default(),
        }
    }

    /// Replaces everything with a fresh list at `revision` (the start, or a re-list after the
    /// feed fell behind compaction). Watches positioned before it will get 410 Gone.
    pub fn reset(&self, objects: Vec<CachedObject>, revision: i64) {
        let mut state = self.state.write().expect("cache lock");
        state.objects = objects.into_iter().map(|object| (object.key.clone(), Arc::new(object))).collect();
        state.history.clear();
        state.history_bytes = 0;
        state.oldest = revision;
        state.revision = revision;
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Applies the feed's events, then records that the cache is current up to `revision`.
    pub fn apply(&self, events: &[store::Event], revision: i64) {
        let mut state = self.state.write().expect("cache lock");
        for event in events {
            let Some(change) = self.decode(&state, event) else { continue };
            if change.revision <= state.revision {
                continue;
            }
            match change.kind {
                EventType::Deleted => state.objects.remove(&change.object.key),
                _ => state.objects.insert(change.object.key.clone(), change.object.clone()),
            };
            state.history_bytes += change.object.json.len();
            state.history.push_back(Arc::new(change));
            let bound = self.history_bound;
            while state.history.len() > 1 && (state.history.len() > bound.events || state.history_bytes > bound.bytes) {
                let dropped = state.history.pop_front().expect("history is not empty");
                state.history_bytes -= dropped.object.json.len();
                state.oldest = dropped.revision;
            }
        }
        // Events of one revision are applied together, so the cache never claims a revision
        // of which it has seen only part.
        let last_event_revision = events.last().map_or(0, |event| event.kv.mod_revision);
        let current = revision.max(last_event_revision);
        if current > state.revision {
            state.revision = current;
        }
        let current = state.revision;
        drop(state);
        self.revision.send_if_modified(|published| {
            let changed = *published != current;
            *published = current;
            changed
        });
    }

    fn decode(&self, state: &CacheState, event: &store::Event) -> Option<CacheEvent> {
        let revision = event.kv.mod_revision;
        let prev = event.prev_kv.as_ref().and_then(|prev| {
            // Usually the version the cache holds: no need to decode it again.
            if let Some(held) = state.objects.get(&prev.key).filter(|held| held.revision == prev.mod_revision) {
                return Some(held.clone());
            }
            CachedObject::decode(self.info, prev.key.clone(), &prev.value, prev.mod_revision)
                .map_err(|error| tracing::error!(%error, "skipping an undecodable previous version"))
                .ok()
                .map(Arc::new)
        });
        let prev = prev.or_else(|| state.objects.get(&event.kv.key).cloned());
        let (kind, object) = match event.kind {
            EventKind::Put => {
                let prepared = self.handoff.take(&event.kv.key, &event.kv.value, revision);
                let object = match prepared {
                    Some(object) => object,
                    None => CachedObject::decode(self.info, event.kv.key.clone(), &event.kv.value, revision)
                        .map_err(|error| tracing::error!(%error, "skipping an undecodable object"))
                        .ok()?,
                };
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                (kind, Arc::new(object))
            }
            EventKind::Delete => {
                let last = prev.as_ref()?;
                (EventType::Deleted, Arc::new(last.deleted_at(self.info, revision)))
            }
        };
        Some(CacheEvent { revision, kind, object, prev })
    }

    /// The revision the cache is current to.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the cache is current to `revision`; false on timeout.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> bool {
        let mut receiver = self.revision.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|current| *current >= revision))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// A receiver that changes whenever the cache's revision does.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// Up to `limit` (0: all) objects under `prefix` after key `after`, that `filter` selects.
    pub fn list(&self, prefix: &[u8], after: Option<&[u8]>, filter: &ObjectFilter, limit: usize) -> CachePage {
        let state = self.state.read().expect("cache lock");
        page_at(&state, prefix, after, filter, limit, state.revision)
    }

    /// Like [`WatchCache::list`], but as the objects were at `revision`, which the event history
    /// must still cover (None otherwise): the current objects, with every key changed since
    /// `revision` taken back to the version its first later event replaced. This serves a
    /// paginated LIST's later pages from memory while writes go on, instead of reading and
    /// decoding them again from store history.
    pub fn list_at(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        filter: &ObjectFilter,
        limit: usize,
        revision: i64,
    ) -> Option<CachePage> {
        let state = self.state.read().expect("cache lock");
        if revision < state.oldest || revision > state.revision {
            return None;
        }
        Some(page_at(&state, prefix, after, filter, limit, revision))
    }

    /// The events after `revision`, at most `max`, with the cache's revision.
    pub fn events_after(&self, revision: i64, max: usize) -> Result<(Vec<Arc<CacheEvent>>, i64), TooOld> {
        let state = self.state.read().expect("cache lock");
        if revision < state.oldest {
            return Err(TooOld { oldest: state.oldest });
        }
        // History is in revision order: skip to the first event after `revision`.
        let first = state.history.partition_point(|event| event.revision <= revision);
        let events: Vec<_> = state.history.iter().skip(first).take(max).cloned().collect();
        let through = if events.len() == max {
            events.last().map_or(state.revision, |event| event.revision)
        } else {
            state.revision
        };
        Ok((events, through))
    }

    /// The current version of one object, if cached.
    pub fn get(&self, key: &[u8]) -> Option<Arc<CachedObject>> {
        self.state.read().expect("cache lock").objects.get(key).cloned()
    }
}

/// A page as the objects were at `revision`, which `state`'s history covers (at its current
/// revision, the history adds nothing).
fn page_at(
    state: &CacheState,
    prefix: &[u8],
    after: Option<&[u8]>,
    filter: &ObjectFilter,
    limit: usize,
    revision: i64,
) -> CachePage {
    let in_range = |key: &[u8]| key.starts_with(prefix) && after.is_none_or(|after| key > after);
    // Keys changed after `revision` → their version at `revision` (None: absent then).
    let mut then: BTreeMap<&Bytes, Option<&Arc<CachedObject>>> = BTreeMap::new();
    let first = state.history.partition_point(|event| event.revision <= revision);
    for event in state.history.range(first..) {
        if in_range(&event.object.key) {
            then.entry(&event.object.key).or_insert(event.prev.as_ref());
        }
    }
    let start = match after {
        Some(after) => std::ops::Bound::Excluded(Bytes::copy_from_slice(after)),
        None => std::ops::Bound::Included(Bytes::copy_from_slice(prefix)),
    };
    let now = state
        .objects
        .range((start, std::ops::Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix))
        .filter(|(key, _)| !then.contains_key(key));
    let changed = then.iter().filter_map(|(key, object)| object.map(|object| (*key, object)));
    let mut items = Vec::new();
    let mut continue_after = None;
    for (_, object) in merge_by_key(now, changed) {
        if !filter.matches(object) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            continue_after = items.last().map(|last: &Arc<CachedObject>| last.key.clone());
            break;
        }
        items.push(object.clone());
    }
    CachePage { items, revision, continue_after }
}

/// Two iterators sorted by distinct keys, merged into one sorted by key.
fn merge_by_key<'a, T: 'a>(
    left: impl Iterator<Item = (&'a Bytes, T)>,
    right: impl Iterator<Item = (&'a Bytes, T)>,
) -> impl Iterator<Item = (&'a Bytes, T)> {
    let (mut left, mut right) = (left.peekable(), right.peekable());
    std::iter::from_fn(move || match (left.peek(), right.peek()) {
        (Some((left_key, _)), Some((right_key, _))) if right_key < left_key => right.next(),
        (Some(_), _) => left.next(),
        (None, _) => right.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use store::{Event, KeyValue};

    fn configmaps() -> &'static ResourceInfo {
        registry::find("", "v1", "configmaps").unwrap()
    }

    fn put(name: &str, revision: i64, created: i64, prev: Option<i64>) -> Event {
        let key = Bytes::from(format!("/registry/configmaps/default/{name}"));
        let value = Bytes::from(format!(r#"{{"metadata":{{"name":"{name}","namespace":"default"}}}}"#));
        let prev_kv = prev.map(|mod_revision| KeyValue {
            key: key.clone(),
            value: value.clone(),
            create_revision: created,
            mod_revision,
            version: 1,
            lease: 0,
        });
        Event {
            kind: EventKind::Put,
            kv: KeyValue { key, value, create_revision: created, mod_revision: revision, version: 1, lease: 0 },
            prev_kv,
            sub_revision: 0,
        }
    }

    #[test]
    fn history_is_bounded_and_too_old_is_reported() {
        let cache = WatchCache::new(configmaps(), HistoryBound::events(3));
        cache.reset(Vec::new(), 10);
        cache.apply(&[put("a", 11, 11, None), put("b", 12, 12, None)], 12);
        cache.apply(&[], 15);
        assert_eq!(cache.revision(), 15);
        let mut delete = put("a", 16, 0, Some(11));
        delete.kind = EventKind::Delete;
        cache.apply(&[delete, put("c", 17, 17, None)], 17);
        let (events, through) = cache.events_after(11, 100).unwrap();
        let kinds: Vec<_> = events.iter().map(|event| (event.object.name().to_string(), event.kind)).collect();
        assert_eq!(
            kinds,
            vec![("b".into(), EventType::Added), ("a".into(), EventType::Deleted), ("c".into(), EventType::Added)]
        );
        assert_eq!(through, 17);
        assert_eq!(events[1].object.revision, 16, "a deleted object carries the delete's revision");
        assert_eq!(cache.events_after(10, 100).unwrap_err(), TooOld { oldest: 11 });
    }

    #[test]
    fn history_is_bounded_by_the_bytes_of_its_objects() {
        let first = put("a", 2, 2, None);
        let object_bytes =
            CachedObject::decode(configmaps(), first.kv.key.clone(), &first.kv.value, 2).unwrap().json.len();
        // Room for two objects' bytes, not three, under an event bound of 100.
        let cache = WatchCache::new(configmaps(), HistoryBound { events: 100, bytes: object_bytes * 5 / 2 });
        cache.reset(Vec::new(), 1);
        cache.apply(&[first, put("b", 3, 3, None)], 3);
        assert_eq!(cache.events_after(1, 100).unwrap().0.len(), 2, "both fit");
        cache.apply(&[put("c", 4, 4, None)], 4);
        let (events, _) = cache.events_after(2, 100).unwrap();
        let names: Vec<_> = events.iter().map(|event| event.object.name().to_string()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(cache.events_after(1, 100).unwrap_err(), TooOld { oldest: 2 });
        // An object larger than the whole bound is still kept, alone.
        let tiny = WatchCache::new(configmaps(), HistoryBound { events: 100, bytes: 1 });
        tiny.reset(Vec::new(), 1);
        tiny.apply(&[put("a", 2, 2, None), put("b", 3, 3, None)], 3);
        assert_eq!(tiny.events_after(2, 100).unwrap().0.len(), 1);
        assert_eq!(tiny.events_after(1, 100).unwrap_err(), TooOld { oldest: 2 });
    }

    fn names(page: &CachePage) -> Vec<(String, i64)> {
        page.items.iter().map(|item| (item.name().to_string(), item.revision)).collect()
    }

    #[test]
    fn list_at_a_past_revision_undoes_the_later_events() {
        let cache = WatchCache::new(configmaps(), HistoryBound::events(100));
        cache.reset(Vec::new(), 1);
        cache.apply(&[put("a", 2, 2, None), put("b", 3, 3, None), put("d", 4, 4, None)], 4);
        // After revision 4: b modified twice, c created, d deleted, e created.
        let mut delete_d = put("d", 7, 4, Some(4));
        delete_d.kind = EventKind::Delete;
        cache.apply(&[put("b", 5, 3, Some(3)), put("c", 6, 6, None), delete_d, put("b", 8, 3, Some(5))], 8);
        cache.apply(&[put("e", 9, 9, None)], 9);
        let prefix = b"/registry/configmaps/";
        let all = ObjectFilter::default();

        let then = cache.list_at(prefix, None, &all, 0, 4).unwrap();
        assert_eq!(names(&then), [("a".into(), 2), ("b".into(), 3), ("d".into(), 4)]);
        assert_eq!(then.revision, 4);
        let json: serde_json::Value = serde_json::from_slice(&then.items[1].json).unwrap();
        assert_eq!(json["metadata"]["resourceVersion"], "3", "b as it was at 4");

        // Paged at 6, resuming after a key that changed since.
        let first = cache.list_at(prefix, None, &all, 2, 6).unwrap();
        assert_eq!(names(&first), [("a".into(), 2), ("b".into(), 5)]);
        let after = first.continue_after.unwrap();
        let second = cache.list_at(prefix, Some(&after), &all, 2, 6).unwrap();
        assert_eq!(names(&second), [("c".into(), 6), ("d".into(), 4)]);
        assert!(second.continue_after.is_none(), "e did not exist at 6");

        let now = cache.list_at(prefix, None, &all, 0, 9).unwrap();
        assert_eq!(names(&now), names(&cache.list(prefix, None, &all, 0)));
        assert!(cache.list_at(prefix, None, &all, 0, 10).is_none(), "the cache has not reached 10");
        assert!(cache.list_at(prefix, None, &all, 0, 0).is_none(), "before the cache's list");
    }

    #[test]
    fn list_at_needs_the_history_back_to_its_revision() {
        let cache = WatchCache::new(configmaps(), HistoryBound::events(2));
        cache.reset(Vec::new(), 1);
        cache.apply(&[put("a", 2, 2, None), put("b", 3, 3, None), put("c", 4, 4, None)], 4);
        let all = ObjectFilter::default();
        // a@2 was dropped from the history, so 2 is the oldest revision it can take back to.
        assert!(cache.list_at(b"/registry/configmaps/", None, &all, 0, 1).is_none());
        let page = cache.list_at(b"/registry/configmaps/", None, &all, 0, 2).unwrap();
        assert_eq!(names(&page), [("a".into(), 2)]);
    }

    #[test]
    fn list_pages_by_key() {
        let cache = WatchCache::new(configmaps(), HistoryBound::events(100));
        cache.reset(Vec::new(), 1);
        cache.apply(&[put("a", 2, 2, None), put("b", 3, 3, None), put("c", 4, 4, None)], 4);
        let filter = ObjectFilter::default();
        let first = cache.list(b"/registry/configmaps/", None, &filter, 2);
        assert_eq!(first.items.len(), 2);
        let after = first.continue_after.unwrap();
        let second = cache.list(b"/registry/configmaps/", Some(&after), &filter, 2);
        assert_eq!(second.items.len(), 1);
        assert!(second.continue_after.is_none());
        assert_eq!(second.items[0].revision, 4);
        let json: serde_json::Value = serde_json::from_slice(&second.items[0].json).unwrap();
        assert_eq!(json["metadata"]["resourceVersion"], "4");
    }
}
