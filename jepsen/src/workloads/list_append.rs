//! List-append transactions, checked by Elle's method (`jepsen::elle`).
//!
//! A key holds a comma-separated list. A transaction of 1 to 4 micro-ops (append a unique value,
//! or read the whole list) runs in two requests: one txn reads every key it touches (one
//! revision); the micro-ops are evaluated on that snapshot; then, if it appends, a second txn
//! writes the new lists guarded by `mod_revision == seen` on every key it touched (read or
//! written), so it commits only on the snapshot it read. A failed compare means nothing was
//! written: the transaction fails. Read-only transactions are the first request alone. At the end
//! one transaction per member reads every key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use jepsen::history::{Key, MicroOp, Op, Operation, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Ctx, Extra, KeySpace, Process, FINAL_PROCESS};
use crate::client::{connect, revision, timed, Failure};
use crate::report::Verdict;

fn etcd_key(key: Key) -> String {
    format!("/jepsen/append/{key:08}")
}

fn encode(list: &[Value]) -> String {
    list.iter().map(Value::to_string).collect::<Vec<_>>().join(",")
}

fn decode(text: &[u8]) -> Option<Vec<Value>> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|item| item.parse().ok()).collect()
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Extra, String> {
    let keys = Arc::new(KeySpace::new(8, ctx.ops_per_key));
    let values = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for index in 0..ctx.concurrency {
        tasks.push(tokio::spawn(client(ctx.clone(), index, keys.clone(), values.clone())));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())?;
    }
    let all: Vec<Key> = (0..keys.used()).collect();
    for (member, endpoint) in ctx.endpoints.iter().enumerate() {
        let mut client = connect(endpoint).await;
        let mut process = Process::new(FINAL_PROCESS + member as u64, 1000, ctx.recorder.clone());
        for chunk in all.chunks(64) {
            let mops: Vec<MicroOp> = chunk.iter().map(|&key| MicroOp::Read { key, value: None }).collect();
            for _attempt in 0..5 {
                if transact(&mut client, &mut process, mops.clone()).await {
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
    while !ctx.stopped() {
        ctx.pace(&mut rng, &mut process).await;
        let mops = (0..rng.gen_range(1..=4))
            .map(|_| {
                let key = keys.pick(&mut rng);
                if rng.gen_bool(0.5) {
                    MicroOp::Append { key, value: values.fetch_add(1, Ordering::SeqCst) }
                } else {
                    MicroOp::Read { key, value: None }
                }
            })
            .collect();
        transact(&mut client, &mut process, mops).await;
    }
}

/// Runs one transaction; true when it committed.
async fn transact(client: &mut Client, process: &mut Process, mops: Vec<MicroOp>) -> bool {
    let invoked = Op::Txn { mops: mops.clone() };
    process.invoke(&invoked);
    let mut touched: Vec<Key> = mops
        .iter()
        .map(|mop| match mop {
            MicroOp::Append { key, .. } | MicroOp::Read { key, .. } => *key,
        })
        .collect();
    touched.sort_unstable();
    touched.dedup();
    // 1. Read everything touched at one revision.
    let read = Txn::new().and_then(touched.iter().map(|&key| TxnOp::get(etcd_key(key), None)).collect::<Vec<_>>());
    let response = match timed(client.txn(read)).await {
        Ok(response) => response,
        Err(failure) => {
            process.failed(&invoked, &failure, true);
            return false;
        }
    };
    let mut state: BTreeMap<Key, (Vec<Value>, i64)> = BTreeMap::new();
    for (key, answer) in touched.iter().zip(response.op_responses()) {
        let TxnOpResponse::Get(get) = answer else {
            process.failed(&invoked, &Failure::Definite("unexpected txn answer".into()), true);
            return false;
        };
        let (list, mod_revision) = match get.kvs().first() {
            Some(kv) => match decode(kv.value()) {
                Some(list) => (list, kv.mod_revision()),
                None => {
                    process.failed(&invoked, &Failure::Definite("unparsable list".into()), true);
                    return false;
                }
            },
            None => (Vec::new(), 0),
        };
        state.insert(*key, (list, mod_revision));
    }
    // 2. Evaluate on that snapshot.
    let mut appended: BTreeMap<Key, Vec<Value>> = BTreeMap::new();
    let completed: Vec<MicroOp> = mops
        .iter()
        .map(|mop| match *mop {
            MicroOp::Append { key, value } => {
                state.get_mut(&key).expect("touched").0.push(value);
                appended.insert(key, state[&key].0.clone());
                mop.clone()
            }
            MicroOp::Read { key, .. } => MicroOp::Read { key, value: Some(state[&key].0.clone()) },
        })
        .collect();
    let done = Op::Txn { mops: completed };
    if appended.is_empty() {
        process.ok(&done, revision(response.header()));
        return true;
    }
    // 3. Write, only if nothing touched changed since.
    let compares: Vec<Compare> = state
        .iter()
        .map(|(&key, (_, mod_revision))| Compare::mod_revision(etcd_key(key), CompareOp::Equal, *mod_revision))
        .collect();
    let puts: Vec<TxnOp> = appended.iter().map(|(&key, list)| TxnOp::put(etcd_key(key), encode(list), None)).collect();
    match timed(client.txn(Txn::new().when(compares).and_then(puts))).await {
        Ok(response) if response.succeeded() => {
            process.ok(&done, revision(response.header()));
            true
        }
        Ok(_) => {
            process.failed(&invoked, &Failure::Definite("compare failed".into()), false);
            false
        }
        Err(failure) => {
            process.failed(&invoked, &failure, false);
            false
        }
    }
}

pub fn check(ops: &[Operation]) -> Verdict {
    let txns = ops.iter().filter(|op| matches!(op.input, Op::Txn { .. })).count();
    let report = jepsen::elle::check(ops);
    if report.is_valid() {
        return Verdict::ok("elle", format!("{txns} transactions: no G0, G1a, G1b, G1c, G-single or G2 found"));
    }
    let examples: Vec<String> = report.anomalies.iter().take(5).map(|anomaly| anomaly.to_string()).collect();
    Verdict::fail(
        "elle",
        format!("{} anomalies ({}): {}", report.anomalies.len(), report.names().join(", "), examples.join("; ")),
    )
}
