//! `txn-cas`: compare-and-swap on a few contended keys. Each operation reads a key's mod
//! revision (linearizably), then sends a txn that puts a new value only if the mod revision is
//! still the one read; a failed compare is a conflict, counted apart from errors. The latency
//! covers both round trips.

use std::sync::Arc;

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbPutRequest, PbRangeRequest, PbTargetUnion, PbTxnOpRequest, PbTxnRequest,
    PbTxnRequestOp,
};
use rand::Rng;

use crate::cli::{Common, TxnCasArgs};
use crate::driver::{drive, Operation, Outcome, Pool};
use crate::keys::value;
use crate::report::Report;
use crate::unary::{UnaryConnection, UnaryConnections};

struct TxnCas {
    prefix: String,
    keys: u64,
    value: Vec<u8>,
}

impl TxnCas {
    fn key(&self, number: u64) -> Vec<u8> {
        format!("{}{number:08}", self.prefix).into_bytes()
    }

    fn put(&self, key: Vec<u8>) -> PbPutRequest {
        PbPutRequest { key, value: self.value.clone(), ..Default::default() }
    }
}

impl Operation for TxnCas {
    type Connection = UnaryConnection;

    async fn run(&self, connection: &mut UnaryConnection, _index: u64) -> Outcome {
        let key = self.key(rand::thread_rng().gen_range(0..self.keys));
        let read = PbRangeRequest { key: key.clone(), ..Default::default() };
        let revision = match connection.range(&read).await {
            Ok(response) => response.kvs.first().map_or(0, |kv| kv.mod_revision),
            Err(error) => return Outcome::Error(error),
        };
        // `result` 0 is EQUAL.
        let compare = PbCompare {
            target: PbCompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(PbTargetUnion::ModRevision(revision)),
            ..Default::default()
        };
        let txn = PbTxnRequest {
            compare: vec![compare],
            success: vec![PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestPut(self.put(key))) }],
            failure: Vec::new(),
        };
        match connection.txn(&txn).await {
            Ok(response) if response.succeeded => Outcome::Ok,
            Ok(_) => Outcome::Conflict,
            Err(error) => Outcome::Error(error),
        }
    }
}

pub async fn run(common: &Common, connections: &UnaryConnections, args: &TxnCasArgs) -> Result<Report, String> {
    let operation =
        Arc::new(TxnCas { prefix: args.prefix.clone(), keys: args.contended_keys, value: value(args.val_size) });
    let connection = connections.get(0);
    for number in 0..args.contended_keys {
        connection
            .put(&operation.put(operation.key(number)))
            .await
            .map_err(|error| format!("writing the contended keys: {error}"))?;
    }
    let tally = drive(operation, connections, &super::load(common, 10_000)).await;
    let mut report = Report::new("txn-cas", common, &tally);
    report.conflicts = Some(tally.conflicts);
    Ok(report)
}
