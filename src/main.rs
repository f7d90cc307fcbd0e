//! `keel`: one binary, one subcommand per control-plane part (see ARCHITECTURE.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod malloc_tunables;
mod member_command;
mod snapshot_command;

#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "Kubernetes' control plane, rebuilt storage-first")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store replica + apiserver + control loops: a whole control plane in one process. The
    /// store member with its etcd API, the Kubernetes API (plain HTTP) over the local replica,
    /// and the namespace and garbage-collector controllers; several members form a cluster with
    /// `keel store`'s `--initial-cluster` flags, and only the holder of the controller-manager's
    /// Lease runs the controllers. Scheduler and node agent follow.
    Server(ServerArgs),
    /// A store replica serving etcd's v3 gRPC API; flags are etcd's.
    Store(StoreArgs),
    /// Opens a store data directory, checks it, and prints its revisions and hash.
    Inspect(DataDir),
    /// Cluster membership through any member's etcd API (as `etcdctl member`).
    Member(member_command::MemberArgs),
    /// Snapshot files saved with `etcdctl snapshot save`: status and restore.
    #[command(subcommand)]
    Snapshot(snapshot_command::SnapshotCommand),
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
    #[arg(long, default_value = "http://localhost:2380")]
    listen_peer_urls: String,
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// `name=peer-url,...`; by default this member alone (`--name`=`--initial-advertise-peer-urls`).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` bootstraps from --initial-cluster; `existing` joins a running cluster that already
    /// lists this member (after `etcdctl member add`).
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Commands applied between snapshots (after which the Raft log is purged); etcd's default.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Largest write accepted, in bytes (etcd's default 1.5 MiB).
    #[arg(long, default_value_t = etcdapi::MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// Seconds an auth token stays valid (etcd's `--auth-token-ttl`).
    #[arg(long, default_value_t = 300)]
    auth_token_ttl: u64,
    /// bcrypt cost for hashing auth passwords (etcd's `--bcrypt-cost`, 4 to 31).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// `periodic` (keep a time window) or `revision` (keep a number of revisions).
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// The window (`1h`, `30m`; a bare number is hours) or the revision count; 0 is off.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// Record leases' remaining TTLs, so a new leader does not restart them at full TTL.
    #[arg(long, default_value_t = false)]
    experimental_enable_lease_checkpoint: bool,
    /// How often the leader records remaining lease TTLs, as a Go duration (`5m`, `30s`).
    #[arg(long, default_value = "5m")]
    experimental_lease_checkpoint_interval: String,
    /// Unsafe, hidden: serve linearizable reads locally (proves the Jepsen checker finds stale reads).
    #[arg(long, hide = true)]
    unsafe_local_reads: bool,
    /// Refuse writes past this store size (etcd's NOSPACE alarm); 0 is no quota.
    #[arg(long, default_value_t = 0)]
    quota_backend_bytes: u64,
    /// The client URL's TLS certificate (PEM); an https client URL needs it and --key-file.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The CA (PEM) that clients' certificates must be signed by, with --client-cert-auth.
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// Require clients on the client URL to present a certificate signed by --trusted-ca-file.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    client_cert_auth: bool,
    /// The peer URL's TLS certificate (PEM), also this member's identity towards https peers.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// The key of --peer-cert-file (PEM).
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// The CA (PEM) that signed the members' peer certificates: servers are checked against it,
    /// and with --peer-client-cert-auth, so are the members calling this one.
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Require members calling this one to present a certificate signed by --peer-trusted-ca-file.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    peer_client_cert_auth: bool,
}

impl StoreArgs {
    fn auth_options(&self) -> etcdapi::AuthOptions {
        etcdapi::AuthOptions {
            token_ttl: std::time::Duration::from_secs(self.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost,
        }
    }
}

/// Log lines go to standard error; `KEEL_LOG` filters them as `RUST_LOG` does for other tools
/// (`KEEL_LOG=info`, `KEEL_LOG=raft=debug,warn`); warnings and errors by default.
fn install_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `keel server`'s store block cache: 16 MiB instead of 64. With 100k pods, the 64 MiB one
/// filled with blocks that creates' version seeks had read, 40-60 MiB that the watch cache
/// already holds in another form (BENCHMARKS.md, apiserver memory).
const SERVER_BLOCK_CACHE_BYTES: usize = 16 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Server(_) | Command::Store(_)) {
        malloc_tunables::apply();
    }
    install_logging();
    let _failpoints = install_failpoints();
    let result = match cli.command {
        Command::Server(args) => run_server(args),
        Command::Store(args) => run_store(args),
        Command::Inspect(args) => inspect(&args),
        Command::Member(args) => member_command::run(args),
        Command::Snapshot(command) => snapshot_command::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// With the `failpoints` feature, `FAILPOINTS=name=action;...` arms crash points (the `fail`
/// crate's syntax), and a panic anywhere aborts the process, as a crash would.
#[cfg(feature = "failpoints")]
fn install_failpoints() -> Option<fail::FailScenario<'static>> {
    if std::env::var_os("FAILPOINTS").is_none_or(|value| value.is_empty()) {
        return None;
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("keel: {info}; aborting (failpoint crash)");
        std::process::abort();
    }));
    Some(fail::FailScenario::setup())
}

#[cfg(not(feature = "failpoints"))]
fn install_failpoints() -> Option<()> {
    None
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

/// `http://host:port`, `https://host:port` (or `host:port`) to a socket address.
fn socket_address(url: &str) -> Result<SocketAddr, String> {
    let url = url.trim();
    let authority = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .map_err(|error| format!("{url}: {error}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))
}

fn is_https(url: &str) -> bool {
    url.trim().starts_with("https://")
}

/// TLS for the client URL, from `--cert-file`, `--key-file`, `--trusted-ca-file` and
/// `--client-cert-auth`: only for an `https://` URL (etcd ignores the files for http ones).
fn client_tls(args: &StoreArgs, url: &str) -> Result<Option<raft::TlsConfig>, String> {
    if !is_https(url) {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&args.cert_file, &args.key_file) else {
        return Err(format!("--listen-client-urls {url}: https needs --cert-file and --key-file"));
    };
    let tls = raft::TlsConfig::load("", cert_file, key_file, args.trusted_ca_file.as_deref(), args.client_cert_auth)?;
    Ok(Some(tls))
}

/// TLS between members, from the `--peer-` flags: needed as soon as a peer URL is `https://`,
/// both to serve (certificate and key) and to call the other members (which are checked
/// against `--peer-trusted-ca-file`).
fn peer_tls(args: &StoreArgs, config: &raft::MemberConfig) -> Result<Option<raft::TlsConfig>, String> {
    let https_peers = config.listen_peer_tls
        || config
            .peer_urls
            .iter()
            .chain(config.initial_cluster.iter().flat_map(|(_, urls)| urls))
            .any(|url| is_https(url));
    match (&args.peer_cert_file, &args.peer_key_file) {
        (Some(cert_file), Some(key_file)) => {
            if https_peers && args.peer_trusted_ca_file.is_none() {
                return Err(
                    "https peer URLs need --peer-trusted-ca-file (the CA that signed the members' peer certificates)"
                        .into(),
                );
            }
            let tls = raft::TlsConfig::load(
                "peer-",
                cert_file,
                key_file,
                args.peer_trusted_ca_file.as_deref(),
                args.peer_client_cert_auth,
            )?;
            Ok(Some(tls))
        }
        _ if https_peers => Err("https peer URLs need --peer-cert-file and --peer-key-file".into()),
        _ => Ok(None),
    }
}

fn url_list(flag: &str, value: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = value.split(',').map(|url| url.trim().to_string()).filter(|url| !url.is_empty()).collect();
    if urls.is_empty() {
        return Err(format!("--{flag}: no URL given"));
    }
    for url in &urls {
        socket_address(url).map_err(|error| format!("--{flag}: {error}"))?;
    }
    Ok(urls)
}

/// etcd's `--initial-cluster`: `name=url,name=url2,other=url3` (a name may repeat for more URLs).
fn parse_initial_cluster(value: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let Some((name, url)) = entry.split_once('=') else {
            return Err(format!("--initial-cluster: {entry:?} is not name=URL"));
        };
        socket_address(url).map_err(|error| format!("--initial-cluster: {error}"))?;
        match members.iter_mut().find(|(known, _)| known == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster: no member given".into());
    }
    Ok(members)
}

/// A Go duration as etcd's flags take them: `1h2m3s`, `500ms`, `30s`.
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 5m, 30s or 500ms");
    let mut total = std::time::Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "h" => std::time::Duration::from_secs(3600),
            "m" => std::time::Duration::from_secs(60),
            "s" => std::time::Duration::from_secs(1),
            "ms" => std::time::Duration::from_millis(1),
            _ => return Err(invalid()),
        };
        total += unit * number as u32;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// etcd's auto-compaction flags; a retention of 0 turns it off.
fn auto_compaction(mode: &str, retention: &str) -> Result<Option<raft::AutoCompaction>, String> {
    let retention = retention.trim();
    match mode {
        "revision" => {
            let keep: i64 = retention
                .parse()
                .map_err(|_| format!("--auto-compaction-retention: {retention:?} is not a revision count"))?;
            Ok((keep > 0).then_some(raft::AutoCompaction::Revisions(keep)))
        }
        "periodic" => {
            let window = match retention.parse::<u64>() {
                Ok(hours) => std::time::Duration::from_secs(hours * 3600),
                Err(_) => go_duration(retention).map_err(|error| format!("--auto-compaction-retention: {error}"))?,
            };
            Ok((!window.is_zero()).then_some(raft::AutoCompaction::Window(window)))
        }
        other => Err(format!("--auto-compaction-mode: {other:?} is neither periodic nor revision")),
    }
}

fn member_config(args: &StoreArgs) -> Result<raft::MemberConfig, String> {
    let mut config = raft::MemberConfig::new(&args.name, args.data_dir.clone());
    config.peer_urls = url_list("initial-advertise-peer-urls", &args.initial_advertise_peer_urls)?;
    let listen_peer = url_list("listen-peer-urls", &args.listen_peer_urls)?;
    if listen_peer.len() > 1 {
        return Err("keel store: more than one --listen-peer-urls is not implemented yet".into());
    }
    config.listen_peer = Some(socket_address(&listen_peer[0])?);
    config.listen_peer_tls = is_https(&listen_peer[0]);
    config.client_urls = url_list("advertise-client-urls", &args.advertise_client_urls)?;
    config.initial_cluster = match &args.initial_cluster {
        Some(cluster) => parse_initial_cluster(cluster)?,
        None => vec![(args.name.clone(), config.peer_urls.clone())],
    };
    config.cluster_state = match args.initial_cluster_state.as_str() {
        "new" => raft::ClusterState::New,
        "existing" => raft::ClusterState::Existing,
        other => return Err(format!("--initial-cluster-state: {other:?} is neither new nor existing")),
    };
    config.cluster_token = args.initial_cluster_token.clone();
    config.heartbeat_interval_ms = args.heartbeat_interval;
    config.election_timeout_ms = args.election_timeout;
    if args.election_timeout < 5 * args.heartbeat_interval {
        return Err("--election-timeout must be at least 5 times --heartbeat-interval".into());
    }
    config.snapshot_count = args.snapshot_count;
    config.quota_backend_bytes = args.quota_backend_bytes;
    config.unsafe_local_reads = args.unsafe_local_reads;
    if args.unsafe_local_reads {
        eprintln!("keel store: --unsafe-local-reads: linearizable reads are NOT linearizable (testing only)");
    }
    config.auto_compaction = auto_compaction(&args.auto_compaction_mode, &args.auto_compaction_retention)?;
    if args.experimental_enable_lease_checkpoint {
        config.lease_checkpoint_interval = Some(go_duration(&args.experimental_lease_checkpoint_interval)?);
    }
    config.store.max_txn_ops = args.max_txn_ops;
    config.peer_tls = peer_tls(args, &config)?;
    Ok(config)
}

fn run_store(args: StoreArgs) -> Result<(), String> {
    let urls = url_list("listen-client-urls", &args.listen_client_urls)?;
    if urls.len() > 1 {
        return Err("keel store: more than one --listen-client-urls is not implemented yet".into());
    }
    let address = socket_address(&urls[0])?;
    let tls = client_tls(&args, &urls[0])?;
    let config = member_config(&args)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| error.to_string())?;
    runtime.block_on(async move {
        let store = raft::Member::open_store(&config).map_err(|error| format!("keel store: {error}"))?;
        let hub = Arc::new(watch::WatchHub::new(store.clone(), watch::WatchOptions::default()));
        let listener: Arc<dyn raft::ChangeListener> = Arc::new(etcdapi::HubListener(hub.clone()));
        let member =
            raft::Member::start(config, store, Some(listener)).await.map_err(|error| format!("keel store: {error}"))?;
        eprintln!(
            "keel store: member {} ({:x}) serving the etcd v3 API on {address}{} (data in {})",
            args.name,
            member.config.id,
            if tls.is_some() { " over TLS" } else { "" },
            args.data_dir.display()
        );
        let context = etcdapi::Context::with_options(member.clone(), hub, args.max_request_bytes, args.auth_options());
        // SIGINT or SIGTERM stop the member cleanly (a leader hands over first); SIGKILL is
        // what the crash tests use. A member removed from the cluster exits, as etcd's does.
        let removed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = {
            let member = member.clone();
            let removed = removed.clone();
            async move {
                let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install the SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                    _ = member.removed() => {
                        tracing::warn!("this member was removed from the cluster; stopping");
                        removed.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                }
            }
        };
        let served = etcdapi::serve(context, address, tls, shutdown).await;
        tracing::info!("the etcd API stopped serving; stopping the member");
        let _ = member.shutdown().await;
        tracing::info!("the member stopped");
        if removed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("keel store: the member has been permanently removed from the cluster".into());
        }
        served.map_err(|error| format!("keel store: serving {address}: {error}"))
    })
}

/// `keel server`: the store's flags, plus kube-apiserver's for the Kubernetes API.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The address the Kubernetes API listens on (kube-apiserver's flag).
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,
    /// The Kubernetes API's port (kube-apiserver's flag). Plain HTTP until TLS arrives.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Where the admin kubeconfig is written; default DATA_DIR/kubeconfig.yaml.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// How often the apiserver compacts the store (to the revision of one interval ago); 0 never.
    #[arg(long, default_value = "5m")]
    etcd_compaction_interval: String,
    /// An external etcd for the apiserver instead of keel's own store (kube-apiserver's flag):
    /// comma-separated http:// or https:// URLs. keel then starts no store or etcd API of its
    /// own, and the store flags (--listen-client-urls, ...) are unused.
    #[arg(long)]
    etcd_servers: Option<String>,
    /// With https:// --etcd-servers: the CA that signed etcd's serving certificate (PEM).
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// With https:// --etcd-servers: the client certificate keel presents to etcd (PEM), for an
    /// etcd run with --client-cert-auth; with --etcd-keyfile.
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    /// The private key of --etcd-certfile (PEM).
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
    /// Run the control loops (namespace lifecycle, garbage collector) as clients of this
    /// server's API; `--controllers=false` runs the API alone (namespaces then stay Terminating
    /// and dependents are never collected, as without kube-controller-manager).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,
    /// The range Services' cluster IPs come from (kube-apiserver's flag): one IPv4 or IPv6 CIDR
    /// with at most 20 host bits. Its first address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// The range NodePort and LoadBalancer Services' node ports come from (kube-apiserver's
    /// flag): `30000-32767`, `30000+2767` or one port.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// The address the `kubernetes` Service's endpoints give in-cluster clients to reach this
    /// API at (kube-apiserver's flag); default: this machine's first non-loopback IPv4 address.
    /// A loopback address is refused: every client would reach itself.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
}

/// `--advertise-address`, or this machine's first non-loopback, non-link-local IPv4 address.
fn advertise_address(flag: Option<std::net::IpAddr>) -> Result<std::net::IpAddr, String> {
    let address = match flag {
        Some(address) => address,
        None => {
            let interfaces = nix::ifaddrs::getifaddrs()
                .map_err(|error| format!("--advertise-address: listing this machine's addresses failed: {error}"))?;
            let found = interfaces
                .filter_map(|interface| {
                    interface.address.and_then(|address| address.as_sockaddr_in().map(|v4| v4.ip()))
                })
                .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified());
            match found {
                Some(ip) => std::net::IpAddr::V4(ip),
                None => {
                    return Err("--advertise-address: this machine has no non-loopback IPv4 address; give the address \
                                other hosts reach this server on"
                        .into())
                }
            }
        }
    };
    if address.is_loopback() {
        return Err(format!(
            "--advertise-address {address} is a loopback address: the kubernetes Service's endpoints would send \
             every in-cluster client to itself; give the address other hosts reach this server on"
        ));
    }
    if address.is_unspecified() || address.is_multicast() {
        return Err(format!("--advertise-address {address} is not an address a client can reach a server on"));
    }
    Ok(address)
}

/// The address this process reaches a listener on: the listener's, or loopback for a wildcard.
fn loopback(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], address.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port()))
        }
        _ => address,
    }
}

fn run_server(args: ServerArgs) -> Result<(), String> {
    let urls = url_list("listen-client-urls", &args.store.listen_client_urls)?;
    let etcd_address = socket_address(&urls[0])?;
    let etcd_tls = client_tls(&args.store, &urls[0])?;
    let mut config = member_config(&args.store)?;
    config.block_cache_bytes = SERVER_BLOCK_CACHE_BYTES;
    let mut api_config = apiserver::ServerConfig::new(
        args.write_kubeconfig.clone().unwrap_or_else(|| args.store.data_dir.join("kubeconfig.yaml")),
    );
    api_config.bind_address = args.bind_address;
    api_config.port = args.secure_port;
    api_config.compaction_interval = match args.etcd_compaction_interval.as_str() {
        "0" => std::time::Duration::ZERO,
        text => go_duration(text).map_err(|error| format!("--etcd-compaction-interval: {error}"))?,
    };
    api_config.service_network = apiserver::ServiceNetwork {
        cidr: apiserver::ServiceCidr::parse(&args.service_cluster_ip_range)
            .map_err(|error| format!("keel server: --service-cluster-ip-range: {error}"))?,
        node_ports: apiserver::PortRange::parse(&args.service_node_port_range)
            .map_err(|error| format!("keel server: --service-node-port-range: {error}"))?,
    };
    api_config.advertise_address =
        Some(advertise_address(args.advertise_address).map_err(|error| format!("keel server: {error}"))?);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| error.to_string())?;
    if args.etcd_servers.is_none() && external_etcd_tls(&args)?.is_some() {
        return Err("keel server: --etcd-cafile, --etcd-certfile and --etcd-keyfile need --etcd-servers".into());
    }
    if let Some(servers) = args.etcd_servers.clone() {
        let identity = args.controllers.then(|| controllers::leader_election::unique_identity(&args.store.name));
        let tls = external_etcd_tls(&args)?;
        return runtime.block_on(serve_over_etcd(servers, tls, api_config, identity));
    }
    runtime.block_on(async move {
        let mut api_config = api_config;
        let store = raft::Member::open_store(&config).map_err(|error| format!("keel server: {error}"))?;
        let hub = Arc::new(watch::WatchHub::new(store.clone(), watch::WatchOptions::default()));
        let listener: Arc<dyn raft::ChangeListener> = Arc::new(etcdapi::HubListener(hub.clone()));
        let member = raft::Member::start(config, store, Some(listener))
            .await
            .map_err(|error| format!("keel server: {error}"))?;
        // Members of one cluster would each put their own address in the kubernetes Service's
        // endpoints forever: the store's leader alone keeps them.
        let leader = member.clone();
        api_config.kubernetes_service_gate = Some(apiserver::ReconcileGate::new(move || leader.is_leader()));
        let storage = Arc::new(apiserver::NativeStorage::new(member.clone(), hub.clone()));
        let api =
            apiserver::Server::start(api_config, storage).await.map_err(|error| format!("keel server: {error}"))?;
        eprintln!(
            "keel server: etcd v3 API on {etcd_address}, Kubernetes API on http://{} (plain HTTP), data in {}\n\
             keel server: admin kubeconfig: {}",
            api.local_addr(),
            args.store.data_dir.display(),
            api.kubeconfig_path().display()
        );
        // SIGINT or SIGTERM stop the controllers, both APIs, then the member.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let context = etcdapi::Context::with_options(
            member.clone(),
            hub,
            args.store.max_request_bytes,
            args.store.auth_options(),
        );
        let etcd = tokio::spawn(etcdapi::serve(context, etcd_address, etcd_tls, until_stopped()));
        let api_address = loopback(api.local_addr());
        let kubernetes = tokio::spawn(api.serve(until_stopped()));
        // Of a cluster's members, only the holder of the controller-manager's Lease runs the
        // controllers; the member's id is unique in the cluster and held by one process at a time.
        let identity = args.controllers.then(|| format!("{}_{:016x}", args.store.name, member.config.id));
        let controllers = Controllers::start(api_address, identity)?;
        until_signalled().await?;
        controllers.stop().await?;
        let _ = stop.send(true);
        let etcd = etcd.await.map_err(|error| error.to_string())?;
        let kubernetes = kubernetes.await.map_err(|error| error.to_string())?;
        let _ = member.shutdown().await;
        etcd.map_err(|error| format!("keel server: serving {etcd_address}: {error}"))?;
        kubernetes.map_err(|error| format!("keel server: {error}"))
    })
}

/// `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`: None when none is given.
fn external_etcd_tls(args: &ServerArgs) -> Result<Option<apiserver::EtcdTls>, String> {
    match (&args.etcd_cafile, &args.etcd_certfile, &args.etcd_keyfile) {
        (None, None, None) => Ok(None),
        (None, _, _) => Err("keel server: --etcd-certfile and --etcd-keyfile need --etcd-cafile".into()),
        (Some(ca_file), cert_file, key_file) => Ok(Some(apiserver::EtcdTls {
            ca_file: ca_file.clone(),
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        })),
    }
}

/// `keel server --etcd-servers`: the Kubernetes API (and the controllers) over an external etcd,
/// as kube-apiserver runs. keel starts no store, no Raft member and no etcd API of its own: the
/// data belongs to that etcd, and clients of the etcd API talk to it directly. Several servers
/// may share one etcd; the holder of the controller-manager's Lease runs the controllers
/// (`controller_identity`, None: `--controllers=false`).
async fn serve_over_etcd(
    servers: String,
    tls: Option<apiserver::EtcdTls>,
    api_config: apiserver::ServerConfig,
    controller_identity: Option<String>,
) -> Result<(), String> {
    let storage = apiserver::EtcdStorage::connect(&servers, tls.as_ref())
        .await
        .map_err(|error| format!("keel server: --etcd-servers={servers}: {error}"))?;
    let api = apiserver::Server::start(api_config, Arc::new(storage))
        .await
        .map_err(|error| format!("keel server: {error}"))?;
    eprintln!(
        "keel server: Kubernetes API on http://{} (plain HTTP) over etcd at {servers}\n\
         keel server: admin kubeconfig: {}",
        api.local_addr(),
        api.kubeconfig_path().display()
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let api_address = loopback(api.local_addr());
    let kubernetes = tokio::spawn(api.serve(until_stopped()));
    let controllers = Controllers::start(api_address, controller_identity)?;
    until_signalled().await?;
    controllers.stop().await?;
    let _ = stop.send(true);
    let kubernetes = kubernetes.await.map_err(|error| error.to_string())?;
    kubernetes.map_err(|error| format!("keel server: {error}"))
}

/// The control loops, as clients of this server's API under the controller-manager's leader
/// election (`identity`: the Lease candidate; None runs none, `--controllers=false`).
struct Controllers {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Controllers {
    /// Starts them against the API at `api_address`, whose listener is bound already.
    fn start(api_address: SocketAddr, identity: Option<String>) -> Result<Controllers, String> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = match identity {
            Some(identity) => {
                let client =
                    controllers::loopback_client(api_address).map_err(|error| format!("keel server: {error}"))?;
                let mut stopped = stopped;
                let until_stopped = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                Some(tokio::spawn(controllers::run_with_leader_election(client, identity, until_stopped)))
            }
            None => None,
        };
        Ok(Controllers { stop, task })
    }

    /// Stops them and waits: before the API stops, so that they can still release the Lease
    /// through it.
    async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        match self.task {
            Some(task) => task.await.map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }
}

/// Until SIGINT or SIGTERM.
async fn until_signalled() -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| format!("keel server: {error}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
