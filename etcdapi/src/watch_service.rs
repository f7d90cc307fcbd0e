//! etcd's Watch service: one gRPC stream is one `watch::WatchStream`, whose watchers all answer
//! on it; requests (create, cancel, progress) and responses flow in both directions at once.

use std::sync::Arc;

use etcd_client::proto::{PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use store::{Change, EventKind, KeyRange};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use watch::{CancelReason, ResponseBody, WatchHub, WatchRequest, WatchResponse, WatchStream};

use crate::{convert, Context};

/// Feeds the watch hub from the state machine's applied batches.
#[derive(Debug)]
pub struct HubListener(pub Arc<WatchHub>);

impl raft::ChangeListener for HubListener {
    fn applied(&self, changes: &[Change], revision: i64) {
        self.0.publish(changes, revision);
    }
}

#[derive(Debug)]
pub struct WatchService {
    context: Arc<Context>,
}

impl WatchService {
    pub fn new(context: Arc<Context>) -> Self {
        WatchService { context }
    }
}

/// Responses queued to one client before the stream stops reading the hub (and the hub moves
/// its watchers aside to catch up later).
const OUTBOUND_RESPONSES_MAX: usize = 64;

type ResponseStream = tokio_stream::wrappers::ReceiverStream<Result<PbWatchResponse, Status>>;

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(&self, request: Request<Streaming<PbWatchRequest>>) -> Result<Response<ResponseStream>, Status> {
        let mut inbound = request.into_inner();
        let mut stream = self.context.hub.open_stream();
        let (outbound, receiver) = mpsc::channel(OUTBOUND_RESPONSES_MAX);
        let context = self.context.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = inbound.message() => match request {
                        Ok(Some(request)) => {
                            if let Err(status) = handle(&mut stream, request).await {
                                let _ = outbound.send(Err(status)).await;
                                break;
                            }
                        }
                        // The client closed its side, or the connection broke.
                        _ => break,
                    },
                    response = stream.recv() => match response {
                        Some(response) => {
                            if outbound.send(Ok(to_wire(&context, response))).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Ok(Response::new(ResponseStream::new(receiver)))
    }
}

async fn handle(stream: &mut WatchStream, request: PbWatchRequest) -> Result<(), Status> {
    match request.request_union {
        Some(PbWatchRequestUnion::CreateRequest(create)) => {
            if create.key.is_empty() {
                return Err(Status::invalid_argument("etcdserver: key is not provided"));
            }
            let range = KeyRange::new(&create.key.into(), &create.range_end.into());
            let watch = WatchRequest {
                start_revision: create.start_revision,
                prev_kv: create.prev_kv,
                // etcd's filter values: NOPUT = 0, NODELETE = 1.
                filter_puts: create.filters.contains(&0),
                filter_deletes: create.filters.contains(&1),
                progress_notify: create.progress_notify,
                ..WatchRequest::new(range)
            };
            let watch_id = (create.watch_id != 0).then_some(create.watch_id);
            stream.watch(watch_id, watch).await.map(|_| ()).map_err(|error| Status::invalid_argument(error.to_string()))
        }
        Some(PbWatchRequestUnion::CancelRequest(cancel)) => {
            // etcd ignores a cancel of an unknown watch id.
            let _ = stream.cancel(cancel.watch_id).await;
            Ok(())
        }
        Some(PbWatchRequestUnion::ProgressRequest(_)) => {
            stream.request_progress();
            Ok(())
        }
        None => Ok(()),
    }
}

fn to_wire(context: &Context, response: WatchResponse) -> PbWatchResponse {
    let mut wire = PbWatchResponse {
        header: context.header(response.revision),
        watch_id: response.watch_id,
        ..Default::default()
    };
    match response.body {
        ResponseBody::Created => wire.created = true,
        ResponseBody::Progress => {}
        ResponseBody::Events(events) => {
            wire.events = events
                .into_iter()
                .map(|event| PbEvent {
                    r#type: match event.kind {
                        EventKind::Put => 0,
                        EventKind::Delete => 1,
                    },
                    kv: Some(convert::key_value(event.kv)),
                    prev_kv: event.prev_kv.map(convert::key_value),
                })
                .collect();
        }
        ResponseBody::Canceled(reason) => {
            wire.canceled = true;
            if let CancelReason::Compacted { compact_revision } = reason {
                wire.compact_revision = compact_revision;
                wire.cancel_reason = "etcdserver: mvcc: required revision has been compacted".into();
            }
        }
    }
    wire
}
