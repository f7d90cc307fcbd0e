//! A work queue in the manner of client-go's rate-limited workqueue: keys, not events, so a key
//! added many times is processed once; a key is never processed by two workers at once (one
//! added while it is processed is queued again when the worker is done); and a key that failed
//! comes back after a per-key exponential backoff.
//!
//! Its size is bounded by the number of distinct keys, that is of objects the controller
//! tracks: each key is queued, delayed or processing at most once.
//!
//! States of a key (`add` from anywhere, `next`/`done` by a worker):
//! ```text
//!   absent ──add──► queued ──next──► processing ──done──► absent
//!                     ▲                 │ add
//!                     │                 ▼
//!                     └─────done─── processing+dirty
//!   add_after / add_rate_limited: delayed ──(deadline)──► add
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first retry of a failed key comes after this long; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Retries of a key that keeps failing come at most this far apart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting to be processed: in `queue`, or processing and to be queued again.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys by deadline (with a sequence number to keep equal deadlines apart).
    delayed: BTreeMap<(Instant, u64), K>,
    delayed_keys: HashMap<K, (Instant, u64)>,
    sequence: u64,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    changed: Notify,
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue::new()
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    pub fn new() -> WorkQueue<K> {
        WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                delayed: BTreeMap::new(),
                delayed_keys: HashMap::new(),
                sequence: 0,
                failures: HashMap::new(),
                shut_down: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().expect("the work queue is never poisoned")
    }

    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if Self::enqueue(&mut state, key) {
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Queues `key` unless it already waits; true if a worker may have something new to take.
    fn enqueue(state: &mut State<K>, key: K) -> bool {
        if state.shut_down || state.dirty.contains(&key) {
            return false;
        }
        state.dirty.insert(key.clone());
        if state.processing.contains(&key) {
            return false;
        }
        state.queue.push_back(key);
        true
    }

    /// Queues `key` after `delay` (the earlier deadline wins if it is already delayed).
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let deadline = Instant::now() + delay;
        let mut state = self.lock();
        if state.shut_down {
            return;
        }
        if let Some(existing) = state.delayed_keys.get(&key).copied() {
            if existing.0 <= deadline {
                return;
            }
            state.delayed.remove(&existing);
        }
        state.sequence += 1;
        let slot = (deadline, state.sequence);
        state.delayed.insert(slot, key.clone());
        state.delayed_keys.insert(key, slot);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Queues `key` after its backoff, which doubles with each call until [`WorkQueue::forget`].
    pub fn add_rate_limited(&self, key: K) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            *failures
        };
        self.add_after(key, backoff(failures));
    }

    /// The key succeeded: its next failure starts the backoff again.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// The next key to process, waiting for one; None once the queue is shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                let now = Instant::now();
                while let Some(entry) = state.delayed.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let key = entry.remove();
                    state.delayed_keys.remove(&key);
                    Self::enqueue(&mut state, key);
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return Some(key);
                }
                state.delayed.keys().next().map(|(deadline, _)| *deadline)
            };
            match wake_at {
                Some(deadline) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The worker finished `key`; it is queued again if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) && !state.shut_down {
            state.queue.push_back(key.clone());
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Wakes every worker; `next` answers None from now on.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.changed.notify_waiters();
    }

    /// Keys queued or delayed (not those being processed).
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.queue.len() + state.delayed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before the retry that follows `failures` failures.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_processed_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(queue.next().await, Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let queue = WorkQueue::new();
        queue.add("a");
        assert_eq!(queue.next().await, Some("a"));
        queue.add("a");
        assert!(queue.is_empty(), "not handed to a second worker while processing");
        queue.done(&"a");
        assert_eq!(queue.next().await, Some("a"));
        queue.done(&"a");
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let queue = WorkQueue::new();
        let start = Instant::now();
        queue.add_rate_limited("a");
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(start.elapsed(), BACKOFF_BASE);
        queue.done(&"a");
        queue.add_rate_limited("a");
        let second = Instant::now();
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(second.elapsed(), BACKOFF_BASE * 2);
        queue.done(&"a");
        queue.forget(&"a");
        queue.add_rate_limited("a");
        let third = Instant::now();
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(third.elapsed(), BACKOFF_BASE);
        assert_eq!(backoff(100), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn shut_down_wakes_waiting_workers() {
        let queue = std::sync::Arc::new(WorkQueue::<&str>::new());
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(waiting.await.unwrap(), None);
    }
}
