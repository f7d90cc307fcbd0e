//! The power-loss filesystem, mounted for real: what survives `lose_unsynced` is exactly what an
//! fsync made durable: a file's data by an fsync of the file, a directory's entries by an fsync
//! of the directory. Each test mounts its own LazyFS in a temporary directory; every test skips
//! (saying why) only when this machine cannot mount FUSE (no /dev/fuse, or no right to mount).
//! The data tests mount with metadata eager (entries never lost), the entry tests without.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jepsen::lazyfs::{Error, LazyFs, Lost, MetadataModel, Undone};

struct Mount {
    fs: LazyFs,
    root: PathBuf,
    backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn lose(&self) -> Lost {
        self.fs.lose_unsynced().expect("lose unsynced data")
    }
}

/// A fresh LazyFS whose directory entries are never lost, or None (with a note on stderr) where
/// FUSE cannot be mounted.
fn mount(test: &str) -> Option<Mount> {
    mount_with(test, MetadataModel::eager())
}

/// A fresh LazyFS on which a loss undoes every directory entry not fsynced (no commit window).
fn mount_lazy(test: &str) -> Option<Mount> {
    mount_with(test, MetadataModel::lazy(None))
}

fn mount_with(test: &str, model: MetadataModel) -> Option<Mount> {
    let dir = tempfile::tempdir().expect("temp dir");
    let backing = dir.path().join("backing");
    let root = dir.path().join("mnt");
    match LazyFs::mount_with(&backing, &root, model) {
        Ok(fs) => Some(Mount { fs, root, backing, _dir: dir }),
        Err(Error::Unavailable(why)) => {
            eprintln!("skipping {test}: {why}");
            None
        }
        Err(error) => panic!("mounting LazyFS: {error}"),
    }
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> File {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file
}

fn contents(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// fsync of a directory (FUSE's fsyncdir), as RocksDB and etcd do after creating or renaming.
fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// A file with `bytes`, its data and its name durable.
fn durable_file(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
    sync_dir(path.parent().unwrap());
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn undone(path: &str, what: &str) -> Undone {
    Undone { path: PathBuf::from(path), what: what.to_string() }
}

#[test]
fn only_the_synced_prefix_of_a_file_survives() {
    let Some(m) = mount("only_the_synced_prefix_of_a_file_survives") else { return };
    let path = m.path("wal");
    let mut file = File::create(&path).unwrap();
    file.write_all(b"synced-1|").unwrap();
    file.sync_data().unwrap();
    file.write_all(b"synced-2|").unwrap();
    file.sync_all().unwrap();
    file.write_all(b"lost-3|lost-4").unwrap();
    drop(file);
    assert_eq!(contents(&path), b"synced-1|synced-2|lost-3|lost-4", "before the loss, everything is read back");
    let lost = m.lose();
    assert_eq!(lost, Lost { files: 1, bytes_restored: 0, bytes_cut: 13 });
    assert_eq!(contents(&path), b"synced-1|synced-2|");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 18, "the kernel's cached size is dropped too");
    assert_eq!(contents(&m.backing.join("wal")), b"synced-1|synced-2|");
}

#[test]
fn unsynced_overwrites_are_undone_and_synced_ones_kept() {
    let Some(m) = mount("unsynced_overwrites_are_undone_and_synced_ones_kept") else { return };
    let path = m.path("db");
    let file = write_at(&path, 0, &[b'a'; 64]);
    file.sync_all().unwrap();
    // Overlapping overwrites, a hole-making extension, and a synced overwrite in between.
    file.write_all_at(b"XXXX", 8).unwrap();
    file.write_all_at(b"YYYYYYYY", 6).unwrap();
    file.write_all_at(b"Z", 100).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"1234", 0).unwrap();
    file.write_all_at(b"5678", 60).unwrap();
    file.write_all_at(b"tail", 101).unwrap();
    let lost = m.lose();
    drop(file);
    let mut expected = vec![b'a'; 64];
    expected[6..14].copy_from_slice(b"YYYYYYYY");
    expected.resize(100, 0);
    expected.push(b'Z');
    assert_eq!(contents(&path), expected);
    assert_eq!(lost, Lost { files: 1, bytes_restored: 8, bytes_cut: 4 });
}

#[test]
fn a_truncation_is_data_and_is_undone_unless_synced() {
    let Some(m) = mount("a_truncation_is_data_and_is_undone_unless_synced") else { return };
    let path = m.path("truncated");
    let original: Vec<u8> = (0..200u8).collect();
    write_at(&path, 0, &original).sync_all().unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(10).unwrap();
    file.write_all_at(b"after", 20).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 25);
    m.lose();
    assert_eq!(contents(&path), original);

    // O_TRUNC is a truncation too; once synced it stays.
    let mut file = File::create(&path).unwrap();
    file.write_all(b"new").unwrap();
    file.sync_all().unwrap();
    drop(file);
    m.lose();
    assert_eq!(contents(&path), b"new");
}

#[test]
fn with_eager_metadata_an_unsynced_new_file_survives_empty() {
    let Some(m) = mount("with_eager_metadata_an_unsynced_new_file_survives_empty") else { return };
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("dir/never-synced"), b"gone").unwrap();
    // The RocksDB/etcd pattern: write a temp file, sync it, rename it over the real name.
    let mut temp = File::create(m.path("dir/CURRENT.tmp")).unwrap();
    temp.write_all(b"MANIFEST-000007\n").unwrap();
    temp.sync_all().unwrap();
    drop(temp);
    std::fs::write(m.path("dir/CURRENT"), b"MANIFEST-000001\n").unwrap();
    std::fs::rename(m.path("dir/CURRENT.tmp"), m.path("dir/CURRENT")).unwrap();
    // Without the sync, the rename survives but the content does not.
    std::fs::write(m.path("dir/OPTIONS.tmp"), b"options").unwrap();
    std::fs::rename(m.path("dir/OPTIONS.tmp"), m.path("dir/OPTIONS")).unwrap();
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    let names: Vec<&Path> = loss.files.iter().map(|(path, _)| path.as_path()).collect();
    // CURRENT's replaced inode had unsynced content too, but no name any more: forgotten.
    assert_eq!(names, [Path::new("dir/OPTIONS"), Path::new("dir/never-synced")]);
    assert_eq!(loss.total, Lost { files: 2, bytes_restored: 0, bytes_cut: 11 });
    assert_eq!(contents(&m.path("dir/never-synced")), b"");
    assert_eq!(contents(&m.path("dir/CURRENT")), b"MANIFEST-000007\n");
    assert_eq!(contents(&m.path("dir/OPTIONS")), b"");
    let mut names: Vec<String> = std::fs::read_dir(m.path("dir"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["CURRENT", "OPTIONS", "never-synced"]);
}

#[test]
fn an_fsync_through_any_descriptor_or_link_makes_the_file_durable() {
    let Some(m) = mount("an_fsync_through_any_descriptor_or_link_makes_the_file_durable") else { return };
    let writer = write_at(&m.path("a"), 0, b"through a");
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    File::open(m.path("b")).unwrap().sync_all().unwrap();
    drop(writer);
    // O_DSYNC: every write is durable when it returns.
    let mut dsync = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_DSYNC)
        .open(m.path("dsync"))
        .unwrap();
    dsync.write_all(b"durable").unwrap();
    drop(dsync);
    let lost = m.lose();
    assert_eq!(lost.files, 0);
    assert_eq!(contents(&m.path("a")), b"through a");
    assert_eq!(contents(&m.path("b")), b"through a");
    assert_eq!(contents(&m.path("dsync")), b"durable");
}

#[test]
fn fallocate_extensions_and_holes_are_undone() {
    let Some(m) = mount("fallocate_extensions_and_holes_are_undone") else { return };
    use nix::fcntl::{fallocate, FallocateFlags};
    let path = m.path("prealloc");
    let file = write_at(&path, 0, &[7u8; 8192]);
    file.sync_all().unwrap();
    // etcd's WAL preallocation (mode 0 grows the file), RocksDB's (KEEP_SIZE), and a punched hole.
    fallocate(&file, FallocateFlags::empty(), 0, 65536).unwrap();
    fallocate(&file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 65536, 65536).unwrap();
    fallocate(&file, FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE, 4096, 4096).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 65536);
    let mut hole = [1u8; 4];
    file.read_exact_at(&mut hole, 4096).unwrap();
    assert_eq!(hole, [0; 4]);
    drop(file);
    m.lose();
    assert_eq!(contents(&path), vec![7u8; 8192]);
}

#[test]
fn reads_after_a_loss_see_the_durable_bytes_not_the_page_cache() {
    let Some(m) = mount("reads_after_a_loss_see_the_durable_bytes_not_the_page_cache") else { return };
    let path = m.path("cached");
    let file = write_at(&path, 0, &[b'd'; 16384]);
    file.sync_all().unwrap();
    file.write_all_at(&[b'u'; 4096], 4096).unwrap();
    let mut page = [0u8; 8];
    file.read_exact_at(&mut page, 4096).unwrap();
    assert_eq!(&page, b"uuuuuuuu");
    drop(file);
    m.lose();
    let mut reopened = File::open(&path).unwrap();
    let mut all = Vec::new();
    reopened.read_to_end(&mut all).unwrap();
    assert_eq!(all, vec![b'd'; 16384]);
}

#[test]
fn shared_mmap_reads_see_pwrites_and_then_the_loss() {
    let Some(m) = mount("shared_mmap_reads_see_pwrites_and_then_the_loss") else { return };
    // The crate forbids unsafe code, so the mapping is Python's (bbolt's pattern: a shared
    // read-only mmap, updated with pwrite, then fdatasync).
    let script = r#"
import mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"A" * 8192, 0)
os.fdatasync(fd)
view = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ)
assert view[0:4] == b"AAAA", view[0:4]
os.pwrite(fd, b"BBBB", 4096)
assert view[4096:4100] == b"BBBB", view[4096:4100]
os.fdatasync(fd)
os.pwrite(fd, b"CCCC", 0)
assert view[0:4] == b"CCCC", view[0:4]
print("ok")
"#;
    let output = match std::process::Command::new("python3").arg("-c").arg(script).arg(m.path("bolt")).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("skipping shared_mmap_reads_see_pwrites_and_then_the_loss: no python3 ({error})");
            return;
        }
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    m.lose();
    let bytes = contents(&m.path("bolt"));
    assert_eq!(&bytes[0..4], b"AAAA", "the unsynced pwrite is lost");
    assert_eq!(&bytes[4096..4100], b"BBBB", "the synced one is kept");
}

#[test]
fn locks_are_kept_by_the_kernel() {
    let Some(m) = mount("locks_are_kept_by_the_kernel") else { return };
    use nix::fcntl::{Flock, FlockArg};
    // bbolt's and etcd's flock: a second open file description cannot take it.
    let first = Flock::lock(File::create(m.path("flock")).unwrap(), FlockArg::LockExclusiveNonblock).unwrap();
    let second = Flock::lock(File::open(m.path("flock")).unwrap(), FlockArg::LockExclusiveNonblock);
    assert!(second.is_err(), "a second exclusive flock must fail");
    drop(first);
    assert!(Flock::lock(File::open(m.path("flock")).unwrap(), FlockArg::LockExclusiveNonblock).is_ok());
    // RocksDB's LOCK (fcntl F_SETLK); OFD locks conflict within one process, so test with those.
    let lock = |file: &File| {
        let whole_file = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file))
    };
    let a = File::create(m.path("LOCK")).unwrap();
    let b = File::open(m.path("LOCK")).unwrap();
    assert!(lock(&a).is_ok());
    assert!(lock(&b).is_err(), "a conflicting fcntl lock must fail");
}

#[test]
fn directory_operations_pass_through() {
    let Some(m) = mount("directory_operations_pass_through") else { return };
    std::fs::create_dir_all(m.path("a/b/c")).unwrap();
    std::fs::write(m.path("a/b/c/f"), b"x").unwrap();
    std::os::unix::fs::symlink("c/f", m.path("a/b/link")).unwrap();
    assert_eq!(std::fs::read_link(m.path("a/b/link")).unwrap(), Path::new("c/f"));
    assert_eq!(contents(&m.path("a/b/link")), b"x");
    std::fs::set_permissions(m.path("a/b/c/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(std::fs::metadata(m.path("a/b/c/f")).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::rename(m.path("a/b/c"), m.path("a/d")).unwrap();
    assert_eq!(contents(&m.path("a/d/f")), b"x");
    assert!(std::fs::read_dir(m.path("a/b")).unwrap().count() == 1, "only the link is left in a/b");
    std::fs::remove_dir_all(m.path("a")).unwrap();
    assert!(!m.backing.join("a").exists());
    assert!(nix::sys::statvfs::statvfs(&m.root).unwrap().blocks() > 0);
    // Many entries: readdir in several rounds.
    for index in 0..500 {
        std::fs::write(m.path(&format!("file-{index:04}")), b"").unwrap();
    }
    assert_eq!(std::fs::read_dir(&m.root).unwrap().count(), 500);
}

#[test]
fn a_created_file_is_gone_after_a_loss_unless_its_directory_was_fsynced() {
    let Some(m) = mount_lazy("a_created_file_is_gone_after_a_loss_unless_its_directory_was_fsynced") else { return };
    std::fs::create_dir(m.path("dir")).unwrap();
    sync_dir(&m.root);
    // Data synced, name not: an fsync of the file does not make its directory entry durable.
    let mut unnamed = File::create(m.path("dir/unnamed")).unwrap();
    unnamed.write_all(b"synced data").unwrap();
    unnamed.sync_all().unwrap();
    drop(unnamed);
    durable_file(&m.path("dir/named"), b"named");
    std::fs::write(m.path("dir/late"), b"unsynced").unwrap();
    assert_eq!(m.fs.unsynced_entries(), 1, "only `late` is pending: the fsyncdir covered `unnamed` too");
    // `unnamed` was made durable by the directory fsync after it; create another one after.
    let mut after = File::create(m.path("dir/after")).unwrap();
    after.write_all(b"synced data").unwrap();
    after.sync_all().unwrap();
    drop(after);
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(loss.entries, [undone("dir/after", "create"), undone("dir/late", "create")]);
    assert_eq!(loss.total.files, 0, "a file that disappears takes its unsynced data with it, uncounted");
    assert_eq!(names(&m.path("dir")), ["named", "unnamed"]);
    assert_eq!(names(&m.backing.join("dir")), ["named", "unnamed"]);
    assert_eq!(contents(&m.path("dir/named")), b"named");
    assert_eq!(contents(&m.path("dir/unnamed")), b"synced data");
    assert!(!m.path("dir/after").exists(), "the kernel's cached entry is dropped too");
    assert_eq!(m.fs.unsynced_entries(), 0);
}

#[test]
fn a_new_directory_not_fsynced_in_its_parent_vanishes_with_everything_in_it() {
    let Some(m) = mount_lazy("a_new_directory_not_fsynced_in_its_parent_vanishes_with_everything_in_it") else {
        return;
    };
    std::fs::create_dir_all(m.path("db/wal")).unwrap();
    durable_file(&m.path("db/wal/0001.log"), b"entries");
    std::fs::write(m.path("db/wal/0001.log"), b"unsynced, goes with the directory").unwrap();
    sync_dir(&m.path("db"));
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(loss.entries, [undone("db", "mkdir")], "db/wal is durable in db, but db is not in the root");
    assert_eq!(loss.total.files, 0, "the files under it go with it, unsynced data and all");
    assert!(names(&m.root).is_empty());
}

#[test]
fn a_rename_reverts_without_a_directory_fsync_and_sticks_with_one() {
    let Some(m) = mount_lazy("a_rename_reverts_without_a_directory_fsync_and_sticks_with_one") else { return };
    durable_file(&m.path("old"), b"content");
    durable_file(&m.path("target"), b"replaced");
    std::fs::rename(m.path("old"), m.path("new")).unwrap();
    std::fs::rename(m.path("new"), m.path("target")).unwrap();
    assert_eq!(names(&m.root), ["target"]);
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(
        loss.entries,
        [
            undone("new", "rename to target"),
            undone("target", "replaced by a rename, back"),
            undone("old", "rename to new"),
        ]
    );
    assert_eq!(names(&m.root), ["old", "target"]);
    assert_eq!(contents(&m.path("old")), b"content");
    assert_eq!(contents(&m.path("target")), b"replaced", "the file the rename replaced is back");

    std::fs::rename(m.path("old"), m.path("target")).unwrap();
    sync_dir(&m.root);
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert!(loss.entries.is_empty());
    assert_eq!(names(&m.root), ["target"]);
    assert_eq!(contents(&m.path("target")), b"content");
    let attic = m._dir.path().join("backing.attic");
    assert!(names(&attic).is_empty(), "the replaced file is released once the rename is durable");
}

#[test]
fn the_rocksdb_current_pattern_survives_intact_and_without_the_directory_fsync_goes_back() {
    let Some(m) = mount_lazy("the_rocksdb_current_pattern_survives_intact_and_without_the_directory_fsync_goes_back")
    else {
        return;
    };
    std::fs::create_dir(m.path("db")).unwrap();
    sync_dir(&m.root);
    durable_file(&m.path("db/CURRENT"), b"MANIFEST-000001\n");
    let install = |manifest: &[u8], sync: bool| {
        let mut temp = File::create(m.path("db/000009.dbtmp")).unwrap();
        temp.write_all(manifest).unwrap();
        temp.sync_all().unwrap();
        drop(temp);
        std::fs::rename(m.path("db/000009.dbtmp"), m.path("db/CURRENT")).unwrap();
        if sync {
            sync_dir(&m.path("db"));
        }
    };
    // SetCurrentFile: temp file written and synced, renamed over CURRENT, directory synced.
    install(b"MANIFEST-000007\n", true);
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert!(loss.entries.is_empty() && loss.total.files == 0);
    assert_eq!(names(&m.path("db")), ["CURRENT"]);
    assert_eq!(contents(&m.path("db/CURRENT")), b"MANIFEST-000007\n");
    // Without the directory fsync the old CURRENT is back and the temp file is gone, synced or not.
    install(b"MANIFEST-000011\n", false);
    assert_eq!(contents(&m.path("db/CURRENT")), b"MANIFEST-000011\n");
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(loss.entries.len(), 3, "{:?}", loss.entries);
    assert_eq!(names(&m.path("db")), ["CURRENT"]);
    assert_eq!(contents(&m.path("db/CURRENT")), b"MANIFEST-000007\n");
}

#[test]
fn an_unlink_not_fsynced_is_undone_with_the_durable_data() {
    let Some(m) = mount_lazy("an_unlink_not_fsynced_is_undone_with_the_durable_data") else { return };
    durable_file(&m.path("segment"), b"durable");
    let mut file = OpenOptions::new().append(true).open(m.path("segment")).unwrap();
    file.write_all(b"+unsynced").unwrap();
    drop(file);
    std::fs::remove_file(m.path("segment")).unwrap();
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(loss.entries, [undone("segment", "unlink")]);
    assert_eq!(loss.total, Lost { files: 1, bytes_restored: 0, bytes_cut: 9 });
    assert_eq!(contents(&m.path("segment")), b"durable");

    std::fs::remove_file(m.path("segment")).unwrap();
    sync_dir(&m.root);
    assert!(m.fs.lose_unsynced_by_file().unwrap().entries.is_empty());
    assert!(names(&m.root).is_empty());
}

#[test]
fn a_rename_between_directories_is_durable_through_either_one() {
    let Some(m) = mount_lazy("a_rename_between_directories_is_durable_through_either_one") else { return };
    std::fs::create_dir(m.path("a")).unwrap();
    std::fs::create_dir(m.path("b")).unwrap();
    sync_dir(&m.root);
    durable_file(&m.path("a/f"), b"f");
    durable_file(&m.path("a/g"), b"g");
    std::fs::rename(m.path("a/f"), m.path("b/f")).unwrap();
    sync_dir(&m.path("b"));
    std::fs::rename(m.path("a/g"), m.path("b/g")).unwrap();
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    assert_eq!(loss.entries, [undone("a/g", "rename to b/g")]);
    assert_eq!(names(&m.path("a")), ["g"]);
    assert_eq!(names(&m.path("b")), ["f"]);
}

#[test]
fn entries_older_than_the_commit_window_or_made_by_an_exempt_process_survive() {
    // A zero window: every operation is older than it at the loss, as if the journal had committed.
    let Some(m) = mount_with(
        "entries_older_than_the_commit_window_or_made_by_an_exempt_process_survive",
        MetadataModel::lazy(Some(std::time::Duration::ZERO)),
    ) else {
        return;
    };
    std::fs::write(m.path("committed"), b"").unwrap();
    assert_eq!(m.fs.unsynced_entries(), 0, "a zero window commits each operation as it is recorded");
    assert!(m.fs.lose_unsynced_by_file().unwrap().entries.is_empty());
    assert_eq!(names(&m.root), ["committed"]);
    drop(m);

    let exempt = MetadataModel { exempt_pid: Some(std::process::id()), ..MetadataModel::lazy(None) };
    let Some(m) = mount_with("entries_older_than_the_commit_window_or_made_by_an_exempt_process_survive", exempt)
    else {
        return;
    };
    std::fs::create_dir(m.path("data")).unwrap();
    assert_eq!(m.fs.unsynced_entries(), 0, "the runner's own operations are durable at once");
    assert!(m.fs.lose_unsynced_by_file().unwrap().entries.is_empty());
    assert_eq!(names(&m.root), ["data"]);
}

/// `$KEEL_BIN`, else the keel binary beside this test's build (`target/<profile>/keel`), if built.
fn keel_binary() -> Option<PathBuf> {
    if let Some(keel) = std::env::var_os("KEEL_BIN") {
        return Some(PathBuf::from(keel));
    }
    let test = std::env::current_exe().ok()?;
    let keel = test.parent()?.parent()?.join("keel");
    keel.is_file().then_some(keel)
}

fn free_port() -> u16 {
    jepsen::ports::claim().unwrap()
}

/// A keel member started on a disk that loses every directory entry not fsynced, killed once it
/// serves, and its power cut: the directories it made at its first start (Raft log, snapshots,
/// store) must still be there, or the member would come back without its synced Raft log.
#[test]
fn keel_makes_the_directories_of_its_data_dir_durable() {
    let test = "keel_makes_the_directories_of_its_data_dir_durable";
    let Some(keel) = keel_binary() else {
        eprintln!("skipping {test}: no keel binary beside the test (build -p keel)");
        return;
    };
    let Some(m) = mount_lazy(test) else { return };
    // The operator's directory, durable long before.
    let data = m.path("data");
    std::fs::create_dir(&data).unwrap();
    sync_dir(&m.root);
    let (client, peer) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let log = File::create(m._dir.path().join("keel.log")).unwrap();
    let mut child = std::process::Command::new(&keel)
        .args(["store", "--name", "n1", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("n1={peer}"), "--initial-cluster-state", "new"])
        .env_remove("FAILPOINTS")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start keel");
    // Serving clients comes after the member has started (its directories made).
    let address = client.trim_start_matches("http://").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "keel exited: {}", keel_log(&m));
        assert!(std::time::Instant::now() < deadline, "keel did not serve within 60 s: {}", keel_log(&m));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let loss = m.fs.lose_unsynced_by_file().unwrap();
    let left = names(&data);
    for dir in ["member-id", "raft-log", "snapshots", "store"] {
        assert!(left.iter().any(|name| name == dir), "{dir} lost: {left:?}, undone {:?}", loss.entries);
    }
}

fn keel_log(m: &Mount) -> String {
    std::fs::read_to_string(m._dir.path().join("keel.log")).unwrap_or_default()
}
