//! keel's store replicated with openraft.
//!
//! **Architecture invariant:** `raft` owns consensus and its log; the store below it knows
//! nothing of Raft. The state machine hands each committed batch to `store::Store::apply` with
//! the Raft position (last log id and membership) as the store's opaque applied position, so
//! data and position land in one write and a restart neither loses nor re-applies a command.
//!
//! This crate is being built in steps (issue 3): the type configuration, the RocksDB log store
//! (`log_store.rs`) and the state machine (`state_machine.rs`) are here and pass openraft's
//! storage suite; the peer transport, the member process and membership commands come next.

mod codec;
mod lessor;
mod log_store;
mod member;
mod state_machine;
mod types;

pub use lessor::Lessor;
pub use log_store::LogStore;
pub use member::{Member, MemberConfig, MemberError};
pub use state_machine::{ChangeListener, SnapshotBuilder, SnapshotFile, StateMachine};
pub use types::{Reply, Request, TypeConfig};
