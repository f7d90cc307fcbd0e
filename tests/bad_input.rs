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
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
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

    // A message over the size limit (1.5 MiB + gRPC's allowance) is refused whole: tonic
    // answers OUT_OF_RANGE where grpc-go says RESOURCE_EXHAUSTED; either way nothing is applied.
    let status = call_raw(&endpoint, "/etcdserverpb.KV/Put", Bytes::from(vec![0x0a; 3 << 20])).await.unwrap_err();
    assert!(matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{status:?}");
    assert_still_serves(&endpoint);
    cluster.assert_no_panics();
    assert_eq!(cluster.running(), vec![0], "the member is still up");
}
