//! keel-bench: an etcd v3 load generator in the manner of etcd's tools/benchmark, speaking
//! only the wire protocol (`unary`, a lean gRPC client for the request/response workloads, and
//! the `etcd-client` crate for the rest), so the same run measures keel or etcd.
//! `scripts/bench-vs-etcd` runs it against both, side by side.
//!
//! One concept per file: `cli` (flags), `connections` and `unary` (`--conns` over
//! `--endpoints`), `budget` (`--total`/`--duration`), `limiter` (`--rate`), `driver` (the closed
//! loop of `--clients` tasks), `histogram` (latencies), `keys`, `report` (human line and JSON),
//! and one file per workload under `workloads/`. `apiserver/` is the Kubernetes API load generator
//! (`keel-apiserver-bench`, HTTP/JSON), which reuses `histogram` and `report::Latency`.

pub mod apiserver;
pub mod budget;
pub mod cli;
pub mod connections;
pub mod driver;
pub mod histogram;
pub mod keys;
pub mod limiter;
pub mod report;
pub mod unary;
pub mod workloads;
