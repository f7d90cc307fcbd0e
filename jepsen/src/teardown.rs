//! Everything the runner creates outside itself (member processes, network namespaces, a
//! bridge, the power-loss filesystems' mounts) is registered here the moment it exists, and removed at exit: by [`Guard`]'s drop on
//! a normal return or a panic, and explicitly after Ctrl-C / SIGTERM. Processes are ended by PID
//! only, never by name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Teardown {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pids: BTreeSet<u32>,
    namespaces: Vec<String>,
    links: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Teardown {
    pub fn new() -> Arc<Teardown> {
        Arc::new(Teardown::default())
    }

    pub fn add_pid(&self, pid: u32) {
        self.inner.lock().unwrap().pids.insert(pid);
    }

    pub fn remove_pid(&self, pid: u32) {
        self.inner.lock().unwrap().pids.remove(&pid);
    }

    pub fn add_namespace(&self, name: &str) {
        self.inner.lock().unwrap().namespaces.push(name.to_string());
    }

    pub fn add_link(&self, name: &str) {
        self.inner.lock().unwrap().links.push(name.to_string());
    }

    pub fn add_mount(&self, mountpoint: &Path) {
        self.inner.lock().unwrap().mounts.push(mountpoint.to_path_buf());
    }

    /// Kills every registered process (SIGCONT first, for paused ones), unmounts the mounts
    /// (lazily: a dying process may still hold a file), then deletes namespaces (which takes
    /// their veth ends along) and links. Idempotent.
    pub fn run(&self) {
        let Inner { pids, namespaces, links, mounts } = std::mem::take(&mut *self.inner.lock().unwrap());
        if !pids.is_empty() {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            let _ = Command::new("kill").arg("-CONT").args(&pids).output();
            let _ = Command::new("kill").arg("-KILL").args(&pids).output();
        }
        for mountpoint in mounts.iter().rev() {
            jepsen::lazyfs::detach(mountpoint);
        }
        for namespace in namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", namespace]).output();
        }
        for link in links.iter().rev() {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
    }
}

/// Runs the teardown when dropped.
#[derive(Debug)]
pub struct Guard(pub Arc<Teardown>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.run();
    }
}
