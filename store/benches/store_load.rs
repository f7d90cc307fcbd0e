//! Store figures criterion does not measure: memory for 1M keys, and compaction of 1M revisions
//! with the put latency seen while it runs, against the same put loop on a quiet store.
//!
//! `cargo bench -p store --bench store_load` (`KEEL_BENCH_KEYS` scales the key count down for a
//! quick run; the figures in BENCHMARKS.md use the default, 1,000,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::{Command, Durability, PutRequest, RangeRequest, RocksEngine, RocksOptions, Store, StoreOptions};

fn main() {
    let keys: u64 = std::env::var("KEEL_BENCH_KEYS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    // KEEL_BENCH_ONLY=compaction skips the memory figures.
    if std::env::var("KEEL_BENCH_ONLY").as_deref() != Ok("compaction") {
        memory_for_keys(keys);
    }
    compaction_under_writes(keys);
}

fn open(dir: &std::path::Path, durability: Durability) -> Store {
    let engine = RocksEngine::open(dir, &RocksOptions::default()).unwrap();
    let mut options = StoreOptions { durability, ..StoreOptions::default() };
    // Compaction tuning under test: KEEL_COMPACTION_BATCH_KEYS, KEEL_COMPACTION_PAUSE_MS.
    let setting = |name: &str| std::env::var(name).ok().and_then(|value| value.parse().ok());
    if let Some(keys) = setting("KEEL_COMPACTION_BATCH_KEYS") {
        options.compaction.batch_keys_max = keys as usize;
    }
    if let Some(pause) = setting("KEEL_COMPACTION_PAUSE_MS") {
        options.compaction.pause_between_batches_ms = pause;
    }
    Store::open(Arc::new(engine), options).unwrap()
}

fn put(key: String, value: &Bytes) -> Command {
    Command::Put(PutRequest { key: Bytes::from(key), value: value.clone(), ..PutRequest::default() })
}

/// Resident and peak memory of this process, in bytes, from /proc.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn load(store: &Store, keys: u64, value: &Bytes, position: &mut u64) {
    for start in (0..keys).step_by(1000) {
        let commands: Vec<Command> = (start..(start + 1000).min(keys))
            .map(|index| put(format!("/registry/pods/ns/pod-{index:08}"), value))
            .collect();
        *position += 1;
        store.apply(&commands, &position.to_be_bytes()).unwrap();
    }
}

fn memory_for_keys(keys: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (rss_before, _) = rss();
    let store = open(dir.path(), Durability::Buffered);
    let value = Bytes::from(vec![b'x'; 256]);
    let started = Instant::now();
    let mut position = 0;
    load(&store, keys, &value, &mut position);
    let load_seconds = started.elapsed().as_secs_f64();
    let (rss_after, peak) = rss();
    // A keys-only range of everything, encoded as it streams (key plus four varint fields,
    // the shape of etcd's protobuf KeyValue), as the etcd API will serve it.
    let request = RangeRequest {
        key: Bytes::from_static(b"/registry/pods/"),
        range_end: Bytes::from_static(b"/registry/pods0"),
        keys_only: true,
        ..RangeRequest::default()
    };
    let started = Instant::now();
    let mut reply = Vec::new();
    let summary = store
        .range_into(&request, &mut |kv| {
            reply.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
            reply.extend_from_slice(&kv.key);
            for field in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                let mut value = field as u64;
                while value >= 0x80 {
                    reply.push(value as u8 | 0x80);
                    value >>= 7;
                }
                reply.push(value as u8);
            }
            Ok(())
        })
        .unwrap();
    let range_seconds = started.elapsed().as_secs_f64();
    let (_, peak_after_range) = rss();
    assert_eq!(summary.count as u64, keys);
    let reply_bytes = reply.len();
    println!(
        "memory: {keys} keys of 256-byte values loaded in {load_seconds:.1} s ({:.0} puts/s, batches of 1000)",
        keys as f64 / load_seconds
    );
    println!(
        "memory: RSS +{:.1} MiB ({:.0} bytes/key), peak {:.1} MiB; on disk {:.1} MiB",
        (rss_after.saturating_sub(rss_before)) as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / keys as f64,
        peak as f64 / 1048576.0,
        store.size_bytes() as f64 / 1048576.0
    );
    println!(
        "memory: keys-only range of all {keys} keys, encoded as it streams: {range_seconds:.2} s, reply {:.1} MiB, peak RSS growth {:.1} MiB",
        reply_bytes as f64 / 1048576.0,
        peak_after_range.saturating_sub(peak) as f64 / 1048576.0
    );
}

/// p50, p99 and max of put latencies in microseconds.
fn percentiles(mut latencies: Vec<Duration>) -> (u128, u128, u128) {
    latencies.sort();
    let at =
        |fraction: f64| latencies[((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1)].as_micros();
    (at(0.5), at(0.99), latencies.last().unwrap().as_micros())
}

/// Puts one key at a time, fsync on, for `duration` or until `stop`.
fn put_loop(store: &Store, position: &mut u64, stop: &AtomicBool, duration: Duration) -> Vec<Duration> {
    let value = Bytes::from(vec![b'y'; 256]);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut index = 0u64;
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        index += 1;
        *position += 1;
        let command = put(format!("/registry/leases/l-{:04}", index % 1000), &value);
        let begun = Instant::now();
        store.apply(&[command], &position.to_be_bytes()).unwrap();
        latencies.push(begun.elapsed());
    }
    latencies
}

fn compaction_under_writes(keys: u64) {
    let dir = tempfile::tempdir().unwrap();
    // fsync on every apply, as a standalone store runs: the put loop measures what a client sees.
    let store = open(dir.path(), Durability::Sync);
    let value = Bytes::from(vec![b'x'; 256]);
    let mut position = 0;
    // `keys` revisions: 10 versions each of keys/10 keys, so compaction removes 90% of them.
    let distinct = (keys / 10).max(1);
    for _round in 0..10 {
        load(&store, distinct, &value, &mut position);
    }
    let revisions = store.revision() - 1;
    let never = AtomicBool::new(false);
    let quiet_latencies = put_loop(&store, &mut position, &never, Duration::from_secs(5));
    let quiet_puts = quiet_latencies.len();
    let quiet = percentiles(quiet_latencies);
    let size_before = store.size_bytes();
    let compaction_done = AtomicBool::new(false);
    position += 1;
    let revision = store.revision();
    let started = Instant::now();
    store.apply(&[Command::Compact { revision }], &position.to_be_bytes()).unwrap();
    let (during, compaction_seconds) = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            store.wait_for_compaction().unwrap();
            compaction_done.store(true, Ordering::Relaxed);
            started.elapsed().as_secs_f64()
        });
        let latencies = put_loop(&store, &mut position, &compaction_done, Duration::from_secs(600));
        (latencies, waiter.join().unwrap())
    });
    let during_stats = percentiles(during.clone());
    println!("compaction: {revisions} revisions ({distinct} keys x 10 versions) compacted in {compaction_seconds:.1} s; store {:.1} MiB before", size_before as f64 / 1048576.0);
    println!(
        "compaction: put (fsync) latency quiet p50 {} us, p99 {} us, max {} us ({quiet_puts} puts over 5 s)",
        quiet.0, quiet.1, quiet.2
    );
    println!(
        "compaction: put (fsync) latency while compacting p50 {} us, p99 {} us, max {} us ({} puts); p99 ratio {:.2}",
        during_stats.0,
        during_stats.1,
        during_stats.2,
        during.len(),
        during_stats.1 as f64 / quiet.1 as f64
    );
}
