//! etcd's Maintenance service: Status now; the rest answers UNIMPLEMENTED until issue 5.

use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};
use tonic::{Request, Response, Status};

use crate::{Context, EMULATED_ETCD_VERSION};

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
    async fn alarm(&self, _request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        Err(not_yet("Alarm"))
    }

    async fn status(&self, _request: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let store = self.context.member.store();
        let (leader, term, last_index, applied) = self.context.member.status();
        let size = store.size_bytes() as i64;
        Ok(Response::new(PbStatusResponse {
            header: self.context.header(store.revision()),
            version: EMULATED_ETCD_VERSION.to_string(),
            db_size: size,
            leader: leader.unwrap_or(0),
            raft_index: last_index,
            raft_term: term,
            raft_applied_index: applied,
            db_size_in_use: size,
            ..PbStatusResponse::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        Err(not_yet("Defragment"))
    }

    async fn hash(&self, _request: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(not_yet("Hash"))
    }

    async fn hash_kv(&self, _request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        Err(not_yet("HashKV"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _request: Request<PbSnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(not_yet("MoveLeader"))
    }

    async fn downgrade(&self, _request: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
