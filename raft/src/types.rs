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
        let kind = match &self.command {
            store::Command::Put(_) => "put",
            store::Command::DeleteRange(_) => "delete_range",
            store::Command::Txn(_) => "txn",
            store::Command::Compact { .. } => "compact",
            store::Command::LeaseGrant { .. } => "lease_grant",
            store::Command::LeaseRevoke { .. } => "lease_revoke",
            store::Command::LeaseCheckpoint { .. } => "lease_checkpoint",
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

openraft::declare_raft_types!(
    /// keel's Raft types: node ids are u64, nodes carry their peer address.
    pub TypeConfig:
        D = Request,
        R = Reply,
);
