//! [`CachedObject`]: one object as the cache holds it: encoded once, with its resourceVersion set,
//! and with the labels and fields selectors read, so a LIST or a watch event is written without
//! decoding or re-encoding it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use crate::object;
use crate::registry::ResourceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedObject {
    /// Its store key.
    pub key: Bytes,
    /// Its resourceVersion: the store revision that wrote it (or, for a deleted object, deleted it).
    pub revision: i64,
    /// The object as JSON, resourceVersion included.
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    /// `metadata.name`, `metadata.namespace` and the resource's selectable fields.
    pub fields: BTreeMap<String, String>,
}

impl CachedObject {
    /// From a stored value (JSON without resourceVersion) and the revision to stamp on it.
    pub fn decode(info: &ResourceInfo, key: Bytes, stored: &[u8], revision: i64) -> Result<CachedObject, String> {
        let mut value: Value = serde_json::from_slice(stored)
            .map_err(|error| format!("{}: stored object is not JSON: {error}", String::from_utf8_lossy(&key)))?;
        if let Some(conversion) = info.conversion {
            value = (conversion.from_storage)(value);
        }
        object::set_resource_version(&mut value, revision);
        Ok(CachedObject::from_value(info, key, &value, revision))
    }

    pub fn from_value(info: &ResourceInfo, key: Bytes, value: &Value, revision: i64) -> CachedObject {
        let mut fields = BTreeMap::new();
        fields.insert("metadata.name".to_string(), object::name(value).to_string());
        fields.insert("metadata.namespace".to_string(), object::namespace(value).to_string());
        for field in info.selectable_fields {
            fields.insert(field.to_string(), object::field_text(value, field));
        }
        let json = Bytes::from(serde_json::to_vec(value).expect("a JSON value encodes"));
        CachedObject { key, revision, json, labels: object::labels(value), fields }
    }

    /// The object decoded again (tables and subresources need its fields).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("a cached object is valid JSON")
    }

    pub fn name(&self) -> &str {
        self.fields.get("metadata.name").map(String::as_str).unwrap_or("")
    }
}
