//! Reading and writing an object's metadata on its JSON form. The apiserver handles objects as
//! `serde_json::Value` between decoding (checked against the k8s-openapi type) and storage.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::http::MetaVersion;

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// The `metadata` map, created if missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"].as_object_mut().expect("metadata is an object")
}

/// The object as a PartialObjectMetadata of `version`: its metadata alone.
pub fn partial_metadata(object: &Value, version: MetaVersion) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    serde_json::json!({ "kind": "PartialObjectMetadata", "apiVersion": version.api_version(), "metadata": metadata })
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object).and_then(|meta| meta.get(field)).and_then(Value::as_str).unwrap_or("")
}

pub fn name(object: &Value) -> &str {
    meta_str(object, "name")
}

pub fn namespace(object: &Value) -> &str {
    meta_str(object, "namespace")
}

pub fn resource_version(object: &Value) -> &str {
    meta_str(object, "resourceVersion")
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    metadata_mut(object).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

pub fn labels(object: &Value) -> BTreeMap<String, String> {
    string_map(object, "labels")
}

pub fn string_map(object: &Value, field: &str) -> BTreeMap<String, String> {
    metadata(object)
        .and_then(|meta| meta.get(field))
        .and_then(Value::as_object)
        .map(|map| map.iter().map(|(key, value)| (key.clone(), value.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|meta| meta.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The value at a dotted path (`spec.nodeName`), as a field selector sees it: strings as they
/// are, booleans and numbers as text, absent as "".
pub fn field_text(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

/// Now, as Kubernetes writes times: RFC 3339 in UTC, whole seconds.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).expect("the current time is in range").to_string()
}

/// `now` plus `seconds` (which may be negative), as Kubernetes writes times.
pub fn rfc3339_after(now: jiff::Timestamp, seconds: i64) -> String {
    let second = now.as_second().saturating_add(seconds);
    jiff::Timestamp::from_second(second).unwrap_or(now).to_string()
}

/// A time as Kubernetes writes it, read back; None if it is not one.
pub fn parse_time(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// A random (version 4) UUID for `metadata.uid`.
pub fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `generateName` + five characters from Kubernetes' alphabet (no vowels, no look-alikes).
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5).map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char).collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_has_the_uuid_shape() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
    }

    #[test]
    fn field_text_reads_nested_values() {
        let pod = serde_json::json!({"spec": {"nodeName": "n1", "hostNetwork": true}});
        assert_eq!(field_text(&pod, "spec.nodeName"), "n1");
        assert_eq!(field_text(&pod, "spec.hostNetwork"), "true");
        assert_eq!(field_text(&pod, "status.phase"), "");
    }
}
