//! The namespace lifecycle controller (kube-controller-manager's `namespace` controller): empties
//! a namespace being deleted, then removes the `kubernetes` entry of its `spec.finalizers`
//! through `/finalize`, after which the apiserver deletes it.
//!
//! A pass over a terminating namespace (kube-runtime's `Controller` calls [`reconcile`] for each
//! change of a namespace, and again when a pass asks for it):
//! 1. `spec.finalizers` already empty: DELETE the namespace again (uid precondition); the
//!    apiserver deletes a namespace whose finalizers are all gone.
//! 2. For every namespaced resource discovery lists: DELETE the collection (background
//!    propagation, so the garbage collector does not hold anything back), or each object when
//!    only `delete` is served; then LIST what is left.
//! 3. Record the outcome as the namespace's status conditions (`NamespaceContentRemaining`,
//!    `NamespaceFinalizersRemaining`, ...), which `kubectl describe ns` shows.
//! 4. Something left (objects with finalizers, pods in their grace period): look again after an
//!    estimate. Nothing left: `/finalize` without `kubernetes`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use kube::discovery::verbs;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::error::{api_code, is_conflict, is_not_found, Error, Result};
use crate::resources::{Resource, Resources};
use crate::Shutdown;

/// The finalizer this controller owns.
pub const FINALIZER_KUBERNETES: &str = "kubernetes";

/// Namespaces processed at once.
const CONCURRENCY: u16 = 4;
/// The shortest wait before looking again at a namespace whose content remains.
const RECHECK_MIN: Duration = Duration::from_secs(1);
/// The longest wait before looking again: a pod's grace period can be long.
const RECHECK_MAX: Duration = Duration::from_secs(30);
/// Retries of a namespace that failed: the first after this long, doubling up to RECHECK_MAX.
const ERROR_BACKOFF_BASE: Duration = Duration::from_millis(200);

struct Context {
    client: Client,
    resources: Arc<Resources>,
    /// Consecutive failures per namespace, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Context").field("failures", &self.failures).finish_non_exhaustive()
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, resources: Arc<Resources>, shutdown: Shutdown) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let context = Arc::new(Context { client, resources, failures: Mutex::new(HashMap::new()) });
    let config = kube::runtime::controller::Config::default().concurrency(CONCURRENCY);
    Controller::new(namespaces, watcher::Config::default())
        .with_config(config)
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "namespace controller");
            }
        })
        .await;
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, context: Arc<Context>) -> Action {
    if let Error::ContentRemains { estimate, .. } = error {
        tracing::debug!(namespace = namespace.name_any(), %error);
        return Action::requeue(*estimate);
    }
    let failures = {
        let mut failures = context.failures.lock().expect("the failure counts are never poisoned");
        let count = failures.entry(namespace.name_any()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    tracing::warn!(namespace = namespace.name_any(), %error, failures, "namespace deletion failed; retrying");
    let delay = ERROR_BACKOFF_BASE.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RECHECK_MAX);
    Action::requeue(delay)
}

fn spec_finalizers(namespace: &Namespace) -> Vec<String> {
    namespace.spec.as_ref().and_then(|spec| spec.finalizers.clone()).unwrap_or_default()
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action> {
    if namespace.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let api: Api<Namespace> = Api::all(context.client.clone());
    let finalizers = spec_finalizers(&namespace);
    if finalizers.is_empty() {
        delete_namespace(&api, &namespace).await?;
    } else if finalizers.iter().any(|finalizer| finalizer == FINALIZER_KUBERNETES) {
        let content = delete_content(&context, &name).await;
        update_conditions(&api, &name, &content).await;
        if let Some(failure) = content.failures.first() {
            return Err(Error::ContentDeletion { namespace: name, message: failure.clone() });
        }
        if content.remaining_objects > 0 {
            let estimate = content.estimate.clamp(RECHECK_MIN, RECHECK_MAX);
            return Err(Error::ContentRemains { namespace: name, estimate });
        }
        tracing::info!(namespace = name, "namespace is empty: finalizing it");
        finalize(&api, &name).await?;
    }
    context.failures.lock().expect("the failure counts are never poisoned").remove(&name);
    Ok(Action::await_change())
}

/// DELETE of a finalized namespace, on the condition that it is still the same one.
async fn delete_namespace(api: &Api<Namespace>, namespace: &Namespace) -> Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: namespace.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&namespace.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        // Another uid: the namespace we saw is gone already.
        Err(error) if is_conflict(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Removes `kubernetes` from `spec.finalizers` through `/finalize`, on the version just read; a
/// conflict comes back as an error, and the next pass reads again.
async fn finalize(api: &Api<Namespace>, name: &str) -> Result<()> {
    let Some(mut current) = api.get_opt(name).await? else { return Ok(()) };
    let finalizers: Vec<String> =
        spec_finalizers(&current).into_iter().filter(|finalizer| finalizer != FINALIZER_KUBERNETES).collect();
    current.spec.get_or_insert_with(Default::default).finalizers = Some(finalizers);
    match api.replace_subresource("finalize", name, &PostParams::default(), &current).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
struct Content {
    /// Objects still there, by resource (`plural.group`).
    remaining: BTreeMap<String, usize>,
    remaining_objects: usize,
    /// Finalizers on the objects still there, with how many objects carry each.
    finalizers: BTreeMap<String, usize>,
    /// When the slowest remaining object should be gone (pods in their grace period).
    estimate: Duration,
    discovery_failure: Option<String>,
    failures: Vec<String>,
}

async fn delete_content(context: &Context, namespace: &str) -> Content {
    let mut content = Content::default();
    let resources = match context.resources.refresh().await {
        Ok(resources) => resources,
        Err(error) => {
            let message = format!("discovery failed: {error}");
            content.discovery_failure = Some(message.clone());
            content.failures.push(message);
            return content;
        }
    };
    for resource in resources.iter().filter(|resource| resource.namespace_content()) {
        if let Err(error) = delete_resource(context, namespace, resource, &mut content).await {
            content.failures.push(format!("{}: {error}", resource.qualified_name()));
        }
    }
    content
}

/// Deletes every object of `resource` in `namespace` and records what is left.
async fn delete_resource(context: &Context, namespace: &str, resource: &Resource, content: &mut Content) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), namespace, &resource.api);
    let background = DeleteParams::background();
    let mut collection_deleted = false;
    if resource.supports(verbs::DELETE_COLLECTION) {
        match api.delete_collection(&background, &ListParams::default()).await {
            Ok(_) => collection_deleted = true,
            // Served but refused: fall back to deleting one by one, as kube's controller does.
            Err(error) if matches!(api_code(&error), Some(404 | 405)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let left = api.list(&ListParams::default()).await?;
    let now = Timestamp::now().as_second();
    for object in &left.items {
        if !collection_deleted && object.metadata.deletion_timestamp.is_none() && resource.supports(verbs::DELETE) {
            match api.delete(&object.name_any(), &background).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        for finalizer in object.metadata.finalizers.iter().flatten() {
            *content.finalizers.entry(finalizer.clone()).or_insert(0) += 1;
        }
        if let Some(Time(deadline)) = &object.metadata.deletion_timestamp {
            let seconds = deadline.as_second() - now;
            if seconds > 0 {
                content.estimate = content.estimate.max(Duration::from_secs(seconds as u64));
            }
        }
    }
    if !left.items.is_empty() {
        *content.remaining.entry(resource.qualified_name()).or_insert(0) += left.items.len();
        content.remaining_objects += left.items.len();
    }
    Ok(())
}

/// One condition as kube's namespace controller writes it.
fn condition(kind: &str, failing: bool, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: kind.to_string(),
        status: if failing { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The deletion conditions kube's namespace controller reports, for `content`.
fn conditions_for(content: &Content) -> Vec<NamespaceCondition> {
    let join = |entries: Vec<String>| entries.join(", ");
    vec![
        match &content.discovery_failure {
            Some(message) => condition("NamespaceDeletionDiscoveryFailure", true, "DiscoveryFailed", message.clone()),
            None => condition(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            ),
        },
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if content.failures.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            condition("NamespaceDeletionContentFailure", true, "ContentDeletionFailed", join(content.failures.clone()))
        },
        if content.remaining.is_empty() {
            condition("NamespaceContentRemaining", false, "ContentRemoved", "All content successfully removed".into())
        } else {
            let entries =
                content.remaining.iter().map(|(resource, count)| format!("{resource} has {count} resource instances"));
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", join(entries.collect())),
            )
        },
        if content.finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            let entries = content
                .finalizers
                .iter()
                .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"));
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {}", join(entries.collect())),
            )
        },
    ]
}

/// Writes the conditions through `/status` when they changed; best effort (a conflict or an
/// error leaves them to the next pass).
async fn update_conditions(api: &Api<Namespace>, name: &str, content: &Content) {
    let Ok(Some(mut current)) = api.get_opt(name).await else { return };
    let status = current.status.get_or_insert_with(Default::default);
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut changed = false;
    for wanted in conditions_for(content) {
        match conditions.iter_mut().find(|existing| existing.type_ == wanted.type_) {
            Some(existing) => {
                if existing.status != wanted.status
                    || existing.reason != wanted.reason
                    || existing.message != wanted.message
                {
                    let transition = existing.status != wanted.status;
                    let last = existing.last_transition_time.clone();
                    *existing = wanted;
                    existing.last_transition_time = if transition { Some(now_time()) } else { last };
                    changed = true;
                }
            }
            None => {
                let mut added = wanted;
                added.last_transition_time = Some(now_time());
                conditions.push(added);
                changed = true;
            }
        }
    }
    if !changed {
        return;
    }
    status.conditions = Some(conditions);
    if let Err(error) = api.replace_status(name, &PostParams::default(), &current).await {
        tracing::debug!(namespace = name, %error, "namespace conditions not written; the next pass tries again");
    }
}

/// Now, in whole seconds as Kubernetes writes times.
fn now_time() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains() {
        let mut content = Content::default();
        content.remaining.insert("configmaps.".into(), 2);
        content.remaining_objects = 2;
        content.finalizers.insert("example.com/hold".into(), 1);
        let conditions = conditions_for(&content);
        let remaining = conditions.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let finalizers = conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").unwrap();
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        let empty = conditions_for(&Content::default());
        assert!(empty.iter().all(|condition| condition.status == "False"));
    }
}
