//! The server side of the peer transport: openraft's RPCs from other members, received
//! snapshots (written to a scratch file, crc32-checked, then installed), and calls sent on to
//! this member because it leads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use openraft::Snapshot;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::leader_call::LeaderCall;
use crate::member::Member;
use crate::proto::peer_server::Peer;
use crate::proto::{Frame, SnapshotChunk};
use crate::state_machine::SnapshotFile;
use crate::types::TypeConfig;

#[derive(Debug)]
pub(crate) struct PeerService {
    member: Member,
    /// Where snapshots being received are written (the member's snapshot directory).
    incoming_dir: PathBuf,
    next_incoming: AtomicU64,
}

impl PeerService {
    pub(crate) fn new(member: Member, incoming_dir: PathBuf) -> Self {
        PeerService { member, incoming_dir, next_incoming: AtomicU64::new(0) }
    }
}

/// Files a receive left behind when the member died mid-snapshot.
pub(crate) fn remove_incoming_files(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("incoming-")) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(frame: &Frame, what: &str) -> Result<T, Status> {
    codec::decode(&frame.payload, what).map_err(|error| Status::invalid_argument(error.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<Frame>, Status> {
    let payload = codec::encode(value).map_err(|error| Status::internal(error.to_string()))?;
    Ok(Response::new(Frame { payload }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamAppendStream = crate::append_stream::Frames;

    async fn stream_append(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // A test stands in for a member from before the stream with this failpoint.
        crate::failpoint("raft::peer::no_append_stream")
            .map_err(|_| Status::unimplemented("StreamAppend is not served by this member"))?;
        Ok(Response::new(crate::append_stream::serve(self.member.raft.clone(), request.into_inner())))
    }

    async fn append_entries(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let request: AppendEntriesRequest<TypeConfig> = decode(request.get_ref(), "append entries")?;
        let answer = self.member.raft.append_entries(request).await.map_err(|error| error.to_string());
        encode(&answer)
    }

    async fn vote(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let request: VoteRequest<TypeConfig> = decode(request.get_ref(), "vote")?;
        let answer = self.member.raft.vote(request).await.map_err(|error| error.to_string());
        encode(&answer)
    }

    async fn transfer_leader(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let request: TransferLeaderRequest<TypeConfig> = decode(request.get_ref(), "transfer leader")?;
        let answer = self.member.raft.handle_transfer_leader(request).await.map_err(|error| error.to_string());
        encode(&answer)
    }

    async fn install_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<Frame>, Status> {
        let mut chunks = request.into_inner();
        let number = self.next_incoming.fetch_add(1, Ordering::Relaxed);
        let path = self.incoming_dir.join(format!("incoming-{}-{number}", std::process::id()));
        let received = receive_snapshot(&mut chunks, &path).await;
        let (vote, meta) = match received {
            Ok(header) => header,
            Err(status) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(status);
            }
        };
        let snapshot = Snapshot { meta, snapshot: SnapshotFile::written(path.clone()) };
        let answer = self.member.raft.install_full_snapshot(vote, snapshot).await.map_err(|error| error.to_string());
        let _ = tokio::fs::remove_file(&path).await;
        encode(&answer)
    }

    async fn call_leader(&self, request: Request<Frame>) -> Result<Response<Frame>, Status> {
        let call: LeaderCall = decode(request.get_ref(), "leader call")?;
        // Served here or refused: a call is sent on at most once, so it never loops.
        let answer = self.member.serve_leader_call(call).await;
        encode(&answer)
    }
}

/// Writes the streamed snapshot to `path` and returns its header once the crc32 of the data
/// matches the one the sender computed and the file is synced.
async fn receive_snapshot(
    chunks: &mut Streaming<SnapshotChunk>,
    path: &std::path::Path,
) -> Result<(VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>), Status> {
    let io = |error: std::io::Error| Status::internal(format!("writing a received snapshot: {error}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut header = None;
    loop {
        let Some(chunk) = chunks.message().await? else {
            return Err(Status::invalid_argument("snapshot stream ended before its last chunk"));
        };
        if header.is_none() {
            header = Some(
                codec::decode(&chunk.header, "snapshot header")
                    .map_err(|error| Status::invalid_argument(error.to_string()))?,
            );
        }
        hasher.update(&chunk.data);
        file.write_all(&chunk.data).await.map_err(io)?;
        if chunk.last {
            let crc32 = hasher.finalize();
            if crc32 != chunk.crc32 {
                return Err(Status::data_loss(format!(
                    "received snapshot has crc32 {crc32:#010x}, the sender's is {:#010x}",
                    chunk.crc32
                )));
            }
            file.sync_all().await.map_err(io)?;
            return Ok(header.expect("set from the first chunk"));
        }
    }
}
