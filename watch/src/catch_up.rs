//! The catch-up thread: feeds unsynced watchers from store history in bounded rounds, cancels
//! those that fell below the compact revision, moves caught-up ones back to the synced group,
//! and sends periodic progress notifications.
//!
//! History is read outside the hub lock (it is disk I/O); delivering the round's events and the
//! move back to synced happen under it, so no publish can slip between them.

use std::time::{Duration, Instant};

use store::Change;
use tokio::sync::mpsc;

use crate::hub::{HubState, Shared, WatcherKey};
use crate::response::{CancelReason, ResponseBody, WatchResponse};

pub fn run(shared: &Shared) {
    let retry = Duration::from_millis(shared.options.catch_up_retry_ms.max(1));
    let progress_interval = Duration::from_millis(shared.options.progress_notify_interval_ms.max(1));
    let mut next_progress = Instant::now() + progress_interval;
    loop {
        {
            let state = shared.state.lock().expect("watch hub lock");
            // Checked before waiting too: a shutdown notified while a round ran is not missed.
            if state.shutdown {
                return;
            }
            let wait =
                if state.unsynced.is_empty() { next_progress.saturating_duration_since(Instant::now()) } else { retry };
            let (state, _) = shared.wake.wait_timeout(state, wait).expect("watch hub lock");
            if state.shutdown {
                return;
            }
        }
        if Instant::now() >= next_progress {
            send_periodic_progress(&mut shared.state.lock().expect("watch hub lock"));
            next_progress = Instant::now() + progress_interval;
        }
        catch_up_round(shared);
    }
}

/// One round: read history once from the lowest next revision among the unsynced watchers
/// whose stream has room, and hand each its part.
fn catch_up_round(shared: &Shared) {
    let (ready, published) = {
        let mut state = shared.state.lock().expect("watch hub lock");
        cancel_compacted(&mut state, shared.store.compact_revision());
        let ready: Vec<(WatcherKey, i64)> = state
            .unsynced
            .iter()
            .filter(|key| state.streams.get(&key.0).is_some_and(|stream| stream.sender.capacity() > 0))
            .filter_map(|key| state.watchers.get(key).map(|watcher| (*key, watcher.next_revision)))
            .collect();
        (ready, state.published)
    };
    let Some(from) = ready.iter().map(|(_, next)| *next).min() else { return };
    let changes = if from <= published {
        match shared.store.changes(from, published, shared.options.catch_up_events_max) {
            Ok(changes) => changes,
            // Compaction passed `from` meanwhile: the next round cancels whom it concerns.
            Err(store::Error::Compacted { .. }) => return,
            Err(error) => {
                tracing::error!(%error, from, "watch catch-up cannot read history");
                return;
            }
        }
    } else {
        Vec::new()
    };
    // Everything up to `covered` has been read, unless the read stopped early at its bound.
    let truncated = changes.iter().map(|change| change.events.len()).sum::<usize>()
        >= shared.options.catch_up_events_max
        && changes.last().is_some_and(|change| change.revision < published);
    let covered = if truncated { changes.last().map_or(published, |change| change.revision) } else { published };
    let mut state = shared.state.lock().expect("watch hub lock");
    for (key, _) in ready {
        feed(&mut state, key, &changes, covered);
    }
    let deferred: Vec<_> =
        state.streams.iter().filter(|(_, stream)| stream.deferred_progress).map(|(id, _)| *id).collect();
    for stream_id in deferred {
        state.try_progress_all(stream_id);
    }
}

/// Sends one unsynced watcher its events from `changes` up to `covered`, then re-syncs it if it
/// has reached the published revision.
fn feed(state: &mut HubState, key: WatcherKey, changes: &[Change], covered: i64) {
    let HubState { watchers, streams, unsynced, published, .. } = state;
    let (Some(watcher), Some(stream)) = (watchers.get_mut(&key), streams.get(&key.0)) else { return };
    if watcher.synced || watcher.next_revision > covered {
        // Already resynced, or nothing new for it in this round.
    } else {
        let events: Vec<_> = changes
            .iter()
            .filter(|change| change.revision >= watcher.next_revision && change.revision <= covered)
            // History reads every previous version it still has: one it left out was compacted.
            .flat_map(|change| watcher.select(&change.events, &mut |_, _| None))
            .collect();
        if !events.is_empty() {
            let response = WatchResponse { watch_id: key.1, revision: covered, body: ResponseBody::Events(events) };
            if stream.sender.try_send(response).is_err() {
                return;
            }
            watcher.last_response_revision = covered;
        }
        watcher.next_revision = covered + 1;
    }
    if !watcher.synced && watcher.next_revision > *published {
        if watcher.request.progress_every_revision && watcher.last_response_revision < *published {
            let response = WatchResponse { watch_id: key.1, revision: *published, body: ResponseBody::Progress };
            if stream.sender.try_send(response).is_err() {
                return;
            }
            watcher.last_response_revision = *published;
        }
        watcher.synced = true;
        unsynced.remove(&key);
    }
}

/// Cancels unsynced watchers whose next revision compaction has removed (etcd: a watch whose
/// start is below the compact revision is cancelled with it).
fn cancel_compacted(state: &mut HubState, compact_revision: i64) {
    let doomed: Vec<WatcherKey> = state
        .unsynced
        .iter()
        .filter(|key| state.watchers.get(key).is_some_and(|watcher| watcher.next_revision < compact_revision))
        .copied()
        .collect();
    for key in doomed {
        let Some(stream) = state.streams.get(&key.0) else { continue };
        let reason = CancelReason::Compacted { compact_revision };
        let response =
            WatchResponse { watch_id: key.1, revision: state.published, body: ResponseBody::Canceled(reason) };
        // A full stream gets its cancel in a later round; the watcher stays until then.
        if stream.sender.try_send(response).is_ok() {
            state.watchers.remove(&key);
            state.unsynced.remove(&key);
        }
    }
}

fn send_periodic_progress(state: &mut HubState) {
    let published = state.published;
    for (key, watcher) in &mut state.watchers {
        if !watcher.synced || !watcher.request.progress_notify {
            continue;
        }
        let Some(stream) = state.streams.get(&key.0) else { continue };
        let response = WatchResponse { watch_id: key.1, revision: published, body: ResponseBody::Progress };
        // A full stream is busy with events anyway; progress is skipped, not queued.
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) =
            stream.sender.try_send(response)
        {
            continue;
        }
        watcher.last_response_revision = published;
    }
}
