//! The Kubernetes API server over keel's store: REST for the served types, discovery, and the
//! list/watch cache co-designed with the store (see ARCHITECTURE.md and `cache.rs`).
//!
//! **Architecture invariant:** this is the only crate that knows HTTP and Kubernetes types. It
//! reaches the store through the [`Storage`] seam: in process over `raft` and `watch`
//! ([`NativeStorage`]), later over an external etcd.
//!
//! A request's path: `api.rs` parses it (`route.rs`) and finds the resource in the registry table
//! (`registry.rs`); reads come from the resource's watch cache (`list.rs`, `watch_http.rs`),
//! writes go through `writer.rs` (decode, defaults, validation, a conditional store write).

mod aggregated_discovery;
mod api;
mod apply;
mod binding;
mod cache;
mod cache_feed;
mod cache_handoff;
mod cached_object;
mod compaction;
mod continue_token;
mod defaults;
mod delete_options;
mod deletion;
mod discovery;
mod error;
mod events_v1;
mod field_set;
mod http;
mod json_patch;
mod keys;
mod kubeconfig;
mod kubernetes_service;
mod list;
mod list_body;
mod managed_fields;
mod namespaces;
mod node_ports;
mod object;
mod openapi;
mod openapi_schemas;
mod openapi_v2;
mod openapi_v2_protobuf;
mod patch;
mod patch_strategy;
mod protobuf;
mod protobuf_from_json;
mod protobuf_json;
mod protobuf_messages;
mod protobuf_schema;
mod protobuf_wire;
mod raw_json;
mod registry;
mod route;
mod scale;
mod selector;
mod serializes_as;
mod server;
mod service_allocation;
mod service_ip;
mod service_spec;
mod state;
mod status;
mod storage;
mod storage_etcd;
mod storage_native;
mod strategic_merge;
mod structured_merge;
mod table;
mod validation;
mod watch_http;
mod writer;

pub use error::{Error, Result};
pub use kubernetes_service::ReconcileGate;
pub use node_ports::PortRange;
/// Kubernetes protobuf bodies as JSON and back, for tests that read protobuf answers.
pub use protobuf::{decode as protobuf_to_json, encode as json_to_protobuf};
pub use server::{Server, ServerConfig};
pub use service_allocation::ServiceNetwork;
pub use service_ip::ServiceCidr;
pub use storage::{Condition, FeedItem, RangePage, Storage, StorageError, StorageResult, Write};
pub use storage_etcd::{EtcdStorage, EtcdTls};
pub use storage_native::NativeStorage;
