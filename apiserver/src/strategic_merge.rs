//! Strategic merge patch (`application/strategic-merge-patch+json`), as kubectl computes it for
//! `apply` and `patch`: a merge patch whose lists merge by key where `patch_strategy.rs` says so,
//! with the directives `$patch` (replace, delete, merge), `$retainKeys`,
//! `$setElementOrder/FIELD` and `$deleteFromPrimitiveList/FIELD`.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::patch_strategy::{list_strategy, ListStrategy};

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

pub fn apply(original: &Value, patch: &Value) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(Error::BadRequest("a strategic merge patch must be a JSON object".into()));
    };
    let original = original.as_object().cloned().unwrap_or_default();
    Ok(merge_map(original, patch, &mut Vec::new())?.map(Value::Object).unwrap_or(Value::Null))
}

/// Merges a patch map into a map; None when the patch deletes the map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>> {
    match patch.get(PATCH_DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => return Ok(Some(strip_directives(patch))),
        Some("merge") | None => {}
        Some(other) => {
            return Err(Error::BadRequest(format!("unknown patch type {other:?} in a strategic merge patch")))
        }
    }
    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            if let Value::Array(order) = value {
                orders.push((field, order));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let removed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|item| !removed.contains(item));
            }
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(inner)), Value::Object(patch_inner)) => {
                merge_map(inner, patch_inner, path)?.map(Value::Object)
            }
            (None, Value::Object(patch_inner)) => merge_map(Map::new(), patch_inner, path)?.map(Value::Object),
            (existing, Value::Array(patch_list)) => {
                let existing = match existing {
                    Some(Value::Array(list)) => list,
                    _ => Vec::new(),
                };
                Some(Value::Array(merge_list(existing, patch_list, path)?))
            }
            (_, scalar) => Some(scalar.clone()),
        };
        path.pop();
        if let Some(merged) = merged {
            original.insert(key.clone(), merged);
        }
    }
    if let Some(Value::Array(retained)) = patch.get(RETAIN_KEYS) {
        let retained: Vec<&str> = retained.iter().filter_map(Value::as_str).collect();
        original.retain(|key, _| retained.contains(&key.as_str()));
    }
    for (field, order) in orders {
        path.push(field.to_string());
        let strategy = list_strategy(path);
        path.pop();
        if let Some(Value::Array(list)) = original.get_mut(field) {
            reorder(list, order, strategy);
        }
    }
    Ok(Some(original))
}

fn merge_list(mut original: Vec<Value>, patch: &[Value], path: &mut Vec<String>) -> Result<Vec<Value>> {
    let strategy = list_strategy(path);
    let replace_all = patch.iter().any(|item| item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    if replace_all || strategy == ListStrategy::Replace {
        return Ok(patch
            .iter()
            .filter(|item| item.get(PATCH_DIRECTIVE).is_none())
            .map(|item| item.as_object().map_or_else(|| item.clone(), |map| Value::Object(strip_directives(map))))
            .collect());
    }
    match strategy {
        ListStrategy::MergeScalars => {
            for item in patch {
                if !original.contains(item) {
                    original.push(item.clone());
                }
            }
            Ok(original)
        }
        ListStrategy::MergeByKey(key) => {
            for item in patch {
                let Value::Object(patch_item) = item else {
                    return Err(Error::BadRequest(format!(
                        "a strategic merge patch of {} must hold objects with the merge key {key:?}",
                        path.join(".")
                    )));
                };
                let wanted = patch_item.get(key).ok_or_else(|| {
                    Error::BadRequest(format!("map: {patch_item:?} does not contain declared merge key: {key}"))
                })?;
                let position = original.iter().position(|existing| existing.get(key) == Some(wanted));
                if patch_item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                    original.retain(|existing| existing.get(key) != Some(wanted));
                    continue;
                }
                match position {
                    Some(index) => {
                        let existing = original[index].as_object().cloned().unwrap_or_default();
                        match merge_map(existing, patch_item, path)? {
                            Some(merged) => original[index] = Value::Object(merged),
                            None => {
                                original.remove(index);
                            }
                        }
                    }
                    None => original.push(Value::Object(strip_directives(patch_item))),
                }
            }
            Ok(original)
        }
        ListStrategy::Replace => unreachable!("handled above"),
    }
}

/// Orders a list as `$setElementOrder` says; elements it does not name keep their order, after.
fn reorder(list: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| {
        order.iter().position(|wanted| match strategy {
            ListStrategy::MergeByKey(key) => wanted.get(key).is_some() && wanted.get(key) == item.get(key),
            _ => wanted == item,
        })
    };
    list.sort_by_key(|item| rank(item).unwrap_or(usize::MAX));
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(key, _)| !key.starts_with('$'))
        .map(|(key, value)| {
            let value = match value {
                Value::Object(inner) => Value::Object(strip_directives(inner)),
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(original: Value, patch: Value, expected: Value) {
        assert_eq!(apply(&original, &patch).unwrap(), expected, "patch {patch}");
    }

    #[test]
    fn containers_merge_by_name() {
        check(
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        );
    }

    #[test]
    fn directives() {
        check(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b"}]}}),
        );
        check(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        check(
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        check(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a", "image": "i"}]}}),
            json!({"spec": {"containers": [{"name": "b"}, {"name": "a", "image": "i"}]}}),
        );
        check(
            json!({"data": {"a": "1"}}),
            json!({"data": {"$patch": "replace", "b": "2"}}),
            json!({"data": {"b": "2"}}),
        );
    }

    #[test]
    fn atomic_lists_are_replaced() {
        check(
            json!({"spec": {"tolerations": [{"key": "a"}]}, "metadata": {"labels": {"x": "1"}}}),
            json!({"spec": {"tolerations": [{"key": "b"}]}, "metadata": {"labels": {"x": null, "y": "2"}}}),
            json!({"spec": {"tolerations": [{"key": "b"}]}, "metadata": {"labels": {"y": "2"}}}),
        );
    }
}
