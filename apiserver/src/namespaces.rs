//! Namespaces: the four that exist from the start, kube-apiserver's NamespaceLifecycle admission
//! (a namespaced create needs its namespace to exist and not be terminating; the system
//! namespaces cannot be deleted), and the first step of deleting a namespace.
//!
//! Deleting a namespace only marks it: `deletionTimestamp` and `status.phase: Terminating`. The
//! namespace controller (`controllers/`) then deletes what is in it and removes the `kubernetes`
//! entry of `spec.finalizers` through `/finalize`; the update that leaves both finalizer lists
//! empty deletes the namespace (`writer::replace`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::delete_options::DeleteOptions;
use crate::error::{Cause, Error, ObjectRef, Result};
use crate::registry::{self, ResourceInfo};
use crate::state::{storage_error, ApiState};
use crate::writer::{self, WriteOptions};
use crate::{keys, object};

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The namespaces NamespaceLifecycle refuses to delete.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The finalizer the namespace controller removes once the namespace is empty.
pub const FINALIZER_KUBERNETES: &str = "kubernetes";

/// How long after a namespace DELETE creates in it check the store rather than the cache, which
/// may not show the namespace terminating yet (kube-apiserver's `forceLiveLookupTTL`).
const LIVE_LOOKUP_TTL: Duration = Duration::from_secs(30);
/// Namespaces remembered for live lookups at most; the oldest are dropped first.
const LIVE_LOOKUPS_MAX: usize = 1024;

fn namespaces() -> &'static ResourceInfo {
    registry::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Creates the system namespaces that do not exist yet.
pub async fn bootstrap(state: &ApiState) -> Result<()> {
    // kube-apiserver creates them through its own client, whose name its managed fields carry.
    let options = WriteOptions::internal("kube-apiserver");
    for name in SYSTEM_NAMESPACES {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match writer::create(state, namespaces(), None, namespace, options.clone()).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Namespaces deleted recently, whose state a create reads from the store.
#[derive(Debug, Default)]
pub struct LiveLookups {
    deleted_at: Mutex<HashMap<String, Instant>>,
}

impl LiveLookups {
    pub fn deleted(&self, name: &str) {
        let now = Instant::now();
        let mut deleted_at = self.deleted_at.lock().expect("the live lookup map is never poisoned");
        deleted_at.retain(|_, at| now.duration_since(*at) < LIVE_LOOKUP_TTL);
        if deleted_at.len() >= LIVE_LOOKUPS_MAX {
            let oldest = deleted_at.iter().min_by_key(|(_, at)| **at).map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                deleted_at.remove(&oldest);
            }
        }
        deleted_at.insert(name.to_string(), now);
    }

    fn is_recent(&self, name: &str) -> bool {
        let deleted_at = self.deleted_at.lock().expect("the live lookup map is never poisoned");
        deleted_at.get(name).is_some_and(|at| at.elapsed() < LIVE_LOOKUP_TTL)
    }
}

/// The namespace's `status.phase`, NotFound if it does not exist: the cache first (which indexes
/// that field), then the store (the cache may not have seen a namespace created a moment ago),
/// and the store alone for a namespace deleted a moment ago.
async fn phase(state: &ApiState, name: &str) -> Result<String> {
    let info = namespaces();
    let key = keys::object_key(info, None, name);
    if !state.namespace_live_lookups.is_recent(name) {
        if let Some(cached) = state.cache(info).get(&key) {
            return Ok(cached.field("status.phase").to_string());
        }
    }
    match state.storage.get(key).await {
        Ok(Some(kv)) => Ok(object::field_text(&writer::decode(&kv.value, kv.mod_revision)?, "status.phase")),
        Ok(None) => Err(Error::NotFound(ObjectRef::new(info, name))),
        Err(error) => Err(storage_error(ObjectRef::new(info, name), error)),
    }
}

/// NamespaceLifecycle for a create of `info` named `name` in `namespace`: NotFound when the
/// namespace does not exist, Forbidden while it is being terminated.
pub async fn admit_create(state: &ApiState, namespace: &str, info: &ResourceInfo, name: &str) -> Result<()> {
    if phase(state, namespace).await? != "Terminating" {
        return Ok(());
    }
    Err(Error::Forbidden {
        object: ObjectRef::new(info, name),
        detail: format!("unable to create new content in namespace {namespace} because it is being terminated"),
        causes: vec![Cause {
            reason: "NamespaceTerminating",
            field: "metadata.namespace".into(),
            message: format!("namespace {namespace} is being terminated"),
        }],
    })
}

/// NamespaceLifecycle for a namespace DELETE: the system namespaces stay.
pub fn admit_delete(name: &str) -> Result<()> {
    if IMMORTAL_NAMESPACES.contains(&name) {
        return Err(Error::Forbidden {
            object: ObjectRef::new(namespaces(), name),
            detail: "this namespace may not be deleted".into(),
            causes: Vec::new(),
        });
    }
    Ok(())
}

/// The first DELETE of a namespace: `deletionTimestamp`, phase Terminating, and the garbage
/// collector's finalizers as the options ask (namespaces have their own rules for those).
pub fn start_termination(namespace: &mut Value, options: &DeleteOptions) {
    let finalizers = options.namespace_finalizers(&object::finalizers(namespace));
    let meta = object::metadata_mut(namespace);
    if !meta.contains_key("deletionTimestamp") {
        meta.insert("deletionTimestamp".into(), json!(object::now_rfc3339()));
    }
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    if !namespace["status"].is_object() {
        namespace["status"] = json!({});
    }
    namespace["status"]["phase"] = json!("Terminating");
}

/// `spec.finalizers`: what must finish before a terminating namespace can go.
pub fn spec_finalizers(namespace: &Value) -> Vec<String> {
    namespace["spec"]["finalizers"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// On create, the namespace controller's finalizer is always there.
pub fn add_kubernetes_finalizer(namespace: &mut Value) {
    let mut finalizers = spec_finalizers(namespace);
    if !finalizers.iter().any(|finalizer| finalizer == FINALIZER_KUBERNETES) {
        finalizers.push(FINALIZER_KUBERNETES.into());
    }
    if !namespace["spec"].is_object() {
        namespace["spec"] = json!({});
    }
    namespace["spec"]["finalizers"] = json!(finalizers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delete_options::Propagation;

    #[test]
    fn termination_marks_the_namespace() {
        let mut namespace = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]},
                                   "status": {"phase": "Active"}});
        let options = DeleteOptions { propagation: Some(Propagation::Foreground), ..DeleteOptions::default() };
        start_termination(&mut namespace, &options);
        assert_eq!(namespace["status"]["phase"], "Terminating");
        assert!(namespace["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(namespace["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert_eq!(spec_finalizers(&namespace), vec!["kubernetes".to_string()]);
    }

    #[test]
    fn the_kubernetes_finalizer_is_added_once() {
        let mut namespace = json!({"spec": {"finalizers": ["example.com/x"]}});
        add_kubernetes_finalizer(&mut namespace);
        add_kubernetes_finalizer(&mut namespace);
        assert_eq!(namespace["spec"]["finalizers"], json!(["example.com/x", "kubernetes"]));
        let mut bare = json!({});
        add_kubernetes_finalizer(&mut bare);
        assert_eq!(bare["spec"]["finalizers"], json!(["kubernetes"]));
    }

    #[test]
    fn system_namespaces_cannot_be_deleted() {
        let error = admit_delete("kube-system").unwrap_err();
        assert_eq!(error.to_string(), "namespaces \"kube-system\" is forbidden: this namespace may not be deleted");
        assert!(admit_delete("kube-node-lease").is_ok());
    }

    #[test]
    fn live_lookups_remember_recent_deletes() {
        let lookups = LiveLookups::default();
        assert!(!lookups.is_recent("a"));
        lookups.deleted("a");
        assert!(lookups.is_recent("a"));
    }
}
