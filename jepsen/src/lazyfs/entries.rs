//! What a power cut would take away from directories: the entries created, renamed and removed
//! since the directory was last fsynced. Every such operation is applied to the backing tree at
//! once and recorded here, with what undoing it needs; [`Entries::lose`] undoes the ones that are
//! not durable, newest first.
//!
//! The semantics modelled (the weakest that portable code may rely on, as in ALICE's abstract
//! persistence model and fsync(2)'s "an explicit fsync() on a file descriptor for the directory
//! is also needed"):
//! - an operation on a directory entry (create, mknod, mkdir, symlink, link, unlink, rmdir,
//!   rename) is durable once its directory has been fsynced since (fsyncdir); each directory
//!   independently. A rename between two directories is one atomic operation, durable once
//!   either of them is fsynced (it is one journal transaction on ext4 and xfs).
//! - an fsync of a file does not make its name durable (it does on ext4 and xfs with a journal,
//!   which commit every earlier metadata change with it; it does not on ext2 or ext4 without a
//!   journal, and POSIX does not promise it).
//! - an operation older than the commit window (`commit`, ext4's `commit=5` seconds by default)
//!   is durable anyway: every real filesystem writes its metadata back within seconds, and
//!   without this a directory made at setup and never fsynced (RocksDB's own directory, etcd's
//!   `member/snap`) would vanish at any later power cut, which no real disk does.
//!
//! Undoing: a created entry is removed (a directory with everything in it; a file with its data,
//! synced or not), a renamed entry goes back to its old name and the file it replaced comes back,
//! a removed entry comes back (a file with its durable data; a directory empty). Each undo first
//! checks that the name still holds what the operation put there (a later operation may be
//! durable through another directory), and otherwise leaves it. Replaced and unlinked files are
//! kept reachable for that in the attic, a directory beside the backing one (on the same
//! filesystem), by a hard link made before the operation, released when the operation becomes
//! durable or is undone. What is not modelled: ordering between directories beyond that (ext4's
//! journal keeps every metadata change in order), a replaced directory (an empty one, which a
//! rename may replace) coming back, chmod/chown/utimes (applied at once, kept), and torn
//! directory blocks.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::unsynced::FileKey;

/// A file kept reachable in the attic while an operation that replaced or unlinked it may be
/// undone.
#[derive(Debug)]
pub struct Saved {
    name: String,
    key: FileKey,
}

/// How to undo one operation.
#[derive(Debug)]
pub enum Undo {
    /// `name` in `dir` was made, for the file or directory `key`.
    Created { dir: Arc<OwnedFd>, name: OsString, key: FileKey },
    /// `from/from_name` became `to/to_name` (or the two were exchanged), replacing `replaced`.
    Renamed {
        from: Arc<OwnedFd>,
        from_name: OsString,
        to: Arc<OwnedFd>,
        to_name: OsString,
        key: FileKey,
        exchange: bool,
        replaced: Option<Saved>,
    },
    /// `name` in `dir` was removed: a file now in the attic (`saved`), or an empty directory
    /// (`dir_mode`).
    Removed { dir: Arc<OwnedFd>, name: OsString, saved: Option<Saved>, dir_mode: Option<u32> },
}

#[derive(Debug)]
struct Op {
    at: Instant,
    /// The directories it changed (one, or two for a rename between directories).
    dirs: Vec<FileKey>,
    undo: Undo,
}

#[derive(Debug, Default)]
pub struct State {
    ops: Vec<Op>,
    next_attic: u64,
}

/// One directory entry a loss changed back, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undone {
    /// Relative to the mount.
    pub path: PathBuf,
    /// `create`, `rename from <path>`, `unlink`, `mkdir`, ...
    pub what: String,
}

/// What a loss changed: the entries undone, the files no longer reachable (their data records
/// are moot) and every (directory, name) the kernel may still cache.
#[derive(Debug, Default)]
pub struct EntriesLost {
    pub undone: Vec<Undone>,
    pub gone: Vec<FileKey>,
    pub touched: Vec<(FileKey, OsString)>,
}

/// How metadata behaves on a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataModel {
    /// Off: metadata is applied at once and always survives (LazyFS's default).
    pub lose_unsynced: bool,
    /// Operations older than this at the power cut are durable (None: only fsyncdir makes them so).
    pub commit: Option<Duration>,
    /// Operations by any thread of this process are durable at once (the runner's own setup: a data directory
    /// it made stands for an operator's, synced long before any power cut).
    pub exempt_pid: Option<u32>,
}

#[derive(Debug)]
pub struct Entries {
    model: MetadataModel,
    state: Mutex<State>,
    backing: PathBuf,
    attic: PathBuf,
    attic_fd: Option<OwnedFd>,
}

/// The journal, locked for one operation: the system call and its record happen under the lock,
/// so records are in the order the backing tree saw.
pub struct Journal<'a> {
    entries: &'a Entries,
    state: MutexGuard<'a, State>,
    recording: bool,
}

fn key_at(dir: &OwnedFd, name: &OsStr) -> Option<(FileKey, u32, u64)> {
    let stat = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(((stat.st_dev, stat.st_ino), stat.st_mode, stat.st_nlink))
}

fn is_dir(mode: u32) -> bool {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

impl Entries {
    /// `attic` must be on the same filesystem as `backing`; it is made (empty) if the model loses
    /// metadata.
    pub fn new(backing: &Path, attic: &Path, model: MetadataModel) -> std::io::Result<Entries> {
        let attic_fd = if model.lose_unsynced {
            let _ = std::fs::remove_dir_all(attic);
            std::fs::create_dir_all(attic)?;
            Some(nix::fcntl::open(attic, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?)
        } else {
            None
        };
        Ok(Entries {
            model,
            state: Mutex::default(),
            backing: backing.to_path_buf(),
            attic: attic.to_path_buf(),
            attic_fd,
        })
    }

    pub fn model(&self) -> &MetadataModel {
        &self.model
    }

    /// Locks the journal for one operation by thread `pid` (FUSE says which thread asked).
    pub fn begin(&self, pid: u32) -> Journal<'_> {
        let exempt = self
            .model
            .exempt_pid
            .is_some_and(|process| pid == process || Path::new(&format!("/proc/{process}/task/{pid}")).exists());
        let recording = self.model.lose_unsynced && !exempt;
        Journal { entries: self, state: self.state.lock().unwrap(), recording }
    }

    /// Operations not yet durable.
    pub fn pending(&self) -> usize {
        self.state.lock().unwrap().ops.len()
    }

    /// fsyncdir: every operation on `dir` so far is durable. Returns the files whose last link
    /// was the attic's (their data records are moot now).
    pub fn sync_dir(&self, dir: FileKey) -> Vec<FileKey> {
        let mut state = self.state.lock().unwrap();
        let ops = std::mem::take(&mut state.ops);
        let (durable, pending): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|op| op.dirs.contains(&dir));
        state.ops = pending;
        durable.into_iter().flat_map(|op| self.release(op.undo)).collect()
    }

    /// Drops the attic links an operation held; returns the files that had no other link.
    fn release(&self, undo: Undo) -> Vec<FileKey> {
        let saved = match undo {
            Undo::Renamed { replaced, .. } => replaced,
            Undo::Removed { saved, .. } => saved,
            Undo::Created { .. } => None,
        };
        saved.into_iter().filter_map(|saved| self.release_saved(&saved)).collect()
    }

    fn release_saved(&self, saved: &Saved) -> Option<FileKey> {
        let attic = self.attic_fd.as_ref()?;
        let (_, _, links) = key_at(attic, OsStr::new(&saved.name))?;
        nix::unistd::unlinkat(attic, saved.name.as_str(), UnlinkatFlags::NoRemoveDir).ok()?;
        (links == 1).then_some(saved.key)
    }

    /// The path of the directory `dir` relative to the backing root, for reports.
    fn dir_path(&self, dir: &OwnedFd) -> PathBuf {
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir))).unwrap_or_default();
        link.strip_prefix(&self.backing).map(Path::to_path_buf).unwrap_or(link)
    }

    /// The power cut: operations older than the commit window are durable; every other one is
    /// undone, newest first.
    pub fn lose(&self) -> EntriesLost {
        let mut state = self.state.lock().unwrap();
        let ops = std::mem::take(&mut state.ops);
        let now = Instant::now();
        let mut lost = EntriesLost::default();
        let mut pending = Vec::new();
        for op in ops {
            let committed = self.model.commit.is_some_and(|commit| now.saturating_duration_since(op.at) >= commit);
            if committed {
                lost.gone.extend(self.release(op.undo));
            } else {
                pending.push(op);
            }
        }
        for op in pending.into_iter().rev() {
            self.undo(op.undo, &mut lost, &mut state);
        }
        lost
    }

    fn undo(&self, undo: Undo, lost: &mut EntriesLost, state: &mut State) {
        match undo {
            Undo::Created { dir, name, key } => {
                let Some((current, mode, links)) = key_at(&dir, &name) else { return };
                if current != key {
                    return;
                }
                let path = self.dir_path(&dir).join(&name);
                let removed = if is_dir(mode) {
                    // Everything under it goes with it: move it into the attic, then delete it.
                    let parked = format!("dir-{}", state.next_attic);
                    state.next_attic += 1;
                    let attic = self.attic_fd.as_ref().expect("recording needs the attic");
                    let moved = nix::fcntl::renameat(&*dir, name.as_os_str(), attic, parked.as_str()).is_ok();
                    if moved {
                        files_only_in(&self.attic.join(&parked), &mut lost.gone);
                    }
                    moved && std::fs::remove_dir_all(self.attic.join(&parked)).is_ok()
                } else {
                    if links == 1 {
                        lost.gone.push(key);
                    }
                    nix::unistd::unlinkat(&*dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok()
                };
                if removed {
                    let what = if is_dir(mode) { "mkdir" } else { "create" };
                    lost.touched.push((dir_key(&dir), name));
                    lost.undone.push(Undone { path, what: what.to_string() });
                }
            }
            Undo::Renamed { from, from_name, to, to_name, key, exchange, replaced } => {
                let back = if exchange {
                    key_at(&to, &to_name).is_some_and(|(current, _, _)| current == key)
                        && nix::fcntl::renameat2(
                            &*to,
                            to_name.as_os_str(),
                            &*from,
                            from_name.as_os_str(),
                            RenameFlags::RENAME_EXCHANGE,
                        )
                        .is_ok()
                } else {
                    key_at(&to, &to_name).is_some_and(|(current, _, _)| current == key)
                        && nix::fcntl::renameat2(
                            &*to,
                            to_name.as_os_str(),
                            &*from,
                            from_name.as_os_str(),
                            RenameFlags::RENAME_NOREPLACE,
                        )
                        .is_ok()
                };
                let mut restored = false;
                if let Some(saved) = &replaced {
                    let attic = self.attic_fd.as_ref().expect("recording needs the attic");
                    restored = key_at(&to, &to_name).is_none()
                        && nix::unistd::linkat(attic, saved.name.as_str(), &*to, to_name.as_os_str(), AtFlags::empty())
                            .is_ok();
                    if let Some(key) = self.release_saved(saved) {
                        lost.gone.push(key);
                    }
                }
                if back {
                    let what = format!("rename to {}", self.dir_path(&to).join(&to_name).display());
                    lost.undone.push(Undone { path: self.dir_path(&from).join(&from_name), what });
                    lost.touched.push((dir_key(&from), from_name));
                }
                if back || restored {
                    lost.touched.push((dir_key(&to), to_name.clone()));
                }
                if restored {
                    let what = "replaced by a rename, back".to_string();
                    lost.undone.push(Undone { path: self.dir_path(&to).join(&to_name), what });
                }
            }
            Undo::Removed { dir, name, saved, dir_mode } => {
                let free = key_at(&dir, &name).is_none();
                let back = match (&saved, dir_mode) {
                    (Some(saved), _) => {
                        let attic = self.attic_fd.as_ref().expect("recording needs the attic");
                        free && nix::unistd::linkat(
                            attic,
                            saved.name.as_str(),
                            &*dir,
                            name.as_os_str(),
                            AtFlags::empty(),
                        )
                        .is_ok()
                    }
                    (None, Some(mode)) => {
                        free && nix::sys::stat::mkdirat(
                            &*dir,
                            name.as_os_str(),
                            Mode::from_bits_truncate(mode & 0o7777),
                        )
                        .is_ok()
                    }
                    (None, None) => false,
                };
                if let Some(saved) = &saved {
                    if let Some(key) = self.release_saved(saved) {
                        lost.gone.push(key);
                    }
                }
                if back {
                    let what = if dir_mode.is_some() { "rmdir" } else { "unlink" };
                    lost.undone.push(Undone { path: self.dir_path(&dir).join(&name), what: what.to_string() });
                    lost.touched.push((dir_key(&dir), name));
                }
            }
        }
    }
}

/// The files under `dir` with no link elsewhere: they go with it.
fn files_only_in(dir: &Path, gone: &mut Vec<FileKey>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else { continue };
        if metadata.is_dir() {
            files_only_in(&entry.path(), gone);
        } else if metadata.is_file() && std::os::unix::fs::MetadataExt::nlink(&metadata) == 1 {
            gone.push((std::os::unix::fs::MetadataExt::dev(&metadata), std::os::unix::fs::MetadataExt::ino(&metadata)));
        }
    }
}

fn dir_key(dir: &OwnedFd) -> FileKey {
    nix::sys::stat::fstatat(dir, "", AtFlags::AT_EMPTY_PATH).map(|stat| (stat.st_dev, stat.st_ino)).unwrap_or_default()
}

impl Journal<'_> {
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Before an operation removes or replaces `name` in `dir`: a hard link to it in the attic,
    /// so that undoing the operation can bring it back. None for a directory, a missing name, or
    /// when not recording.
    pub fn save(&mut self, dir: &OwnedFd, name: &OsStr) -> Option<Saved> {
        if !self.recording {
            return None;
        }
        let (key, mode, _) = key_at(dir, name)?;
        if is_dir(mode) {
            return None;
        }
        let attic = self.entries.attic_fd.as_ref()?;
        let saved = format!("file-{}", self.state.next_attic);
        self.state.next_attic += 1;
        nix::unistd::linkat(dir, name, attic, saved.as_str(), AtFlags::empty()).ok()?;
        Some(Saved { name: saved, key })
    }

    /// Records a done operation on `dirs` (if recording; otherwise releases what it saved), and
    /// forgets the operations the commit window has made durable meanwhile (so the attic does not
    /// grow in a directory that is never fsynced). Returns the files a release left without a
    /// link: their data records are moot.
    #[must_use]
    pub fn record(&mut self, dirs: Vec<FileKey>, undo: Undo) -> Vec<FileKey> {
        if !self.recording {
            return self.entries.release(undo);
        }
        let now = Instant::now();
        self.state.ops.push(Op { at: now, dirs, undo });
        let Some(commit) = self.entries.model.commit else { return Vec::new() };
        // Operations are in time order: the committed ones are a prefix.
        let committed = self.state.ops.partition_point(|op| now.saturating_duration_since(op.at) >= commit);
        let old: Vec<Op> = self.state.ops.drain(..committed).collect();
        old.into_iter().flat_map(|op| self.entries.release(op.undo)).collect()
    }

    /// The operation failed: drop what was saved for it.
    pub fn discard(&mut self, saved: Option<Saved>) {
        if let Some(saved) = saved {
            self.entries.release_saved(&saved);
        }
    }
}
