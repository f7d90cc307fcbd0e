//! The openraft type configuration: what a log entry carries and what applying it returns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Client commands, as replicated in the log: one entry carries every write a member joined
/// into one batch (`write_batch.rs`); each command still applies at its own revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub commands: Vec<store::Command>,
}

impl Request {
    pub fn one(command: store::Command) -> Self {
        Request { commands: vec![command] }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Commands can be large; their kinds are what a log line needs.
        match self.commands.as_slice() {
            [command] => formatter.write_str(command_kind(command)),
            commands => write!(formatter, "batch of {}", commands.len()),
        }
    }
}

fn command_kind(command: &store::Command) -> &'static str {
    let command = match command {
        store::Command::AsUser { command, .. } => command.as_ref(),
        command => command,
    };
    match command {
        store::Command::Put(_) => "put",
        store::Command::DeleteRange(_) => "delete_range",
        store::Command::Txn(_) => "txn",
        store::Command::Compact { .. } => "compact",
        store::Command::LeaseGrant { .. } => "lease_grant",
        store::Command::LeaseRevoke { .. } => "lease_revoke",
        store::Command::LeaseCheckpoint { .. } => "lease_checkpoint",
        store::Command::Auth(_) => "auth",
        store::Command::AsUser { .. } => "nested_as_user",
    }
}

/// What applying an entry returned: one result per command of a [`Request`]. Blank and
/// membership entries apply to nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Applied(Vec<Result<store::Response, store::Error>>),
    NoCommand,
}

/// What the membership records about a member, as etcd's member list shows it. The name and
/// client URLs arrive when the member publishes them after it starts (an added member has only
/// its peer URLs until then).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl MemberNode {
    pub fn new(name: &str, peer_urls: Vec<String>) -> Self {
        MemberNode { name: name.to_string(), peer_urls, client_urls: Vec::new() }
    }
}

openraft::declare_raft_types!(
    /// keel's Raft types: node ids are u64 (etcd's member ids), nodes are [`MemberNode`]s.
    pub TypeConfig:
        D = Request,
        R = Reply,
        Node = MemberNode,
);
