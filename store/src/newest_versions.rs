//! The newest version of recently applied keys, kept in memory.
//!
//! Every put reads its key's newest version (for its create revision, version and lease, and the
//! event's previous version); from RocksDB that is an iterator and a seek through the memtable
//! and every level, a third of a member's CPU under puts to existing keys (BENCHMARKS.md). etcd
//! keeps this in its in-memory index. Here the applier consults this map first.
//!
//! It is exact, not a guess: only the applier changes it, under the apply lock, with the newest
//! version of each key a successfully written batch read or wrote (`None`: the key does not
//! exist); compaction never changes a key's newest state; a snapshot install clears it. It takes
//! in a key it does not hold only from the key's second version on, and is bounded by an
//! estimate of its bytes, starting over when full.

use std::collections::HashMap;

use bytes::Bytes;

use crate::key_value::KeyValue;

/// Enough for the newest versions of ~150k keys of 256-byte values.
const BUDGET_BYTES: usize = 64 << 20;

/// A map entry's own size and its allocations' overhead, on top of key and value bytes.
const ENTRY_OVERHEAD_BYTES: usize = 200;

#[derive(Debug)]
pub(crate) struct NewestVersions {
    versions: HashMap<Bytes, Option<KeyValue>>,
    bytes: usize,
    budget: usize,
}

impl Default for NewestVersions {
    fn default() -> Self {
        NewestVersions::with_budget(BUDGET_BYTES)
    }
}

impl NewestVersions {
    pub(crate) fn with_budget(budget: usize) -> Self {
        NewestVersions { versions: HashMap::new(), bytes: 0, budget }
    }

    /// `Some(newest)` if the key's newest state is known (`Some(None)`: it does not exist).
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Option<KeyValue>> {
        self.versions.get(key)
    }

    /// Takes in what a written batch left newest. A key already held is always updated; a new
    /// one only once it has been put again (version 2 on), so a load of keys written once (a
    /// bulk create, `etcdctl check perf`) costs nothing here. Keys and values are copied, so no
    /// entry holds on to a larger buffer (a whole request or log entry) it was sliced from.
    pub(crate) fn absorb(&mut self, newest: HashMap<Bytes, Option<KeyValue>>) {
        for (key, version) in newest {
            let size = entry_size(&key, version.as_ref());
            if let Some(slot) = self.versions.get_mut(&key[..]) {
                self.bytes = self.bytes - entry_size(&key, slot.as_ref()) + size;
                *slot = owned(Bytes::copy_from_slice(&key), version);
                continue;
            }
            if version.as_ref().is_none_or(|version| version.version <= 1) {
                continue;
            }
            if self.bytes + size > self.budget {
                self.clear();
            }
            let key = Bytes::copy_from_slice(&key);
            self.versions.insert(key.clone(), owned(key, version));
            self.bytes += size;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.versions = HashMap::new();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.versions.len()
    }
}

/// `version` with `key` (an owned copy) and a copy of its value.
fn owned(key: Bytes, version: Option<KeyValue>) -> Option<KeyValue> {
    version.map(|version| KeyValue { key, value: Bytes::copy_from_slice(&version.value), ..version })
}

fn entry_size(key: &[u8], version: Option<&KeyValue>) -> usize {
    ENTRY_OVERHEAD_BYTES + key.len() + version.map_or(0, |version| version.value.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key's second version (new keys are taken in from their second version on).
    fn version(key: &str, value: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: revision - 1,
            mod_revision: revision,
            version: 2,
            lease: 0,
        }
    }

    #[test]
    fn the_last_absorbed_state_of_a_key_is_what_it_answers() {
        let mut newest = NewestVersions::default();
        assert_eq!(newest.get(b"a"), None, "unknown");
        newest.absorb(HashMap::from([(Bytes::from_static(b"a"), Some(version("a", "1", 2)))]));
        assert_eq!(newest.get(b"a"), Some(&Some(version("a", "1", 2))));
        newest.absorb(HashMap::from([(Bytes::from_static(b"a"), None)]));
        assert_eq!(newest.get(b"a"), Some(&None), "deleted since: known not to exist");
        let first = KeyValue { version: 1, ..version("a", "2", 9) };
        newest.absorb(HashMap::from([(Bytes::from_static(b"a"), Some(first.clone()))]));
        assert_eq!(newest.get(b"a"), Some(&Some(first)), "a key held is updated whatever its version");
        assert_eq!(newest.len(), 1);
    }

    #[test]
    fn keys_written_once_or_absent_are_not_taken_in() {
        let mut newest = NewestVersions::default();
        let created = KeyValue { version: 1, ..version("c", "1", 2) };
        newest.absorb(HashMap::from([(Bytes::from_static(b"c"), Some(created)), (Bytes::from_static(b"d"), None)]));
        assert_eq!((newest.len(), newest.bytes), (0, 0));
        assert_eq!(newest.get(b"c"), None, "unknown: read from the engine");
    }

    #[test]
    fn entries_do_not_hold_the_buffers_they_came_from() {
        let buffer = Bytes::from(vec![b'x'; 4096]);
        let key = buffer.slice(0..1);
        let kv = KeyValue { key: key.clone(), value: buffer.slice(1..3), ..version("x", "", 2) };
        let mut newest = NewestVersions::default();
        newest.absorb(HashMap::from([(key, Some(kv))]));
        let (stored_key, stored) = newest.versions.iter().next().unwrap();
        let stored = stored.as_ref().unwrap();
        assert_eq!((&stored_key[..], &stored.key[..], &stored.value[..]), (&b"x"[..], &b"x"[..], &b"xx"[..]));
        assert!(!buffer.as_ptr_range().contains(&stored.value.as_ptr()), "the value was copied");
        assert!(!buffer.as_ptr_range().contains(&stored_key.as_ptr()), "the key was copied");
    }

    #[test]
    fn it_starts_over_when_its_budget_is_spent_and_keeps_its_count_across_replacements() {
        let entry = entry_size(b"k00", Some(&version("k00", "v", 2)));
        let mut newest = NewestVersions::with_budget(3 * entry);
        for round in 0..5 {
            // Replacing a key's version does not grow the estimate.
            newest.absorb(HashMap::from([(Bytes::from_static(b"k00"), Some(version("k00", "v", round + 2)))]));
        }
        assert_eq!(newest.bytes, entry);
        for index in 1..3 {
            let key = format!("k{index:02}");
            newest.absorb(HashMap::from([(Bytes::from(key.clone()), Some(version(&key, "v", 9)))]));
        }
        assert_eq!(newest.len(), 3);
        newest.absorb(HashMap::from([(Bytes::from_static(b"k03"), Some(version("k03", "v", 10)))]));
        assert_eq!(newest.len(), 1, "full: it started over with the new entry");
        assert_eq!(newest.get(b"k00"), None);
        assert_eq!(newest.get(b"k03").unwrap().as_ref().unwrap().mod_revision, 10);
    }
}
