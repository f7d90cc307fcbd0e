//! Periodic compaction, as kube-apiserver does it (`--etcd-compaction-interval`): at every tick,
//! compact to the revision seen one interval earlier, so a client that listed within the last
//! interval can still continue its pages or resume its watch from store history.

use std::sync::Arc;
use std::time::Duration;

use crate::storage::Storage;

pub async fn run(storage: Arc<dyn Storage>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut previous = 0i64;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if previous > 0 {
            match storage.compact(previous).await {
                Ok(()) => tracing::info!(revision = previous, "compacted the store"),
                Err(error) => tracing::warn!(revision = previous, %error, "compaction failed"),
            }
        }
        match storage.current_revision().await {
            Ok(revision) => previous = revision,
            Err(error) => tracing::warn!(%error, "reading the revision for the next compaction failed"),
        }
    }
}
