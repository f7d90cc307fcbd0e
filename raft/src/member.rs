//! [`Member`]: one replica of the store: the store, the Raft log and the openraft node over
//! them, started from a data directory. This step runs single-member clusters (the member is its
//! own quorum); the peer transport and membership changes come next.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{Config, Raft, ReadPolicy, SnapshotPolicy};
use store::{Command, Response, Store};

use crate::lessor::Lessor;
use crate::log_store::LogStore;
use crate::state_machine::{ChangeListener, SnapshotFile, StateMachine};
use crate::types::{Reply, Request, TypeConfig};

/// Settings of one member, named as etcd names them where etcd has them.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub id: u64,
    /// etcd's `--name`.
    pub name: String,
    pub data_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// etcd's `--snapshot-count`: entries applied between snapshots.
    pub snapshot_count: u64,
    pub store: store::StoreOptions,
}

impl MemberConfig {
    pub fn new(name: &str, data_dir: PathBuf) -> Self {
        MemberConfig {
            id: 1,
            name: name.to_string(),
            data_dir,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 10_000,
            // The Raft log is synced; the store's own writes need not be (they replay).
            store: store::StoreOptions { durability: store::Durability::Buffered, ..store::StoreOptions::default() },
        }
    }
}

/// Why a write or a linearizable read did not happen here.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One running replica.
#[derive(Debug, Clone)]
pub struct Member {
    pub config: MemberConfig,
    raft: Raft<TypeConfig, StateMachine>,
    store: Arc<Store>,
    lessor: Arc<Lessor>,
}

/// How often the leader looks for expired leases, and how many it revokes per look.
const LEASE_EXPIRY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
const LEASE_REVOKES_PER_CHECK_MAX: usize = 100;

impl Member {
    /// Opens (or creates) the member's store, so a watch hub can be built over it before the
    /// member starts applying.
    pub fn open_store(config: &MemberConfig) -> Result<Arc<Store>, MemberError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let engine = store::RocksEngine::open(config.data_dir.join("store"), &store::RocksOptions::default())?;
        Ok(Arc::new(Store::open(Arc::new(engine), config.store.clone())?))
    }

    /// Starts the member over its opened store as a single-member cluster; `listener` hears
    /// every applied batch.
    pub async fn start_single(
        config: MemberConfig,
        store: Arc<Store>,
        listener: Option<Arc<dyn ChangeListener>>,
    ) -> Result<Member, MemberError> {
        let log = LogStore::open(config.data_dir.join("raft-log"))?;
        let machine = StateMachine::new(store.clone(), &config.data_dir.join("snapshots"), listener)?;
        let raft_config = Config {
            cluster_name: "keel".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            ..Config::default()
        }
        .validate()
        .map_err(|error| MemberError::Raft(error.to_string()))?;
        let raft = Raft::new(config.id, Arc::new(raft_config), NoPeers, log, machine)
            .await
            .map_err(|error| MemberError::Raft(error.to_string()))?;
        if !raft.is_initialized().await.map_err(|error| MemberError::Raft(error.to_string()))? {
            let members = BTreeMap::from([(config.id, BasicNode::new(config.name.clone()))]);
            raft.initialize(members).await.map_err(|error| MemberError::Raft(error.to_string()))?;
        }
        let lessor = Arc::new(Lessor::default());
        // A single member leads from the start; with peers this moves to promotion.
        lessor.restore(&store.leases()?, std::time::Duration::from_millis(config.election_timeout_ms));
        let member = Member { config, raft, store, lessor };
        member.spawn_lease_expiry();
        Ok(member)
    }

    /// The lessor: lease deadlines, which only the leader keeps.
    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// etcd's minimum lease TTL: one and a half election timeouts, in whole seconds.
    pub fn min_lease_ttl_seconds(&self) -> i64 {
        (self.config.election_timeout_ms * 3 / 2).div_ceil(1000) as i64
    }

    /// Revokes expired leases through the log until the member shuts down.
    fn spawn_lease_expiry(&self) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK_INTERVAL);
            loop {
                tick.tick().await;
                if member.raft.metrics().borrow_watched().state == openraft::ServerState::Shutdown {
                    return;
                }
                for id in member.lessor.expired(LEASE_REVOKES_PER_CHECK_MAX) {
                    match member.write(Command::LeaseRevoke { id }).await {
                        Ok(Ok(_)) | Ok(Err(store::Error::LeaseNotFound { .. })) => member.lessor.forget(id),
                        // Not leader, or shutting down: the next tick (or leader) tries again.
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
            }
        });
    }

    /// Replicates and applies one command; the store's own error is inside the `Ok`.
    pub async fn write(&self, command: Command) -> Result<store::Result<Response>, MemberError> {
        match self.raft.client_write(Request { command }).await {
            Ok(response) => match response.data {
                Reply::Applied(result) => Ok(result),
                Reply::NoCommand => Err(MemberError::Raft("a command entry applied as no command".into())),
            },
            Err(error) => match error.forward_to_leader() {
                Some(forward) => Err(MemberError::NotLeader { leader: forward.leader_id }),
                None => Err(MemberError::Raft(error.to_string())),
            },
        }
    }

    /// Returns once this member has applied everything committed before the call (etcd's
    /// linearizable read: read index confirmed by a quorum, then wait for apply).
    pub async fn read_barrier(&self) -> Result<(), MemberError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(error) => match error.forward_to_leader() {
                Some(forward) => Err(MemberError::NotLeader { leader: forward.leader_id }),
                None => Err(MemberError::Raft(error.to_string())),
            },
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The current Raft term, for response headers (read without copying the metrics).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// (leader, term, last log index, applied index), as etcd's Status reports them.
    pub fn status(&self) -> (Option<u64>, u64, u64, u64) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let applied = metrics.last_applied.map_or(0, |log_id| log_id.index);
        (metrics.current_leader, metrics.current_term, metrics.last_log_index.unwrap_or(0), applied)
    }

    pub async fn shutdown(&self) -> Result<(), MemberError> {
        self.raft.shutdown().await.map_err(|error| MemberError::Raft(error.to_string()))
    }
}

/// The network of a single-member cluster: there is nobody to call.
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

fn no_peer() -> Unreachable<TypeConfig> {
    Unreachable::from_string("this member runs alone: the peer transport is not implemented yet")
}

impl RaftNetworkV2<TypeConfig> for NoPeers {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        _request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(no_peer()))
    }

    async fn vote(
        &mut self,
        _request: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(no_peer()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TypeConfig>,
        _snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(no_peer()))
    }
}
