//! etcd's way of naming a set of keys with `key` and `range_end`.

use bytes::Bytes;

/// A set of keys, decoded from etcd's (key, range_end) pair:
/// - `range_end` empty: the single key `key`;
/// - `range_end` = "\0": every key ≥ `key` (and with `key` = "\0" too, every key);
/// - otherwise: the half-open interval [`key`, `range_end`), empty when `range_end` ≤ `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Single(Bytes),
    /// [start, end); `end` = None means no upper bound.
    Interval {
        start: Bytes,
        end: Option<Bytes>,
    },
}

impl KeyRange {
    pub fn new(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == [0] {
            KeyRange::Interval { start: key.clone(), end: None }
        } else {
            KeyRange::Interval { start: key.clone(), end: Some(range_end.clone()) }
        }
    }

    /// The range of keys starting with `prefix` (etcd's `--prefix`).
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        let start = Bytes::copy_from_slice(prefix);
        KeyRange::Interval { end: prefix_end(prefix).map(Bytes::from), start }
    }

    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(key) => key,
            KeyRange::Interval { start, .. } => start,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(single) => single.as_ref() == key,
            KeyRange::Interval { start, end } => {
                key >= start.as_ref() && end.as_ref().is_none_or(|end| key < end.as_ref())
            }
        }
    }

    /// Whether the two sets share at least one key.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        match (self, other) {
            (KeyRange::Single(key), range) | (range, KeyRange::Single(key)) => range.contains(key),
            (KeyRange::Interval { start: a_start, end: a_end }, KeyRange::Interval { start: b_start, end: b_end }) => {
                let a_before_b_ends = b_end.as_ref().is_none_or(|end| a_start < end);
                let b_before_a_ends = a_end.as_ref().is_none_or(|end| b_start < end);
                a_before_b_ends && b_before_a_ends && !self.is_empty() && !other.is_empty()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Interval { start, end } => end.as_ref().is_some_and(|end| end <= start),
        }
    }
}

/// The smallest key greater than every key with this prefix: the prefix with its last byte
/// below 0xff incremented and the rest dropped. None when every byte is 0xff (no upper bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, end: &str) -> KeyRange {
        KeyRange::new(&Bytes::copy_from_slice(key.as_bytes()), &Bytes::copy_from_slice(end.as_bytes()))
    }

    #[test]
    fn decodes_etcd_pairs() {
        assert!(range("a", "").contains(b"a"));
        assert!(!range("a", "").contains(b"ab"));
        assert!(range("a", "\0").contains(b"zzz"));
        assert!(!range("b", "\0").contains(b"a"));
        assert!(range("\0", "\0").contains(b"\0"));
        assert!(range("a", "c").contains(b"b"));
        assert!(!range("a", "c").contains(b"c"));
        assert!(range("c", "a").is_empty());
    }

    #[test]
    fn intersections() {
        assert!(range("a", "c").intersects(&range("b", "")));
        assert!(!range("a", "c").intersects(&range("c", "")));
        assert!(range("a", "\0").intersects(&range("x", "y")));
        assert!(!range("a", "b").intersects(&range("b", "c")));
        assert!(!range("c", "a").intersects(&range("a", "z")));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
