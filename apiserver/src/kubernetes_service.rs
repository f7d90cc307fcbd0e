//! The `kubernetes` Service of `default`, its Endpoints and its EndpointSlice, which tell
//! in-cluster clients where the API is: kube-apiserver's bootstrap controller
//! (`pkg/controlplane/controller/kubernetesservice`) and its endpoint reconciler.
//!
//! The Service gets the first address of the Service range (10.96.0.1 by default), port 443
//! named `https` to the API's port, no selector; the Endpoints (labelled
//! `endpointslice.kubernetes.io/skip-mirror`) and the EndpointSlice (labelled
//! `kubernetes.io/service-name`) list `--advertise-address` on the API's port. They are written
//! at start, before the API is served, and put back whenever they are deleted or changed: the
//! loop wakes when the watch caches of the three resources move (checking only whether the
//! three objects' revisions changed, so other writes cost nothing) and every
//! [`RECONCILE_INTERVAL`] regardless.
//!
//! Writes go through `writer`, as a client's would (field manager `kube-apiserver`), so the
//! Service's address is allocated like any other. With several `keel server` members each would
//! put its own address and port back forever; keel does not keep a lease per member as
//! kube-apiserver's lease reconciler does, so a [`ReconcileGate`] lets one member at a time (the
//! store's leader) reconcile, and the objects name that member's API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::keys;
use crate::registry::{self, ResourceInfo};
use crate::state::ApiState;
use crate::writer::{self, Part, WriteOptions};

/// kube-apiserver's `--endpoint-reconciler` interval.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after a failed reconcile before the next one.
const RETRY_DELAY: Duration = Duration::from_millis(500);

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
const PORT_NAME: &str = "https";
/// The Service's port: HTTPS's, whatever the API's own.
const SERVICE_PORT: i64 = 443;

/// Whether this server should reconcile the three objects now (checked before every round).
#[derive(Clone)]
pub struct ReconcileGate(Arc<dyn Fn() -> bool + Send + Sync>);

impl ReconcileGate {
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> ReconcileGate {
        ReconcileGate(Arc::new(open))
    }

    pub fn is_open(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for ReconcileGate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("ReconcileGate").field(&self.is_open()).finish()
    }
}

/// What the three objects say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesService {
    /// The Service's cluster IP: the first address of the Service range.
    pub cluster_ip: IpAddr,
    /// Where clients reach this API server: `--advertise-address`.
    pub advertise_address: IpAddr,
    /// The API's port (`--secure-port`).
    pub port: u16,
}

fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
    registry::RESOURCES
        .iter()
        .find(|info| info.group == group && info.plural == plural && info.conversion.is_none())
        .expect("the core resources are served")
}

fn services() -> &'static ResourceInfo {
    resource("", "services")
}

fn endpoints() -> &'static ResourceInfo {
    resource("", "endpoints")
}

fn endpoint_slices() -> &'static ResourceInfo {
    resource("discovery.k8s.io", "endpointslices")
}

fn options() -> WriteOptions {
    WriteOptions::internal("kube-apiserver")
}

impl KubernetesService {
    fn service(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.cluster_ip.to_string(), "ipFamilyPolicy": "SingleStack",
                     "sessionAffinity": "None", "ports": self.service_ports()}})
    }

    fn service_ports(&self) -> Value {
        json!([{"name": PORT_NAME, "port": SERVICE_PORT, "protocol": "TCP", "targetPort": self.port}])
    }

    fn endpoint_ports(&self) -> Value {
        json!([{"name": PORT_NAME, "port": self.port, "protocol": "TCP"}])
    }

    fn endpoints(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.advertise_address.to_string()}], "ports": self.endpoint_ports()}]})
    }

    fn address_type(&self) -> &'static str {
        if self.advertise_address.is_ipv6() {
            "IPv6"
        } else {
            "IPv4"
        }
    }

    fn endpoint_slice(&self) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME}},
            "addressType": self.address_type(),
            "endpoints": [{"addresses": [self.advertise_address.to_string()], "conditions": {"ready": true}}],
            "ports": self.endpoint_ports()})
    }

    /// Whether the stored Service is as this server makes it (type and ports, as
    /// kube-apiserver checks; a cluster IP cannot change).
    fn service_is_current(&self, stored: &Value) -> bool {
        stored["spec"]["type"] == "ClusterIP" && stored["spec"]["ports"] == self.service_ports()
    }

    fn endpoints_are_current(&self, stored: &Value) -> bool {
        let wanted = self.endpoints();
        stored["subsets"] == wanted["subsets"]
            && stored["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    }

    fn endpoint_slice_is_current(&self, stored: &Value) -> bool {
        let wanted = self.endpoint_slice();
        stored["addressType"] == wanted["addressType"]
            && stored["endpoints"] == wanted["endpoints"]
            && stored["ports"] == wanted["ports"]
            && stored["metadata"]["labels"] == wanted["metadata"]["labels"]
    }

    /// Creates or corrects the three objects, reading each from the store.
    pub async fn reconcile(&self, state: &ApiState) -> Result<()> {
        let service = self.service();
        let ports = self.service_ports();
        self.ensure(state, services(), service, &|stored| self.service_is_current(stored), &move |mut stored| {
            stored["spec"]["type"] = json!("ClusterIP");
            stored["spec"]["ports"] = ports.clone();
            stored
        })
        .await?;
        let wanted = self.endpoints();
        self.ensure(
            state,
            endpoints(),
            wanted.clone(),
            &|stored| self.endpoints_are_current(stored),
            &move |mut stored| {
                stored["subsets"] = wanted["subsets"].clone();
                stored["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
                stored
            },
        )
        .await?;
        let wanted = self.endpoint_slice();
        let current = writer::current(state, endpoint_slices(), Some(NAMESPACE), NAME).await;
        if let Ok(stored) = &current {
            let stored = writer::decode(&stored.value, stored.mod_revision)?;
            if stored["addressType"] != wanted["addressType"] {
                // addressType cannot change: the slice is made again (the endpoints adapter's way).
                let options = crate::delete_options::DeleteOptions::default();
                match crate::deletion::delete(state, endpoint_slices(), Some(NAMESPACE), NAME, &options).await {
                    Ok(_) | Err(Error::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        self.ensure(
            state,
            endpoint_slices(),
            wanted.clone(),
            &|stored| self.endpoint_slice_is_current(stored),
            &move |mut stored| {
                for field in ["endpoints", "ports"] {
                    stored[field] = wanted[field].clone();
                }
                stored["metadata"]["labels"] = wanted["metadata"]["labels"].clone();
                stored
            },
        )
        .await
    }

    /// Creates `wanted` if missing; if `current` says the stored one is not as it should be,
    /// rewrites it with `correct`.
    async fn ensure(
        &self,
        state: &ApiState,
        info: &'static ResourceInfo,
        wanted: Value,
        current: &(dyn Fn(&Value) -> bool + Sync),
        correct: &(dyn Fn(Value) -> Value + Sync),
    ) -> Result<()> {
        match writer::current(state, info, Some(NAMESPACE), NAME).await {
            Err(Error::NotFound(_)) => {
                match writer::create(state, info, Some(NAMESPACE), wanted, options()).await {
                    // Created meanwhile (the next round checks it).
                    Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Ok(stored) => {
                let stored = writer::decode(&stored.value, stored.mod_revision)?;
                if current(&stored) || stored["metadata"]["deletionTimestamp"].is_string() {
                    return Ok(());
                }
                tracing::info!(resource = info.plural, "putting the kubernetes service's object back as it should be");
                let mut change = |stored: Value| Ok(correct(stored));
                match writer::read_modify_write(state, info, Some(NAMESPACE), NAME, Part::Main, options(), &mut change)
                    .await
                {
                    Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The revisions at which the watch caches last saw the three objects (0: absent).
    fn cached_revisions(&self, state: &ApiState) -> [i64; 3] {
        [services(), endpoints(), endpoint_slices()].map(|info| {
            let key = keys::object_key(info, Some(NAMESPACE), NAME);
            state.cache(info).get(&key).map_or(0, |cached| cached.revision)
        })
    }

    /// Reconciles until the server stops: when one of the three objects changes in the watch
    /// caches, and every [`RECONCILE_INTERVAL`]; only while `gate` (if any) is open.
    pub async fn run(self, state: Arc<ApiState>, gate: Option<ReconcileGate>) {
        let stopped = state.stopped();
        tokio::pin!(stopped);
        let mut changes = [services(), endpoints(), endpoint_slices()].map(|info| state.cache(info).subscribe());
        let mut seen = self.cached_revisions(&state);
        let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = false;
        loop {
            if !retry {
                let [services, endpoints, slices] = &mut changes;
                let periodic = tokio::select! {
                    _ = &mut stopped => return,
                    _ = tick.tick() => true,
                    _ = services.changed() => false,
                    _ = endpoints.changed() => false,
                    _ = slices.changed() => false,
                };
                let now = self.cached_revisions(&state);
                if !periodic && now == seen {
                    continue;
                }
                seen = now;
            }
            retry = false;
            if gate.as_ref().is_some_and(|gate| !gate.is_open()) {
                continue;
            }
            if let Err(error) = self.reconcile(&state).await {
                tracing::warn!(%error, "reconciling the kubernetes service failed; retrying");
                retry = true;
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(RETRY_DELAY) => {}
                }
            }
        }
    }
}
