//! `put`: etcd's `benchmark put`.

use std::sync::Arc;

use etcd_client::proto::PbPutRequest;

use crate::cli::{Common, PutArgs};
use crate::driver::{drive, Operation, Outcome};
use crate::keys::{value, KeyGen};
use crate::report::Report;
use crate::unary::{UnaryConnection, UnaryConnections};

struct Put {
    keys: KeyGen,
    value: Vec<u8>,
}

impl Operation for Put {
    type Connection = UnaryConnection;

    async fn run(&self, connection: &mut UnaryConnection, index: u64) -> Outcome {
        let request = PbPutRequest { key: self.keys.key(index), value: self.value.clone(), ..Default::default() };
        connection.put(&request).await.into()
    }
}

pub async fn run(common: &Common, connections: &UnaryConnections, args: &PutArgs) -> Result<Report, String> {
    let keys = KeyGen::new(&args.prefix, args.key_size, args.key_space, args.sequential_keys)?;
    let operation = Arc::new(Put { keys, value: value(args.val_size) });
    let tally = drive(operation, connections, &super::load(common, 10_000)).await;
    Ok(Report::new("put", common, &tally))
}
