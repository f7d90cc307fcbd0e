//! [`WatchHub`]: every watcher, split into *synced* ones (fed straight from `publish`) and
//! *unsynced* ones (fed from store history by the catch-up thread).
//!
//! Transitions of one watcher, all made under the hub lock:
//!
//! ```text
//!  create(start = 0 or future) ─► synced ──(stream channel full)──► unsynced
//!  create(start ≤ published) ──────────────────────────────────────► unsynced
//!  unsynced ──(caught up to the published revision)──► synced
//!  unsynced ──(its next revision was compacted)──► cancelled
//! ```
//!
//! `next_revision` is the first revision the watcher has not been sent yet. Publishing revision
//! R skips watchers whose `next_revision` is above R, so a watcher that caught up from history
//! past what was published never sees a revision twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use store::{Change, Event, EventKind, KeyValue, Store};
use tokio::sync::mpsc;

use crate::request::WatchRequest;
use crate::response::{ResponseBody, WatchId, WatchResponse, PROGRESS_WATCH_ID};

/// Bounds of the hub.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Responses a stream's channel holds before its watchers are moved aside.
    pub stream_buffer_responses: usize,
    /// Events read from history per catch-up round.
    pub catch_up_events_max: usize,
    /// How soon the catch-up thread retries watchers whose channel was full.
    pub catch_up_retry_ms: u64,
    /// Interval of `progress_notify` responses (etcd's default is 10 minutes).
    pub progress_notify_interval_ms: u64,
    pub watchers_per_stream_max: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            stream_buffer_responses: 128,
            catch_up_events_max: 1000,
            catch_up_retry_ms: 10,
            progress_notify_interval_ms: 10 * 60 * 1000,
            watchers_per_stream_max: 100_000,
        }
    }
}

pub(crate) type StreamId = u64;
pub(crate) type WatcherKey = (StreamId, WatchId);

#[derive(Debug)]
pub(crate) struct Watcher {
    pub request: WatchRequest,
    pub next_revision: i64,
    /// The revision of the last events or progress response sent.
    pub last_response_revision: i64,
    pub synced: bool,
}

impl Watcher {
    /// The events of one change this watcher wants, shaped as it asked. A delete event that left
    /// its previous version out gets it from `deleted_version` (given the event's index), if the
    /// watcher asked for previous versions.
    pub fn select(
        &self,
        events: &[Event],
        deleted_version: &mut dyn FnMut(usize, &Event) -> Option<KeyValue>,
    ) -> Vec<Event> {
        events
            .iter()
            .enumerate()
            .filter(|(_, event)| self.request.range.contains(&event.kv.key))
            .filter(|(_, event)| match event.kind {
                EventKind::Put => !self.request.filter_puts,
                EventKind::Delete => !self.request.filter_deletes,
            })
            .map(|(index, event)| {
                let mut event = event.clone();
                if !self.request.prev_kv {
                    event.prev_kv = None;
                } else if event.kind == EventKind::Delete && event.prev_kv.is_none() {
                    event.prev_kv = deleted_version(index, &event);
                }
                event
            })
            .collect()
    }
}

/// The previous versions a change's deletes left out, read back from the store once each, for
/// however many watchers want them. Read under the hub lock, as etcd's watch server reads them
/// while it sends the events; only deletes whose request did not ask `prev_kv` need it.
pub(crate) struct DeletedVersions<'a> {
    store: &'a Store,
    read: HashMap<usize, Option<KeyValue>>,
}

impl<'a> DeletedVersions<'a> {
    pub fn new(store: &'a Store) -> Self {
        DeletedVersions { store, read: HashMap::new() }
    }

    pub fn get(&mut self, index: usize, event: &Event) -> Option<KeyValue> {
        let store = self.store;
        let read = self.read.entry(index).or_insert_with(|| {
            store.deleted_version(event).unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read a deleted version back for a watcher");
                None
            })
        });
        read.clone()
    }
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub sender: mpsc::Sender<WatchResponse>,
    /// A progress request that waits until every watcher of the stream is synced.
    pub deferred_progress: bool,
}

#[derive(Debug, Default)]
pub(crate) struct HubState {
    /// The revision of the last `publish`: every synced watcher has been sent all of its
    /// events up to it.
    pub published: i64,
    pub watchers: BTreeMap<WatcherKey, Watcher>,
    pub unsynced: BTreeSet<WatcherKey>,
    pub streams: HashMap<StreamId, Stream>,
    pub next_stream_id: StreamId,
    pub shutdown: bool,
}

impl HubState {
    /// Moves a watcher aside: it will be fed from history from `next_revision` on.
    pub fn unsync(&mut self, key: WatcherKey) {
        if let Some(watcher) = self.watchers.get_mut(&key) {
            watcher.synced = false;
            self.unsynced.insert(key);
        }
    }

    /// Sends a stream-wide progress response if every watcher of the stream is synced.
    /// Returns whether it was sent.
    pub fn try_progress_all(&mut self, stream_id: StreamId) -> bool {
        let all_synced = self
            .watchers
            .range((stream_id, WatchId::MIN)..=(stream_id, WatchId::MAX))
            .all(|(_, watcher)| watcher.synced);
        let published = self.published;
        let Some(stream) = self.streams.get_mut(&stream_id) else { return false };
        if !all_synced {
            return false;
        }
        let response = WatchResponse { watch_id: PROGRESS_WATCH_ID, revision: published, body: ResponseBody::Progress };
        if stream.sender.try_send(response).is_ok() {
            stream.deferred_progress = false;
            return true;
        }
        false
    }
}

pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub options: WatchOptions,
    pub state: Mutex<HubState>,
    /// Wakes the catch-up thread.
    pub wake: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Shared").field("options", &self.options).finish_non_exhaustive()
    }
}

/// The fan-out point between the applier and all watchers.
#[derive(Debug)]
pub struct WatchHub {
    pub(crate) shared: Arc<Shared>,
    catch_up: Option<JoinHandle<()>>,
}

impl WatchHub {
    /// A hub over `store`, published up to the store's current revision.
    pub fn new(store: Arc<Store>, options: WatchOptions) -> WatchHub {
        let state = HubState { published: store.revision(), ..HubState::default() };
        let shared = Arc::new(Shared { store, options, state: Mutex::new(state), wake: Condvar::new() });
        let thread_shared = shared.clone();
        let catch_up = std::thread::Builder::new()
            .name("keel-watch-catch-up".into())
            .spawn(move || crate::catch_up::run(&thread_shared))
            .expect("start the watch catch-up thread");
        WatchHub { shared, catch_up: Some(catch_up) }
    }

    /// Delivers the changes of an applied batch, and `revision`, the store's revision after it.
    /// Never blocks on a watcher: one whose stream is full is moved aside to catch up later.
    pub fn publish(&self, changes: &[Change], revision: i64) {
        let mut state = self.shared.state.lock().expect("watch hub lock");
        let mut moved_aside = false;
        for change in changes {
            if change.revision <= state.published {
                continue;
            }
            moved_aside |= deliver(&mut state, &self.shared.store, change);
            state.published = change.revision;
        }
        if revision > state.published {
            state.published = revision;
        }
        moved_aside |= send_revision_progress(&mut state, revision);
        if moved_aside {
            self.shared.wake.notify_all();
        }
    }

    /// The store jumped to `revision` by installing a snapshot, without change events for the
    /// revisions in between: every watcher waiting for one of them is moved aside, to be fed
    /// from the store's history (or canceled as compacted, if the snapshot no longer has it),
    /// so none skips the jump. etcd's watchable store does the same on restore.
    pub fn restored(&self, revision: i64) {
        let mut state = self.shared.state.lock().expect("watch hub lock");
        let waiting: Vec<WatcherKey> = state
            .watchers
            .iter()
            .filter(|(_, watcher)| watcher.synced && watcher.next_revision <= revision)
            .map(|(key, _)| *key)
            .collect();
        for key in waiting {
            state.unsync(key);
        }
        state.published = revision;
        drop(state);
        self.shared.wake.notify_all();
    }

    /// The revision of the last publish.
    pub fn published_revision(&self) -> i64 {
        self.shared.state.lock().expect("watch hub lock").published
    }

    /// Opens a stream, the channel its watchers' responses arrive on.
    pub fn open_stream(&self) -> crate::WatchStream {
        let (sender, receiver) = mpsc::channel(self.shared.options.stream_buffer_responses.max(1));
        let mut state = self.shared.state.lock().expect("watch hub lock");
        let id = state.next_stream_id;
        state.next_stream_id += 1;
        state.streams.insert(id, Stream { sender, deferred_progress: false });
        crate::WatchStream::new(self.shared.clone(), id, receiver)
    }

    /// How many watchers are registered, and how many of them are catching up.
    pub fn watcher_counts(&self) -> (usize, usize) {
        let state = self.shared.state.lock().expect("watch hub lock");
        (state.watchers.len(), state.unsynced.len())
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock().expect("watch hub lock");
            state.shutdown = true;
            // Dropping the senders ends every stream: `recv` returns None after what is queued.
            state.streams.clear();
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.catch_up.take() {
            let _ = thread.join();
        }
    }
}

/// Sends one change to every synced watcher that wants some of it. Returns whether a watcher
/// was moved aside.
fn deliver(state: &mut HubState, store: &Store, change: &Change) -> bool {
    let mut full = Vec::new();
    let mut deleted_versions = DeletedVersions::new(store);
    let HubState { watchers, streams, unsynced, .. } = state;
    for (key, watcher) in watchers.iter_mut() {
        if !watcher.synced || change.revision < watcher.next_revision {
            continue;
        }
        let events = watcher.select(&change.events, &mut |index, event| deleted_versions.get(index, event));
        if events.is_empty() {
            watcher.next_revision = change.revision + 1;
            continue;
        }
        let Some(stream) = streams.get(&key.0) else { continue };
        let response = WatchResponse { watch_id: key.1, revision: change.revision, body: ResponseBody::Events(events) };
        match stream.sender.try_send(response) {
            Ok(()) => {
                watcher.next_revision = change.revision + 1;
                watcher.last_response_revision = change.revision;
            }
            // Full: moved aside with next_revision still at this change. Closed: the stream is
            // being dropped and will remove its watchers.
            Err(mpsc::error::TrySendError::Full(_)) => full.push(*key),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    let moved_aside = !full.is_empty();
    for key in full {
        if let Some(watcher) = watchers.get_mut(&key) {
            watcher.synced = false;
        }
        unsynced.insert(key);
    }
    moved_aside
}

/// Progress at `revision` for synced watchers that asked for it at every revision, and deferred
/// stream-wide progress requests that can now be answered.
fn send_revision_progress(state: &mut HubState, revision: i64) -> bool {
    let mut full = Vec::new();
    for (key, watcher) in &mut state.watchers {
        if !watcher.synced || !watcher.request.progress_every_revision || watcher.last_response_revision >= revision {
            continue;
        }
        let Some(stream) = state.streams.get(&key.0) else { continue };
        let response = WatchResponse { watch_id: key.1, revision, body: ResponseBody::Progress };
        match stream.sender.try_send(response) {
            Ok(()) => {
                watcher.next_revision = watcher.next_revision.max(revision + 1);
                watcher.last_response_revision = revision;
            }
            Err(mpsc::error::TrySendError::Full(_)) => full.push(*key),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    let moved_aside = !full.is_empty();
    for key in full {
        state.unsync(key);
    }
    let deferred: Vec<StreamId> =
        state.streams.iter().filter(|(_, stream)| stream.deferred_progress).map(|(id, _)| *id).collect();
    for stream_id in deferred {
        state.try_progress_all(stream_id);
    }
    moved_aside
}
