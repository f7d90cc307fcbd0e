//! What a power cut would take away: for every file written since its last fsync, the bytes it
//! had then. Writes go straight to the backing file (so reads, and mmap through the kernel's page
//! cache, need nothing special); before a write overwrites bytes that were durable, those bytes
//! are saved here. fsync forgets the file's record; [`Unsynced::lose`] writes the saved bytes
//! back and cuts the file to its durable length, which is what the disk held at the last fsync.
//!
//! Invariant: a backing file without a record holds exactly its durable content. A record holds
//! the durable length and, for each byte below it that was overwritten since, its durable value,
//! so "durable content" = current content with the saved extents put back, cut to that length.
//!
//! Worked example: a 10-byte file `aaaaaaaaaa`, durable. `write(8, "bbbb")` creates a record
//! (durable length 10) and saves bytes 8..10 (`aa`); the file is now `aaaaaaaabbbb`.
//! `set_len(4)` saves 4..8 (`aaaa`; 8..10 is already saved). `write(0, "c")` saves 0..1. On
//! `lose`, the saved extents are written back (`c` → `a` at 0, `aaaa` at 4, `aa` at 8: the file is
//! `aaaaaaaaaa` again) and the file is cut to 10 bytes. Had `sync` come after the first write,
//! the record would be gone and the durable content would be `aaaaaaaabbbb`.
//!
//! Lock order: a record's lock, then the table's; never the other way round (writers take the
//! table lock only to find or create a record, and release it before locking the record).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use nix::fcntl::FallocateFlags;

/// A backing file's identity: (device, inode). Stable while a record holds the file open, so a
/// number freed by a deletion cannot be reused under a live record.
pub type FileKey = (u64, u64);

/// What [`Unsynced::lose`] dropped (from one file, or summed over several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Files that had unsynced changes.
    pub files: u64,
    /// Durable bytes put back over unsynced overwrites.
    pub bytes_restored: u64,
    /// Bytes past the durable length cut off (unsynced appends).
    pub bytes_cut: u64,
}

#[derive(Debug)]
struct Record {
    /// The backing file, read-write: to save durable bytes before they are overwritten and to
    /// write them back.
    file: File,
    /// The length at the last fsync (or when the record was created, all of it durable then).
    durable_len: u64,
    /// Durable bytes overwritten since, by offset; extents never overlap, all below `durable_len`.
    saved: BTreeMap<u64, Vec<u8>>,
    /// Synced or lost: no longer in the table; whoever locks it afterwards must look again.
    retired: bool,
}

impl std::ops::AddAssign for Lost {
    fn add_assign(&mut self, other: Lost) {
        self.files += other.files;
        self.bytes_restored += other.bytes_restored;
        self.bytes_cut += other.bytes_cut;
    }
}

impl Record {
    /// Saves the durable bytes of `start..end` that are not saved yet.
    fn save(&mut self, start: u64, end: u64) -> io::Result<()> {
        let end = end.min(self.durable_len);
        if start >= end {
            return Ok(());
        }
        // The extents that may overlap start..end: the last one starting at or before `start`,
        // and every one starting inside.
        let first = self.saved.range(..=start).next_back().map_or(start, |(offset, _)| *offset);
        let covered: Vec<(u64, u64)> =
            self.saved.range(first..end).map(|(offset, bytes)| (*offset, *offset + bytes.len() as u64)).collect();
        let mut gaps = Vec::new();
        let mut position = start;
        for (from, to) in covered {
            if to <= position {
                continue;
            }
            if from > position {
                gaps.push((position, from));
            }
            position = position.max(to);
        }
        if position < end {
            gaps.push((position, end));
        }
        for (from, to) in gaps {
            // Unsaved bytes below the durable length are still the durable ones (the invariant),
            // and the file is at least that long there (a shrink saves what it cuts first).
            let mut bytes = vec![0; (to - from) as usize];
            self.file.read_exact_at(&mut bytes, from)?;
            self.saved.insert(from, bytes);
        }
        Ok(())
    }

    fn restore(&mut self) -> io::Result<Lost> {
        let current_len = self.file.metadata()?.len();
        let mut lost = Lost { files: 1, ..Lost::default() };
        for (offset, bytes) in std::mem::take(&mut self.saved) {
            self.file.write_all_at(&bytes, offset)?;
            lost.bytes_restored += bytes.len() as u64;
        }
        lost.bytes_cut = current_len.saturating_sub(self.durable_len);
        self.file.set_len(self.durable_len)?;
        Ok(lost)
    }
}

/// The records of every file with unsynced changes, on one mount.
#[derive(Debug, Default)]
pub struct Unsynced {
    table: Mutex<HashMap<FileKey, Arc<Mutex<Record>>>>,
}

impl Unsynced {
    /// Runs `change` on `key`'s record (created if there is none: `file` then holds only durable
    /// content), retrying if the record was retired while this thread waited for it.
    fn with_record<T>(
        &self,
        key: FileKey,
        file: &File,
        change: impl Fn(&mut Record) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let record = {
                let mut table = self.table.lock().unwrap();
                match table.get(&key) {
                    Some(record) => record.clone(),
                    None => {
                        let record = Record {
                            file: file.try_clone()?,
                            durable_len: file.metadata()?.len(),
                            saved: BTreeMap::new(),
                            retired: false,
                        };
                        let record = Arc::new(Mutex::new(record));
                        table.insert(key, record.clone());
                        record
                    }
                }
            };
            let mut record = record.lock().unwrap();
            if !record.retired {
                return change(&mut record);
            }
        }
    }

    /// `pwrite(data, offset)` on the backing file, saving the durable bytes it overwrites first.
    pub fn write(&self, key: FileKey, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_record(key, file, |record| {
            record.save(offset, offset + data.len() as u64)?;
            record.file.write_all_at(data, offset)
        })
    }

    /// `ftruncate`: a shrink saves the durable bytes it cuts; a growth needs nothing (the record
    /// cuts back to the durable length on loss).
    pub fn set_len(&self, key: FileKey, file: &File, len: u64) -> io::Result<()> {
        self.with_record(key, file, |record| {
            record.save(len, u64::MAX)?;
            record.file.set_len(len)
        })
    }

    /// `fallocate`: allocation (mode 0 or KEEP_SIZE) changes no byte of content, only perhaps
    /// the length; punching a hole or zeroing changes the range; collapsing or inserting a range
    /// moves everything after it.
    pub fn fallocate(&self, key: FileKey, file: &File, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let flags = FallocateFlags::from_bits_retain(mode);
        let shifts =
            flags.intersects(FallocateFlags::FALLOC_FL_COLLAPSE_RANGE | FallocateFlags::FALLOC_FL_INSERT_RANGE);
        let zeroes = flags.intersects(FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_ZERO_RANGE);
        self.with_record(key, file, |record| {
            if shifts {
                record.save(offset, u64::MAX)?;
            } else if zeroes {
                record.save(offset, offset.saturating_add(len))?;
            }
            nix::fcntl::fallocate(&record.file, flags, offset as i64, len as i64).map_err(io::Error::from)
        })
    }

    /// fsync / fdatasync: the file's content is durable from now on. The backing file is synced
    /// too (so an fsync costs what it costs on the real disk), under the record's lock, so no
    /// write can slip in between the sync and forgetting the record.
    pub fn sync(&self, key: FileKey, file: &File) -> io::Result<()> {
        let record = self.table.lock().unwrap().get(&key).cloned();
        let Some(record) = record else {
            return file.sync_data();
        };
        let mut guard = record.lock().unwrap();
        if guard.retired {
            // Synced or lost meanwhile; whatever was written after that has its own record.
            drop(guard);
            return self.sync(key, file);
        }
        guard.file.sync_data()?;
        guard.retired = true;
        let mut table = self.table.lock().unwrap();
        // Only this record: `forget` may have replaced it by a newer one meanwhile.
        if table.get(&key).is_some_and(|current| Arc::ptr_eq(current, &record)) {
            table.remove(&key);
        }
        Ok(())
    }

    /// The file's last link is gone: nothing can read it after a power cut, nothing to restore.
    pub fn forget(&self, key: FileKey) {
        let record = self.table.lock().unwrap().remove(&key);
        if let Some(record) = record {
            record.lock().unwrap().retired = true;
        }
    }

    /// The power cut: every file with unsynced changes goes back to its durable content.
    /// Returns what each file lost.
    pub fn lose(&self) -> io::Result<Vec<(FileKey, Lost)>> {
        let records = std::mem::take(&mut *self.table.lock().unwrap());
        let mut lost = Vec::with_capacity(records.len());
        for (key, record) in records {
            let mut record = record.lock().unwrap();
            record.retired = true;
            lost.push((key, record.restore()?));
        }
        Ok(lost)
    }

    /// Files with unsynced changes now.
    pub fn files(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}
