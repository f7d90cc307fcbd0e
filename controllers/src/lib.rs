//! The controller-manager: control loops that are ordinary clients of the Kubernetes API through
//! the `kube` crate, as kube-controller-manager's are through client-go.
//!
//! **Architecture invariant:** nothing here knows keel's store, Raft or apiserver internals; only
//! the API (discovery, list/watch, get, patch, delete). Any conformant apiserver would do.
//!
//! - [`namespace`]: the namespace lifecycle controller. A namespace being deleted is emptied
//!   resource by resource (found through discovery), then its `kubernetes` finalizer is removed
//!   through `/finalize`, which lets the apiserver delete it.
//! - [`garbage_collector`]: ownerReferences. It keeps an owner → dependents graph ([`graph`])
//!   fed by one watch per resource ([`monitors`]) and works through a queue ([`work_queue`]):
//!   dependents whose owners are all gone are deleted (background), an owner being deleted with
//!   `foregroundDeletion` waits until its blocking dependents are gone, one with `orphan` has
//!   its dependents freed first.
//!
//! - [`leader_election`]: with several `keel server` members, only the holder of the Lease
//!   `kube-system/kube-controller-manager` runs the loops, as with kube-controller-manager.
//!
//! [`run`] starts them all and returns once `shutdown` completes and they have stopped;
//! [`run_with_leader_election`] does so only while this process holds the Lease.

mod error;
pub mod garbage_collector;
pub mod graph;
pub mod leader_election;
pub mod monitors;
pub mod namespace;
pub mod resources;
pub mod work_queue;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, Result};
pub use kube::Client;

/// A client of the API served on `address` over plain HTTP (as `keel server` serves it on its
/// loopback address), without credentials.
pub fn loopback_client(address: SocketAddr) -> Result<Client> {
    let url = format!("http://{address}");
    let cluster_url = url.parse().map_err(|error| Error::Config(format!("{url}: {error}")))?;
    let config = kube::Config::new(cluster_url);
    Client::try_from(config).map_err(Error::Kube)
}

/// Tells the control loops to stop; cheap to clone and to wait on.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown that `trigger` sets when it completes.
    pub fn on(trigger: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            trigger.await;
            let _ = sender.send(true);
        });
        Shutdown(receiver)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the shutdown is set (or its trigger is gone).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut receiver = self.0.clone();
        async move {
            let _ = receiver.wait_for(|set| *set).await;
        }
    }
}

/// How long the control loops get to finish what they are doing once shutdown is asked for;
/// then they are dropped (nothing they do needs finishing: the next start carries on).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs every control loop against `client` until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = Shutdown::on(shutdown);
    let resources = Arc::new(resources::Resources::new(client.clone()));
    let tasks = [
        ("namespace", tokio::spawn(namespace::run(client.clone(), resources.clone(), shutdown.clone()))),
        ("garbage collector", tokio::spawn(garbage_collector::run(client, resources, shutdown.clone()))),
    ];
    tracing::info!("controllers started: namespace, garbage collector");
    let aborts: Vec<_> = tasks.iter().map(|(_, task)| task.abort_handle()).collect();
    let all = async move {
        for (name, task) in tasks {
            match task.await {
                Ok(()) => {}
                Err(error) if error.is_cancelled() => tracing::debug!(controller = name, "stopped by force"),
                Err(error) => tracing::error!(controller = name, %error, "a controller task failed"),
            }
        }
    };
    tokio::pin!(all);
    let grace_over = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::select! {
        _ = &mut all => {}
        _ = grace_over => {
            tracing::debug!("controllers did not stop within the grace period; stopping them by force");
            for abort in aborts {
                abort.abort();
            }
            all.await;
        }
    }
    tracing::info!("controllers stopped");
}

/// Runs the control loops against `client` whenever this candidate (`identity`, unique per
/// process) holds the controller-manager's Lease, until `shutdown` completes.
pub async fn run_with_leader_election(
    client: Client,
    identity: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let config = leader_election::LeaderElectionConfig::kube_controller_manager(identity);
    let elector = leader_election::LeaderElector::new(client.clone(), config);
    leader_election::run_elected(elector, shutdown, move |term| run(client.clone(), term.wait())).await;
}
