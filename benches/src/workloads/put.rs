//! `put`: etcd's `benchmark put`.

use std::sync::Arc;

use etcd_client::Client;

use crate::cli::{Common, PutArgs};
use crate::connections::Connections;
use crate::driver::{drive, Operation, Outcome};
use crate::keys::{value, KeyGen};
use crate::report::Report;

struct Put {
    keys: KeyGen,
    value: Vec<u8>,
}

impl Operation for Put {
    async fn run(&self, client: &mut Client, index: u64) -> Outcome {
        client.put(self.keys.key(index), self.value.clone(), None).await.into()
    }
}

pub async fn run(common: &Common, connections: &Connections, args: &PutArgs) -> Result<Report, String> {
    let keys = KeyGen::new(&args.prefix, args.key_size, args.key_space, args.sequential_keys)?;
    let operation = Arc::new(Put { keys, value: value(args.val_size) });
    let tally = drive(operation, connections, &super::load(common, 10_000)).await;
    Ok(Report::new("put", common, &tally))
}
