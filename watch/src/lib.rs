//! Revisioned watch fan-out over the store's change feed, with etcd's six guarantees (ordered,
//! unique, reliable, atomic, resumable, bookmarkable), isolated from the write path.
//!
//! The applier calls [`WatchHub::publish`] with the changes of each applied batch; it never
//! waits on a watcher. Consumers open a [`WatchStream`] (one per etcd gRPC Watch stream, or one
//! per apiserver cache) and create watchers on it; every response of the stream's watchers
//! arrives, in order per watcher, on the stream's one bounded channel.
//!
//! **Architecture invariant:** `watch` reads only the store's change feed and history; it knows
//! nothing of gRPC, HTTP or Kubernetes.

mod catch_up;
mod error;
mod hub;
mod request;
mod response;
mod stream;

pub use error::{Error, Result};
pub use hub::{WatchHub, WatchOptions};
pub use request::WatchRequest;
pub use response::{CancelReason, ResponseBody, WatchId, WatchResponse, PROGRESS_WATCH_ID};
pub use stream::WatchStream;
