//! etcd-style mixed traffic over 16 keys: get, range (prefix, limit), put, delete, txn
//! (compare version then put, else get), lease grant + put on it, lease revoke, and compaction
//! to a recent revision. No model checks it: the run checks that every error is one etcd gives
//! under faults (unavailable, timeouts, leader changes, compacted revisions, gone leases), and,
//! like every workload, that the members converge to the same HashKV.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use etcd_client::{Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use jepsen::history::{Key, Op, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Ctx, Extra, Process};
use crate::client::{connect, revision, timed, Failure};
use crate::report::Verdict;

const PREFIX: &str = "/jepsen/mixed/";

fn etcd_key(key: Key) -> String {
    format!("{PREFIX}{key:02}")
}

/// Errors that faults explain. Anything else is reported.
fn expected(failure: &Failure) -> bool {
    let message = failure.message();
    matches!(failure, Failure::Indefinite(_))
        || [
            "Unavailable",
            "DeadlineExceeded",
            "Cancelled",
            "compacted",
            "lease not found",
            "leader changed",
            "no leader",
            "timed out",
            "transport",
        ]
        .iter()
        .any(|pattern| message.contains(pattern))
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Extra, String> {
    let unexpected = Arc::new(Mutex::new(HashMap::new()));
    let values = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for index in 0..ctx.concurrency {
        let (ctx, unexpected, values) = (ctx.clone(), unexpected.clone(), values.clone());
        tasks.push(tokio::spawn(client(ctx, index, unexpected, values)));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    let unexpected_errors = std::mem::take(&mut *unexpected.lock().unwrap());
    Ok(Extra::Mixed { unexpected_errors })
}

async fn client(ctx: Arc<Ctx>, index: usize, unexpected: Arc<Mutex<HashMap<String, u64>>>, values: Arc<AtomicU64>) {
    let mut client = connect(&ctx.endpoints[index % ctx.endpoints.len()]).await;
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(index as u64));
    let mut process = Process::new(index as u64, ctx.concurrency as u64, ctx.recorder.clone());
    let mut leases: Vec<i64> = Vec::new();
    let mut compacted = 0i64;
    while !ctx.stopped() {
        ctx.pace(&mut rng, &mut process).await;
        let key = rng.gen_range(0..16);
        let roll = rng.gen_range(0..100);
        let name = match roll {
            // Serializable gets promise no real-time order, so the revision check knows them by name.
            0..5 => "get-serializable",
            5..25 => "get",
            25..35 => "range",
            35..60 => "put",
            60..70 => "delete",
            70..85 => "txn",
            85..93 => "lease-put",
            93..97 => "lease-revoke",
            _ => "compact",
        };
        let value = matches!(name, "put" | "txn" | "lease-put").then(|| values.fetch_add(1, Ordering::SeqCst));
        let op = Op::Other { name: name.to_string(), key: Some(key), detail: None, value, seen: None };
        process.invoke(&op);
        let read_only = matches!(name, "get" | "get-serializable" | "range");
        let result = step(&mut client, name, key, value.unwrap_or(0), &mut rng, &mut leases, &mut compacted).await;
        match result {
            Ok(Answer { detail, revision, seen }) => {
                let done = Op::Other { name: name.to_string(), key: Some(key), detail: Some(detail), value, seen };
                process.ok(&done, revision)
            }
            Err(failure) => {
                if !expected(&failure) {
                    *unexpected.lock().unwrap().entry(format!("{name}: {}", failure.message())).or_default() += 1;
                }
                process.failed(&op, &failure, read_only);
            }
        }
    }
}

/// What a request returned, for the history.
struct Answer {
    detail: String,
    revision: Option<i64>,
    /// A read's (key, value, mod_revision) per key.
    seen: Option<Vec<(Key, Value, i64)>>,
}

impl Answer {
    fn new(detail: String, revision: Option<i64>) -> Answer {
        Answer { detail, revision, seen: None }
    }
}

/// The keys of a read, as the history records them; `None` if one is not the workload's.
fn seen(kvs: &[KeyValue]) -> Option<Vec<(Key, Value, i64)>> {
    kvs.iter()
        .map(|kv| {
            let key = kv.key_str().ok()?.strip_prefix(PREFIX)?.parse().ok()?;
            let value = kv.value_str().ok()?.parse().ok()?;
            Some((key, value, kv.mod_revision()))
        })
        .collect()
}

async fn step(
    client: &mut Client,
    name: &str,
    key: Key,
    value: Value,
    rng: &mut StdRng,
    leases: &mut Vec<i64>,
    compacted: &mut i64,
) -> Result<Answer, Failure> {
    let value = value.to_string();
    match name {
        "get" | "get-serializable" => {
            let options = (name == "get-serializable").then(|| GetOptions::new().with_serializable());
            let response = timed(client.get(etcd_key(key), options)).await?;
            let mut answer = Answer::new(format!("{} kvs", response.kvs().len()), revision(response.header()));
            answer.seen = seen(response.kvs());
            Ok(answer)
        }
        "range" => {
            let options = GetOptions::new().with_prefix().with_limit(5);
            let response = timed(client.get(PREFIX, Some(options))).await?;
            let detail = format!("{} kvs, more {}", response.kvs().len(), response.more());
            let mut answer = Answer::new(detail, revision(response.header()));
            answer.seen = seen(response.kvs());
            Ok(answer)
        }
        "put" => {
            let response = timed(client.put(etcd_key(key), value, None)).await?;
            Ok(Answer::new("put".into(), revision(response.header())))
        }
        "delete" => {
            let response = timed(client.delete(etcd_key(key), None)).await?;
            Ok(Answer::new(format!("{} deleted", response.deleted()), revision(response.header())))
        }
        "txn" => {
            let txn = Txn::new()
                .when([Compare::version(etcd_key(key), CompareOp::Greater, 0)])
                .and_then([TxnOp::put(etcd_key(key), value, None)])
                .or_else([TxnOp::get(etcd_key(key), None)]);
            let response = timed(client.txn(txn)).await?;
            Ok(Answer::new(format!("succeeded {}", response.succeeded()), revision(response.header())))
        }
        "lease-put" => {
            let lease = timed(client.lease_grant(rng.gen_range(2..6), None)).await?.id();
            leases.push(lease);
            let options = PutOptions::new().with_lease(lease);
            let response = timed(client.put(etcd_key(key), value, Some(options))).await?;
            Ok(Answer::new(format!("lease {lease:x}"), revision(response.header())))
        }
        "lease-revoke" => {
            let Some(lease) = leases.pop() else { return Ok(Answer::new("no lease".into(), None)) };
            let response = timed(client.lease_revoke(lease)).await?;
            Ok(Answer::new(format!("revoked {lease:x}"), revision(response.header())))
        }
        _ => {
            let current = timed(client.get(etcd_key(key), None)).await?;
            let target = revision(current.header()).unwrap_or(0) - 100;
            if target <= *compacted {
                return Ok(Answer::new("nothing to compact".into(), None));
            }
            let response = timed(client.compact(target, None)).await?;
            *compacted = target;
            Ok(Answer::new(format!("compacted to {target}"), revision(response.header())))
        }
    }
}

pub fn check(unexpected: &HashMap<String, u64>) -> Verdict {
    if unexpected.is_empty() {
        return Verdict::ok(
            "errors",
            "every error was one faults explain (unavailable, timeout, leader change, compacted, lease gone)",
        );
    }
    let mut listed: Vec<String> = unexpected.iter().map(|(error, count)| format!("{count}x {error}")).collect();
    listed.sort();
    Verdict::fail("errors", format!("unexpected errors: {}", listed.join("; ")))
}
