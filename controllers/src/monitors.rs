//! One watch per collectable resource (kube-runtime's `watcher`, which lists, watches, resumes
//! and lists again after a 410), feeding what it sees into the garbage collector's graph.
//! Resources come from discovery, rerun periodically by the caller: a resource that appears
//! (a CRD, later) gets a monitor, one that is no longer served loses it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::graph::{Identity, Observed};
use crate::resources::Resource;
use crate::Shutdown;

/// Where monitors send what they see.
pub trait GraphFeed: Send + Sync + 'static {
    fn observe(&self, object: Observed);
    fn observed_delete(&self, identity: &Identity);
    /// A full list of `source` ended: objects it had and did not list are gone.
    fn relisted(&self, source: &str, listed_uids: &HashSet<String>);
}

/// The key of a monitor: `plural.group/version`.
pub fn source_of(resource: &Resource) -> String {
    format!("{}.{}/{}", resource.api.plural, resource.api.group, resource.api.version)
}

fn identity_of(resource: &Resource, object: &DynamicObject) -> Option<Identity> {
    let meta = &object.metadata;
    Some(Identity {
        api_version: resource.api.api_version.clone(),
        kind: resource.api.kind.clone(),
        namespace: if resource.namespaced { meta.namespace.clone() } else { None },
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
    })
}

fn observed_of(resource: &Resource, source: &str, object: &DynamicObject) -> Option<Observed> {
    let identity = identity_of(resource, object)?;
    let meta = &object.metadata;
    let finalizers = meta.finalizers.as_deref().unwrap_or(&[]);
    let has = |name: &str| finalizers.iter().any(|finalizer| finalizer == name);
    Some(Observed {
        identity,
        owners: meta.owner_references.clone().unwrap_or_default(),
        being_deleted: meta.deletion_timestamp.is_some(),
        orphan_finalizer: has(crate::garbage_collector::FINALIZER_ORPHAN),
        foreground_finalizer: has(crate::garbage_collector::FINALIZER_FOREGROUND),
        source: source.to_string(),
    })
}

#[derive(Debug)]
struct Monitor {
    task: JoinHandle<()>,
    synced: watch::Receiver<bool>,
}

/// The running monitors, by source.
pub struct Monitors {
    client: Client,
    feed: Arc<dyn GraphFeed>,
    running: HashMap<String, Monitor>,
}

impl std::fmt::Debug for Monitors {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Monitors").field("running", &self.running.keys().collect::<Vec<_>>()).finish()
    }
}

impl Monitors {
    pub fn new(client: Client, feed: Arc<dyn GraphFeed>) -> Monitors {
        Monitors { client, feed, running: HashMap::new() }
    }

    /// Starts a monitor for each collectable resource not watched yet, and stops those of
    /// resources no longer served.
    pub fn sync(&mut self, resources: &[Resource], shutdown: &Shutdown) {
        let wanted: HashMap<String, &Resource> =
            resources.iter().filter(|resource| resource.collectable()).map(|r| (source_of(r), r)).collect();
        self.running.retain(|source, monitor| {
            let keep = wanted.contains_key(source);
            if !keep {
                tracing::info!(source, "resource no longer served; its monitor stops");
                monitor.task.abort();
            }
            keep
        });
        for (source, resource) in wanted {
            if self.running.contains_key(&source) {
                continue;
            }
            let (synced_sender, synced) = watch::channel(false);
            let task = tokio::spawn(monitor(
                self.client.clone(),
                resource.clone(),
                self.feed.clone(),
                synced_sender,
                shutdown.clone(),
            ));
            tracing::debug!(source, "monitor started");
            self.running.insert(source, Monitor { task, synced });
        }
    }

    /// Waits until every monitor has listed its resource once, for at most `timeout`; false if
    /// some had not.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let receivers: Vec<watch::Receiver<bool>> =
            self.running.values().map(|monitor| monitor.synced.clone()).collect();
        let all = async move {
            for mut synced in receivers {
                let _ = synced.wait_for(|synced| *synced).await;
            }
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    pub fn stop_all(&mut self) {
        for (_, monitor) in self.running.drain() {
            monitor.task.abort();
        }
    }
}

/// Watches one resource until shutdown.
async fn monitor(
    client: Client,
    resource: Resource,
    feed: Arc<dyn GraphFeed>,
    synced: watch::Sender<bool>,
    shutdown: Shutdown,
) {
    let source = source_of(&resource);
    let api: Api<DynamicObject> = Api::all_with(client, &resource.api);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Uids listed since the last Init; None outside a list.
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.wait() => break,
            event = stream.next() => event,
        };
        match event {
            None => break,
            Some(Err(error)) => tracing::warn!(source, %error, "watch failed; retrying with backoff"),
            Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(Event::InitApply(object))) => {
                if let Some(observed) = observed_of(&resource, &source, &object) {
                    listed.get_or_insert_with(HashSet::new).insert(observed.identity.uid.clone());
                    feed.observe(observed);
                }
            }
            Some(Ok(Event::InitDone)) => {
                feed.relisted(&source, &listed.take().unwrap_or_default());
                synced.send_replace(true);
            }
            Some(Ok(Event::Apply(object))) => {
                if let Some(observed) = observed_of(&resource, &source, &object) {
                    feed.observe(observed);
                }
            }
            Some(Ok(Event::Delete(object))) => {
                if let Some(identity) = identity_of(&resource, &object) {
                    feed.observed_delete(&identity);
                }
            }
        }
    }
    tracing::debug!(source, "monitor stopped");
}
