//! HTTP/1.1 to the Kubernetes API: JSON requests whose answer is read whole, and watch streams
//! whose events are counted as they arrive. One connection per request in flight (hyper's pool).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Clone, Debug)]
pub struct ApiClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, no trailing slash.
    base: String,
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl ApiClient {
    pub fn new(base: &str, idle_connections_max: usize) -> ApiClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle_connections_max).build(connector);
        ApiClient { client, base: base.trim_end_matches('/').to_string() }
    }

    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut request = hyper::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .header("accept", "application/json")
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|error| error.to_string())?;
        self.client.request(request).await.map_err(|error| format!("{path}: {error}"))
    }

    pub async fn request(&self, method: hyper::Method, path: &str, body: Option<Bytes>) -> Result<Answer, String> {
        let response = self.send(method, path, body).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|error| format!("{path}: {error}"))?.to_bytes();
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.request(hyper::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Bytes) -> Result<Answer, String> {
        self.request(hyper::Method::POST, path, Some(body)).await
    }

    /// Opens a watch (`path` has `watch=1`) and counts its event lines into `events` until the
    /// stream ends. Returns once the server has answered the request's headers.
    pub async fn watch(&self, path: &str, events: Arc<AtomicU64>) -> Result<tokio::task::JoinHandle<()>, String> {
        let response = self.send(hyper::Method::GET, path, None).await?;
        if !response.status().is_success() {
            return Err(format!("{path}: HTTP {}", response.status()));
        }
        let mut body = response.into_body();
        Ok(tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    let lines = data.iter().filter(|byte| **byte == b'\n').count() as u64;
                    events.fetch_add(lines, Ordering::Relaxed);
                }
            }
        }))
    }
}
