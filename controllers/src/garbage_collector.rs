//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! `foregroundDeletion` and `orphan` finalizers the apiserver puts on an object deleted with
//! those propagation policies (kube-controller-manager's `garbagecollector` package).
//!
//! The graph (`graph.rs`) decides *when* to look at an object, from what the monitors saw; the
//! workers here decide *what* to do from live reads, never from the graph alone, since the
//! graph may lag: an owner counts as gone only when a GET of its coordinates answers 404 or an
//! object with another uid (a namesake recreated since does not count).
//!
//! `AttemptToDelete(object)`:
//! 1. read it live; gone → tell the graph (its dependents are queued);
//! 2. an owner deleting its dependents (`foregroundDeletion`): remove the finalizer once no
//!    dependent with `blockOwnerDeletion: true` is left, else queue those dependents;
//! 3. else classify each of its owners by a live read: *solid* (exists), *dangling* (gone), or
//!    *waiting* (being deleted in the foreground);
//!    - some solid: keep it; drop the references to dangling and waiting owners;
//!    - some waiting and it has dependents itself: delete it in the foreground too;
//!    - otherwise: delete it (with the policy its own finalizers name, else background).
//!
//! `AttemptToOrphan(owner)`: remove the reference to the owner from each of its dependents,
//! then the owner's `orphan` finalizer.
//!
//! Every write is conditional (a uid precondition, the resourceVersion read), and 404 and 409
//! answers mean "already done" and "read again": two collectors, or a collector and a user,
//! can race without harm.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::graph::{Graph, Identity, Node, Observed, Work};
use crate::monitors::{GraphFeed, Monitors};
use crate::resources::Resources;
use crate::work_queue::WorkQueue;
use crate::Shutdown;

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Workers processing the queue at once (kube-controller-manager's `--concurrent-gc-syncs` is 20;
/// keel's API is in the same process).
const WORKERS: usize = 4;
/// How often discovery runs again, to watch resources added since.
const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// How long the workers wait for every monitor's first list before they start anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a read-modify-write (a finalizer, ownerReferences) that loses races.
const PATCH_ATTEMPTS_MAX: usize = 5;
/// Delay between failed first discoveries.
const DISCOVERY_RETRY: Duration = Duration::from_secs(1);

/// What processing a work item asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Look again later (a virtual owner that exists but no monitor has reported yet).
    Requeue,
}

/// An object's owners, as live reads found them.
#[derive(Debug, Default)]
struct Classified {
    solid: Vec<OwnerReference>,
    dangling: Vec<OwnerReference>,
    waiting: Vec<OwnerReference>,
}

pub struct GarbageCollector {
    client: Client,
    resources: Arc<Resources>,
    /// Held only for graph calls, never across an await.
    graph: Mutex<Graph>,
    queue: WorkQueue<Work>,
}

impl std::fmt::Debug for GarbageCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("GarbageCollector").field("queue", &self.queue.len()).finish_non_exhaustive()
    }
}

impl GraphFeed for GarbageCollector {
    fn observe(&self, object: Observed) {
        let work = self.lock_graph().observe(object);
        self.enqueue(work);
    }

    fn observed_delete(&self, identity: &Identity) {
        let work = self.lock_graph().observed_delete(identity);
        self.enqueue(work);
    }

    fn relisted(&self, source: &str, listed_uids: &HashSet<String>) {
        let work = self.lock_graph().relisted(source, listed_uids);
        self.enqueue(work);
    }
}

fn has_finalizer(object: &DynamicObject, finalizer: &str) -> bool {
    object.metadata.finalizers.as_deref().unwrap_or(&[]).iter().any(|present| present == finalizer)
}

fn uid_of(object: &DynamicObject) -> &str {
    object.metadata.uid.as_deref().unwrap_or("")
}

fn resource_version_of(object: &DynamicObject) -> Option<String> {
    object.metadata.resource_version.clone()
}

/// The list a merge patch sets: absent when empty.
fn list_or_null<T: serde::Serialize>(list: &[T]) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

impl GarbageCollector {
    pub fn new(client: Client, resources: Arc<Resources>) -> GarbageCollector {
        GarbageCollector { client, resources, graph: Mutex::new(Graph::new()), queue: WorkQueue::new() }
    }

    fn lock_graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().expect("the graph is never poisoned")
    }

    fn enqueue(&self, work: Vec<Work>) {
        for item in work {
            self.queue.add(item);
        }
    }

    /// The API of `identity`'s resource, in its namespace if the resource is namespaced; None
    /// when a namespaced resource has no namespace to look in.
    async fn api_for(&self, identity: &Identity) -> Result<Option<Api<DynamicObject>>> {
        let resource = self.resources.resolve(&identity.api_version, &identity.kind).await?;
        if !resource.namespaced {
            return Ok(Some(Api::all_with(self.client.clone(), &resource.api)));
        }
        Ok(identity
            .namespace
            .as_deref()
            .map(|namespace| Api::namespaced_with(self.client.clone(), namespace, &resource.api)))
    }

    /// The object at `identity` if it is still the one with its uid.
    async fn get_live(&self, identity: &Identity) -> Result<Option<DynamicObject>> {
        let Some(api) = self.api_for(identity).await? else { return Ok(None) };
        let found = api.get_opt(&identity.name).await?;
        Ok(found.filter(|object| uid_of(object) == identity.uid))
    }

    async fn process(&self, work: &Work) -> Result<Outcome> {
        match work {
            Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
            Work::AttemptToOrphan(uid) => self.attempt_to_orphan(uid).await.map(|()| Outcome::Done),
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<Outcome> {
        let Some(node) = self.lock_graph().node(uid).cloned() else { return Ok(Outcome::Done) };
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Outcome::Done);
        }
        let Some(latest) = self.get_live(&node.identity).await? else {
            tracing::debug!(object = %node.identity, "not found; its dependents are checked");
            let work = self.lock_graph().verified_absent(&node.identity);
            self.enqueue(work);
            return Ok(Outcome::Done);
        };
        let outcome = if node.observed { Outcome::Done } else { Outcome::Requeue };
        if node.deleting_dependents {
            self.process_deleting_dependents(&node, &latest).await?;
            return Ok(outcome);
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(outcome);
        }
        let mut item = node.identity.clone();
        item.namespace = latest.metadata.namespace.clone();
        let classified = match self.classify(&item, &owners).await {
            Err(error @ Error::NamespacedOwnerOfClusterScoped { .. }) => {
                tracing::warn!(%error, "an invalid ownerReference; the object is left alone");
                return Ok(Outcome::Done);
            }
            other => other?,
        };
        if !classified.solid.is_empty() {
            if classified.dangling.is_empty() && classified.waiting.is_empty() {
                return Ok(outcome);
            }
            // References to owners that are gone, or that wait for their dependents, would keep
            // those owners waiting forever.
            let dropped: HashSet<String> =
                classified.dangling.iter().chain(&classified.waiting).map(|reference| reference.uid.clone()).collect();
            tracing::info!(object = %item, ?dropped, "has an existing owner: removing its references to the others");
            self.update_owner_references(&item, |references| {
                references.into_iter().filter(|reference| !dropped.contains(&reference.uid)).collect()
            })
            .await?;
            return Ok(outcome);
        }
        let has_dependents = !self.lock_graph().dependents(uid).is_empty();
        let policy = if !classified.waiting.is_empty() && has_dependents {
            let cycle = self.lock_graph().dependents(uid).iter().any(|dependent| dependent.deleting_dependents);
            if cycle {
                // Its owner waits for it and it waits for its own dependents: unblock the owner
                // side so the two cannot wait on each other forever.
                tracing::info!(object = %item, "owner and dependent both delete in the foreground: unblocking its references");
                self.update_owner_references(&item, |references| {
                    references
                        .into_iter()
                        .map(|mut reference| {
                            reference.block_owner_deletion = Some(false);
                            reference
                        })
                        .collect()
                })
                .await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest, FINALIZER_ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest, FINALIZER_FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(object = %item, ?policy, "no owner left: deleting it");
        self.delete_object(&item, &latest, policy).await?;
        Ok(outcome)
    }

    /// Reads each owner live.
    async fn classify(&self, item: &Identity, owners: &[OwnerReference]) -> Result<Classified> {
        let mut classified = Classified::default();
        for reference in owners {
            let resource = self.resources.resolve(&reference.api_version, &reference.kind).await?;
            let api: Api<DynamicObject> = match (&item.namespace, resource.namespaced) {
                (_, false) => Api::all_with(self.client.clone(), &resource.api),
                (Some(namespace), true) => Api::namespaced_with(self.client.clone(), namespace, &resource.api),
                (None, true) => {
                    return Err(Error::NamespacedOwnerOfClusterScoped {
                        dependent: item.to_string(),
                        api_version: reference.api_version.clone(),
                        kind: reference.kind.clone(),
                    })
                }
            };
            match api.get_opt(&reference.name).await? {
                Some(owner) if uid_of(&owner) == reference.uid => {
                    if owner.metadata.deletion_timestamp.is_some() && has_finalizer(&owner, FINALIZER_FOREGROUND) {
                        classified.waiting.push(reference.clone());
                    } else {
                        classified.solid.push(reference.clone());
                    }
                }
                _ => classified.dangling.push(reference.clone()),
            }
        }
        Ok(classified)
    }

    /// An owner being deleted in the foreground: done once no blocking dependent is left.
    async fn process_deleting_dependents(&self, node: &Node, latest: &DynamicObject) -> Result<()> {
        if latest.metadata.deletion_timestamp.is_none() || !has_finalizer(latest, FINALIZER_FOREGROUND) {
            return Ok(());
        }
        let uid = &node.identity.uid;
        let blocking: Vec<(String, bool)> = self
            .lock_graph()
            .blocking_dependents(uid)
            .iter()
            .map(|dependent| (dependent.identity.uid.clone(), dependent.deleting_dependents))
            .collect();
        if blocking.is_empty() {
            tracing::info!(object = %node.identity, "no blocking dependent left: removing foregroundDeletion");
            return self.remove_finalizer(&node.identity, FINALIZER_FOREGROUND).await;
        }
        tracing::debug!(object = %node.identity, blocking = blocking.len(), "waiting for blocking dependents");
        for (dependent, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.queue.add(Work::AttemptToDelete(dependent));
            }
        }
        Ok(())
    }

    async fn attempt_to_orphan(&self, owner_uid: &str) -> Result<()> {
        let (owner, dependents) = {
            let graph = self.lock_graph();
            let Some(owner) = graph.node(owner_uid).map(|node| node.identity.clone()) else { return Ok(()) };
            let dependents: Vec<Identity> =
                graph.dependents(owner_uid).iter().map(|dependent| dependent.identity.clone()).collect();
            (owner, dependents)
        };
        let mut failed = None;
        for dependent in &dependents {
            let result = self
                .update_owner_references(dependent, |references| {
                    references.into_iter().filter(|reference| reference.uid != owner_uid).collect()
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(object = %dependent, %error, "could not orphan it");
                failed = Some(error);
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        tracing::info!(object = %owner, dependents = dependents.len(), "dependents orphaned: removing orphan");
        self.remove_finalizer(&owner, FINALIZER_ORPHAN).await
    }

    /// Deletes `item` (the version `latest`) with `policy`, on the condition that it is still
    /// that version; a conflict caused only by changes other than its ownerReferences is retried
    /// on the uid alone, so frequent unrelated updates cannot starve the collector.
    async fn delete_object(&self, item: &Identity, latest: &DynamicObject, policy: PropagationPolicy) -> Result<()> {
        let Some(api) = self.api_for(item).await? else { return Ok(()) };
        let mut params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(item.uid.clone()),
                resource_version: resource_version_of(latest),
            }),
            ..DeleteParams::default()
        };
        let error = match api.delete(&item.name, &params).await {
            Ok(_) => return Ok(()),
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) if is_conflict(&error) => error,
            Err(error) => return Err(error.into()),
        };
        let Some(live) = api.get_opt(&item.name).await? else { return Ok(()) };
        let owners_unchanged = live.metadata.owner_references == latest.metadata.owner_references;
        if uid_of(&live) != item.uid || !owners_unchanged {
            return Err(error.into());
        }
        if let Some(preconditions) = params.preconditions.as_mut() {
            preconditions.resource_version = None;
        }
        match api.delete(&item.name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Rewrites `item`'s ownerReferences with `change`, conditionally on the version read.
    async fn update_owner_references(
        &self,
        item: &Identity,
        change: impl Fn(Vec<OwnerReference>) -> Vec<OwnerReference>,
    ) -> Result<()> {
        self.patch_metadata(item, "updating the ownerReferences", |live| {
            let references = live.metadata.owner_references.clone().unwrap_or_default();
            let changed = change(references.clone());
            (changed != references).then(|| ("ownerReferences", list_or_null(&changed)))
        })
        .await
    }

    /// Removes `finalizer` from `item`, conditionally on the version read.
    async fn remove_finalizer(&self, item: &Identity, finalizer: &str) -> Result<()> {
        self.patch_metadata(item, &format!("removing the {finalizer} finalizer"), |live| {
            has_finalizer(live, finalizer).then(|| {
                let remaining: Vec<&String> =
                    live.metadata.finalizers.iter().flatten().filter(|present| *present != finalizer).collect();
                ("finalizers", list_or_null(&remaining))
            })
        })
        .await
    }

    /// A read-modify-write of one metadata field of `item`: reads it live (gone, or a namesake
    /// with another uid, is done), asks `change` for the field's new value (None: nothing to
    /// change), and merge-patches it conditionally on the resourceVersion read, reading again
    /// after a conflict, at most [`PATCH_ATTEMPTS_MAX`] times.
    async fn patch_metadata(
        &self,
        item: &Identity,
        what: &str,
        change: impl Fn(&DynamicObject) -> Option<(&'static str, Value)>,
    ) -> Result<()> {
        let Some(api) = self.api_for(item).await? else { return Ok(()) };
        for _ in 0..PATCH_ATTEMPTS_MAX {
            let Some(live) = api.get_opt(&item.name).await?.filter(|live| uid_of(live) == item.uid) else {
                return Ok(());
            };
            let Some((field, value)) = change(&live) else { return Ok(()) };
            let patch = json!({"metadata": {field: value, "resourceVersion": resource_version_of(&live)}});
            match api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) if is_conflict(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Conflicts(format!("{what} of {item}")))
    }
}

/// One worker: takes work until the queue shuts down.
async fn worker(collector: Arc<GarbageCollector>) {
    while let Some(work) = collector.queue.next().await {
        match collector.process(&work).await {
            Ok(Outcome::Done) => collector.queue.forget(&work),
            Ok(Outcome::Requeue) => collector.queue.add_rate_limited(work.clone()),
            Err(error) => {
                tracing::warn!(?work, %error, "garbage collection failed; retrying with backoff");
                collector.queue.add_rate_limited(work.clone());
            }
        }
        collector.queue.done(&work);
    }
}

/// Runs the garbage collector until `shutdown`.
pub async fn run(client: Client, resources: Arc<Resources>, shutdown: Shutdown) {
    let collector = Arc::new(GarbageCollector::new(client.clone(), resources.clone()));
    let mut monitors = Monitors::new(client, collector.clone());
    loop {
        match resources.refresh().await {
            Ok(found) => {
                monitors.sync(&found, &shutdown);
                break;
            }
            Err(error) => tracing::warn!(%error, "discovery failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(DISCOVERY_RETRY) => {}
        }
    }
    tokio::select! {
        _ = shutdown.wait() => {
            monitors.stop_all();
            return;
        }
        synced = monitors.wait_synced(SYNC_TIMEOUT) => {
            if !synced {
                tracing::warn!("not every resource was listed in time; collecting anyway");
            }
        }
    }
    let workers: Vec<_> = (0..WORKERS).map(|_| tokio::spawn(worker(collector.clone()))).collect();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(RESYNC_PERIOD) => match resources.refresh().await {
                Ok(found) => monitors.sync(&found, &shutdown),
                Err(error) => tracing::warn!(%error, "discovery failed; monitors unchanged"),
            },
        }
    }
    collector.queue.shut_down();
    monitors.stop_all();
    for worker in workers {
        let _ = worker.await;
    }
}
