//! `range`: etcd's `benchmark range` on one key, linearizable or serializable.

use std::sync::Arc;

use etcd_client::proto::{PbPutRequest, PbRangeRequest};

use crate::cli::{Common, Consistency, RangeArgs};
use crate::driver::{drive, Operation, Outcome, Pool};
use crate::keys::value;
use crate::report::Report;
use crate::unary::{UnaryConnection, UnaryConnections};

struct Range {
    request: PbRangeRequest,
}

impl Operation for Range {
    type Connection = UnaryConnection;

    async fn run(&self, connection: &mut UnaryConnection, _index: u64) -> Outcome {
        match connection.range(&self.request).await {
            Ok(response) if response.kvs.len() == 1 => Outcome::Ok,
            Ok(response) => Outcome::Error(format!("expected 1 key, got {}", response.kvs.len())),
            Err(error) => Outcome::Error(error),
        }
    }
}

pub async fn run(common: &Common, connections: &UnaryConnections, args: &RangeArgs) -> Result<Report, String> {
    let key = args.key.as_bytes().to_vec();
    let put = PbPutRequest { key: key.clone(), value: value(args.val_size), ..Default::default() };
    connections.get(0).put(&put).await.map_err(|error| format!("writing the key to range: {error}"))?;
    let serializable = matches!(args.consistency, Consistency::Serializable);
    let request = PbRangeRequest { key, serializable, ..Default::default() };
    let tally = drive(Arc::new(Range { request }), connections, &super::load(common, 10_000)).await;
    let name = match args.consistency {
        Consistency::Linearizable => "range-l",
        Consistency::Serializable => "range-s",
    };
    Ok(Report::new(name, common, &tally))
}
