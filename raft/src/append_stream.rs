//! Replication's pipeline over one gRPC stream per session (openraft's `stream_append`): the
//! leader writes AppendEntries requests as they come, the follower answers each in order. An
//! entry then costs one HTTP/2 data frame each way, where a unary call per request cost a new
//! HTTP/2 stream (headers, trailers, a dispatched handler) and a round trip before the next.
//!
//! A session lives as long as the leader has entries for the follower. A follower that stops
//! answering (a partition drops its packets) is noticed by the deadline on outstanding
//! requests, and openraft opens the next session when it can.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use openraft::Raft;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::codec;
use crate::proto::peer_client::PeerClient;
use crate::proto::Frame;
use crate::state_machine::StateMachine;
use crate::types::TypeConfig;

/// What the follower sends back per request: openraft's result, or why its Raft could not
/// take the request (it is shutting down), after which the stream ends.
type Answer = Result<StreamAppendResult<TypeConfig>, String>;

pub(crate) type Answers =
    Pin<Box<dyn Stream<Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> + Send>>;

/// The leader's half: sends `requests` to `target` on one stream and yields its answers.
/// `deadline` bounds the wait for an answer while any request is outstanding. A peer without
/// the stream (an older member) answers Unimplemented: that is noted in `refused_at`, and the
/// session ends with an error so that openraft opens the next one (unary, see `peer_network`).
pub(crate) async fn send<S>(
    mut client: PeerClient<Channel>,
    target: u64,
    requests: S,
    deadline: Duration,
    refused_at: &mut Option<Instant>,
) -> Result<Answers, RPCError<TypeConfig>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let outstanding = Arc::new(AtomicU64::new(0));
    let sent = Arc::clone(&outstanding);
    let frames = requests.map(move |request| {
        sent.fetch_add(1, Ordering::Relaxed);
        // postcard encodes these types; should it ever fail, the empty payload is refused by
        // the follower and the session ends with that error.
        Frame { payload: codec::encode(&request).unwrap_or_default() }
    });
    let opened = tokio::time::timeout(deadline, client.stream_append(tonic::Request::new(frames))).await;
    let answers = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            if status.code() == Code::Unimplemented {
                tracing::warn!("member {target:x} does not serve the append stream: appending by unary calls");
                *refused_at = Some(Instant::now());
            }
            return Err(crate::peer_network::status_error(target, status));
        }
        Err(_) => return Err(silent(target, deadline)),
    };
    let stream = futures::stream::unfold(Some(answers), move |state| {
        let outstanding = Arc::clone(&outstanding);
        async move {
            let mut answers = state?;
            let item = match next_answer(&mut answers, &outstanding, deadline).await {
                Ok(Some(frame)) => decode_answer(target, &frame),
                Ok(None) => return None,
                Err(status) => Err(crate::peer_network::status_error(target, status)),
            };
            let go_on = matches!(item, Ok(Ok(_)));
            Some((item, go_on.then_some(answers)))
        }
    });
    Ok(Box::pin(stream))
}

/// The next answer. While nothing is outstanding the stream may stay quiet for as long as the
/// leader has nothing to send; once something is, two quiet deadlines in a row end the session
/// (the request may have been written just before the first one started).
async fn next_answer(
    answers: &mut Streaming<Frame>,
    outstanding: &AtomicU64,
    deadline: Duration,
) -> Result<Option<Frame>, Status> {
    let mut quiet_while_waiting = 0;
    loop {
        // `message()` keeps its partial state in the stream, so a timed-out wait loses nothing.
        match tokio::time::timeout(deadline, answers.message()).await {
            Ok(answer) => {
                if matches!(answer, Ok(Some(_))) {
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                }
                return answer;
            }
            Err(_) if outstanding.load(Ordering::Relaxed) == 0 => quiet_while_waiting = 0,
            Err(_) => {
                quiet_while_waiting += 1;
                if quiet_while_waiting == 2 {
                    return Err(Status::unavailable(format!("no answer within {deadline:?}")));
                }
            }
        }
    }
}

fn decode_answer(target: u64, frame: &Frame) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
    let answer: Answer = codec::decode(&frame.payload, "stream append answer")
        .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
    answer.map_err(|error| RPCError::Unreachable(Unreachable::from_string(format!("member {target:x}: {error}"))))
}

fn silent(target: u64, deadline: Duration) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(format!("member {target:x}: no stream within {deadline:?}")))
}

pub(crate) type Frames = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

/// The follower's half: feeds the requests to `raft` and answers each, in order. A request
/// that does not decode ends the stream with InvalidArgument after the answers before it.
pub(crate) fn serve(raft: Raft<TypeConfig, StateMachine>, frames: Streaming<Frame>) -> Frames {
    let refused: Arc<Mutex<Option<Status>>> = Arc::default();
    let refusal = Arc::clone(&refused);
    // Requests until the leader's side ends or one does not decode (that one is remembered).
    let requests = tokio_stream::StreamExt::map_while(frames, move |frame| {
        let frame =
            frame.inspect_err(|status| tracing::debug!("append stream from the leader ended: {status}")).ok()?;
        codec::decode::<AppendEntriesRequest<TypeConfig>>(&frame.payload, "stream append request")
            .inspect_err(|error| {
                *refusal.lock().expect("refusal lock") = Some(Status::invalid_argument(error.to_string()));
            })
            .ok()
    });
    let answers = raft.stream_append(requests).map(|result| {
        let answer: Answer = result.map_err(|fatal| fatal.to_string());
        codec::encode(&answer).map(|payload| Frame { payload }).map_err(|error| Status::internal(error.to_string()))
    });
    let refusal = futures::stream::once(async move { refused.lock().expect("refusal lock").take() })
        .filter_map(|status| std::future::ready(status.map(Err)));
    Box::pin(answers.chain(refusal))
}
