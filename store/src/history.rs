//! Reading the change feed back from the History space, for watchers that start in the past or
//! fall behind.

use bytes::Bytes;

use crate::codec::{self, VersionRecord};
use crate::engine::{Reader, Space};
use crate::error::{Error, Result};
use crate::key_value::{Change, Event, EventKind, KeyValue};
use crate::read_view::{ReadView, VersionRef};
use crate::revision::Revision;

/// The changes of revisions `from..=to`, whole revisions only, stopping after the revision that
/// brings the event count to `events_max` or more. Previous versions older than
/// `compact_revision` are left out, as etcd leaves them out, whether or not compaction has
/// physically removed them yet.
pub fn changes(
    reader: &dyn Reader,
    from: i64,
    to: i64,
    events_max: usize,
    compact_revision: i64,
) -> Result<Vec<Change>> {
    let end = Revision::new(to.saturating_add(1), 0).to_bytes();
    let mut cursor = reader.cursor(Space::History, Some(&end));
    cursor.seek(&Revision::new(from, 0).to_bytes());
    let mut changes: Vec<Change> = Vec::new();
    let mut events = 0usize;
    while let Some(history_key) = cursor.key() {
        let revision = Revision::from_bytes(history_key)
            .ok_or_else(|| Error::Corrupt { what: format!("history key {}", codec::printable(history_key)) })?;
        let is_new_revision = changes.last().is_none_or(|change| change.revision != revision.main);
        if is_new_revision && events >= events_max {
            break;
        }
        let key = codec::unseal(Space::History, history_key, cursor.value())?;
        let event = event_at(reader, key, revision, compact_revision)?;
        if is_new_revision {
            changes.push(Change { revision: revision.main, events: Vec::new() });
        }
        changes.last_mut().expect("pushed above").events.push(event);
        events += 1;
        cursor.next();
    }
    cursor.status()?;
    Ok(changes)
}

fn event_at(reader: &dyn Reader, key: &[u8], revision: Revision, compact_revision: i64) -> Result<Event> {
    let kv_key = codec::kv_key(key, revision);
    let record = reader.get(Space::Kv, &kv_key)?.ok_or_else(|| Error::Corrupt {
        what: format!("history names {} at {revision:?}, which has no version", codec::printable(key)),
    })?;
    let payload = codec::unseal(Space::Kv, &kv_key, &record)?;
    let prev_revision = revision.main - 1;
    let prev_kv =
        if prev_revision < compact_revision { None } else { ReadView { reader, revision: prev_revision }.get(key)? };
    if VersionRecord::is_tombstone(payload) {
        let kv = KeyValue { key: Bytes::copy_from_slice(key), mod_revision: revision.main, ..KeyValue::default() };
        return Ok(Event { kind: EventKind::Delete, kv, prev_kv, sub_revision: revision.sub });
    }
    let encoded = codec::encoded_key(key);
    let kv = VersionRef { encoded_key: &encoded, mod_revision: revision, payload }.to_key_value()?;
    Ok(Event { kind: EventKind::Put, kv, prev_kv, sub_revision: revision.sub })
}
