//! What the API serves, from its discovery documents (`kube::Discovery`): the resources the
//! controllers list, watch and delete, and the resource behind an ownerReference's apiVersion
//! and kind. Nothing is hard-coded, so resources added later (CRDs) are found the same way.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

use crate::error::{Error, Result};

/// How often at most an unknown kind makes discovery run again.
const REFRESH_INTERVAL_MIN: Duration = Duration::from_secs(5);

/// One served resource (a group, version and plural) and what it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// Served at the group's preferred version: the one to list and watch.
    pub preferred: bool,
}

impl Resource {
    fn new(api: ApiResource, capabilities: &ApiCapabilities, preferred: bool) -> Resource {
        Resource {
            api,
            namespaced: capabilities.scope == Scope::Namespaced,
            verbs: capabilities.operations.clone(),
            preferred,
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|supported| supported == verb)
    }

    /// `plural.group` (`deployments.apps`, `pods.`), as Kubernetes names a resource in messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.api.plural, self.api.group)
    }

    /// What the garbage collector watches: objects it can list, watch and delete. Events are
    /// left out, as kube-controller-manager leaves them out (they have no dependents and churn).
    pub fn collectable(&self) -> bool {
        self.preferred
            && self.supports(verbs::LIST)
            && self.supports(verbs::WATCH)
            && self.supports(verbs::DELETE)
            && !(self.api.plural == "events" && matches!(self.api.group.as_str(), "" | "events.k8s.io"))
    }

    /// What the namespace controller empties a namespace of.
    pub fn namespace_content(&self) -> bool {
        self.preferred
            && self.namespaced
            && self.supports(verbs::LIST)
            && (self.supports(verbs::DELETE) || self.supports(verbs::DELETE_COLLECTION))
    }
}

/// The discovered resources, refreshed on demand.
pub struct Resources {
    client: Client,
    known: RwLock<Vec<Resource>>,
    refreshed_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Resources").field("known", &self.known).finish_non_exhaustive()
    }
}

impl Resources {
    pub fn new(client: Client) -> Resources {
        Resources { client, known: RwLock::new(Vec::new()), refreshed_at: Mutex::new(None) }
    }

    /// Runs discovery and keeps what it found.
    pub async fn refresh(&self) -> Result<Vec<Resource>> {
        let discovery = Discovery::new(self.client.clone()).run().await?;
        let mut found = Vec::new();
        for group in discovery.groups() {
            let preferred = group.preferred_version_or_latest().to_string();
            for version in group.versions() {
                for (api, capabilities) in group.versioned_resources(version) {
                    found.push(Resource::new(api, &capabilities, version == preferred));
                }
            }
        }
        *self.known.write().expect("the resource list is never poisoned") = found.clone();
        *self.refreshed_at.lock().expect("the refresh time is never poisoned") = Some(Instant::now());
        Ok(found)
    }

    /// The resources as last discovered (discovering first if that never happened).
    pub async fn all(&self) -> Result<Vec<Resource>> {
        let known = self.known.read().expect("the resource list is never poisoned").clone();
        if known.is_empty() {
            return self.refresh().await;
        }
        Ok(known)
    }

    fn find(&self, api_version: &str, kind: &str) -> Option<Resource> {
        let known = self.known.read().expect("the resource list is never poisoned");
        known.iter().find(|resource| resource.api.api_version == api_version && resource.api.kind == kind).cloned()
    }

    /// The resource serving `kind` at `api_version`; discovery runs again (at most every few
    /// seconds) when it is not known, since it may have been added since.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resource> {
        if let Some(found) = self.find(api_version, kind) {
            return Ok(found);
        }
        let stale = self
            .refreshed_at
            .lock()
            .expect("the refresh time is never poisoned")
            .is_none_or(|at| at.elapsed() >= REFRESH_INTERVAL_MIN);
        if stale {
            self.refresh().await?;
        }
        self.find(api_version, kind)
            .ok_or_else(|| Error::UnknownKind { api_version: api_version.to_string(), kind: kind.to_string() })
    }
}
