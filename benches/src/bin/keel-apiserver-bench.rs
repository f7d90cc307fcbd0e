//! `keel-apiserver-bench`: the Kubernetes API pod workload (`benches/src/apiserver/`) against
//! one server. `scripts/bench-apiserver` runs it against keel's store and etcd.

use std::process::ExitCode;

use benches::apiserver::client::ApiClient;
use benches::apiserver::cpu::{cpu_seconds, micros_per_object};
use benches::apiserver::phases;
use benches::apiserver::report::ApiserverReport;
use benches::apiserver::rss::status_bytes;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "keel-apiserver-bench", about = "Create, watch and LIST pods through the Kubernetes API")]
struct Cli {
    /// The Kubernetes API, plain HTTP.
    #[arg(long, default_value = "http://127.0.0.1:6443")]
    server: String,
    /// What the report calls this run (keel, etcd).
    #[arg(long, default_value = "apiserver")]
    label: String,
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Pods created in the measured create phase.
    #[arg(long, default_value_t = 10_000)]
    creates: u64,
    /// Pods in the namespace when the LISTs run (the fill phase creates the rest).
    #[arg(long, default_value_t = 100_000)]
    pods: u64,
    /// Concurrent creating clients (one connection each).
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Watches of the namespace's pods open during the LISTs.
    #[arg(long, default_value_t = 1_000)]
    watchers: u64,
    /// Pods created per second while the LISTs run, for the watchers to deliver.
    #[arg(long, default_value_t = 10)]
    churn_per_second: u64,
    /// Whole consistent LISTs.
    #[arg(long, default_value_t = 5)]
    list_repeats: u64,
    /// Paginated consistent LISTs (every page followed).
    #[arg(long, default_value_t = 3)]
    paginated_repeats: u64,
    #[arg(long, default_value_t = 500)]
    page_size: u64,
    /// The apiserver's PID, for its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The store's PID when it is another process (etcd), for its peak RSS.
    #[arg(long)]
    store_pid: Option<u32>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

async fn run(cli: &Cli) -> Result<ApiserverReport, String> {
    let client = ApiClient::new(&cli.server, (cli.clients + cli.watchers) as usize);
    phases::ensure_namespace(&client, &cli.namespace).await?;
    let mut report = ApiserverReport { label: cli.label.clone(), ..ApiserverReport::default() };
    eprintln!("keel-apiserver-bench {}: creating {} pods", cli.label, cli.creates);
    let cpu = || (cli.server_pid.and_then(cpu_seconds), cli.store_pid.and_then(cpu_seconds));
    let (server_before, store_before) = cpu();
    report.create = phases::create_pods(&client, &cli.namespace, "pod", 0, cli.creates, cli.clients).await?;
    let (server_after, store_after) = cpu();
    report.create.server_cpu_us_per_object = micros_per_object(server_before, server_after, report.create.pods);
    report.create.store_cpu_us_per_object = micros_per_object(store_before, store_after, report.create.pods);
    let rest = cli.pods.saturating_sub(cli.creates);
    eprintln!("keel-apiserver-bench {}: filling to {} pods", cli.label, cli.pods);
    report.fill = phases::create_pods(&client, &cli.namespace, "pod", cli.creates, rest, cli.clients).await?;
    eprintln!("keel-apiserver-bench {}: opening {} watchers", cli.label, cli.watchers);
    let watchers = phases::open_watchers(&client, &cli.namespace, cli.watchers).await?;
    let (stop_churn, churn) = phases::start_churn(&client, &cli.namespace, cli.churn_per_second);
    eprintln!("keel-apiserver-bench {}: {} whole LISTs", cli.label, cli.list_repeats);
    report.list_whole = phases::list_pods(&client, &cli.namespace, cli.list_repeats, 0, cli.server_pid).await?;
    eprintln!("keel-apiserver-bench {}: {} paginated LISTs", cli.label, cli.paginated_repeats);
    report.list_paginated =
        phases::list_pods(&client, &cli.namespace, cli.paginated_repeats, cli.page_size, cli.server_pid).await?;
    let _ = stop_churn.send(true);
    let churn_creates = churn.await.map_err(|error| error.to_string())?;
    // Let the last churn events reach the watchers before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    report.watch = phases::watch_figures(&watchers, cli.watchers, churn_creates);
    watchers.stop();
    report.server_hwm_bytes = cli.server_pid.and_then(|pid| status_bytes(pid, "VmHWM:")).unwrap_or(0);
    report.store_hwm_bytes = cli.store_pid.and_then(|pid| status_bytes(pid, "VmHWM:"));
    Ok(report)
}

/// The load generator shares the two cores with the servers it measures: what it spends is
/// taken from them. glibc's malloc was a fifth of keel-bench's CPU (perf); the server's
/// allocator is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keel-apiserver-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = match runtime.block_on(run(&cli)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("keel-apiserver-bench {}: {error}", cli.label);
            return ExitCode::FAILURE;
        }
    };
    report.command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("{}", report.human());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(error) = std::fs::write(path, json + "\n") {
            eprintln!("keel-apiserver-bench: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // The watch streams must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::SUCCESS
}
