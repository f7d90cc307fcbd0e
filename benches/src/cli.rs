//! keel-bench's command line: etcd's tools/benchmark flags (`--endpoints`, `--clients`,
//! `--conns`, `--total`, `--rate`, `--key-size`, ...) before or after the workload's name.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "keel-bench",
    version,
    about = "etcd v3 load generator: the same workloads against keel or etcd",
    after_help = "Examples:\n  keel-bench --endpoints 127.0.0.1:2379 --clients 100 --conns 10 put --total 100000 --key-space 100000\n  \
                  keel-bench range --consistency s --duration 10s --clients 10\n  \
                  keel-bench watch --watchers 1000 --conns 10 --rate 100 --duration 10s --json watch.json"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Flags every workload takes, anywhere on the line.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Comma-separated client endpoints (`host:port` or `http://host:port`).
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Concurrent clients (tasks), each with one request in flight.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// gRPC connections the clients share, spread round-robin over the endpoints.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub conns: u64,
    /// Operations to issue (for `watch`: writes; for `leases`: keep-alives). Defaults to the
    /// workload's own total unless --duration is given.
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Run for this long (`500ms`, `10s`, `2m`); with --total, whichever ends first.
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Operations per second across all clients (`watch`: writes/s); 0 = unlimited.
    #[arg(long, global = true, default_value_t = 0.0)]
    pub rate: f64,
    /// Also write the result as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Connection timeout.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// An operation that takes longer counts as an error.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Runtime threads of keel-bench itself: 0 = one per core.
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Puts of --val-size bytes on keys of --key-size bytes over --key-space keys.
    Put(PutArgs),
    /// Range requests for one key.
    Range(RangeArgs),
    /// Compare-and-swap: read a key's mod revision, then a txn that puts only if it is unchanged.
    TxnCas(TxnCasArgs),
    /// Preload --keys keys under a prefix, then range all of them.
    RangeLarge(RangeLargeArgs),
    /// --watchers watchers on one prefix, one writer at --rate writes/s; delivery latency and losses.
    Watch(WatchArgs),
    /// Grant --leases leases and keep them alive; keep-alive latency and failures.
    Leases(LeasesArgs),
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put(_) => "put",
            Workload::Range(_) => "range",
            Workload::TxnCas(_) => "txn-cas",
            Workload::RangeLarge(_) => "range-large",
            Workload::Watch(_) => "watch",
            Workload::Leases(_) => "leases",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Key length in bytes after --prefix (the key number, zero-padded).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys (etcd's --key-space-size; its default of 1 puts one key over and over).
    #[arg(long, alias = "key-space-size", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,
    /// Keys in order (operation number modulo --key-space) instead of uniformly at random.
    #[arg(long)]
    pub sequential_keys: bool,
    #[arg(long, default_value = "")]
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable: a read index round through the leader.
    #[value(name = "l")]
    Linearizable,
    /// Serializable: the member's local state.
    #[value(name = "s")]
    Serializable,
}

#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// The key read (written once, with a --val-size value, before the run).
    #[arg(long, default_value = "bench-range")]
    pub key: String,
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct TxnCasArgs {
    /// Keys the clients contend on; each operation picks one at random.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub contended_keys: u64,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    #[arg(long, default_value = "bench-cas/")]
    pub prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct RangeLargeArgs {
    /// Keys preloaded (in txns of 100 puts) before the ranges.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Ask for keys only (no values).
    #[arg(long)]
    pub keys_only: bool,
    /// Serializable ranges instead of linearizable.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    #[arg(long, default_value = "bench-large/")]
    pub prefix: String,
    /// Only load the keys (for a separate measured run with --skip-preload).
    #[arg(long, conflicts_with = "skip_preload")]
    pub preload_only: bool,
    /// Range keys an earlier run (or another tool) loaded: --keys must match what is there.
    #[arg(long)]
    pub skip_preload: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub watchers: u64,
    /// Watchers sharing one gRPC Watch stream (streams are spread over --conns).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub watchers_per_stream: u64,
    /// Value size; at least 20 (the send timestamp).
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    #[arg(long, default_value = "bench-watch/")]
    pub prefix: String,
    /// How long to wait after the last write for the watchers to receive everything.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LeasesArgs {
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub leases: u64,
    /// Lease TTL in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..))]
    pub ttl: i64,
    /// Time between a lease's keep-alives; default TTL/3, as etcd's client does.
    #[arg(long, value_parser = parse_duration)]
    pub keepalive_interval: Option<Duration>,
}

/// `250us`, `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Cli {
        Cli::try_parse_from(line.split_whitespace()).unwrap_or_else(|error| panic!("{line}: {error}"))
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn common_flags_go_before_or_after_the_workload() {
        let cli = parse("keel-bench --endpoints a:1,b:2,c:3 --clients 100 put --conns 10 --total 200 --key-space 1000");
        assert_eq!(cli.common.endpoints, ["a:1", "b:2", "c:3"]);
        assert_eq!((cli.common.clients, cli.common.conns, cli.common.total), (100, 10, Some(200)));
        let Workload::Put(put) = cli.workload else { panic!("not put") };
        assert_eq!((put.key_size, put.val_size, put.key_space, put.sequential_keys), (8, 256, 1000, false));
    }

    #[test]
    fn defaults() {
        let cli = parse("keel-bench put");
        assert_eq!(cli.common.endpoints, ["127.0.0.1:2379"]);
        assert_eq!((cli.common.clients, cli.common.conns, cli.common.total, cli.common.rate), (1, 1, None, 0.0));
        assert_eq!(cli.common.duration, None);
        assert_eq!(cli.common.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_workload_parses() {
        let Workload::Range(range) = parse("keel-bench range --consistency s --duration 3s").workload else { panic!() };
        assert_eq!(range.consistency, Consistency::Serializable);
        let Workload::TxnCas(cas) = parse("keel-bench txn-cas --contended-keys 4").workload else { panic!() };
        assert_eq!(cas.contended_keys, 4);
        let Workload::RangeLarge(large) = parse("keel-bench range-large --keys 500 --keys-only").workload else {
            panic!()
        };
        assert_eq!((large.keys, large.keys_only), (500, true));
        let cli =
            parse("keel-bench watch --watchers 10 --watchers-per-stream 5 --rate 100 --duration 2s --json w.json");
        assert_eq!(cli.common.rate, 100.0);
        assert_eq!(cli.common.duration, Some(Duration::from_secs(2)));
        assert_eq!(cli.common.json, Some(PathBuf::from("w.json")));
        let Workload::Watch(watch) = cli.workload else { panic!() };
        assert_eq!((watch.watchers, watch.watchers_per_stream), (10, 5));
        let Workload::Leases(leases) =
            parse("keel-bench leases --leases 5 --ttl 3 --keepalive-interval 250ms").workload
        else {
            panic!()
        };
        assert_eq!((leases.leases, leases.ttl, leases.keepalive_interval), (5, 3, Some(Duration::from_millis(250))));
    }

    #[test]
    fn bad_lines_are_refused() {
        for line in [
            "keel-bench",
            "keel-bench put --clients 0",
            "keel-bench range --consistency x",
            "keel-bench put --duration 10parsecs",
            "keel-bench frobnicate",
        ] {
            assert!(Cli::try_parse_from(line.split_whitespace()).is_err(), "{line} was accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
