//! `leases`: grant `--leases` leases (TTL `--ttl`), then keep each alive on its own
//! LeaseKeepAlive stream (streams spread over `--conns`) every `--keepalive-interval` until
//! --duration (default 10 s) or --total keep-alives; the keep-alives' round trips are the
//! latency. A keep-alive that errs, times out, or finds its lease gone (TTL ≤ 0) is a failure,
//! and the lease's stream is opened again at its next turn. The leases are revoked at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::time::MissedTickBehavior;

use crate::budget::Budget;
use crate::cli::{Common, LeasesArgs};
use crate::connections::Connections;
use crate::driver::{drive, Load, Operation, Outcome, Tally};
use crate::limiter::RateLimiter;
use crate::report::{Latency, LeaseStats, Report};

struct Grant {
    ttl: i64,
    granted: Mutex<Vec<i64>>,
}

impl Operation for Grant {
    type Connection = Client;

    async fn run(&self, client: &mut Client, _index: u64) -> Outcome {
        match client.lease_grant(self.ttl, None).await {
            Ok(response) => {
                self.granted.lock().unwrap().push(response.id());
                Outcome::Ok
            }
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

struct Revoke {
    ids: Vec<i64>,
}

impl Operation for Revoke {
    type Connection = Client;

    async fn run(&self, client: &mut Client, index: u64) -> Outcome {
        client.lease_revoke(self.ids[index as usize]).await.into()
    }
}

/// One keep-alive round trip on the lease's stream, opening the stream first if needed (which
/// is itself a keep-alive round trip).
async fn keep_alive(client: &mut Client, id: i64, stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>) -> Outcome {
    let Some((keeper, responses)) = stream else {
        return match client.lease_keep_alive(id).await {
            Ok(opened) => {
                *stream = Some(opened);
                Outcome::Ok
            }
            Err(error) => Outcome::Error(error.to_string()),
        };
    };
    if let Err(error) = keeper.keep_alive().await {
        return Outcome::Error(error.to_string());
    }
    match responses.message().await {
        Ok(Some(response)) if response.ttl() > 0 => Outcome::Ok,
        Ok(Some(_)) => Outcome::Error(format!("lease {id:x} expired")),
        Ok(None) => Outcome::Error("keep-alive stream closed".to_string()),
        Err(error) => Outcome::Error(error.to_string()),
    }
}

pub async fn run(common: &Common, connections: &Connections, args: &LeasesArgs) -> Result<Report, String> {
    let interval = args.keepalive_interval.unwrap_or(Duration::from_secs_f64(args.ttl as f64 / 3.0));
    let grant = Arc::new(Grant { ttl: args.ttl, granted: Mutex::new(Vec::new()) });
    let grant_load = Load {
        clients: common.clients.min(args.leases),
        total: Some(args.leases),
        duration: None,
        rate: 0.0,
        request_timeout: common.request_timeout,
    };
    let granted = drive(grant.clone(), connections, &grant_load).await;
    let ids = std::mem::take(&mut *grant.granted.lock().unwrap());
    if ids.is_empty() {
        return Err(format!("no lease granted: {:?}", granted.error_samples));
    }

    let duration = match (common.total, common.duration) {
        (None, None) => Some(Duration::from_secs(10)),
        (_, duration) => duration,
    };
    let budget = Arc::new(Budget::new(common.total, duration));
    let limiter = Arc::new(RateLimiter::new(common.rate));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, id) in ids.iter().copied().enumerate() {
        let mut client = connections.get(index as u64);
        let (budget, limiter) = (budget.clone(), limiter.clone());
        let timeout = common.request_timeout;
        // Spread the leases' turns over the interval.
        let first = tokio::time::Instant::now() + interval.mul_f64(index as f64 / ids.len() as f64);
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut stream = None;
            let mut ticks = tokio::time::interval_at(first, interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                match budget.deadline() {
                    Some(deadline) => {
                        tokio::select! {
                            _ = ticks.tick() => {}
                            _ = tokio::time::sleep_until(deadline.into()) => break,
                        }
                    }
                    None => {
                        ticks.tick().await;
                    }
                }
                if budget.next().is_none() {
                    break;
                }
                limiter.wait().await;
                let began = Instant::now();
                let outcome = match tokio::time::timeout(timeout, keep_alive(&mut client, id, &mut stream)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Error(format!("no keep-alive answer within {timeout:?}")),
                };
                if outcome != Outcome::Ok {
                    stream = None;
                }
                tally.count(outcome, began.elapsed());
            }
            tally
        });
    }
    let mut keepalives = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => keepalives.merge(tally),
            Err(error) => keepalives.error(format!("lease task failed: {error}")),
        }
    }
    keepalives.elapsed = start.elapsed();

    let revoke_load = Load { clients: common.clients, total: Some(ids.len() as u64), ..grant_load };
    let revoked = drive(Arc::new(Revoke { ids: ids.clone() }), connections, &revoke_load).await;
    if revoked.errors > 0 {
        eprintln!("leases: {} of {} revokes failed: {:?}", revoked.errors, ids.len(), revoked.error_samples);
    }

    let mut report = Report::new("leases", common, &keepalives);
    report.errors = keepalives.errors + granted.errors;
    report.error_samples.extend(granted.error_samples.iter().cloned());
    report.leases = Some(LeaseStats {
        leases: ids.len() as u64,
        ttl_seconds: args.ttl,
        keepalive_interval_ms: interval.as_secs_f64() * 1e3,
        grant_errors: granted.errors,
        grant_latency_ms: Latency::from(&granted.latency),
        keepalive_failures: keepalives.errors,
    });
    Ok(report)
}
