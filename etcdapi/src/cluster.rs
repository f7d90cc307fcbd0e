//! etcd's Cluster service: MemberList for the single member; membership changes answer
//! UNIMPLEMENTED until the peer transport lands (issue 3).

use std::sync::Arc;

use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::Context;

#[derive(Debug)]
pub struct ClusterService {
    context: Arc<Context>,
}

impl ClusterService {
    pub fn new(context: Arc<Context>) -> Self {
        ClusterService { context }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "keel: Cluster.{rpc} is not implemented yet: single-member clusters only (see COMPAT.md)"
    ))
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, _request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        let member = &self.context.member;
        let listed = PbMember {
            id: member.config.id,
            name: member.config.name.clone(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: self.context.client_urls.clone(),
            is_learner: false,
        };
        Ok(Response::new(PbMemberListResponse {
            header: self.context.header(member.store().revision()),
            members: vec![listed],
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
