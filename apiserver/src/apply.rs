//! Server-side apply: PATCH with `application/apply-patch+yaml`, as kube-apiserver serves it.
//!
//! The body is the manager's whole intent for the object (YAML or JSON). It is merged into the
//! live object, or creates it when there is none, by `managed_fields::apply`; the result goes
//! through the ordinary write path (`writer.rs`: decoding, defaults, validation, the conditional
//! store write, retried when another write got in between) with the managed fields the apply
//! computed. An apply that changes nothing writes nothing.
//!
//! Two of kube's bridges from client-side apply, both only for the manager `kubectl`: conflicts
//! on fields the object's `last-applied-configuration` annotation set to their current values
//! are forced (the fields move from the client-side applier to `kubectl`), and an object that
//! has the annotation gets it rewritten to the applied configuration.

use serde_json::{json, Value};

use crate::error::{Cause, Error, ObjectRef, Result};
use crate::field_set::{path_text, FieldSet};
use crate::http::Params;
use crate::managed_fields::{self, Applied, ApplyError, Conflict, Managed, ManagerId, Operation, Scope};
use crate::object;
use crate::registry::ResourceInfo;
use crate::state::ApiState;
use crate::structured_merge;
use crate::writer::{self, Part, Tracking, WriteOptions, Written, CONFLICT_RETRIES_MAX};

/// kubectl's client-side apply annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The manager whose applies take over from client-side apply (kube's choice, not ours).
const KUBECTL: &str = "kubectl";

/// Applies `body` to the object `name` as `options.manager`.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    part: Part,
    body: &[u8],
    params: &Params,
    options: WriteOptions,
) -> Result<Written> {
    let force = match params.get("force") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => return Err(Error::BadRequest(format!("force: {other:?} is not a boolean"))),
    };
    let config = checked_config(info, namespace, name, decode(body)?)?;
    let id = ManagerId::new(&options.manager, Operation::Apply, "", managed_fields::subresource(part));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = match writer::current(state, info, namespace, name).await {
            Ok(current) => current,
            Err(Error::NotFound(_)) if part == Part::Main => {
                // kube creates what an apply names and does not find.
                let applied = run(info, Managed::default(), &json!({}), &config, &id, force, part)
                    .map_err(|error| apply_error(info, &config, error))?;
                let object = applied.object.unwrap_or_else(|| config.clone());
                let options = applied_options(info, &object, &options, applied.managed, &id);
                match writer::create(state, info, namespace, object, options).await {
                    Err(Error::AlreadyExists(_)) if attempt < CONFLICT_RETRIES_MAX => continue,
                    created => return created,
                }
            }
            Err(error) => return Err(error),
        };
        let live = writer::decode(&current.value, current.mod_revision)?;
        let wanted = object::resource_version(&config);
        if !wanted.is_empty() && wanted != current.mod_revision.to_string() {
            return Err(Error::modified(ObjectRef::new(info, name)));
        }
        let live_clean = managed_fields::without_managed_fields(&live);
        let managed = match object::metadata(&live).and_then(|meta| meta.get("managedFields")) {
            None | Some(Value::Null) => Managed::default(),
            Some(fields) => Managed::decode(fields)
                .map_err(|error| Error::Internal(format!("failed to decode managed fields: {error}")))?,
        };
        let managed =
            if managed.is_empty() { managed_fields::before_first_apply(info, &live_clean, part) } else { managed };
        let applied = match run(info, managed.clone(), &live_clean, &config, &id, force, part) {
            Ok(applied) => applied,
            Err(ApplyError::Conflicts(conflicts)) if options.manager == KUBECTL => {
                upgrade_from_client_side_apply(info, managed, &live_clean, &config, &id, part, conflicts)?
            }
            Err(error) => return Err(apply_error(info, &config, error)),
        };
        let mut object = applied.object.unwrap_or_else(|| live_clean.clone());
        if options.manager == KUBECTL && has_last_applied(&live) {
            set_last_applied(&mut object, &config);
        }
        let options = applied_options(info, &object, &options, applied.managed, &id);
        match writer::replace(state, info, namespace, &current, object, part, options).await {
            Err(Error::Conflict { .. }) if attempt < CONFLICT_RETRIES_MAX => continue,
            written => return written,
        }
    }
}

/// The configuration as YAML or JSON (JSON is YAML; kubectl and client libraries send JSON).
fn decode(body: &[u8]) -> Result<Value> {
    let json_like = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
    let decoded: Result<Value, String> = if json_like {
        serde_json::from_slice(body).map_err(|error| error.to_string())
    } else {
        serde_saphyr::from_slice(body).map_err(|error| error.to_string())
    };
    match decoded {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Error::BadRequest("error decoding YAML: the applied configuration must be an object".into())),
        Err(error) => Err(Error::BadRequest(format!("error decoding YAML: {error}"))),
    }
}

/// kube's checks of an applied configuration: its type, no managed fields, its name and
/// namespace those of the URL (filled in when left out).
fn checked_config(info: &ResourceInfo, namespace: Option<&str>, name: &str, mut config: Value) -> Result<Value> {
    let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != info.api_version() || kind != info.kind {
        let group_version = if api_version.contains('/') { api_version.to_string() } else { format!("/{api_version}") };
        return Err(Error::BadRequest(format!("invalid object type: {group_version}, Kind={kind}")));
    }
    if object::metadata(&config).and_then(|meta| meta.get("managedFields")).is_some_and(|fields| !fields.is_null()) {
        return Err(Error::BadRequest("metadata.managedFields must be nil".into()));
    }
    let config_name = object::name(&config).to_string();
    if !config_name.is_empty() && config_name != name {
        return Err(Error::BadRequest(format!(
            "the name of the object ({config_name}) does not match the name on the URL ({name})"
        )));
    }
    let config_namespace = object::namespace(&config).to_string();
    if info.namespaced && !config_namespace.is_empty() && Some(config_namespace.as_str()) != namespace {
        return Err(Error::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    let meta = object::metadata_mut(&mut config);
    meta.insert("name".into(), json!(name));
    if let Some(namespace) = namespace.filter(|_| info.namespaced) {
        meta.insert("namespace".into(), json!(namespace));
    }
    Ok(config)
}

fn run(
    info: &ResourceInfo,
    managed: Managed,
    live: &Value,
    config: &Value,
    id: &ManagerId,
    force: bool,
    part: Part,
) -> std::result::Result<Applied, ApplyError> {
    managed_fields::apply(managed, live, config, id, &info.api_version(), force, Scope::of(info, part))
}

fn apply_error(info: &ResourceInfo, config: &Value, error: ApplyError) -> Error {
    match error {
        ApplyError::Invalid(message) => Error::BadRequest(format!(
            "failed to create typed patch object ({}/{}; {}): {message}",
            object::namespace(config),
            object::name(config),
            info.kind
        )),
        ApplyError::Conflicts(conflicts) => conflict_error(&conflicts),
    }
}

/// kube's `NewConflictError`: 409 Conflict, one `FieldManagerConflict` cause per field.
fn conflict_error(conflicts: &[Conflict]) -> Error {
    let causes = conflicts
        .iter()
        .map(|conflict| Cause {
            reason: "FieldManagerConflict",
            field: path_text(&conflict.path),
            message: format!("conflict with {}", conflict.manager.describe()),
        })
        .collect();
    Error::ApplyConflict { message: managed_fields::conflict_message(conflicts), causes }
}

/// kube's `lastAppliedManager`: `kubectl` applying over client-side apply conflicts with the
/// client-side applier's fields; those the last-applied annotation set to what the object still
/// holds are taken over, any other conflict stands.
fn upgrade_from_client_side_apply(
    info: &ResourceInfo,
    managed: Managed,
    live: &Value,
    config: &Value,
    id: &ManagerId,
    part: Part,
    conflicts: Vec<Conflict>,
) -> Result<Applied> {
    let Some(allowed) = allowed_by_last_applied(info, live) else { return Err(conflict_error(&conflicts)) };
    let remaining: Vec<Conflict> = conflicts.into_iter().filter(|conflict| !allowed.has(&conflict.path)).collect();
    if !remaining.is_empty() {
        return Err(conflict_error(&remaining));
    }
    run(info, managed, live, config, id, true, part).map_err(|error| apply_error(info, config, error))
}

/// The fields of the last-applied annotation that the live object still holds as it says.
fn allowed_by_last_applied(info: &ResourceInfo, live: &Value) -> Option<FieldSet> {
    let annotation = object::string_map(live, "annotations").remove(LAST_APPLIED).filter(|text| !text.is_empty())?;
    let last_applied: Value = serde_json::from_str(&annotation).ok()?;
    if last_applied.get("apiVersion").and_then(Value::as_str) != Some(info.api_version().as_str()) {
        return None;
    }
    let set = structured_merge::to_field_set(&last_applied);
    let comparison = structured_merge::compare(&last_applied, live);
    Some(set.difference(&comparison.modified).difference(&comparison.added).difference(&comparison.removed))
}

fn has_last_applied(live: &Value) -> bool {
    object::string_map(live, "annotations").get(LAST_APPLIED).is_some_and(|text| !text.is_empty())
}

/// kube's `lastAppliedUpdater`: the annotation becomes the applied configuration.
fn set_last_applied(object: &mut Value, config: &Value) {
    let mut recorded = config.clone();
    if let Some(annotations) =
        recorded.get_mut("metadata").and_then(|meta| meta.get_mut("annotations")).and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let text = format!("{}\n", serde_json::to_string(&recorded).expect("a JSON value encodes"));
    let meta = object::metadata_mut(object);
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta.insert("annotations".into(), json!({}));
    }
    meta["annotations"][LAST_APPLIED] = json!(text);
}

/// The write options that install the apply's managed fields. Fields of the configuration that
/// the type does not have (dropped by decoding, or refused under `fieldValidation=Strict`) are
/// not owned.
fn applied_options(
    info: &ResourceInfo,
    object: &Value,
    options: &WriteOptions,
    mut managed: Managed,
    id: &ManagerId,
) -> WriteOptions {
    if let Ok(normalized) = (info.normalize)(object) {
        let known = structured_merge::to_field_set(normalized.as_ref().unwrap_or(object));
        if let Some(entry) = managed.entries.get_mut(id) {
            entry.set = entry.set.intersection(&known);
        }
        managed.entries.retain(|_, entry| !entry.set.is_empty());
    }
    WriteOptions { tracking: Tracking::Applied(managed), ..options.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn configmaps() -> &'static ResourceInfo {
        registry::find("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn yaml_and_json_bodies() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
        let decoded = decode(yaml).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})
        );
        assert_eq!(decode(br#" {"apiVersion": "v1"}"#).unwrap(), json!({"apiVersion": "v1"}));
        assert!(matches!(decode(b"- a\n- b\n"), Err(Error::BadRequest(_))));
        assert!(matches!(decode(b"{not json"), Err(Error::BadRequest(_))));
    }

    #[test]
    fn configurations_are_checked_as_kube_does() {
        let info = configmaps();
        let good = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let filled = checked_config(info, Some("default"), "c", good).unwrap();
        assert_eq!(filled["metadata"], json!({"name": "c", "namespace": "default"}));
        let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret"});
        let error = checked_config(info, Some("default"), "c", wrong_kind).unwrap_err();
        assert_eq!(error.to_string(), "invalid object type: /v1, Kind=Secret");
        let managed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"managedFields": []}});
        let error = checked_config(info, Some("default"), "c", managed).unwrap_err();
        assert_eq!(error.to_string(), "metadata.managedFields must be nil");
        let renamed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}});
        assert!(checked_config(info, Some("default"), "c", renamed).is_err());
    }

    #[test]
    fn kubectl_takes_over_what_client_side_apply_set() {
        let info = configmaps();
        let last = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
            "data": {"a": "1", "b": "2"}});
        let mut live = last.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: serde_json::to_string(&last).unwrap()});
        live["data"]["b"] = json!("changed by someone");
        let allowed = allowed_by_last_applied(info, &live).unwrap();
        let data =
            |key: &str| vec![crate::field_set::PathElement::field("data"), crate::field_set::PathElement::field(key)];
        assert!(allowed.has(&data("a")));
        assert!(!allowed.has(&data("b")), "no longer as last applied");

        let mut object = live.clone();
        set_last_applied(&mut object, &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "3"}}));
        let annotation = object["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        assert_eq!(annotation, "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"3\"},\"kind\":\"ConfigMap\"}\n");
    }
}
