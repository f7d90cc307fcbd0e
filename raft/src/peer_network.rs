//! The client side of the peer transport: openraft's network over tonic. One lazily connected
//! channel per peer URL (tonic reconnects on its own), a deadline on every RPC, bounded message
//! sizes, and snapshots streamed in chunks with a crc32 the receiver checks before it installs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::codec;
use crate::proto::peer_client::PeerClient;
use crate::proto::{Frame, SnapshotChunk};
use crate::state_machine::SnapshotFile;
use crate::tls::TlsConfig;
use crate::types::{MemberNode, TypeConfig};

/// The largest peer message either side accepts. Append batches are capped well below it
/// (`max_payload_entries` × the largest request).
pub(crate) const PEER_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A snapshot may be large: its deadline is per chunk sent, not per stream.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a peer that refused the append stream (a member from before it, during a rolling
/// upgrade) gets unary AppendEntries before the stream is tried again.
const APPEND_STREAM_RETRY: Duration = Duration::from_secs(60);

/// Channels to peers by URL, shared by openraft's replication and by calls sent on to the leader.
/// `https://` peers are reached over TLS with the member's peer certificate.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<ClientTlsConfig>,
}

impl PeerChannels {
    pub(crate) fn new(tls: Option<&TlsConfig>) -> Self {
        PeerChannels { channels: Arc::default(), tls: tls.map(TlsConfig::client_config) }
    }

    pub(crate) fn client(&self, node: &MemberNode) -> Result<PeerClient<Channel>, String> {
        let url = node.peer_urls.first().ok_or_else(|| format!("member {:?} has no peer URL", node.name))?;
        let channel = {
            let mut channels = self.channels.lock().expect("peer channels lock");
            match channels.get(url) {
                Some(channel) => channel.clone(),
                None => {
                    let mut endpoint = Endpoint::from_shared(url.clone())
                        .map_err(|error| format!("peer URL {url}: {error}"))?
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true);
                    if url.starts_with("https://") {
                        let Some(tls) = self.tls.clone() else {
                            return Err(format!(
                                "peer URL {url} is https, but this member has no --peer-cert-file and --peer-key-file"
                            ));
                        };
                        endpoint = endpoint.tls_config(tls).map_err(|error| format!("peer URL {url}: {error}"))?;
                    }
                    let channel = endpoint.connect_lazy();
                    channels.insert(url.clone(), channel.clone());
                    channel
                }
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }
}

/// openraft's network factory: one [`PeerConnection`] per replication target.
#[derive(Debug, Clone)]
pub(crate) struct PeerNetwork {
    pub(crate) channels: PeerChannels,
    /// The shortest deadline any RPC gets (one election timeout): openraft asks for a
    /// heartbeat-long one, which a slow link (tens of ms each way) never meets, so nothing
    /// would replicate. Waiting longer is safe: acknowledgements count from when they were sent.
    pub(crate) rpc_timeout_floor: Duration,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        PeerConnection {
            target,
            client: self.channels.client(node),
            rpc_timeout_floor: self.rpc_timeout_floor,
            stream_refused_at: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct PeerConnection {
    target: u64,
    rpc_timeout_floor: Duration,
    client: Result<PeerClient<Channel>, String>,
    /// When the peer last answered the append stream with Unimplemented.
    stream_refused_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    TransferLeader,
}

fn unreachable(message: impl ToString) -> Unreachable<TypeConfig> {
    Unreachable::from_string(message)
}

/// A gRPC failure as openraft classifies it: a peer that is down or refusing is unreachable
/// (openraft backs off); anything else may be retried at once.
pub(crate) fn status_error(target: u64, status: tonic::Status) -> RPCError<TypeConfig> {
    let message = format!("member {target:x}: {}", status.message());
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            RPCError::Unreachable(unreachable(message))
        }
        _ => RPCError::Network(NetworkError::from_string(message)),
    }
}

impl PeerConnection {
    fn client(&self) -> Result<PeerClient<Channel>, Unreachable<TypeConfig>> {
        self.client.clone().map_err(unreachable)
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload = codec::encode(request).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let mut message = tonic::Request::new(Frame { payload });
        message.set_timeout(timeout);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(message).await,
            Rpc::Vote => client.vote(message).await,
            Rpc::TransferLeader => client.transfer_leader(message).await,
        };
        let frame = reply.map_err(|status| status_error(self.target, status))?.into_inner();
        let answer: Result<Resp, String> = codec::decode(&frame.payload, "peer reply")
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        // The peer's Raft refused (it is shutting down): back off as from a dead peer.
        answer.map_err(|error| RPCError::Unreachable(unreachable(format!("member {:x}: {error}", self.target))))
    }

    async fn send_snapshot(
        &self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let network = |error: std::io::Error| StreamingError::Network(NetworkError::new(&error));
        let header = codec::encode(&(vote, snapshot.meta.clone())).map_err(network)?;
        let data = snapshot.snapshot.clone();
        let written = tokio::task::spawn_blocking(move || data.write_out()).await;
        written.map_err(|error| network(std::io::Error::other(error)))?.map_err(network)?;
        let mut file = tokio::fs::File::open(&snapshot.snapshot.path).await.map_err(network)?;
        // A reader task feeds the stream chunk by chunk, hashing as it goes; the last chunk
        // (possibly empty) carries the crc32 of everything before it. Dropping the stream (a
        // cancelled send) stops the reader.
        let (chunks, receiver) = tokio::sync::mpsc::channel::<SnapshotChunk>(2);
        tokio::spawn(async move {
            let mut hasher = crc32fast::Hasher::new();
            let mut header = Some(header);
            loop {
                let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let mut filled = 0;
                while filled < data.len() {
                    match file.read(&mut data[filled..]).await {
                        Ok(0) => break,
                        Ok(read) => filled += read,
                        Err(error) => {
                            tracing::warn!(%error, "reading a snapshot to send failed");
                            return;
                        }
                    }
                }
                data.truncate(filled);
                hasher.update(&data);
                let last = filled < SNAPSHOT_CHUNK_BYTES;
                let crc32 = if last { hasher.clone().finalize() } else { 0 };
                let chunk = SnapshotChunk { header: header.take().unwrap_or_default(), data, last, crc32 };
                if chunks.send(chunk).await.is_err() || last {
                    return;
                }
            }
        });
        let mut client = self.client().map_err(StreamingError::Unreachable)?;
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        request.set_timeout(SNAPSHOT_TIMEOUT);
        let frame = client
            .install_snapshot(request)
            .await
            .map_err(|status| match status_error(self.target, status) {
                RPCError::Unreachable(error) => StreamingError::Unreachable(error),
                other => StreamingError::Network(NetworkError::new(&other)),
            })?
            .into_inner();
        let answer: Result<SnapshotResponse<TypeConfig>, String> =
            codec::decode(&frame.payload, "snapshot reply").map_err(network)?;
        answer.map_err(|error| StreamingError::Unreachable(unreachable(format!("member {:x}: {error}", self.target))))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(Rpc::AppendEntries, &request, option.hard_ttl().max(self.rpc_timeout_floor)).await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        if self.stream_refused_at.is_some_and(|at| at.elapsed() < APPEND_STREAM_RETRY) {
            // One unary AppendEntries at a time, as openraft does for a network without streams.
            return openraft::network::stream_append_sequential(self, input, option);
        }
        let (target, deadline) = (self.target, option.hard_ttl().max(self.rpc_timeout_floor));
        let client = self.client();
        let refused_at = &mut self.stream_refused_at;
        Box::pin(async move {
            let client = client.map_err(RPCError::Unreachable)?;
            let answers: BoxStream<'s, _> =
                crate::append_stream::send(client, target, input, deadline, refused_at).await?;
            Ok(answers)
        })
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(Rpc::Vote, &request, option.hard_ttl().max(self.rpc_timeout_floor)).await
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(Rpc::TransferLeader, &request, option.hard_ttl().max(self.rpc_timeout_floor)).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            result = self.send_snapshot(vote, snapshot) => result,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}
