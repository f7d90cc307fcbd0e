//! etcd's watch guarantees, one test each, also under compaction and with a stalled consumer,
//! plus 10,000 watchers and a property test against the store's history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::{
    Command, DeleteRangeRequest, Event, EventKind, KeyRange, MemoryEngine, PutRequest, RequestOp, Store, StoreOptions,
    TxnRequest,
};
use watch::{
    CancelReason, ResponseBody, WatchHub, WatchOptions, WatchRequest, WatchResponse, WatchStream, PROGRESS_WATCH_ID,
};

/// A store with a hub, applying and publishing like the replicated state machine will.
struct Cluster {
    store: Arc<Store>,
    hub: WatchHub,
    position: u64,
    /// Every change ever published, kept by the test: the reference history, compaction or not.
    log: Vec<store::Change>,
}

impl Cluster {
    fn new(options: WatchOptions) -> Cluster {
        let store = Arc::new(Store::open(Arc::new(MemoryEngine::new()), StoreOptions::default()).unwrap());
        let hub = WatchHub::new(store.clone(), options);
        Cluster { store, hub, position: 0, log: Vec::new() }
    }

    fn apply(&mut self, commands: Vec<Command>) {
        self.position += 1;
        let output = self.store.apply(&commands, &self.position.to_be_bytes()).unwrap();
        self.hub.publish(&output.changes, self.store.revision());
        self.log.extend(output.changes);
    }

    /// Every event of `range` from `from` on, from the test's own log, with the previous
    /// versions deletes left out read back (as a `prev_kv` watcher gets them).
    fn logged(&self, range: &KeyRange, from: i64) -> Vec<Event> {
        let events = self.log.iter().filter(|change| change.revision >= from).flat_map(|change| change.events.iter());
        let events = events.filter(|event| range.contains(&event.kv.key)).cloned();
        events
            .map(|mut event| {
                if event.kind == EventKind::Delete && event.prev_kv.is_none() {
                    event.prev_kv = self.store.deleted_version(&event).unwrap();
                }
                event
            })
            .collect()
    }

    fn put(&mut self, key: &str, value: &str) {
        self.apply(vec![put(key, value)]);
    }

    /// Every event of `range` from `from` on, from the store's own history.
    fn history(&self, range: &KeyRange, from: i64) -> Vec<Event> {
        let changes = self.store.changes(from, self.store.revision(), usize::MAX).unwrap();
        changes.into_iter().flat_map(|change| change.events).filter(|event| range.contains(&event.kv.key)).collect()
    }
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest { key: b(key), value: b(value), ..PutRequest::default() })
}

fn delete(key: &str) -> Command {
    Command::DeleteRange(DeleteRangeRequest { key: b(key), ..DeleteRangeRequest::default() })
}

fn prefix(text: &str) -> KeyRange {
    KeyRange::prefix(text.as_bytes())
}

fn request(range: KeyRange, start_revision: i64) -> WatchRequest {
    WatchRequest { start_revision, prev_kv: true, ..WatchRequest::new(range) }
}

/// Guards against a hang; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(HANG_GUARD, stream.recv())
        .await
        .expect("a response within the hang guard")
        .expect("stream open")
}

/// Reads responses until `watch_id` has been sent everything up to `revision` (or is cancelled).
async fn events_until(
    stream: &mut WatchStream,
    watch_id: i64,
    revision: i64,
) -> (Vec<Vec<Event>>, Option<CancelReason>) {
    let mut responses = Vec::new();
    loop {
        let response = next(stream).await;
        if response.watch_id != watch_id {
            continue;
        }
        match response.body {
            ResponseBody::Events(events) => {
                let covered = response.revision;
                responses.push(events);
                if covered >= revision {
                    return (responses, None);
                }
            }
            ResponseBody::Progress if response.revision >= revision => return (responses, None),
            ResponseBody::Canceled(reason) => return (responses, Some(reason)),
            _ => {}
        }
    }
}

fn revisions(events: &[Event]) -> Vec<(i64, i64)> {
    events.iter().map(|event| (event.kv.mod_revision, event.sub_revision)).collect()
}

#[tokio::test]
async fn live_events_are_ordered_unique_and_atomic() {
    let mut cluster = Cluster::new(WatchOptions::default());
    let mut stream = cluster.hub.open_stream();
    let id = stream.watch(None, request(prefix("k"), 0)).await.unwrap();
    assert_eq!(next(&mut stream).await.body, ResponseBody::Created);
    for round in 0..30 {
        let key = format!("k{}", round % 7);
        cluster.put(&key, &round.to_string());
        if round % 5 == 0 {
            let txn = TxnRequest {
                compare: vec![],
                success: vec![
                    RequestOp::Put(PutRequest { key: b("k-txn-a"), value: b("1"), ..PutRequest::default() }),
                    RequestOp::Put(PutRequest { key: b("k-txn-b"), value: b("1"), ..PutRequest::default() }),
                    RequestOp::DeleteRange(DeleteRangeRequest { key: b(&key), ..DeleteRangeRequest::default() }),
                ],
                failure: vec![],
            };
            cluster.apply(vec![Command::Txn(txn)]);
        }
        cluster.put("other", "ignored");
    }
    cluster.put("k-end", "last");
    let (responses, cancel) = events_until(&mut stream, id, cluster.store.revision()).await;
    assert_eq!(cancel, None);
    // Atomic: no revision is split across two responses.
    let mut seen_in = BTreeMap::new();
    for (index, events) in responses.iter().enumerate() {
        for event in events {
            let first = *seen_in.entry(event.kv.mod_revision).or_insert(index);
            assert_eq!(first, index, "revision {} split across responses", event.kv.mod_revision);
        }
    }
    let received: Vec<Event> = responses.into_iter().flatten().collect();
    // Ordered, unique and reliable: exactly the store's history of the range, in order.
    assert_eq!(received, cluster.history(&prefix("k"), 2));
    let order = revisions(&received);
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "strictly increasing");
}

#[tokio::test]
async fn a_start_in_the_past_replays_history_then_goes_live() {
    let mut cluster = Cluster::new(WatchOptions::default());
    for index in 0..20 {
        cluster.put(&format!("a{}", index % 3), "v");
    }
    let mut stream = cluster.hub.open_stream();
    let id = stream.watch(Some(7), request(prefix("a"), 5)).await.unwrap();
    assert_eq!(id, 7);
    for _ in 0..10 {
        cluster.put("a1", "later");
    }
    let (responses, _) = events_until(&mut stream, id, cluster.store.revision()).await;
    let received: Vec<Event> = responses.into_iter().flatten().collect();
    assert_eq!(received, cluster.history(&prefix("a"), 5), "resumable: every event from the start revision on");
}

#[tokio::test]
async fn a_start_below_the_compact_revision_is_cancelled_with_it() {
    let mut cluster = Cluster::new(WatchOptions::default());
    for index in 0..12 {
        cluster.put(&format!("c{index}"), "v");
    }
    cluster.apply(vec![Command::Compact { revision: 10 }]);
    let mut stream = cluster.hub.open_stream();
    let id = stream.watch(None, request(prefix("c"), 5)).await.unwrap();
    let (events, cancel) = events_until(&mut stream, id, i64::MAX).await;
    assert!(events.is_empty());
    assert_eq!(cancel, Some(CancelReason::Compacted { compact_revision: 10 }));
    // At the compact revision itself the watch is valid, as in etcd.
    let id = stream.watch(None, request(prefix("c"), 10)).await.unwrap();
    let (events, cancel) = events_until(&mut stream, id, cluster.store.revision()).await;
    assert_eq!(cancel, None);
    assert_eq!(events.concat(), cluster.history(&prefix("c"), 10));
}

#[tokio::test]
async fn a_stalled_stream_never_blocks_apply_and_catches_up_without_gaps() {
    let options = WatchOptions { stream_buffer_responses: 4, catch_up_events_max: 50, ..WatchOptions::default() };
    let mut cluster = Cluster::new(options);
    let mut stalled = cluster.hub.open_stream();
    let id = stalled.watch(None, request(prefix(""), 0)).await.unwrap();
    let mut live = cluster.hub.open_stream();
    let live_id = live.watch(None, request(prefix("x"), 0)).await.unwrap();
    // Nobody reads `stalled`: each apply still returns, and the watcher is moved aside.
    let mut last_live_revision = 0;
    for index in 0..500 {
        cluster.put(&format!("s{}", index % 10), &index.to_string());
        if index % 100 == 0 {
            cluster.put("x", "live");
            last_live_revision = cluster.store.revision();
        }
    }
    assert_eq!(stalled.unsynced_count(), 1, "the stalled watcher was moved aside");
    let (live_events, _) = events_until(&mut live, live_id, last_live_revision).await;
    assert_eq!(live_events.concat().len(), 5, "a stalled stream does not hold up another");
    let (responses, cancel) = events_until(&mut stalled, id, cluster.store.revision()).await;
    assert_eq!(cancel, None);
    assert_eq!(responses.concat(), cluster.history(&prefix(""), 2), "caught up from history: no gap, no duplicate");
    cluster.put("s0", "after");
    let (after, _) = events_until(&mut stalled, id, cluster.store.revision()).await;
    assert_eq!(after.concat().len(), 1, "back in the synced group");
    assert_eq!(stalled.unsynced_count(), 0);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_compaction_is_cancelled() {
    let options = WatchOptions { stream_buffer_responses: 2, ..WatchOptions::default() };
    let mut cluster = Cluster::new(options);
    let mut stalled = cluster.hub.open_stream();
    let id = stalled.watch(None, request(prefix(""), 0)).await.unwrap();
    for index in 0..100 {
        cluster.put(&format!("k{index}"), "v");
    }
    cluster.apply(vec![Command::Compact { revision: 90 }]);
    let (responses, cancel) = events_until(&mut stalled, id, i64::MAX).await;
    assert_eq!(cancel, Some(CancelReason::Compacted { compact_revision: 90 }));
    let received = responses.concat();
    let expected = cluster.logged(&prefix(""), 2);
    assert!(!received.is_empty() && received.len() < expected.len());
    assert_eq!(received, expected[..received.len()], "what it got before the cancel has no gap");
}

#[tokio::test]
async fn watchers_that_ask_get_the_versions_a_prefix_delete_did_not_read() {
    let mut cluster = Cluster::new(WatchOptions::default());
    for index in 0..50 {
        cluster.put(&format!("p/{index:02}"), &format!("v{index}"));
    }
    let mut stream = cluster.hub.open_stream();
    let with_prev = stream.watch(None, request(prefix("p/"), 0)).await.unwrap();
    let narrow = stream.watch(None, request(prefix("p/4"), 0)).await.unwrap();
    let plain = stream.watch(None, WatchRequest::new(prefix("p/"))).await.unwrap();
    let delete_all = DeleteRangeRequest { key: b("p/"), range_end: b("p0"), prev_kv: false };
    cluster.apply(vec![Command::DeleteRange(delete_all)]);
    assert!(cluster.log.last().unwrap().events.iter().all(|event| event.prev_kv.is_none()), "no value was read");
    let revision = cluster.store.revision();
    let mut received = BTreeMap::new();
    while received.len() < 3 {
        let response = next(&mut stream).await;
        if let ResponseBody::Events(events) = response.body {
            received.insert(response.watch_id, events);
        }
    }
    let shape = |events: &[Event]| -> Vec<(String, Option<String>)> {
        events
            .iter()
            .map(|event| {
                assert_eq!((event.kind, event.kv.mod_revision), (EventKind::Delete, revision));
                let value = event.prev_kv.as_ref().map(|prev| String::from_utf8(prev.value.to_vec()).unwrap());
                (String::from_utf8(event.kv.key.to_vec()).unwrap(), value)
            })
            .collect()
    };
    let expected: Vec<_> = (0..50).map(|index| (format!("p/{index:02}"), Some(format!("v{index}")))).collect();
    assert_eq!(shape(&received[&with_prev]), expected);
    assert_eq!(shape(&received[&narrow]), expected[40..]);
    assert!(shape(&received[&plain]).iter().all(|(_, value)| value.is_none()), "prev_kv only when asked");

    // After a compaction past the revision before the delete, a watcher from history gets the
    // deletes without their previous versions, as etcd's does.
    cluster.apply(vec![Command::Compact { revision }]);
    let mut late = cluster.hub.open_stream();
    let id = late.watch(None, request(prefix("p/"), revision)).await.unwrap();
    let (events, _) = events_until(&mut late, id, revision).await;
    assert_eq!(shape(&events.concat()).len(), 50);
    assert!(shape(&events.concat()).iter().all(|(_, value)| value.is_none()));
}

#[tokio::test]
async fn requested_progress_waits_until_every_watcher_is_synced() {
    let options = WatchOptions { stream_buffer_responses: 3, ..WatchOptions::default() };
    let mut cluster = Cluster::new(options);
    let mut stream = cluster.hub.open_stream();
    let quiet = stream.watch(None, request(prefix("quiet"), 0)).await.unwrap();
    let busy = stream.watch(None, request(prefix("busy"), 0)).await.unwrap();
    for index in 0..50 {
        cluster.put("busy", &index.to_string());
    }
    assert_eq!(stream.unsynced_count(), 1);
    stream.request_progress();
    let mut last_busy_revision = 0;
    let progress_revision = loop {
        let response = next(&mut stream).await;
        match response.body {
            ResponseBody::Events(events) => {
                assert_eq!(response.watch_id, busy);
                last_busy_revision = events.last().unwrap().kv.mod_revision;
            }
            ResponseBody::Progress => {
                assert_eq!(response.watch_id, PROGRESS_WATCH_ID);
                break response.revision;
            }
            _ => {}
        }
    };
    assert_eq!(progress_revision, cluster.store.revision());
    assert_eq!(
        last_busy_revision, progress_revision,
        "bookmarkable: every event up to the progress revision came first"
    );
    let _ = quiet;
}

#[tokio::test]
async fn the_cache_subscription_learns_every_applied_revision() {
    let mut cluster = Cluster::new(WatchOptions::default());
    let mut stream = cluster.hub.open_stream();
    let id = stream
        .watch(None, WatchRequest { progress_every_revision: true, ..request(prefix("/pods/"), 0) })
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.body, ResponseBody::Created);
    cluster.put("/configmaps/a", "1"); // 2: not the cache's prefix
    cluster.put("/pods/a", "1"); // 3
    cluster.put("/configmaps/b", "1"); // 4
    let kinds: Vec<(i64, bool)> = [next(&mut stream).await, next(&mut stream).await, next(&mut stream).await]
        .into_iter()
        .map(|response| {
            assert_eq!(response.watch_id, id);
            (response.revision, matches!(response.body, ResponseBody::Events(_)))
        })
        .collect();
    assert_eq!(kinds, [(2, false), (3, true), (4, false)]);
}

#[tokio::test]
async fn filters_and_previous_versions() {
    let mut cluster = Cluster::new(WatchOptions::default());
    cluster.put("f", "0");
    let mut stream = cluster.hub.open_stream();
    let no_puts = stream.watch(None, WatchRequest { filter_puts: true, ..request(prefix("f"), 0) }).await.unwrap();
    let no_deletes =
        stream.watch(None, WatchRequest { filter_deletes: true, ..request(prefix("f"), 0) }).await.unwrap();
    let no_prev = stream.watch(None, WatchRequest::new(prefix("f"))).await.unwrap();
    cluster.put("f", "1");
    cluster.apply(vec![delete("f")]);
    let revision = cluster.store.revision();
    let (deletes, _) = events_until(&mut stream, no_puts, revision).await;
    assert_eq!(deletes.concat().iter().map(|event| event.kind).collect::<Vec<_>>(), [EventKind::Delete]);
    assert_eq!(deletes.concat()[0].prev_kv.as_ref().unwrap().value, b("1"));
    let mut stream_puts: Vec<Event> = Vec::new();
    let mut plain: Vec<Event> = Vec::new();
    // The other two watchers' responses were queued before no_puts' last one was read; replay.
    drop(stream);
    let mut stream = cluster.hub.open_stream();
    let a = stream.watch(None, WatchRequest { filter_deletes: true, ..request(prefix("f"), 3) }).await.unwrap();
    let b_id = stream.watch(None, WatchRequest { start_revision: 3, ..WatchRequest::new(prefix("f")) }).await.unwrap();
    let (puts, _) = events_until(&mut stream, a, revision).await;
    stream_puts.extend(puts.concat());
    let (all, _) = events_until(&mut stream, b_id, revision).await;
    plain.extend(all.concat());
    assert_eq!(stream_puts.iter().map(|event| event.kind).collect::<Vec<_>>(), [EventKind::Put]);
    assert_eq!(plain.len(), 2);
    assert!(plain.iter().all(|event| event.prev_kv.is_none()), "prev_kv only when asked");
    let _ = (no_deletes, no_prev);
}

#[tokio::test]
async fn cancel_is_the_last_response_and_ids_are_checked() {
    let mut cluster = Cluster::new(WatchOptions::default());
    let mut stream = cluster.hub.open_stream();
    let id = stream.watch(Some(3), request(prefix("z"), 0)).await.unwrap();
    assert_eq!(
        stream.watch(Some(3), request(prefix("z"), 0)).await,
        Err(watch::Error::DuplicateWatchId { watch_id: 3 })
    );
    assert_eq!(next(&mut stream).await.body, ResponseBody::Created);
    stream.cancel(id).await.unwrap();
    assert_eq!(next(&mut stream).await.body, ResponseBody::Canceled(CancelReason::Requested));
    cluster.put("z", "1");
    assert_eq!(stream.try_recv(), None, "nothing after the cancel");
    assert_eq!(stream.cancel(id).await, Err(watch::Error::WatcherNotFound { watch_id: 3 }));
}

#[tokio::test]
async fn ten_thousand_watchers_on_overlapping_ranges() {
    const KEYS: usize = 1000;
    const WATCHERS: usize = 10_000;
    const STREAMS: usize = 100;
    // Room for every response, so one pass of reads sees them all without waiting on catch-up.
    let mut cluster = Cluster::new(WatchOptions { stream_buffer_responses: 8192, ..WatchOptions::default() });
    let key = |index: usize| format!("key{:04}", index % KEYS);
    let mut streams = Vec::new();
    let mut ranges = Vec::new();
    for watcher in 0..WATCHERS {
        if watcher % (WATCHERS / STREAMS) == 0 {
            streams.push(cluster.hub.open_stream());
        }
        // Watcher i covers 50 keys from key i mod 1000: every key is covered by 500 watchers.
        let range = KeyRange::new(&b(&key(watcher)), &b(&format!("key{:04}", (watcher % KEYS) + 50)));
        let stream = streams.last_mut().unwrap();
        let id = stream.watch(None, request(range.clone(), 0)).await.unwrap();
        ranges.push((streams.len() - 1, id, range));
    }
    assert_eq!(cluster.hub.watcher_counts(), (WATCHERS, 0));
    for round in 0..60 {
        cluster.put(&key(round * 17), &round.to_string());
    }
    let revision = cluster.store.revision();
    let mut received: BTreeMap<(usize, i64), usize> = BTreeMap::new();
    for (index, stream) in streams.iter_mut().enumerate() {
        while let Some(response) = stream.try_recv() {
            if let ResponseBody::Events(events) = response.body {
                *received.entry((index, response.watch_id)).or_default() += events.len();
            }
        }
    }
    let history = cluster.history(&prefix(""), 2);
    for (stream, id, range) in &ranges {
        let expected = history.iter().filter(|event| range.contains(&event.kv.key)).count();
        assert_eq!(received.get(&(*stream, *id)).copied().unwrap_or(0), expected, "watcher {id} of stream {stream}");
    }
    assert_eq!(cluster.hub.published_revision(), revision);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Put(u8),
        Delete(u8),
        Watch { first: u8, back: i64 },
        Drain(usize),
        Compact(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u8..6).prop_map(Step::Put),
            2 => (0u8..6).prop_map(Step::Delete),
            1 => (0u8..6, 0i64..15).prop_map(|(first, back)| Step::Watch { first, back }),
            2 => (0usize..4).prop_map(Step::Drain),
            1 => (0i64..10).prop_map(Step::Compact),
        ]
    }

    /// One watcher under test and what it has received so far.
    struct Observed {
        stream: WatchStream,
        id: i64,
        range: KeyRange,
        start: i64,
        events: Vec<Event>,
        cancel: Option<CancelReason>,
        /// The highest revision a response said was fully delivered.
        covered: i64,
    }

    fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async move {
            let options = WatchOptions {
                stream_buffer_responses: 3,
                catch_up_events_max: 4,
                catch_up_retry_ms: 1,
                ..WatchOptions::default()
            };
            let mut cluster = Cluster::new(options);
            let mut watchers: Vec<Observed> = Vec::new();
            for step in steps {
                match step {
                    Step::Put(key) => cluster.put(&format!("k{key}"), "v"),
                    Step::Delete(key) => cluster.apply(vec![delete(&format!("k{key}"))]),
                    Step::Watch { first, back } => {
                        let range = KeyRange::new(&b(&format!("k{first}")), &b(&format!("k{}", first + 3)));
                        let start = (cluster.store.revision() - back).max(1);
                        let mut stream = cluster.hub.open_stream();
                        // Progress at every revision tells the final drain when a watcher is done.
                        let watch = WatchRequest { progress_every_revision: true, ..request(range.clone(), start) };
                        let id = stream.watch(None, watch).await.unwrap();
                        watchers.push(Observed {
                            stream,
                            id,
                            range,
                            start,
                            events: Vec::new(),
                            cancel: None,
                            covered: 0,
                        });
                    }
                    Step::Drain(index) => {
                        if let Some(watcher) = watchers.get_mut(index) {
                            while let Some(response) = watcher.stream.try_recv() {
                                match response.body {
                                    ResponseBody::Events(batch) => {
                                        watcher.events.extend(batch);
                                        watcher.covered = response.revision;
                                    }
                                    ResponseBody::Progress => watcher.covered = response.revision,
                                    ResponseBody::Canceled(reason) => watcher.cancel = Some(reason),
                                    _ => {}
                                }
                            }
                        }
                    }
                    Step::Compact(back) => {
                        let revision = cluster.store.revision() - back;
                        if revision > cluster.store.compact_revision() {
                            cluster.apply(vec![Command::Compact { revision }]);
                        }
                    }
                }
            }
            let revision = cluster.store.revision();
            let compact_revision = cluster.store.compact_revision();
            for Observed { mut stream, id, range, start, mut events, mut cancel, covered } in watchers {
                if cancel.is_none() && covered < revision {
                    let (more, reason) = events_until(&mut stream, id, revision).await;
                    events.extend(more.concat());
                    cancel = reason;
                }
                // A previous version below the compact revision may be left out (as etcd does),
                // depending on whether the watcher read it before or after the compaction.
                let normalize = |events: Vec<Event>| -> Vec<Event> {
                    events
                        .into_iter()
                        .map(|mut event| {
                            if event.kv.mod_revision - 1 < compact_revision {
                                event.prev_kv = None;
                            }
                            event
                        })
                        .collect()
                };
                let expected = normalize(cluster.logged(&range, start));
                let events = normalize(events);
                prop_assert!(revisions(&events).windows(2).all(|pair| pair[0] < pair[1]), "ordered and unique");
                match cancel {
                    // Reliable: every event from the start revision on, and nothing else.
                    None => prop_assert_eq!(&events, &expected),
                    Some(CancelReason::Compacted { compact_revision: at }) => {
                        prop_assert!(at <= compact_revision);
                        prop_assert_eq!(&events[..], &expected[..events.len()], "no gap before the cancel");
                        let next_needed = expected.get(events.len()).map_or(i64::MAX, |event| event.kv.mod_revision);
                        prop_assert!(
                            events.len() < expected.len() || start < at,
                            "cancelled only when behind compaction"
                        );
                        prop_assert!(next_needed >= start);
                    }
                    Some(other) => prop_assert!(false, "unexpected cancel {:?}", other),
                }
            }
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn watchers_agree_with_store_history(steps in proptest::collection::vec(step(), 1..120)) {
            run(steps)?;
        }
    }
}

/// A follower that installs a snapshot jumps revisions without change events: a watcher
/// waiting for one of the skipped revisions (here: from an empty store) must get them from the
/// installed history, not skip to the next live change (a gap Jepsen found).
#[tokio::test]
async fn a_snapshot_install_is_replayed_to_waiting_watchers() {
    let mut leader = Cluster::new(WatchOptions::default());
    for index in 0..20 {
        leader.put(&format!("s{}", index % 4), &index.to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let snapshot_path = dir.path().join("snapshot");
    let scratch = dir.path().join("scratch");
    let mut file = std::fs::File::create(&snapshot_path).unwrap();
    leader.store.snapshot(&scratch).unwrap().write_to(&mut file).unwrap();
    drop(file);

    let mut follower = Cluster::new(WatchOptions::default());
    let mut stream = follower.hub.open_stream();
    let id = stream.watch(None, request(prefix("s"), 2)).await.unwrap();
    follower.store.install_snapshot(&snapshot_path).unwrap();
    follower.hub.restored(follower.store.revision());
    follower.put("s9", "after the snapshot");

    let (responses, cancel) = events_until(&mut stream, id, follower.store.revision()).await;
    assert!(cancel.is_none(), "{cancel:?}");
    let received: Vec<Event> = responses.into_iter().flatten().collect();
    assert_eq!(revisions(&received), revisions(&follower.history(&prefix("s"), 2)), "no revision skipped");
    assert_eq!(received.len(), 21);
}
