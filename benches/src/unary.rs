//! A lean gRPC client for the request/response workloads (put, range, txn-cas). Each
//! connection is one HTTP/2 connection driven by the `h2` crate, and a call writes its request
//! straight onto it and reads the answer off it: no tower stack, no channel buffer, no task per
//! call. keel-bench shares the two cores with the servers it measures, so every microsecond it
//! spends on a call is taken from them. The wire is gRPC's own (length-prefixed protobuf,
//! `grpc-status` in the trailers or in a trailers-only answer), so keel and etcd see what any
//! gRPC client sends. Watch, lease and large-range workloads keep `etcd-client`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use etcd_client::proto::{PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbTxnRequest, PbTxnResponse};
use h2::client::SendRequest;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, TE};
use http::uri::{Authority, PathAndQuery, Uri};
use prost::Message;

/// HTTP/2 flow-control windows: large enough that small calls never wait for a window update
/// (hyper's client defaults, which tonic uses).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// The largest answer accepted, as etcd-client's default decoding limit.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The KV calls the workloads make.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Range,
    Put,
    Txn,
}

impl Rpc {
    const ALL: [Rpc; 3] = [Rpc::Range, Rpc::Put, Rpc::Txn];

    fn path(self) -> &'static str {
        match self {
            Rpc::Range => "/etcdserverpb.KV/Range",
            Rpc::Put => "/etcdserverpb.KV/Put",
            Rpc::Txn => "/etcdserverpb.KV/Txn",
        }
    }
}

/// One HTTP/2 connection to one endpoint; clones share it.
#[derive(Clone)]
pub struct UnaryConnection {
    send: SendRequest<Bytes>,
    /// Each call's URI, built once (indexed by `Rpc`).
    uris: [Uri; 3],
}

impl std::fmt::Debug for UnaryConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("UnaryConnection").field("authority", &self.uris[0].authority()).finish()
    }
}

impl UnaryConnection {
    /// Dials `endpoint` (`host:port` or `http://host:port`) and starts the connection's task.
    pub async fn connect(endpoint: &str, dial_timeout: Duration) -> Result<UnaryConnection, String> {
        if endpoint.starts_with("https://") {
            return Err(format!("{endpoint}: TLS endpoints are not supported by keel-bench"));
        }
        let address = endpoint.strip_prefix("http://").unwrap_or(endpoint).trim_end_matches('/');
        let authority: Authority = address.parse().map_err(|error| format!("{endpoint}: {error}"))?;
        let dial = async {
            let stream = tokio::net::TcpStream::connect(address).await.map_err(|error| error.to_string())?;
            stream.set_nodelay(true).map_err(|error| error.to_string())?;
            h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|error| error.to_string())
        };
        let (send, connection) = tokio::time::timeout(dial_timeout, dial)
            .await
            .map_err(|_| format!("{endpoint}: no connection within {dial_timeout:?}"))?
            .map_err(|error| format!("{endpoint}: {error}"))?;
        // Ends when the server closes the connection or every handle is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let uri = |rpc: Rpc| {
            Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(PathAndQuery::from_static(rpc.path()))
                .build()
                .map_err(|error| format!("{endpoint}: {error}"))
        };
        let uris = [uri(Rpc::ALL[0])?, uri(Rpc::ALL[1])?, uri(Rpc::ALL[2])?];
        Ok(UnaryConnection { send, uris })
    }

    pub async fn range(&self, request: &PbRangeRequest) -> Result<PbRangeResponse, String> {
        self.call(Rpc::Range, request).await
    }

    pub async fn put(&self, request: &PbPutRequest) -> Result<PbPutResponse, String> {
        self.call(Rpc::Put, request).await
    }

    pub async fn txn(&self, request: &PbTxnRequest) -> Result<PbTxnResponse, String> {
        self.call(Rpc::Txn, request).await
    }

    async fn call<Q: Message, A: Message + Default>(&self, rpc: Rpc, request: &Q) -> Result<A, String> {
        let mut http_request = http::Request::new(());
        *http_request.method_mut() = http::Method::POST;
        *http_request.uri_mut() = self.uris[rpc as usize].clone();
        let headers = http_request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));

        let mut send = self.send.clone().ready().await.map_err(|error| error.to_string())?;
        let (answer, mut body) = send.send_request(http_request, false).map_err(|error| error.to_string())?;
        body.send_data(frame(request), true).map_err(|error| error.to_string())?;

        let (parts, mut answer) = answer.await.map_err(|error| error.to_string())?.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", parts.status));
        }
        // A trailers-only answer: the status came with the headers and there is no message.
        if parts.headers.contains_key("grpc-status") {
            check_status(&parts.headers)?;
            return Err("an OK status without a message".to_string());
        }
        let mut message = Bytes::new();
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(|error| error.to_string())?;
            let _ = answer.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() { chunk } else { joined(message, &chunk) };
            if message.len() > MAX_ANSWER_BYTES + 5 {
                return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
            }
        }
        let trailers = answer.trailers().await.map_err(|error| error.to_string())?;
        check_status(&trailers.ok_or("an answer without trailers")?)?;
        unframe(message)
    }
}

/// `request` as one gRPC message: a zero (uncompressed) byte, its length, its bytes.
fn frame<Q: Message>(request: &Q) -> Bytes {
    let length = request.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + length);
    frame.put_u8(0);
    frame.put_u32(length as u32);
    request.encode(&mut frame).expect("the buffer holds the encoded length");
    frame.freeze()
}

/// The one message of a unary answer.
fn unframe<A: Message + Default>(mut message: Bytes) -> Result<A, String> {
    if message.len() < 5 {
        return Err(format!("an answer of {} bytes, shorter than a message header", message.len()));
    }
    let compressed = message.get_u8();
    let length = message.get_u32() as usize;
    if compressed != 0 {
        return Err("a compressed answer, which was not asked for".to_string());
    }
    if length != message.len() {
        return Err(format!("a message of {} bytes announced as {length}", message.len()));
    }
    A::decode(message).map_err(|error| format!("undecodable answer: {error}"))
}

fn joined(first: Bytes, second: &[u8]) -> Bytes {
    let mut both = BytesMut::with_capacity(first.len() + second.len());
    both.extend_from_slice(&first);
    both.extend_from_slice(second);
    both.freeze()
}

/// Ok for `grpc-status: 0`, else the status and its message, as etcd clients print them.
fn check_status(headers: &HeaderMap) -> Result<(), String> {
    let code = headers.get("grpc-status").and_then(|value| value.to_str().ok()).ok_or("no grpc-status")?;
    if code == "0" {
        return Ok(());
    }
    let message = headers.get("grpc-message").map(|value| percent_decoded(value.as_bytes())).unwrap_or_default();
    Err(format!("grpc-status {code}: {message}"))
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decoded(encoded: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = |digit: u8| (digit as char).to_digit(16);
        match (byte, tail) {
            (b'%', [high, low, after @ ..]) if hex(*high).is_some() && hex(*low).is_some() => {
                decoded.push((hex(*high).unwrap_or(0) * 16 + hex(*low).unwrap_or(0)) as u8);
                rest = after;
            }
            _ => {
                decoded.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `--conns` unary connections, spread round-robin over the endpoints.
#[derive(Debug)]
pub struct UnaryConnections {
    connections: Vec<UnaryConnection>,
}

impl UnaryConnections {
    pub async fn connect(endpoints: &[String], conns: u64, dial_timeout: Duration) -> Result<UnaryConnections, String> {
        if endpoints.is_empty() {
            return Err("no endpoints".to_string());
        }
        let mut connections = Vec::new();
        for index in 0..conns.max(1) as usize {
            connections.push(UnaryConnection::connect(&endpoints[index % endpoints.len()], dial_timeout).await?);
        }
        Ok(UnaryConnections { connections })
    }
}

impl crate::driver::Pool for UnaryConnections {
    type Connection = UnaryConnection;

    fn get(&self, index: u64) -> UnaryConnection {
        self.connections[index as usize % self.connections.len()].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_request_unframes_to_itself() {
        let request = PbRangeRequest { key: b"k".to_vec(), serializable: true, ..Default::default() };
        let framed = frame(&request);
        assert_eq!(framed[0], 0);
        assert_eq!(u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize, framed.len() - 5);
        assert_eq!(unframe::<PbRangeRequest>(framed).unwrap(), request);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(unframe::<PbRangeResponse>(Bytes::from_static(&[0, 0, 0])).is_err());
        assert!(unframe::<PbRangeResponse>(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
        assert!(unframe::<PbRangeResponse>(Bytes::from_static(&[0, 0, 0, 0, 2, 8])).is_err());
    }

    #[test]
    fn statuses_and_their_messages() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_status(&headers), Err("no grpc-status".to_string()));
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(check_status(&headers), Ok(()));
        headers.insert("grpc-status", HeaderValue::from_static("9"));
        headers.insert("grpc-message", HeaderValue::from_static("etcdserver:%20key%20not%20found%"));
        assert_eq!(check_status(&headers), Err("grpc-status 9: etcdserver: key not found%".to_string()));
    }
}
