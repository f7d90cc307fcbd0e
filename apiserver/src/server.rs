//! [`Server`]: the Kubernetes API over a [`Storage`]: one watch cache per resource, the system
//! namespaces, periodic compaction, and the HTTP listener.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::kubernetes_service::{KubernetesService, ReconcileGate};
use crate::service_allocation::ServiceNetwork;
use crate::state::ApiState;
use crate::storage::Storage;
use crate::{api, cache, cache_feed, compaction, kubeconfig, namespaces};

/// How long start-up waits for the store to take writes (a fresh member elects itself first).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);
const BOOTSTRAP_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// kube-apiserver's `--bind-address`.
    pub bind_address: IpAddr,
    /// kube-apiserver's `--secure-port` (plain HTTP for now); 0 picks a free port.
    pub port: u16,
    /// Where the admin kubeconfig goes.
    pub kubeconfig_path: PathBuf,
    /// `--etcd-compaction-interval`; zero disables compaction.
    pub compaction_interval: Duration,
    /// The event history each resource's cache keeps for watches that resume.
    pub history_bound: cache::HistoryBound,
    /// `--service-cluster-ip-range` and `--service-node-port-range`.
    pub service_network: ServiceNetwork,
    /// `--advertise-address`, which the `kubernetes` Service's endpoints list; None: the bind
    /// address.
    pub advertise_address: Option<IpAddr>,
    /// When this server reconciles the `kubernetes` Service and its endpoints; None: always.
    /// Members of one cluster would otherwise each put their own address back forever.
    pub kubernetes_service_gate: Option<ReconcileGate>,
}

impl ServerConfig {
    pub fn new(kubeconfig_path: PathBuf) -> ServerConfig {
        ServerConfig {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: 6443,
            kubeconfig_path,
            compaction_interval: Duration::from_secs(300),
            history_bound: cache::HistoryBound::default(),
            service_network: ServiceNetwork::default(),
            advertise_address: None,
            kubernetes_service_gate: None,
        }
    }
}

#[derive(Debug)]
pub struct Server {
    state: Arc<ApiState>,
    listener: TcpListener,
    config: ServerConfig,
}

impl Server {
    /// Binds the listener, starts the caches, creates the system namespaces and writes the
    /// kubeconfig. The API is served by [`Server::serve`].
    pub async fn start(config: ServerConfig, storage: Arc<dyn Storage>) -> Result<Server> {
        let address = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| Error::Internal(format!("cannot listen on {address}: {error}")))?;
        let address = listener.local_addr().map_err(|error| Error::Internal(error.to_string()))?;
        let state =
            Arc::new(ApiState::new(storage.clone(), config.history_bound, address.to_string(), config.service_network));
        for cache in state.caches() {
            tokio::spawn(cache_feed::run(cache.clone(), storage.clone()));
        }
        bootstrap(&state).await?;
        let kubernetes = KubernetesService {
            cluster_ip: config.service_network.cidr.first(),
            advertise_address: config.advertise_address.unwrap_or(config.bind_address),
            port: address.port(),
        };
        let gate = config.kubernetes_service_gate.clone();
        if gate.as_ref().is_none_or(ReconcileGate::is_open) {
            kubernetes.reconcile(&state).await?;
        }
        tokio::spawn(kubernetes.run(state.clone(), gate));
        tokio::spawn(compaction::run(storage, config.compaction_interval));
        kubeconfig::write(&config.kubeconfig_path, address).map_err(|error| {
            Error::Internal(format!("cannot write the kubeconfig {}: {error}", config.kubeconfig_path.display()))
        })?;
        Ok(Server { state, listener, config })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn kubeconfig_path(&self) -> &std::path::Path {
        &self.config.kubeconfig_path
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
        let state = self.state.clone();
        // Watches would hold their connections open until their timeouts: end them first.
        let shutdown = async move {
            shutdown.await;
            state.stop();
        };
        let router = axum::Router::new().fallback(api::handle).with_state(self.state);
        // Nagle off: a watch event or a streamed LIST chunk written while the previous one is
        // unacknowledged would otherwise wait for the client's delayed ACK (up to 40 ms).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |stream: &mut tokio::net::TcpStream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|error| Error::Internal(format!("serving the API: {error}")))
    }
}

/// Creates the system namespaces, retrying while the store cannot take writes yet.
async fn bootstrap(state: &ApiState) -> Result<()> {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_TIMEOUT;
    loop {
        match namespaces::bootstrap(state).await {
            Ok(()) => return Ok(()),
            Err(Error::ServiceUnavailable(message)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(message, "the store is not ready for writes yet");
                tokio::time::sleep(BOOTSTRAP_RETRY).await;
            }
            Err(error) => return Err(error),
        }
    }
}
