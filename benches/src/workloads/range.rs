//! `range`: etcd's `benchmark range` on one key, linearizable or serializable.

use std::sync::Arc;

use etcd_client::{Client, GetOptions};

use crate::cli::{Common, Consistency, RangeArgs};
use crate::connections::Connections;
use crate::driver::{drive, Operation, Outcome};
use crate::keys::value;
use crate::report::Report;

struct Range {
    key: Vec<u8>,
    options: GetOptions,
}

impl Operation for Range {
    async fn run(&self, client: &mut Client, _index: u64) -> Outcome {
        match client.get(self.key.clone(), Some(self.options.clone())).await {
            Ok(response) if response.kvs().len() == 1 => Outcome::Ok,
            Ok(response) => Outcome::Error(format!("expected 1 key, got {}", response.kvs().len())),
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

pub async fn run(common: &Common, connections: &Connections, args: &RangeArgs) -> Result<Report, String> {
    let key = args.key.as_bytes().to_vec();
    connections
        .get(0)
        .put(key.clone(), value(args.val_size), None)
        .await
        .map_err(|error| format!("writing the key to range: {error}"))?;
    let options = match args.consistency {
        Consistency::Linearizable => GetOptions::new(),
        Consistency::Serializable => GetOptions::new().with_serializable(),
    };
    let tally = drive(Arc::new(Range { key, options }), connections, &super::load(common, 10_000)).await;
    let name = match args.consistency {
        Consistency::Linearizable => "range-l",
        Consistency::Serializable => "range-s",
    };
    Ok(Report::new(name, common, &tally))
}
