//! Namespaces: the four that exist from the start, the existence check before a namespaced
//! create (kube-apiserver's NamespaceLifecycle admission), and emptying a namespace being deleted.
//!
//! Emptying is the namespace controller's work in Kubernetes; until `controllers/` has it, the
//! apiserver deletes a namespace's objects itself, synchronously, before the namespace.

use serde_json::json;

use crate::error::{Error, ObjectRef, Result};
use crate::registry::{self, RESOURCES};
use crate::state::{storage_error, ApiState};
use crate::storage::StorageError;
use crate::writer::{self, FieldValidation, WriteOptions};
use crate::{keys, object};

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Keys read per page while emptying a namespace.
const DELETE_PAGE_KEYS: i64 = 500;

fn namespaces() -> &'static registry::ResourceInfo {
    registry::find("", "v1", "namespaces").expect("namespaces are served")
}

/// Creates the system namespaces that do not exist yet.
pub async fn bootstrap(state: &ApiState) -> Result<()> {
    let options = WriteOptions { dry_run: false, field_validation: FieldValidation::Strict };
    for name in SYSTEM_NAMESPACES {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match writer::create(state, namespaces(), None, namespace, options).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// NotFound unless the namespace exists (the cache first, then the store, since the cache may
/// not have seen a namespace created a moment ago).
pub async fn check_exists(state: &ApiState, name: &str) -> Result<()> {
    let info = namespaces();
    let key = keys::object_key(info, None, name);
    if state.cache(info).get(&key).is_some() {
        return Ok(());
    }
    match state.storage.get(key).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::NotFound(ObjectRef::new(info, name))),
        Err(error) => Err(storage_error(ObjectRef::new(info, name), error)),
    }
}

/// Deletes every object in the namespace, resource by resource.
pub async fn delete_contents(state: &ApiState, namespace: &str) -> Result<()> {
    for info in RESOURCES.iter().filter(|info| info.namespaced) {
        let prefix = keys::collection_prefix(info, Some(namespace));
        let end = keys::prefix_end(&prefix);
        loop {
            let page = state
                .storage
                .range(prefix.clone(), end.clone(), 0, DELETE_PAGE_KEYS)
                .await
                .map_err(|error| storage_error(ObjectRef::new(info, ""), error))?;
            if page.kvs.is_empty() {
                break;
            }
            for kv in &page.kvs {
                match state.storage.delete(kv.key.clone(), kv.mod_revision).await {
                    Ok(_) | Err(StorageError::KeyNotFound) | Err(StorageError::Conflict { .. }) => {}
                    Err(error) => {
                        let name = writer::decode(&kv.value, kv.mod_revision)
                            .map(|value| object::name(&value).to_string())
                            .unwrap_or_default();
                        return Err(storage_error(ObjectRef::new(info, &name), error));
                    }
                }
            }
        }
    }
    Ok(())
}
