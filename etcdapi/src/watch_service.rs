//! etcd's Watch service: one gRPC stream is one `watch::WatchStream`, whose watchers all answer
//! on it; requests (create, cancel, progress) and responses flow in both directions at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::proto::{PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use store::{Change, EventKind, KeyRange};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use watch::{CancelReason, ResponseBody, WatchHub, WatchRequest, WatchResponse, WatchStream};

use crate::{convert, Context};
use prost::Message;

/// Feeds the watch hub from the state machine's applied batches.
#[derive(Debug)]
pub struct HubListener(pub Arc<WatchHub>);

impl raft::ChangeListener for HubListener {
    fn applied(&self, changes: &[Change], revision: i64) {
        self.0.publish(changes, revision);
    }

    fn restored(&self, revision: i64) {
        self.0.restored(revision);
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
        // kube-apiserver opens every watch with `hasleader=true`: such a stream ends with "no
        // leader" when its member has been without one for a while, so the client moves on.
        let requires_leader = request.metadata().get("hasleader").is_some_and(|value| value == "true");
        let caller = self.context.caller(request.metadata())?;
        let mut inbound = request.into_inner();
        let mut stream = self.context.hub.open_stream();
        let (outbound, receiver) = mpsc::channel(OUTBOUND_RESPONSES_MAX);
        let context = self.context.clone();
        tokio::spawn(async move {
            let election_timeout = Duration::from_millis(context.member.config.election_timeout_ms);
            let mut leader_check = tokio::time::interval(election_timeout);
            let mut leader_seen = Instant::now();
            // Watches that asked for large revisions to be split (etcd's `fragment`).
            let mut fragmenting = HashSet::new();
            loop {
                tokio::select! {
                    request = inbound.message() => match request {
                        Ok(Some(request)) => match handle(&mut stream, &context, &caller, request).await {
                            Ok(Handled::Created { watch_id, fragment: true }) => {
                                fragmenting.insert(watch_id);
                            }
                            Ok(Handled::Refused(status)) => {
                                // etcd answers a watch the caller may not read with a created
                                // and canceled response carrying the reason, not a stream error.
                                let refusal = PbWatchResponse {
                                    header: context.header(context.member.store().revision()),
                                    watch_id: -1,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: status.message().to_string(),
                                    ..PbWatchResponse::default()
                                };
                                if outbound.send(Ok(refusal)).await.is_err() {
                                    break;
                                }
                            }
                            Ok(Handled::Canceled { watch_id }) => {
                                fragmenting.remove(&watch_id);
                            }
                            Ok(_) => {}
                            Err(status) => {
                                let _ = outbound.send(Err(status)).await;
                                break;
                            }
                        },
                        // The client closed its side, or the connection broke.
                        _ => break,
                    },
                    response = stream.recv() => match response {
                        Some(response) => {
                            let fragment = fragmenting.contains(&response.watch_id);
                            let wire = to_wire(&context, response);
                            if send(&outbound, wire, fragment.then_some(context.max_request_bytes)).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = leader_check.tick(), if requires_leader => {
                        if context.member.leader_id().is_some() {
                            leader_seen = Instant::now();
                        } else if leader_seen.elapsed() >= NO_LEADER_CHECKS * election_timeout {
                            let _ = outbound.send(Err(Status::unavailable("etcdserver: no leader"))).await;
                            break;
                        }
                    }
                }
            }
        });
        Ok(Response::new(ResponseStream::new(receiver)))
    }
}

/// Election timeouts without a leader after which a `hasleader` watch stream ends (etcd: 3).
const NO_LEADER_CHECKS: u32 = 3;

/// Sends one response, split into fragments of at most the request size limit when the watch
/// asked for that: each fragment but the last has `fragment` set, and the client joins them.
async fn send(
    outbound: &mpsc::Sender<Result<PbWatchResponse, Status>>,
    mut wire: PbWatchResponse,
    fragment_limit: Option<usize>,
) -> Result<(), mpsc::error::SendError<Result<PbWatchResponse, Status>>> {
    let Some(limit) = fragment_limit.filter(|limit| wire.encoded_len() > *limit) else {
        return outbound.send(Ok(wire)).await;
    };
    let events = std::mem::take(&mut wire.events);
    let mut part = PbWatchResponse { fragment: true, ..wire.clone() };
    let mut size = part.encoded_len();
    for event in events {
        let event_size = event.encoded_len() + 8;
        if !part.events.is_empty() && size + event_size > limit {
            let full = std::mem::replace(&mut part, PbWatchResponse { fragment: true, ..wire.clone() });
            outbound.send(Ok(full)).await?;
            size = part.encoded_len();
        }
        size += event_size;
        part.events.push(event);
    }
    part.fragment = false;
    outbound.send(Ok(part)).await
}

/// What a client request did to the stream's watch set.
enum Handled {
    Created {
        watch_id: i64,
        fragment: bool,
    },
    Canceled {
        watch_id: i64,
    },
    /// The caller may not read the range (auth).
    Refused(Status),
    Other,
}

async fn handle(
    stream: &mut WatchStream,
    context: &Context,
    caller: &crate::Caller,
    request: PbWatchRequest,
) -> Result<Handled, Status> {
    match request.request_union {
        Some(PbWatchRequestUnion::CreateRequest(create)) => {
            if create.key.is_empty() {
                return Err(Status::invalid_argument("etcdserver: key is not provided"));
            }
            if let Err(status) = caller.check_read(&context.auth(), &create.key, &create.range_end) {
                return Ok(Handled::Refused(status));
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
            let watch_id =
                stream.watch(watch_id, watch).await.map_err(|error| Status::invalid_argument(error.to_string()))?;
            Ok(Handled::Created { watch_id, fragment: create.fragment })
        }
        Some(PbWatchRequestUnion::CancelRequest(cancel)) => {
            // etcd ignores a cancel of an unknown watch id.
            let _ = stream.cancel(cancel.watch_id).await;
            Ok(Handled::Canceled { watch_id: cancel.watch_id })
        }
        Some(PbWatchRequestUnion::ProgressRequest(_)) => {
            stream.request_progress();
            Ok(Handled::Other)
        }
        None => Ok(Handled::Other),
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
