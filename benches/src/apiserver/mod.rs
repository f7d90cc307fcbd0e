//! `keel-apiserver-bench`: a Kubernetes API load generator over HTTP/JSON (the pod
//! workload), so the same run measures `keel server` on its own store or over etcd
//! (`scripts/bench-apiserver` runs both). One concept per file: `client` (HTTP/1.1 JSON
//! requests and watch streams), `pod` (the object written), `rss` (the server's memory from
//! /proc), `phases` (create, fill, watchers, LISTs), `report`.

pub mod client;
pub mod cpu;
pub mod phases;
pub mod pod;
pub mod report;
pub mod rss;
