//! Group commit for the Raft log: appends write their entries to RocksDB without waiting for the
//! disk, and one thread makes them durable (`flush_wal(true)`: an fsync of the write-ahead log)
//! and only then tells openraft, through each append's callback.
//!
//! So a leader replicates an entry while its own fsync runs (the entry is readable at once, only
//! its acknowledgement waits), appends that arrive during one fsync share the next, and openraft's
//! core never blocks on the disk. Every callback still fires only after its entries are synced,
//! which is what openraft counts for commitment and what survives power loss.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;

use openraft::storage::IOFlushed;
use rocksdb::DB;

use crate::types::TypeConfig;

#[derive(Debug)]
pub(crate) struct WalSyncer {
    /// `None` only while dropping.
    pending: Option<mpsc::Sender<IOFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the syncing thread; it ends when the last clone of the log store is dropped.
    pub(crate) fn start(db: Arc<DB>) -> io::Result<WalSyncer> {
        let (pending, waiting) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let thread = std::thread::Builder::new().name("keel-raft-wal-sync".into()).spawn(move || run(&db, &waiting))?;
        Ok(WalSyncer { pending: Some(pending), thread: Some(thread) })
    }

    /// Fires `callback` once everything written to the log so far is on disk.
    pub(crate) fn after_sync(&self, callback: IOFlushed<TypeConfig>) {
        let Some(pending) = &self.pending else { return };
        if let Err(mpsc::SendError(callback)) = pending.send(callback) {
            callback.io_completed(Err(io::Error::other("the log's sync thread has stopped")));
        }
    }
}

impl Drop for WalSyncer {
    /// Closes the queue and waits for the thread, so its handle on the database is gone (and
    /// RocksDB closed, if it was the last) before the store's owner goes on, never racing the
    /// process's exit, which tears down RocksDB's globals.
    fn drop(&mut self) {
        drop(self.pending.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &DB, waiting: &mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        // Everything queued by now was written before this fsync starts: one sync covers it all.
        let mut callbacks = vec![first];
        callbacks.extend(waiting.try_iter());
        let synced = db
            .flush_wal(true)
            .map_err(|error| error.into_string())
            .and_then(|()| crate::failpoint("raft::log::after_append").map_err(|error| error.to_string()));
        for callback in callbacks {
            callback.io_completed(synced.clone().map_err(io::Error::other));
        }
    }
}
