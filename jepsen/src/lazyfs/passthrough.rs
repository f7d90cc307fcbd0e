//! The FUSE filesystem: a passthrough to a backing directory in which every change of file
//! content goes through [`Unsynced`] and every change of a directory entry (create, mknod,
//! mkdir, symlink, link, unlink, rmdir, rename) through [`Entries`], so that a power cut can be
//! played back. Both are applied to the backing tree at once. fsync and fdatasync make a file's
//! data durable; fsyncdir makes a directory's entries durable; flush and close make nothing
//! durable. chmod, chown and utimes are applied at once and never undone. With metadata losses
//! off ([`MetadataModel::lose_unsynced`]), entries are never undone either (LazyFS's default).
//!
//! What the kernel is told, and why:
//! - No `direct_io` and no `keep_cache`: reads and shared mmaps go through the kernel's page cache
//!   of the FUSE file (bbolt reads its file through a shared mmap), and every open drops that
//!   cache, so a restarted member reads what the backing file holds after a loss.
//! - No writeback cache (fuser does not ask for it): every write(2) reaches [`Passthrough`]
//!   before it returns, so a SIGKILLed process has no write still in flight.
//! - No lock support (FUSE_POSIX_LOCKS / FUSE_FLOCK_LOCKS are not requested): the kernel then
//!   keeps fcntl, OFD and flock locks itself, which is right for one machine (RocksDB's `LOCK`,
//!   etcd's and bbolt's flock), and a killed holder's locks go with it.
//! - Attributes and entries are cached for [`TTL`]; after a loss [`super::LazyFs`] invalidates
//!   the inodes it changed.
//!
//! Files are always opened read-write in the backing tree when the caller may write (the
//! record of a file must read the durable bytes it is about to overwrite), without `O_APPEND`
//! (the kernel gives every write its offset) and without `O_TRUNC` (a truncation goes through
//! [`Unsynced::set_len`]). A handle opened with `O_SYNC` or `O_DSYNC` syncs after each write.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, FileExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::entries::{Entries, MetadataModel, Undo};
use super::inodes::{Inodes, ROOT};
use super::unsynced::{FileKey, Unsynced};

/// How long the kernel may cache attributes and directory entries.
pub const TTL: Duration = Duration::from_secs(1);

/// Bytes one read may ask for (the kernel asks for at most `max_read`, 128 KiB by default; this
/// bounds what a bad request could make us allocate).
const READ_BYTES_MAX: u32 = 16 << 20;

/// An open file: the backing file, opened by us.
#[derive(Debug)]
struct Handle {
    file: File,
    key: FileKey,
    /// Opened with O_SYNC or O_DSYNC: every write is durable when it returns.
    sync_writes: bool,
}

/// One directory entry, as listed at opendir.
#[derive(Debug)]
struct DirEntry {
    ino: u64,
    kind: FileType,
    name: std::ffi::OsString,
}

/// The state of one mount, shared by fuser's worker threads and by [`super::LazyFs`].
#[derive(Debug)]
pub struct Passthrough {
    pub inodes: Inodes,
    pub unsynced: Unsynced,
    pub entries: Entries,
    files: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_handle: AtomicU64,
}

impl Passthrough {
    pub fn new(backing: &Path, attic: &Path, model: MetadataModel) -> std::io::Result<Passthrough> {
        let root = nix::fcntl::open(backing, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        let stat = stat_fd(&root)?;
        Ok(Passthrough {
            inodes: Inodes::new(root, key_of(&stat)),
            unsynced: Unsynced::default(),
            entries: Entries::new(backing, attic, model)?,
            files: Mutex::default(),
            dirs: Mutex::default(),
            next_handle: AtomicU64::new(1),
        })
    }

    fn node(&self, id: INodeNo) -> Result<(Arc<OwnedFd>, FileKey), Errno> {
        self.inodes.get(id.0).ok_or(Errno::ESTALE)
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        self.files.lock().unwrap().get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&self, handle: Handle) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.lock().unwrap().insert(fh, Arc::new(handle));
        FileHandle(fh)
    }

    /// Looks `name` up in `parent`, counting one lookup; the attributes carry the node id.
    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let (dir, _) = self.node(parent)?;
        let fd = nix::fcntl::openat(&*dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(nix_errno)?;
        let stat = stat_fd(&fd).map_err(nix_errno)?;
        let id = self.inodes.remember(fd, key_of(&stat));
        Ok(attr(id, &stat))
    }

    fn getattr_of(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let handle = fh.and_then(|fh| self.handle(fh).ok());
        let stat = match handle {
            Some(handle) => nix::sys::stat::fstat(&handle.file).map_err(nix_errno)?,
            None => stat_fd(&*self.node(ino)?.0).map_err(nix_errno)?,
        };
        Ok(attr(ino.0, &stat))
    }

    /// Opens a backing file (through its `O_PATH` descriptor) for reading, and for writing too
    /// when the caller's flags allow writes. Every other flag is the kernel's business or ours:
    /// O_TRUNC is applied by the callers, O_APPEND by the kernel (it gives each write its offset),
    /// O_SYNC/O_DSYNC by `write`; O_DIRECT would need aligned buffers, O_NOATIME fails for files
    /// we do not own, O_NOFOLLOW fails on the `/proc/self/fd` link itself.
    fn open_backing(&self, fd: &OwnedFd, flags: i32) -> Result<File, Errno> {
        let writes = flags & libc_o::ACCMODE != libc_o::RDONLY;
        OpenOptions::new().read(true).write(writes).open(proc_path(fd)).map_err(Errno::from)
    }

    fn open_file(&self, ino: INodeNo, flags: i32) -> Result<FileHandle, Errno> {
        let (fd, key) = self.node(ino)?;
        let file = self.open_backing(&fd, flags)?;
        if flags & libc_o::TRUNC != 0 && flags & libc_o::ACCMODE != libc_o::RDONLY {
            self.unsynced.set_len(key, &file, 0).map_err(Errno::from)?;
        }
        let sync_writes = flags & (libc_o::SYNC | libc_o::DSYNC) != 0;
        Ok(self.add_handle(Handle { file, key, sync_writes }))
    }

    fn set_attributes(&self, ino: INodeNo, changes: Changes) -> Result<FileAttr, Errno> {
        let (fd, key) = self.node(ino)?;
        if let Some(mode) = changes.mode {
            std::fs::set_permissions(proc_path(&fd), std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(Errno::from)?;
        }
        if changes.uid.is_some() || changes.gid.is_some() {
            nix::unistd::fchownat(
                &*fd,
                "",
                changes.uid.map(nix::unistd::Uid::from_raw),
                changes.gid.map(nix::unistd::Gid::from_raw),
                AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(nix_errno)?;
        }
        if let Some(size) = changes.size {
            let handle = changes.fh.and_then(|fh| self.handle(fh).ok());
            let opened;
            let file = match &handle {
                Some(handle) => &handle.file,
                None => {
                    opened = self.open_backing(&fd, libc_o::RDWR)?;
                    &opened
                }
            };
            self.unsynced.set_len(key, file, size).map_err(Errno::from)?;
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            let atime = time_spec(changes.atime);
            let mtime = time_spec(changes.mtime);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                proc_path(&fd).as_str(),
                &atime,
                &mtime,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .map_err(nix_errno)?;
        }
        self.getattr_of(ino, changes.fh)
    }

    fn read_dir(&self, ino: INodeNo) -> Result<Vec<DirEntry>, Errno> {
        let (fd, key) = self.node(ino)?;
        let mut entries = vec![
            DirEntry { ino: key.1, kind: FileType::Directory, name: ".".into() },
            DirEntry { ino: key.1, kind: FileType::Directory, name: "..".into() },
        ];
        for entry in std::fs::read_dir(proc_path(&fd)).map_err(Errno::from)? {
            let entry = entry.map_err(Errno::from)?;
            let kind = entry.file_type().ok().and_then(FileType::from_std).unwrap_or(FileType::RegularFile);
            entries.push(DirEntry { ino: entry.ino(), kind, name: entry.file_name() });
        }
        Ok(entries)
    }

    /// `(key, is the last link)` of the regular file `name` in `dir`, if it is one.
    fn last_link(dir: &OwnedFd, name: &OsStr) -> Option<FileKey> {
        let stat = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let regular = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        (regular && stat.st_nlink == 1).then(|| key_of(&stat))
    }

    /// Makes `name` in `parent` by `make` (mknod, mkdir, symlink, link), recording the new entry.
    fn make_entry(
        &self,
        pid: u32,
        parent: INodeNo,
        name: &OsStr,
        make: impl FnOnce(&OwnedFd) -> Result<(), Errno>,
    ) -> Result<FileAttr, Errno> {
        let (dir, dir_key) = self.node(parent)?;
        let mut journal = self.entries.begin(pid);
        make(&dir)?;
        if journal.recording() {
            let stat = nix::sys::stat::fstatat(&*dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_errno)?;
            let undo = Undo::Created { dir: dir.clone(), name: name.to_owned(), key: key_of(&stat) };
            self.forget_all(journal.record(vec![dir_key], undo));
        }
        drop(journal);
        self.entry(parent, name)
    }

    fn unlink_entry(&self, pid: u32, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        let (dir, dir_key) = self.node(parent)?;
        let mut journal = self.entries.begin(pid);
        let last = Passthrough::last_link(&dir, name);
        let saved = journal.save(&dir, name);
        if let Err(error) = nix::unistd::unlinkat(&*dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            journal.discard(saved);
            return Err(nix_errno(error));
        }
        match saved {
            // The attic keeps the file (and its data record) while the unlink may be undone.
            Some(saved) => {
                let undo =
                    Undo::Removed { dir: dir.clone(), name: name.to_owned(), saved: Some(saved), dir_mode: None };
                self.forget_all(journal.record(vec![dir_key], undo));
            }
            None => {
                if let Some(key) = last {
                    self.unsynced.forget(key);
                }
            }
        }
        Ok(())
    }

    fn rmdir_entry(&self, pid: u32, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        let (dir, dir_key) = self.node(parent)?;
        let mut journal = self.entries.begin(pid);
        let mode = nix::sys::stat::fstatat(&*dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_errno)?.st_mode;
        nix::unistd::unlinkat(&*dir, name, nix::unistd::UnlinkatFlags::RemoveDir).map_err(nix_errno)?;
        self.forget_all(journal.record(
            vec![dir_key],
            Undo::Removed { dir: dir.clone(), name: name.to_owned(), saved: None, dir_mode: Some(mode) },
        ));
        Ok(())
    }

    fn rename_entry(
        &self,
        pid: u32,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let (from, from_key) = self.node(parent)?;
        let (to, to_key) = self.node(newparent)?;
        let mut journal = self.entries.begin(pid);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let moved = nix::sys::stat::fstatat(&*from, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_errno)?;
        let replaced = if exchange { None } else { Passthrough::last_link(&to, newname) };
        let saved = if exchange { None } else { journal.save(&to, newname) };
        let flags = nix::fcntl::RenameFlags::from_bits_retain(flags.bits());
        if let Err(error) = nix::fcntl::renameat2(&*from, name, &*to, newname, flags) {
            journal.discard(saved);
            return Err(nix_errno(error));
        }
        if saved.is_none() {
            if let Some(key) = replaced {
                self.unsynced.forget(key);
            }
        }
        let mut dirs = vec![from_key];
        if to_key != from_key {
            dirs.push(to_key);
        }
        let undo = Undo::Renamed {
            from: from.clone(),
            from_name: name.to_owned(),
            to: to.clone(),
            to_name: newname.to_owned(),
            key: key_of(&moved),
            exchange,
            replaced: saved,
        };
        self.forget_all(journal.record(dirs, undo));
        Ok(())
    }

    /// Drops the data records of files no longer reachable.
    fn forget_all(&self, gone: Vec<FileKey>) {
        for key in gone {
            self.unsynced.forget(key);
        }
    }

    /// fsyncdir: the directory's entries are durable.
    fn sync_dir(&self, ino: INodeNo) -> Result<(), Errno> {
        let (fd, key) = self.node(ino)?;
        for gone in self.entries.sync_dir(key) {
            self.unsynced.forget(gone);
        }
        // What the real disk costs.
        let dir = File::open(proc_path(&*fd)).map_err(Errno::from)?;
        dir.sync_all().map_err(Errno::from)
    }

    fn create_file(
        &self,
        pid: u32,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, FileHandle), Errno> {
        let (dir, dir_key) = self.node(parent)?;
        let mut journal = self.entries.begin(pid);
        // Exclusively first, to know whether the name is new (only then is there a create to undo).
        let exclusive = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC;
        let (fd, created) = match nix::fcntl::openat(&*dir, name, exclusive, Mode::from_bits_truncate(mode & 0o7777)) {
            Ok(fd) => (fd, true),
            Err(nix::Error::EEXIST) if flags & libc_o::EXCL == 0 => {
                let fd = nix::fcntl::openat(&*dir, name, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(nix_errno)?;
                (fd, false)
            }
            Err(error) => return Err(nix_errno(error)),
        };
        let file = File::from(fd);
        let stat = nix::sys::stat::fstat(&file).map_err(nix_errno)?;
        let key = key_of(&stat);
        if created {
            self.forget_all(
                journal.record(vec![dir_key], Undo::Created { dir: dir.clone(), name: name.to_owned(), key }),
            );
        }
        drop(journal);
        let attr = self.entry(parent, name)?;
        if flags & libc_o::TRUNC != 0 {
            self.unsynced.set_len(key, &file, 0).map_err(Errno::from)?;
        }
        let sync_writes = flags & (libc_o::SYNC | libc_o::DSYNC) != 0;
        let fh = self.add_handle(Handle { file, key, sync_writes });
        Ok((attr, fh))
    }
}

/// The attribute changes of one setattr.
#[derive(Debug)]
struct Changes {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
    fh: Option<FileHandle>,
}

/// The open(2) flag values this file needs, named (nix re-exports libc's).
mod libc_o {
    use nix::libc;
    pub const ACCMODE: i32 = libc::O_ACCMODE;
    pub const RDONLY: i32 = libc::O_RDONLY;
    pub const RDWR: i32 = libc::O_RDWR;
    pub const TRUNC: i32 = libc::O_TRUNC;
    pub const EXCL: i32 = libc::O_EXCL;
    pub const SYNC: i32 = libc::O_SYNC;
    pub const DSYNC: i32 = libc::O_DSYNC;
}

fn nix_errno(error: nix::Error) -> Errno {
    Errno::from_i32(error as i32)
}

fn proc_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn stat_fd(fd: &impl AsFd) -> nix::Result<FileStat> {
    nix::sys::stat::fstatat(fd, "", AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn key_of(stat: &FileStat) -> FileKey {
    (stat.st_dev, stat.st_ino)
}

fn system_time(seconds: i64, nanoseconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::new(seconds as u64, nanoseconds as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + Duration::from_nanos(nanoseconds as u64)
    }
}

fn time_spec(time: Option<TimeOrNow>) -> TimeSpec {
    match time {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(time)) => {
            let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
            TimeSpec::new(since.as_secs() as i64, since.subsec_nanos() as i64)
        }
    }
}

fn kind_of(mode: u32) -> FileType {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => FileType::Directory,
        SFlag::S_IFLNK => FileType::Symlink,
        SFlag::S_IFIFO => FileType::NamedPipe,
        SFlag::S_IFSOCK => FileType::Socket,
        SFlag::S_IFCHR => FileType::CharDevice,
        SFlag::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// The backing file's attributes under node id `id` (which the kernel also reports as st_ino).
fn attr(id: u64, stat: &FileStat) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: stat.st_size as u64,
        blocks: stat.st_blocks as u64,
        atime: system_time(stat.st_atime, stat.st_atime_nsec),
        mtime: system_time(stat.st_mtime, stat.st_mtime_nsec),
        ctime: system_time(stat.st_ctime, stat.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind_of(stat.st_mode),
        perm: (stat.st_mode & 0o7777) as u16,
        nlink: stat.st_nlink as u32,
        uid: stat.st_uid,
        gid: stat.st_gid,
        rdev: stat.st_rdev as u32,
        blksize: stat.st_blksize as u32,
        flags: 0,
    }
}

/// fuser's `Filesystem` over a shared [`Passthrough`] (fuser owns the value it is given; the
/// mount handle keeps the other reference, for [`Unsynced::lose`]).
#[derive(Debug)]
pub struct Mounted(pub Arc<Passthrough>);

const GENERATION: Generation = Generation(0);

impl Filesystem for Mounted {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(error) => reply.error(error),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.getattr_of(ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = Changes { mode, uid, gid, size, atime, mtime, fh };
        match self.0.set_attributes(ino, changes) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = self.0.node(ino).and_then(|(fd, _)| nix::fcntl::readlinkat(&*fd, "").map_err(nix_errno));
        match target {
            Ok(target) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str())),
            Err(error) => reply.error(error),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let made = self.0.make_entry(req.pid(), parent, name, |dir| {
            let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
            nix::sys::stat::mknodat(dir, name, kind, Mode::from_bits_truncate(mode & 0o7777), rdev.into())
                .map_err(nix_errno)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(error) => reply.error(error),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let made = self.0.make_entry(req.pid(), parent, name, |dir| {
            nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode & 0o7777)).map_err(nix_errno)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(error) => reply.error(error),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.unlink_entry(req.pid(), parent, name) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.rmdir_entry(req.pid(), parent, name) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let made = self.0.make_entry(req.pid(), parent, link_name, |dir| {
            nix::unistd::symlinkat(target, dir, link_name).map_err(nix_errno)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(error) => reply.error(error),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.0.rename_entry(req.pid(), parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let linked = self.0.node(ino).and_then(|(fd, _)| {
            self.0.make_entry(req.pid(), newparent, newname, |dir| {
                nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    proc_path(&fd).as_str(),
                    dir,
                    newname,
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(nix_errno)
            })
        });
        match linked {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(error) => reply.error(error),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open_file(ino, flags.0) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(error) => reply.error(error),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let handle = match self.0.handle(fh) {
            Ok(handle) => handle,
            Err(error) => return reply.error(error),
        };
        let mut buffer = vec![0; size.min(READ_BYTES_MAX) as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match handle.file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return reply.error(Errno::from(error)),
            }
        }
        reply.data(&buffer[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.0.handle(fh).and_then(|handle| {
            self.0.unsynced.write(handle.key, &handle.file, offset, data).map_err(Errno::from)?;
            if handle.sync_writes {
                self.0.unsynced.sync(handle.key, &handle.file).map_err(Errno::from)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(error),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.files.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // fdatasync and fsync alike: the file's data; its name needs an fsync of its directory.
        let synced =
            self.0.handle(fh).and_then(|handle| self.0.unsynced.sync(handle.key, &handle.file).map_err(Errno::from));
        match synced {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.read_dir(ino) {
            Ok(entries) => {
                let fh = self.0.next_handle.fetch_add(1, Ordering::Relaxed);
                self.0.dirs.lock().unwrap().insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(error) => reply.error(error),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = self.0.dirs.lock().unwrap().get(&fh.0).cloned();
        let Some(entries) = entries else { return reply.error(Errno::EBADF) };
        for (index, entry) in entries.iter().enumerate().skip(offset as usize) {
            // The offset of an entry is where the next readdir resumes.
            if reply.add(INodeNo(entry.ino), index as u64 + 1, entry.kind, &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.0.dirs.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.0.sync_dir(ino) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let root = self.0.node(INodeNo(ROOT));
        match root.and_then(|(fd, _)| nix::sys::statvfs::fstatvfs(&*fd).map_err(nix_errno)) {
            Ok(stat) => reply.statfs(
                stat.blocks(),
                stat.blocks_free(),
                stat.blocks_available(),
                stat.files(),
                stat.files_free(),
                stat.block_size() as u32,
                stat.name_max() as u32,
                stat.fragment_size() as u32,
            ),
            Err(error) => reply.error(error),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.0.create_file(req.pid(), parent, name, mode, flags) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, GENERATION, fh, FopenFlags::empty()),
            Err(error) => reply.error(error),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let allocated = self.0.handle(fh).and_then(|handle| {
            self.0.unsynced.fallocate(handle.key, &handle.file, offset, length, mode).map_err(Errno::from)
        });
        match allocated {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }
}
