//! etcd's Cluster service over the Raft membership: list, add (as a voter, or as a learner to
//! promote later), remove, update peer URLs, promote. Changes go through the leader from any
//! member; the list is this member's view.

use std::sync::Arc;

use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use raft::MemberInfo;
use tonic::{Request, Response, Status};

use crate::{status, Context};

#[derive(Debug)]
pub struct ClusterService {
    context: Arc<Context>,
}

impl ClusterService {
    pub fn new(context: Arc<Context>) -> Self {
        ClusterService { context }
    }

    fn members(&self) -> Vec<PbMember> {
        self.context.member.members().into_iter().map(to_pb).collect()
    }

    fn header(&self) -> Option<etcd_client::proto::PbResponseHeader> {
        self.context.header(self.context.member.store().revision())
    }
}

fn to_pb(member: MemberInfo) -> PbMember {
    PbMember {
        id: member.id,
        name: member.node.name,
        peer_ur_ls: member.node.peer_urls,
        client_ur_ls: member.node.client_urls,
        is_learner: member.is_learner,
    }
}

/// etcd refuses URLs it cannot parse with "given member URLs are invalid".
fn check_urls(urls: &[String]) -> Result<(), Status> {
    let valid = |url: &String| {
        (url.starts_with("http://") || url.starts_with("https://"))
            && url.split("://").nth(1).is_some_and(|rest| rest.contains(':'))
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(Status::invalid_argument("etcdserver: given member URLs are invalid"));
    }
    Ok(())
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let request = request.into_inner();
        check_urls(&request.peer_ur_ls)?;
        let member = &self.context.member;
        let id =
            member.add_member(request.peer_ur_ls.clone(), request.is_learner).await.map_err(status::from_member)?;
        let added = PbMember {
            id,
            name: String::new(),
            peer_ur_ls: request.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: request.is_learner,
        };
        // This member may not have applied the change yet: list the new member either way.
        let mut members = self.members();
        if !members.iter().any(|listed| listed.id == id) {
            members.push(added.clone());
        }
        Ok(Response::new(PbMemberAddResponse { header: self.header(), member: Some(added), members }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let id = request.into_inner().id;
        self.context.member.remove_member(id).await.map_err(status::from_member)?;
        let members = self.members().into_iter().filter(|listed| listed.id != id).collect();
        Ok(Response::new(PbMemberRemoveResponse { header: self.header(), members }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let request = request.into_inner();
        check_urls(&request.peer_ur_ls)?;
        self.context.member.update_member(request.id, request.peer_ur_ls).await.map_err(status::from_member)?;
        Ok(Response::new(PbMemberUpdateResponse { header: self.header(), members: self.members() }))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        Ok(Response::new(PbMemberListResponse { header: self.header(), members: self.members() }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        self.context.require_admin(request.metadata())?;
        let id = request.into_inner().id;
        self.context.member.promote_member(id).await.map_err(status::from_member)?;
        Ok(Response::new(PbMemberPromoteResponse { header: self.header(), members: self.members() }))
    }
}
