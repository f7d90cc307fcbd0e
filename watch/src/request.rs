use store::KeyRange;

/// What a watcher wants to see.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// The first revision to deliver; 0 means "after the current one". A start below the compact
    /// revision cancels the watch with the compact revision, as etcd does.
    pub start_revision: i64,
    /// Attach each event's previous version.
    pub prev_kv: bool,
    /// etcd's NOPUT filter: leave out puts.
    pub filter_puts: bool,
    /// etcd's NODELETE filter: leave out deletes.
    pub filter_deletes: bool,
    /// Send a progress response every [`crate::WatchOptions::progress_notify_interval_ms`] when
    /// the watcher is synced.
    pub progress_notify: bool,
    /// Send a progress response at every published revision that brings this watcher no event:
    /// the apiserver cache's mode, so it always knows "I am current up to R".
    pub progress_every_revision: bool,
}

impl WatchRequest {
    pub fn new(range: KeyRange) -> Self {
        WatchRequest {
            range,
            start_revision: 0,
            prev_kv: false,
            filter_puts: false,
            filter_deletes: false,
            progress_notify: false,
            progress_every_revision: false,
        }
    }
}
