//! etcd's Maintenance service: Status, Hash, HashKV, Alarm (NOSPACE) and Defragment
//! (accepted); Snapshot, MoveLeader and Downgrade answer UNIMPLEMENTED until issue 5.

use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmMember, PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};
use tonic::{Request, Response, Status};

use crate::{status, Context, EMULATED_ETCD_VERSION};

#[derive(Debug)]
pub struct MaintenanceService {
    context: Arc<Context>,
}

impl MaintenanceService {
    pub fn new(context: Arc<Context>) -> Self {
        MaintenanceService { context }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("keel: Maintenance.{rpc} is not implemented yet (see COMPAT.md)"))
}

type SnapshotStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    /// The leader's alarms: NOSPACE once a write would pass `--quota-backend-bytes`. GET lists
    /// them, DEACTIVATE (`etcdctl alarm disarm`) lowers them; ACTIVATE is not supported.
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        // etcd's AlarmRequest actions: GET = 0, ACTIVATE = 1, DEACTIVATE = 2.
        let action = request.get_ref().action;
        if action == 0 {
            self.context.require_authenticated(request.metadata())?;
        } else {
            self.context.require_admin(request.metadata())?;
        }
        if action == 1 {
            return Err(not_yet("Alarm ACTIVATE"));
        }
        let alarms = self.context.member.alarms(action == 2).await.map_err(status::from_member)?;
        let store = self.context.member.store();
        Ok(Response::new(PbAlarmResponse { header: self.context.header(store.revision()), alarms: to_wire(&alarms) }))
    }

    async fn status(&self, request: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        self.context.require_authenticated(request.metadata())?;
        let store = self.context.member.store();
        let raft = self.context.member.status();
        let size = store.size_bytes() as i64;
        Ok(Response::new(PbStatusResponse {
            header: self.context.header(store.revision()),
            version: EMULATED_ETCD_VERSION.to_string(),
            db_size: size,
            leader: raft.leader.unwrap_or(0),
            raft_index: raft.committed_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            db_size_in_use: size,
            is_learner: raft.is_learner,
            // As etcd: raised alarms appear among the errors ("alarm:NOSPACE").
            errors: match self.context.member.alarms(false).await {
                Ok(alarms) if !alarms.is_empty() => vec!["alarm:NOSPACE".to_string()],
                _ => Vec::new(),
            },
            ..PbStatusResponse::default()
        }))
    }

    /// keel never needs a stop-the-world defrag (space returns through background compaction);
    /// Defragment asks the engine to reclaim now what compaction freed, without blocking reads
    /// or writes, so the etcd recovery from NOSPACE (compact, defrag, disarm) works unchanged.
    async fn defragment(
        &self,
        request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let store = self.context.member.store().clone();
        // First let requested compactions finish, so what they free is reclaimed too.
        let reclaimed = tokio::task::spawn_blocking(move || {
            store.wait_for_compaction()?;
            store::Space::ALL.iter().try_for_each(|space| store.engine().reclaim_space(*space))
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?;
        reclaimed.map_err(status::from_store)?;
        let store = self.context.member.store();
        Ok(Response::new(PbDefragmentResponse { header: self.context.header(store.revision()) }))
    }

    /// The hash of the whole keyspace at the current revision (keel hashes logical content, so
    /// members that compacted physically to different points agree).
    async fn hash(&self, request: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let store = self.context.member.store();
        let hash = store.hash_kv(0).map_err(status::from_store)?;
        Ok(Response::new(PbHashResponse { header: self.context.header(store.revision()), hash: hash.hash }))
    }

    async fn hash_kv(&self, request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let store = self.context.member.store();
        let hash = store.hash_kv(request.into_inner().revision).map_err(status::from_store)?;
        // As etcd: the header carries the revision that was hashed (writes may land meanwhile).
        Ok(Response::new(PbHashKvResponse {
            header: self.context.header(hash.revision),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<PbSnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.context.require_admin(request.metadata())?;
        let chunks = crate::snapshot_stream::start(&self.context);
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(chunks))))
    }

    /// Hands leadership to the target voter and answers once it leads. etcd requires the call
    /// on the leader; keel sends it on to the leader from any member.
    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let target = request.into_inner().target_id;
        self.context.member.transfer_leader(target).await.map_err(status::from_member)?;
        let store = self.context.member.store();
        Ok(Response::new(PbMoveLeaderResponse { header: self.context.header(store.revision()) }))
    }

    async fn downgrade(&self, _request: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}

/// etcd's AlarmMember list (alarm type NOSPACE = 1).
fn to_wire(alarms: &[raft::Alarm]) -> Vec<PbAlarmMember> {
    alarms
        .iter()
        .map(|alarm| match alarm {
            raft::Alarm::NoSpace { member_id } => PbAlarmMember { member_id: *member_id, alarm: 1 },
        })
        .collect()
}
