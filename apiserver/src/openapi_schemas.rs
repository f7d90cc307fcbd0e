//! The schemas of the OpenAPI documents, built once from k8s-openapi's types: their `schemars`
//! implementations carry kube's definition names (`io.k8s.api.core.v1.Pod`) and descriptions.
//! To these are added what kube-apiserver's documents have and k8s-openapi leaves out:
//!
//! - `x-kubernetes-group-version-kind` on each served kind, on its list (`PodList`, written here)
//!   and on `Scale`: kubectl finds a resource's schema by it (`explain`, client-side apply);
//! - from keel's table (`patch_strategy.rs`), on each list property: `x-kubernetes-patch-strategy`
//!   and `x-kubernetes-patch-merge-key` (kubectl computes client-side apply's strategic merge
//!   patches from them) and `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`; on objects
//!   replaced whole, `x-kubernetes-map-type: atomic`.
//!
//! The table is keyed by paths from an object's root while definitions are shared between paths,
//! so the extensions are placed by walking every served kind from its root: a property gets them
//! the first time a walk reaches it, and only if they fit its schema (a merge key the items have,
//! a set of scalars). The served types agree wherever a definition is reached twice.
//!
//! Definitions are kept in plain form (`$ref` with sibling keys, refs as
//! `#/components/schemas/NAME`); [`v3_form`] turns a document's into kube's OpenAPI v3 form and
//! `openapi_v2.rs` makes the swagger 2.0 form.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status};
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::patch_strategy::{self, ApplyListType, ListStrategy};
use crate::registry::{ResourceInfo, RESOURCES};

/// Where an OpenAPI v3 document keeps its schemas.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// kube's name for the body of a PATCH (any object).
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// How many definitions deep the walk that places the table's extensions goes. The served types
/// nest about a dozen deep (a deployment's pod template's container's probe's HTTP headers), and
/// a walk never enters a definition already on its path, so this only bounds a future type.
const WALK_DEPTH_MAX: usize = 32;

pub struct Schemas {
    /// Every definition by name, in plain form.
    pub definitions: BTreeMap<String, Value>,
    /// The definition name of each served resource's kind, in `RESOURCES` order.
    kinds: Vec<String>,
    pub status: String,
    pub delete_options: String,
    pub scale: String,
}

/// The schemas, built on first use.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(build)
}

impl Schemas {
    pub fn kind(&self, info: &ResourceInfo) -> &str {
        let index = RESOURCES.iter().position(|served| served == info).expect("a served resource");
        &self.kinds[index]
    }

    pub fn list(&self, info: &ResourceInfo) -> String {
        format!("{}List", self.kind(info))
    }

    /// The definitions the `roots` reference, directly or not, with the roots themselves.
    pub fn closure(&self, roots: impl IntoIterator<Item = String>) -> BTreeMap<String, Value> {
        let mut found = BTreeMap::new();
        let mut pending: Vec<String> = roots.into_iter().collect();
        while let Some(name) = pending.pop() {
            if found.contains_key(&name) {
                continue;
            }
            let definition = self.definitions.get(&name).unwrap_or_else(|| panic!("no definition {name}"));
            let mut references = BTreeSet::new();
            collect_references(definition, &mut references);
            pending.extend(references);
            found.insert(name, definition.clone());
        }
        found
    }
}

/// A schema's reference: `{"$ref": ...}` or kube's v3 `{"allOf": [{"$ref": ...}]}`.
pub fn reference(schema: &Value) -> Option<&str> {
    let reference = schema.get("$ref").or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))?;
    reference.as_str()?.strip_prefix(REF_PREFIX)
}

fn collect_references(value: &Value, references: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|text| text.strip_prefix(REF_PREFIX)) {
                references.insert(name.to_string());
            }
            map.values().for_each(|value| collect_references(value, references));
        }
        Value::Array(items) => items.iter().for_each(|value| collect_references(value, references)),
        _ => {}
    }
}

/// kube's OpenAPI v3 form: a reference with sibling keys (a property's description) moves into
/// `allOf`, since OpenAPI 3.0 ignores the siblings of `$ref`.
pub fn v3_form(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(v3_form);
            if map.len() > 1 && map.get("$ref").is_some_and(Value::is_string) {
                let reference = map.remove("$ref").expect("checked");
                map.insert("allOf".into(), json!([{ "$ref": reference }]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(v3_form),
        _ => {}
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn add_gvk(definition: &mut Value, gvk: Value) {
    let list = definition
        .as_object_mut()
        .expect("a definition is an object")
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| json!([]));
    let list = list.as_array_mut().expect("a list of group-version-kinds");
    if !list.contains(&gvk) {
        list.push(gvk);
    }
}

fn subschema<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    let schema = generator.subschema_for::<T>();
    reference(schema.as_value()).unwrap_or_else(|| panic!("{} is not a reference", T::schema_name())).to_string()
}

fn build() -> Schemas {
    let mut generator = SchemaSettings::draft07()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
            settings.transforms.clear();
        })
        .into_generator();
    let mut kinds = Vec::new();
    for info in RESOURCES {
        let schema = (info.schema)(&mut generator);
        let name = reference(schema.as_value()).unwrap_or_else(|| panic!("{} is not a reference", info.kind));
        kinds.push(name.to_string());
    }
    let status = subschema::<Status>(&mut generator);
    let delete_options = subschema::<DeleteOptions>(&mut generator);
    let scale = subschema::<Scale>(&mut generator);
    let mut definitions: BTreeMap<String, Value> = generator.take_definitions(false).into_iter().collect();

    definitions.insert(
        PATCH.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    add_gvk(definitions.get_mut(&scale).expect("Scale"), gvk("autoscaling", "v1", "Scale"));
    for (info, name) in RESOURCES.iter().zip(&kinds) {
        let definition = definitions.get_mut(name).expect("a kind's definition");
        add_gvk(definition, gvk(info.group, info.version, info.kind));
        drop_required_metadata(definition);
        add_gvk(
            definitions.get_mut(&delete_options).expect("DeleteOptions"),
            gvk(info.group, info.version, "DeleteOptions"),
        );
        definitions.insert(format!("{name}List"), list_schema(info, name));
        walk(&mut definitions, name, &mut Vec::new(), &mut Vec::new());
    }
    Schemas { definitions, kinds, status, delete_options, scale }
}

/// k8s-openapi requires `metadata` (its Rust field is not optional); kube does not, and a create
/// with `generateName` only, or none at all, is still an object.
fn drop_required_metadata(definition: &mut Value) {
    let map = definition.as_object_mut().expect("a definition is an object");
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            map.remove("required");
        }
    }
}

fn list_schema(info: &ResourceInfo, name: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {}.", info.kind, info.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", info.plural),
                "type": "array",
                "items": { "$ref": format!("{REF_PREFIX}{name}") },
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(info.group, info.version, &format!("{}List", info.kind))],
    })
}

/// Places the table's extensions on the properties of definition `name`, reached at `path`
/// (field names from the object's root, list indices left out, as the table takes them), and
/// walks on into the definitions they reference. `stack` holds the definitions on the path.
fn walk(definitions: &mut BTreeMap<String, Value>, name: &str, path: &mut Vec<String>, stack: &mut Vec<String>) {
    if stack.len() >= WALK_DEPTH_MAX || stack.iter().any(|seen| seen == name) {
        return;
    }
    let Some(properties) = definitions.get(name).and_then(|definition| definition.get("properties")) else { return };
    let Some(properties) = properties.as_object().cloned() else { return };
    stack.push(name.to_string());
    for (field, property) in properties {
        path.push(field.clone());
        let mut extensions = Map::new();
        let mut next = None;
        if property.get("type").and_then(Value::as_str) == Some("array") {
            let items = property.get("items").cloned().unwrap_or(Value::Null);
            let item = reference(&items).map(str::to_string);
            extensions = list_extensions(definitions, path, item.as_deref());
            next = item;
        } else if let Some(child) = reference(&property) {
            if patch_strategy::object_is_atomic(path) {
                extensions.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
            next = Some(child.to_string());
        }
        if !extensions.is_empty() {
            let target = &mut definitions.get_mut(name).expect("walked")["properties"][&field];
            let target = target.as_object_mut().expect("a property is an object");
            // The first path to reach a shared definition decides.
            if !target.keys().any(|key| key.starts_with("x-kubernetes-")) {
                target.extend(extensions);
            }
        }
        if let Some(child) = next {
            walk(definitions, &child, path, stack);
        }
        path.pop();
    }
    stack.pop();
}

fn list_extensions(definitions: &BTreeMap<String, Value>, path: &[String], item: Option<&str>) -> Map<String, Value> {
    let item_fields = item
        .and_then(|item| definitions.get(item))
        .and_then(|definition| definition.get("properties"))
        .and_then(Value::as_object);
    let has_field = |key: &str| item_fields.is_some_and(|fields| fields.contains_key(key));
    let scalar_items = item.is_none();
    let mut extensions = Map::new();
    match patch_strategy::list_strategy(path) {
        ListStrategy::MergeByKey(key) if has_field(key) => {
            extensions.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            extensions.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        }
        ListStrategy::MergeScalars if scalar_items => {
            extensions.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        }
        _ => {}
    }
    match patch_strategy::apply_list_type(path) {
        ApplyListType::Atomic => {
            extensions.insert("x-kubernetes-list-type".into(), json!("atomic"));
        }
        ApplyListType::Set if scalar_items => {
            extensions.insert("x-kubernetes-list-type".into(), json!("set"));
        }
        ApplyListType::Map(keys) if keys.iter().all(|key| has_field(key)) => {
            extensions.insert("x-kubernetes-list-type".into(), json!("map"));
            extensions.insert("x-kubernetes-list-map-keys".into(), json!(keys));
        }
        // The table names a list whose items do not fit (e.g. `addresses` of strings): say nothing.
        _ => {}
    }
    extensions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property<'a>(schemas: &'a Schemas, definition: &str, field: &str) -> &'a Value {
        &schemas.definitions[definition]["properties"][field]
    }

    #[test]
    fn kinds_carry_their_group_version_kind() {
        let schemas = schemas();
        for info in RESOURCES {
            let definition = &schemas.definitions[schemas.kind(info)];
            let expected = gvk(info.group, info.version, info.kind);
            assert!(
                definition["x-kubernetes-group-version-kind"].as_array().unwrap().contains(&expected),
                "{}",
                info.kind
            );
            assert!(definition["description"].as_str().is_some_and(|text| !text.is_empty()));
            let required = definition["required"].as_array().cloned().unwrap_or_default();
            assert!(!required.contains(&json!("metadata")), "{}", info.kind);
            assert!(schemas.definitions.contains_key(&schemas.list(info)));
        }
        assert_eq!(schemas.kind(crate::registry::find("", "v1", "pods").unwrap()), "io.k8s.api.core.v1.Pod");
    }

    #[test]
    fn table_extensions() {
        let schemas = schemas();
        let containers = property(schemas, "io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let ports = property(schemas, "io.k8s.api.core.v1.Container", "ports");
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
        let service_ports = property(schemas, "io.k8s.api.core.v1.ServiceSpec", "ports");
        assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
        let finalizers = property(schemas, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers");
        assert_eq!(finalizers["x-kubernetes-list-type"], "set");
        let args = property(schemas, "io.k8s.api.core.v1.Container", "args");
        assert_eq!(args["x-kubernetes-list-type"], "atomic");
        assert!(args.get("x-kubernetes-patch-strategy").is_none());
        // The table's `addresses` key does not fit EndpointSlice's list of strings.
        let addresses = property(schemas, "io.k8s.api.discovery.v1.Endpoint", "addresses");
        assert!(addresses.get("x-kubernetes-patch-merge-key").is_none());
        let selector = property(schemas, "io.k8s.api.apps.v1.DeploymentSpec", "selector");
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    }

    #[test]
    fn closure_and_v3_form() {
        let schemas = schemas();
        let pods = schemas.closure([schemas.kind(crate::registry::find("", "v1", "pods").unwrap()).to_string()]);
        assert!(pods.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(pods.contains_key("io.k8s.api.core.v1.Container"));
        assert!(!pods.contains_key("io.k8s.api.apps.v1.Deployment"));
        let mut pod = pods["io.k8s.api.core.v1.Pod"].clone();
        assert_eq!(reference(&pod["properties"]["metadata"]), Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        v3_form(&mut pod);
        let metadata = &pod["properties"]["metadata"];
        assert!(metadata.get("$ref").is_none() && metadata["description"].is_string());
        assert_eq!(
            metadata["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
    }
}
