//! A stream of an HTTP/2 connection served by tonic's routes, in a task of its own: the request
//! body is read from h2 as tonic asks for it, and the response body is written to h2 as the
//! client's window allows, one frame ahead at most (as hyper does), so a watcher that stops
//! reading holds back its own stream and nothing more.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http_body::{Body, Frame};
use tonic::codegen::Service;
use tonic::service::Routes;

pub(crate) async fn serve(mut routes: Routes, request: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let request = request.map(RequestBody);
    let Ok(()) = std::future::poll_fn(|cx| Service::<http::Request<RequestBody>>::poll_ready(&mut routes, cx)).await;
    let answer = routes.call(request);
    // A client that resets the stream before the answer is ready cancels the call.
    let response = tokio::select! {
        answered = answer => match answered {
            Ok(response) => response,
            Err(never) => match never {},
        },
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let (head, body) = response.into_parts();
    let ends_here = body.is_end_stream();
    let Ok(send) = respond.send_response(http::Response::from_parts(head, ()), ends_here) else {
        return;
    };
    if !ends_here {
        send_body(body, send).await;
    }
}

/// Writes `body` to `send`, asking the body for a frame only once there is window for one.
async fn send_body(body: tonic::body::Body, mut send: SendStream<Bytes>) {
    let mut body = std::pin::pin!(body);
    loop {
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return, // reset or gone
            }
        }
        let frame = std::future::poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None); // the client cancelled the stream (a watch, say)
            }
            body.as_mut().poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = frame else { return };
        let sent = match frame {
            None => send.send_data(Bytes::new(), true).map(|()| true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let ends_here = body.is_end_stream();
                    send.send_data(data, ends_here).map(|()| ends_here)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers).map(|()| true),
                    Err(_) => Ok(false), // neither data nor trailers: skip it
                },
            },
            Some(Err(status)) => {
                tracing::debug!(%status, "a response body failed");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        };
        if !matches!(sent, Ok(false)) {
            return; // ended, or h2 refused (the stream or connection is gone)
        }
    }
}

/// A request body as tonic reads it; what it takes is released to the client's window.
struct RequestBody(RecvStream);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let stream = &mut self.get_mut().0;
        match stream.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => match stream.poll_trailers(cx) {
                Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Poll::Ready(Ok(None)) => Poll::Ready(None),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
