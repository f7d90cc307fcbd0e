//! The plain-HTTP endpoints etcd serves on its client URLs beside gRPC: `/health`, `/version`
//! and Prometheus `/metrics` (etcd's metric names where they exist, so dashboards and `etcdctl
//! check datascale` read them).

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::{Context, EMULATED_ETCD_VERSION};

/// How long /health waits for a linearizable read, as etcd's health check does.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(context: Arc<Context>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .fallback(unimplemented_service)
        .with_state(context)
}

/// Any other path: a gRPC service keel does not serve (Auth, say) gets a gRPC UNIMPLEMENTED
/// that names it, rather than an HTTP 404 clients report as a transport error.
async fn unimplemented_service(uri: http::Uri) -> impl IntoResponse {
    let message = format!("keel: {} is not implemented (see COMPAT.md)", uri.path());
    let headers = [
        (header::CONTENT_TYPE, "application/grpc".to_string()),
        (header::HeaderName::from_static("grpc-status"), "12".to_string()),
        (header::HeaderName::from_static("grpc-message"), message.replace(' ', "%20")),
    ];
    (StatusCode::OK, headers)
}

/// Healthy when the member has a leader and a linearizable read succeeds in time.
async fn health(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let reason = if context.member.leader_id().is_none() {
        Some("RAFT NO LEADER".to_string())
    } else {
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, context.member.read_barrier()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("QGET ERROR: {error}")),
            Err(_) => Some("QGET TIMEOUT".to_string()),
        }
    };
    let (status, body) = match reason {
        None => (StatusCode::OK, r#"{"health":"true","reason":""}"#.to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{}"}}"#, reason.replace('"', "'")),
        ),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn version() -> impl IntoResponse {
    let cluster = EMULATED_ETCD_VERSION.rsplit_once('.').map_or(EMULATED_ETCD_VERSION, |(minor, _)| minor);
    let body = format!(r#"{{"etcdserver":"{EMULATED_ETCD_VERSION}","etcdcluster":"{cluster}.0"}}"#);
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let member = &context.member;
    let status = member.status();
    let store = member.store();
    let (synced, unsynced) = context.hub.watcher_counts();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric(
        "etcd_server_has_leader",
        "gauge",
        "Whether a leader exists (1) or not (0).",
        bool_value(status.leader.is_some()),
    );
    metric(
        "etcd_server_is_leader",
        "gauge",
        "Whether this member is the leader.",
        bool_value(status.leader == Some(member.config.id)),
    );
    metric("etcd_server_is_learner", "gauge", "Whether this member is a learner.", bool_value(status.is_learner));
    metric(
        "etcd_server_proposals_committed_total",
        "gauge",
        "The committed Raft index.",
        status.committed_index.to_string(),
    );
    metric("etcd_server_proposals_applied_total", "gauge", "The applied Raft index.", status.applied_index.to_string());
    metric("etcd_server_term", "gauge", "The Raft term (keel).", status.term.to_string());
    metric("etcd_mvcc_db_total_size_in_bytes", "gauge", "Store size on disk.", store.size_bytes().to_string());
    metric("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge", "Store size in use.", store.size_bytes().to_string());
    metric("etcd_debugging_mvcc_current_revision", "gauge", "The current revision.", store.revision().to_string());
    metric(
        "etcd_debugging_mvcc_compact_revision",
        "gauge",
        "The compacted revision.",
        store.compact_revision().to_string(),
    );
    metric("etcd_debugging_mvcc_watcher_total", "gauge", "Watchers.", (synced + unsynced).to_string());
    metric("etcd_debugging_mvcc_slow_watcher_total", "gauge", "Watchers catching up.", unsynced.to_string());
    if let Some(bytes) = resident_memory_bytes() {
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", bytes.to_string());
    }
    let _ = writeln!(
        out,
        "# HELP etcd_server_version Which version is running.\n# TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{EMULATED_ETCD_VERSION}\"}} 1"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn bool_value(value: bool) -> String {
    u8::from(value).to_string()
}

/// VmRSS from /proc (Linux), in bytes.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
