//! The benchmark's phases, in order: create (measured), fill (to the LIST's size), open the
//! watchers, then consistent LISTs, whole and paginated, while a trickle of creates keeps the
//! watchers busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::client::ApiClient;
use super::report::{CreateFigures, ListFigures, WatchFigures};
use super::rss::{status_bytes, RssSampler};
use crate::histogram::Histogram;
use crate::report::Latency;

/// Watch requests opened at once while the watchers start.
const WATCH_OPEN_CONCURRENCY: usize = 50;

/// What a LIST answer is read for: its items are counted, not kept.
#[derive(Deserialize)]
struct ListAnswer {
    metadata: ListMetadata,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMetadata {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

fn parse_list(body: &[u8]) -> Result<ListAnswer, String> {
    serde_json::from_slice(body).map_err(|error| format!("a LIST answer is not a list: {error}"))
}

pub async fn ensure_namespace(client: &ApiClient, namespace: &str) -> Result<(), String> {
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let answer = client.post("/api/v1/namespaces", bytes::Bytes::from(body.to_string())).await?;
    match answer.status {
        201 | 409 => Ok(()),
        status => {
            Err(format!("creating namespace {namespace}: HTTP {status}: {}", String::from_utf8_lossy(&answer.body)))
        }
    }
}

/// Creates pods `prefix-{first..first+count}` from `clients` concurrent tasks.
pub async fn create_pods(
    client: &ApiClient,
    namespace: &str,
    prefix: &str,
    first: u64,
    count: u64,
    clients: u64,
) -> Result<CreateFigures, String> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + count;
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (client, next, path, namespace, prefix) =
            (client.clone(), next.clone(), path.clone(), namespace.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= end {
                    break;
                }
                let body = super::pod::pod(&namespace, &format!("{prefix}-{index:07}"), index);
                let sent = Instant::now();
                match client.post(&path, body).await {
                    Ok(answer) if answer.status == 201 => histogram.record_duration(sent.elapsed()),
                    Ok(answer) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("HTTP {}: {}", answer.status, String::from_utf8_lossy(&answer.body))
                        });
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (histogram, errors, first_error)
        }));
    }
    let mut histogram = Histogram::new();
    let mut errors = 0;
    for task in tasks {
        let (theirs, their_errors, first_error) = task.await.map_err(|error| error.to_string())?;
        histogram.merge(&theirs);
        errors += their_errors;
        if let Some(error) = first_error {
            eprintln!("keel-apiserver-bench: a create failed: {error}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(CreateFigures {
        pods: histogram.count(),
        errors,
        seconds,
        objects_per_second: histogram.count() as f64 / seconds,
        latency: Latency::from(&histogram),
        ..CreateFigures::default()
    })
}

/// The watchers: each a watch of the namespace's pods from the current resourceVersion.
#[derive(Debug)]
pub struct Watchers {
    pub events: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub seconds_to_open: f64,
}

impl Watchers {
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

pub async fn open_watchers(client: &ApiClient, namespace: &str, count: u64) -> Result<Watchers, String> {
    let answer = client.get(&format!("/api/v1/namespaces/{namespace}/pods?limit=1")).await?;
    let revision = parse_list(&answer.body)?.metadata.resource_version;
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={revision}&allowWatchBookmarks=true&timeoutSeconds=3600"
    );
    let events = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut remaining = count;
    while remaining > 0 {
        let batch = remaining.min(WATCH_OPEN_CONCURRENCY as u64);
        let opens: Vec<_> = (0..batch)
            .map(|_| {
                let (client, path, events) = (client.clone(), path.clone(), events.clone());
                tokio::spawn(async move { client.watch(&path, events).await })
            })
            .collect();
        for open in opens {
            tasks.push(open.await.map_err(|error| error.to_string())??);
        }
        remaining -= batch;
    }
    Ok(Watchers { events, tasks, seconds_to_open: started.elapsed().as_secs_f64() })
}

/// Creates pods at `per_second` until stopped; answers how many it created.
pub fn start_churn(
    client: &ApiClient,
    namespace: &str,
    per_second: u64,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (client, namespace) = (client.clone(), namespace.to_string());
    let task = tokio::spawn(async move {
        if per_second == 0 {
            return 0;
        }
        let path = format!("/api/v1/namespaces/{namespace}/pods");
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
        let mut created = 0u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.changed() => return created,
            }
            let body = super::pod::pod(&namespace, &format!("churn-{created:07}"), created);
            if matches!(client.post(&path, body).await, Ok(answer) if answer.status == 201) {
                created += 1;
            }
        }
    });
    (stop, task)
}

/// `repeats` consistent LISTs (resourceVersion unset) of the namespace's pods, whole
/// (`page_size` 0) or page by page.
pub async fn list_pods(
    client: &ApiClient,
    namespace: &str,
    repeats: u64,
    page_size: u64,
    server_pid: Option<u32>,
) -> Result<ListFigures, String> {
    let mut whole = Histogram::new();
    let mut pages = Histogram::new();
    let mut figures = ListFigures {
        repeats,
        rss_before_bytes: server_pid.and_then(|pid| status_bytes(pid, "VmRSS:")).unwrap_or(0),
        ..ListFigures::default()
    };
    let sampler = RssSampler::start(server_pid);
    for _ in 0..repeats {
        let started = Instant::now();
        let mut items = 0u64;
        let mut json_bytes = 0u64;
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/namespaces/{namespace}/pods");
            if page_size > 0 {
                path.push_str(&format!("?limit={page_size}"));
                if let Some(token) = &token {
                    path.push_str(&format!("&continue={}", query_escape(token)));
                }
            }
            let page_started = Instant::now();
            let answer = client.get(&path).await?;
            if answer.status != 200 {
                return Err(format!("LIST {path}: HTTP {}: {}", answer.status, String::from_utf8_lossy(&answer.body)));
            }
            pages.record_duration(page_started.elapsed());
            json_bytes += answer.body.len() as u64;
            let list = parse_list(&answer.body)?;
            items += list.items.len() as u64;
            match list.metadata.continue_token.filter(|token| !token.is_empty()) {
                Some(next) if page_size > 0 => token = Some(next),
                _ => break,
            }
        }
        whole.record_duration(started.elapsed());
        figures.items = items;
        figures.json_bytes = json_bytes;
    }
    figures.rss_peak_bytes = sampler.finish().await;
    figures.latency = Latency::from(&whole);
    if page_size > 0 {
        figures.page_latency = Some(Latency::from(&pages));
    }
    Ok(figures)
}

pub fn watch_figures(watchers: &Watchers, count: u64, churn_creates: u64) -> WatchFigures {
    WatchFigures {
        watchers: count,
        seconds_to_open: watchers.seconds_to_open,
        churn_creates,
        events_received: watchers.events.load(Ordering::Relaxed),
    }
}

/// Percent-encodes what a continue token (base64) may hold that a query cannot.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
