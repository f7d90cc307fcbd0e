//! The power-loss filesystem, mounted for real: what survives `lose_unsynced` is exactly what an
//! fsync made durable. Each test mounts its own LazyFS in a temporary directory; every test skips
//! (saying why) only when this machine cannot mount FUSE (no /dev/fuse, or no right to mount).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jepsen::lazyfs::{Error, LazyFs, Lost};

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

/// A fresh LazyFS, or None (with a note on stderr) where FUSE cannot be mounted.
fn mount(test: &str) -> Option<Mount> {
    let dir = tempfile::tempdir().expect("temp dir");
    let backing = dir.path().join("backing");
    let root = dir.path().join("mnt");
    match LazyFs::mount(&backing, &root) {
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
fn metadata_is_eager_so_an_unsynced_new_file_survives_empty() {
    let Some(m) = mount("metadata_is_eager_so_an_unsynced_new_file_survives_empty") else { return };
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
