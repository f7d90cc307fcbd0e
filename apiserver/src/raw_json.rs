//! Encoded JSON objects read and edited without decoding them whole.
//!
//! The watch cache stamps every stored object with its resourceVersion and reads its labels and
//! indexed fields. Decoding a pod into a `serde_json::Value` and encoding it again cost more CPU
//! than the rest of the cache's work (BENCHMARKS.md); here the stored text is only scanned, the
//! resourceVersion is spliced into it, and only the few values the selectors need are decoded.
//!
//! Spliced at its place in key order, the result has the same bytes as the decode-and-encode
//! path for what keel stores (compact JSON, keys sorted, as `serde_json::Value` encodes).

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One JSON object's entries, borrowed from its text: each key, unescaped, and its value's text.
struct RawObject<'a> {
    text: &'a str,
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// None if `text` is not one JSON object.
    fn parse(text: &'a str) -> Option<RawObject<'a>> {
        let Entries(entries) = serde_json::from_str(text).ok()?;
        text.starts_with('{').then_some(RawObject { text, entries })
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().find(|(name, _)| name == key).map(|(_, value)| *value)
    }

    /// Where `value`, one of this object's values, starts and ends in the object's text.
    fn span(&self, value: &RawValue) -> (usize, usize) {
        let start = value.get().as_ptr() as usize - self.text.as_ptr() as usize;
        (start, start + value.get().len())
    }
}

struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// A key borrowed from the text unless it has escapes.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A stored object, its top level and its metadata scanned once each.
pub struct StoredObject<'a> {
    root: RawObject<'a>,
    metadata: RawObject<'a>,
    /// Where the metadata object starts in the root's text.
    metadata_start: usize,
}

impl<'a> StoredObject<'a> {
    /// None if `object` is not a JSON object with a metadata object.
    pub fn scan(object: &'a str) -> Option<StoredObject<'a>> {
        let root = RawObject::parse(object)?;
        let raw_metadata = root.get("metadata")?;
        let metadata = RawObject::parse(raw_metadata.get())?;
        let (metadata_start, _) = root.span(raw_metadata);
        Some(StoredObject { root, metadata, metadata_start })
    }

    /// The object with `metadata.resourceVersion` set to `revision`: the value replaced if there
    /// is one, else inserted before the first metadata key that sorts after it.
    pub fn with_resource_version(&self, revision: i64) -> Vec<u8> {
        const KEY: &str = "resourceVersion";
        let meta = &self.metadata;
        let text = self.root.text.as_bytes();
        let at = |offset: usize| self.metadata_start + offset;
        match meta.entries.iter().position(|(key, _)| key.as_ref() >= KEY) {
            Some(index) if meta.entries[index].0 == KEY => {
                let (start, end) = meta.span(meta.entries[index].1);
                let (start, end) = (at(start), at(end));
                [&text[..start], format!("\"{revision}\"").as_bytes(), &text[end..]].concat()
            }
            Some(0) => insert_resource_version(text, at(1), false, revision),
            Some(index) => insert_resource_version(text, at(meta.span(meta.entries[index - 1].1).1), true, revision),
            None => match meta.entries.last() {
                Some((_, last)) => insert_resource_version(text, at(meta.span(last).1), true, revision),
                None => insert_resource_version(text, at(1), false, revision),
            },
        }
    }

    /// A copy of the object with only the values at `paths` (dotted field names from the root,
    /// `spec.nodeName`), decoded; a path through something that is not an object reads nothing.
    pub fn pick(&self, paths: &[&str]) -> Value {
        pick_from(&self.root, paths, &|key| (key == "metadata").then_some(&self.metadata))
    }
}

/// `text`, an encoded object, with `"resourceVersion":"N"` inserted at `at` inside its metadata
/// object: after the entry that ends there when `after_entry`, else as the first entry.
pub fn insert_resource_version(text: &[u8], at: usize, after_entry: bool, revision: i64) -> Vec<u8> {
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let inserted = match (after_entry, text[at]) {
        (true, _) => format!(",{field}"),
        (false, b'}') => field,
        (false, _) => format!("{field},"),
    };
    [&text[..at], inserted.as_bytes(), &text[at..]].concat()
}

/// A dotted path's first field and the rest ("" when it has one field).
fn split_path(path: &str) -> (&str, &str) {
    path.split_once('.').unwrap_or((path, ""))
}

/// [`StoredObject::pick`] at one level; `scanned` has the objects under it already scanned.
fn pick_from<'s>(object: &RawObject<'_>, paths: &[&str], scanned: &dyn Fn(&str) -> Option<&'s RawObject<'s>>) -> Value {
    let mut out = Map::new();
    for (index, path) in paths.iter().enumerate() {
        let (first, _) = split_path(path);
        if first.is_empty() || paths[..index].iter().any(|earlier| split_path(earlier).0 == first) {
            continue; // picked with the first path through it
        }
        let Some(raw) = object.get(first) else { continue };
        let through: Vec<&str> = paths
            .iter()
            .map(|path| split_path(path))
            .filter(|(head, _)| *head == first)
            .map(|(_, rest)| rest)
            .collect();
        let picked = if through.iter().any(|rest| rest.is_empty()) {
            serde_json::from_str(raw.get()).ok()
        } else if let Some(inner) = scanned(first) {
            Some(pick_from(inner, &through, &|_| None))
        } else {
            RawObject::parse(raw.get()).map(|inner| pick_from(&inner, &through, &|_| None))
        };
        if let Some(value) = picked {
            out.insert(first.to_string(), value);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The decode-and-encode path this module replaces.
    fn stamped_by_decoding(object: &Value, revision: i64) -> Vec<u8> {
        let mut object = object.clone();
        crate::object::set_resource_version(&mut object, revision);
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn the_resource_version_lands_where_encoding_puts_it() {
        let objects = [
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": {"a": "b"}}}),
            json!({"metadata": {"uid": "u"}}),
            json!({"apiVersion": "v1", "metadata": {"name": "n", "namespace": "d", "uid": "u"}, "spec": {"x": [1, {"y": null}]}}),
            json!({"metadata": {"name": "n", "resourceVersion": "3", "uid": "u"}, "status": {}}),
            json!({"metadata": {"name": "a\"b\\c", "resourceVersion": "12345", "\u{e9}t\u{e9}": "\n"}}),
            json!({"metadata": {"managedFields": [{"fieldsV1": {"f:metadata": {}}}], "resourceVersionX": "1"}}),
            json!({"metadata": {"r": 1, "resourceVersion": {"odd": true}}}),
        ];
        for object in objects {
            let text = serde_json::to_string(&object).unwrap();
            let spliced = StoredObject::scan(&text).unwrap().with_resource_version(42);
            assert_eq!(
                String::from_utf8(spliced).unwrap(),
                String::from_utf8(stamped_by_decoding(&object, 42)).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn only_objects_with_a_metadata_object_are_stamped() {
        for text in ["[]", "3", "{}", r#"{"metadata": null}"#, r#"{"metadata": []}"#, r#"{"metadata": {"#, "", "{} x"] {
            assert!(StoredObject::scan(text).is_none(), "{text}");
        }
        // Text that is not compact stays valid JSON.
        let spaced = "{ \"metadata\" : { \"name\" : \"n\" , \"uid\" : \"u\" } }";
        let stamped: Value =
            serde_json::from_slice(&StoredObject::scan(spaced).unwrap().with_resource_version(9)).unwrap();
        assert_eq!(stamped, json!({"metadata": {"name": "n", "resourceVersion": "9", "uid": "u"}}));
    }

    #[test]
    fn picking_reads_the_paths_and_nothing_else() {
        let object = json!({
            "metadata": {"name": "p", "labels": {"app": "web", "n": 3}, "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
            "status": "not an object",
            "involvedObject": {"kind": "Pod", "uid": "u"},
        });
        let text = serde_json::to_string(&object).unwrap();
        let paths = [
            "metadata.labels",
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
            "involvedObject.kind",
            "spec.containers.name",
        ];
        assert_eq!(
            StoredObject::scan(&text).unwrap().pick(&paths),
            json!({
                "metadata": {"name": "p", "labels": {"app": "web", "n": 3}},
                "spec": {"nodeName": "node-1"},
                "involvedObject": {"kind": "Pod"},
            })
        );
    }
}
