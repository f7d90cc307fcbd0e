//! The inode table: FUSE node ids to backing files. Each known node holds an `O_PATH` descriptor
//! of its backing file or directory (as libfuse's `passthrough_ll` does), so renames and links in
//! the backing tree never leave a stale path behind; operations use the `*at` system calls
//! relative to it, or `/proc/self/fd/<n>` to reopen it.
//!
//! Node ids come from a counter and are never reused (so the generation is always 0); the root
//! is 1. One backing file has one node id while the kernel remembers it: a second lookup (through
//! another hard link, say) finds it by its (device, inode) key and counts one more lookup, which
//! the kernel gives back with `forget`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::unsynced::FileKey;

/// The root's node id, as FUSE fixes it.
pub const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    fd: Arc<OwnedFd>,
    key: FileKey,
    /// Lookups the kernel holds (each entry reply is one; `forget` returns them).
    lookups: u64,
}

#[derive(Debug)]
struct Table {
    by_id: HashMap<u64, Node>,
    by_key: HashMap<FileKey, u64>,
    next_id: u64,
}

#[derive(Debug)]
pub struct Inodes {
    table: Mutex<Table>,
}

impl Inodes {
    pub fn new(root: OwnedFd, root_key: FileKey) -> Inodes {
        let root = Node { fd: Arc::new(root), key: root_key, lookups: 1 };
        let table = Table {
            by_id: HashMap::from([(ROOT, root)]),
            by_key: HashMap::from([(root_key, ROOT)]),
            next_id: ROOT + 1,
        };
        Inodes { table: Mutex::new(table) }
    }

    /// The `O_PATH` descriptor and key of node `id`, if the kernel still knows it.
    pub fn get(&self, id: u64) -> Option<(Arc<OwnedFd>, FileKey)> {
        let table = self.table.lock().unwrap();
        table.by_id.get(&id).map(|node| (node.fd.clone(), node.key))
    }

    /// Counts one lookup of the backing file `key` (opened as `fd`) and returns its node id:
    /// the existing one if the kernel knows the file already (then `fd` is dropped), else a new one.
    pub fn remember(&self, fd: OwnedFd, key: FileKey) -> u64 {
        let mut table = self.table.lock().unwrap();
        if let Some(&id) = table.by_key.get(&key) {
            table.by_id.get_mut(&id).expect("by_key and by_id agree").lookups += 1;
            return id;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.by_id.insert(id, Node { fd: Arc::new(fd), key, lookups: 1 });
        table.by_key.insert(key, id);
        id
    }

    /// The kernel gives back `count` lookups of node `id`; at zero the node is dropped (never the
    /// root).
    pub fn forget(&self, id: u64, count: u64) {
        let mut table = self.table.lock().unwrap();
        let Some(node) = table.by_id.get_mut(&id) else { return };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 && id != ROOT {
            let key = node.key;
            table.by_id.remove(&id);
            if table.by_key.get(&key) == Some(&id) {
                table.by_key.remove(&key);
            }
        }
    }

    /// The node id the kernel knows the backing file `key` by, if any.
    pub fn id_of(&self, key: FileKey) -> Option<u64> {
        self.table.lock().unwrap().by_key.get(&key).copied()
    }
}
