//! etcd's v3lock service (`/v3lockpb.Lock/...`): a distributed mutex per name, as etcd's
//! `concurrency.Mutex` runs it (see `concurrency.rs`). The lock is held while the caller's
//! ownership key `name/<lease hex>` is the oldest under `name/`; it ends with Unlock or with
//! the lease.

use std::sync::Arc;

use bytes::Bytes;
use store::{Command, DeleteRangeRequest, RequestOp, TxnRequest};
use tonic::{Request, Response, Status};

use crate::concurrency::{self, Turn, Withdrawal};
use crate::protos::v3lockpb::lock_server::Lock;
use crate::protos::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::Context;

#[derive(Debug)]
pub struct LockService {
    context: Arc<Context>,
}

impl LockService {
    pub fn new(context: Arc<Context>) -> Self {
        LockService { context }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    /// Joins the queue (creates the ownership key if this lease has none yet), then waits for
    /// every older key under the name to go. Fails if the lease ends while waiting.
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        concurrency::check_name_access(&self.context, request.metadata(), &request.get_ref().name, true)?;
        let request = request.into_inner();
        let context = &self.context;
        let lease = concurrency::session_lease(context, request.lease).await?;
        let prefix = concurrency::prefix(&request.name);
        let key = concurrency::ownership_key(&prefix, lease);
        // One txn joins the queue and reads the holder, so an uncontended lock is one round.
        // A key this lease already has is reused: the lease may already hold the lock.
        let acquire = TxnRequest {
            compare: vec![concurrency::created_at(&key, 0)],
            success: vec![
                concurrency::put(&key, Bytes::new(), lease),
                RequestOp::Range(concurrency::first_created(&prefix)),
            ],
            failure: vec![
                RequestOp::Range(concurrency::get(&key)),
                RequestOp::Range(concurrency::first_created(&prefix)),
            ],
        };
        let response = concurrency::txn(context, acquire).await?;
        let own_revision = if response.succeeded {
            response.revision
        } else {
            match concurrency::range_kvs(&response, 0).first() {
                Some(kv) => kv.create_revision,
                None => return Err(Status::internal("lock: the ownership key vanished inside its txn")),
            }
        };
        let holder = concurrency::range_kvs(&response, 1).first();
        if holder.is_none_or(|holder| holder.create_revision == own_revision) {
            return Ok(Response::new(LockResponse { header: context.header(response.revision), key: key.to_vec() }));
        }
        let withdrawal = Withdrawal::arm(context.clone(), key.clone(), own_revision);
        match concurrency::wait_for_turn(context, &prefix, &key, own_revision).await? {
            Turn::Reached { revision } => {
                withdrawal.disarm();
                Ok(Response::new(LockResponse { header: context.header(revision), key: key.to_vec() }))
            }
            Turn::KeyLost => {
                withdrawal.disarm();
                Err(concurrency::session_expired())
            }
        }
    }

    /// Deletes the ownership key (whoever holds it), as etcd's Unlock does.
    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        concurrency::check_key_write(&self.context, request.metadata(), &request.get_ref().key)?;
        let key = Bytes::from(request.into_inner().key);
        let delete = DeleteRangeRequest { key, ..DeleteRangeRequest::default() };
        let response = concurrency::write(&self.context, Command::DeleteRange(delete)).await?;
        Ok(Response::new(UnlockResponse { header: self.context.header(response.revision()) }))
    }
}
