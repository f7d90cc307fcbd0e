//! etcd watch-stream behaviour that needs the raw gRPC stream (request metadata, fragments),
//! against real `keel store` processes: a `hasleader` watch ends with "no leader" on a member
//! cut off from the majority while a plain one stays; a large revision reaches a `fragment`
//! watch as fragments that join to the whole.

mod support;

use std::time::{Duration, Instant};

use etcd_client::proto::{PbWatchRequest, PbWatchResponse};
use etcd_client::{PutOptions, Txn, TxnOp};
use support::Cluster;
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;

/// One raw Watch stream with one watch on `key`'s prefix.
async fn open_watch(
    endpoint: &str,
    key: &str,
    has_leader: bool,
    fragment: bool,
) -> (mpsc::Sender<PbWatchRequest>, tonic::Streaming<PbWatchResponse>) {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    grpc.ready().await.unwrap();
    let (requests, receiver) = mpsc::channel(4);
    let create = etcd_client::WatchOptions::new().with_key(key).with_prefix().with_prev_key().with_watch_id(1);
    let create = if fragment { create.with_fragment() } else { create };
    requests.send(PbWatchRequest::from(create)).await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    if has_leader {
        request.metadata_mut().insert("hasleader", "true".parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<PbWatchRequest, PbWatchResponse>::default();
    let path = PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
    let mut responses = grpc.streaming(request, path, codec).await.unwrap().into_inner();
    let created = responses.message().await.unwrap().unwrap();
    assert!(created.created);
    (requests, responses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hasleader_watch_ends_with_no_leader_on_a_cut_off_member_and_a_plain_one_stays() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let isolated = (leader + 1) % 3;
    let endpoint = cluster.nodes[isolated].endpoint();
    let (_keep_open, mut guarded) = open_watch(&endpoint, "w/", true, false).await;
    let (_keep_open_too, mut plain) = open_watch(&endpoint, "w/", false, false).await;
    for other in (0..3).filter(|index| *index != isolated) {
        cluster.pause(other);
    }
    let started = Instant::now();
    let ended = tokio::time::timeout(support::WAIT, guarded.message()).await.expect("the hasleader watch never ended");
    let status = ended.expect_err("a no-leader error, not a response");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "etcdserver: no leader");
    println!("hasleader watch ended {:?} after the majority was paused", started.elapsed());
    // The plain watch is still open: nothing arrives, and it has not ended.
    assert!(tokio::time::timeout(Duration::from_secs(1), plain.message()).await.is_err());
    for other in (0..3).filter(|index| *index != isolated) {
        cluster.resume(other);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_revision_reaches_a_fragment_watch_in_fragments_that_join_to_the_whole() {
    let mut cluster = Cluster::start(1, &[]).await;
    let endpoint = cluster.nodes[0].endpoint();
    let mut client = cluster.any_client().await;
    let value = "x".repeat(700 * 1024);
    for key in ["big/a", "big/b"] {
        client.put(key, value.as_str(), None).await.unwrap();
    }
    let (_keep_open, mut fragmented) = open_watch(&endpoint, "big/", false, true).await;
    let (_keep_open_too, mut whole) = open_watch(&endpoint, "big/", false, false).await;
    // One revision with two 700 KiB puts, each with its 700 KiB previous value: about 2.8 MiB
    // of events, more than the 1.5 MiB request limit.
    let other = "y".repeat(700 * 1024);
    let puts = ["big/a", "big/b"].map(|key| TxnOp::put(key, other.as_str(), Some(PutOptions::new())));
    client.txn(Txn::new().and_then(puts)).await.unwrap();
    let mut parts = Vec::new();
    loop {
        let part = fragmented.message().await.unwrap().unwrap();
        let last = !part.fragment;
        parts.push(part);
        if last {
            break;
        }
    }
    assert!(parts.len() >= 2, "expected fragments, got {} response(s)", parts.len());
    let joined: Vec<_> = parts.iter().flat_map(|part| part.events.iter().cloned()).collect();
    assert_eq!(joined.len(), 2);
    assert!(joined.iter().all(|event| event.prev_kv.as_ref().is_some_and(|kv| kv.value == value.as_bytes())));
    assert!(parts
        .iter()
        .all(|part| part.header.as_ref().unwrap().revision == parts[0].header.as_ref().unwrap().revision));
    // Without `fragment` the same revision arrives whole.
    let single = whole.message().await.unwrap().unwrap();
    assert!(!single.fragment);
    assert_eq!(single.events.len(), 2);
}
