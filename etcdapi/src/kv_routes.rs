//! The KV service's routes: `KV/Range` sends its reply as the chunks range_reply.rs encoded, each
//! handed to h2 and freed once sent, so a large reply is held about once. Tonic's own path would
//! copy it whole into its encode buffer and hold that until the client had read all of it.
//! Every other method goes to the generated server.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use etcd_client::proto::{PbKvServer, PbRangeRequest, PbRangeResponse};
use http_body::Frame;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;

use crate::kv::KvService;
use crate::range_reply::EncodedRangeResponse;

const RANGE_PATH: &str = "/etcdserverpb.KV/Range";

/// etcd's KV service: `PbKvServer`, with `KV/Range` sent from its encoded reply.
#[derive(Debug, Clone)]
pub struct KvRoutes {
    kv: Arc<KvService>,
    generated: PbKvServer<KvService>,
    max_decoding_message_size: usize,
}

impl KvRoutes {
    /// Requests larger than `max_decoding_message_size` are refused, as by the other services.
    pub fn new(kv: KvService, max_decoding_message_size: usize) -> Self {
        let kv = Arc::new(kv);
        let generated = PbKvServer::from_arc(kv.clone()).max_decoding_message_size(max_decoding_message_size);
        KvRoutes { kv, generated, max_decoding_message_size }
    }
}

impl NamedService for KvRoutes {
    const NAME: &'static str = <PbKvServer<KvService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for KvRoutes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != RANGE_PATH {
            return self.generated.call(request);
        }
        let method = RangeMethod(self.kv.clone());
        // No send limit here: `KvService::range_encoded` refuses replies over etcd's.
        let mut grpc = Grpc::new(ProstCodec::<PbRangeResponse, PbRangeRequest>::default())
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move {
            // Tonic decodes the request, calls `range_encoded` and makes the response's head (or
            // the error); a reply goes back in the response's extensions, and replaces the body
            // tonic would have encoded from the placeholder message.
            let (mut parts, body) = grpc.unary(method, request).await.into_parts();
            let Some(reply) = parts.extensions.remove::<EncodedRangeResponse>() else {
                return Ok(http::Response::from_parts(parts, body));
            };
            drop(body);
            Ok(http::Response::from_parts(parts, tonic::body::Body::new(ReplyBody::new(reply))))
        })
    }
}

struct RangeMethod(Arc<KvService>);

impl UnaryService<PbRangeRequest> for RangeMethod {
    type Response = PbRangeResponse;
    type Future = BoxFuture<tonic::Response<PbRangeResponse>, Status>;

    fn call(&mut self, request: tonic::Request<PbRangeRequest>) -> Self::Future {
        let kv = self.0.clone();
        Box::pin(async move {
            let reply = kv.range_encoded(request).await?;
            let mut response = tonic::Response::new(PbRangeResponse::default());
            response.extensions_mut().insert(reply);
            Ok(response)
        })
    }
}

/// One gRPC message, uncompressed, from its encoded chunks: the 5-byte message prefix, the
/// chunks one frame each (h2 asks for the next once it has room to buffer it, 400 KiB by
/// default), then `grpc-status: 0` as trailers, as tonic ends a unary reply.
struct ReplyBody {
    prefix: Option<Bytes>,
    chunks: std::vec::IntoIter<Bytes>,
    trailers_sent: bool,
}

impl ReplyBody {
    fn new(reply: EncodedRangeResponse) -> Self {
        let len = u32::try_from(reply.len()).expect("range_encoded keeps replies under etcd's send limit");
        let mut prefix = BytesMut::with_capacity(5);
        prefix.put_u8(0); // not compressed
        prefix.put_u32(len);
        ReplyBody { prefix: Some(prefix.freeze()), chunks: reply.into_chunks().into_iter(), trailers_sent: false }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(chunk) = this.chunks.next() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.trailers_sent {
            return Poll::Ready(None);
        }
        this.trailers_sent = true;
        let mut trailers = http::HeaderMap::new();
        Status::ok("").add_header(&mut trailers)?;
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_reply::RangeReplyWriter;
    use etcd_client::proto::PbResponseHeader;
    use prost::Message;

    #[test]
    fn the_body_is_one_grpc_message_of_the_reply_then_an_ok_status() {
        let mut writer = RangeReplyWriter::new();
        for i in 0..10_000i64 {
            let kv = store::KeyValue {
                key: format!("key/{i:06}").into(),
                create_revision: i + 1,
                mod_revision: i + 1,
                version: 1,
                ..Default::default()
            };
            writer.push(&kv);
        }
        let header = Some(PbResponseHeader { cluster_id: 1, member_id: 2, revision: 10_001, raft_term: 3 });
        let reply = writer.finish(header, false, 10_000);
        let expected = reply.clone().decode().expect("decodes");

        let mut body = ReplyBody::new(reply);
        let (mut data, mut trailers, mut frames) = (Vec::new(), None, 0);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            let frame = frame.expect("no error");
            assert!(trailers.is_none(), "nothing follows the trailers");
            match frame.into_data() {
                Ok(bytes) => {
                    data.extend_from_slice(&bytes);
                    frames += 1;
                }
                Err(frame) => trailers = Some(frame.into_trailers().expect("data or trailers")),
            }
        }
        assert!(body.is_end_stream());
        assert!(frames > 2, "the reply went as several frames, not one copy: {frames}");
        assert_eq!(data[0], 0, "not compressed");
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, data.len() - 5);
        assert_eq!(PbRangeResponse::decode(&data[5..]).expect("one message"), expected);
        let trailers = trailers.expect("trailers end the body");
        assert_eq!(trailers.get("grpc-status").map(|value| value.to_str().unwrap()), Some("0"));
        assert_eq!(trailers.len(), 1);
    }
}
