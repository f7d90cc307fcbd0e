//! Black-box consistency testing of keel (and of a real etcd, for comparison), Jepsen style.
//!
//! A test has three parts:
//! - a runner (the `jepsen` binary: process control, fault injection and etcd-client
//!   workloads) starts a cluster, drives concurrent client processes against it while it kills,
//!   pauses and partitions nodes, and records every op as it is invoked and completes;
//! - [`history`]: that record, one JSON event per line, and the pairing of each invocation with
//!   its completion;
//! - the checkers, which read nothing but the history: [`linearizable`] with the [`register`]
//!   model for single-key read/write/compare-and-set, [`elle`] for list-append transactions,
//!   whose cycle search scales to histories a linearizability search cannot finish, [`leases`]
//!   for keys on revoked or expired leases, [`watches`] for what watchers received, and
//!   [`revisions`] for etcd's revision contract across keys (every workload).
//!
//! [`lazyfs`] is the runner's power-loss filesystem (a FUSE passthrough that drops unsynced
//! writes and undoes directory entries not fsynced, on command); it is in the library so that
//! its tests can mount it.
//!
//! The runner is the `jepsen` binary (`src/main.rs` and its modules; see JEPSEN.md).
//!
//! Keeping the checkers pure functions of a history file means a failing run can be re-checked,
//! and the checkers tested, without a cluster.

pub mod elle;
mod graph;
pub mod history;
pub mod lazyfs;
pub mod leases;
pub mod linearizable;
pub mod ports;
pub mod register;
pub mod revisions;
pub mod watches;
