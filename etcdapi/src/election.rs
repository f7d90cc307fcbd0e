//! etcd's v3election service (`/v3electionpb.Election/...`), as etcd's
//! `concurrency.Election` runs it (see `concurrency.rs`): the candidate with the oldest key
//! under `name/` leads, and that key's value is its proclamation. A `LeaderKey` (name, key,
//! create revision, lease) is the proof of leadership Proclaim and Resign check.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use watch::{ResponseBody, WatchRequest};

use crate::concurrency::{self, Turn, Withdrawal};
use crate::protos::v3electionpb::election_server::Election;
use crate::protos::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use crate::{convert, Context};

#[derive(Debug)]
pub struct ElectionService {
    context: Arc<Context>,
}

impl ElectionService {
    pub fn new(context: Arc<Context>) -> Self {
        ElectionService { context }
    }
}

/// Observe responses queued to one client before the observer waits for it.
const OBSERVE_RESPONSES_MAX: usize = 16;

type ObserveStream = tokio_stream::wrappers::ReceiverStream<Result<LeaderResponse, Status>>;

/// Puts `value` on the leader key if it is still the incarnation created at `revision`;
/// returns the txn's revision, or etcd's "not leader".
async fn proclaim(context: &Context, key: &Bytes, revision: i64, lease: i64, value: Bytes) -> Result<i64, Status> {
    let txn = store::TxnRequest {
        compare: vec![concurrency::created_at(key, revision)],
        success: vec![concurrency::put(key, value, lease)],
        failure: vec![],
    };
    let response = concurrency::txn(context, txn).await?;
    if !response.succeeded {
        return Err(concurrency::not_leader());
    }
    Ok(response.revision)
}

#[tonic::async_trait]
impl Election for ElectionService {
    /// Enters the election with `value` (a lease that already campaigns keeps its key and
    /// proclaims the new value), then waits until every older candidate is gone.
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        concurrency::check_name_access(&self.context, request.metadata(), &request.get_ref().name, true)?;
        let request = request.into_inner();
        let context = &self.context;
        let lease = concurrency::session_lease(context, request.lease).await?;
        let prefix = concurrency::prefix(&request.name);
        let key = concurrency::ownership_key(&prefix, lease);
        let value = Bytes::from(request.value);
        let enter = store::TxnRequest {
            compare: vec![concurrency::created_at(&key, 0)],
            success: vec![concurrency::put(&key, value.clone(), lease)],
            failure: vec![store::RequestOp::Range(concurrency::get(&key))],
        };
        let response = concurrency::txn(context, enter).await?;
        let own_revision = if response.succeeded {
            response.revision
        } else {
            let Some(existing) = concurrency::range_kvs(&response, 0).first() else {
                return Err(Status::internal("election: the candidate key vanished inside its txn"));
            };
            if existing.value != value {
                let revision = existing.create_revision;
                if let Err(status) = proclaim(context, &key, revision, lease, value).await {
                    let _ = concurrency::txn(context, concurrency::delete_if_created_at(&key, revision)).await;
                    return Err(status);
                }
            }
            existing.create_revision
        };
        let withdrawal = Withdrawal::arm(context.clone(), key.clone(), own_revision);
        match concurrency::wait_for_turn(context, &prefix, &key, own_revision).await? {
            Turn::Reached { .. } => withdrawal.disarm(),
            // etcd's Campaign would answer as if elected with its key gone; a leader key that
            // no longer exists leads nothing.
            Turn::KeyLost => {
                withdrawal.disarm();
                return Err(concurrency::not_leader());
            }
        }
        // etcd answers with the header of the txn that entered the election.
        Ok(Response::new(CampaignResponse {
            header: context.header(response.revision),
            leader: Some(LeaderKey { name: request.name, key: key.to_vec(), rev: own_revision, lease }),
        }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let name = request.get_ref().leader.as_ref().map(|leader| leader.name.clone()).unwrap_or_default();
        concurrency::check_name_access(&self.context, request.metadata(), &name, true)?;
        let request = request.into_inner();
        let leader = request.leader.ok_or_else(concurrency::missing_leader_key)?;
        // As etcd's server, which opens a session on the given lease (a fresh one for 0).
        let lease = concurrency::session_lease(&self.context, leader.lease).await?;
        let key = Bytes::from(leader.key);
        let revision = proclaim(&self.context, &key, leader.rev, lease, request.value.into()).await?;
        Ok(Response::new(ProclaimResponse { header: self.context.header(revision) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        concurrency::check_name_access(&self.context, request.metadata(), &request.get_ref().name, false)?;
        let prefix = concurrency::prefix(&request.into_inner().name);
        let response = concurrency::read(&self.context, &concurrency::first_created(&prefix)).await?;
        let Some(kv) = response.kvs.into_iter().next() else {
            return Err(concurrency::no_leader());
        };
        Ok(Response::new(LeaderResponse {
            header: self.context.header(response.revision),
            kv: Some(convert::key_value(kv)),
        }))
    }

    type ObserveStream = ObserveStream;

    /// Streams the leader: the current one (or, if none, the first to appear), then every new
    /// value it proclaims, then, once its key is deleted, the next leader, and so on. As in
    /// etcd, intermediate leaders may be skipped but the latest is always sent.
    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        concurrency::check_name_access(&self.context, request.metadata(), &request.get_ref().name, false)?;
        let prefix = concurrency::prefix(&request.into_inner().name);
        let (outbound, receiver) = mpsc::channel(OBSERVE_RESPONSES_MAX);
        let context = self.context.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = observe(&context, &prefix, &outbound) => {
                    if let Err(status) = result {
                        let _ = outbound.send(Err(status)).await;
                    }
                }
                // The client went away: stop watching at once, not at the next change.
                () = outbound.closed() => {}
            }
        });
        Ok(Response::new(ObserveStream::new(receiver)))
    }

    /// Deletes the leader key if it is still the incarnation named; succeeds either way.
    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let key = request.get_ref().leader.as_ref().map(|leader| leader.key.clone()).unwrap_or_default();
        concurrency::check_key_write(&self.context, request.metadata(), &key)?;
        let leader = request.into_inner().leader.ok_or_else(concurrency::missing_leader_key)?;
        let key = Bytes::from(leader.key);
        let response = concurrency::txn(&self.context, concurrency::delete_if_created_at(&key, leader.rev)).await?;
        Ok(Response::new(ResignResponse { header: self.context.header(response.revision) }))
    }
}

type Outbound = mpsc::Sender<Result<LeaderResponse, Status>>;

/// The observe loop; returns Ok when the client is gone.
async fn observe(context: &Context, prefix: &Bytes, outbound: &Outbound) -> Result<(), Status> {
    let send = |kv: store::KeyValue, revision: i64| {
        let response = LeaderResponse { header: context.header(revision), kv: Some(convert::key_value(kv)) };
        outbound.send(Ok(response))
    };
    let watch_error = |error: watch::Error| Status::unavailable(format!("etcdserver: {error}"));
    let hub_closed = || Status::unavailable("etcdserver: watch hub is closed");
    loop {
        let current = concurrency::read(context, &concurrency::first_created(prefix)).await?;
        let (leader, revision) = match current.kvs.into_iter().next() {
            Some(kv) => (kv, current.revision),
            None => {
                // No leader: the first key put under the prefix is the next one.
                let mut stream = context.hub.open_stream();
                let request = WatchRequest {
                    start_revision: current.revision + 1,
                    filter_deletes: true,
                    ..WatchRequest::new(store::KeyRange::prefix(prefix))
                };
                stream.watch(None, request).await.map_err(watch_error)?;
                let first = loop {
                    match stream.recv().await.ok_or_else(hub_closed)?.body {
                        ResponseBody::Events(events) => {
                            if let Some(event) = events.into_iter().next() {
                                break Some(event.kv);
                            }
                        }
                        ResponseBody::Canceled(_) => break None,
                        ResponseBody::Created | ResponseBody::Progress => {}
                    }
                };
                // Cancelled by compaction: start over from a fresh read.
                let Some(kv) = first else { continue };
                let revision = kv.mod_revision;
                (kv, revision)
            }
        };
        let key = leader.key.clone();
        if send(leader, revision).await.is_err() {
            return Ok(());
        }
        // Follow the leader key: each put is a proclamation, its delete ends this leader.
        let mut stream = context.hub.open_stream();
        let request = WatchRequest { start_revision: revision + 1, ..WatchRequest::new(store::KeyRange::Single(key)) };
        stream.watch(None, request).await.map_err(watch_error)?;
        'leader: loop {
            let response = stream.recv().await.ok_or_else(hub_closed)?;
            match response.body {
                ResponseBody::Events(events) => {
                    for event in events {
                        if event.kind == store::EventKind::Delete {
                            break 'leader;
                        }
                        if send(event.kv, response.revision).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                ResponseBody::Canceled(_) => break 'leader,
                ResponseBody::Created | ResponseBody::Progress => {}
            }
        }
    }
}
