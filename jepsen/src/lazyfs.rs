//! A LazyFS-like filesystem for power-loss faults. SIGKILL does not simulate a power cut: the
//! page cache survives the process, so every write(2) that returned is still read back after a
//! restart, synced or not. [`LazyFs`] mounts a FUSE passthrough over a backing directory (a
//! member's data dir lives in it) that remembers, per file, what was written since the file's
//! last fsync; [`LazyFs::lose_unsynced`], called after the member is SIGKILLed and before it
//! restarts, puts every such file back to what its last fsync made durable, as a power cut would.
//!
//! The model (see `passthrough.rs` for the details):
//! - covered: the data of files, per file: a write, truncate or fallocate is durable once an
//!   fsync or fdatasync of that file (any descriptor of it) returned; until then a loss takes it
//!   back, whole (no torn or reordered writes: a loss keeps the last synced state exactly);
//! - covered by default, [`MetadataModel`]: directory entries, per directory (`entries.rs`). A
//!   create, mkdir, link, unlink, rmdir or rename is durable once its directory was fsynced
//!   since (an fsync of the file is not enough), or once it is older than the commit window (5 s,
//!   ext4's default journal commit); until then a loss undoes it, newest first: a created file
//!   disappears with its data, a rename goes back and the file it replaced comes back, an
//!   unlinked file comes back with its durable data. `JEPSEN_LAZYFS_METADATA=eager` turns this
//!   off (metadata applied at once and never lost, LazyFS's own default); `=fsyncdir` removes
//!   the commit window (only fsyncdir makes an entry durable);
//! - not covered: chmod, chown, utimes (applied at once, kept), ordering across directories
//!   beyond one rename, torn directory blocks.
//!
//! Mounting needs `/dev/fuse` and the right to mount: fuser mounts with mount(2) directly when
//! the runner is root (no libfuse, no `fusermount`), and falls back to `fusermount3` otherwise.
//! [`LazyFs::mount`] says [`Error::Unavailable`] when neither works, so callers can skip.

mod entries;
mod inodes;
mod passthrough;
mod unsynced;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier};

pub use entries::{MetadataModel, Undone};
use passthrough::{Mounted, Passthrough};
pub use unsynced::Lost;

/// ext4's default journal commit interval: metadata older than this survives a power cut.
pub const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// Chooses the metadata model of [`LazyFs::mount`]: unset (or `window`) loses entries not
/// fsynced within the commit window, `fsyncdir` loses every entry not fsynced, `eager` loses none.
pub const METADATA_VARIABLE: &str = "JEPSEN_LAZYFS_METADATA";

impl MetadataModel {
    /// Metadata applied at once and never lost (LazyFS's default).
    pub fn eager() -> MetadataModel {
        MetadataModel { lose_unsynced: false, commit: None, exempt_pid: None }
    }

    /// Entries not fsynced are lost; `commit`: those older than it are kept anyway.
    pub fn lazy(commit: Option<std::time::Duration>) -> MetadataModel {
        MetadataModel { lose_unsynced: true, commit, exempt_pid: None }
    }

    /// The runner's: from [`METADATA_VARIABLE`], with the runner's own operations (making a
    /// member's data dir, wiping it) durable at once, as an operator's done long before.
    pub fn from_environment() -> std::result::Result<MetadataModel, String> {
        let model = match std::env::var(METADATA_VARIABLE).as_deref() {
            Err(_) | Ok("") | Ok("window") => MetadataModel::lazy(Some(COMMIT_WINDOW)),
            Ok("fsyncdir") => MetadataModel::lazy(None),
            Ok("eager") => return Ok(MetadataModel::eager()),
            Ok(other) => return Err(format!("{METADATA_VARIABLE}={other}: expected window, fsyncdir or eager")),
        };
        Ok(MetadataModel { exempt_pid: Some(std::process::id()), ..model })
    }

    /// One line for the console.
    pub fn describe(&self) -> String {
        match (self.lose_unsynced, self.commit) {
            (false, _) => "directory entries are never lost".to_string(),
            (true, Some(commit)) => {
                format!("directory entries not fsynced (fsyncdir) in the last {} s are lost too", commit.as_secs_f64())
            }
            (true, None) => "directory entries not fsynced (fsyncdir) are lost too".to_string(),
        }
    }
}

/// fuser worker threads per mount: RocksDB reads from several threads while one fsyncs.
const WORKER_THREADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This machine cannot mount a FUSE filesystem here (no /dev/fuse, or no right to mount).
    #[error("FUSE is not available: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One mounted LazyFS: `mountpoint` shows `backing`. Unmounted (lazily) when dropped.
#[derive(Debug)]
pub struct LazyFs {
    fs: Arc<Passthrough>,
    notifier: Notifier,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    backing: PathBuf,
}

/// What one power cut dropped: in total, and per file; and the directory entries it undid.
#[derive(Clone, Debug, Default)]
pub struct Loss {
    pub total: Lost,
    pub files: Vec<(PathBuf, Lost)>,
    pub entries: Vec<Undone>,
}

/// How deep [`LazyFs::lose_unsynced_by_file`] looks for the names of files (a data dir is
/// three or four levels deep).
const PATH_SEARCH_DEPTH_MAX: usize = 8;

/// Every file under `dir` by its (device, inode) key, as a path relative to the root.
fn find_paths(dir: &Path, relative: &Path, paths: &mut HashMap<unsynced::FileKey, PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else { continue };
        let name = relative.join(entry.file_name());
        if metadata.is_dir() && depth > 0 {
            find_paths(&entry.path(), &name, paths, depth - 1);
        } else if metadata.is_file() {
            paths.insert((metadata.dev(), metadata.ino()), name);
        }
    }
}

impl LazyFs {
    /// Mounts a passthrough of `backing` (created if missing) at `mountpoint` (created if
    /// missing; must be empty), with the metadata model [`MetadataModel::from_environment`].
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LazyFs> {
        let model = MetadataModel::from_environment().map_err(|error| Error::Io(io::Error::other(error)))?;
        LazyFs::mount_with(backing, mountpoint, model)
    }

    /// [`LazyFs::mount`] with a given metadata model. Replaced and unlinked files that a loss may
    /// bring back are kept in `<backing>.attic` meanwhile (same filesystem, emptied now).
    pub fn mount_with(backing: &Path, mountpoint: &Path, model: MetadataModel) -> Result<LazyFs> {
        if !Path::new("/dev/fuse").exists() {
            return Err(Error::Unavailable("/dev/fuse does not exist".to_string()));
        }
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(mountpoint)?;
        let mut attic = backing.as_os_str().to_owned();
        attic.push(".attic");
        let fs = Arc::new(Passthrough::new(backing, Path::new(&attic), model)?);
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lazyfs".to_string()), MountOption::Subtype("jepsen".into())];
        config.n_threads = Some(WORKER_THREADS);
        config.clone_fd = true;
        let session = match fuser::spawn_mount(Mounted(fs.clone()), mountpoint, &config) {
            Ok(session) => session,
            // Without the right to mount(2), fuser tries the fusermount helpers; their absence
            // (NotFound) or a refusal means this machine does not allow it.
            Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => {
                return Err(Error::Unavailable(format!(
                    "mounting at {} failed ({error}); needs root (mount(2)) or fusermount3",
                    mountpoint.display()
                )));
            }
            Err(error) => return Err(Error::Io(error)),
        };
        let notifier = session.notifier();
        Ok(LazyFs {
            fs,
            notifier,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
            backing: backing.to_path_buf(),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn metadata_model(&self) -> &MetadataModel {
        self.fs.entries.model()
    }

    /// The power cut: every file's unsynced writes, truncations and allocations are undone, and
    /// (unless metadata is eager) every directory's unsynced entries. Call it only when nothing
    /// uses the mount (the member is dead), or what is lost is arbitrary.
    pub fn lose_unsynced(&self) -> Result<Lost> {
        Ok(self.lose_unsynced_by_file()?.total)
    }

    /// [`LazyFs::lose_unsynced`], saying which files lost what (paths relative to the mount;
    /// a file no longer linked anywhere shows as `(unlinked)`) and which entries were undone.
    pub fn lose_unsynced_by_file(&self) -> Result<Loss> {
        // Entries first: a file that disappears takes its data with it (its record is dropped).
        let entries = self.fs.entries.lose();
        for key in &entries.gone {
            self.fs.unsynced.forget(*key);
        }
        for (dir, name) in &entries.touched {
            if let Some(id) = self.fs.inodes.id_of(*dir) {
                let _ = self.notifier.inval_entry(INodeNo(id), name);
                let _ = self.notifier.inval_inode(INodeNo(id), 0, 0);
            }
        }
        let lost = self.fs.unsynced.lose()?;
        // The kernel may still cache the lost pages and sizes of files it knows.
        for (key, _) in &lost {
            if let Some(id) = self.fs.inodes.id_of(*key) {
                // ENOENT (the kernel forgot the inode meanwhile) is harmless, and fuser hides it.
                let _ = self.notifier.inval_inode(INodeNo(id), 0, 0);
            }
        }
        let mut paths = HashMap::new();
        if !lost.is_empty() {
            find_paths(&self.backing, Path::new(""), &mut paths, PATH_SEARCH_DEPTH_MAX);
        }
        let mut loss = Loss { entries: entries.undone, ..Loss::default() };
        for (key, one) in lost {
            loss.total += one;
            let path = paths.get(&key).cloned().unwrap_or_else(|| PathBuf::from("(unlinked)"));
            loss.files.push((path, one));
        }
        loss.files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(loss)
    }

    /// Files with writes not yet synced.
    pub fn unsynced_files(&self) -> usize {
        self.fs.unsynced.files()
    }

    /// Directory entry operations not yet durable.
    pub fn unsynced_entries(&self) -> usize {
        self.fs.entries.pending()
    }

    /// Unmounts now: lazily (MNT_DETACH), so a process that still has a file open does not keep
    /// the mount point busy.
    pub fn unmount(mut self) -> io::Result<()> {
        self.detach()
    }

    fn detach(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let detached = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        // fuser's own unmount on drop then finds nothing mounted there (harmless).
        drop(session);
        detached.map_err(io::Error::from)
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// Unmounts whatever is mounted at `mountpoint`, lazily; for teardown after a crash of the
/// runner's own logic, when no [`LazyFs`] value is left to drop.
pub fn detach(mountpoint: &Path) {
    let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
}
