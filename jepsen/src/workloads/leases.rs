//! Leases: lease processes grant a lease (TTL 2 to 4 s), put a fresh key on it, then revoke it,
//! keep it alive a few times and abandon it, or abandon it at once (it must expire). Reader
//! processes read recent lease keys (linearizable gets) and look leases up (TimeToLive). The
//! checker (`jepsen::leases`) then finds any read of a key whose lease had been revoked or seen
//! gone. After the main phase every lease must expire: each is looked up until it is gone (for at
//! most 30 s), and every key is read once more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use jepsen::history::{Key, Op, Operation, Value};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::{Ctx, Extra, Process, FINAL_PROCESS};
use crate::client::{connect, revision, timed, Failure};
use crate::report::Verdict;

fn etcd_key(key: Key) -> String {
    format!("/jepsen/lease/{key:08}")
}

/// Recent (key, lease) pairs the readers pick from; all of them, for the final phase.
#[derive(Debug, Default)]
struct Registry {
    all: Mutex<Vec<(Key, i64)>>,
}

impl Registry {
    fn recent(&self, rng: &mut StdRng) -> Option<(Key, i64)> {
        let all = self.all.lock().unwrap();
        let from = all.len().saturating_sub(20);
        all[from..].choose(rng).copied()
    }
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Extra, String> {
    let registry = Arc::new(Registry::default());
    let keys = Arc::new(AtomicU64::new(1));
    let holders = (ctx.concurrency / 2).max(1);
    let mut tasks = Vec::new();
    for index in 0..ctx.concurrency.max(2) {
        let (ctx, registry, keys) = (ctx.clone(), registry.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            if index < holders {
                holder(ctx, index, registry, keys).await
            } else {
                reader(ctx, index, registry).await
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    // Final phase: every lease must go, then no key may be left.
    let all = registry.all.lock().unwrap().clone();
    let mut client = connect(&ctx.endpoints[0]).await;
    let mut process = Process::new(FINAL_PROCESS, 1000, ctx.recorder.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<i64> = all.iter().map(|(_, lease)| *lease).collect();
    pending.sort_unstable();
    pending.dedup();
    let checked = pending.len();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for lease in pending {
            if lookup(&mut client, &mut process, lease).await != Some(-1) {
                still.push(lease);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for (member, endpoint) in ctx.endpoints.iter().enumerate() {
        let mut client = connect(endpoint).await;
        let mut process = Process::new(FINAL_PROCESS + 1 + member as u64, 1000, ctx.recorder.clone());
        for &(key, _) in &all {
            for _attempt in 0..3 {
                if read(&mut client, &mut process, key).await {
                    break;
                }
            }
        }
    }
    Ok(Extra::Lease { unexpired: pending, checked })
}

async fn holder(ctx: Arc<Ctx>, index: usize, registry: Arc<Registry>, keys: Arc<AtomicU64>) {
    let mut client = connect(&ctx.endpoints[index % ctx.endpoints.len()]).await;
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(index as u64));
    let mut process = Process::new(index as u64, ctx.concurrency as u64, ctx.recorder.clone());
    while !ctx.stopped() {
        ctx.pace(&mut rng, &mut process).await;
        let ttl = rng.gen_range(2..=4);
        let invoked = Op::LeaseGrant { ttl, lease: None };
        process.invoke(&invoked);
        let lease = match timed(client.lease_grant(ttl, None)).await {
            Ok(response) => {
                process.ok(&Op::LeaseGrant { ttl, lease: Some(response.id()) }, revision(response.header()));
                response.id()
            }
            Err(failure) => {
                process.failed(&invoked, &failure, false);
                continue;
            }
        };
        let key = keys.fetch_add(1, Ordering::SeqCst);
        let value: Value = key;
        let op = Op::LeasePut { key, value, lease };
        process.invoke(&op);
        match timed(client.put(etcd_key(key), value.to_string(), Some(PutOptions::new().with_lease(lease)))).await {
            Ok(response) => process.ok(&op, revision(response.header())),
            Err(failure) => process.failed(&op, &failure, false),
        }
        registry.all.lock().unwrap().push((key, lease));
        match rng.gen_range(0..3) {
            0 => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..2000))).await;
                let op = Op::LeaseRevoke { lease };
                process.invoke(&op);
                match timed(client.lease_revoke(lease)).await {
                    Ok(response) => process.ok(&op, revision(response.header())),
                    Err(failure) => process.failed(&op, &failure, false),
                }
            }
            1 => {
                for _ in 0..rng.gen_range(1..=3) {
                    if ctx.stopped() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    keep_alive(&mut client, &mut process, lease).await;
                }
            }
            _ => {}
        }
    }
}

async fn keep_alive(client: &mut Client, process: &mut Process, lease: i64) {
    let invoked = Op::LeaseKeepAlive { lease, ttl: None };
    process.invoke(&invoked);
    let answer = timed(async {
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        stream.message().await
    })
    .await;
    match answer {
        Ok(Some(response)) => process.ok(&Op::LeaseKeepAlive { lease, ttl: Some(response.ttl()) }, None),
        Ok(None) => process.failed(&invoked, &Failure::Indefinite("keep-alive stream ended".into()), false),
        Err(failure) => process.failed(&invoked, &failure, false),
    }
}

async fn reader(ctx: Arc<Ctx>, index: usize, registry: Arc<Registry>) {
    let mut client = connect(&ctx.endpoints[index % ctx.endpoints.len()]).await;
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(index as u64));
    let mut process = Process::new(index as u64, ctx.concurrency as u64, ctx.recorder.clone());
    while !ctx.stopped() {
        ctx.pace(&mut rng, &mut process).await;
        let Some((key, lease)) = registry.recent(&mut rng) else { continue };
        if rng.gen_bool(0.2) {
            lookup(&mut client, &mut process, lease).await;
        } else {
            read(&mut client, &mut process, key).await;
        }
    }
}

/// TimeToLive; `Some(ttl)` on an answer, -1 for a lease that is gone.
async fn lookup(client: &mut Client, process: &mut Process, lease: i64) -> Option<i64> {
    let invoked = Op::LeaseLookup { lease, ttl: None };
    process.invoke(&invoked);
    match timed(client.lease_time_to_live(lease, None)).await {
        Ok(response) => {
            let ttl = if response.ttl() < 0 { -1 } else { response.ttl() };
            process.ok(&Op::LeaseLookup { lease, ttl: Some(ttl) }, revision(response.header()));
            Some(ttl)
        }
        Err(Failure::Definite(message)) if message.contains("not found") => {
            process.ok(&Op::LeaseLookup { lease, ttl: Some(-1) }, None);
            Some(-1)
        }
        Err(failure) => {
            process.failed(&invoked, &failure, true);
            None
        }
    }
}

/// A linearizable get; true when it succeeded.
async fn read(client: &mut Client, process: &mut Process, key: Key) -> bool {
    let invoked = Op::Read { key, value: None, mod_revision: None };
    process.invoke(&invoked);
    match timed(client.get(etcd_key(key), None)).await {
        Ok(response) => {
            let value = response.kvs().first().and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok());
            let mod_revision = Some(response.kvs().first().map_or(0, |kv| kv.mod_revision()));
            process.ok(&Op::Read { key, value, mod_revision }, revision(response.header()));
            true
        }
        Err(failure) => {
            process.failed(&invoked, &failure, true);
            false
        }
    }
}

pub fn check(ops: &[Operation], unexpired: &[i64], checked: usize) -> Vec<Verdict> {
    let report = jepsen::leases::check(ops);
    let safety = if report.is_valid() {
        Verdict::ok(
            "lease-safety",
            format!(
                "{} leases: no key read after its lease was revoked or seen gone ({} reads present, {} absent)",
                report.leases, report.present_reads, report.absent_reads
            ),
        )
    } else {
        let mut problems: Vec<String> = report.violations.iter().take(5).map(ToString::to_string).collect();
        problems.extend(
            report
                .unknown_values
                .iter()
                .take(5)
                .map(|(op, key, value)| format!("op #{op} read {key}={value}, never written")),
        );
        Verdict::fail(
            "lease-safety",
            format!(
                "{} violations, {} unknown values: {}",
                report.violations.len(),
                report.unknown_values.len(),
                problems.join("; ")
            ),
        )
    };
    let liveness = if unexpired.is_empty() {
        Verdict::ok("lease-expiry", format!("all {checked} leases gone within 30 s after the main phase"))
    } else {
        let ids: Vec<String> = unexpired.iter().take(10).map(|lease| format!("{lease:x}")).collect();
        Verdict::fail(
            "lease-expiry",
            format!("{} of {checked} leases still alive 30 s after the main phase: {}", unexpired.len(), ids.join(",")),
        )
    };
    vec![safety, liveness]
}
