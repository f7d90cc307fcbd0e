//! A 3-member cluster in one process over an in-memory network that can cut members off:
//! replication, replies, a lagging member caught up by snapshot, and leader failover. Every
//! member runs the real log store and state machine on RocksDB. (The gRPC transport and
//! multi-process tests come with the member process.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{Config, Raft, SnapshotPolicy};
use raft::MemberNode;
use raft::{LogStore, Reply, Request, SnapshotFile, StateMachine, TypeConfig};
use store::{Command, PutRequest, Response, Store};

type Member = Raft<TypeConfig, StateMachine>;

/// Routes RPCs between members in this process; a cut-off member neither sends nor receives.
#[derive(Clone, Default)]
struct Router {
    members: Arc<Mutex<HashMap<u64, Member>>>,
    cut_off: Arc<Mutex<HashSet<u64>>>,
}

struct Client {
    router: Router,
    from: u64,
    to: u64,
}

impl Client {
    fn target(&self) -> Result<Member, Unreachable<TypeConfig>> {
        let cut_off = self.router.cut_off.lock().unwrap();
        if cut_off.contains(&self.from) || cut_off.contains(&self.to) {
            return Err(Unreachable::from_string(format!("{} -> {} is cut", self.from, self.to)));
        }
        let members = self.router.members.lock().unwrap();
        members.get(&self.to).cloned().ok_or_else(|| Unreachable::from_string(format!("no member {}", self.to)))
    }
}

struct Factory {
    router: Router,
    from: u64,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Client;

    async fn new_client(&mut self, target: u64, _node: &MemberNode) -> Client {
        Client { router: self.router.clone(), from: self.from, to: target }
    }
}

impl RaftNetworkV2<TypeConfig> for Client {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let target = self.target().map_err(RPCError::Unreachable)?;
        target.append_entries(request).await.map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let target = self.target().map_err(RPCError::Unreachable)?;
        target.vote(request).await.map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let target = self.target().map_err(StreamingError::Unreachable)?;
        target
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|error| StreamingError::Unreachable(Unreachable::new(&error)))
    }
}

struct Cluster {
    router: Router,
    stores: BTreeMap<u64, Arc<Store>>,
    _dir: tempfile::TempDir,
}

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

impl Cluster {
    async fn start(ids: &[u64]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let router = Router::default();
        let mut stores = BTreeMap::new();
        let config = Arc::new(
            Config {
                heartbeat_interval: 50,
                election_timeout_min: 300,
                election_timeout_max: 600,
                // Small, so the lagging-member test needs a snapshot.
                snapshot_policy: SnapshotPolicy::LogsSinceLast(50),
                max_in_snapshot_log_to_keep: 0,
                purge_batch_size: 1,
                ..Config::default()
            }
            .validate()
            .unwrap(),
        );
        for &id in ids {
            let member_dir = dir.path().join(format!("member-{id}"));
            let engine = store::RocksEngine::open(member_dir.join("store"), &store::RocksOptions::default()).unwrap();
            let options = store::StoreOptions { durability: store::Durability::Buffered, ..Default::default() };
            let store = Arc::new(Store::open(Arc::new(engine), options).unwrap());
            let log = LogStore::open(member_dir.join("log")).unwrap();
            let machine = StateMachine::new(store.clone(), &member_dir.join("snapshots"), None).unwrap();
            let factory = Factory { router: router.clone(), from: id };
            let member = Raft::new(id, config.clone(), factory, log, machine).await.unwrap();
            router.members.lock().unwrap().insert(id, member);
            stores.insert(id, store);
        }
        let nodes: BTreeMap<u64, MemberNode> =
            ids.iter().map(|id| (*id, MemberNode::new(&format!("member-{id}"), Vec::new()))).collect();
        router.member(ids[0]).initialize(nodes).await.unwrap();
        Cluster { router, stores, _dir: dir }
    }

    async fn leader(&self, among: &[u64]) -> u64 {
        let member = self.router.member(among[0]);
        let metrics = member
            .wait(WAIT)
            .metrics(|metrics| metrics.current_leader.is_some_and(|leader| among.contains(&leader)), "a leader")
            .await
            .unwrap();
        metrics.current_leader.unwrap()
    }

    async fn put(&self, leader: u64, key: &str) -> Reply {
        let command = Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            ..PutRequest::default()
        });
        // A new leader refuses writes until its leadership is confirmed: retry, boundedly.
        for _attempt in 0..200 {
            match self.router.member(leader).client_write(Request::one(command.clone())).await {
                Ok(response) => return response.data,
                Err(error) if error.forward_to_leader().is_some() => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(error) => panic!("write failed: {error}"),
            }
        }
        panic!("member {leader} never accepted the write");
    }

    /// Waits until every listed member has applied up to the leader's last log index, then
    /// checks they all hold the same data.
    async fn converged(&self, leader: u64, members: &[u64]) {
        let last = self.router.member(leader).metrics().borrow_watched().last_log_index;
        for id in members {
            self.router.member(*id).wait(WAIT).applied_index_at_least(last, "caught up").await.unwrap();
        }
        let hashes: Vec<_> = members.iter().map(|id| self.stores[id].hash_kv(0).unwrap()).collect();
        assert!(hashes.windows(2).all(|pair| pair[0] == pair[1]), "members diverge: {hashes:?}");
    }
}

impl Router {
    fn member(&self, id: u64) -> Member {
        self.members.lock().unwrap()[&id].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_catches_up_by_snapshot_and_survives_leader_loss() {
    let cluster = Cluster::start(&[1, 2, 3]).await;
    let leader = cluster.leader(&[1, 2, 3]).await;

    // Replies carry the store's answer: revisions count up from 2, one per put.
    let mut revisions = Vec::new();
    for index in 0..20 {
        match cluster.put(leader, &format!("key-{index}")).await {
            Reply::Applied(results) => match results.as_slice() {
                [Ok(Response::Put(put))] => revisions.push(put.revision),
                other => panic!("unexpected results {other:?}"),
            },
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!(revisions, (2..22).collect::<Vec<i64>>());

    // A batch entry (a member's joined writes) applies each command at its own revision, with
    // its own result: here a put, a delete of a missing key, and another put.
    let command = |key: &str| {
        Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            ..PutRequest::default()
        })
    };
    let missing = Command::DeleteRange(store::DeleteRangeRequest {
        key: Bytes::from_static(b"missing"),
        ..store::DeleteRangeRequest::default()
    });
    let batch = Request { commands: vec![command("batch-a"), missing, command("batch-b")] };
    let reply = cluster.router.member(leader).client_write(batch).await.unwrap().data;
    match reply {
        Reply::Applied(results) => match results.as_slice() {
            [Ok(Response::Put(first)), Ok(Response::DeleteRange(deleted)), Ok(Response::Put(second))] => {
                assert_eq!((first.revision, second.revision), (22, 23), "one revision per put, none for the no-op");
                assert_eq!(deleted.deleted, 0);
            }
            other => panic!("unexpected batch results {other:?}"),
        },
        other => panic!("unexpected reply {other:?}"),
    }
    cluster.converged(leader, &[1, 2, 3]).await;

    // A follower cut off while the log moves past a snapshot and is purged catches up by
    // installing that snapshot.
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.router.cut_off.lock().unwrap().insert(lagging);
    for index in 0..150 {
        cluster.put(leader, &format!("more-{index}")).await;
    }
    cluster.router.member(leader).trigger().snapshot().await.unwrap();
    let leader_member = cluster.router.member(leader);
    leader_member
        .wait(WAIT)
        .metrics(|metrics| metrics.purged.is_some_and(|purged| purged.index > 100), "purged")
        .await
        .unwrap();
    cluster.router.cut_off.lock().unwrap().clear();
    cluster.converged(leader, &[1, 2, 3]).await;
    let lagging_metrics = cluster.router.member(lagging).metrics().borrow_watched().clone();
    assert!(lagging_metrics.snapshot.is_some(), "the lagging member caught up through a snapshot");
    assert_eq!(cluster.stores[&lagging].revision(), 173);

    // The leader is cut off: the other two elect a new one and go on; the old one rejoins.
    cluster.router.cut_off.lock().unwrap().insert(leader);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.leader(&others).await;
    assert!(
        matches!(cluster.put(new_leader, "after-failover").await, Reply::Applied(results) if matches!(results.as_slice(), [Ok(_)]))
    );
    cluster.router.cut_off.lock().unwrap().clear();
    cluster.converged(new_leader, &[1, 2, 3]).await;
    assert_eq!(cluster.stores[&leader].revision(), 174);

    for id in [1, 2, 3] {
        cluster.router.member(id).shutdown().await.unwrap();
    }
}
