//! The run's figures, as one human summary and as JSON (`--json`), which
//! `scripts/bench-apiserver` turns into its side-by-side table.

use serde::Serialize;

use crate::report::Latency;

/// Creates of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateFigures {
    pub pods: u64,
    pub errors: u64,
    pub seconds: f64,
    pub objects_per_second: f64,
    pub latency: Latency,
    /// CPU time per object of the apiserver, and of the store when it is another process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_object: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_cpu_us_per_object: Option<f64>,
}

/// Repeated LISTs of the whole collection (paginated or not).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListFigures {
    pub repeats: u64,
    /// Items of the last LIST.
    pub items: u64,
    /// Bytes of JSON of one whole LIST (all pages together when paginated).
    pub json_bytes: u64,
    /// Latency of one whole LIST (all its pages).
    pub latency: Latency,
    /// Paginated only: latency of one page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_latency: Option<Latency>,
    /// The server's VmRSS before the LISTs, and its peak while they ran.
    pub rss_before_bytes: u64,
    pub rss_peak_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchFigures {
    pub watchers: u64,
    pub seconds_to_open: f64,
    /// Pods created while the LISTs ran, so that the watchers have something to deliver.
    pub churn_creates: u64,
    /// Events (bookmarks included) the watchers received in all.
    pub events_received: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiserverReport {
    pub label: String,
    pub command: String,
    pub create: CreateFigures,
    pub fill: CreateFigures,
    pub watch: WatchFigures,
    pub list_whole: ListFigures,
    pub list_paginated: ListFigures,
    /// VmHWM of the server (and of the store process, when separate) at the end.
    pub server_hwm_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_hwm_bytes: Option<u64>,
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl ApiserverReport {
    pub fn human(&self) -> String {
        let create = |name: &str, figures: &CreateFigures| {
            let mut line = format!(
                "{name}: {} pods in {:.1} s, {:.0} objects/s, p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {} errors",
                figures.pods,
                figures.seconds,
                figures.objects_per_second,
                figures.latency.p50,
                figures.latency.p99,
                figures.latency.max,
                figures.errors
            );
            if let Some(micros) = figures.server_cpu_us_per_object {
                line += &format!("; apiserver CPU {micros:.0} µs/object");
            }
            if let Some(micros) = figures.store_cpu_us_per_object {
                line += &format!(", store CPU {micros:.0} µs/object");
            }
            line + "\n"
        };
        let list = |name: &str, figures: &ListFigures| {
            let mut line = format!(
                "{name}: {} items, {} of JSON, {} LISTs: p50 {:.0} ms p99 {:.0} ms max {:.0} ms; server RSS {} before, peak {} ({:.2}× the JSON)",
                figures.items,
                mib(figures.json_bytes),
                figures.repeats,
                figures.latency.p50,
                figures.latency.p99,
                figures.latency.max,
                mib(figures.rss_before_bytes),
                mib(figures.rss_peak_bytes),
                figures.rss_peak_bytes as f64 / figures.json_bytes.max(1) as f64,
            );
            if let Some(page) = &figures.page_latency {
                line.push_str(&format!("; a page: p50 {:.1} ms p99 {:.1} ms", page.p50, page.p99));
            }
            line + "\n"
        };
        let mut text = format!("== {}\n", self.label);
        text.push_str(&create("create", &self.create));
        text.push_str(&create("fill", &self.fill));
        text.push_str(&format!(
            "watch: {} watchers opened in {:.1} s; {} pods created during the LISTs, {} events received\n",
            self.watch.watchers, self.watch.seconds_to_open, self.watch.churn_creates, self.watch.events_received
        ));
        text.push_str(&list("LIST whole", &self.list_whole));
        text.push_str(&list("LIST paginated", &self.list_paginated));
        text.push_str(&format!("server VmHWM {}", mib(self.server_hwm_bytes)));
        if let Some(store) = self.store_hwm_bytes {
            text.push_str(&format!(", store VmHWM {}", mib(store)));
        }
        text
    }
}
