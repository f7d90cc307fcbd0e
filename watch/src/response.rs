use store::Event;

/// A watcher's id, unique within its stream. etcd lets the client choose it.
pub type WatchId = i64;

/// The watch id of a stream-wide progress response (etcd's `InvalidWatchID`).
pub const PROGRESS_WATCH_ID: WatchId = -1;

/// One message to a stream's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub watch_id: WatchId,
    /// For events: every event of this watcher at or below it has now been sent. For progress:
    /// the same, as a bookmark. For created and canceled: the published revision at the time.
    pub revision: i64,
    pub body: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// Always the first response of a watcher.
    Created,
    /// Events in revision order; a revision is never split across two responses.
    Events(Vec<Event>),
    Progress,
    /// The last response of a watcher.
    Canceled(CancelReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The consumer cancelled it.
    Requested,
    /// It asked for (or fell behind to) revisions compaction has removed.
    Compacted { compact_revision: i64 },
}
