//! Structured merge over JSON objects, as structured-merge-diff does it for server-side apply:
//! the field set a value sets (`to_field_set`), what changed between two values (`compare`),
//! an applied configuration merged into a live object (`merge`), and paths taken out of a value
//! (`remove_items`).
//!
//! keel has no OpenAPI schemas; the shape of a node comes from its JSON and its path through
//! `patch_strategy.rs`: objects are structs or maps whose fields merge one by one unless the table
//! calls them atomic; lists are atomic, sets of scalars, or keyed by fields (`list-type=map`).
//! Scalars, atomic objects and atomic lists are leaves, owned and replaced whole. A `null` is a
//! present, empty value of whatever its path holds (as Go's zero values are).
//!
//! Paths into lists leave the items out of the schema path (`spec.containers.ports`), as the
//! table does; field-set paths name each item by its key (`[name="web"]`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::field_set::{path_text, FieldSet, Path, PathElement};
use crate::patch_strategy::{apply_list_type, list_key_default, object_is_atomic, object_is_map, ApplyListType};

/// What changed from one value to another, path by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// How a node is merged and owned.
enum Shape {
    Leaf,
    Object,
    List(ApplyListType),
}

/// The shape of the node at `fields` holding `value` (and `other`, its counterpart, if any):
/// two values of different JSON kinds are a leaf, `null` takes the shape of the other side.
fn shape<S: AsRef<str>>(fields: &[S], value: Option<&Value>, other: Option<&Value>) -> Shape {
    let (first, second) = match (value.filter(|value| !value.is_null()), other.filter(|other| !other.is_null())) {
        (Some(first), second) => (first, second),
        (None, Some(first)) => (first, None),
        (None, None) => return Shape::Leaf,
    };
    if second.is_some_and(|second| std::mem::discriminant(first) != std::mem::discriminant(second)) {
        return Shape::Leaf;
    }
    match first {
        Value::Object(_) if object_is_atomic(fields) => Shape::Leaf,
        Value::Object(_) => Shape::Object,
        Value::Array(_) => match apply_list_type(fields) {
            ApplyListType::Atomic => Shape::Leaf,
            list_type => Shape::List(list_type),
        },
        _ => Shape::Leaf,
    }
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn as_map(value: Option<&Value>) -> &Map<String, Value> {
    value.and_then(Value::as_object).unwrap_or_else(|| empty_map())
}

fn as_items(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The path element naming a list item.
fn item_element(list_type: &ApplyListType, item: &Value) -> Result<PathElement, String> {
    match list_type {
        ApplyListType::Atomic => unreachable!("atomic lists are leaves"),
        ApplyListType::Set => match item {
            Value::Object(_) => Err("associative list without keys has an element that's a map type".into()),
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => Err("associative list without keys has an element that's an explicit null".into()),
            scalar => Ok(PathElement::Value(scalar.to_string())),
        },
        ApplyListType::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(if item.is_null() {
                    "associative list with keys may not have a null element".into()
                } else {
                    "associative list with keys may not have non-map elements".into()
                });
            };
            let mut key: Vec<(String, String)> = Vec::new();
            for name in keys {
                // A key the item leaves out counts only if the schema defaults it.
                let value =
                    fields.get(*name).filter(|value| !value.is_null()).cloned().or_else(|| list_key_default(name));
                if let Some(value) = value {
                    key.push((name.to_string(), value.to_string()));
                }
            }
            if key.is_empty() {
                return Err(format!(
                    "associative list with keys has an element that omits all key fields {keys:?} (and doesn't have default values for any key fields)"
                ));
            }
            key.sort();
            Ok(PathElement::Key(key))
        }
    }
}

fn item_elements(list_type: &ApplyListType, items: &[Value]) -> Result<Vec<PathElement>, String> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| item_element(list_type, item).map_err(|error| format!("element {index}: {error}")))
        .collect()
}

/// The field set of a value (structured-merge-diff's `ToFieldSet`): every leaf, every list item,
/// and every map entry whose value is empty or null.
pub fn to_field_set(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set(value, &mut Vec::new(), &mut Vec::new(), &mut set);
    set
}

fn walk_set<'a>(value: &'a Value, fields: &mut Vec<&'a str>, path: &mut Path, set: &mut FieldSet) {
    match shape(fields, Some(value), None) {
        Shape::Leaf => set.insert(path),
        Shape::Object => {
            let is_map = object_is_map(fields);
            for (key, child) in as_map(Some(value)) {
                fields.push(key);
                path.push(PathElement::Field(key.clone()));
                walk_set(child, fields, path, set);
                let empty_object = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_object || is_map {
                    set.insert(path);
                }
                path.pop();
                fields.pop();
            }
        }
        Shape::List(list_type) => {
            let items = as_items(Some(value));
            let Ok(elements) = item_elements(&list_type, items) else {
                // Items without their keys cannot be told apart: the list is owned whole.
                set.insert(path);
                return;
            };
            let mut seen = HashSet::new();
            let duplicates: HashSet<&PathElement> = elements.iter().filter(|element| !seen.insert(*element)).collect();
            for duplicate in &duplicates {
                path.push((*duplicate).clone());
                set.insert(path);
                path.pop();
            }
            for (element, item) in elements.iter().zip(items) {
                if duplicates.contains(element) {
                    continue;
                }
                path.push(element.clone());
                walk_set(item, fields, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// Which of a comparison's sets a node's own path belongs to.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    added: bool,
    modified: bool,
    removed: bool,
}

fn leaf_marks(lhs: Option<&Value>, rhs: Option<&Value>) -> Marks {
    match (lhs, rhs) {
        (None, _) => Marks { added: true, ..Marks::default() },
        (_, None) => Marks { removed: true, ..Marks::default() },
        (Some(lhs), Some(rhs)) => Marks { modified: lhs != rhs, ..Marks::default() },
    }
}

impl Comparison {
    /// Adds a child node's comparison under `element`, and `element` itself to the sets `marks`
    /// names.
    fn attach(&mut self, element: &PathElement, child: Comparison, marks: Marks) {
        let parts = [
            (&mut self.added, child.added, marks.added),
            (&mut self.modified, child.modified, marks.modified),
            (&mut self.removed, child.removed, marks.removed),
        ];
        for (set, child_set, marked) in parts {
            if marked || !child_set.is_empty() {
                set.insert_node(element.clone(), marked, child_set);
            }
        }
    }
}

/// What changed from `lhs` to `rhs` (structured-merge-diff's `Compare`). A node that appears or
/// disappears is added or removed itself as well as its contents.
pub fn compare(lhs: &Value, rhs: &Value) -> Comparison {
    let mut comparison = Comparison::default();
    walk_compare(Some(lhs), Some(rhs), &mut Vec::new(), &mut comparison);
    comparison
}

/// Compares the node `lhs`/`rhs`: its children's changes go into `here`, the node's own into the
/// marks it returns (its parent knows the path element that names it).
fn walk_compare<'a>(
    lhs: Option<&'a Value>,
    rhs: Option<&'a Value>,
    fields: &mut Vec<&'a str>,
    here: &mut Comparison,
) -> Marks {
    if let (None, Some(rhs)) = (lhs, rhs) {
        // Most of a create: nothing to compare with, everything below is added.
        walk_added(rhs, fields, &mut here.added);
        return Marks { added: true, ..Marks::default() };
    }
    match shape(fields, lhs, rhs) {
        Shape::Leaf => return leaf_marks(lhs, rhs),
        Shape::Object => {
            let (left, right) = (as_map(lhs), as_map(rhs));
            if left.is_empty() && right.is_empty() {
                return leaf_marks(lhs, rhs);
            }
            let mut keys: Vec<&String> = left.keys().collect();
            keys.extend(right.keys().filter(|key| !left.contains_key(*key)));
            for key in keys {
                fields.push(key);
                let mut child = Comparison::default();
                let marks = walk_compare(left.get(key), right.get(key), fields, &mut child);
                here.attach(&PathElement::Field(key.clone()), child, marks);
                fields.pop();
            }
        }
        Shape::List(list_type) => {
            let (left, right) = (as_items(lhs), as_items(rhs));
            if left.is_empty() && right.is_empty() {
                return leaf_marks(lhs, rhs);
            }
            let (Ok(left_elements), Ok(right_elements)) =
                (item_elements(&list_type, left), item_elements(&list_type, right))
            else {
                return leaf_marks(lhs, rhs);
            };
            let mut order: Vec<&PathElement> = Vec::new();
            let mut left_items: HashMap<&PathElement, Vec<&Value>> = HashMap::new();
            for (element, item) in left_elements.iter().zip(left) {
                left_items.entry(element).or_insert_with(|| {
                    order.push(element);
                    Vec::new()
                });
                left_items.get_mut(element).expect("just inserted").push(item);
            }
            let mut right_items: HashMap<&PathElement, Vec<&Value>> = HashMap::new();
            for (element, item) in right_elements.iter().zip(right) {
                if !left_items.contains_key(element) && !right_items.contains_key(element) {
                    order.push(element);
                }
                right_items.entry(element).or_default().push(item);
            }
            for element in order {
                let left_list = left_items.get(element).map(Vec::as_slice).unwrap_or(&[]);
                let right_list = right_items.get(element).map(Vec::as_slice).unwrap_or(&[]);
                let mut child = Comparison::default();
                let marks = match (left_list.len(), right_list.len()) {
                    (0..=1, 0..=1) => {
                        walk_compare(left_list.first().copied(), right_list.first().copied(), fields, &mut child)
                    }
                    // Duplicates cannot be told apart: the item changes whole or not at all.
                    (2.., 2..) => Marks { modified: left_list != right_list, ..Marks::default() },
                    (2.., _) => {
                        let marks = right_list.first().map(|item| walk_compare(None, Some(item), fields, &mut child));
                        Marks { removed: true, ..marks.unwrap_or_default() }
                    }
                    (_, _) => {
                        let marks = left_list.first().map(|item| walk_compare(Some(item), None, fields, &mut child));
                        Marks { added: true, ..marks.unwrap_or_default() }
                    }
                };
                here.attach(element, child, marks);
            }
        }
    }
    match (lhs, rhs) {
        (None, _) => Marks { added: true, ..Marks::default() },
        (_, None) => Marks { removed: true, ..Marks::default() },
        _ => Marks::default(),
    }
}

/// What [`walk_compare`] finds below a node only the right side has: every path under it added
/// (the node's own path is its caller's to mark). Items of a keyed list that share a key are
/// added whole, as the comparison does.
fn walk_added<'a>(value: &'a Value, fields: &mut Vec<&'a str>, added: &mut FieldSet) {
    match shape(fields, Some(value), None) {
        Shape::Leaf => {}
        Shape::Object => {
            for (key, child) in as_map(Some(value)) {
                fields.push(key);
                let mut below = FieldSet::new();
                walk_added(child, fields, &mut below);
                added.insert_node(PathElement::Field(key.clone()), true, below);
                fields.pop();
            }
        }
        Shape::List(list_type) => {
            let items = as_items(Some(value));
            let Ok(elements) = item_elements(&list_type, items) else { return };
            let mut counts: HashMap<&PathElement, usize> = HashMap::new();
            for element in &elements {
                *counts.entry(element).or_default() += 1;
            }
            for (element, item) in elements.iter().zip(items) {
                let mut below = FieldSet::new();
                if counts[element] == 1 {
                    walk_added(item, fields, &mut below);
                }
                added.insert_node(element.clone(), true, below);
            }
        }
    }
}

/// What [`compare`] finds added or modified from `base` to `new`, written straight in `FieldsV1`
/// form (see `field_set.rs`): a create's field set, which is only ever encoded, so it is not
/// built as a [`FieldSet`] first. None where `base` holds a non-empty list, which a type's empty
/// object (what a create compares with) never does; the caller compares then.
pub fn changed_fields_v1(base: &Value, new: &Value) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    walk_changed(base, new, &mut Vec::new(), &mut out)?;
    Some(out)
}

/// [`walk_compare`] of two present nodes, keeping only the added and modified paths: the node's
/// changed children go into `out`; returns whether the node itself changed.
fn walk_changed<'a>(
    lhs: &'a Value,
    rhs: &'a Value,
    fields: &mut Vec<&'a str>,
    out: &mut Map<String, Value>,
) -> Option<bool> {
    let changed = lhs != rhs;
    match shape(fields, Some(lhs), Some(rhs)) {
        Shape::Leaf => return Some(changed),
        Shape::Object => {
            let (left, right) = (as_map(Some(lhs)), as_map(Some(rhs)));
            if left.is_empty() && right.is_empty() {
                return Some(changed);
            }
            // Keys only on the left are removed, which is not a change anyone owns.
            for (key, child) in right {
                fields.push(key);
                let mut below = Map::new();
                let member = match left.get(key) {
                    Some(left_child) => walk_changed(left_child, child, fields, &mut below)?,
                    None => {
                        walk_added_fields_v1(child, fields, &mut below);
                        true
                    }
                };
                insert_fields_v1(out, field_key_v1(key), member, below);
                fields.pop();
            }
        }
        Shape::List(list_type) => {
            let (left, right) = (as_items(Some(lhs)), as_items(Some(rhs)));
            if !left.is_empty() {
                return None;
            }
            // Every item is new (as walk_added finds them), unless one has no key.
            if right.is_empty() || !added_items_fields_v1(&list_type, right, fields, out) {
                return Some(changed);
            }
        }
    }
    Some(false)
}

/// [`walk_added`] in `FieldsV1` form.
fn walk_added_fields_v1<'a>(value: &'a Value, fields: &mut Vec<&'a str>, out: &mut Map<String, Value>) {
    match shape(fields, Some(value), None) {
        Shape::Leaf => {}
        Shape::Object => {
            for (key, child) in as_map(Some(value)) {
                fields.push(key);
                let mut below = Map::new();
                walk_added_fields_v1(child, fields, &mut below);
                insert_fields_v1(out, field_key_v1(key), true, below);
                fields.pop();
            }
        }
        Shape::List(list_type) => {
            added_items_fields_v1(&list_type, as_items(Some(value)), fields, out);
        }
    }
}

/// [`walk_added`] of a list's items; false, writing nothing, when an item has no key. Items
/// that share a key are added whole.
fn added_items_fields_v1<'a>(
    list_type: &ApplyListType,
    items: &'a [Value],
    fields: &mut Vec<&'a str>,
    out: &mut Map<String, Value>,
) -> bool {
    let Some(keys) = items.iter().map(|item| item_key_v1(list_type, item)).collect::<Option<Vec<String>>>() else {
        return false;
    };
    let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let duplicates: Vec<&str> = sorted.windows(2).filter(|pair| pair[0] == pair[1]).map(|pair| pair[0]).collect();
    for (key, item) in keys.iter().zip(items) {
        let mut below = Map::new();
        if !duplicates.contains(&key.as_str()) {
            walk_added_fields_v1(item, fields, &mut below);
        }
        insert_fields_v1(out, key.clone(), true, below);
    }
    true
}

/// `f:name`: [`PathElement::Field`]'s `FieldsV1` key.
fn field_key_v1(name: &str) -> String {
    ["f:", name].concat()
}

/// The `FieldsV1` key of a list item, the text of its [`item_element`] written without building
/// the element; None where [`item_element`] fails.
fn item_key_v1(list_type: &ApplyListType, item: &Value) -> Option<String> {
    let mut out = Vec::with_capacity(32);
    match (list_type, item) {
        (ApplyListType::Set, Value::Object(_) | Value::Array(_) | Value::Null) => return None,
        (ApplyListType::Set, scalar) => {
            out.extend_from_slice(b"v:");
            serde_json::to_writer(&mut out, scalar).ok()?;
        }
        (ApplyListType::Map(keys), Value::Object(fields)) => {
            let mut present: Vec<(&str, std::borrow::Cow<Value>)> = Vec::with_capacity(keys.len());
            for name in keys {
                match fields.get(*name).filter(|value| !value.is_null()) {
                    Some(value) => present.push((name, std::borrow::Cow::Borrowed(value))),
                    None => present.extend(list_key_default(name).map(|value| (*name, std::borrow::Cow::Owned(value)))),
                }
            }
            if present.is_empty() {
                return None;
            }
            present.sort_by_key(|(name, _)| *name);
            out.extend_from_slice(b"k:{");
            for (index, (name, value)) in present.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, name).ok()?;
                out.push(b':');
                serde_json::to_writer(&mut out, value.as_ref()).ok()?;
            }
            out.push(b'}');
        }
        _ => return None,
    }
    String::from_utf8(out).ok()
}

/// A node in `FieldsV1`: its children, marked by `.` when it is also a member itself; a member
/// without children is `{}`; nothing at all is not written.
fn insert_fields_v1(out: &mut Map<String, Value>, key: String, member: bool, mut below: Map<String, Value>) {
    if !member && below.is_empty() {
        return;
    }
    if member && !below.is_empty() {
        below.insert(".".into(), Value::Object(Map::new()));
    }
    out.insert(key, Value::Object(below));
}

/// Merges an applied configuration into a live object: objects field by field, keyed lists and
/// sets item by item (live items the configuration does not name keep their places), everything
/// else replaced by the configuration's value. Errors are the configuration's: a keyed list item
/// without its keys, two items with the same key.
pub fn merge(live: &Value, config: &Value) -> Result<Value, String> {
    Ok(walk_merge(Some(live), Some(config), &mut Vec::new(), &mut Vec::new())?.unwrap_or(Value::Null))
}

fn walk_merge(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    fields: &mut Vec<String>,
    path: &mut Path,
) -> Result<Option<Value>, String> {
    let leaf = || Ok(rhs.or(lhs).cloned());
    let Some(rhs_value) = rhs else { return Ok(lhs.cloned()) };
    match shape(fields, lhs, rhs) {
        Shape::Leaf => leaf(),
        Shape::Object => {
            let (left, right) = (as_map(lhs), as_map(rhs));
            if left.is_empty() && right.is_empty() {
                return leaf();
            }
            let mut merged = left.clone();
            for (key, value) in right {
                fields.push(key.clone());
                path.push(PathElement::Field(key.clone()));
                let child = walk_merge(left.get(key), Some(value), fields, path)?;
                path.pop();
                fields.pop();
                match child {
                    Some(child) => merged.insert(key.clone(), child),
                    None => merged.remove(key),
                };
            }
            Ok(Some(Value::Object(merged)))
        }
        Shape::List(list_type) => {
            let (left, right) = (as_items(lhs), as_items(rhs));
            if left.is_empty() && right.is_empty() {
                return leaf();
            }
            let right_elements =
                item_elements(&list_type, right).map_err(|error| format!("{}: {error}", path_text(path)))?;
            let mut right_observed: HashMap<&PathElement, &Value> = HashMap::new();
            for (element, item) in right_elements.iter().zip(right) {
                if right_observed.insert(element, item).is_some() {
                    return Err(format!("{}: duplicate entries for key {element}", path_text(path)));
                }
            }
            let Ok(left_elements) = item_elements(&list_type, left) else {
                // The live list cannot be merged item by item: the configuration's replaces it.
                return Ok(Some(rhs_value.clone()));
            };
            // A live key that appears twice merges as absent (the configuration's item wins).
            let mut left_observed: HashMap<&PathElement, Option<&Value>> = HashMap::new();
            for (element, item) in left_elements.iter().zip(left) {
                left_observed.entry(element).and_modify(|seen| *seen = None).or_insert(Some(item));
            }
            let merged =
                merge_list_items(&left_elements, left, &left_observed, &right_elements, &right_observed, fields, path)?;
            Ok(Some(Value::Array(merged)))
        }
    }
}

/// structured-merge-diff's list merge order: items only the live list has stay where they are;
/// items the configuration names come in its order, each at the place of the next shared one.
fn merge_list_items(
    left_elements: &[PathElement],
    left: &[Value],
    left_observed: &HashMap<&PathElement, Option<&Value>>,
    right_elements: &[PathElement],
    right_observed: &HashMap<&PathElement, &Value>,
    fields: &mut Vec<String>,
    path: &mut Path,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(left.len().max(right_elements.len()));
    let mut shared = right_elements.iter().filter(|element| left_observed.contains_key(element));
    let mut next_shared = shared.next();
    let mut merged_right: HashSet<&PathElement> = HashSet::new();
    let mut item = |element: &PathElement, lhs: Option<&Value>, rhs: Option<&Value>, out: &mut Vec<Value>| {
        path.push(element.clone());
        let merged = walk_merge(lhs, rhs, fields, path);
        path.pop();
        if let Some(merged) = merged? {
            out.push(merged);
        }
        Ok::<(), String>(())
    };
    let (mut left_index, mut right_index) = (0, 0);
    while left_index < left_elements.len() || right_index < right_elements.len() {
        if left_index < left_elements.len() && right_index < right_elements.len() {
            let element = &left_elements[left_index];
            if *element == right_elements[right_index] {
                merged_right.insert(element);
                let lhs = left_observed.get(element).copied().flatten();
                item(element, lhs, right_observed.get(element).copied(), &mut out)?;
                left_index += 1;
                right_index += 1;
                next_shared = shared.next();
                continue;
            }
            if right_observed.contains_key(element) && next_shared.is_some_and(|next| next != element) {
                left_index += 1;
                continue;
            }
        }
        if left_index < left_elements.len() {
            let element = &left_elements[left_index];
            if !right_observed.contains_key(element) {
                item(element, Some(&left[left_index]), None, &mut out)?;
                left_index += 1;
                continue;
            } else if merged_right.contains(element) {
                left_index += 1;
            }
        }
        if right_index < right_elements.len() {
            let element = &right_elements[right_index];
            merged_right.insert(element);
            let lhs = left_observed.get(element).copied().flatten();
            item(element, lhs, right_observed.get(element).copied(), &mut out)?;
            right_index += 1;
            if next_shared == Some(element) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

/// The value without the paths of `set` (structured-merge-diff's `RemoveItems`): a member goes
/// with everything under it. A container emptied this way becomes `null`, as there.
pub fn remove_items(value: &Value, set: &FieldSet) -> Value {
    walk_remove(value, set, &mut Vec::new()).unwrap_or(Value::Null)
}

fn walk_remove(value: &Value, set: &FieldSet, fields: &mut Vec<String>) -> Option<Value> {
    match shape(fields, Some(value), None) {
        Shape::Leaf if value.is_object() || value.is_array() => None,
        Shape::Leaf => Some(value.clone()),
        Shape::Object => {
            let map = as_map(Some(value));
            let mut kept = Map::new();
            for (key, child) in map {
                let element = PathElement::Field(key.clone());
                if set.has_member(&element) {
                    continue;
                }
                let child = match set.with_prefix(&element) {
                    Some(subset) => {
                        fields.push(key.clone());
                        let child = walk_remove(child, subset, fields).unwrap_or(Value::Null);
                        fields.pop();
                        child
                    }
                    None => child.clone(),
                };
                kept.insert(key.clone(), child);
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Shape::List(list_type) => {
            let items = as_items(Some(value));
            let Ok(elements) = item_elements(&list_type, items) else { return Some(value.clone()) };
            let mut kept = Vec::new();
            for (element, item) in elements.iter().zip(items) {
                if set.has_member(element) {
                    continue;
                }
                kept.push(match set.with_prefix(element) {
                    Some(subset) => walk_remove(item, subset, fields).unwrap_or(Value::Null),
                    None => item.clone(),
                });
            }
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
    }
}

/// The set with every named field of a struct on the way to a member made a member too
/// (structured-merge-diff's `EnsureNamedFieldsAreMembers`): what pruning removes whole.
pub fn ensure_named_fields_are_members(set: &FieldSet) -> FieldSet {
    ensure_named(set, &mut Vec::new())
}

fn ensure_named(set: &FieldSet, fields: &mut Vec<String>) -> FieldSet {
    let mut result = FieldSet::new();
    for member in set.members() {
        result.insert_member(member.clone());
    }
    let is_map = object_is_map(fields);
    for (element, child) in set.children() {
        let child = match element {
            PathElement::Field(name) => {
                if !is_map {
                    result.insert_member(element.clone());
                }
                fields.push(name.clone());
                let child = ensure_named(child, fields);
                fields.pop();
                child
            }
            _ => ensure_named(child, fields),
        };
        result.insert_child(element.clone(), child);
    }
    result
}

/// Removes `null` fields and list items, which the object's types read as absent.
pub fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, child| !child.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => {
            items.retain(|item| !item.is_null());
            items.iter_mut().for_each(strip_nulls);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_keys_are_written_as_their_elements_encode() {
        let port = ApplyListType::Map(vec!["containerPort", "protocol"]);
        let named = ApplyListType::Map(vec!["name"]);
        let set = ApplyListType::Set;
        let cases = [
            (&port, json!({"containerPort": 80})),
            (&port, json!({"protocol": "UDP", "containerPort": 80, "name": "x"})),
            (&port, json!({"protocol": null})),
            (&port, json!({"name": "x"})),
            (&named, json!({"name": "a\"bü"})),
            (&named, json!({"name": null})),
            (&named, json!("scalar")),
            (&named, json!(null)),
            (&set, json!("x")),
            (&set, json!(3.5)),
            (&set, json!(true)),
            (&set, json!("line\nbreak")),
            (&set, json!({})),
            (&set, json!([1])),
            (&set, json!(null)),
        ];
        for (list_type, item) in cases {
            let expected = item_element(list_type, &item).ok().map(|element| element.encode());
            assert_eq!(item_key_v1(list_type, &item), expected, "{item}");
        }
    }

    fn paths(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(|path| path_text(path)).collect()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": image, "ports": [{"containerPort": 80}]},
                ]}},
            },
        })
    }

    #[test]
    fn field_set_of_an_applied_configuration() {
        let set = to_field_set(&deployment(2, "nginx"));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:name": {}, "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                    }}}},
                },
            })
        );
    }

    #[test]
    fn comparison_marks_new_containers() {
        let before = json!({"spec": {"replicas": 1, "strategy": {}, "containers": null}});
        let after = json!({"spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1}},
            "containers": [{"name": "a", "image": "x"}], "resources": {}}});
        let comparison = compare(&before, &after);
        assert_eq!(paths(&comparison.modified), vec![".spec.replicas"]);
        assert_eq!(
            paths(&comparison.added),
            vec![
                ".spec.resources",
                ".spec.containers[name=\"a\"]",
                ".spec.containers[name=\"a\"].image",
                ".spec.containers[name=\"a\"].name",
                ".spec.strategy.rollingUpdate",
                ".spec.strategy.rollingUpdate.maxSurge",
            ]
        );
        assert!(comparison.removed.is_empty());
        let back = compare(&after, &before);
        assert!(back.removed.has(&[PathElement::field("spec"), PathElement::field("resources")]));
        assert!(compare(&after, &after) == Comparison::default());
    }

    #[test]
    fn merge_by_keys_keeps_live_items_in_place() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"},
        ], "tolerations": [{"key": "x"}], "replicas": 1, "paused": true}});
        let config = json!({"spec": {"containers": [{"name": "c", "image": "30"}, {"name": "d"}, {"name": "a"}],
            "tolerations": [{"key": "y"}], "replicas": 2}});
        let merged = merge(&live, &config).unwrap();
        assert_eq!(
            merged,
            json!({"spec": {"containers": [
                {"name": "b", "image": "2"}, {"name": "c", "image": "30"}, {"name": "d"}, {"name": "a", "image": "1"},
            ], "tolerations": [{"key": "y"}], "replicas": 2, "paused": true}})
        );
        let finalizers =
            merge(&json!({"metadata": {"finalizers": ["a", "b"]}}), &json!({"metadata": {"finalizers": ["c", "a"]}}));
        assert_eq!(finalizers.unwrap(), json!({"metadata": {"finalizers": ["c", "a", "b"]}}));
    }

    #[test]
    fn merge_refuses_bad_configurations() {
        let duplicate = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        let error = merge(&json!({}), &duplicate).unwrap_err();
        assert!(error.contains("duplicate entries for key [name=\"a\"]"), "{error}");
        let keyless = json!({"spec": {"containers": [{"image": "x"}]}});
        let error = merge(&json!({}), &keyless).unwrap_err();
        assert!(error.contains("omits all key fields"), "{error}");
    }

    #[test]
    fn remove_items_takes_members_whole() {
        let value = deployment(2, "nginx");
        let mut set = FieldSet::new();
        set.insert(&[PathElement::field("spec"), PathElement::field("template")]);
        set.insert(&[PathElement::field("metadata"), PathElement::field("labels"), PathElement::field("app")]);
        let removed = remove_items(&value, &set);
        assert_eq!(removed["spec"].get("template"), None);
        assert_eq!(removed["spec"]["replicas"], 2);
        assert_eq!(removed["metadata"]["labels"], Value::Null, "emptied maps become null");
        let mut stripped = removed;
        strip_nulls(&mut stripped);
        assert_eq!(stripped["metadata"].get("labels"), None);
    }

    #[test]
    fn named_fields_become_members() {
        let mut set = FieldSet::new();
        set.insert(&[PathElement::field("spec"), PathElement::field("strategy"), PathElement::field("type")]);
        set.insert(&[PathElement::field("metadata"), PathElement::field("labels"), PathElement::field("a")]);
        let ensured = ensure_named_fields_are_members(&set);
        assert_eq!(
            paths(&ensured),
            vec![
                ".metadata",
                ".spec",
                ".metadata.labels",
                ".metadata.labels.a",
                ".spec.strategy",
                ".spec.strategy.type",
            ]
        );
    }

    #[test]
    fn comparisons_are_symmetric_and_empty_between_equal_values() {
        let pod = |image: &str, extra: Value| {
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x", "y", "x"], "ownerReferences": [{"uid": "u1", "name": "o"}]},
                "spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 80}, {"containerPort": 81, "protocol": "UDP"}], "args": ["a"]},
                                         {"name": "d", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}],
                         "nodeSelector": {"k": "v"}, "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "t"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
            });
            if let (Some(target), Value::Object(extra)) = (pod.as_object_mut(), extra) {
                target.extend(extra);
            }
            pod
        };
        let values = vec![
            json!({}),
            json!({"metadata": {}, "spec": {"containers": null}}),
            pod("nginx", json!({})),
            pod("nginx:2", json!({"spec": {"containers": [{"name": "c"}, {"name": "c"}, {"image": "no name"}]}})),
            pod(
                "nginx",
                json!({"status": null, "spec": {"containers": [], "volumes": [{"name": "v"}, {"name": "w", "hostPath": {"path": "/"}}]}}),
            ),
            pod("nginx", json!({"metadata": {"finalizers": ["y"], "labels": {}}, "spec": "odd"})),
            deployment(3, "a"),
            deployment(4, "b"),
        ];
        for lhs in &values {
            assert_eq!(compare(lhs, lhs), Comparison::default(), "{lhs}");
            for rhs in &values {
                let (forth, back) = (compare(lhs, rhs), compare(rhs, lhs));
                assert_eq!((&forth.added, &forth.modified), (&back.removed, &back.modified), "{lhs} -> {rhs}");
            }
        }
        // A change is found where it is.
        let before = pod("nginx", json!({}));
        let after = pod("nginx:2", json!({}));
        assert_eq!(paths(&compare(&before, &after).modified), vec![r#".spec.containers[name="c"].image"#]);
    }
}
