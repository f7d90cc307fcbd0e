//! [`Member`]: one replica of the store: the store, the Raft log and the openraft node over
//! them, the peer transport, and the leader's duties (lease clocks). Started from a data
//! directory and etcd's cluster flags; clients may call any member (see `leader_call.rs`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use store::{Command, Response, Store};

use crate::identity;
use crate::leader_call::{LeaderAnswer, LeaderCall, LeaseTimeToLive};
use crate::lessor::Lessor;
use crate::log_store::LogStore;
use crate::peer_network::{PeerChannels, PeerNetwork, PEER_MESSAGE_BYTES_MAX};
use crate::peer_service::{self, PeerService};
use crate::proto::peer_server::PeerServer;
use crate::proto::Frame;
use crate::read_index::ReadIndexRounds;
use crate::state_machine::{ChangeListener, StateMachine};
use crate::types::{MemberNode, TypeConfig};
use crate::write_batch::WriteBatcher;

/// etcd's `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster that already lists this member (`etcdctl member add`).
    Existing,
}

/// Settings of one member, named as etcd names them where etcd has them.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The member id; [`Member::start`] fills it in (from the data dir, the initial cluster or
    /// the running cluster).
    pub id: u64,
    /// `--name`.
    pub name: String,
    pub data_dir: PathBuf,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// `--listen-peer-urls` (the first); None runs no peer server (a lone in-process member).
    pub listen_peer: Option<SocketAddr>,
    /// The listen peer URL is `https://`: the peer server speaks TLS with `peer_tls`.
    pub listen_peer_tls: bool,
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`: the peer server's certificate, and this member's identity
    /// (and the CA it checks servers against) when it calls `https://` peers.
    pub peer_tls: Option<crate::TlsConfig>,
    /// `--advertise-client-urls`, published in the membership for MemberList.
    pub client_urls: Vec<String>,
    /// `--initial-cluster`: every first member's name and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub cluster_state: ClusterState,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// `--snapshot-count`: commands applied between snapshots (etcd counts requests; one log
    /// entry carries a batch of them).
    pub snapshot_count: u64,
    /// The store's RocksDB block cache. `keel server` keeps it small: there the apiserver's
    /// watch cache holds every object, and the block cache only serves writes' version seeks.
    pub block_cache_bytes: usize,
    /// etcd's `--experimental-enable-lease-checkpoint` with its interval: the leader records
    /// each lease's remaining TTL this often, so a new leader restarts it from there rather
    /// than from the full TTL.
    pub lease_checkpoint_interval: Option<Duration>,
    /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`.
    pub auto_compaction: Option<crate::AutoCompaction>,
    /// etcd's `--quota-backend-bytes`; 0 is no quota (etcd's default would be 2 GiB).
    pub quota_backend_bytes: u64,
    /// **Unsafe, for testing the Jepsen checker only**: linearizable reads are served from the
    /// local store without a read index, so a cut-off member answers stale data.
    pub unsafe_local_reads: bool,
    pub store: store::StoreOptions,
}

impl MemberConfig {
    /// A lone member with etcd's defaults.
    pub fn new(name: &str, data_dir: PathBuf) -> Self {
        let peer_urls = vec!["http://localhost:2380".to_string()];
        MemberConfig {
            id: 0,
            name: name.to_string(),
            data_dir,
            initial_cluster: vec![(name.to_string(), peer_urls.clone())],
            peer_urls,
            listen_peer: None,
            listen_peer_tls: false,
            peer_tls: None,
            client_urls: vec!["http://localhost:2379".to_string()],
            cluster_state: ClusterState::New,
            cluster_token: "etcd-cluster".to_string(),
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 100_000,
            block_cache_bytes: store::RocksOptions::default().block_cache_bytes,
            lease_checkpoint_interval: None,
            auto_compaction: None,
            unsafe_local_reads: false,
            quota_backend_bytes: 0,
            // The Raft log is synced; the store's own writes need not be (they replay).
            store: store::StoreOptions { durability: store::Durability::Buffered, ..store::StoreOptions::default() },
        }
    }
}

/// Why a call did not happen (or may not have). Crosses the peer transport, hence serde.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum MemberError {
    /// Refused before anything was proposed; another leader may take it.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// Proposed, then the leader changed: it may or may not have been applied.
    #[error("leader changed")]
    LeaderChanged,
    #[error("request timed out")]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("member not found")]
    MemberNotFound,
    #[error("peerURL exists")]
    PeerUrlExists,
    #[error("can only promote a learner member")]
    NotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("bad leader transferee")]
    BadTransferee,
    #[error("database space exceeded")]
    NoSpace,
    #[error("membership change: {0}")]
    Membership(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Io(String),
}

impl From<io::Error> for MemberError {
    fn from(error: io::Error) -> Self {
        MemberError::Io(error.to_string())
    }
}

fn raft_error(error: impl std::fmt::Display) -> MemberError {
    MemberError::Raft(error.to_string())
}

/// One member as the membership lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: u64,
    pub node: MemberNode,
    pub is_learner: bool,
}

/// A raised alarm and the member that raised it (the leader that refused the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alarm {
    NoSpace { member_id: u64 },
}

/// What etcd's Status reports about a member's Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub is_learner: bool,
}

/// One running replica.
#[derive(Debug, Clone)]
pub struct Member {
    pub config: MemberConfig,
    pub(crate) raft: Raft<TypeConfig, StateMachine>,
    pub(crate) store: Arc<Store>,
    pub(crate) lessor: Arc<Lessor>,
    pub(crate) channels: PeerChannels,
    pub(crate) quota: Arc<crate::quota::Quota>,
    /// Client writes waiting to be sent to the leader in batches.
    writes: Arc<WriteBatcher>,
    /// Read barriers sharing read-index rounds.
    read_index_rounds: Arc<ReadIndexRounds<MemberError>>,
    /// Read-index calls served as the leader (from every member) sharing heartbeat rounds.
    pub(crate) leader_read_rounds: Arc<ReadIndexRounds<MemberError>>,
    /// Set once on shutdown; the peer server and background tasks stop on it.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// How often a member checks whether `--snapshot-count` commands were applied since its last
/// snapshot.
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How often the leader looks for expired leases, and how many it revokes per look.
const LEASE_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const LEASE_REVOKES_PER_CHECK_MAX: usize = 100;
/// Entries per append message: with requests of at most ~2 MiB, messages stay far below
/// [`PEER_MESSAGE_BYTES_MAX`].
const APPEND_ENTRIES_MAX: u64 = 64;
/// How long a joining member looks for a running cluster that lists it.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

impl Member {
    /// Opens (or creates) the member's store, so a watch hub can be built over it before the
    /// member starts applying.
    pub fn open_store(config: &MemberConfig) -> Result<Arc<Store>, MemberError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let rocks =
            store::RocksOptions { block_cache_bytes: config.block_cache_bytes, ..store::RocksOptions::default() };
        let engine = store::RocksEngine::open(config.data_dir.join("store"), &rocks)?;
        Ok(Arc::new(Store::open(Arc::new(engine), config.store.clone())?))
    }

    /// Starts the member over its opened store: finds its id, opens the log, serves peers,
    /// bootstraps a new cluster if it is the first start; `listener` hears every applied batch.
    pub async fn start(
        mut config: MemberConfig,
        store: Arc<Store>,
        listener: Option<Arc<dyn ChangeListener>>,
    ) -> Result<Member, MemberError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let channels = PeerChannels::new(config.peer_tls.as_ref());
        let first_start = identity::stored_member_id(&config.data_dir)?.is_none();
        config.id = resolve_member_id(&config, &channels).await?;
        let log = LogStore::open(config.data_dir.join("raft-log"))?;
        let snapshot_dir = config.data_dir.join("snapshots");
        let machine = StateMachine::new(store.clone(), &snapshot_dir, listener)?;
        let applied_commands = machine.applied_commands();
        peer_service::remove_incoming_files(&snapshot_dir)?;
        // `raft-log/` and `snapshots/` may have just been made in the data dir: without this, a
        // power cut can drop their entries (and the synced log and snapshots in them) with it.
        std::fs::File::open(&config.data_dir)?.sync_all()?;
        let raft_config = Config {
            cluster_name: config.cluster_token.clone(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            // Triggered by `spawn_snapshot_trigger`, by commands rather than entries.
            snapshot_policy: SnapshotPolicy::Never,
            max_payload_entries: APPEND_ENTRIES_MAX,
            // A restarted leader must win an election again. Restoring its leadership from the
            // persisted vote (openraft's default) is unsafe here, as openraft documents: the
            // store applies without syncing and the committed index is saved unsynced, so after
            // a power cut the restored leader's commit index (and state) can be older than what
            // it acknowledged, and reads it served went back in time (Jepsen, power-loss).
            enable_leader_restore: Some(false),
            ..Config::default()
        }
        .validate()
        .map_err(raft_error)?;
        let network = PeerNetwork {
            channels: channels.clone(),
            rpc_timeout_floor: Duration::from_millis(config.election_timeout_ms),
        };
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log, machine).await.map_err(raft_error)?;
        let (stopping, _) = tokio::sync::watch::channel(false);
        let quota = Arc::new(crate::quota::Quota::new(config.quota_backend_bytes));
        let lessor = Arc::new(Lessor::default());
        let member = Member {
            config,
            raft,
            store,
            lessor,
            channels,
            quota,
            writes: Arc::default(),
            read_index_rounds: Arc::default(),
            leader_read_rounds: Arc::default(),
            stopping: Arc::new(stopping),
        };
        if let Some(address) = member.config.listen_peer {
            member.serve_peers(address).await?;
        }
        if first_start && member.config.cluster_state == ClusterState::New {
            member.bootstrap().await?;
        }
        member.spawn_leadership_duties();
        member.spawn_snapshot_trigger(applied_commands);
        member.spawn_lease_expiry();
        if let Some(interval) = member.config.lease_checkpoint_interval {
            member.spawn_lease_checkpoints(interval);
        }
        if let Some(policy) = member.config.auto_compaction {
            member.spawn_auto_compaction(policy);
        }
        member.spawn_publish();
        Ok(member)
    }

    /// Writes the initial membership. Every first member does so with the same membership,
    /// which openraft allows (so it must be built from the shared flags alone: client URLs
    /// are published later); the election that follows picks one leader.
    async fn bootstrap(&self) -> Result<(), MemberError> {
        if self.raft.is_initialized().await.map_err(raft_error)? {
            return Ok(());
        }
        let token = &self.config.cluster_token;
        let nodes: BTreeMap<u64, MemberNode> = self
            .config
            .initial_cluster
            .iter()
            .map(|(name, urls)| (identity::initial_member_id(urls, token), MemberNode::new(name, urls.clone())))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // A peer bootstrapped first and this member already took part (it voted): the
            // membership it would have written is the one the peer wrote.
            Err(openraft::errors::RaftError::APIError(openraft::errors::InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(raft_error(error)),
        }
    }

    async fn serve_peers(&self, address: SocketAddr) -> Result<(), MemberError> {
        let tls = match (self.config.listen_peer_tls, &self.config.peer_tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(MemberError::Io(format!(
                    "listening for peers on https://{address} needs --peer-cert-file and --peer-key-file"
                )))
            }
        };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| MemberError::Io(format!("listening for peers on {address}: {error}")))?;
        let service = PeerService::new(self.clone(), self.config.data_dir.join("snapshots"));
        let server = PeerServer::new(service)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let mut stopping = self.stopping.subscribe();
        tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            };
            let router = tonic::transport::Server::builder().add_service(server);
            let served = match tls {
                None => {
                    // tonic leaves Nagle on for connections it is handed: without this, a small
                    // reply written in pieces (an append acknowledgement, a forwarded write's
                    // answer) waits for the peer's delayed ACK.
                    let incoming = tokio_stream::StreamExt::map(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        |accepted| {
                            if let Ok(stream) = &accepted {
                                let _ = stream.set_nodelay(true);
                            }
                            accepted
                        },
                    );
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
                Some(tls) => router.serve_with_incoming_shutdown(tls.incoming(listener), stop).await,
            };
            if let Err(error) = served {
                tracing::error!(%error, "the peer server stopped");
            }
        });
        Ok(())
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + Duration::from_millis(2 * self.config.election_timeout_ms)
    }

    pub(crate) fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The membership as this member knows it, voters and learners.
    pub fn members(&self) -> Vec<MemberInfo> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberInfo { id: *id, node: node.clone(), is_learner: !voters.contains(id) })
            .collect()
    }

    /// The lessor: lease deadlines, which only the leader keeps.
    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// etcd's minimum lease TTL: one and a half election timeouts, in whole seconds.
    pub fn min_lease_ttl_seconds(&self) -> i64 {
        (self.config.election_timeout_ms * 3 / 2).div_ceil(1000) as i64
    }

    /// Replicates and applies one command through the leader; the store's own error is inside
    /// the `Ok`. Concurrent writes travel to the leader and through the log in batches.
    pub async fn write(&self, command: Command) -> Result<store::Result<Response>, MemberError> {
        let (result, start_round) = self.writes.push(command);
        if start_round {
            let member = self.clone();
            tokio::spawn(async move { member.run_write_rounds().await });
        }
        // A round that vanished (shutdown) may have proposed the write: its outcome is unknown.
        result.await.unwrap_or(Err(MemberError::LeaderChanged))
    }

    /// Sends queued writes to the leader, a batch at a time, until none is queued.
    async fn run_write_rounds(&self) {
        while let Some((commands, replies)) = self.writes.next_batch() {
            let count = commands.len();
            match self.call_leader(LeaderCall::Writes(commands)).await {
                Ok(LeaderAnswer::WrittenEach(results)) if results.len() == count => replies.answer(results),
                Ok(other) => replies.fail(unexpected(&other)),
                Err(error) => replies.fail(error),
            }
        }
    }

    /// Returns once this member has applied everything committed before the call (etcd's
    /// linearizable read: the leader confirms its commit index with a quorum, then this member
    /// waits until it has applied that index). A member cut off from a quorum times out.
    /// Concurrent barriers share read-index rounds (`read_index.rs`).
    pub async fn read_barrier(&self) -> Result<(), MemberError> {
        if self.config.unsafe_local_reads {
            return Ok(());
        }
        let timeout = self.request_timeout();
        let read_index = |answer: Result<LeaderAnswer, MemberError>| match answer? {
            LeaderAnswer::ReadIndex(index) => Ok(index),
            other => Err(unexpected(&other)),
        };
        let barrier = async {
            // The leader's rounds are shared by every caller already (`serve_leader_call`); only
            // a follower gathers its own reads first. A leader that just lost its place asks
            // the new one like a follower.
            let leading = match self.serve_leader_call(LeaderCall::ReadIndex).await {
                Err(MemberError::NotLeader { .. }) => None,
                answer => Some(read_index(answer)),
            };
            let index = match leading {
                Some(index) => index?,
                None => {
                    let forwarded = || async { read_index(self.call_leader(LeaderCall::ReadIndex).await) };
                    self.read_index_rounds.read_index(forwarded).await?
                }
            };
            self.raft.wait(None).applied_index_at_least(Some(index), "read index").await.map_err(raft_error)?;
            Ok(())
        };
        tokio::time::timeout(timeout, barrier).await.unwrap_or(Err(MemberError::Timeout))
    }

    pub async fn lease_grant(&self, id: i64, ttl_seconds: i64) -> Result<store::Result<Response>, MemberError> {
        match self.call_leader(LeaderCall::LeaseGrant { id, ttl_seconds }).await? {
            LeaderAnswer::Written(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<store::Result<Response>, MemberError> {
        match self.call_leader(LeaderCall::LeaseRevoke { id }).await? {
            LeaderAnswer::Written(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// Restarts a lease's clock on the leader; its TTL, or None for an unknown lease.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, MemberError> {
        match self.call_leader(LeaderCall::LeaseKeepAlive { id }).await? {
            LeaderAnswer::KeepAlive(ttl) => Ok(ttl),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<Option<LeaseTimeToLive>, MemberError> {
        match self.call_leader(LeaderCall::LeaseTimeToLive { id, keys }).await? {
            LeaderAnswer::TimeToLive(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds a member by its peer URLs (as a learner, or as a voter at once as etcd does by
    /// default); returns its id. The new member then starts with `--initial-cluster-state existing`.
    pub async fn add_member(&self, peer_urls: Vec<String>, learner: bool) -> Result<u64, MemberError> {
        let salt =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        match self.call_leader(LeaderCall::AddMember { peer_urls, learner, salt }).await? {
            LeaderAnswer::MemberAdded(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn remove_member(&self, id: u64) -> Result<(), MemberError> {
        self.call_leader(LeaderCall::RemoveMember { id }).await.map(|_| ())
    }

    pub async fn promote_member(&self, id: u64) -> Result<(), MemberError> {
        self.call_leader(LeaderCall::PromoteMember { id }).await.map(|_| ())
    }

    /// Changes a member's peer URLs (etcd's MemberUpdate).
    pub async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<(), MemberError> {
        let Some(current) = self.members().into_iter().find(|member| member.id == id) else {
            return Err(MemberError::MemberNotFound);
        };
        let node = MemberNode { peer_urls, ..current.node };
        self.call_leader(LeaderCall::UpdateMember { id, node }).await.map(|_| ())
    }

    /// The raised alarms (NOSPACE is the only one keel raises), as the leader holds them;
    /// `disarm` lowers them first.
    pub async fn alarms(&self, disarm: bool) -> Result<Vec<Alarm>, MemberError> {
        match self.call_leader(LeaderCall::Alarms { disarm }).await? {
            LeaderAnswer::Alarms(alarms) => Ok(alarms),
            other => Err(unexpected(&other)),
        }
    }

    /// Hands leadership to `to` (etcd's MoveLeader) and waits until it leads.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), MemberError> {
        self.call_leader(LeaderCall::TransferLeader { to }).await.map(|_| ())
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The current Raft term, for response headers (read without copying the metrics).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    pub fn status(&self) -> MemberStatus {
        let metrics = self.metrics();
        let is_learner = !metrics.membership_config.membership().voter_ids().any(|id| id == self.config.id);
        MemberStatus {
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            committed_index: metrics.local_committed.map_or(0, |log_id| log_id.index),
            applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
            is_learner,
        }
    }

    /// Stops the member; a leader first hands leadership to the most up-to-date voter, so the
    /// cluster does not wait out an election timeout.
    pub async fn shutdown(&self) -> Result<(), MemberError> {
        if self.raft.is_leader() {
            if let Some(successor) = self.most_current_voter() {
                let handed_over = tokio::time::timeout(self.request_timeout(), self.transfer_leader(successor)).await;
                if !matches!(handed_over, Ok(Ok(()))) {
                    tracing::warn!(successor, "handing leadership over before shutdown failed");
                }
            }
        }
        let _ = self.stopping.send(true);
        self.raft.shutdown().await.map_err(raft_error)
    }

    fn most_current_voter(&self) -> Option<u64> {
        let metrics = self.metrics();
        let replication = metrics.replication.as_ref()?;
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.config.id)
            .max_by_key(|id| replication.get(id).cloned().flatten().map(|log_id| log_id.index))
    }

    /// Resolves when this member learns that it was removed from the cluster (etcd's member
    /// then exits with "the member has been permanently removed from the cluster").
    pub async fn removed(&self) {
        // Server metrics change with the role and the membership only; the full metrics change
        // at every commit, and each change woke every task waiting on them (BENCHMARKS.md).
        let mut metrics = self.raft.server_metrics();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        // Only a member that has seen itself listed can be removed. A member of a new cluster's
        // initial membership is listed from the start; one that joins catches up through older
        // memberships (a snapshot's, earlier log entries) that do not list it yet. Every
        // membership change is looked at as it applies, so a removal soon after is not missed.
        let mut listed = self.config.cluster_state == ClusterState::New
            && self.config.initial_cluster.iter().any(|(name, _)| *name == self.config.name);
        let mut seen_membership = None;
        loop {
            let ask_leader = tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                    false
                }
                _ = tick.tick() => true,
            };
            if self.is_stopping() {
                std::future::pending::<()>().await;
            }
            let membership = *metrics.borrow_watched().membership_config.log_id();
            if !ask_leader && seen_membership.as_ref() == Some(&membership) {
                continue;
            }
            seen_membership = Some(membership);
            let members = self.members();
            let here = members.iter().any(|member| member.id == self.config.id);
            listed |= here;
            if !listed {
                continue;
            }
            if !here && !members.is_empty() {
                return;
            }
            if ask_leader && !self.raft.is_leader() && self.removed_per_leader(&members).await {
                return;
            }
        }
    }

    /// Whether the leader's membership leaves this member out (a removed member may never
    /// receive the entry that removes it).
    async fn removed_per_leader(&self, members: &[MemberInfo]) -> bool {
        for member in members.iter().filter(|member| member.id != self.config.id) {
            if let Ok(Some(listed)) = ask_members(&self.channels, &member.node, Duration::from_secs(1)).await {
                return !listed.iter().any(|listed| listed.id == self.config.id);
            }
        }
        false
    }

    /// Keeps the lessor in step with leadership: a new leader restarts every lease's clock at
    /// its remaining TTL plus one election timeout (after applying what earlier leaders
    /// committed, so it knows every lease); a member that stops leading forgets the clocks.
    fn spawn_leadership_duties(&self) {
        let member = self.clone();
        let mut metrics = self.raft.server_metrics();
        tokio::spawn(async move {
            let mut leading_term = None;
            loop {
                let (state, term) = {
                    let current = metrics.borrow_watched();
                    (current.state, current.vote.leader_id.term)
                };
                if state == ServerState::Shutdown {
                    return;
                }
                let leading = (state == ServerState::Leader).then_some(term);
                if leading != leading_term {
                    member.lessor.demote();
                    if leading.is_some()
                        && member.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await.is_ok()
                    {
                        match member.store.leases() {
                            Ok(leases) => {
                                member.lessor.promote(&leases, Duration::from_millis(member.config.election_timeout_ms))
                            }
                            Err(error) => tracing::error!(%error, "reading leases on promotion failed"),
                        }
                    }
                    leading_term = leading;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Revokes expired leases through the log while this member leads.
    /// Builds a snapshot (and so lets the log be purged) every `snapshot_count` applied
    /// commands. openraft's own policy counts log entries, and an entry carries a whole batch.
    fn spawn_snapshot_trigger(&self, applied_commands: Arc<std::sync::atomic::AtomicU64>) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SNAPSHOT_CHECK_INTERVAL);
            let mut at_last_snapshot = applied_commands.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tick.tick().await;
                if member.is_stopping() || member.metrics().state == ServerState::Shutdown {
                    return;
                }
                let applied = applied_commands.load(std::sync::atomic::Ordering::Relaxed);
                if applied - at_last_snapshot < member.config.snapshot_count.max(1) {
                    continue;
                }
                at_last_snapshot = applied;
                // Fails only when Raft has stopped, which the next tick notices.
                let _ = member.raft.trigger().snapshot().await;
            }
        });
    }

    fn spawn_lease_expiry(&self) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK_INTERVAL);
            loop {
                tick.tick().await;
                if member.is_stopping() || member.metrics().state == ServerState::Shutdown {
                    return;
                }
                if !member.raft.is_leader() {
                    continue;
                }
                for id in member.lessor.expired(LEASE_REVOKES_PER_CHECK_MAX) {
                    match member.serve_leader_call(LeaderCall::LeaseRevoke { id }).await {
                        Ok(LeaderAnswer::Written(Ok(_) | Err(store::Error::LeaseNotFound { .. }))) => {
                            member.lessor.forget(id)
                        }
                        // Not leader any more, or shutting down: the next leader takes over.
                        _ => break,
                    }
                }
            }
        });
    }

    /// Records every lease's remaining TTL through the log while this member leads.
    fn spawn_lease_checkpoints(&self, interval: Duration) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                if member.is_stopping() {
                    return;
                }
                if !member.raft.is_leader() {
                    continue;
                }
                for (id, remaining_ttl_seconds) in member.lessor.remaining_all() {
                    let checkpoint = Command::LeaseCheckpoint { id, remaining_ttl_seconds };
                    match member.serve_leader_call(LeaderCall::Write(checkpoint)).await {
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    }

    /// Publishes this member's name and client URLs into the membership (a member added by
    /// peer URLs alone has neither), as etcd members publish their attributes.
    fn spawn_publish(&self) {
        let member = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if member.is_stopping() {
                    return;
                }
                let Some(listed) = member.members().into_iter().find(|listed| listed.id == member.config.id) else {
                    continue;
                };
                if listed.node.name == member.config.name && listed.node.client_urls == member.config.client_urls {
                    return;
                }
                let node = MemberNode {
                    name: member.config.name.clone(),
                    client_urls: member.config.client_urls.clone(),
                    ..listed.node
                };
                let call = LeaderCall::UpdateMember { id: member.config.id, node };
                if let Err(error) = member.call_leader(call).await {
                    tracing::debug!(%error, "publishing member attributes failed; retrying");
                }
            }
        });
    }
}

fn unexpected(answer: &LeaderAnswer) -> MemberError {
    MemberError::Raft(format!("unexpected answer from the leader: {answer:?}"))
}

/// The membership as `node` answers it, if `node` leads (only the leader serves the call).
async fn ask_members(
    channels: &PeerChannels,
    node: &MemberNode,
    timeout: Duration,
) -> Result<Option<Vec<MemberInfo>>, MemberError> {
    let mut client = channels.client(node).map_err(MemberError::Unreachable)?;
    let mut request = tonic::Request::new(Frame { payload: crate::codec::encode(&LeaderCall::Members)? });
    request.set_timeout(timeout);
    let frame = client.call_leader(request).await.map_err(|status| MemberError::Unreachable(status.to_string()))?;
    match crate::codec::decode::<Result<LeaderAnswer, MemberError>>(&frame.into_inner().payload, "members")? {
        Ok(LeaderAnswer::Members(members)) => Ok(Some(members)),
        _ => Ok(None),
    }
}

/// The id this member runs as: the one its data dir recorded; else, in a new cluster, the one
/// its peer URLs give; else the one the running cluster's leader lists for its peer URLs.
async fn resolve_member_id(config: &MemberConfig, channels: &PeerChannels) -> Result<u64, MemberError> {
    if let Some(id) = identity::stored_member_id(&config.data_dir)? {
        return Ok(id);
    }
    let id = match config.cluster_state {
        ClusterState::New => {
            let Some((_, urls)) = config.initial_cluster.iter().find(|(name, _)| *name == config.name) else {
                return Err(MemberError::Io(format!(
                    "--initial-cluster has no entry for this member's --name {:?}",
                    config.name
                )));
            };
            identity::initial_member_id(urls, &config.cluster_token)
        }
        ClusterState::Existing => find_self_in_cluster(config, channels).await?,
    };
    identity::store_member_id(&config.data_dir, id)?;
    Ok(id)
}

async fn find_self_in_cluster(config: &MemberConfig, channels: &PeerChannels) -> Result<u64, MemberError> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let peers: Vec<MemberNode> = config
        .initial_cluster
        .iter()
        .filter(|(_, urls)| !urls.iter().any(|url| config.peer_urls.contains(url)))
        .map(|(name, urls)| MemberNode::new(name, urls.clone()))
        .collect();
    while tokio::time::Instant::now() < deadline {
        for peer in &peers {
            if let Ok(Some(members)) = ask_members(channels, peer, Duration::from_secs(2)).await {
                let own = members
                    .iter()
                    .find(|member| member.node.peer_urls.iter().any(|url| config.peer_urls.contains(url)));
                return match own {
                    Some(member) => Ok(member.id),
                    None => Err(MemberError::Io(format!(
                        "the cluster does not list peer URLs {:?}: add this member first (etcdctl member add)",
                        config.peer_urls
                    ))),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(MemberError::Io("found no leader among the --initial-cluster peers to join".into()))
}
