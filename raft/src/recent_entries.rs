//! [`RecentEntries`]: the newest log entries, kept decoded in memory beside RocksDB.
//!
//! Each entry a leader appends is read back at once: by the replication stream of every follower
//! and by the state machine worker that applies it. From RocksDB each read is an iterator seek and
//! a decode that copies the payload. The ring answers those reads while the entries are fresh,
//! and holds little memory: a reader that has fallen further behind reads RocksDB, which stays
//! the log's truth.
//!
//! The ring always holds a suffix of the log: contiguous indexes ending at the last append.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;

use openraft::type_config::alias::EntryOf;

use crate::types::TypeConfig;

/// Bounds of the ring: entries, and the encoded bytes they came to.
const MAX_ENTRIES: usize = 4096;
const MAX_BYTES: usize = 1 << 20;

type Entry = EntryOf<TypeConfig>;

#[derive(Debug, Default)]
pub struct RecentEntries {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// (entry, its encoded size), by index, contiguous.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Ring {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.log_id.index)
    }

    /// Drops the entries at `index` and after.
    fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            let (_, size) = self.entries.pop_back().expect("not empty");
            self.bytes -= size;
        }
    }

    fn pop_front(&mut self) {
        let (_, size) = self.entries.pop_front().expect("not empty");
        self.bytes -= size;
    }
}

impl RecentEntries {
    /// Records entries just written to the log's end, each with its encoded size.
    pub fn appended(&self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        let mut ring = self.ring.lock().expect("recent entries lock");
        for (entry, size) in entries {
            let index = entry.log_id.index;
            // An append replaces whatever the log held from its index on; one past a gap starts
            // the suffix afresh.
            ring.truncate_from(index);
            if ring.last_index().is_some_and(|last| last + 1 != index) {
                ring.entries.clear();
                ring.bytes = 0;
            }
            ring.entries.push_back((entry, size));
            ring.bytes += size;
            while ring.entries.len() > MAX_ENTRIES || (ring.bytes > MAX_BYTES && ring.entries.len() > 1) {
                ring.pop_front();
            }
        }
    }

    /// The log was truncated: entries after `last_kept` (all of them for None) are gone.
    pub fn truncated_after(&self, last_kept: Option<u64>) {
        let mut ring = self.ring.lock().expect("recent entries lock");
        ring.truncate_from(last_kept.map_or(0, |index| index + 1));
    }

    /// The log was purged up to and including `index`.
    pub fn purged_through(&self, index: u64) {
        let mut ring = self.ring.lock().expect("recent entries lock");
        while ring.first_index().is_some_and(|first| first <= index) {
            ring.pop_front();
        }
    }

    /// The entries of `range` when the ring holds all of them: the range starts at or after the
    /// ring's first entry and ends at or before its last. None sends the reader to RocksDB.
    pub fn get(&self, range: &impl RangeBounds<u64>) -> Option<Vec<Entry>> {
        let ring = self.ring.lock().expect("recent entries lock");
        let (first, last) = (ring.first_index()?, ring.last_index()?);
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.checked_add(1)?,
            Bound::Unbounded => return None,
        };
        // The end must be known: an entry past the ring's last may be in RocksDB already while
        // its append is still recording it here.
        let end = match range.end_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.checked_sub(1)?,
            Bound::Unbounded => return None,
        };
        if start < first || end > last {
            return None;
        }
        if start > end {
            return Some(Vec::new());
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(ring.entries.range(from..=to).map(|(entry, _)| entry.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use openraft::type_config::alias::LogIdOf;
    use openraft::vote::RaftLeaderId;

    fn entry(term: u64, index: u64) -> Entry {
        let leader = openraft::type_config::alias::CommittedLeaderIdOf::<TypeConfig>::new(term, 1);
        Entry::new_blank(LogIdOf::<TypeConfig>::new(leader, index))
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|entries| entries.iter().map(|entry| (entry.log_id.leader_id.term, entry.log_id.index)).collect())
    }

    #[test]
    fn only_ranges_wholly_held_are_answered() {
        let recent = RecentEntries::default();
        assert_eq!(indexes(recent.get(&(1..3))), None);
        recent.appended((5..=9).map(|index| (entry(1, index), 10)));
        assert_eq!(indexes(recent.get(&(5..8))), Some(vec![(1, 5), (1, 6), (1, 7)]));
        assert_eq!(indexes(recent.get(&(7..=9))), Some(vec![(1, 7), (1, 8), (1, 9)]));
        assert_eq!(indexes(recent.get(&(9..9))), Some(vec![]));
        // Before the ring, past its end, or open-ended: RocksDB answers.
        assert_eq!(indexes(recent.get(&(4..7))), None);
        assert_eq!(indexes(recent.get(&(8..11))), None);
        assert_eq!(indexes(recent.get(&(8..))), None);
    }

    #[test]
    fn an_append_over_older_entries_replaces_them() {
        let recent = RecentEntries::default();
        recent.appended((1..=5).map(|index| (entry(1, index), 10)));
        // A new leader's entries from 4 on (openraft truncates first; the ring does not rely on it).
        recent.appended((4..=6).map(|index| (entry(2, index), 10)));
        assert_eq!(indexes(recent.get(&(3..=6))), Some(vec![(1, 3), (2, 4), (2, 5), (2, 6)]));
        recent.truncated_after(Some(4));
        assert_eq!(indexes(recent.get(&(3..=5))), None);
        assert_eq!(indexes(recent.get(&(3..=4))), Some(vec![(1, 3), (2, 4)]));
        recent.truncated_after(None);
        assert_eq!(indexes(recent.get(&(1..=1))), None);
    }

    #[test]
    fn a_gap_starts_the_ring_afresh() {
        let recent = RecentEntries::default();
        recent.appended((1..=3).map(|index| (entry(1, index), 10)));
        // A snapshot was installed up to 99; appends go on from 100.
        recent.purged_through(99);
        recent.appended([(entry(2, 100), 10)]);
        assert_eq!(indexes(recent.get(&(100..=100))), Some(vec![(2, 100)]));
        recent.appended([(entry(2, 102), 10)]);
        assert_eq!(indexes(recent.get(&(100..=100))), None);
        assert_eq!(indexes(recent.get(&(102..=102))), Some(vec![(2, 102)]));
    }

    #[test]
    fn purges_and_bounds_drop_the_oldest() {
        let recent = RecentEntries::default();
        recent.appended((1..=10).map(|index| (entry(1, index), 10)));
        recent.purged_through(4);
        assert_eq!(indexes(recent.get(&(4..=5))), None);
        assert_eq!(indexes(recent.get(&(5..=5))), Some(vec![(1, 5)]));
        recent.appended((11..=12).map(|index| (entry(1, index), MAX_BYTES / 2)));
        // 11 and 12 fill the byte bound: everything older is dropped, 11 is kept.
        assert_eq!(indexes(recent.get(&(10..=12))), None);
        assert_eq!(indexes(recent.get(&(11..=12))), Some(vec![(1, 11), (1, 12)]));
        recent.appended((13..=13 + MAX_ENTRIES as u64).map(|index| (entry(1, index), 1)));
        assert_eq!(indexes(recent.get(&(13..=13))), None);
        assert_eq!(indexes(recent.get(&(14..=14))), Some(vec![(1, 14)]));
    }
}
