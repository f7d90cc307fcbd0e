//! JSON Patch (RFC 6902, with `test`) and JSON Merge Patch (RFC 7386), on `serde_json::Value`.

use serde_json::Value;

use crate::error::{Error, Result};

/// Applies a JSON merge patch: objects merge key by key, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn invalid(message: String) -> Error {
    // kube-apiserver answers a patch that cannot apply with 422 Invalid's message as a BadRequest
    // for malformed patches and a conflict-free 422 otherwise; both carry the reason in the text.
    Error::BadRequest(message)
}

/// The reference tokens of a JSON pointer (`/a/b~1c` → ["a", "b/c"]).
fn tokens(pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(invalid(format!("invalid JSON pointer {pointer:?}: it must start with /")));
    };
    Ok(rest.split('/').map(|token| token.replace("~1", "/").replace("~0", "~")).collect())
}

fn parent<'a>(document: &'a mut Value, tokens: &[String], pointer: &str) -> Result<&'a mut Value> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(list) => token.parse::<usize>().ok().and_then(|index| list.get_mut(index)),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("doc is missing path: {pointer:?}")))?;
    }
    Ok(current)
}

fn add(document: &mut Value, pointer: &str, value: Value) -> Result<()> {
    let tokens = tokens(pointer)?;
    let Some((last, init)) = tokens.split_last() else {
        *document = value;
        return Ok(());
    };
    match parent(document, init, pointer)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(list) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse::<usize>().map_err(|_| invalid(format!("invalid array index in {pointer:?}")))?
            };
            if index > list.len() {
                return Err(invalid(format!("add operation does not apply: doc is missing path: {pointer:?}")));
            }
            list.insert(index, value);
        }
        _ => return Err(invalid(format!("doc is missing path: {pointer:?}"))),
    }
    Ok(())
}

fn remove(document: &mut Value, pointer: &str) -> Result<Value> {
    let tokens = tokens(pointer)?;
    let Some((last, init)) = tokens.split_last() else {
        return Err(invalid("cannot remove the whole document".into()));
    };
    let missing = || invalid(format!("remove operation does not apply: doc is missing path: {pointer:?}"));
    match parent(document, init, pointer)? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(list) => {
            let index = last.parse::<usize>().map_err(|_| missing())?;
            if index >= list.len() {
                return Err(missing());
            }
            Ok(list.remove(index))
        }
        _ => Err(missing()),
    }
}

fn get<'a>(document: &'a Value, pointer: &str) -> Result<&'a Value> {
    document.pointer(pointer).ok_or_else(|| invalid(format!("doc is missing path: {pointer:?}")))
}

/// Applies an RFC 6902 patch (an array of operations), all or nothing.
pub fn apply(document: &Value, patch: &Value) -> Result<Value> {
    let operations = patch.as_array().ok_or_else(|| invalid("a JSON patch must be an array of operations".into()))?;
    let mut result = document.clone();
    for operation in operations {
        let op = operation["op"].as_str().unwrap_or("");
        let path = operation["path"]
            .as_str()
            .ok_or_else(|| invalid(format!("JSON patch operation {operation} has no path")))?;
        let value = || operation.get("value").cloned().ok_or_else(|| invalid(format!("{op} operation has no value")));
        let from = || operation["from"].as_str().ok_or_else(|| invalid(format!("{op} operation has no from")));
        match op {
            "add" => add(&mut result, path, value()?)?,
            "remove" => {
                remove(&mut result, path)?;
            }
            "replace" => {
                remove(&mut result, path)
                    .map_err(|_| invalid(format!("replace operation does not apply: doc is missing key: {path}")))?;
                add(&mut result, path, value()?)?;
            }
            "move" => {
                let moved = remove(&mut result, from()?)?;
                add(&mut result, path, moved)?;
            }
            "copy" => {
                let copied = get(&result, from()?)?.clone();
                add(&mut result, path, copied)?;
            }
            "test" => {
                if get(&result, path)? != &value()? {
                    return Err(invalid(format!("testing value {path} failed")));
                }
            }
            other => return Err(invalid(format!("unexpected JSON patch operation {other:?}"))),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge(&mut target, &json!({"a": null, "b": {"c": 4}, "l": [3]}));
        assert_eq!(target, json!({"b": {"c": 4, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_operations() {
        let document = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2, 3]});
        let patch = json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/list/0", "value": 9},
            {"op": "remove", "path": "/list/1"},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "copy", "from": "/list/0", "path": "/first"},
            {"op": "move", "from": "/first", "path": "/moved"},
        ]);
        let result = apply(&document, &patch).unwrap();
        assert_eq!(result, json!({"metadata": {"labels": {"a": "1", "b/c": "2"}}, "list": [9, 3, 4], "moved": 9}));
    }

    #[test]
    fn failed_test_changes_nothing() {
        let document = json!({"a": 1});
        assert!(apply(
            &document,
            &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 2}])
        )
        .is_err());
        assert!(apply(&document, &json!([{"op": "remove", "path": "/missing"}])).is_err());
    }
}
