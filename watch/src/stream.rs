//! [`WatchStream`]: one consumer's channel and the watchers that write to it (etcd's
//! `WatchStream`: one per gRPC Watch stream).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::hub::{Shared, StreamId, Watcher};
use crate::request::WatchRequest;
use crate::response::{CancelReason, ResponseBody, WatchId, WatchResponse};

#[derive(Debug)]
pub struct WatchStream {
    shared: Arc<Shared>,
    id: StreamId,
    receiver: mpsc::Receiver<WatchResponse>,
    next_watch_id: WatchId,
}

impl WatchStream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId, receiver: mpsc::Receiver<WatchResponse>) -> Self {
        WatchStream { shared, id, receiver, next_watch_id: 0 }
    }

    fn sender(&self) -> Result<mpsc::Sender<WatchResponse>> {
        let state = self.shared.state.lock().expect("watch hub lock");
        state.streams.get(&self.id).map(|stream| stream.sender.clone()).ok_or(Error::Closed)
    }

    /// Creates a watcher; `watch_id` None picks the next free id. Its `Created` response is
    /// queued before any of its events.
    pub async fn watch(&mut self, watch_id: Option<WatchId>, request: WatchRequest) -> Result<WatchId> {
        let sender = self.sender()?;
        // Reserve room first, so `Created` is queued under the lock, ahead of any event.
        let permit = sender.reserve().await.map_err(|_| Error::Closed)?;
        let mut state = self.shared.state.lock().expect("watch hub lock");
        let stream_watchers = state.watchers.range((self.id, WatchId::MIN)..=(self.id, WatchId::MAX)).count();
        if stream_watchers >= self.shared.options.watchers_per_stream_max {
            return Err(Error::TooManyWatchers { max: self.shared.options.watchers_per_stream_max });
        }
        let watch_id = match watch_id {
            Some(id) if state.watchers.contains_key(&(self.id, id)) => {
                return Err(Error::DuplicateWatchId { watch_id: id })
            }
            Some(id) => id,
            None => {
                while state.watchers.contains_key(&(self.id, self.next_watch_id)) {
                    self.next_watch_id += 1;
                }
                self.next_watch_id
            }
        };
        let published = state.published;
        // etcd: start 0 means "after now"; a start beyond now waits in the synced group.
        let (next_revision, synced) = match request.start_revision {
            start if start <= 0 => (published + 1, true),
            start if start > published => (start, true),
            start => (start, false),
        };
        let watcher = Watcher { request, next_revision, last_response_revision: 0, synced };
        state.watchers.insert((self.id, watch_id), watcher);
        if !synced {
            state.unsynced.insert((self.id, watch_id));
            self.shared.wake.notify_all();
        }
        permit.send(WatchResponse { watch_id, revision: published, body: ResponseBody::Created });
        Ok(watch_id)
    }

    /// Removes a watcher; its `Canceled` response is its last.
    pub async fn cancel(&mut self, watch_id: WatchId) -> Result<()> {
        let sender = self.sender()?;
        let permit = sender.reserve().await.map_err(|_| Error::Closed)?;
        let mut state = self.shared.state.lock().expect("watch hub lock");
        if state.watchers.remove(&(self.id, watch_id)).is_none() {
            return Err(Error::WatcherNotFound { watch_id });
        }
        state.unsynced.remove(&(self.id, watch_id));
        let revision = state.published;
        permit.send(WatchResponse { watch_id, revision, body: ResponseBody::Canceled(CancelReason::Requested) });
        Ok(())
    }

    /// etcd's RequestProgress (≥ 3.4.31 / 3.5.13 semantics): a progress response at the
    /// published revision, sent only once every watcher of the stream is synced, so that it is
    /// a true bookmark for all of them. Until then the request waits (at most one waits).
    pub fn request_progress(&self) {
        let mut state = self.shared.state.lock().expect("watch hub lock");
        if !state.try_progress_all(self.id) {
            if let Some(stream) = state.streams.get_mut(&self.id) {
                stream.deferred_progress = true;
            }
            self.shared.wake.notify_all();
        }
    }

    /// The next response; None once the hub is gone.
    pub async fn recv(&mut self) -> Option<WatchResponse> {
        self.receiver.recv().await
    }

    /// The next response if one is waiting.
    pub fn try_recv(&mut self) -> Option<WatchResponse> {
        self.receiver.try_recv().ok()
    }

    /// How many of this stream's watchers are catching up from history.
    pub fn unsynced_count(&self) -> usize {
        let state = self.shared.state.lock().expect("watch hub lock");
        state.unsynced.range((self.id, WatchId::MIN)..=(self.id, WatchId::MAX)).count()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("watch hub lock");
        state.streams.remove(&self.id);
        let keys: Vec<_> =
            state.watchers.range((self.id, WatchId::MIN)..=(self.id, WatchId::MAX)).map(|(key, _)| *key).collect();
        for key in keys {
            state.watchers.remove(&key);
            state.unsynced.remove(&key);
        }
    }
}
