//! One file per workload; `run` connects and dispatches. Put, range and txn-cas go over the
//! lean `unary` client; the streaming and large-reply workloads over `etcd-client`.

mod leases;
mod put;
mod range;
mod range_large;
mod txn_cas;
mod watch;

use crate::cli::{Cli, Common, Workload};
use crate::connections::Connections;
use crate::driver::Load;
use crate::report::Report;
use crate::unary::UnaryConnections;

/// Runs the workload the command line names against its endpoints.
pub async fn run(cli: &Cli) -> Result<Report, String> {
    let common = &cli.common;
    let (endpoints, conns, dial_timeout) = (&common.endpoints, common.conns, common.dial_timeout);
    let unary = || UnaryConnections::connect(endpoints, conns, dial_timeout);
    let clients = || Connections::connect(endpoints, conns, dial_timeout);
    match &cli.workload {
        Workload::Put(args) => put::run(common, &unary().await?, args).await,
        Workload::Range(args) => range::run(common, &unary().await?, args).await,
        Workload::TxnCas(args) => txn_cas::run(common, &unary().await?, args).await,
        Workload::RangeLarge(args) => range_large::run(common, &clients().await?, args).await,
        Workload::Watch(args) => watch::run(common, &clients().await?, args).await,
        Workload::Leases(args) => leases::run(common, &clients().await?, args).await,
    }
}

/// The load the flags ask for; without --total or --duration, `default_total` operations.
fn load(common: &Common, default_total: u64) -> Load {
    let total = match (common.total, common.duration) {
        (None, None) => Some(default_total),
        (total, _) => total,
    };
    Load {
        clients: common.clients,
        total,
        duration: common.duration,
        rate: common.rate,
        request_timeout: common.request_timeout,
    }
}
