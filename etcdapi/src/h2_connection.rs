//! One HTTP/2 connection of the etcd API.
//!
//! etcd's KV calls (`kv_calls.rs`) run inside the connection's own task: each is a future polled
//! beside the connection, so a call costs no task of its own, and the replies of every call that
//! finished in one pass leave in one write. Every other stream (watches, leases, the other
//! services) is handed to tonic's routes in a task of its own (`routed_stream.rs`), as hyper
//! would run it. The settings are hyper's defaults, which tonic used to serve with.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::Handlers;
use crate::{kv_calls, routed_stream};

const WINDOW_BYTES: u32 = 1024 * 1024;
const MAX_FRAME_BYTES: u32 = 16 * 1024;
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
const MAX_SEND_BUFFER_BYTES: usize = 400 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `io` (whose preface is still unread) until the client goes, the connection fails, or
/// `closing` turns true and the streams then open have ended.
pub(crate) async fn serve<T>(io: T, handlers: Arc<Handlers>, mut closing: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(WINDOW_BYTES)
        .initial_connection_window_size(WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_send_buffer_size(MAX_SEND_BUFFER_BYTES)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .handshake::<_, Bytes>(io);
    let mut connection = tokio::select! {
        handshake = handshake => match handshake {
            Ok(connection) => connection,
            Err(error) => return tracing::debug!(%error, "HTTP/2 handshake failed"),
        },
        _ = closing.wait_for(|closing| *closing) => return,
    };
    let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
    // Dropping the set (the server gave up waiting) aborts the streams still open.
    let mut streams = JoinSet::new();
    let mut closing = std::pin::pin!(async move {
        let _ = closing.wait_for(|closing| *closing).await;
    });
    let mut going_away = false;
    let served = std::future::poll_fn(|cx| {
        if !going_away && closing.as_mut().poll(cx).is_ready() {
            going_away = true;
            connection.graceful_shutdown();
        }
        loop {
            // Take every stream that has arrived, then run the calls: the replies they queue are
            // written together by the next `poll_accept`, which is what flushes the connection.
            let mut progressed = false;
            loop {
                match connection.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        progressed = true;
                        match kv_calls::KvMethod::of(request.uri().path()) {
                            Some(method) => {
                                calls.push(Box::pin(kv_calls::serve(handlers.clone(), method, request, respond)))
                            }
                            None => {
                                streams.spawn(routed_stream::serve(handlers.routes.clone(), request, respond));
                            }
                        }
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {
                progressed = true;
            }
            while let Poll::Ready(Some(_)) = streams.poll_join_next(cx) {}
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP/2 connection ended");
    }
}
