//! `metadata.managedFields`: who owns which fields of an object, kept as kube-apiserver's field
//! manager keeps it, on every create, update, patch and apply.
//!
//! Each entry is a manager (the `fieldManager` parameter, else the User-Agent's program name),
//! an operation (`Apply` for server-side apply, `Update` for every other write), an apiVersion,
//! a subresource, the time it last changed something, and its field set (`field_set.rs`).
//!
//! - An *update* owns the fields it changed (added or modified); it takes them from the other
//!   managers, and a field it removed leaves every set. A manager's Update entries are one entry
//!   per apiVersion and subresource; at most [`UPDATE_MANAGERS_MAX`] are kept, the oldest merged
//!   into `ancient-changes`.
//! - An *apply* owns exactly the fields of its configuration. It merges the configuration into
//!   the object (`structured_merge.rs`), removes what it owned before and owns no longer unless
//!   another manager owns it (pruning), and fails with conflicts where it would change a field
//!   another manager owns, unless forced, which takes the fields over.
//!
//! Identity, creation and bookkeeping fields of metadata are never owned (kube's strip set).
//! Through the main resource nobody owns `.status` of a type with a status subresource; through
//! `/status`, only `.status` is owned (kube's reset fields).
//!
//! Like kube: managedFields sent with a write are taken as they are when they decode, and an
//! empty list (or a list of one empty entry) clears them; an object without managedFields gets
//! none from updates until it is next created or applied to.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::field_set::{FieldSet, Path, PathElement};
use crate::object;
use crate::registry::ResourceInfo;
use crate::structured_merge::{self, Comparison};
use crate::writer::Part;

/// Update entries kept at most; older ones are merged into [`ANCIENT_CHANGES`] (kube's
/// `DefaultMaxUpdateManagers`).
pub const UPDATE_MANAGERS_MAX: usize = 10;
/// The longest field manager name (kube's `FieldManagerMaxLength`).
pub const FIELD_MANAGER_BYTES_MAX: usize = 128;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Who owns an object's fields when it is first applied to without managed fields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What tells one entry from another: an applier is one entry whatever the apiVersion it
/// applied with; an updater has one per apiVersion (kube's `BuildManagerIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> ManagerId {
        let api_version = if operation == Operation::Apply { "" } else { api_version };
        ManagerId {
            manager: manager.to_string(),
            operation,
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
        }
    }

    /// As kube names a manager in conflict messages: `"kubectl"`, `"kubectl" with subresource
    /// "scale" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            text = format!("{text} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            text = format!("{text} using {}", self.api_version);
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub set: FieldSet,
    pub api_version: String,
    /// RFC 3339, when the manager last changed the object.
    pub time: Option<String>,
}

/// An object's managed fields, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed {
    pub entries: BTreeMap<ManagerId, Entry>,
}

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: ManagerId,
    pub path: Path,
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The configuration cannot be merged (a keyed item without its key, duplicates).
    Invalid(String),
    Conflicts(Vec<Conflict>),
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads `metadata.managedFields` (kube's `DecodeManagedFields`).
    pub fn decode(entries: &Value) -> Result<Managed, String> {
        let Value::Array(entries) = entries else { return Err("managedFields must be a list".into()) };
        let mut managed = Managed::default();
        for (index, entry) in entries.iter().enumerate() {
            let text = |field: &str| entry.get(field).and_then(Value::as_str).unwrap_or("");
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".into()),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {index}")),
                other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {index}")),
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(fields) => FieldSet::from_fields_v1(fields)?,
            };
            let id = ManagerId::new(text("manager"), operation, api_version, text("subresource"));
            let time = entry.get("time").and_then(Value::as_str).map(str::to_string);
            managed.entries.insert(id, Entry { set, api_version: api_version.to_string(), time });
        }
        Ok(managed)
    }

    /// The `metadata.managedFields` list, in kube's order: appliers first, then by time,
    /// manager, apiVersion and subresource.
    pub fn encode(&self) -> Vec<Value> {
        let mut entries: Vec<(&ManagerId, &Entry)> = self.entries.iter().collect();
        let seconds =
            |entry: &Entry| entry.time.as_deref().and_then(object::parse_time).map_or(0, |time| time.as_second());
        entries.sort_by(|(a_id, a), (b_id, b)| {
            (a_id.operation, seconds(a), &a_id.manager, &a.api_version, &a_id.subresource).cmp(&(
                b_id.operation,
                seconds(b),
                &b_id.manager,
                &b.api_version,
                &b_id.subresource,
            ))
        });
        entries
            .into_iter()
            .map(|(id, entry)| encode_entry(id, &entry.api_version, entry.time.as_deref(), entry.set.to_fields_v1()))
            .collect()
    }

    fn drop_empty(&mut self) {
        self.entries.retain(|_, entry| !entry.set.is_empty());
    }

    /// Merges the oldest Update entries, per apiVersion, until at most
    /// [`UPDATE_MANAGERS_MAX`] are left (kube's `capManagersManager`).
    fn cap_update_managers(&mut self) {
        let mut updaters: Vec<ManagerId> =
            self.entries.keys().filter(|id| id.operation == Operation::Update).cloned().collect();
        if updaters.len() <= UPDATE_MANAGERS_MAX {
            return;
        }
        let seconds =
            |entry: &Entry| entry.time.as_deref().and_then(object::parse_time).map_or(0, |time| time.as_second());
        updaters.sort_by_key(|id| (seconds(&self.entries[id]), id.clone()));
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        let mut count = updaters.len();
        for id in updaters {
            if count <= UPDATE_MANAGERS_MAX {
                break;
            }
            let entry = self.entries[&id].clone();
            let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &entry.api_version, "");
            match first_of_version.get(&entry.api_version) {
                Some(first) => {
                    if !self.entries.contains_key(&bucket) {
                        let first_entry = self.entries.remove(first).expect("the first entry is kept");
                        self.entries.insert(bucket.clone(), first_entry);
                    }
                    let merged = self.entries.get_mut(&bucket).expect("the bucket exists");
                    merged.set = merged.set.union(&entry.set);
                    merged.time = entry.time.clone();
                    self.entries.remove(&id);
                    count -= 1;
                }
                None => {
                    first_of_version.insert(entry.api_version.clone(), id);
                }
            }
        }
    }
}

/// One `managedFields` entry.
fn encode_entry(id: &ManagerId, api_version: &str, time: Option<&str>, fields_v1: Value) -> Value {
    let mut encoded = Map::new();
    if !id.manager.is_empty() {
        encoded.insert("manager".into(), json!(id.manager));
    }
    encoded.insert("operation".into(), json!(id.operation.as_str()));
    encoded.insert("apiVersion".into(), json!(api_version));
    if let Some(time) = time {
        encoded.insert("time".into(), json!(time));
    }
    encoded.insert("fieldsType".into(), json!("FieldsV1"));
    encoded.insert("fieldsV1".into(), fields_v1);
    if !id.subresource.is_empty() {
        encoded.insert("subresource".into(), json!(id.subresource));
    }
    Value::Object(encoded)
}

/// Which fields a write through a part of the resource may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// The main resource of a type with a status subresource.
    AllButStatus,
    /// `/status`.
    StatusOnly,
}

impl Scope {
    pub fn of(info: &ResourceInfo, part: Part) -> Scope {
        match part {
            Part::Status => Scope::StatusOnly,
            _ if info.status_subresource => Scope::AllButStatus,
            _ => Scope::Everything,
        }
    }

    pub fn filter(self, mut set: FieldSet) -> FieldSet {
        let status = PathElement::field("status");
        match self {
            Scope::Everything => set,
            Scope::AllButStatus => {
                set.remove_subtree(&status);
                set
            }
            Scope::StatusOnly => set.only_subtree(&status),
        }
    }

    /// [`Scope::filter`] of a `FieldsV1` object.
    fn filter_fields_v1(self, fields: &mut Map<String, Value>) {
        match self {
            Scope::Everything => {}
            Scope::AllButStatus => {
                fields.remove("f:status");
            }
            Scope::StatusOnly => fields.retain(|key, _| key == "f:status"),
        }
    }

    fn filter_comparison(self, comparison: Comparison) -> Comparison {
        Comparison {
            added: self.filter(comparison.added),
            modified: self.filter(comparison.modified),
            removed: self.filter(comparison.removed),
        }
    }
}

/// The subresource a part of a resource is, as entries name it.
pub fn subresource(part: Part) -> &'static str {
    match part {
        Part::Main => "",
        Part::Status => "status",
        Part::Scale => "scale",
        Part::Finalize => "finalize",
    }
}

/// Type information and metadata that nobody owns (kube's `stripMetaManager`): these fields of
/// the object, and of its metadata.
const STRIPPED_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];
const STRIPPED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// The paths nobody owns, as a set.
fn strip_set() -> &'static FieldSet {
    static STRIP: std::sync::OnceLock<FieldSet> = std::sync::OnceLock::new();
    STRIP.get_or_init(|| {
        let mut set = FieldSet::new();
        for field in STRIPPED_FIELDS {
            set.insert(&[PathElement::field(field)]);
        }
        for field in STRIPPED_METADATA {
            set.insert(&[PathElement::field("metadata"), PathElement::field(field)]);
        }
        set
    })
}

/// [`strip_set`] taken out of a `FieldsV1` object: each path stops being a member; a node left
/// with nothing goes.
fn strip_fields_v1(fields: &mut Map<String, Value>) {
    let mut key = String::with_capacity(32);
    let mut disown = |fields: &mut Map<String, Value>, field: &str| {
        key.clear();
        key.push_str("f:");
        key.push_str(field);
        if let Some(Value::Object(node)) = fields.get_mut(&key) {
            node.remove(".");
            if node.is_empty() {
                fields.remove(&key);
            }
        }
    };
    if let Some(Value::Object(metadata)) = fields.get_mut("f:metadata") {
        for field in STRIPPED_METADATA {
            disown(metadata, field);
        }
    }
    for field in STRIPPED_FIELDS {
        disown(fields, field);
    }
}

/// The object a create starts from, as Go's zero value of the type encodes: the structs that
/// are not pointers are there, empty, so a create does not own them as a whole.
pub fn empty_object(info: &ResourceInfo) -> Value {
    let pod_template = json!({"metadata": {}, "spec": {"containers": null}});
    let mut object = json!({"metadata": {}});
    match info.kind {
        "Deployment" => object["spec"] = json!({"selector": null, "strategy": {}, "template": pod_template}),
        "StatefulSet" | "DaemonSet" => {
            object["spec"] = json!({"selector": null, "updateStrategy": {}, "template": pod_template})
        }
        "ReplicaSet" | "Job" => object["spec"] = json!({"selector": null, "template": pod_template}),
        "Pod" => object["spec"] = json!({"containers": null}),
        "Service" | "Namespace" | "Node" | "Lease" => object["spec"] = json!({}),
        "Event" => {
            object["involvedObject"] = json!({});
            object["source"] = json!({});
        }
        "EndpointSlice" => object["endpoints"] = json!(null),
        _ => {}
    }
    if info.status_subresource {
        object["status"] = json!({});
    }
    object
}

/// The object without its managed fields, as the comparisons see it.
pub fn without_managed_fields(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    value
}

/// The managedFields of `value`, if it has any.
fn managed_fields_of(value: &Value) -> Option<&Value> {
    object::metadata(value).and_then(|meta| meta.get("managedFields")).filter(|fields| !fields.is_null())
}

/// `[]` or `[{}]`: the request clears the managed fields (kube's `isResetManagedFields`).
fn is_reset(fields: Option<&Value>) -> bool {
    match fields.and_then(Value::as_array).map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// The managed fields a write starts from (kube's `decodeLiveOrNew`): a subresource cannot set
/// them; a reset clears them; those sent are taken if they decode and are not empty; else the
/// live object's.
fn starting_point(live: Option<&Value>, new: &Value, from_subresource: bool) -> Managed {
    let live_managed = || {
        live.and_then(managed_fields_of).map(|fields| Managed::decode(fields).unwrap_or_default()).unwrap_or_default()
    };
    if from_subresource {
        return live_managed();
    }
    let sent = managed_fields_of(new);
    if is_reset(sent) {
        return Managed::default();
    }
    match sent.map(Managed::decode) {
        Some(Ok(managed)) if !managed.is_empty() => managed,
        _ => live_managed(),
    }
}

fn set_managed_fields(value: &mut Value, managed: &Managed) {
    let meta = object::metadata_mut(value);
    if managed.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(managed.encode()));
    }
}

/// SMD's `Updater.update`: the fields `live` → `new` changes are taken from every manager but
/// `workflow` (a conflict unless `force`), and those it removes leave their sets.
fn take_ownership(
    managed: &mut Managed,
    live: &Value,
    new: &Value,
    workflow: Option<&ManagerId>,
    force: bool,
    scope: Scope,
) -> Result<Comparison, Vec<Conflict>> {
    let comparison = scope.filter_comparison(structured_merge::compare(live, new));
    let mut conflicts: Vec<(ManagerId, FieldSet)> = Vec::new();
    let mut others = managed.entries.iter().filter(|(id, _)| Some(*id) != workflow).peekable();
    if others.peek().is_some() {
        let changed = comparison.modified.union(&comparison.added);
        for (id, entry) in others {
            let taken = entry.set.intersection(&changed);
            if !taken.is_empty() {
                conflicts.push((id.clone(), taken));
            }
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts
            .into_iter()
            .flat_map(|(manager, set)| {
                set.paths().into_iter().map(move |path| Conflict { manager: manager.clone(), path })
            })
            .collect());
    }
    for (id, taken) in conflicts {
        let entry = managed.entries.get_mut(&id).expect("a manager with conflicts");
        entry.set = entry.set.difference(&taken);
    }
    if !comparison.removed.is_empty() {
        for (id, entry) in managed.entries.iter_mut() {
            if Some(id) != workflow {
                entry.set = entry.set.difference(&comparison.removed);
            }
        }
    }
    managed.drop_empty();
    Ok(comparison)
}

/// An Update by `id`: it owns what it changed from `live` to `new` (kube's Update chain:
/// `managedFieldsUpdater`, `stripMetaManager`, `capManagersManager`).
pub fn track_update(managed: &mut Managed, live: &Value, new: &Value, id: &ManagerId, api_version: &str, scope: Scope) {
    // The comparison comes back filtered to the scope.
    let comparison = take_ownership(managed, live, new, None, true, scope).expect("forced updates do not conflict");
    let mut changed = comparison.modified;
    changed.absorb(comparison.added);
    changed.remove_all(strip_set());
    if !changed.is_empty() {
        let mut set = changed;
        if let Some(previous) = managed.entries.remove(id) {
            set.add(&previous.set);
        }
        let entry = Entry { set, api_version: api_version.to_string(), time: Some(object::now_rfc3339()) };
        managed.entries.insert(id.clone(), entry);
    }
    managed.cap_update_managers();
}

/// What an apply produced: the merged object (None when it is the live object unchanged) and
/// the managed fields.
#[derive(Debug)]
pub struct Applied {
    pub object: Option<Value>,
    pub managed: Managed,
}

/// An Apply by `id` of `config` to `live` (both without managed fields), as kube's structured
/// merge manager does it.
pub fn apply(
    mut managed: Managed,
    live: &Value,
    config: &Value,
    id: &ManagerId,
    api_version: &str,
    force: bool,
    scope: Scope,
) -> Result<Applied, ApplyError> {
    let merged = structured_merge::merge(live, config).map_err(ApplyError::Invalid)?;
    let last_set = managed.entries.get(id).map(|entry| entry.set.clone());
    let set = scope.filter(structured_merge::to_field_set(config));
    let time = managed.entries.get(id).and_then(|entry| entry.time.clone());
    managed.entries.insert(id.clone(), Entry { set, api_version: api_version.to_string(), time });
    let mut merged = match last_set {
        Some(last_set) if !last_set.is_empty() => prune(&merged, &managed, &last_set),
        _ => merged,
    };
    structured_merge::strip_nulls(&mut merged);
    take_ownership(&mut managed, live, &merged, Some(id), force, scope).map_err(ApplyError::Conflicts)?;
    let strip = strip_set();
    if let Some(entry) = managed.entries.get_mut(id) {
        entry.set = entry.set.difference(strip);
    }
    managed.drop_empty();
    let unchanged = merged == *live;
    if !unchanged {
        if let Some(entry) = managed.entries.get_mut(id) {
            entry.time = Some(object::now_rfc3339());
        }
    }
    Ok(Applied { object: (!unchanged).then_some(merged), managed })
}

/// Removes from `merged` what the applier owned last time (`last_set`) and owns no longer,
/// unless another manager owns it (SMD's `prune`, `addBackOwnedItems`, `addBackDanglingItems`).
fn prune(merged: &Value, managed: &Managed, last_set: &FieldSet) -> Value {
    let ensure = structured_merge::ensure_named_fields_are_members;
    let last = ensure(last_set);
    let pruned = structured_merge::remove_items(merged, &last);
    let owned = managed.entries.values().fold(FieldSet::new(), |owned, entry| owned.union(&entry.set));
    let merged_set = ensure(&structured_merge::to_field_set(merged));
    let pruned_set = ensure(&structured_merge::to_field_set(&pruned));
    let pruned = structured_merge::remove_items(merged, &merged_set.difference(&pruned_set.union(&ensure(&owned))));
    let pruned_set = ensure(&structured_merge::to_field_set(&pruned));
    structured_merge::remove_items(merged, &merged_set.difference(&pruned_set).intersection(&last))
}

/// Records the managed fields of a write other than an apply into `new` (kube's field manager
/// `Update`): `live` is the object before (None for a create).
pub fn record_update(info: &ResourceInfo, live: Option<&Value>, new: &mut Value, part: Part, manager: &str) {
    let mut managed = starting_point(live, new, part != Part::Main);
    let mut new_clean = std::mem::take(new);
    if let Some(meta) = new_clean.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if live.is_none() && managed.is_empty() {
        if let Some(entries) = created_entries(info, &new_clean, part, manager) {
            let meta = object::metadata_mut(&mut new_clean);
            if !entries.is_empty() {
                meta.insert("managedFields".into(), Value::Array(entries));
            }
            *new = new_clean;
            return;
        }
    }
    match live {
        // kube does not start tracking an existing object on an update: only creates and applies do.
        Some(_) if managed.is_empty() => {}
        _ => {
            let before = live.map(without_managed_fields).unwrap_or_else(|| empty_object(info));
            let api_version = info.api_version();
            let id = ManagerId::new(manager, Operation::Update, &api_version, subresource(part));
            track_update(&mut managed, &before, &new_clean, &id, &api_version, Scope::of(info, part));
        }
    }
    set_managed_fields(&mut new_clean, &managed);
    *new = new_clean;
}

/// The managed fields of a create that brings none (no entry when it owns nothing), as
/// [`track_update`] makes them, but written straight from the comparison: creates are most
/// writes, and building a [`FieldSet`] only to encode it was a good part of their cost. None
/// where the comparison cannot be written straight.
fn created_entries(info: &ResourceInfo, new: &Value, part: Part, manager: &str) -> Option<Vec<Value>> {
    let mut fields = structured_merge::changed_fields_v1(&empty_object(info), new)?;
    Scope::of(info, part).filter_fields_v1(&mut fields);
    strip_fields_v1(&mut fields);
    if fields.is_empty() {
        return Some(Vec::new());
    }
    let api_version = info.api_version();
    let id = ManagerId::new(manager, Operation::Update, &api_version, subresource(part));
    Some(vec![encode_entry(&id, &api_version, Some(&object::now_rfc3339()), Value::Object(fields))])
}

/// Sets the managed fields an apply computed.
pub fn install(new: &mut Value, managed: &Managed) {
    set_managed_fields(new, managed);
}

/// The manager of a write: the `fieldManager` parameter, else the User-Agent's program name
/// (kube's `prefixFromUserAgent`: up to the first `/`, printable characters, at most 128).
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(manager) = field_manager {
        return manager.to_string();
    }
    let program = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut name = String::new();
    for character in program.chars().filter(|character| !character.is_control()) {
        if name.len() > FIELD_MANAGER_BYTES_MAX {
            break;
        }
        name.push(character);
    }
    name
}

/// kube's `ValidateFieldManager`: the problem with a `fieldManager` parameter, if any.
pub fn field_manager_problem(manager: &str) -> Option<String> {
    if manager.len() > FIELD_MANAGER_BYTES_MAX {
        return Some(format!("Too long: may not be more than {FIELD_MANAGER_BYTES_MAX} bytes"));
    }
    if manager.chars().any(char::is_control) {
        return Some(format!("Invalid value: {manager:?}: invalid characters"));
    }
    None
}

/// kube's apply conflict message: `Apply failed with 1 conflict: conflict with "kubectl":
/// .spec.replicas`, or one line per conflict under each manager.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager.describe(),
            crate::field_set::path_text(&only.path)
        );
    }
    let mut by_manager: BTreeMap<&ManagerId, Vec<String>> = BTreeMap::new();
    for conflict in conflicts {
        by_manager.entry(&conflict.manager).or_default().push(crate::field_set::path_text(&conflict.path));
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {}:", manager.describe()));
        lines.extend(paths.into_iter().map(|path| format!("- {path}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The first apply to an object that has no managed fields: everything it has is owned by
/// `before-first-apply`, so the apply conflicts where it changes them (kube's
/// `skipNonAppliedManager`).
pub fn before_first_apply(info: &ResourceInfo, live: &Value, part: Part) -> Managed {
    let mut managed = Managed::default();
    let api_version = info.api_version();
    let id = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, &api_version, subresource(part));
    track_update(&mut managed, &empty_object(info), live, &id, &api_version, Scope::of(info, part));
    managed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_set::path_text;
    use crate::registry;

    fn deployments() -> &'static ResourceInfo {
        registry::find("apps", "v1", "deployments").unwrap()
    }

    fn applier(name: &str) -> ManagerId {
        ManagerId::new(name, Operation::Apply, "", "")
    }

    fn config(replicas: Option<i64>, labels: Value) -> Value {
        let mut config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        });
        if let Some(replicas) = replicas {
            config["spec"]["replicas"] = json!(replicas);
        }
        config
    }

    fn apply_ok(managed: Managed, live: &Value, config: &Value, id: &ManagerId, force: bool) -> (Value, Managed) {
        let applied = apply(managed, live, config, id, "apps/v1", force, Scope::AllButStatus).unwrap();
        (applied.object.unwrap_or_else(|| live.clone()), applied.managed)
    }

    fn owned(managed: &Managed, id: &ManagerId) -> Vec<String> {
        managed
            .entries
            .get(id)
            .map(|entry| entry.set.paths().iter().map(|path| path_text(path)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_applier_owns_its_configuration_and_prunes_what_it_dropped() {
        let alice = applier("alice");
        let first = config(Some(2), json!({"app": "web", "tier": "front"}));
        let (object, managed) = apply_ok(Managed::default(), &json!({}), &first, &alice, false);
        assert_eq!(object["spec"]["replicas"], 2);
        let alice_fields = owned(&managed, &alice);
        assert!(alice_fields.contains(&".spec.replicas".to_string()), "{alice_fields:?}");
        assert!(alice_fields.contains(&".metadata.labels.tier".to_string()), "{alice_fields:?}");
        assert!(!alice_fields.iter().any(|path| path == ".metadata.name" || path == ".kind"), "stripped");

        // The same configuration again changes nothing.
        let again = apply(managed.clone(), &object, &first, &alice, "apps/v1", false, Scope::AllButStatus).unwrap();
        assert!(again.object.is_none());
        assert_eq!(again.managed, managed);

        // Dropping a label and replicas removes them.
        let second = config(None, json!({"app": "web"}));
        let (object, managed) = apply_ok(managed, &object, &second, &alice, false);
        assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(object["spec"].get("replicas"), None);
        assert!(!owned(&managed, &alice).contains(&".spec.replicas".to_string()));
    }

    #[test]
    fn a_second_applier_conflicts_unless_forced() {
        let (alice, bob) = (applier("alice"), applier("bob"));
        let (object, managed) =
            apply_ok(Managed::default(), &json!({}), &config(Some(2), json!({"app": "web"})), &alice, false);
        let replicas_only = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let error =
            apply(managed.clone(), &object, &replicas_only, &bob, "apps/v1", false, Scope::AllButStatus).unwrap_err();
        let ApplyError::Conflicts(conflicts) = error else { panic!("{error:?}") };
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );

        // The same value is shared, not a conflict.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let (_, shared) = apply_ok(managed.clone(), &object, &same, &bob, false);
        assert!(owned(&shared, &alice).contains(&".spec.replicas".to_string()));
        assert!(owned(&shared, &bob).contains(&".spec.replicas".to_string()));

        // Forced, bob takes it over; alice dropping it later leaves it with bob.
        let (object, managed) = apply_ok(managed, &object, &replicas_only, &bob, true);
        assert_eq!(object["spec"]["replicas"], 5);
        assert!(!owned(&managed, &alice).contains(&".spec.replicas".to_string()));
        let (object, _) = apply_ok(managed, &object, &config(None, json!({"app": "web"})), &alice, false);
        assert_eq!(object["spec"]["replicas"], 5, "bob still owns it");
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let info = deployments();
        let alice = applier("alice");
        let (object, managed) =
            apply_ok(Managed::default(), &json!({}), &config(Some(2), json!({"app": "web"})), &alice, false);
        let mut live = object.clone();
        set_managed_fields(&mut live, &managed);
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        record_update(info, Some(&live), &mut scaled, Part::Scale, "kubectl");
        let managed = Managed::decode(&scaled["metadata"]["managedFields"]).unwrap();
        let scaler = ManagerId::new("kubectl", Operation::Update, "apps/v1", "scale");
        assert_eq!(owned(&managed, &scaler), vec![".spec.replicas"]);
        assert!(!owned(&managed, &alice).contains(&".spec.replicas".to_string()));

        // Re-applying replicas 2 now conflicts with the scaler, named as kube names it.
        let error = apply(
            managed,
            &without_managed_fields(&scaled),
            &config(Some(2), json!({"app": "web"})),
            &alice,
            "apps/v1",
            false,
            Scope::AllButStatus,
        )
        .unwrap_err();
        let ApplyError::Conflicts(conflicts) = error else { panic!("{error:?}") };
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn a_create_records_an_update_entry_and_a_reset_clears_it() {
        let info = deployments();
        let mut created = config(Some(1), json!({"app": "web"}));
        record_update(info, None, &mut created, Part::Main, "kubectl-create");
        let entries = created["metadata"]["managedFields"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "kubectl-create");
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(entries[0]["apiVersion"], "apps/v1");
        let fields = &entries[0]["fieldsV1"];
        assert_eq!(fields["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
        assert!(fields["f:spec"].get(".").is_none(), "the spec struct exists in the empty object");
        assert!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"].get(".").is_some());

        let mut reset = created.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(info, Some(&created), &mut reset, Part::Main, "kubectl-edit");
        assert!(reset["metadata"].get("managedFields").is_none());
        // An object without managed fields gets none from updates.
        let mut edited = reset.clone();
        edited["spec"]["replicas"] = json!(3);
        record_update(info, Some(&reset), &mut edited, Part::Main, "kubectl-edit");
        assert!(edited["metadata"].get("managedFields").is_none());
    }

    /// What a create recorded before `created_entries`: the comparison built as sets.
    fn created_through_sets(info: &ResourceInfo, new: &Value, part: Part) -> Vec<Value> {
        let mut managed = Managed::default();
        let api_version = info.api_version();
        let id = ManagerId::new("creator", Operation::Update, &api_version, subresource(part));
        track_update(&mut managed, &empty_object(info), new, &id, &api_version, Scope::of(info, part));
        managed.encode()
    }

    fn without_times(mut entries: Vec<Value>) -> Vec<Value> {
        for entry in &mut entries {
            entry.as_object_mut().unwrap().remove("time");
        }
        entries
    }

    #[test]
    fn a_create_written_straight_owns_what_the_comparison_finds() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "a"},
                         "finalizers": ["x", "x", "y"], "annotations": {}, "ownerReferences": null},
            "spec": {
                "containers": [
                    {"name": "app", "image": "i", "args": ["--a", "--a"],
                     "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}, {"name": "x"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}, {"name": "B"}],
                     "resources": {"requests": {"cpu": "1"}, "limits": {}},
                     "readinessProbe": {"httpGet": {"path": "/", "port": 80}}},
                    {"name": "side", "image": "j"},
                ],
                "volumes": [{"emptyDir": {}}],
                "tolerations": [],
                "nodeSelector": null,
                "nodeName": "n1",
            },
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "True"}]},
        });
        let deployment = config(Some(3), json!({"app": "web"}));
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "selector": {"app": "a"},
                     "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "protocol": "TCP", "nodePort": 30001}]},
        });
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"},
                               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                "data": {"k": "v", "empty": ""}, "binaryData": {}});
        let identity_only = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "n"},
                           "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
                           "source": {"component": "kubelet"}, "count": 1});
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "s-1", "labels": {"kubernetes.io/service-name": "s"}},
                           "addressType": "IPv4",
                           "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
                           "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]});
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                          "spec": {"podCIDR": "10.1.0.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
                          "status": {"capacity": {"cpu": "4"}, "addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]}});
        let cases = [
            (("", "v1", "pods"), pod),
            (("apps", "v1", "deployments"), deployment),
            (("", "v1", "services"), service),
            (("", "v1", "namespaces"), namespace),
            (("", "v1", "configmaps"), config_map),
            (("", "v1", "configmaps"), identity_only),
            (("", "v1", "events"), event),
            (("discovery.k8s.io", "v1", "endpointslices"), slice),
            (("", "v1", "nodes"), node),
        ];
        for ((group, version, plural), object) in cases {
            let info = registry::find(group, version, plural).unwrap();
            let mut defaulted = object.clone();
            crate::defaults::apply(info, &mut defaulted);
            for new in [object, defaulted] {
                for part in [Part::Main, Part::Status] {
                    let expected = without_times(created_through_sets(info, &new, part));
                    let written = created_entries(info, &new, part, "creator").expect("a create is written straight");
                    assert_eq!(without_times(written), expected, "{plural} through {part:?}: {new}");
                }
            }
        }
    }

    #[test]
    fn update_entries_are_capped() {
        let info = registry::find("", "v1", "configmaps").unwrap();
        // A create that sets nothing but identity owns nothing, and then, as in kube, nothing
        // is tracked until an apply: the creator sets some data.
        let mut live =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"seed": "x"}});
        record_update(info, None, &mut live, Part::Main, "creator");
        for index in 0..15 {
            let mut next = live.clone();
            next["data"] = json!({});
            next["data"][format!("k{index}")] = json!("v");
            if let Some(data) = live.get("data").and_then(Value::as_object) {
                for (key, value) in data {
                    next["data"][key] = value.clone();
                }
            }
            record_update(info, Some(&live), &mut next, Part::Main, &format!("writer-{index}"));
            live = next;
        }
        let managed = Managed::decode(&live["metadata"]["managedFields"]).unwrap();
        assert_eq!(managed.entries.len(), UPDATE_MANAGERS_MAX);
        assert!(managed.entries.keys().any(|id| id.manager == ANCIENT_CHANGES));
    }

    #[test]
    fn manager_names() {
        assert_eq!(manager_name(None, Some("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0")), "kubectl");
        assert_eq!(manager_name(Some("mine"), Some("kubectl/v1.33.1")), "mine");
        assert_eq!(manager_name(None, None), "");
        assert!(field_manager_problem(&"x".repeat(129)).is_some());
        assert!(field_manager_problem("ok").is_none());
    }
}
