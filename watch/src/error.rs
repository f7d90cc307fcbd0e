/// What can go wrong creating or cancelling a watch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// etcd's message for a watch id reused on one stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateWatchId { watch_id: i64 },
    #[error("mvcc: watcher not found")]
    WatcherNotFound { watch_id: i64 },
    /// The stream already has its most watchers ([`crate::WatchOptions::watchers_per_stream_max`]).
    #[error("too many watchers on one stream (at most {max})")]
    TooManyWatchers { max: usize },
    /// The hub was shut down.
    #[error("watch hub is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
