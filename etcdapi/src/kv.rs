//! etcd's KV service: reads served from the local store after a read barrier (or at once when
//! serializable), writes proposed through Raft.

use std::sync::Arc;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbTxnRequest, PbTxnResponse,
};
use store::{Command, Response};
use tonic::{Request, Status};

use crate::range_reply::{EncodedRangeResponse, RangeReplyWriter};
use crate::{convert, status, Context};

#[derive(Debug)]
pub struct KvService {
    context: Arc<Context>,
}

impl KvService {
    pub fn new(context: Arc<Context>) -> Self {
        KvService { context }
    }

    /// etcd refuses a write larger than `--max-request-bytes` before proposing it.
    fn check_size(&self, message: &impl prost::Message) -> Result<(), Status> {
        if message.encoded_len() > self.context.max_request_bytes {
            return Err(Status::invalid_argument("etcdserver: request is too large"));
        }
        Ok(())
    }

    /// Proposes `command` on behalf of the request's caller (the store checks their permission).
    async fn write(&self, metadata: &tonic::metadata::MetadataMap, command: Command) -> Result<Response, Status> {
        let command = self.context.caller(metadata)?.command(command);
        self.context.member.write(command).await.map_err(status::from_member)?.map_err(status::from_store)
    }
}

impl KvService {
    /// A Range, its reply encoded as the store's scan hands over each version, so a large reply
    /// is held once, as its encoding (etcd's reply, byte for byte, as prost would encode it).
    pub async fn range_encoded(&self, request: Request<PbRangeRequest>) -> Result<EncodedRangeResponse, Status> {
        let (metadata, _, request) = request.into_parts();
        let serializable = request.serializable;
        let range = convert::range_request(request)?;
        if !serializable {
            self.context.member.read_barrier().await.map_err(status::from_member)?;
        }
        // As etcd's doSerialize: the token is verified after the read barrier, against an auth
        // state that every earlier change (a user deleted, a password changed) has reached.
        let caller = self.context.caller(&metadata)?;
        caller.check_read(&self.context.auth(), &range.key, &range.range_end)?;
        let mut writer = RangeReplyWriter::new();
        let summary = self
            .context
            .member
            .store()
            .range_into(&range, &mut |kv| {
                writer.push(&kv);
                Ok(())
            })
            .map_err(status::from_store)?;
        let header = self.context.header(summary.revision);
        let reply = writer.finish(header, summary.more, summary.count);
        check_send_size(reply.len())?;
        Ok(reply)
    }
}

/// etcd's server sends messages of at most `math.MaxInt32` bytes, and refuses a larger reply
/// with grpc-go's error.
const MAX_SEND_BYTES: usize = i32::MAX as usize;

fn check_send_size(len: usize) -> Result<(), Status> {
    if len > MAX_SEND_BYTES {
        return Err(Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {MAX_SEND_BYTES})"
        )));
    }
    Ok(())
}

type RangeStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbKvService for KvService {
    type RangeStreamStream = RangeStream;

    /// Not part of etcd 3.5, which keel emulates.
    async fn range_stream(&self, _request: Request<PbRangeRequest>) -> Result<tonic::Response<RangeStream>, Status> {
        Err(Status::unimplemented("keel: KV.RangeStream is not part of etcd 3.5's API"))
    }

    /// Served by `kv_calls.rs` through `range_encoded` over HTTP/2; this is the same reply as a
    /// message, for the generated server's route (HTTP/1.1, where gRPC does not work anyway).
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<tonic::Response<PbRangeResponse>, Status> {
        let reply = self.range_encoded(request).await?;
        reply.decode().map(tonic::Response::new).map_err(|error| Status::internal(error.to_string()))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<tonic::Response<PbPutResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.check_size(&request)?;
        let put = convert::put_request(request);
        match self.write(&metadata, Command::Put(put)).await? {
            Response::Put(response) => {
                let header = self.context.header(response.revision);
                Ok(tonic::Response::new(convert::put_response(response, header)))
            }
            other => Err(Status::internal(format!("put answered {other:?}"))),
        }
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> Result<tonic::Response<PbDeleteResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let delete = convert::delete_request(request);
        match self.write(&metadata, Command::DeleteRange(delete)).await? {
            Response::DeleteRange(response) => {
                let header = self.context.header(response.revision);
                Ok(tonic::Response::new(convert::delete_response(response, header)))
            }
            other => Err(Status::internal(format!("delete answered {other:?}"))),
        }
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<tonic::Response<PbTxnResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.check_size(&request)?;
        let txn = convert::txn_request(request)?;
        // Every txn goes through the log, read-only ones included: the log orders it after
        // every write acknowledged before it, so its compares and reads are linearizable.
        match self.write(&metadata, Command::Txn(txn)).await? {
            Response::Txn(response) => {
                let header = self.context.header(response.revision);
                Ok(tonic::Response::new(convert::txn_response(response, header)))
            }
            other => Err(Status::internal(format!("txn answered {other:?}"))),
        }
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> Result<tonic::Response<PbCompactionResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let response = self.write(&metadata, Command::Compact { revision: request.revision }).await?;
        Ok(tonic::Response::new(PbCompactionResponse { header: self.context.header(response.revision()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_up_to_etcds_send_limit_go_and_larger_ones_are_refused_as_grpc_go_refuses_them() {
        assert!(check_send_size(i32::MAX as usize).is_ok());
        let refused = check_send_size(i32::MAX as usize + 1).expect_err("over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refused.message(), "grpc: trying to send message larger than max (2147483648 vs. 2147483647)");
    }
}
