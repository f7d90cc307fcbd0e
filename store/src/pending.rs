//! Writes of an apply batch that are not yet committed, and a [`Reader`] that sees the engine
//! through them, so each command of a batch reads what the commands before it wrote while the
//! whole batch still goes to the engine as one [`WriteBatch`].

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::codec;
use crate::engine::{Cursor, Reader, Space, WriteBatch};
use crate::error::Result;

/// Per space: key → new value, or None for a delete.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default)]
pub struct PendingWrites {
    spaces: [Overlay; Space::ALL.len()],
}

impl PendingWrites {
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.spaces[space.index()].insert(key, Some(value));
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.spaces[space.index()].insert(key, None);
    }

    pub fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (space, overlay) in Space::ALL.into_iter().zip(self.spaces) {
            for (key, value) in overlay {
                match value {
                    Some(value) => batch.put(space, key, value),
                    None => batch.delete(space, key),
                }
            }
        }
        batch
    }

    /// A reader of `base` as it will be once these writes are committed.
    pub fn over<'a>(&'a self, base: &'a dyn Reader) -> PendingReader<'a> {
        PendingReader { base, pending: self }
    }
}

pub struct PendingReader<'a> {
    base: &'a dyn Reader,
    pending: &'a PendingWrites,
}

impl Reader for PendingReader<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.spaces[space.index()].get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(space, key),
        }
    }

    fn cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_> {
        self.merged(space, upper_bound, || self.base.cursor(space, upper_bound))
    }

    fn versions_cursor(&self, encoded: &[u8]) -> Box<dyn Cursor + '_> {
        let upper_bound = codec::past_all_versions(encoded);
        self.merged(Space::Kv, Some(&upper_bound), || self.base.versions_cursor(encoded))
    }
}

impl<'a> PendingReader<'a> {
    /// The base's cursor seen through this space's overlay, which ends at `upper_bound` too.
    fn merged(
        &self,
        space: Space,
        upper_bound: Option<&[u8]>,
        base: impl FnOnce() -> Box<dyn Cursor + 'a>,
    ) -> Box<dyn Cursor + 'a> {
        let pending: &'a PendingWrites = self.pending;
        let overlay = &pending.spaces[space.index()];
        if overlay.is_empty() {
            return base();
        }
        Box::new(MergedCursor {
            base: base(),
            overlay,
            upper_bound: upper_bound.map(<[u8]>::to_vec),
            overlay_entry: None,
            on_overlay: false,
        })
    }
}

/// Merges the engine's cursor with the overlay. On equal keys the overlay wins; an overlay
/// delete hides the engine's entry.
struct MergedCursor<'a> {
    base: Box<dyn Cursor + 'a>,
    overlay: &'a Overlay,
    upper_bound: Option<Vec<u8>>,
    /// The overlay's first entry at or after the cursor position.
    overlay_entry: Option<(&'a Vec<u8>, &'a Option<Vec<u8>>)>,
    /// Whether the current entry comes from the overlay.
    on_overlay: bool,
}

impl MergedCursor<'_> {
    fn overlay_from(&mut self, bound: Bound<&[u8]>) {
        self.overlay_entry = self.overlay.range::<[u8], _>((bound, Bound::Unbounded)).next();
        if let (Some((key, _)), Some(upper)) = (self.overlay_entry, &self.upper_bound) {
            if key >= upper {
                self.overlay_entry = None;
            }
        }
    }

    /// Skips overlay deletes (and the engine entries they hide) and picks the smaller side.
    fn settle(&mut self) {
        loop {
            let Some((overlay_key, overlay_value)) = self.overlay_entry else {
                self.on_overlay = false;
                return;
            };
            let base_key = self.base.key();
            match base_key.map(|base_key| base_key.cmp(overlay_key.as_slice())) {
                Some(std::cmp::Ordering::Less) => {
                    self.on_overlay = false;
                    return;
                }
                equal_or_greater => {
                    if equal_or_greater == Some(std::cmp::Ordering::Equal) {
                        self.base.next();
                    }
                    if overlay_value.is_some() {
                        self.on_overlay = true;
                        return;
                    }
                    self.overlay_from(Bound::Excluded(overlay_key.as_slice()));
                }
            }
        }
    }
}

impl Cursor for MergedCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        self.base.seek(target);
        self.overlay_from(Bound::Included(target));
        self.settle();
    }

    fn next(&mut self) {
        if self.on_overlay {
            let (key, _) = self.overlay_entry.expect("on an overlay entry");
            self.overlay_from(Bound::Excluded(key.as_slice()));
        } else {
            self.base.next();
        }
        self.settle();
    }

    fn key(&self) -> Option<&[u8]> {
        if self.on_overlay {
            self.overlay_entry.map(|(key, _)| key.as_slice())
        } else {
            self.base.key()
        }
    }

    fn value(&self) -> &[u8] {
        if self.on_overlay {
            self.overlay_entry.and_then(|(_, value)| value.as_deref()).expect("overlay entry with a value")
        } else {
            self.base.value()
        }
    }

    fn status(&self) -> Result<()> {
        self.base.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, Engine};
    use crate::MemoryEngine;

    fn collect(reader: &dyn Reader, from: &[u8], upper: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut cursor = reader.cursor(Space::Kv, upper);
        cursor.seek(from);
        let mut out = Vec::new();
        while let Some(key) = cursor.key() {
            out.push((key.to_vec(), cursor.value().to_vec()));
            cursor.next();
        }
        out
    }

    #[test]
    fn merged_cursor_sees_overlay_puts_and_deletes() {
        let engine = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        for key in [b"a", b"c", b"e", b"g"] {
            batch.put(Space::Kv, key.to_vec(), b"base".to_vec());
        }
        engine.write(batch, Durability::Sync).unwrap();
        let mut pending = PendingWrites::default();
        pending.put(Space::Kv, b"b".to_vec(), b"new".to_vec());
        pending.put(Space::Kv, b"c".to_vec(), b"new".to_vec());
        pending.delete(Space::Kv, b"e".to_vec());
        pending.delete(Space::Kv, b"f".to_vec());
        pending.put(Space::Kv, b"h".to_vec(), b"new".to_vec());
        let reader = pending.over(&engine);
        let keys: Vec<(String, String)> = collect(&reader, b"", None)
            .into_iter()
            .map(|(key, value)| (String::from_utf8(key).unwrap(), String::from_utf8(value).unwrap()))
            .collect();
        let expected = [("a", "base"), ("b", "new"), ("c", "new"), ("g", "base"), ("h", "new")];
        assert_eq!(keys, expected.map(|(key, value)| (key.to_string(), value.to_string())));
        assert_eq!(collect(&reader, b"d", Some(b"h")).len(), 1, "only g lies in [d, h)");
        assert_eq!(reader.get(Space::Kv, b"e").unwrap(), None);
        assert_eq!(reader.get(Space::Kv, b"b").unwrap(), Some(b"new".to_vec()));
    }
}
