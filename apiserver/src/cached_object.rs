//! [`CachedObject`]: one object as the cache holds it: encoded once, with its resourceVersion set,
//! and with the labels and fields selectors read, so a LIST or a watch event is written without
//! decoding or re-encoding it.
//!
//! The selector text is kept compact: with 100k pods, a `BTreeMap<String, String>` each for the
//! labels and the fields (~26 allocations and two 544-byte B-tree nodes per object) held
//! ~1.7 KB per object, as much as two thirds of the object's JSON (BENCHMARKS.md).

use bytes::Bytes;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::{object, raw_json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedObject {
    /// Its store key.
    pub key: Bytes,
    /// Its resourceVersion: the store revision that wrote it (or, for a deleted object, deleted it).
    pub revision: i64,
    /// The object as JSON, resourceVersion included.
    pub json: Bytes,
    selectors: SelectorText,
}

/// The labels (sorted by key) and the field values, in one string.
///
/// `ends` holds where each piece ends in `text`: first the labels' keys and values in turns,
/// then one value per field of [`field_names`]: `metadata.name`, `metadata.namespace`, then the
/// resource's selectable fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SelectorText {
    text: Box<str>,
    ends: Box<[u32]>,
    labels: u32,
    selectable_fields: &'static [&'static str],
}

impl CachedObject {
    /// From a stored value (JSON without resourceVersion) and the revision to stamp on it.
    pub fn decode(info: &ResourceInfo, key: Bytes, stored: &[u8], revision: i64) -> Result<CachedObject, String> {
        if info.conversion.is_none() {
            if let Some(object) =
                std::str::from_utf8(stored).ok().and_then(|text| Self::scan(info, &key, text, revision))
            {
                return Ok(object);
            }
        }
        let mut value: Value = serde_json::from_slice(stored)
            .map_err(|error| format!("{}: stored object is not JSON: {error}", String::from_utf8_lossy(&key)))?;
        if let Some(conversion) = info.conversion {
            value = (conversion.from_storage)(value);
        }
        object::set_resource_version(&mut value, revision);
        Ok(CachedObject::from_value(info, key, &value, revision))
    }

    pub fn from_value(info: &ResourceInfo, key: Bytes, value: &Value, revision: i64) -> CachedObject {
        // Copied to an exact-size allocation: `to_vec` grows its buffer by doubling, and a Bytes
        // made from it keeps the whole capacity (a 2.5 KB pod held a 4 KB buffer; 150 MiB more
        // with 100k pods). Shrinking in place does not help, as mimalloc keeps a block shrunk to
        // half its size or more.
        let encoded = serde_json::to_vec(value).expect("a JSON value encodes");
        CachedObject::from_encoded(info, key, value, Bytes::copy_from_slice(&encoded), revision)
    }

    /// The object `value` whose JSON, resourceVersion `revision` included, is `json`: a writer's
    /// own encoding of it, not read again.
    pub fn from_encoded(info: &ResourceInfo, key: Bytes, value: &Value, json: Bytes, revision: i64) -> CachedObject {
        CachedObject { key, revision, json, selectors: SelectorText::new(info, value) }
    }

    /// The same object as of `revision`, whose JSON that is.
    pub fn restamped(&self, json: Bytes, revision: i64) -> CachedObject {
        CachedObject { revision, json, ..self.clone() }
    }

    /// [`CachedObject::decode`] by scanning the text (`raw_json.rs`); None for text that is not
    /// an object with a metadata object, which the decoding path handles.
    fn scan(info: &ResourceInfo, key: &Bytes, text: &str, revision: i64) -> Option<CachedObject> {
        let stored = raw_json::StoredObject::scan(text)?;
        // What `SelectorText::new` reads.
        let mut paths = vec!["metadata.labels", "metadata.name", "metadata.namespace"];
        paths.extend_from_slice(info.selectable_fields);
        let selected = stored.pick(&paths);
        let selectors = SelectorText::new(info, &selected);
        Some(CachedObject {
            key: key.clone(),
            revision,
            json: Bytes::from(stored.with_resource_version(revision)),
            selectors,
        })
    }

    /// This object as of a later revision that deleted it: the same object with that
    /// resourceVersion.
    pub fn deleted_at(&self, info: &ResourceInfo, revision: i64) -> CachedObject {
        let json = std::str::from_utf8(&self.json)
            .ok()
            .and_then(raw_json::StoredObject::scan)
            .map(|stored| stored.with_resource_version(revision));
        match json {
            Some(json) => CachedObject { revision, json: Bytes::from(json), ..self.clone() },
            None => {
                let mut value = self.value();
                object::set_resource_version(&mut value, revision);
                CachedObject::from_value(info, self.key.clone(), &value, revision)
            }
        }
    }

    /// The object decoded again (tables and subresources need its fields).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("a cached object is valid JSON")
    }

    pub fn name(&self) -> &str {
        self.selectors.field(0)
    }

    /// The value of label `key`, if the object has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.selectors.label(key)
    }

    /// The text of an indexed field (`metadata.name`, `metadata.namespace` or one of the
    /// resource's selectable fields); "" for one it lacks, as a field selector reads it.
    pub fn field(&self, name: &str) -> &str {
        let index = match name {
            "metadata.name" => 0,
            "metadata.namespace" => 1,
            _ => match self.selectors.selectable_fields.iter().position(|field| *field == name) {
                Some(position) => position + 2,
                None => return "",
            },
        };
        self.selectors.field(index)
    }
}

impl SelectorText {
    fn new(info: &ResourceInfo, value: &Value) -> SelectorText {
        let mut text = String::new();
        let mut ends = Vec::new();
        let mut push = |piece: &str| {
            text.push_str(piece);
            ends.push(u32::try_from(text.len()).expect("selector text under 4 GiB"));
        };
        let labels = object::labels(value);
        for (key, label) in &labels {
            push(key);
            push(label);
        }
        push(object::name(value));
        push(object::namespace(value));
        for field in info.selectable_fields {
            push(&object::field_text(value, field));
        }
        // Copies of exact size, for the reason `from_value` gives.
        SelectorText {
            text: Box::from(text.as_str()),
            ends: Box::from(ends.as_slice()),
            labels: u32::try_from(labels.len()).expect("labels fit u32"),
            selectable_fields: info.selectable_fields,
        }
    }

    fn piece(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        &self.text[start..self.ends[index] as usize]
    }

    fn label(&self, key: &str) -> Option<&str> {
        let labels = self.labels as usize;
        // Keys are sorted (they came from a BTreeMap): binary search over the pairs.
        let (mut low, mut high) = (0, labels);
        while low < high {
            let middle = (low + high) / 2;
            match self.piece(2 * middle).cmp(key) {
                std::cmp::Ordering::Equal => return Some(self.piece(2 * middle + 1)),
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
            }
        }
        None
    }

    fn field(&self, index: usize) -> &str {
        self.piece(2 * self.labels as usize + index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn labels_and_fields_are_read_back() {
        let pods = registry::find("", "v1", "pods").unwrap();
        let pod = serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "prod", "labels": {"tier": "", "app": "web", "zone": "b"}},
            "spec": {"nodeName": "node-7", "hostNetwork": true},
            "status": {"phase": "Running"},
        });
        let object = CachedObject::from_value(pods, Bytes::from_static(b"/registry/pods/prod/web-1"), &pod, 3);
        assert_eq!(object.name(), "web-1");
        assert_eq!(object.field("metadata.namespace"), "prod");
        assert_eq!(object.field("spec.nodeName"), "node-7");
        assert_eq!(object.field("status.phase"), "Running");
        assert_eq!(object.field("spec.serviceAccountName"), "");
        assert_eq!(object.field("spec.unknown"), "");
        assert_eq!(object.label("app"), Some("web"));
        assert_eq!(object.label("tier"), Some(""));
        assert_eq!(object.label("zone"), Some("b"));
        assert_eq!(object.label("apps"), None);
        assert_eq!(object.label("a"), None);
        assert_eq!(object.label("zzz"), None);
    }

    #[test]
    fn scanning_a_stored_object_gives_what_decoding_it_does() {
        let cases = [
            (
                "pods",
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web-1", "namespace": "prod", "labels": {"b": "2", "a": "1"}, "uid": "u"},
                    "spec": {"nodeName": "node-7", "containers": [{"name": "c", "image": "i"}]},
                    "status": {"phase": "Running"},
                }),
            ),
            ("pods", serde_json::json!({"metadata": {"name": "bare"}, "spec": "odd", "status": {"phase": 3}})),
            (
                "events",
                serde_json::json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R"}),
            ),
        ];
        for (plural, value) in cases {
            let info = registry::find("", "v1", plural).unwrap();
            let key = Bytes::from(format!("/registry/{plural}/x"));
            let stored = serde_json::to_vec(&value).unwrap();
            let mut stamped = value.clone();
            object::set_resource_version(&mut stamped, 9);
            let decoded = CachedObject::from_value(info, key.clone(), &stamped, 9);
            let scanned = CachedObject::scan(info, &key, std::str::from_utf8(&stored).unwrap(), 9).unwrap();
            assert_eq!(scanned, decoded, "{value}");
            // Deleted later: the same object with the deleting revision.
            let mut deleted = stamped.clone();
            object::set_resource_version(&mut deleted, 12);
            assert_eq!(scanned.deleted_at(info, 12), CachedObject::from_value(info, key.clone(), &deleted, 12));
        }
        // Text the scan cannot stamp goes the decoding way, errors included.
        let pods = registry::find("", "v1", "pods").unwrap();
        let key = Bytes::from_static(b"/registry/pods/x");
        let without_metadata = CachedObject::decode(pods, key.clone(), br#"{"spec":{}}"#, 4).unwrap();
        assert_eq!(&without_metadata.json[..], br#"{"metadata":{"resourceVersion":"4"},"spec":{}}"#);
        assert!(CachedObject::decode(pods, key, b"{not json", 4).is_err());
    }

    #[test]
    fn an_object_without_labels_has_its_fields() {
        let configmaps = registry::find("", "v1", "configmaps").unwrap();
        let value = serde_json::json!({"metadata": {"name": "c", "namespace": "default"}});
        let object =
            CachedObject::from_value(configmaps, Bytes::from_static(b"/registry/configmaps/default/c"), &value, 2);
        assert_eq!((object.name(), object.field("metadata.namespace")), ("c", "default"));
        assert_eq!(object.label("c"), None);
    }
}
