//! `keel-bench`: see `benches/src/lib.rs` and `keel-bench --help`.

use std::process::ExitCode;

use benches::cli::Cli;
use clap::Parser;

/// The load generator shares the two cores with the servers it measures: what it spends is
/// taken from them. glibc's malloc was a fifth of keel-bench's CPU (perf); the server's
/// allocator is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = match cli.common.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keel-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = match runtime.block_on(benches::workloads::run(&cli)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("keel-bench {}: {error}", cli.workload.name());
            return ExitCode::FAILURE;
        }
    };
    report.command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("{}", report.human());
    if let Some(path) = &cli.common.json {
        let json = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(error) = std::fs::write(path, json + "\n") {
            eprintln!("keel-bench: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // Stray streams (watch, keep-alive) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::SUCCESS
}
