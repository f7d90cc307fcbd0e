//! etcd's KV calls, served inside their connection's task (`h2_connection.rs`): the request's
//! one gRPC message is read from h2, decoded and handed to [`KvService`]; the reply goes back as
//! one message and `grpc-status: 0`, or as a trailers-only error, as grpc-go answers. A Range
//! reply is written as the chunks `range_reply.rs` encoded, so a large one is held once.
//!
//! Scans run in a task of their own, so a large one does not hold up the connection's other
//! streams; a one-key Range, and every write (which waits on Raft, not the CPU), runs here.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use etcd_client::proto::{PbKvService, PbRangeRequest};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::range_reply::EncodedRangeResponse;
use crate::server::Handlers;

/// A gRPC message's prefix: the compressed flag and the length.
const PREFIX_BYTES: usize = 5;

/// Replies up to this size go out as one DATA frame, prefix included (one small copy).
const COALESCE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvMethod {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl KvMethod {
    /// The method a request path names, if it is one served here.
    pub(crate) fn of(path: &str) -> Option<KvMethod> {
        Some(match path.strip_prefix("/etcdserverpb.KV/")? {
            "Range" => KvMethod::Range,
            "Put" => KvMethod::Put,
            "DeleteRange" => KvMethod::DeleteRange,
            "Txn" => KvMethod::Txn,
            "Compact" => KvMethod::Compact,
            _ => return None, // RangeStream, or a method that does not exist: tonic answers
        })
    }
}

pub(crate) async fn serve(
    handlers: Arc<Handlers>,
    method: KvMethod,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let (parts, body) = request.into_parts();
    let deadline = grpc_timeout(&parts.headers);
    let answer = answer(handlers, method, parts.headers, body);
    let reply = match deadline {
        None => answer.await,
        Some(deadline) => tokio::time::timeout(deadline, answer)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("context deadline exceeded"))),
    };
    send(respond, reply);
}

/// A reply's encoding: the message's chunks, in order.
struct Reply {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Reply {
    fn message(message: &impl Message) -> Reply {
        let mut bytes = BytesMut::with_capacity(message.encoded_len());
        message.encode(&mut bytes).expect("a BytesMut grows as needed");
        let len = bytes.len();
        Reply { chunks: vec![bytes.freeze()], len }
    }

    fn range(reply: EncodedRangeResponse) -> Reply {
        let len = reply.len();
        Reply { chunks: reply.into_chunks(), len }
    }

    /// The DATA frames of the gRPC message: small replies as one, prefix included.
    fn into_frames(self) -> Vec<Bytes> {
        let mut prefix = BytesMut::with_capacity(PREFIX_BYTES + if self.len <= COALESCE_BYTES { self.len } else { 0 });
        prefix.put_u8(0); // not compressed
        prefix.put_u32(u32::try_from(self.len).expect("replies stay under etcd's send limit"));
        if self.len <= COALESCE_BYTES {
            self.chunks.iter().for_each(|chunk| prefix.put_slice(chunk));
            return vec![prefix.freeze()];
        }
        std::iter::once(prefix.freeze()).chain(self.chunks).collect()
    }
}

async fn answer(
    handlers: Arc<Handlers>,
    method: KvMethod,
    headers: HeaderMap,
    body: RecvStream,
) -> Result<Reply, Status> {
    let message = read_message(body, handlers.max_message_bytes).await?;
    let metadata = MetadataMap::from_headers(headers);
    let kv = &handlers.kv;
    Ok(match method {
        KvMethod::Range => {
            let request: PbRangeRequest = decode(message)?;
            let one_key = request.range_end.is_empty();
            let request = tonic_request(metadata, request);
            let reply = if one_key {
                kv.range_encoded(request).await?
            } else {
                let kv = kv.clone();
                tokio::spawn(async move { kv.range_encoded(request).await })
                    .await
                    .map_err(|error| Status::internal(error.to_string()))??
            };
            Reply::range(reply)
        }
        KvMethod::Put => unary(message, metadata, |request| PbKvService::put(&**kv, request)).await?,
        KvMethod::DeleteRange => unary(message, metadata, |request| PbKvService::delete_range(&**kv, request)).await?,
        KvMethod::Txn => unary(message, metadata, |request| PbKvService::txn(&**kv, request)).await?,
        KvMethod::Compact => unary(message, metadata, |request| PbKvService::compact(&**kv, request)).await?,
    })
}

/// Decodes `message`, calls `method` with it and encodes its answer.
async fn unary<Q, A, F>(
    message: Bytes,
    metadata: MetadataMap,
    method: impl FnOnce(tonic::Request<Q>) -> F,
) -> Result<Reply, Status>
where
    Q: Message + Default,
    A: Message,
    F: std::future::Future<Output = Result<tonic::Response<A>, Status>>,
{
    let request = decode(message)?;
    Ok(Reply::message(method(tonic_request(metadata, request)).await?.get_ref()))
}

fn tonic_request<T>(metadata: MetadataMap, message: T) -> tonic::Request<T> {
    tonic::Request::from_parts(metadata, tonic::Extensions::default(), message)
}

/// An undecodable request is INTERNAL, as grpc-go answers it.
fn decode<T: Message + Default>(message: Bytes) -> Result<T, Status> {
    T::decode(message).map_err(|error| Status::internal(format!("grpc: error unmarshalling request: {error}")))
}

/// The request's one message, without its prefix. One that declares more than `limit` bytes
/// is refused as soon as its prefix arrives, as grpc-go refuses it.
async fn read_message(mut body: RecvStream, limit: usize) -> Result<Bytes, Status> {
    // Usually the whole message comes in one DATA frame, kept as it is; once a second one
    // comes, they are joined.
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(data) = body.data().await {
        let data = data.map_err(|error| Status::from_error(Box::new(error)))?;
        let _ = body.flow_control().release_capacity(data.len());
        match joined.as_mut() {
            Some(joined) => joined.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut both = BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
        let received = joined.as_deref().unwrap_or(&first);
        if received.len() >= PREFIX_BYTES {
            check_prefix(received, limit)?;
        }
    }
    let received = joined.map_or(first, BytesMut::freeze);
    message_of(received, limit)
}

fn check_prefix(received: &[u8], limit: usize) -> Result<usize, Status> {
    match received[0] {
        0 => {}
        1 => return Err(Status::unimplemented("grpc: Decompressor is not installed for grpc-encoding")),
        flag => return Err(Status::internal(format!("grpc: invalid compressed-flag {flag}"))),
    }
    let len = u32::from_be_bytes(received[1..PREFIX_BYTES].try_into().expect("four bytes")) as usize;
    if len > limit {
        return Err(Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {limit})")));
    }
    Ok(len)
}

/// The message of a unary request's whole body: exactly one, as grpc-go insists.
fn message_of(mut received: Bytes, limit: usize) -> Result<Bytes, Status> {
    if received.is_empty() {
        return Err(Status::internal("grpc: the request carried no message"));
    }
    if received.len() < PREFIX_BYTES {
        return Err(Status::internal("grpc: the request ended inside a message's prefix"));
    }
    let len = check_prefix(&received, limit)?;
    let message = received.split_off(PREFIX_BYTES);
    match message.len().cmp(&len) {
        std::cmp::Ordering::Equal => Ok(message),
        std::cmp::Ordering::Less => Err(Status::internal("grpc: the request ended inside its message")),
        std::cmp::Ordering::Greater => Err(Status::internal("grpc: a unary request carried more than one message")),
    }
}

/// The client's deadline (`grpc-timeout`: at most eight digits and a unit), if it sent one.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Sends `reply`: headers, the message, `grpc-status: 0`; or an error as trailers only.
fn send(mut respond: SendResponse<Bytes>, reply: Result<Reply, Status>) {
    let reply = match reply {
        Ok(reply) => reply,
        Err(status) => {
            let _ = respond.send_response(status.into_http::<()>(), true);
            return;
        }
    };
    let mut head = http::Response::new(());
    head.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let Ok(mut stream) = respond.send_response(head, false) else { return };
    for frame in reply.into_frames() {
        // h2 queues what the client's window cannot take yet; the reply is held once either way.
        if stream.send_data(frame, false).is_err() {
            return;
        }
    }
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = stream.send_trailers(trailers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Bytes {
        let mut bytes = BytesMut::new();
        bytes.put_u8(flag);
        bytes.put_u32(message.len() as u32);
        bytes.put_slice(message);
        bytes.freeze()
    }

    #[test]
    fn paths_name_the_methods_served_here_and_no_others() {
        assert_eq!(KvMethod::of("/etcdserverpb.KV/Range"), Some(KvMethod::Range));
        assert_eq!(KvMethod::of("/etcdserverpb.KV/Txn"), Some(KvMethod::Txn));
        assert_eq!(KvMethod::of("/etcdserverpb.KV/Compact"), Some(KvMethod::Compact));
        assert_eq!(KvMethod::of("/etcdserverpb.KV/RangeStream"), None);
        assert_eq!(KvMethod::of("/etcdserverpb.Watch/Watch"), None);
        assert_eq!(KvMethod::of("/etcdserverpb.KVX/Put"), None);
    }

    #[test]
    fn a_body_is_exactly_one_uncompressed_message_within_the_limit() {
        assert_eq!(message_of(framed(0, b"abc"), 10).unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(message_of(framed(0, b""), 10).unwrap(), Bytes::new());
        let code = |body: Bytes| message_of(body, 10).unwrap_err().code();
        assert_eq!(code(Bytes::new()), tonic::Code::Internal);
        assert_eq!(code(Bytes::from_static(&[0, 0, 0])), tonic::Code::Internal);
        assert_eq!(code(framed(0, b"abc").slice(..7)), tonic::Code::Internal, "truncated");
        let mut two = BytesMut::from(&framed(0, b"a")[..]);
        two.extend_from_slice(&framed(0, b"b"));
        assert_eq!(code(two.freeze()), tonic::Code::Internal, "two messages");
        assert_eq!(code(framed(1, b"abc")), tonic::Code::Unimplemented, "compressed");
        let refused = message_of(framed(0, &[7; 11]), 10).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refused.message(), "grpc: received message larger than max (11 vs. 10)");
    }

    #[test]
    fn replies_are_one_frame_when_small_and_their_own_chunks_when_large() {
        let small = Reply { chunks: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")], len: 3 };
        assert_eq!(small.into_frames(), vec![framed(0, b"abc")]);
        let big: Vec<Bytes> = (0..3u8).map(|fill| Bytes::from(vec![fill; COALESCE_BYTES])).collect();
        let frames = Reply { chunks: big.clone(), len: 3 * COALESCE_BYTES }.into_frames();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].len(), PREFIX_BYTES);
        assert_eq!(frames[0][0], 0, "not compressed");
        assert_eq!(u32::from_be_bytes(frames[0][1..5].try_into().unwrap()) as usize, 3 * COALESCE_BYTES);
        assert_eq!(&frames[1..], &big[..], "the chunks themselves, not copies");
    }

    #[test]
    fn deadlines_read_as_grpc_writes_them() {
        let timeout = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("4999m"), Some(Duration::from_millis(4999)));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("100n"), Some(Duration::from_nanos(100)));
        assert_eq!(timeout("123456789S"), None, "nine digits");
        assert_eq!(timeout("S"), None);
        assert_eq!(timeout("5x"), None);
        assert_eq!(timeout("-5S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
