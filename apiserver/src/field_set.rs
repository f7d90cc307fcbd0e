//! Sets of field paths, as server-side apply records who owns what: structured-merge-diff's
//! `fieldpath.Set`, and its wire form, kube's `FieldsV1`.
//!
//! A path walks from the object's root through path elements: a field of an object (`f:name`),
//! an item of a keyed list by its key fields (`k:{"containerPort":80,"protocol":"TCP"}`), an item
//! of a set-like list by its value (`v:"foregroundDeletion"`), or, rarely, an index (`i:3`).
//!
//! A set is a tree. Each node keeps its *members* (paths that end there) apart from its
//! *children* (paths that go on through it); a path can be both. In `FieldsV1` a member with no
//! children is `{}`, and a member that also has children is marked by a `.` entry among them:
//!
//! ```text
//! {"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{}}}
//! ```
//!
//! holds `.metadata.labels`, `.metadata.labels.app` and `.spec.replicas`, but not `.metadata`
//! or `.spec`, which are only on the way.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The derived order (fields, then keys, then values, then indices) is
/// structured-merge-diff's, so sets iterate as kube's do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object, or a key of a map.
    Field(String),
    /// An item of a keyed list: its key fields, sorted by name, each value as compact JSON.
    Key(Vec<(String, String)>),
    /// An item of a set-like list of scalars: the item as compact JSON.
    Value(String),
    /// An item of a list by position.
    Index(usize),
}

impl PathElement {
    pub fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    /// The `FieldsV1` form: `f:name`, `k:{...}`, `v:...`, `i:N`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => ["f:", name].concat(),
            PathElement::Key(fields) => {
                let pairs: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{}:{value}", Value::String(name.clone()))).collect();
                format!("k:{{{}}}", pairs.join(","))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Reads a `FieldsV1` key back.
    pub fn decode(text: &str) -> Result<PathElement, String> {
        let (kind, rest) = text.split_at_checked(2).ok_or_else(|| format!("path element {text:?} is too short"))?;
        match kind {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "v:" => {
                let value: Value =
                    serde_json::from_str(rest).map_err(|error| format!("path element {text:?}: {error}"))?;
                Ok(PathElement::Value(value.to_string()))
            }
            "k:" => {
                let value: Value =
                    serde_json::from_str(rest).map_err(|error| format!("path element {text:?}: {error}"))?;
                let Value::Object(fields) = value else {
                    return Err(format!("path element {text:?}: a key must be a JSON object"));
                };
                Ok(PathElement::Key(fields.into_iter().map(|(name, value)| (name, value.to_string())).collect()))
            }
            "i:" => rest.parse().map(PathElement::Index).map_err(|_| format!("path element {text:?}: not an index")),
            _ => Err(format!("path element {text:?}: unknown kind (f:, k:, v: or i:)")),
        }
    }
}

/// As structured-merge-diff prints paths in conflict messages: `.spec.replicas`,
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="x"]`.
impl fmt::Display for PathElement {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(out, ".{name}"),
            PathElement::Key(fields) => {
                let pairs: Vec<String> = fields.iter().map(|(name, value)| format!("{name}={value}")).collect();
                write!(out, "[{}]", pairs.join(","))
            }
            PathElement::Value(value) => write!(out, "[={value}]"),
            PathElement::Index(index) => write!(out, "[{index}]"),
        }
    }
}

pub type Path = Vec<PathElement>;

pub fn path_text(path: &[PathElement]) -> String {
    path.iter().map(PathElement::to_string).collect()
}

/// A set of paths (see the module comment). One map per node holds both its members and its
/// children, so an element is stored once however it is used. Invariant: every entry is a
/// member or has a non-empty child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    entries: BTreeMap<PathElement, Node>,
}

/// What a set holds under one element: the element itself as a member, the paths through it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: FieldSet,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else { return };
        let node = match self.entries.get_mut(first) {
            Some(node) => node,
            None => self.entries.entry(first.clone()).or_default(),
        };
        if rest.is_empty() {
            node.member = true;
        } else {
            node.children.insert(rest);
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.has_member(last),
            [first, rest @ ..] => self.with_prefix(first).is_some_and(|child| child.has(rest)),
        }
    }

    /// Whether `element` itself is a member of this node.
    pub fn has_member(&self, element: &PathElement) -> bool {
        self.entries.get(element).is_some_and(|node| node.member)
    }

    /// The paths that go on through `element`, without it.
    pub fn with_prefix(&self, element: &PathElement) -> Option<&FieldSet> {
        self.entries.get(element).map(|node| &node.children).filter(|children| !children.is_empty())
    }

    /// Makes `element` a member of this node.
    pub fn insert_member(&mut self, element: PathElement) {
        self.insert_node(element, true, FieldSet::new());
    }

    /// Adds `child` as the paths under `element`.
    pub fn insert_child(&mut self, element: PathElement, child: FieldSet) {
        self.insert_node(element, false, child);
    }

    /// Adds `element` as a member (if `member`) and `child` as the paths under it, in one step.
    pub fn insert_node(&mut self, element: PathElement, member: bool, child: FieldSet) {
        if !member && child.is_empty() {
            return;
        }
        match self.entries.get_mut(&element) {
            Some(node) => {
                node.member |= member;
                node.children.absorb(child);
            }
            None => {
                self.entries.insert(element, Node { member, children: child });
            }
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut result = self.clone();
        result.add(other);
        result
    }

    /// Makes this set the union of itself and `other`, copying only what it lacks.
    pub fn add(&mut self, other: &FieldSet) {
        for (element, other_node) in &other.entries {
            match self.entries.get_mut(element) {
                Some(node) => {
                    node.member |= other_node.member;
                    node.children.add(&other_node.children);
                }
                None => {
                    self.entries.insert(element.clone(), other_node.clone());
                }
            }
        }
    }

    /// Makes this set the union of itself and `other`, moving what it lacks out of `other`.
    pub fn absorb(&mut self, other: FieldSet) {
        if self.is_empty() {
            *self = other;
            return;
        }
        for (element, other_node) in other.entries {
            match self.entries.get_mut(&element) {
                Some(node) => {
                    node.member |= other_node.member;
                    node.children.absorb(other_node.children);
                }
                None => {
                    self.entries.insert(element, other_node);
                }
            }
        }
    }

    /// Removes the paths of `other` from this set, in place (see [`FieldSet::difference`]).
    pub fn remove_all(&mut self, other: &FieldSet) {
        for (element, other_node) in &other.entries {
            if let Some(node) = self.entries.get_mut(element) {
                node.member &= !other_node.member;
                node.children.remove_all(&other_node.children);
                if node.is_empty() {
                    self.entries.remove(element);
                }
            }
        }
    }

    /// Removes `element` from this node, as a member and with every path through it.
    pub fn remove_subtree(&mut self, element: &PathElement) {
        self.entries.remove(element);
    }

    /// Only the paths of this node that are `element` or go through it.
    pub fn only_subtree(mut self, element: &PathElement) -> FieldSet {
        let mut kept = FieldSet::new();
        if let Some((element, node)) = self.entries.remove_entry(element) {
            kept.entries.insert(element, node);
        }
        kept
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet::new();
        for (element, node) in &self.entries {
            if let Some(other_node) = other.entries.get(element) {
                let member = node.member && other_node.member;
                result.insert_node(element.clone(), member, node.children.intersection(&other_node.children));
            }
        }
        result
    }

    /// The paths of `self` that are not in `other` (path by path: a member removed keeps the
    /// paths that go on through it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet::new();
        for (element, node) in &self.entries {
            match other.entries.get(element) {
                Some(other_node) => {
                    let member = node.member && !other_node.member;
                    result.insert_node(element.clone(), member, node.children.difference(&other_node.children));
                }
                None => {
                    result.entries.insert(element.clone(), node.clone());
                }
            }
        }
        result
    }

    /// Every member path, members of a node before the paths through its children (the order
    /// structured-merge-diff lists conflicts in).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for member in self.members() {
            prefix.push(member.clone());
            out.push(prefix.clone());
            prefix.pop();
        }
        for (element, child) in self.children() {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The children of this node, for walkers that follow a value and a set together.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.entries
            .iter()
            .filter(|(_, node)| !node.children.is_empty())
            .map(|(element, node)| (element, &node.children))
    }

    pub fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.entries.iter().filter(|(_, node)| node.member).map(|(element, _)| element)
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_map())
    }

    fn fields_v1_map(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (element, node) in &self.entries {
            let mut encoded = node.children.fields_v1_map();
            if node.member && !encoded.is_empty() {
                encoded.insert(".".into(), Value::Object(Map::new()));
            }
            out.insert(element.encode(), Value::Object(encoded));
        }
        out
    }

    /// Reads `FieldsV1` JSON back; an error names what is malformed.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, String> {
        let Value::Object(entries) = fields else {
            return Err("fieldsV1 must be a JSON object".into());
        };
        let mut set = FieldSet::new();
        for (key, value) in entries {
            if key == "." {
                continue;
            }
            let element = PathElement::decode(key)?;
            let Value::Object(inner) = value else {
                return Err(format!("the value of {key:?} must be a JSON object"));
            };
            let member = inner.is_empty() || inner.contains_key(".");
            set.insert_node(element, member, FieldSet::from_fields_v1(value)?);
        }
        Ok(set)
    }
}

impl fmt::Display for FieldSet {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self.paths().iter().map(|path| path_text(path)).collect();
        write!(out, "{}", paths.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::field(name)
    }

    fn set(paths: &[&[PathElement]]) -> FieldSet {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path);
        }
        set
    }

    fn container(name: &str) -> PathElement {
        PathElement::Key(vec![("name".into(), json!(name).to_string())])
    }

    #[test]
    fn fields_v1_round_trip() {
        let port = PathElement::Key(vec![
            ("containerPort".into(), "80".into()),
            ("protocol".into(), json!("TCP").to_string()),
        ]);
        let containers = [field("spec"), field("template"), field("spec"), field("containers")];
        let nginx = [&containers[..], &[container("nginx")]].concat();
        let set = set(&[
            &[field("metadata"), field("labels")],
            &[field("metadata"), field("labels"), field("app")],
            &[field("spec"), field("replicas")],
            &nginx,
            &[&nginx[..], &[field("image")]].concat(),
            &[&nginx[..], &[field("ports"), port.clone()]].concat(),
            &[field("metadata"), field("finalizers"), PathElement::Value(json!("x").to_string())],
        ]);
        let encoded = set.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}},
                    }}}},
                },
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&encoded).unwrap(), set);
        assert!(set.has(&nginx));
        assert!(!set.has(&containers), "only on the way");
    }

    #[test]
    fn paths_print_as_kube_does() {
        let path = vec![
            field("spec"),
            field("containers"),
            container("web"),
            field("ports"),
            PathElement::Key(vec![("containerPort".into(), "80".into()), ("protocol".into(), "\"TCP\"".into())]),
        ];
        assert_eq!(path_text(&path), ".spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(
            path_text(&[field("metadata"), field("finalizers"), PathElement::Value("\"a\"".into())]),
            ".metadata.finalizers[=\"a\"]"
        );
    }

    #[test]
    fn set_operations() {
        let a = set(&[&[field("spec"), field("replicas")], &[field("spec"), field("paused")], &[field("status")]]);
        let b = set(&[&[field("spec"), field("replicas")], &[field("data")]]);
        assert_eq!(a.intersection(&b), set(&[&[field("spec"), field("replicas")]]));
        assert_eq!(a.difference(&b), set(&[&[field("spec"), field("paused")], &[field("status")]]));
        assert_eq!(
            a.union(&b),
            set(&[
                &[field("spec"), field("replicas")],
                &[field("spec"), field("paused")],
                &[field("status")],
                &[field("data")]
            ])
        );
        // A member of the other set leaves the paths through it in a difference; a subtree
        // removed or kept takes both.
        let spec = set(&[&[field("spec")]]);
        assert_eq!(a.difference(&spec), a);
        let mut without_spec = a.clone();
        without_spec.remove_subtree(&field("spec"));
        assert_eq!(without_spec, set(&[&[field("status")]]));
        let with_spec_member = a.union(&spec);
        assert_eq!(
            with_spec_member.clone().only_subtree(&field("spec")),
            set(&[&[field("spec")], &[field("spec"), field("replicas")], &[field("spec"), field("paused")]])
        );
        assert!(with_spec_member.only_subtree(&field("data")).is_empty());
        let mut grown = b.clone();
        grown.add(&a);
        assert_eq!(grown, a.union(&b));
        let mut absorbed = b.clone();
        absorbed.absorb(a.clone());
        assert_eq!(absorbed, a.union(&b));
        let mut into_empty = FieldSet::new();
        into_empty.absorb(a.clone());
        assert_eq!(into_empty, a);
        for (left, right) in [(&a, &b), (&b, &a), (&a, &spec), (&a, &a), (&a.union(&spec), &a)] {
            let mut removed = left.clone();
            removed.remove_all(right);
            assert_eq!(removed, left.difference(right), "{left} without {right}");
        }
        assert!(a.difference(&a).is_empty());
        assert_eq!(
            a.paths().iter().map(|path| path_text(path)).collect::<Vec<_>>(),
            vec![".status", ".spec.paused", ".spec.replicas"]
        );
    }

    #[test]
    fn malformed_fields_v1_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!({"x:spec": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:spec": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
