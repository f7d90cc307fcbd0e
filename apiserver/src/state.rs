//! [`ApiState`]: what every handler shares: the storage, one watch cache per resource, and the
//! limits of waiting on them.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{HistoryBound, WatchCache};
use crate::error::{Error, ObjectRef};
use crate::registry::{ResourceInfo, RESOURCES};
use crate::storage::{Storage, StorageError};

#[derive(Debug)]
pub struct ApiState {
    pub storage: Arc<dyn Storage>,
    /// Aligned with [`RESOURCES`].
    caches: Vec<Arc<WatchCache>>,
    /// How long a LIST waits for the cache to reach the revision it must serve, before reading
    /// the store instead.
    pub cache_wait: Duration,
    /// The address clients reach the API on, for discovery's `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// Namespaces deleted a moment ago, whose phase creates read from the store.
    pub namespace_live_lookups: crate::namespaces::LiveLookups,
    /// The ranges Services get cluster IPs and node ports from.
    pub service_network: crate::service_allocation::ServiceNetwork,
    /// Turns true when the server stops, so long-running watches end and shutdown can finish.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl ApiState {
    pub fn new(
        storage: Arc<dyn Storage>,
        history_bound: HistoryBound,
        server_address: String,
        service_network: crate::service_allocation::ServiceNetwork,
    ) -> ApiState {
        let caches = RESOURCES.iter().map(|info| Arc::new(WatchCache::new(info, history_bound))).collect();
        let (stopping, _) = tokio::sync::watch::channel(false);
        ApiState {
            storage,
            caches,
            cache_wait: Duration::from_secs(3),
            server_address,
            namespace_live_lookups: Default::default(),
            service_network,
            stopping,
        }
    }

    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once the server is stopping.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    pub fn cache(&self, info: &ResourceInfo) -> &Arc<WatchCache> {
        let index = RESOURCES
            .iter()
            .position(|candidate| std::ptr::eq(candidate, info))
            .expect("every resource comes from the registry table");
        &self.caches[index]
    }

    pub fn caches(&self) -> &[Arc<WatchCache>] {
        &self.caches
    }
}

/// A storage failure as the API reports it, for the object `object`.
pub fn storage_error(object: ObjectRef, error: StorageError) -> Error {
    match error {
        StorageError::KeyExists => Error::AlreadyExists(object),
        StorageError::KeyNotFound => Error::NotFound(object),
        StorageError::Conflict { .. } | StorageError::ConditionsFailed { .. } => Error::modified(object),
        StorageError::Compacted { .. } => Error::Expired(format!("too old resource version: {error}")),
        StorageError::Unavailable(message) => Error::ServiceUnavailable(message),
        StorageError::NotImplemented(message) => Error::NotImplemented(message),
        StorageError::Internal(message) => Error::Internal(message),
    }
}
