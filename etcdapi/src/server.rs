//! How the etcd API port is served: the accept loop, one task per connection, and graceful
//! shutdown. A connection that opens with HTTP/2's preface goes to `h2_connection.rs`; any
//! other is HTTP/1.1 (the plain `/health`, `/version`, `/metrics` endpoints) through hyper.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use etcd_client::proto::{PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tonic::service::Routes;

use crate::{
    h2_connection, http_endpoints, protos, AuthService, ClusterService, Context, ElectionService, KvService,
    LeaseService, LockService, MaintenanceService, WatchService,
};

/// gRPC's allowance on top of etcd's `--max-request-bytes`, as etcd adds it.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How long open streams may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// After a failed accept (out of file descriptors, say), wait this long before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What every connection serves: etcd's KV calls directly, everything else through tonic.
pub(crate) struct Handlers {
    pub kv: Arc<KvService>,
    pub routes: Routes,
    /// The largest gRPC message a request may carry.
    pub max_message_bytes: usize,
}

impl Handlers {
    fn new(context: Arc<Context>) -> Handlers {
        let limit = context.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let kv = Arc::new(KvService::new(context.clone()));
        let routes = Routes::from(http_endpoints::router(context.clone()))
            // KV over HTTP/2 never gets here (see h2_connection.rs); this answers it elsewhere.
            .add_service(PbKvServer::from_arc(kv.clone()).max_decoding_message_size(limit))
            .add_service(
                PbMaintenanceServer::new(MaintenanceService::new(context.clone())).max_decoding_message_size(limit),
            )
            .add_service(PbLeaseServer::new(LeaseService::new(context.clone())).max_decoding_message_size(limit))
            .add_service(PbClusterServer::new(ClusterService::new(context.clone())).max_decoding_message_size(limit))
            .add_service(
                protos::v3lockpb::lock_server::LockServer::new(LockService::new(context.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                protos::v3electionpb::election_server::ElectionServer::new(ElectionService::new(context.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                protos::etcdserverpb::auth_server::AuthServer::new(AuthService::new(context.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(PbWatchServer::new(WatchService::new(context)).max_decoding_message_size(limit))
            .prepare();
        Handlers { kv, routes, max_message_bytes: limit }
    }
}

/// Serves the etcd API on `address` until `shutdown` resolves: over TLS with `tls` (an
/// `https://` client URL), else plain HTTP/2 (and HTTP/1.1 for the plain endpoints).
pub async fn serve(
    context: Arc<Context>,
    address: SocketAddr,
    tls: Option<raft::TlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handlers = Arc::new(Handlers::new(context));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut listener = match tls {
        None => Listener::Plain(TcpListener::bind(address).await?),
        Some(tls) => Listener::Tls(tls.bind(address).await?),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (handlers, closing) = (handlers.clone(), closing_seen.clone());
                match accepted {
                    Accepted::Plain(stream) => connections.spawn(serve_connection(stream, handlers, closing)),
                    Accepted::Tls(stream) => connections.spawn(serve_connection(stream, handlers, closing)),
                };
            }
        }
    }
    // Open streams (watches, keep-alives, locks) get a grace period to end, then serving stops
    // regardless (dropping the set aborts what is left), so a SIGTERM'd member never lingers.
    drop(listener);
    let _ = closing.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    Ok(())
}

enum Listener {
    Plain(TcpListener),
    Tls(raft::TlsIncoming),
}

enum Accepted {
    Plain(tokio::net::TcpStream),
    Tls(raft::TlsConnection),
}

impl Listener {
    /// The next connection; accept errors are logged and waited out, never returned.
    async fn accept(&mut self) -> Accepted {
        loop {
            let error = match self {
                Listener::Plain(listener) => match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        return Accepted::Plain(stream);
                    }
                    Err(error) => error,
                },
                Listener::Tls(incoming) => match incoming.next().await {
                    Some(Ok(stream)) => return Accepted::Tls(stream),
                    Some(Err(error)) => error,
                    None => std::future::pending().await, // the handshake task ended: serve no more
                },
            };
            tracing::warn!(%error, "accepting a connection failed");
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
        }
    }
}

/// HTTP/2's connection preface: what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn serve_connection<T>(mut io: T, handlers: Arc<Handlers>, closing: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Read until the first bytes are the preface or cannot be; they are replayed to the protocol.
    let mut opening = BytesMut::with_capacity(H2_PREFACE.len());
    while opening.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&opening) {
        let mut byte_budget = (&mut io).take((H2_PREFACE.len() - opening.len()) as u64);
        match byte_budget.read_buf(&mut opening).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    let is_h2 = opening.as_ref() == H2_PREFACE;
    let io = Replayed { opening: opening.freeze(), io };
    if is_h2 {
        h2_connection::serve(io, handlers, closing).await;
    } else {
        serve_http1(io, handlers, closing).await;
    }
}

async fn serve_http1<T>(io: T, handlers: Arc<Handlers>, mut closing: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(handlers.routes.clone());
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = closing.wait_for(|closing| *closing) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// A connection whose first bytes were already read: they are read again, then the rest.
struct Replayed<T> {
    opening: Bytes,
    io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Replayed<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.opening.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let len = this.opening.len().min(buf.remaining());
        buf.put_slice(&this.opening[..len]);
        this.opening.advance(len);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replayed<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
