//! `txn-cas`: compare-and-swap on a few contended keys. Each operation reads a key's mod
//! revision (linearizably), then sends a txn that puts a new value only if the mod revision is
//! still the one read; a failed compare is a conflict, counted apart from errors. The latency
//! covers both round trips.

use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use rand::Rng;

use crate::cli::{Common, TxnCasArgs};
use crate::connections::Connections;
use crate::driver::{drive, Operation, Outcome};
use crate::keys::value;
use crate::report::Report;

struct TxnCas {
    prefix: String,
    keys: u64,
    value: Vec<u8>,
}

impl TxnCas {
    fn key(&self, number: u64) -> Vec<u8> {
        format!("{}{number:08}", self.prefix).into_bytes()
    }
}

impl Operation for TxnCas {
    async fn run(&self, client: &mut Client, _index: u64) -> Outcome {
        let key = self.key(rand::thread_rng().gen_range(0..self.keys));
        let revision = match client.get(key.clone(), None).await {
            Ok(response) => response.kvs().first().map_or(0, |kv| kv.mod_revision()),
            Err(error) => return Outcome::Error(error.to_string()),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
            .and_then([TxnOp::put(key, self.value.clone(), None)]);
        match client.txn(txn).await {
            Ok(response) if response.succeeded() => Outcome::Ok,
            Ok(_) => Outcome::Conflict,
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

pub async fn run(common: &Common, connections: &Connections, args: &TxnCasArgs) -> Result<Report, String> {
    let operation =
        Arc::new(TxnCas { prefix: args.prefix.clone(), keys: args.contended_keys, value: value(args.val_size) });
    let mut client = connections.get(0);
    for number in 0..args.contended_keys {
        client
            .put(operation.key(number), operation.value.clone(), None)
            .await
            .map_err(|error| format!("writing the contended keys: {error}"))?;
    }
    let tally = drive(operation, connections, &super::load(common, 10_000)).await;
    let mut report = Report::new("txn-cas", common, &tally);
    report.conflicts = Some(tally.conflicts);
    Ok(report)
}
