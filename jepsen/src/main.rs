//! `jepsen`: runs a Jepsen-style test against a keel or etcd cluster on this machine and checks
//! the history it records. See JEPSEN.md for what each part does and the runs so far.
//!
//! ```text
//! cargo run -p jepsen --release -- --target keel --nodes 3 --workload register \
//!     --faults partition,kill,pause --time-limit 60 --seed 1
//! ```
//!
//! A run: set up the network (namespaces or proxies), start the members, run the workload's
//! clients while the nemesis injects faults for `--time-limit` seconds, heal everything, let the
//! clients run `--quiet` more seconds, stop them and do the workload's final reads, then check the
//! history and the cluster. One `VERDICT` line per check; the exit code is 1 if any check failed,
//! 2 if the run itself could not be carried out, 130 after Ctrl-C. Everything created is torn
//! down at exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use jepsen::history::History;
use jepsen::lazyfs;
use tokio::sync::Mutex;

mod checks;
mod client;
mod cluster;
mod faults;
mod net;
mod proxy;
mod recorder;
mod report;
mod teardown;
mod workloads;

use cluster::{Cluster, Target};
use faults::{FaultKind, Nemesis, Schedule};
use net::{Net, NetMode};
use recorder::{Clock, Recorder};
use report::{CheckStatus, Verdict};
use teardown::{Guard, Teardown};
use workloads::{Ctx, WorkloadKind};

#[derive(Debug, Parser)]
#[command(name = "jepsen", about = "Jepsen-style consistency test of keel (or etcd) on this machine")]
struct Args {
    #[arg(long, value_enum, default_value = "keel")]
    target: Target,
    /// Cluster size (3 or 5; any from 1 to 7 works).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    nodes: u8,
    #[arg(long, value_enum, default_value = "register")]
    workload: WorkloadKind,
    /// Comma-separated: partition, kill, pause, delay, loss, member, failpoint, power-loss; or none.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "partition,kill,pause")]
    faults: Vec<FaultKind>,
    /// Seconds of the main phase (with faults).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Seeds the fault schedule and the workload's choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The keel binary; default: `keel` beside this binary, else $CARGO_TARGET_DIR/<profile>/keel.
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// The run directory (history, logs, member data); default /tmp/keel-jepsen/<run>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Starts keel with its hidden `--unsafe-local-reads` (linearizable reads served locally):
    /// the run must then find stale reads.
    #[arg(long)]
    unsafe_local_reads: bool,
    /// `auto` uses network namespaces when it can, else the userspace proxy.
    #[arg(long, value_enum, default_value = "auto")]
    net: NetMode,
    /// Mean seconds between fault changes.
    #[arg(long, default_value_t = 5.0)]
    fault_interval: f64,
    /// Let a network fault and a process fault (kill, pause, failpoint) be in force together.
    #[arg(long)]
    overlap_faults: bool,
    /// Client processes; default 2 per member.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Target ops per second over all client processes.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds the clients keep going after everything healed, before their final reads.
    #[arg(long, default_value_t = 10)]
    quiet: u64,
    /// Ops on one key before it is retired for a fresh one (register, list-append).
    #[arg(long, default_value_t = 2000)]
    ops_per_key: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("jepsen: {error}");
            return ExitCode::from(2);
        }
    };
    let teardown = Teardown::new();
    let guard = Guard(teardown.clone());
    let code = runtime.block_on(async {
        tokio::select! {
            result = run(args, teardown.clone()) => match result {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(error) => {
                    eprintln!("jepsen: {error}");
                    2
                }
            },
            signal = signals() => {
                eprintln!("jepsen: {signal}: tearing down");
                130
            }
        }
    });
    drop(guard);
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

async fn signals() -> &'static str {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

fn default_keel_bin() -> PathBuf {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    if let Some(beside) = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("keel"))) {
        if beside.exists() {
            return beside;
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    target.join(profile).join("keel")
}

fn prepare_out(args: &Args) -> Result<PathBuf, String> {
    let out = args.out.clone().unwrap_or_else(|| {
        let workload = format!("{:?}", args.workload).to_lowercase();
        let target = format!("{:?}", args.target).to_lowercase();
        std::env::temp_dir().join("keel-jepsen").join(format!(
            "{target}-{workload}-{}n-s{}-{}",
            args.nodes,
            args.seed,
            std::process::id()
        ))
    });
    if out.join("history.jsonl").exists() || out.join("summary.json").exists() {
        std::fs::remove_dir_all(&out).map_err(|error| format!("clearing {}: {error}", out.display()))?;
    } else if std::fs::read_dir(&out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("{} exists and is not an earlier run's directory", out.display()));
    }
    std::fs::create_dir_all(&out).map_err(|error| format!("creating {}: {error}", out.display()))?;
    Ok(out)
}

/// A private link (or copy) of the binary, so a rebuild during the run changes nothing.
fn pin_binary(bin: &Path, out: &Path) -> Result<PathBuf, String> {
    let pinned = out.join(bin.file_name().unwrap_or_default());
    if std::fs::hard_link(bin, &pinned).is_err() {
        std::fs::copy(bin, &pinned).map_err(|error| format!("copying {}: {error}", bin.display()))?;
    }
    Ok(pinned)
}

async fn run(args: Args, teardown: Arc<Teardown>) -> Result<bool, String> {
    let started = std::time::Instant::now();
    let command: Vec<String> = std::env::args().collect();
    let command = command.join(" ");
    let out = prepare_out(&args)?;
    let clock = Clock::start();
    let mut notes = Vec::new();

    let bin = match args.target {
        Target::Keel => args.keel_bin.clone().unwrap_or_else(default_keel_bin),
        Target::Etcd => args.etcd_bin.clone(),
    };
    if !bin.exists() {
        return Err(format!("{} not found (build keel with `cargo build`, or pass --keel-bin)", bin.display()));
    }
    let mut kinds: Vec<FaultKind> = args.faults.iter().copied().filter(|kind| *kind != FaultKind::None).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.contains(&FaultKind::Failpoint) {
        let why = match args.target {
            Target::Etcd => Some("failpoints are keel's; etcd runs skip them"),
            Target::Keel if !cluster::keel_has_failpoints(&bin) => {
                Some("this keel was built without --features keel/failpoints; failpoint faults skipped")
            }
            Target::Keel => None,
        };
        if let Some(why) = why {
            notes.push(why.to_string());
            kinds.retain(|kind| *kind != FaultKind::Failpoint);
        }
    }
    let mut extra_args = Vec::new();
    if args.unsafe_local_reads {
        if args.target != Target::Keel {
            return Err("--unsafe-local-reads is a keel flag".into());
        }
        extra_args.push("--unsafe-local-reads".to_string());
    }
    let bin = pin_binary(&bin, &out)?;

    let size = args.nodes as usize;
    let net = Arc::new(Net::setup(args.net, size, &teardown, &mut notes).await?);
    if kinds.contains(&FaultKind::Delay) && !net.supports_delay() {
        notes.push("delay faults are skipped: this network mode cannot delay packets".to_string());
        kinds.retain(|kind| *kind != FaultKind::Delay);
    }
    println!("jepsen: {command}");
    println!("jepsen: run directory {}", out.display());
    println!("jepsen: network mode {}", net.describe());
    for note in &notes {
        println!("jepsen: note: {note}");
    }
    let mut cluster = Cluster::new(args.target, bin, &out, size, extra_args, net.clone(), teardown.clone(), clock);
    if kinds.contains(&FaultKind::PowerLoss) {
        match cluster.mount_disks() {
            Ok(()) => {
                let entries =
                    lazyfs::MetadataModel::from_environment().map(|model| model.describe()).unwrap_or_default();
                println!("jepsen: member directories on LazyFS (power loss drops unsynced writes; {entries})");
            }
            Err(lazyfs::Error::Unavailable(why)) => {
                let note = format!("power-loss faults are skipped: {why}");
                println!("jepsen: note: {note}");
                notes.push(note);
                kinds.retain(|kind| *kind != FaultKind::PowerLoss);
            }
            Err(error) => return Err(format!("mounting the power-loss filesystems: {error}")),
        }
    }
    let cluster = Arc::new(Mutex::new(cluster));
    cluster.lock().await.start_all()?;
    let leader = cluster.lock().await.wait_ready(Duration::from_secs(60)).await?;
    println!("[{:8.3}s] cluster of {size} ready, leader n{}", clock.secs(), leader + 1);

    let recorder = Arc::new(Recorder::create(&out.join("history.jsonl"), clock).map_err(|error| error.to_string())?);
    let endpoints = cluster.lock().await.endpoints();
    let ctx = Arc::new(Ctx {
        recorder: recorder.clone(),
        concurrency: args.concurrency.unwrap_or(2 * size).max(1),
        endpoints,
        seed: args.seed,
        rate: args.rate,
        ops_per_key: args.ops_per_key,
        faults_until: tokio::time::Instant::now() + Duration::from_secs(args.time_limit),
        stop: Default::default(),
    });
    let workload = tokio::spawn(workloads::run(args.workload, ctx.clone()));
    let fault_log = std::fs::File::create(out.join("faults.jsonl")).map_err(|error| error.to_string())?;
    let interval = Duration::from_secs_f64(args.fault_interval.max(0.5));
    let schedule = Schedule { seed: args.seed, kinds: kinds.clone(), interval, overlap: args.overlap_faults };
    let nemesis = Nemesis::new(cluster.clone(), net.clone(), schedule, clock, fault_log);
    let fault_summary = nemesis.run(ctx.faults_until).await;

    let mut verdicts = Vec::new();
    match cluster.lock().await.wait_ready(Duration::from_secs(60)).await {
        Ok(leader) => println!(
            "[{:8.3}s] healed; cluster ready, leader n{}; quiet for {} s",
            clock.secs(),
            leader + 1,
            args.quiet
        ),
        Err(error) => verdicts.push(Verdict::fail("recovery", error)),
    }
    tokio::time::sleep(Duration::from_secs(args.quiet)).await;
    ctx.stop.store(true, Ordering::SeqCst);
    println!("[{:8.3}s] clients stopping; final phase", clock.secs());
    let extra = match workload.await {
        Ok(Ok(extra)) => extra,
        Ok(Err(error)) => return Err(format!("workload: {error}")),
        Err(error) => return Err(format!("workload panicked: {error}")),
    };
    recorder.flush();
    let elapsed = started.elapsed().as_secs_f64();
    println!("[{:8.3}s] checking", clock.secs());

    let checking = std::time::Instant::now();
    let history = History::load(&out.join("history.jsonl")).map_err(|error| error.to_string())?;
    let ops = history.operations().map_err(|error| error.to_string())?;
    if let workloads::Extra::Watch(observed) = &extra {
        let _ = workloads::save_watch_events(&out.join("watches.jsonl"), &observed.events);
    }
    verdicts.extend(workloads::check(args.workload, &ops, &extra));
    verdicts.push(checks::convergence(&cluster).await);
    verdicts.push(checks::crashes(&mut *cluster.lock().await));
    let counts = report::count(&ops);
    let availability = report::availability(&ops, &fault_summary.windows);
    if counts.ok == 0 {
        verdicts.push(Verdict::fail("progress", "no operation succeeded"));
    }
    let check_s = checking.elapsed().as_secs_f64();
    cluster.lock().await.stop_all();
    let net_description = net.describe();
    if let Some(stats) = net.stats() {
        println!("jepsen: {stats}");
        notes.push(stats);
    }
    drop(net);

    let valid = verdicts.iter().all(|verdict| verdict.status != CheckStatus::Fail);
    println!(
        "jepsen: {} ops ({} ok, {} fail, {} info); faults {:?}; failpoints fired {}; run {elapsed:.1} s, check {check_s:.1} s",
        counts.total, counts.ok, counts.fail, counts.info, fault_summary.started, fault_summary.failpoints_fired
    );
    if kinds.contains(&FaultKind::PowerLoss) {
        println!(
            "jepsen: power losses dropped unsynced writes of {} files ({} bytes); {} cut every member",
            fault_summary.power_loss_files, fault_summary.power_loss_bytes, fault_summary.power_loss_all
        );
    }
    for (f, [ok, fail, info]) in &counts.by_f {
        println!("jepsen:   {f:<16} {ok:>7} ok {fail:>7} fail {info:>7} info");
    }
    let shares: Vec<String> = availability
        .iter()
        .map(|(kind, total, ok)| format!("{kind} {:.0}% of {total}", 100.0 * *ok as f64 / (*total).max(1) as f64))
        .collect();
    println!("jepsen: ok share of ops invoked during each fault: {}", shares.join(", "));
    for verdict in &verdicts {
        println!("{}", verdict.line());
    }
    let summary = report::Summary {
        command,
        target: format!("{:?}", args.target).to_lowercase(),
        nodes: size,
        workload: format!("{:?}", args.workload).to_lowercase(),
        faults: kinds.iter().map(|kind| kind.label()).collect(),
        seed: args.seed,
        net: net_description,
        notes: &notes,
        time_limit_s: args.time_limit,
        elapsed_s: elapsed,
        check_s,
        ops: &counts,
        availability: &availability,
        fault_summary: &fault_summary,
        verdicts: &verdicts,
        valid,
    };
    report::write(&out, &summary).map_err(|error| error.to_string())?;
    println!("jepsen: {} ({})", if valid { "no anomalies found" } else { "ANOMALIES FOUND" }, out.display());
    Ok(valid)
}
