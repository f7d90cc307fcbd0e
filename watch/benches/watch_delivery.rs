//! Watch figures: event delivery latency at fixed write rates and watcher counts, put latency
//! with and without a stalled watcher, and memory per idle watcher. The store runs on RocksDB
//! with buffered writes (as under Raft, whose log carries the fsync); apply and publish run on
//! one thread, as the state machine will; watchers are drained by tokio tasks.
//!
//! `cargo bench -p watch --bench watch_delivery` (`KEEL_BENCH_SECONDS` per scenario, default 5).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::{Command, Durability, KeyRange, PutRequest, RocksEngine, RocksOptions, Store, StoreOptions};
use watch::{ResponseBody, WatchHub, WatchOptions, WatchRequest};

fn main() {
    let seconds: u64 = std::env::var("KEEL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // First, while the heap is fresh, so freed memory of other scenarios does not hide it.
    memory_per_idle_watcher(&runtime, 100_000);
    for (watchers, writes_per_second) in [(1, 1000), (100, 1000), (1000, 200), (10_000, 20)] {
        delivery(&runtime, watchers, writes_per_second, Duration::from_secs(seconds));
    }
    stalled_watcher_put_latency(&runtime, Duration::from_secs(seconds));
}

struct Bench {
    store: Arc<Store>,
    hub: WatchHub,
    _dir: tempfile::TempDir,
    position: u64,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).unwrap();
        let options = StoreOptions { durability: Durability::Buffered, ..StoreOptions::default() };
        let store = Arc::new(Store::open(Arc::new(engine), options).unwrap());
        let hub = WatchHub::new(store.clone(), WatchOptions::default());
        Bench { store, hub, _dir: dir, position: 0 }
    }

    /// Applies one put and publishes it; returns how long apply + publish took.
    fn put(&mut self, key: &str) -> Duration {
        self.position += 1;
        let command = Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(&[b'v'; 256]),
            ..PutRequest::default()
        });
        let started = Instant::now();
        let output = self.store.apply(&[command], &self.position.to_be_bytes()).unwrap();
        self.hub.publish(&output.changes, self.store.revision());
        started.elapsed()
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1)]
}

/// Writes at a fixed rate to one prefix watched by `watchers` watchers (one stream each); each
/// watcher task notes when each event arrives. Latency = arrival - the moment apply began.
fn delivery(runtime: &tokio::runtime::Runtime, watchers: usize, writes_per_second: u64, duration: Duration) {
    let mut bench = Bench::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(AtomicBool::new(false));
    let received_events = Arc::new(AtomicUsize::new(0));
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let first_revision = bench.store.revision() + 1;
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut stream = bench.hub.open_stream();
        let (latencies, sent_at, lost, received_events) =
            (latencies.clone(), sent_at.clone(), lost.clone(), received_events.clone());
        runtime.block_on(stream.watch(None, WatchRequest::new(KeyRange::prefix(b"/bench/")))).unwrap();
        tasks.push(runtime.spawn(async move {
            let mut next_revision = first_revision;
            let mut local = Vec::new();
            while let Some(response) = stream.recv().await {
                if let ResponseBody::Events(events) = response.body {
                    let arrived = Instant::now();
                    let sent = sent_at.lock().unwrap();
                    for event in events {
                        if event.kv.mod_revision != next_revision {
                            lost.store(true, Ordering::Relaxed);
                        }
                        next_revision = event.kv.mod_revision + 1;
                        local.push(arrived - sent[(event.kv.mod_revision - first_revision) as usize]);
                        received_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().unwrap().extend(local);
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / writes_per_second as f64);
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < duration {
        let due = started + interval * writes as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent_at.lock().unwrap().push(Instant::now());
        bench.put(&format!("/bench/key-{:05}", writes % 10_000));
        writes += 1;
    }
    let expected_events = writes as usize * watchers;
    // Let the last events arrive (bounded wait), then close the streams by dropping the hub.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while received_events.load(Ordering::Relaxed) < expected_events && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(bench);
    for task in tasks {
        runtime.block_on(task).unwrap();
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort();
    let received = all.len();
    println!(
        "delivery: {watchers:>5} watchers at {writes_per_second:>4} writes/s: {writes} writes, {received}/{expected_events} events, p50 {:?}, p99 {:?}, max {:?}{}",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().unwrap(),
        if lost.load(Ordering::Relaxed) || received != expected_events { ", EVENTS LOST" } else { "" }
    );
}

/// Put latency (apply + publish) on a quiet store, then with one watcher whose consumer never
/// reads: apply must not slow down.
fn stalled_watcher_put_latency(runtime: &tokio::runtime::Runtime, duration: Duration) {
    let measure = |bench: &mut Bench| {
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut index = 0u64;
        while started.elapsed() < duration {
            index += 1;
            latencies.push(bench.put(&format!("/bench/key-{:05}", index % 10_000)));
        }
        latencies.sort();
        latencies
    };
    let mut quiet = Bench::new();
    let quiet_latencies = measure(&mut quiet);
    let mut stalled = Bench::new();
    let mut stream = stalled.hub.open_stream();
    runtime.block_on(stream.watch(None, WatchRequest::new(KeyRange::prefix(b"/bench/")))).unwrap();
    let stalled_latencies = measure(&mut stalled);
    let (_, unsynced) = stalled.hub.watcher_counts();
    println!(
        "put with stalled watcher: quiet p50 {:?} p99 {:?} ({} puts); stalled p50 {:?} p99 {:?} ({} puts, watcher moved aside: {}); p99 ratio {:.2}",
        percentile(&quiet_latencies, 0.5),
        percentile(&quiet_latencies, 0.99),
        quiet_latencies.len(),
        percentile(&stalled_latencies, 0.5),
        percentile(&stalled_latencies, 0.99),
        stalled_latencies.len(),
        unsynced == 1,
        percentile(&stalled_latencies, 0.99).as_secs_f64() / percentile(&quiet_latencies, 0.99).as_secs_f64()
    );
    drop(stream);
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// RSS growth for `count` idle watchers, each on its own stream (the costlier layout).
fn memory_per_idle_watcher(runtime: &tokio::runtime::Runtime, count: usize) {
    let bench = Bench::new();
    let before = rss_bytes();
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = bench.hub.open_stream();
        let key = format!("/bench/idle-{index:06}");
        runtime
            .block_on(stream.watch(None, WatchRequest::new(KeyRange::new(&Bytes::from(key), &Bytes::new()))))
            .unwrap();
        // The Created response is consumed, as a real consumer would.
        stream.try_recv();
        streams.push(stream);
    }
    let after = rss_bytes();
    println!(
        "memory: {count} idle watchers (one stream each): RSS +{:.1} MiB, {} bytes per watcher",
        after.saturating_sub(before) as f64 / 1048576.0,
        after.saturating_sub(before) / count as u64
    );
}
