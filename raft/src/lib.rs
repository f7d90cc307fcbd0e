//! keel's store replicated with openraft.
//!
//! **Architecture invariant:** `raft` owns consensus and its log; the store below it knows
//! nothing of Raft. The state machine hands each committed batch to `store::Store::apply` with
//! the Raft position (last log id and membership) as the store's opaque applied position, so
//! data and position land in one write and a restart neither loses nor re-applies a command.
//!
//! Layout: `types.rs` (what the log carries), `log_store.rs` (the RocksDB log),
//! `state_machine.rs` (the store as openraft's state machine, snapshots as files),
//! `peer_network.rs` / `peer_service.rs` (the tonic transport between members),
//! `leader_call.rs` (calls only the leader serves, sent on from any member), `write_batch.rs`
//! (concurrent writes joined into one call and one entry), `read_index.rs` (concurrent read
//! barriers sharing read-index rounds), `member.rs`
//! (a running replica), `lessor.rs` (lease clocks), `identity.rs` (member and cluster ids),
//! `tls.rs` (rustls for https peer and client URLs, as etcd's TLS flags set it up).

mod append_stream;
mod auto_compaction;
mod codec;
mod identity;
mod leader_call;
mod lessor;
mod log_store;
mod member;
mod peer_network;
mod peer_service;
mod quota;
mod read_index;
mod recent_entries;
mod restore;
mod state_machine;
mod tls;
mod types;
mod write_batch;

/// The peer protocol generated from `proto/peer.proto`.
#[allow(missing_debug_implementations, unused_qualifications, clippy::all)]
mod proto {
    tonic::include_proto!("keel.peer.v1");
}

pub use auto_compaction::AutoCompaction;
pub use identity::{cluster_id, initial_member_id};
pub use leader_call::LeaseTimeToLive;
pub use lessor::Lessor;
pub use log_store::LogStore;
pub use member::{Alarm, ClusterState, Member, MemberConfig, MemberError, MemberInfo, MemberStatus};
pub use restore::restore_snapshot;
pub use state_machine::{ChangeListener, SnapshotBuilder, SnapshotFile, StateMachine};
pub use tls::{TlsConfig, TlsConnection, TlsIncoming};
pub use types::{MemberNode, Reply, Request, TypeConfig};

/// A named point where tests inject a crash or an error (the `failpoints` feature; a keel
/// process started with `FAILPOINTS=name=panic` aborts there).
#[inline]
pub(crate) fn failpoint(name: &str) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| Err(std::io::Error::other(format!("failpoint {name}"))));
    let _ = name;
    Ok(())
}
