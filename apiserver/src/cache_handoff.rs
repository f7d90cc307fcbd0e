//! [`Handoff`]: objects this server's writers are about to store, already prepared for the watch
//! cache.
//!
//! The cache is fed by the store's change feed, which carries only the stored bytes. Without the
//! handoff it would scan each object this server has just encoded, to find its labels, its
//! selectable fields and where its resourceVersion goes: about a tenth of a create's CPU
//! (BENCHMARKS.md). The writer knows all that already. An entry is used only for the very bytes
//! it was prepared from, so a stale, lost or overwritten entry costs a scan, never a wrong object.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;

use crate::cached_object::CachedObject;
use crate::registry::ResourceInfo;
use crate::writer::Stored;

/// Entries past this many are dropped all at once: they are writes whose feed events never came
/// (a write cancelled after it committed, a feed that re-listed), and the cache scans instead.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub struct Handoff {
    entries: Mutex<HashMap<Bytes, Prepared>>,
}

#[derive(Debug)]
struct Prepared {
    stored: Stored,
    /// The object as the cache holds it, but with the stored bytes (no resourceVersion yet).
    object: CachedObject,
}

impl Handoff {
    /// Announces that `stored` (the encoding of `value`) is about to be written at `key`. Drop the
    /// returned [`Offer`] when the write fails and call [`Offer::written`] when it succeeds.
    pub fn offer<'a>(&'a self, info: &ResourceInfo, key: &Bytes, value: &Value, stored: &Stored) -> Offer<'a> {
        let object = CachedObject::from_encoded(info, key.clone(), value, stored.bytes.clone(), 0);
        let mut entries = self.entries.lock().expect("handoff lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.clone(), Prepared { stored: stored.clone(), object });
        Offer { handoff: self, key: key.clone(), bytes: stored.bytes.clone(), written: false }
    }

    /// The cached form of `stored` written at `key` at `revision`, when a writer prepared it.
    pub fn take(&self, key: &[u8], stored: &[u8], revision: i64) -> Option<CachedObject> {
        let prepared = self.entries.lock().expect("handoff lock").remove(key)?;
        if prepared.stored.bytes != stored {
            return None;
        }
        let json = prepared.stored.with_resource_version(revision)?;
        Some(prepared.object.restamped(json, revision))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("handoff lock").len()
    }
}

/// One writer's announced object; withdrawn when dropped before the write succeeded.
pub struct Offer<'a> {
    handoff: &'a Handoff,
    key: Bytes,
    bytes: Bytes,
    written: bool,
}

impl Offer<'_> {
    /// The write succeeded: the entry stays for the feed to take.
    pub fn written(mut self) {
        self.written = true;
    }
}

impl Drop for Offer<'_> {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let mut entries = self.handoff.entries.lock().expect("handoff lock");
        // Only our own entry: another writer of the same key may have replaced it.
        if entries.get(&self.key).is_some_and(|prepared| prepared.stored.bytes.as_ptr() == self.bytes.as_ptr()) {
            entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, "uid": "u"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase},
        })
    }

    /// Pods, an empty handoff, and the key of pod `web`.
    fn fixture() -> (&'static ResourceInfo, Handoff, Bytes) {
        let pods = registry::find("", "v1", "pods").unwrap();
        (pods, Handoff::default(), Bytes::from_static(b"/registry/pods/default/web"))
    }

    #[test]
    fn a_taken_object_is_what_the_scan_of_its_bytes_gives() {
        let (pods, handoff, key) = fixture();
        let value = pod("web", "Running");
        let stored = Stored::encode(&value);
        handoff.offer(pods, &key, &value, &stored).written();
        let taken = handoff.take(&key, &stored.bytes, 42).expect("prepared");
        let scanned = CachedObject::decode(pods, key.clone(), &stored.bytes, 42).unwrap();
        assert_eq!(taken, scanned);
        assert_eq!(taken.field("status.phase"), "Running");
        assert_eq!(taken.label("app"), Some("web"));
        // Taken once: the next event of the key is scanned.
        assert!(handoff.take(&key, &stored.bytes, 43).is_none());
    }

    #[test]
    fn other_bytes_at_the_key_are_not_taken_for_the_prepared_ones() {
        let (pods, handoff, key) = fixture();
        let value = pod("web", "Running");
        handoff.offer(pods, &key, &value, &Stored::encode(&value)).written();
        let other = Stored::encode(&pod("web", "Failed"));
        assert!(handoff.take(&key, &other.bytes, 7).is_none());
        assert_eq!(handoff.len(), 0);
    }

    #[test]
    fn a_failed_write_withdraws_only_its_own_entry() {
        let (pods, handoff, key) = fixture();
        let first = pod("web", "Running");
        let failed = handoff.offer(pods, &key, &first, &Stored::encode(&first));
        drop(failed);
        assert_eq!(handoff.len(), 0);

        let failing = handoff.offer(pods, &key, &first, &Stored::encode(&first));
        let second = pod("web", "Succeeded");
        let stored = Stored::encode(&second);
        handoff.offer(pods, &key, &second, &stored).written();
        drop(failing);
        assert!(handoff.take(&key, &stored.bytes, 9).is_some());
    }

    #[test]
    fn entries_whose_events_never_come_are_bounded() {
        let (pods, handoff, _) = fixture();
        for index in 0..MAX_ENTRIES + 10 {
            let value = pod(&format!("p{index}"), "Running");
            let key = Bytes::from(format!("/registry/pods/default/p{index}"));
            handoff.offer(pods, &key, &value, &Stored::encode(&value)).written();
        }
        assert!(handoff.len() <= MAX_ENTRIES);
    }
}
