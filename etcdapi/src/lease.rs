//! etcd's Lease service. Grants and revocations go through the log; deadlines live in the
//! leader's lessor (`raft::Lessor`), which KeepAlive restarts and TimeToLive reads; a follower
//! sends those calls on to the leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest,
    PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use store::Access;

use crate::{status, Caller, Context};

#[derive(Debug)]
pub struct LeaseService {
    context: Arc<Context>,
    next_id: AtomicU64,
}

impl LeaseService {
    pub fn new(context: Arc<Context>) -> Self {
        // Ids the server picks: the clock at start in the high bits, a counter below, kept positive.
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        LeaseService { context, next_id: AtomicU64::new(seed << 16) }
    }

    fn pick_id(&self) -> i64 {
        let id = (self.next_id.fetch_add(1, Ordering::Relaxed) & (i64::MAX as u64)) as i64;
        id.max(1)
    }
}

/// KeepAlive responses queued to one client.
const KEEP_ALIVE_RESPONSES_MAX: usize = 16;

/// etcd's lease checks under auth: the root role, or `access` to every key attached to lease
/// `id` (a lease is renewed, revoked or read through the keys it holds).
fn check_lease_keys(context: &Context, caller: &Caller, id: i64, access: Access) -> Result<(), Status> {
    let auth = context.auth();
    if !auth.enabled {
        return Ok(());
    }
    caller.check_authenticated(&auth)?;
    if caller.check_admin(&auth).is_ok() {
        return Ok(());
    }
    for key in context.member.store().lease_keys(id).map_err(status::from_store)? {
        match access {
            Access::Read => caller.check_read(&auth, &key, &[])?,
            Access::Write => caller.check_write(&auth, &key, &[])?,
        }
    }
    Ok(())
}

type KeepAliveStream = tokio_stream::wrappers::ReceiverStream<Result<PbLeaseKeepAliveResponse, Status>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let request = request.into_inner();
        let id = if request.id == 0 { self.pick_id() } else { request.id };
        let ttl = request.ttl.max(self.context.member.min_lease_ttl_seconds());
        let response = self.context.member.lease_grant(id, ttl).await;
        let response = response.map_err(status::from_member)?.map_err(status::from_store)?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: self.context.header(response.revision()),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let caller = self.context.caller(request.metadata())?;
        let id = request.into_inner().id;
        check_lease_keys(&self.context, &caller, id, Access::Write)?;
        let response = self.context.member.lease_revoke(id).await;
        let response = response.map_err(status::from_member)?.map_err(status::from_store)?;
        Ok(Response::new(PbLeaseRevokeResponse { header: self.context.header(response.revision()) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let caller = self.context.caller(request.metadata())?;
        let mut inbound = request.into_inner();
        let (outbound, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_MAX);
        let context = self.context.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                if let Err(refused) = check_lease_keys(&context, &caller, request.id, Access::Write) {
                    let _ = outbound.send(Err(refused)).await;
                    break;
                }
                // The leader keeps the clocks; etcd answers an unknown lease with TTL 0.
                let ttl = match context.member.lease_keep_alive(request.id).await {
                    Ok(ttl) => ttl.unwrap_or(0),
                    Err(error) => {
                        let _ = outbound.send(Err(status::from_member(error))).await;
                        break;
                    }
                };
                let revision = context.member.store().revision();
                let response = PbLeaseKeepAliveResponse { header: context.header(revision), id: request.id, ttl };
                if outbound.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(KeepAliveStream::new(receiver)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let caller = self.context.caller(request.metadata())?;
        let request = request.into_inner();
        if request.keys {
            check_lease_keys(&self.context, &caller, request.id, Access::Read)?;
        }
        let member = &self.context.member;
        let answer = member.lease_time_to_live(request.id, request.keys).await.map_err(status::from_member)?;
        // etcd answers an unknown lease with TTL -1 rather than an error.
        let Some(lease) = answer else {
            return Ok(Response::new(PbLeaseTimeToLiveResponse {
                header: self.context.header(member.store().revision()),
                id: request.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: self.context.header(member.store().revision()),
            id: request.id,
            ttl: lease.remaining_seconds,
            granted_ttl: lease.granted_ttl_seconds,
            keys: lease.keys.into_iter().map(|key| key.to_vec()).collect(),
        }))
    }

    async fn lease_leases(
        &self,
        request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let caller = self.context.caller(request.metadata())?;
        let store = self.context.member.store();
        let leases = store.leases().map_err(status::from_store)?;
        for lease in &leases {
            check_lease_keys(&self.context, &caller, lease.id, Access::Read)?;
        }
        Ok(Response::new(PbLeaseLeasesResponse {
            header: self.context.header(store.revision()),
            leases: leases.into_iter().map(|lease| PbLeaseStatus { id: lease.id }).collect(),
        }))
    }
}
