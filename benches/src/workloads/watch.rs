//! `watch`: `--watchers` watchers on one prefix (`--watchers-per-stream` to a gRPC Watch
//! stream, the streams spread over `--conns`), and `--clients` writers putting new keys under
//! the prefix at `--rate` writes/s in all. Each value starts with its send time (nanoseconds
//! since the run began, 20 digits), so a watcher's delivery latency is receipt − send. After the
//! last write the watchers get `--drain-timeout` to receive everything; events lost =
//! acknowledged writes × watchers − events received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions, WatchStream};

use crate::cli::{Common, WatchArgs};
use crate::connections::Connections;
use crate::driver::{drive, Operation, Outcome, Tally};
use crate::report::{Latency, Report, WatchStats};

const STAMP_DIGITS: usize = 20;

struct StampedPut {
    start: Instant,
    prefix: String,
    val_size: usize,
}

impl Operation for StampedPut {
    type Connection = Client;

    async fn run(&self, client: &mut Client, index: u64) -> Outcome {
        let sent = self.start.elapsed().as_nanos();
        let mut value = format!("{sent:0STAMP_DIGITS$}").into_bytes();
        value.resize(self.val_size, b'v');
        client.put(format!("{}{index:012}", self.prefix), value, None).await.into()
    }
}

/// The send time a value carries, as an offset from the run's start.
fn stamp(value: &[u8]) -> Option<Duration> {
    let digits = std::str::from_utf8(value.get(..STAMP_DIGITS)?).ok()?;
    Some(Duration::from_nanos(digits.parse().ok()?))
}

/// Opens a Watch stream with `watchers` watchers on `prefix` and waits until all are created.
async fn open_stream(
    client: &mut Client,
    prefix: &str,
    watchers: u64,
    timeout: Duration,
) -> Result<WatchStream, String> {
    let options = WatchOptions::new().with_prefix();
    let mut stream = client.watch(prefix, Some(options.clone())).await.map_err(|error| error.to_string())?;
    for _ in 1..watchers {
        stream.watch(prefix, Some(options.clone())).await.map_err(|error| error.to_string())?;
    }
    let mut created = 0;
    while created < watchers {
        match tokio::time::timeout(timeout, stream.message()).await {
            Ok(Ok(Some(response))) if response.canceled() => {
                return Err(format!("watch canceled at creation: {}", response.cancel_reason()))
            }
            Ok(Ok(Some(response))) => created += u64::from(response.created()),
            Ok(Ok(None)) => return Err("watch stream closed at creation".to_string()),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("watchers not created within {timeout:?}")),
        }
    }
    Ok(stream)
}

/// Receives on one stream until told to stop; returns delivery latencies and watch errors.
async fn receive(
    mut stream: WatchStream,
    start: Instant,
    received: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            message = stream.message() => match message {
                Ok(Some(response)) => {
                    if response.canceled() {
                        tally.error(format!("watch canceled: {}", response.cancel_reason()));
                        continue;
                    }
                    let now = start.elapsed();
                    for event in response.events() {
                        if event.event_type() != EventType::Put {
                            continue;
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        if let Some(sent) = event.kv().and_then(|kv| stamp(kv.value())) {
                            tally.count(Outcome::Ok, now.saturating_sub(sent));
                        }
                    }
                }
                Ok(None) => {
                    tally.error("watch stream closed".to_string());
                    break;
                }
                Err(error) => {
                    tally.error(format!("watch stream failed: {error}"));
                    break;
                }
            },
        }
    }
    tally
}

pub async fn run(common: &Common, connections: &Connections, args: &WatchArgs) -> Result<Report, String> {
    if args.val_size < STAMP_DIGITS {
        return Err(format!("--val-size must be at least {STAMP_DIGITS} (the send timestamp)"));
    }
    let start = Instant::now();
    let streams = args.watchers.div_ceil(args.watchers_per_stream);
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stop_receiver) = tokio::sync::watch::channel(false);
    let mut receivers = tokio::task::JoinSet::new();
    for index in 0..streams {
        let watchers = args.watchers_per_stream.min(args.watchers - index * args.watchers_per_stream);
        let mut client = connections.get(index);
        let stream = open_stream(&mut client, &args.prefix, watchers, common.request_timeout)
            .await
            .map_err(|error| format!("watch stream {index}: {error}"))?;
        receivers.spawn(receive(stream, start, received.clone(), stop_receiver.clone()));
    }

    let writer = Arc::new(StampedPut { start, prefix: args.prefix.clone(), val_size: args.val_size });
    let writes_began = Instant::now();
    let writes = drive(writer, connections, &super::load(common, 1_000)).await;
    let expected = writes.ops * args.watchers;
    let drain_deadline = Instant::now() + args.drain_timeout;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivery_seconds = writes_began.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let mut delivery = Tally::default();
    while let Some(joined) = receivers.join_next().await {
        match joined {
            Ok(tally) => delivery.merge(tally),
            Err(error) => delivery.error(format!("watch task failed: {error}")),
        }
    }
    let received = received.load(Ordering::Relaxed);

    let mut report = Report::new("watch", common, &writes);
    report.latency_ms = Latency::from(&delivery.latency);
    report.errors = writes.errors + delivery.errors;
    report.error_samples.extend(delivery.error_samples.iter().cloned());
    report.watch = Some(WatchStats {
        watchers: args.watchers,
        streams,
        writes: writes.ops,
        expected_events: expected,
        received_events: received,
        lost_events: expected.saturating_sub(received),
        events_per_sec: received as f64 / delivery_seconds.max(f64::MIN_POSITIVE),
        watch_errors: delivery.errors,
        write_latency_ms: Latency::from(&writes.latency),
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_send_time() {
        let mut value = format!("{:0STAMP_DIGITS$}", 1_234_567_890u64).into_bytes();
        value.resize(256, b'v');
        assert_eq!(stamp(&value), Some(Duration::from_nanos(1_234_567_890)));
        assert_eq!(stamp(b"short"), None);
        assert_eq!(stamp(&[b'x'; 64]), None);
    }
}
