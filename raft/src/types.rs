//! The openraft type configuration: what a log entry carries and what applying it returns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A client command, as replicated in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: store::Command,
}

impl fmt::Display for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Commands can be large; the variant is what a log line needs.
        let command = match &self.command {
            store::Command::AsUser { command, .. } => command.as_ref(),
            command => command,
        };
        let kind = match command {
            store::Command::Put(_) => "put",
            store::Command::DeleteRange(_) => "delete_range",
            store::Command::Txn(_) => "txn",
            store::Command::Compact { .. } => "compact",
            store::Command::LeaseGrant { .. } => "lease_grant",
            store::Command::LeaseRevoke { .. } => "lease_revoke",
            store::Command::LeaseCheckpoint { .. } => "lease_checkpoint",
            store::Command::Auth(_) => "auth",
            store::Command::AsUser { .. } => "nested_as_user",
        };
        formatter.write_str(kind)
    }
}

/// What applying an entry returned. Blank and membership entries apply to nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Applied(Result<store::Response, store::Error>),
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
