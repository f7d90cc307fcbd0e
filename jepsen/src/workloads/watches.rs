//! Watches: writers put unique values on a few keys under a prefix while one watcher per member
//! watches the prefix from the revision the run started at. A watcher whose stream breaks (or is
//! cancelled) reconnects to its member and resumes from its last revision + 1. After the main
//! phase the final revision is read, every watcher is drained up to it, and the checker
//! (`jepsen::watches`) compares the watchers with each other and with the acknowledged writes;
//! besides, a sample of revisions is read back with `Range(revision = r, mod_revision = r)`,
//! the final history, and must match what the watchers received at r.
//!
//! Meanwhile a compactor compacts history every few seconds, up to the revision every watcher
//! has already received: watches resumed after a break then start just above a compaction, and
//! streams in flight run while compactions remove the history behind them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use jepsen::history::{Key, Op, Operation, Value};
use jepsen::watches::WatchEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::{Ctx, Extra, Process};
use crate::client::{connect, revision, timed};
use crate::report::Verdict;

const PREFIX: &str = "/jepsen/watch/";

/// What the watchers received, and the bounds they were checked against.
#[derive(Debug, Default)]
pub struct Observed {
    pub events: Vec<Vec<WatchEvent>>,
    pub start: i64,
    pub end: i64,
    pub reconnects: u64,
    /// Disagreements of the sampled revisions with the final history.
    pub range_problems: Vec<String>,
    pub ranges_checked: usize,
    /// Compactions done during the run, and the last revision compacted.
    pub compactions: u64,
    pub compacted: i64,
}

fn etcd_key(key: Key) -> String {
    format!("{PREFIX}{key:04}")
}

fn parse_key(key: &[u8]) -> Option<Key> {
    std::str::from_utf8(key).ok()?.strip_prefix(PREFIX)?.parse().ok()
}

fn parse_value(value: &[u8]) -> Option<Value> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The current revision, by a linearizable read on any member.
async fn current_revision(endpoints: &[String]) -> Result<i64, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for endpoint in endpoints {
            let mut client = connect(endpoint).await;
            if let Ok(response) =
                timed(client.get(PREFIX, Some(GetOptions::new().with_prefix().with_count_only()))).await
            {
                if let Some(revision) = revision(response.header()) {
                    return Ok(revision);
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no member answered a read for a minute".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Watcher {
    events: Mutex<Vec<WatchEvent>>,
    next: AtomicI64,
    reconnects: AtomicU64,
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Extra, String> {
    let start = current_revision(&ctx.endpoints).await?;
    // Watchers run until they have reached `target` (set after the writes) or `give_up`.
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let watchers: Vec<Arc<Watcher>> = (0..ctx.endpoints.len())
        .map(|_| {
            Arc::new(Watcher {
                events: Mutex::new(Vec::new()),
                next: AtomicI64::new(start + 1),
                reconnects: AtomicU64::new(0),
            })
        })
        .collect();
    let give_up = Arc::new(Mutex::new(None::<Instant>));
    let mut watch_tasks = Vec::new();
    for (index, watcher) in watchers.iter().enumerate() {
        let endpoint = ctx.endpoints[index].clone();
        let clock = ctx.recorder.clock();
        let (watcher, target, give_up) = (watcher.clone(), target.clone(), give_up.clone());
        watch_tasks.push(tokio::spawn(async move {
            loop {
                let done = watcher.next.load(Ordering::SeqCst) > target.load(Ordering::SeqCst)
                    || give_up.lock().unwrap().is_some_and(|at| Instant::now() > at);
                if done {
                    return;
                }
                let mut client = connect(&endpoint).await;
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(watcher.next.load(Ordering::SeqCst))
                    .with_progress_notify();
                let stream = tokio::time::timeout(Duration::from_secs(3), client.watch(PREFIX, Some(options))).await;
                let Ok(Ok(mut stream)) = stream else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    watcher.reconnects.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                loop {
                    let message = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
                    let done = watcher.next.load(Ordering::SeqCst) > target.load(Ordering::SeqCst)
                        || give_up.lock().unwrap().is_some_and(|at| Instant::now() > at);
                    if done {
                        return;
                    }
                    let response = match message {
                        Err(_) => continue,
                        Ok(Ok(Some(response))) => response,
                        Ok(_) => break,
                    };
                    let mut events = watcher.events.lock().unwrap();
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let time_ns = clock.now_ns();
                        let (Some(key), value) = (parse_key(kv.key()), parse_value(kv.value())) else { continue };
                        let value = if event.event_type() == EventType::Delete { None } else { value };
                        events.push(WatchEvent {
                            watcher: index as u64,
                            revision: kv.mod_revision(),
                            key,
                            value,
                            time_ns,
                        });
                        watcher.next.fetch_max(kv.mod_revision() + 1, Ordering::SeqCst);
                    }
                    drop(events);
                    if response.canceled() {
                        break;
                    }
                }
                watcher.reconnects.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    let compactor = tokio::spawn(compact_behind(ctx.clone(), watchers.clone()));
    let values = Arc::new(AtomicU64::new(1));
    let mut writers = Vec::new();
    for index in 0..ctx.concurrency {
        let (ctx, values) = (ctx.clone(), values.clone());
        writers.push(tokio::spawn(async move {
            let mut client = connect(&ctx.endpoints[index % ctx.endpoints.len()]).await;
            let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(index as u64));
            let mut process = Process::new(index as u64, ctx.concurrency as u64, ctx.recorder.clone());
            while !ctx.stopped() {
                ctx.pace(&mut rng, &mut process).await;
                let key = rng.gen_range(0..10);
                let value = values.fetch_add(1, Ordering::SeqCst);
                let op = Op::Write { key, value };
                process.invoke(&op);
                match timed(client.put(etcd_key(key), value.to_string(), None)).await {
                    Ok(response) => process.ok(&op, revision(response.header())),
                    Err(failure) => process.failed(&op, &failure, false),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.map_err(|error| error.to_string())?;
    }
    let (compactions, compacted) = compactor.await.map_err(|error| error.to_string())?;
    let end = current_revision(&ctx.endpoints).await?;
    target.store(end, Ordering::SeqCst);
    *give_up.lock().unwrap() = Some(Instant::now() + Duration::from_secs(60));
    for task in watch_tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    let mut observed = Observed { start, end, compactions, compacted, ..Observed::default() };
    for watcher in &watchers {
        observed.events.push(std::mem::take(&mut *watcher.events.lock().unwrap()));
        observed.reconnects += watcher.reconnects.load(Ordering::SeqCst);
    }
    check_ranges(&ctx, &mut observed).await;
    Ok(Extra::Watch(observed))
}

/// Through the faulted phase: every 2 to 4 s, compacts to the revision every watcher has
/// received (when that moved on by 10 or more). The quiet phase's revisions stay, for the
/// Range read-back. Returns the number of compactions and the last revision compacted.
async fn compact_behind(ctx: Arc<Ctx>, watchers: Vec<Arc<Watcher>>) -> (u64, i64) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ 0x0063_6f6d_7061_6374);
    let (mut compactions, mut compacted) = (0, 0);
    while Instant::now() < ctx.faults_until && !ctx.stopped() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2000..4000))).await;
        let received = watchers.iter().map(|w| w.next.load(Ordering::SeqCst) - 1).min().unwrap_or(0);
        if received < compacted + 10 {
            continue;
        }
        let endpoint = &ctx.endpoints[rng.gen_range(0..ctx.endpoints.len())];
        let mut client = connect(endpoint).await;
        // A failed compaction (a fault) is tried again next time; it is not what is checked.
        if timed(client.compact(received, None)).await.is_ok() {
            compactions += 1;
            compacted = received;
        }
    }
    (compactions, compacted)
}

/// Reads up to 200 revisions of the final history above the last compaction back and compares
/// them with watcher 0.
async fn check_ranges(ctx: &Ctx, observed: &mut Observed) {
    let by_revision: BTreeMap<i64, &WatchEvent> = observed.events[0].iter().map(|e| (e.revision, e)).collect();
    let first = observed.start.max(observed.compacted) + 1;
    let span = (observed.end - first + 1).max(0);
    let step = (span / 200).max(1);
    let mut client = connect(&ctx.endpoints[0]).await;
    let mut revision = first;
    while revision <= observed.end {
        let options = GetOptions::new()
            .with_prefix()
            .with_revision(revision)
            .with_min_mod_revision(revision)
            .with_max_mod_revision(revision);
        match timed(client.get(PREFIX, Some(options))).await {
            Ok(response) => {
                observed.ranges_checked += 1;
                let history: Vec<(Option<Key>, Option<Value>)> =
                    response.kvs().iter().map(|kv| (parse_key(kv.key()), parse_value(kv.value()))).collect();
                let watched: Vec<(Option<Key>, Option<Value>)> =
                    by_revision.get(&revision).map(|e| vec![(Some(e.key), e.value)]).unwrap_or_default();
                if history != watched {
                    observed.range_problems.push(format!(
                        "revision {revision}: Range at that revision has {history:?}, watcher 0 received {watched:?}"
                    ));
                }
            }
            Err(failure) => observed.range_problems.push(format!("revision {revision}: {}", failure.message())),
        }
        revision += step;
    }
}

pub fn check(ops: &[Operation], observed: &Observed) -> Vec<Verdict> {
    let report = jepsen::watches::check(&observed.events, observed.start, observed.end, ops);
    let watch = if report.is_valid() {
        Verdict::ok(
            "watch",
            format!(
                "{} watchers, {} events each over revisions {}..={}: ordered, unique, gap-free, agreeing, every acknowledged put seen ({} reconnects, {} compactions up to {})",
                report.watchers,
                report.events / report.watchers.max(1),
                observed.start + 1,
                observed.end,
                observed.reconnects,
                observed.compactions,
                observed.compacted
            ),
        )
    } else {
        Verdict::fail("watch", format!("{} problems: {}", report.problem_count, report.problems.join("; ")))
    };
    let ranges = if observed.range_problems.is_empty() {
        Verdict::ok(
            "watch-vs-range",
            format!("{} sampled revisions match Range at that revision", observed.ranges_checked),
        )
    } else {
        Verdict::fail(
            "watch-vs-range",
            format!(
                "{} of {} sampled revisions differ: {}",
                observed.range_problems.len(),
                observed.ranges_checked,
                observed.range_problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
        )
    };
    vec![watch, ranges]
}
