//! Per-key registers: linearizable get, put of a unique value, and compare-and-set as a txn
//! (compare the value, or version 0 for an absent key, then put). A cas expects a value this
//! process actually read. Keys are retired after `--ops-per-key` ops. After the main phase, one
//! final process per member reads every key, and those reads are part of the linearizability
//! check, so an acknowledged write that went missing shows up there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use jepsen::history::{Key, Op, Operation, Value};
use jepsen::register::{check_registers, CheckOptions, Verdict as LinVerdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Ctx, Extra, KeySpace, Process, FINAL_PROCESS};
use crate::client::{connect, revision, timed, Failure};
use crate::report::Verdict;

fn etcd_key(key: Key) -> String {
    format!("/jepsen/register/{key:08}")
}

fn parse(value: &[u8]) -> Option<Value> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Extra, String> {
    let keys = Arc::new(KeySpace::new(5, ctx.ops_per_key));
    let values = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for index in 0..ctx.concurrency {
        tasks.push(tokio::spawn(client(ctx.clone(), index, keys.clone(), values.clone())));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    for (member, endpoint) in ctx.endpoints.iter().enumerate() {
        let mut client = connect(endpoint).await;
        let mut process = Process::new(FINAL_PROCESS + member as u64, 1000, ctx.recorder.clone());
        for key in 0..keys.used() {
            for _attempt in 0..5 {
                if read(&mut client, &mut process, key).await.is_some() {
                    break;
                }
            }
        }
    }
    Ok(Extra::None)
}

async fn client(ctx: Arc<Ctx>, index: usize, keys: Arc<KeySpace>, values: Arc<AtomicU64>) {
    let mut client = connect(&ctx.endpoints[index % ctx.endpoints.len()]).await;
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(index as u64));
    let mut process = Process::new(index as u64, ctx.concurrency as u64, ctx.recorder.clone());
    let mut seen: HashMap<Key, Option<Value>> = HashMap::new();
    while !ctx.stopped() {
        ctx.pace(&mut rng, &mut process).await;
        let key = keys.pick(&mut rng);
        let roll = rng.gen_range(0..10);
        match (roll, seen.get(&key)) {
            (0..4, _) | (_, None) => {
                if let Some(value) = read(&mut client, &mut process, key).await {
                    seen.insert(key, value);
                }
            }
            (4..7, _) => {
                let value = values.fetch_add(1, Ordering::SeqCst);
                let op = Op::Write { key, value };
                process.invoke(&op);
                match timed(client.put(etcd_key(key), value.to_string(), None)).await {
                    Ok(response) => process.ok(&op, revision(response.header())),
                    Err(failure) => process.failed(&op, &failure, false),
                }
            }
            (_, Some(&expected)) => {
                let new = values.fetch_add(1, Ordering::SeqCst);
                let invoked = Op::Cas { key, expected, new, applied: None };
                process.invoke(&invoked);
                let compare = match expected {
                    Some(value) => Compare::value(etcd_key(key), CompareOp::Equal, value.to_string()),
                    None => Compare::version(etcd_key(key), CompareOp::Equal, 0),
                };
                let txn = Txn::new().when([compare]).and_then([TxnOp::put(etcd_key(key), new.to_string(), None)]);
                match timed(client.txn(txn)).await {
                    Ok(response) => {
                        let done = Op::Cas { key, expected, new, applied: Some(response.succeeded()) };
                        process.ok(&done, revision(response.header()));
                    }
                    Err(failure) => process.failed(&invoked, &failure, false),
                }
            }
        }
    }
}

/// A linearizable get; `Some(value)` when it succeeded.
async fn read(client: &mut Client, process: &mut Process, key: Key) -> Option<Option<Value>> {
    let invoked = Op::Read { key, value: None, mod_revision: None };
    process.invoke(&invoked);
    match timed(client.get(etcd_key(key), None)).await {
        Ok(response) => match response.kvs().first().map(|kv| (parse(kv.value()), kv.mod_revision())) {
            Some((None, _)) => {
                process.failed(&invoked, &Failure::Definite("unparsable value".into()), true);
                None
            }
            found => {
                let value = found.and_then(|(value, _)| value);
                let mod_revision = Some(found.map_or(0, |(_, revision)| revision));
                process.ok(&Op::Read { key, value, mod_revision }, revision(response.header()));
                Some(value)
            }
        },
        Err(failure) => {
            process.failed(&invoked, &failure, true);
            None
        }
    }
}

pub fn check(ops: &[Operation]) -> Verdict {
    let keys: std::collections::BTreeSet<Key> = ops.iter().filter_map(|op| op.input.key()).collect();
    match check_registers(ops, &CheckOptions::default()) {
        LinVerdict::Linearizable => {
            Verdict::ok("linearizable", format!("{} register ops over {} keys linearize", ops.len(), keys.len()))
        }
        LinVerdict::Illegal(illegal) => {
            let blocked = &ops[illegal.blocked];
            let stale = matches!(blocked.output, Some(Op::Read { .. }));
            let what = if stale { "not linearizable (a stale read)" } else { "not linearizable" };
            Verdict::fail("linearizable", format!("{what}: {}", illegal.explain(ops)))
        }
        LinVerdict::Unknown { key, steps } => {
            Verdict::unknown("linearizable", format!("key {key}: search gave up after {steps} steps"))
        }
    }
}
