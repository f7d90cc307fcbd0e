//! `keel`: one binary, one subcommand per control-plane part (see ARCHITECTURE.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "Kubernetes' control plane, rebuilt storage-first")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store replica + apiserver + control loops: a whole single-node cluster.
    Server(DataDir),
    /// A store replica alone, serving the etcd v3 gRPC API.
    Store(DataDir),
    /// Opens a store data directory, checks it, and prints its revisions and hash.
    Inspect(DataDir),
}

#[derive(Debug, clap::Args)]
struct DataDir {
    /// Where the member keeps its data.
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => open_then_not_implemented(
            &args,
            "keel server",
            "the etcd v3 API (issues 3, 5) and the Kubernetes API (issue 8)",
        ),
        Command::Store(args) => {
            open_then_not_implemented(&args, "keel store", "Raft replication and the etcd v3 API (issues 3, 5)")
        }
        Command::Inspect(args) => inspect(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn open_store(args: &DataDir) -> Result<store::Store, String> {
    let path = args.data_dir.join("store");
    std::fs::create_dir_all(&path).map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    let engine = store::RocksEngine::open(&path, &store::RocksOptions::default())
        .map_err(|error| format!("cannot open the store in {}: {error}", path.display()))?;
    store::Store::open(Arc::new(engine), store::StoreOptions::default())
        .map_err(|error| format!("cannot open the store in {}: {error}", path.display()))
}

fn inspect(args: &DataDir) -> Result<(), String> {
    let store = open_store(args)?;
    let hash = store.hash_kv(0).map_err(|error| format!("hashing the store failed: {error}"))?;
    println!(
        "data dir {}: revision {}, compact revision {}, hash {:#010x}, {} bytes",
        args.data_dir.display(),
        store.revision(),
        store.compact_revision(),
        hash.hash,
        store.size_bytes()
    );
    Ok(())
}

/// The store opens (and recovers) for real; serving comes with later issues, and says so.
fn open_then_not_implemented(args: &DataDir, what: &str, missing: &str) -> Result<(), String> {
    let store = open_store(args)?;
    eprintln!("{what}: store in {} opened at revision {}", args.data_dir.display(), store.revision());
    Err(format!("{what}: not implemented yet: {missing}"))
}
