//! Bad input on the client port never crashes or wedges a member: bytes that are not HTTP/2,
//! gRPC frames whose payload is not the protobuf the method takes, and a frame that lies about
//! its length. After each, the member still serves etcdctl.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use support::{etcdctl, Cluster};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives raw message bytes, so a test can put anything in a gRPC frame.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, buffer: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buffer.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(buffer.copy_to_bytes(buffer.remaining())))
    }
}

async fn call_raw(endpoint: &str, path: &'static str, body: Bytes) -> Result<Bytes, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
}

fn assert_still_serves(endpoint: &str) {
    let put = etcdctl(endpoint, &["put", "still", "here"], "");
    assert!(put.status.success(), "{put:?}");
    let get = etcdctl(endpoint, &["get", "still", "--print-value-only"], "");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "here\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_malformed_protobuf_get_errors_not_crashes() {
    let mut cluster = Cluster::start(1, &[]).await;
    let endpoint = cluster.nodes[0].endpoint();

    // Not HTTP at all: the connection is closed; nothing else happens.
    let mut socket = TcpStream::connect(&endpoint).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = socket.write_all(&garbage);
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    drop(socket);
    assert_still_serves(&endpoint);

    // A gRPC frame whose payload is not a PutRequest: INTERNAL, as grpc-go answers etcd's
    // clients for an undecodable request (field 1 with wire type 7 does not exist).
    let status =
        call_raw(&endpoint, "/etcdserverpb.KV/Put", Bytes::from_static(&[0x0f, 0xff, 0xff, 0xff])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    // A truncated one (a length-delimited key longer than the message).
    let status =
        call_raw(&endpoint, "/etcdserverpb.KV/Range", Bytes::from_static(&[0x0a, 0x40, b'k'])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    // A well-formed empty message is a request with no key: etcd's own error.
    let status = call_raw(&endpoint, "/etcdserverpb.KV/Put", Bytes::new()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
    // An unknown method names itself.
    let status = call_raw(&endpoint, "/etcdserverpb.KV/Nope", Bytes::new()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    // A message over the size limit (1.5 MiB + gRPC's allowance) is refused whole, with
    // RESOURCE_EXHAUSTED as grpc-go refuses it; nothing is applied. The other services are
    // served by tonic, which says OUT_OF_RANGE.
    let status = call_raw(&endpoint, "/etcdserverpb.KV/Put", Bytes::from(vec![0x0a; 3 << 20])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let status =
        call_raw(&endpoint, "/etcdserverpb.Lease/LeaseGrant", Bytes::from(vec![0x0a; 3 << 20])).await.unwrap_err();
    assert!(matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{status:?}");
    assert_still_serves(&endpoint);
    cluster.assert_no_panics();
    assert_eq!(cluster.running(), vec![0], "the member is still up");
}

/// Opens a stream for `path` on `client` and sends `data` (ending the request if `end`).
fn start_call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    data: Vec<u8>,
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::post(format!("http://keel{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from(data), end).unwrap();
    (response, send)
}

/// The grpc-status of a trailers-only answer, or of the trailers after the message.
async fn grpc_status(response: h2::client::ResponseFuture) -> (String, Bytes) {
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("answered").unwrap();
    let header = |headers: &http::HeaderMap| headers.get("grpc-status").map(|value| value.to_str().unwrap().to_owned());
    if let Some(status) = header(response.headers()) {
        return (status, Bytes::new());
    }
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        message.extend_from_slice(&data);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers end the answer");
    (header(&trailers).expect("grpc-status"), Bytes::from(message))
}

fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut bytes = vec![flag];
    bytes.put_u32(message.len() as u32);
    bytes.extend_from_slice(message);
    bytes
}

/// KV calls are served inside their connection's task: one whose request has not all arrived,
/// or that lies about its size, or that is compressed, holds up no other call on it.
#[tokio::test(flavor = "multi_thread")]
async fn kv_calls_on_one_connection_do_not_wait_for_each_other() {
    let cluster = Cluster::start(1, &[]).await;
    let endpoint = cluster.nodes[0].endpoint();
    let socket = tokio::net::TcpStream::connect(&endpoint).await.unwrap();
    let (mut client, connection) = h2::client::handshake(socket).await.unwrap();
    let connection = tokio::spawn(connection);

    // A put whose message never finishes arriving: 100 bytes declared, 3 sent.
    let mut partial = vec![0u8];
    partial.put_u32(100);
    partial.extend_from_slice(b"abc");
    let (unfinished, mut unfinished_body) = start_call(&mut client, "/etcdserverpb.KV/Put", partial, false);

    // Meanwhile: a put (field 1 key, field 2 value) and a one-key range are answered.
    let put = framed(0, &[0x0a, 1, b'k', 0x12, 1, b'v']);
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Put", put, true);
    assert_eq!(grpc_status(answer).await.0, "0");
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Range", framed(0, &[0x0a, 1, b'k']), true);
    let (status, message) = grpc_status(answer).await;
    assert_eq!(status, "0");
    assert!(message.contains(&b'v'), "the range found the value: {message:?}");

    // A message declared over the limit is refused at its prefix, before the rest is sent.
    let mut huge = vec![0u8];
    huge.put_u32(64 << 20);
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Put", huge, false);
    assert_eq!(grpc_status(answer).await.0, "8", "RESOURCE_EXHAUSTED");
    // A compressed one is refused: keel takes no compression, as etcd configures none.
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Txn", framed(1, b"x"), true);
    assert_eq!(grpc_status(answer).await.0, "12", "UNIMPLEMENTED");
    // Two messages in a unary call, and none: INTERNAL.
    let mut two = framed(0, &[0x0a, 1, b'k']);
    two.extend(framed(0, &[0x0a, 1, b'k']));
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Range", two, true);
    assert_eq!(grpc_status(answer).await.0, "13", "INTERNAL");
    let (answer, _send) = start_call(&mut client, "/etcdserverpb.KV/Range", Vec::new(), true);
    assert_eq!(grpc_status(answer).await.0, "13", "INTERNAL");

    // The unfinished put is still waiting; finishing it with a truncated message gets INTERNAL,
    // and nothing was written by it.
    unfinished_body.send_data(Bytes::new(), true).unwrap();
    assert_eq!(grpc_status(unfinished).await.0, "13", "INTERNAL");
    drop(client);
    connection.abort();
    let get = etcdctl(&endpoint, &["get", "", "--prefix", "--keys-only"], "");
    assert_eq!(String::from_utf8_lossy(&get.stdout).split_whitespace().collect::<Vec<_>>(), vec!["k"]);
    cluster.assert_no_panics();
}
