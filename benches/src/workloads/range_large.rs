//! `range-large`: preload `--keys` keys under a prefix (txns of 100 puts, over the clients),
//! then range the whole prefix over and over; a reply without every key is an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use etcd_client::{Client, DeleteOptions, GetOptions, Txn, TxnOp};

use crate::cli::{Common, Consistency, RangeLargeArgs};
use crate::connections::Connections;
use crate::driver::{drive, Load, Operation, Outcome};
use crate::keys::value;
use crate::report::{RangeLargeStats, Report};

/// Puts per preload txn (etcd's default --max-txn-ops is 128).
const PRELOAD_BATCH: u64 = 100;

struct Preload {
    prefix: String,
    keys: u64,
    value: Vec<u8>,
}

impl Operation for Preload {
    type Connection = Client;

    async fn run(&self, client: &mut Client, batch: u64) -> Outcome {
        let first = batch * PRELOAD_BATCH;
        let puts: Vec<TxnOp> = (first..(first + PRELOAD_BATCH).min(self.keys))
            .map(|number| TxnOp::put(format!("{}{number:010}", self.prefix), self.value.clone(), None))
            .collect();
        client.txn(Txn::new().and_then(puts)).await.into()
    }
}

struct RangeAll {
    prefix: String,
    keys: u64,
    options: GetOptions,
    /// The encoded size of the last full reply.
    reply_bytes: AtomicU64,
}

impl Operation for RangeAll {
    type Connection = Client;

    async fn run(&self, client: &mut Client, _index: u64) -> Outcome {
        // A large reply exceeds tonic's default 4 MiB decoding limit.
        let mut kv = client.kv_client().max_decoding_message_size(usize::MAX);
        match kv.get(self.prefix.clone(), Some(self.options.clone())).await {
            Ok(response) if response.kvs().len() as u64 == self.keys => {
                self.reply_bytes.store(response.0.encoded_len() as u64, Ordering::Relaxed);
                Outcome::Ok
            }
            Ok(response) => Outcome::Error(format!("expected {} keys, got {}", self.keys, response.kvs().len())),
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

pub async fn run(common: &Common, connections: &Connections, args: &RangeLargeArgs) -> Result<Report, String> {
    let preload_seconds = if args.skip_preload { 0.0 } else { preload(common, connections, args).await? };
    let mut options = GetOptions::new().with_prefix();
    if args.keys_only {
        options = options.with_keys_only();
    }
    if args.consistency == Consistency::Serializable {
        options = options.with_serializable();
    }
    let operation =
        Arc::new(RangeAll { prefix: args.prefix.clone(), keys: args.keys, options, reply_bytes: AtomicU64::new(0) });
    let mut load = super::load(common, 100);
    if args.preload_only {
        load.total = Some(0);
    }
    let tally = drive(operation.clone(), connections, &load).await;
    let mut report = Report::new("range-large", common, &tally);
    report.range_large = Some(RangeLargeStats {
        keys: args.keys,
        keys_only: args.keys_only,
        preload_seconds,
        reply_bytes: operation.reply_bytes.load(Ordering::Relaxed),
    });
    Ok(report)
}

/// Clears the prefix and loads `--keys` keys under it; answers how long that took.
async fn preload(common: &Common, connections: &Connections, args: &RangeLargeArgs) -> Result<f64, String> {
    connections
        .get(0)
        .delete(args.prefix.clone(), Some(DeleteOptions::new().with_prefix()))
        .await
        .map_err(|error| format!("clearing {}: {error}", args.prefix))?;
    let preload = Arc::new(Preload { prefix: args.prefix.clone(), keys: args.keys, value: value(args.val_size) });
    let batches = args.keys.div_ceil(PRELOAD_BATCH);
    let preload_load = Load {
        clients: common.clients.min(batches.max(1)),
        total: Some(batches),
        duration: None,
        rate: 0.0,
        request_timeout: common.request_timeout.max(Duration::from_secs(30)),
    };
    let preloaded = drive(preload, connections, &preload_load).await;
    if preloaded.errors > 0 {
        return Err(format!("preloading {} keys: {:?}", args.keys, preloaded.error_samples));
    }
    Ok(preloaded.elapsed.as_secs_f64())
}
