//! `keel snapshot status|restore`: read a file saved by `etcdctl snapshot save` from keel (keel's
//! snapshot format followed by etcd's sha256 trailer). etcdctl's own `snapshot status` and
//! `snapshot restore` expect etcd's bbolt files, so these are the commands to use with keel.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Checks a snapshot file (trailer and every record) and prints what it holds.
    Status { file: PathBuf },
    /// Builds a member's data dir from a snapshot file; start the member afterwards with its
    /// new-cluster flags (`--initial-cluster`, `--initial-cluster-state new`).
    Restore {
        file: PathBuf,
        #[arg(long, default_value = "./keel-data")]
        data_dir: PathBuf,
        /// Accept a file without a sha256 trailer (a copy of a member's own snapshot file).
        #[arg(long)]
        skip_hash_check: bool,
    },
}

const TRAILER_BYTES: u64 = 32;

pub fn run(command: SnapshotCommand) -> Result<(), String> {
    match command {
        SnapshotCommand::Status { file } => {
            let body = strip_trailer(&file, false)?;
            let summary =
                store::Store::verify_snapshot(&body.path).map_err(|error| format!("{}: {error}", file.display()))?;
            println!(
                "{}: {} records, {} bytes, checksum {:#010x}",
                file.display(),
                summary.records,
                summary.bytes,
                summary.checksum
            );
            Ok(())
        }
        SnapshotCommand::Restore { file, data_dir, skip_hash_check } => {
            let body = strip_trailer(&file, skip_hash_check)?;
            let summary = raft::restore_snapshot(&body.path, &data_dir)
                .map_err(|error| format!("keel snapshot restore: {error}"))?;
            println!("restored {} records from {} into {}", summary.records, file.display(), data_dir.display());
            Ok(())
        }
    }
}

/// The snapshot without its trailer, as a temporary file beside the input.
struct Body {
    path: PathBuf,
    temporary: bool,
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn strip_trailer(file: &Path, skip_hash_check: bool) -> Result<Body, String> {
    let failed = |error: std::io::Error| format!("{}: {error}", file.display());
    let mut input = std::fs::File::open(file).map_err(failed)?;
    let size = input.metadata().map_err(failed)?.len();
    if size < TRAILER_BYTES {
        return Err(format!("{}: too short to be a snapshot", file.display()));
    }
    let path = file.with_extension(format!("body-{}", std::process::id()));
    let mut body = Body { path, temporary: true };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&body.path).map_err(failed)?);
    let mut hasher = Sha256::new();
    let mut left = size - TRAILER_BYTES;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buffer.len().min(left as usize);
        input.read_exact(&mut buffer[..want]).map_err(failed)?;
        hasher.update(&buffer[..want]);
        out.write_all(&buffer[..want]).map_err(failed)?;
        left -= want as u64;
    }
    out.flush().map_err(failed)?;
    let mut trailer = [0u8; TRAILER_BYTES as usize];
    input.read_exact(&mut trailer).map_err(failed)?;
    if hasher.finalize().as_slice() != trailer {
        if !skip_hash_check {
            return Err(format!(
                "{}: the sha256 trailer does not match (a corrupt file, or one without a trailer: --skip-hash-check)",
                file.display()
            ));
        }
        // No trailer: the whole file is the snapshot.
        drop(body);
        body = Body { path: file.to_path_buf(), temporary: false };
    }
    Ok(body)
}
