//! keel-bench's lean gRPC client (`benches::unary`) against a tonic KV server in this process:
//! what it sends is what a gRPC server decodes, and what the server answers (messages split over
//! several HTTP/2 frames, errors in trailers-only answers) is what the client reports.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use benches::unary::UnaryConnection;
use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbCompare, PbCompareTarget, PbDeleteRequest, PbDeleteResponse,
    PbKeyValue, PbKvServer, PbKvService, PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse,
    PbRangeStreamResponse, PbTargetUnion, PbTxnOpRequest, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use tonic::{Request, Response, Status};

/// A key's value and mod revision.
type Stored = (Vec<u8>, i64);

/// Keys with their mod revisions, and what the last range asked for.
#[derive(Debug, Default)]
struct Kv {
    keys: Mutex<BTreeMap<Vec<u8>, Stored>>,
    revision: Mutex<i64>,
    last_range: Mutex<Option<PbRangeRequest>>,
}

impl Kv {
    fn put(&self, request: &PbPutRequest) -> i64 {
        let mut revision = self.revision.lock().unwrap();
        *revision += 1;
        self.keys.lock().unwrap().insert(request.key.clone(), (request.value.clone(), *revision));
        *revision
    }
}

#[tonic::async_trait]
impl PbKvService for Kv {
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        let request = request.into_inner();
        if request.key == b"refused" {
            return Err(Status::failed_precondition("etcdserver: no, 100%"));
        }
        *self.last_range.lock().unwrap() = Some(request.clone());
        let found = self.keys.lock().unwrap().get(&request.key).cloned();
        let kvs = found
            .map(|(value, mod_revision)| PbKeyValue {
                key: request.key.clone(),
                value,
                mod_revision,
                ..Default::default()
            })
            .into_iter()
            .collect::<Vec<_>>();
        Ok(Response::new(PbRangeResponse { count: kvs.len() as i64, kvs, ..Default::default() }))
    }

    type RangeStreamStream = tokio_stream::Empty<Result<PbRangeStreamResponse, Status>>;

    async fn range_stream(&self, _: Request<PbRangeRequest>) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented("range_stream"))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        self.put(request.get_ref());
        Ok(Response::new(PbPutResponse::default()))
    }

    async fn delete_range(&self, _: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        Err(Status::unimplemented("delete_range"))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let request = request.into_inner();
        let holds = request.compare.iter().all(|compare| {
            let revision = self.keys.lock().unwrap().get(&compare.key).map_or(0, |(_, revision)| *revision);
            compare.target == PbCompareTarget::Mod as i32
                && compare.target_union == Some(PbTargetUnion::ModRevision(revision))
        });
        let ops = if holds { &request.success } else { &request.failure };
        for op in ops {
            if let Some(PbTxnOpRequest::RequestPut(put)) = &op.request {
                self.put(put);
            }
        }
        Ok(Response::new(PbTxnResponse { succeeded: holds, ..Default::default() }))
    }

    async fn compact(&self, _: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        Err(Status::unimplemented("compact"))
    }
}

/// Serves `kv` on a loopback port; returns the endpoint.
async fn serve(kv: std::sync::Arc<Kv>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let service = PbKvServer::from_arc(kv).max_decoding_message_size(16 << 20);
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
    endpoint
}

fn put(key: &[u8], value: Vec<u8>) -> PbPutRequest {
    PbPutRequest { key: key.to_vec(), value, ..Default::default() }
}

#[tokio::test]
async fn puts_ranges_and_txns_reach_a_grpc_server_and_come_back() {
    let kv = std::sync::Arc::new(Kv::default());
    let endpoint = serve(kv.clone()).await;
    let connection = UnaryConnection::connect(&format!("http://{endpoint}"), Duration::from_secs(5)).await.unwrap();

    connection.put(&put(b"a", b"one".to_vec())).await.unwrap();
    let range = PbRangeRequest { key: b"a".to_vec(), serializable: true, ..Default::default() };
    let answer = connection.range(&range).await.unwrap();
    assert_eq!(answer.kvs.len(), 1);
    assert_eq!((answer.kvs[0].value.as_slice(), answer.kvs[0].mod_revision), (&b"one"[..], 1));
    assert_eq!(kv.last_range.lock().unwrap().as_ref(), Some(&range), "the server decoded what was sent");

    // A value over several HTTP/2 DATA frames (16 KiB each by default), both ways.
    let large = (0..200_000u32).map(|index| index as u8).collect::<Vec<_>>();
    connection.put(&put(b"large", large.clone())).await.unwrap();
    let answer = connection.range(&PbRangeRequest { key: b"large".to_vec(), ..Default::default() }).await.unwrap();
    assert_eq!(answer.kvs[0].value, large);

    let cas = |revision: i64| PbTxnRequest {
        compare: vec![PbCompare {
            target: PbCompareTarget::Mod as i32,
            key: b"a".to_vec(),
            target_union: Some(PbTargetUnion::ModRevision(revision)),
            ..Default::default()
        }],
        success: vec![PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestPut(put(b"a", b"two".to_vec()))) }],
        failure: Vec::new(),
    };
    assert!(!connection.txn(&cas(7)).await.unwrap().succeeded);
    assert!(connection.txn(&cas(1)).await.unwrap().succeeded);
    let answer = connection.range(&PbRangeRequest { key: b"a".to_vec(), ..Default::default() }).await.unwrap();
    assert_eq!(answer.kvs[0].value, b"two");

    // Calls share the connection concurrently.
    let calls = (0..50).map(|index| {
        let connection = connection.clone();
        async move { connection.put(&put(format!("k{index}").as_bytes(), vec![index])).await }
    });
    for result in futures_join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(kv.keys.lock().unwrap().len(), 52);
}

#[tokio::test]
async fn a_refusal_is_an_error_with_its_status_and_message() {
    let endpoint = serve(std::sync::Arc::new(Kv::default())).await;
    let connection = UnaryConnection::connect(&endpoint, Duration::from_secs(5)).await.unwrap();
    let error = connection.range(&PbRangeRequest { key: b"refused".to_vec(), ..Default::default() }).await.unwrap_err();
    assert_eq!(error, "grpc-status 9: etcdserver: no, 100%");
    // The connection still serves after a refusal.
    connection.put(&put(b"after", Vec::new())).await.unwrap();
}

#[tokio::test]
async fn no_server_is_an_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    drop(listener);
    let error = UnaryConnection::connect(&endpoint, Duration::from_secs(5)).await.unwrap_err();
    assert!(error.starts_with(&endpoint), "{error}");
    assert!(UnaryConnection::connect("https://127.0.0.1:1", Duration::from_secs(1)).await.is_err());
}

/// Awaits every future (spawned, so they run at once).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles = futures.into_iter().map(tokio::spawn).collect::<Vec<_>>();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
