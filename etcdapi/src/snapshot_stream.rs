//! Maintenance.Snapshot: a consistent copy of the store in keel's snapshot format, streamed in
//! chunks and followed, as etcd does, by the sha256 of everything before it (32 bytes), so a
//! saved file carries its own integrity check (the body is zero-padded to whole 512-byte
//! blocks, where etcdctl looks for the trailer). `keel snapshot restore` reads it back.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::proto::PbSnapshotResponse;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Status;

use crate::Context;

const CHUNK_BYTES: usize = 32 * 1024;
const SNAPSHOT_BLOCK_BYTES: u64 = 512;
/// Chunks buffered ahead of a slow client.
const CHUNKS_AHEAD: usize = 16;

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(0);

/// Starts writing the snapshot on a blocking thread; the receiver yields the stream's messages.
pub fn start(context: &Context) -> mpsc::Receiver<Result<PbSnapshotResponse, Status>> {
    let (sender, receiver) = mpsc::channel(CHUNKS_AHEAD);
    let store = context.member.store().clone();
    let header = context.header(store.revision());
    let scratch_dir = context.member.config.data_dir.join("tmp");
    tokio::task::spawn_blocking(move || {
        let number = NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed);
        let copy_dir = scratch_dir.join(format!("snapshot-copy-{number}"));
        let file = scratch_dir.join(format!("snapshot-{number}"));
        let result = write_file(&store, &copy_dir, &file).and_then(|()| stream_file(&file, header, &sender));
        if let Err(status) = result {
            let _ = sender.blocking_send(Err(status));
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir_all(&copy_dir);
    });
    receiver
}

fn internal(what: &str, error: impl std::fmt::Display) -> Status {
    Status::internal(format!("etcdserver: snapshot {what}: {error}"))
}

fn write_file(store: &store::Store, copy_dir: &Path, file: &Path) -> Result<(), Status> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|error| internal("scratch dir", error))?;
    }
    let copy = store.snapshot(copy_dir).map_err(|error| internal("copy", error))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(|error| internal("file", error))?);
    copy.write_to(&mut out).map_err(|error| internal("write", error))?;
    out.into_inner().map_err(|error| internal("write", error.error()))?;
    Ok(())
}

fn stream_file(
    file: &Path,
    header: Option<etcd_client::proto::PbResponseHeader>,
    sender: &mpsc::Sender<Result<PbSnapshotResponse, Status>>,
) -> Result<(), Status> {
    let mut input = std::fs::File::open(file).map_err(|error| internal("read", error))?;
    let size = input.metadata().map_err(|error| internal("read", error))?.len();
    // etcdctl finds the trailer only in a file of whole 512-byte blocks plus 32 bytes (bbolt's
    // pages): pad the snapshot with zeros, which keel's reader ignores after the end record.
    let padded = size.div_ceil(SNAPSHOT_BLOCK_BYTES) * SNAPSHOT_BLOCK_BYTES;
    let total = padded + 32;
    let mut sent = 0u64;
    let mut hasher = Sha256::new();
    loop {
        let mut blob = vec![0u8; CHUNK_BYTES];
        let read = input.read(&mut blob).map_err(|error| internal("read", error))?;
        if read == 0 {
            break;
        }
        blob.truncate(read);
        hasher.update(&blob);
        sent += read as u64;
        let message = PbSnapshotResponse {
            header,
            remaining_bytes: total - sent,
            blob,
            version: crate::EMULATED_ETCD_VERSION.to_string(),
        };
        if sender.blocking_send(Ok(message)).is_err() {
            return Ok(()); // The client went away.
        }
    }
    let padding = vec![0u8; (padded - size) as usize];
    hasher.update(&padding);
    let message = PbSnapshotResponse {
        header,
        remaining_bytes: 32,
        blob: padding,
        version: crate::EMULATED_ETCD_VERSION.to_string(),
    };
    if sender.blocking_send(Ok(message)).is_err() {
        return Ok(());
    }
    let trailer = hasher.finalize().to_vec();
    let _ = sender.blocking_send(Ok(PbSnapshotResponse {
        header,
        remaining_bytes: 0,
        blob: trailer,
        version: crate::EMULATED_ETCD_VERSION.to_string(),
    }));
    Ok(())
}
