//! `--conns`: M etcd clients, each one gRPC connection to one endpoint (round-robin over
//! `--endpoints`, as etcd's benchmark dials them); client task i uses connection i mod M.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

pub struct Connections {
    clients: Vec<Client>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Connections({})", self.clients.len())
    }
}

impl Connections {
    pub async fn connect(endpoints: &[String], conns: u64, dial_timeout: Duration) -> Result<Connections, String> {
        if endpoints.is_empty() {
            return Err("no endpoints".to_string());
        }
        let mut clients = Vec::new();
        for index in 0..conns as usize {
            let endpoint = &endpoints[index % endpoints.len()];
            let options = ConnectOptions::new().with_connect_timeout(dial_timeout);
            let client = tokio::time::timeout(dial_timeout, Client::connect([endpoint.as_str()], Some(options)))
                .await
                .map_err(|_| format!("{endpoint}: no connection within {dial_timeout:?}"))?
                .map_err(|error| format!("{endpoint}: {error}"))?;
            clients.push(client);
        }
        Ok(Connections { clients })
    }

    /// The connection for client (or watch stream, or lease) number `index`.
    pub fn get(&self, index: u64) -> Client {
        self.clients[index as usize % self.clients.len()].clone()
    }
}

impl crate::driver::Pool for Connections {
    type Connection = Client;

    fn get(&self, index: u64) -> Client {
        Connections::get(self, index)
    }
}
