//! `keel`: one binary, one subcommand per control-plane part (see ARCHITECTURE.md).

use std::net::SocketAddr;
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
    /// Store replica + apiserver + control loops: a whole single-node cluster. For now the
    /// store replica with its etcd API; the Kubernetes API arrives with issue 8.
    Server(StoreArgs),
    /// A store replica serving etcd's v3 gRPC API; flags are etcd's.
    Store(StoreArgs),
    /// Opens a store data directory, checks it, and prints its revisions and hash.
    Inspect(DataDir),
}

#[derive(Debug, clap::Args)]
struct DataDir {
    /// Where the member keeps its data.
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
}

/// etcd's flags, so an etcd launch line works with only the binary name changed.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    #[arg(long, default_value = "default")]
    name: String,
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    advertise_client_urls: String,
    #[arg(long)]
    listen_peer_urls: Option<String>,
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    #[arg(long)]
    initial_cluster: Option<String>,
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    #[arg(long)]
    initial_cluster_token: Option<String>,
    /// Milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            eprintln!("keel server: the Kubernetes API is not implemented yet (issue 8); serving the store's etcd API");
            run_store(args)
        }
        Command::Store(args) => run_store(args),
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

/// `http://host:port` (or `host:port`) to a socket address.
fn socket_address(url: &str) -> Result<SocketAddr, String> {
    let authority = url.trim().trim_start_matches("http://");
    if url.starts_with("https://") {
        return Err(format!("{url}: TLS is not implemented yet"));
    }
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .map_err(|error| format!("{url}: {error}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))
}

fn run_store(args: StoreArgs) -> Result<(), String> {
    if args.initial_cluster.as_deref().is_some_and(|cluster| cluster.contains(',')) {
        return Err(
            "keel store: multi-member clusters are not implemented yet (issue 3): the peer transport is missing".into(),
        );
    }
    if args.initial_cluster_state != "new" {
        return Err("keel store: --initial-cluster-state existing is not implemented yet (issue 3)".into());
    }
    let urls: Vec<&str> = args.listen_client_urls.split(',').collect();
    if urls.len() > 1 {
        return Err("keel store: more than one --listen-client-urls is not implemented yet".into());
    }
    let address = socket_address(urls[0])?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| error.to_string())?;
    runtime.block_on(async move {
        let mut config = raft::MemberConfig::new(&args.name, args.data_dir.clone());
        config.heartbeat_interval_ms = args.heartbeat_interval;
        config.election_timeout_ms = args.election_timeout;
        config.snapshot_count = args.snapshot_count;
        config.store.max_txn_ops = args.max_txn_ops;
        let store = raft::Member::open_store(&config).map_err(|error| format!("keel store: {error}"))?;
        let hub = Arc::new(watch::WatchHub::new(store.clone(), watch::WatchOptions::default()));
        let listener: Arc<dyn raft::ChangeListener> = Arc::new(etcdapi::HubListener(hub.clone()));
        let member = raft::Member::start_single(config, store, Some(listener))
            .await
            .map_err(|error| format!("keel store: {error}"))?;
        eprintln!(
            "keel store: member {} serving the etcd v3 API on {address} (data in {})",
            args.name,
            args.data_dir.display()
        );
        let client_urls = args.advertise_client_urls.split(',').map(str::to_string).collect();
        let context = etcdapi::Context::new(member.clone(), hub, client_urls);
        // SIGINT or SIGTERM stop the member cleanly; SIGKILL is what the crash tests use.
        let shutdown = async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install the SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        let served = etcdapi::serve(context, address, shutdown).await;
        let _ = member.shutdown().await;
        served.map_err(|error| format!("keel store: serving {address}: {error}"))
    })
}
