//! The write path shared by create, update, patch, delete and the subresources: decoding and
//! checking the object, kube-apiserver's metadata rules, and the conditional store write that
//! gives optimistic concurrency (a write names the revision it read; another one in between is
//! a 409 Conflict).

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::cache_handoff::Offer;
use crate::error::{Cause, Error, ObjectRef, Result};
use crate::http::Params;
use crate::managed_fields::{self, Managed};
use crate::registry::ResourceInfo;
use crate::state::{storage_error, ApiState};
use crate::storage::Condition;
use crate::{defaults, keys, namespaces, object, service_allocation, validation};

/// Attempts of a read-modify-write (patch, scale, finalizing delete) that lost a race.
pub const CONFLICT_RETRIES_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Which managed fields a write records (`managed_fields.rs`).
#[derive(Debug, Clone)]
pub enum Tracking {
    /// An Update entry for the write's manager: what it changed.
    Update,
    /// The managed fields a server-side apply computed.
    Applied(Managed),
}

/// The write-related query parameters.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The field manager the write's managedFields entry names.
    pub manager: String,
    pub tracking: Tracking,
}

impl WriteOptions {
    /// A write keel makes itself, as `manager`.
    pub fn internal(manager: &str) -> WriteOptions {
        WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Strict,
            manager: manager.to_string(),
            tracking: Tracking::Update,
        }
    }

    /// The options of a client's write: its query parameters, and its manager (`fieldManager`,
    /// else the User-Agent's program name, as kube-apiserver defaults it).
    pub fn from_request(params: &Params, headers: &HeaderMap, method: &Method) -> Result<WriteOptions> {
        let mut options = WriteOptions::from_params(params)?;
        if let Some(manager) = params.get("fieldManager") {
            if let Some(problem) = managed_fields::field_manager_problem(manager) {
                let kind = match *method {
                    Method::POST => "CreateOptions",
                    Method::PUT => "UpdateOptions",
                    _ => "PatchOptions",
                };
                let reason = if problem.starts_with("Too long") { "FieldValueTooLong" } else { "FieldValueInvalid" };
                let cause = Cause { reason, field: "fieldManager".into(), message: problem };
                let object = ObjectRef { group: "meta.k8s.io", plural: "", kind, name: String::new() };
                return Err(Error::Invalid { object, causes: vec![cause] });
            }
        }
        let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|value| value.to_str().ok());
        options.manager = managed_fields::manager_name(params.get("fieldManager"), user_agent);
        Ok(options)
    }

    pub fn from_params(params: &Params) -> Result<WriteOptions> {
        let dry_run = match params.get("dryRun") {
            None => false,
            Some("All") => true,
            Some(other) => return Err(Error::BadRequest(format!("unsupported dryRun value {other:?}: only All"))),
        };
        let field_validation = match params.get("fieldValidation") {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
                )))
            }
        };
        let manager = params.get("fieldManager").unwrap_or("").to_string();
        Ok(WriteOptions { dry_run, field_validation, manager, tracking: Tracking::Update })
    }
}

/// A successful write: the code, the object as stored (or the Status of a delete), and
/// warnings for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    pub code: StatusCode,
    pub body: Value,
    pub warnings: Vec<String>,
    /// `body` already encoded as JSON, when the write has it at hand (a create or an update:
    /// the bytes it stored, with the resourceVersion spliced in).
    pub json: Option<Bytes>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: `.status` is kept where a status subresource exists.
    Main,
    /// `/status`: only `.status` changes.
    Status,
    /// `/scale`: as the main resource (the Scale is applied to it first); managed fields name
    /// the subresource.
    Scale,
    /// A namespace's `/finalize`: as the main resource, but `spec.finalizers` changes too (the
    /// main resource keeps them) and `.status` does not.
    Finalize,
}

/// The stored form: the object without its resourceVersion (the store revision is that).
pub fn encode(value: &Value) -> Bytes {
    Stored::encode(value).bytes
}

/// An object in its stored form (compact JSON, keys in order, as `serde_json` encodes a
/// `Value`, without `metadata.resourceVersion` and `selfLink`), and where in it the
/// resourceVersion goes once the store has given it one: a write's answer is these bytes with it
/// spliced in, not the object encoded again.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Bytes,
    /// None when the object has no metadata object.
    resource_version_at: Option<SplicePoint>,
}

#[derive(Debug, Clone, Copy)]
struct SplicePoint {
    at: usize,
    /// Whether a metadata entry comes before `at` (else `at` is just after the `{`).
    after_entry: bool,
}

impl Stored {
    pub fn encode(value: &Value) -> Stored {
        let mut out = Vec::with_capacity(1024);
        let mut resource_version_at = None;
        match value {
            Value::Object(root) => {
                out.push(b'{');
                for (index, (key, value)) in root.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_json(&mut out, key);
                    out.push(b':');
                    match value {
                        Value::Object(meta) if key == "metadata" => {
                            resource_version_at = Some(write_metadata(&mut out, meta));
                        }
                        _ => write_json(&mut out, value),
                    }
                }
                out.push(b'}');
            }
            _ => write_json(&mut out, value),
        }
        Stored { bytes: Bytes::from(out), resource_version_at }
    }

    /// The object as the API shows it: with `metadata.resourceVersion` set to `revision`.
    pub fn with_resource_version(&self, revision: i64) -> Option<Bytes> {
        let SplicePoint { at, after_entry } = self.resource_version_at?;
        Some(Bytes::from(crate::raw_json::insert_resource_version(&self.bytes, at, after_entry, revision)))
    }
}

/// Writes the metadata object without the fields never stored; returns where resourceVersion
/// goes: before the first field that sorts after it.
fn write_metadata(out: &mut Vec<u8>, meta: &serde_json::Map<String, Value>) -> SplicePoint {
    const RESOURCE_VERSION: &str = "resourceVersion";
    out.push(b'{');
    let mut splice = None;
    let mut first = true;
    for (field, value) in meta {
        if matches!(field.as_str(), "resourceVersion" | "selfLink") {
            continue;
        }
        if splice.is_none() && field.as_str() > RESOURCE_VERSION {
            splice = Some(SplicePoint { at: out.len(), after_entry: !first });
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json(out, field);
        out.push(b':');
        write_json(out, value);
    }
    let splice = splice.unwrap_or(SplicePoint { at: out.len(), after_entry: !first });
    out.push(b'}');
    splice
}

/// A key or a value, as `serde_json`'s compact encoder writes it.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("JSON values and strings encode");
}

/// The stored form of an object of `info`: [`encode`], after converting a resource stored in
/// another's form (`ResourceInfo::conversion`).
pub fn encode_for(info: &ResourceInfo, value: &Value) -> Bytes {
    match info.conversion {
        Some(conversion) => encode(&(conversion.to_storage)(value.clone())),
        None => encode(value),
    }
}

/// What a write of `value` (`served`: its encoding) stores, and, when that is the served form
/// too (no conversion), the [`Stored`] its answer is spliced from.
fn stored_form(info: &ResourceInfo, value: &Value, served: Stored) -> (Bytes, Option<Stored>) {
    match info.conversion {
        Some(_) => (encode_for(info, value), None),
        None => (served.bytes.clone(), Some(served)),
    }
}

/// Tells the resource's watch cache what is about to be written at `key`, so it need not scan the
/// bytes again (`cache_handoff.rs`); nothing when the stored form is not the served one.
fn offer_to_cache<'a>(
    state: &'a ApiState,
    info: &ResourceInfo,
    key: &Bytes,
    value: &Value,
    stored: Option<&Stored>,
) -> Option<Offer<'a>> {
    stored.map(|stored| state.cache(info).handoff.offer(info, key, value, stored))
}

/// Stored bytes of `info` in the served form (still without resourceVersion).
pub fn served_bytes(info: &ResourceInfo, stored: Bytes) -> Result<Bytes> {
    let Some(conversion) = info.conversion else { return Ok(stored) };
    let value: Value = serde_json::from_slice(&stored)
        .map_err(|error| Error::Internal(format!("a stored object is not JSON: {error}")))?;
    Ok(Bytes::from(serde_json::to_vec(&(conversion.from_storage)(value)).expect("a JSON value encodes")))
}

/// A stored value as the API shows it.
pub fn decode(stored: &[u8], revision: i64) -> Result<Value> {
    let mut value: Value = serde_json::from_slice(stored)
        .map_err(|error| Error::Internal(format!("a stored object is not JSON: {error}")))?;
    object::set_resource_version(&mut value, revision);
    Ok(value)
}

/// Sets apiVersion and kind, refusing a body of another kind.
fn check_kind(info: &ResourceInfo, value: &mut Value) -> Result<()> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != info.kind) || (!api_version.is_empty() && api_version != info.api_version()) {
        return Err(Error::BadRequest(format!(
            "the API version in the data ({api_version}) and the kind ({kind}) do not match the resource {}/{} ({})",
            info.api_version(),
            info.plural,
            info.kind
        )));
    }
    value["apiVersion"] = json!(info.api_version());
    value["kind"] = json!(info.kind);
    Ok(())
}

/// Decodes through the k8s-openapi type; under Strict, unknown fields are an error.
fn normalize(info: &ResourceInfo, value: Value, options: &WriteOptions, warnings: &mut Vec<String>) -> Result<Value> {
    let normalized = (info.normalize)(&value)
        .map_err(|error| Error::BadRequest(format!("the object could not be decoded as a {}: {error}", info.kind)))?;
    // Already normal: nothing was dropped, so no field is unknown.
    let Some(normalized) = normalized else { return Ok(value) };
    if options.field_validation != FieldValidation::Ignore {
        let unknown = validation::unknown_fields(&value, &normalized);
        if !unknown.is_empty() {
            let messages: Vec<String> = unknown.iter().map(|field| format!("unknown field {field:?}")).collect();
            if options.field_validation == FieldValidation::Strict {
                return Err(Error::BadRequest(format!("strict decoding error: {}", messages.join(", "))));
            }
            warnings.extend(messages);
        }
    }
    Ok(normalized)
}

fn check_namespace(info: &ResourceInfo, value: &mut Value, namespace: Option<&str>) -> Result<()> {
    let body_namespace = object::namespace(value).to_string();
    let meta = object::metadata_mut(value);
    if !info.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let namespace =
        namespace.ok_or_else(|| Error::BadRequest("a namespaced object needs a namespace in its path".into()))?;
    if !body_namespace.is_empty() && body_namespace != namespace {
        return Err(Error::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    meta.insert("namespace".into(), json!(namespace));
    Ok(())
}

/// POST: a new object.
pub async fn create(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    mut value: Value,
    options: WriteOptions,
) -> Result<Written> {
    let mut warnings = Vec::new();
    check_kind(info, &mut value)?;
    check_namespace(info, &mut value, namespace)?;
    let meta = object::metadata_mut(&mut value);
    if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|version| !version.is_empty()) {
        return Err(Error::BadRequest("resourceVersion should not be set on objects to be created".into()));
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let requested_name = name.clone();
    let generate_name = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() && !generate_name.is_empty() {
        meta.insert("name".into(), json!(object::generated_name(&generate_name)));
    }
    meta.insert("uid".into(), json!(object::new_uid()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    if info.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    let mut value = normalize(info, value, &options, &mut warnings)?;
    initial_status(info, &mut value);
    if info.kind == "Job" {
        defaults::job_selector(&mut value);
    }
    defaults::apply(info, &mut value);
    record_managed_fields(info, None, &mut value, Part::Main, &options);
    let allocation = service_allocation::prepare(state, info, None, &mut value).await?;
    validation::validate(info, &value, None)?;
    let name = object::name(&value).to_string();
    if let Some(namespace) = namespace.filter(|_| info.namespaced) {
        namespaces::admit_create(state, namespace, info, &requested_name).await?;
    }
    let key = keys::object_key(info, namespace, &name);
    if options.dry_run {
        return Ok(Written { code: StatusCode::CREATED, body: value, warnings, json: None });
    }
    let (revision, stored) = match allocation {
        Some(plan) => (plan.commit(state, info, key.clone(), Condition::Absent(key), &mut value, encode).await?, None),
        None => {
            let (bytes, stored) = stored_form(info, &value, Stored::encode(&value));
            let offer = offer_to_cache(state, info, &key, &value, stored.as_ref());
            let revision = state
                .storage
                .create(key, bytes)
                .await
                .map_err(|error| storage_error(ObjectRef::new(info, &name), error))?;
            if let Some(offer) = offer {
                offer.written();
            }
            (revision, stored)
        }
    };
    object::set_resource_version(&mut value, revision);
    // The answer is what was stored plus its resourceVersion: spliced in, not encoded again.
    let json = stored.and_then(|stored| stored.with_resource_version(revision));
    Ok(Written { code: StatusCode::CREATED, body: value, warnings, json })
}

/// What a create starts from: kube-apiserver's strategies reset status on create.
fn initial_status(info: &ResourceInfo, value: &mut Value) {
    match info.kind {
        "Pod" => {
            let qos = "BestEffort";
            value["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Namespace" => {
            value["status"] = json!({"phase": "Active"});
            namespaces::add_kubernetes_finalizer(value);
        }
        "Service" => value["status"] = json!({"loadBalancer": {}}),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            if let Some(root) = value.as_object_mut() {
                root.remove("status");
            }
        }
        _ => {}
    }
}

/// The current stored version of an object, or NotFound.
pub async fn current(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<store::KeyValue> {
    let key = keys::object_key(info, namespace, name);
    let mut current = state
        .storage
        .get(key)
        .await
        .map_err(|error| storage_error(ObjectRef::new(info, name), error))?
        .ok_or_else(|| Error::NotFound(ObjectRef::new(info, name)))?;
    current.value = served_bytes(info, current.value)?;
    Ok(current)
}

/// PUT: replaces an object. A resourceVersion in the body must be the current one.
pub async fn update(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    mut value: Value,
    part: Part,
    options: WriteOptions,
) -> Result<Written> {
    check_kind(info, &mut value)?;
    check_namespace(info, &mut value, namespace)?;
    let body_name = object::name(&value);
    if !body_name.is_empty() && body_name != name {
        return Err(Error::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    object::metadata_mut(&mut value).insert("name".into(), json!(name));
    let current = current(state, info, namespace, name).await?;
    let wanted = object::resource_version(&value).to_string();
    if !wanted.is_empty() && wanted != current.mod_revision.to_string() {
        return Err(Error::modified(ObjectRef::new(info, name)));
    }
    replace(state, info, namespace, &current, value, part, options).await
}

/// Writes `value` over `current` (read at `current.mod_revision`): metadata rules, defaults,
/// validation, then a write conditional on that revision. Also the end of patch and scale.
pub async fn replace(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    current: &store::KeyValue,
    value: Value,
    part: Part,
    options: WriteOptions,
) -> Result<Written> {
    let mut warnings = Vec::new();
    let old = decode(&current.value, current.mod_revision)?;
    let name = object::name(&old).to_string();
    let mut value = normalize(info, value, &options, &mut warnings)?;
    keep_server_fields(info, &old, &mut value, part);
    defaults::apply(info, &mut value);
    service_allocation::before_update(info, &old, &mut value);
    record_managed_fields(info, Some(&old), &mut value, part, &options);
    let allocation = service_allocation::prepare(state, info, Some(&old), &mut value).await?;
    validation::validate(info, &value, Some(&old))?;
    let key = keys::object_key(info, namespace, &name);
    let served = Stored::encode(&value);
    let unchanged = served.bytes == encode(&old);
    if unchanged || options.dry_run {
        object::set_resource_version(&mut value, current.mod_revision);
        return Ok(Written { code: StatusCode::OK, body: value, warnings, json: None });
    }
    let object_ref = ObjectRef::new(info, &name);
    if should_delete_during_update(info, &old, &value) {
        let revision = service_allocation::delete(state, info, key, &old, current.mod_revision)
            .await
            .map_err(|error| storage_error(object_ref, error))?;
        object::set_resource_version(&mut value, revision);
        return Ok(Written { code: StatusCode::OK, body: value, warnings, json: None });
    }
    let (revision, stored) = match allocation {
        Some(plan) => {
            let condition = Condition::ModRevision(key.clone(), current.mod_revision);
            (plan.commit(state, info, key, condition, &mut value, encode).await?, None)
        }
        None => {
            let (bytes, stored) = stored_form(info, &value, served);
            let offer = offer_to_cache(state, info, &key, &value, stored.as_ref());
            let revision = state
                .storage
                .update(key, bytes, current.mod_revision)
                .await
                .map_err(|error| storage_error(object_ref, error))?;
            if let Some(offer) = offer {
                offer.written();
            }
            (revision, stored)
        }
    };
    object::set_resource_version(&mut value, revision);
    // As for a create: the stored bytes with the resourceVersion spliced in.
    let json = stored.and_then(|stored| stored.with_resource_version(revision));
    Ok(Written { code: StatusCode::OK, body: value, warnings, json })
}

/// Sets `metadata.managedFields` of the object to be written: an Update entry for the write's
/// manager, or what an apply computed.
fn record_managed_fields(
    info: &ResourceInfo,
    old: Option<&Value>,
    value: &mut Value,
    part: Part,
    options: &WriteOptions,
) {
    match &options.tracking {
        Tracking::Update => managed_fields::record_update(info, old, value, part, &options.manager),
        Tracking::Applied(managed) => managed_fields::install(value, managed),
    }
}

/// kube-apiserver's `ShouldDeleteDuringUpdate`: the update that removes the last finalizer of an
/// object being deleted deletes it, unless a graceful deletion is still running (a pod with a
/// grace period waits for its node's final delete); a namespace also waits for `spec.finalizers`.
fn should_delete_during_update(info: &ResourceInfo, old: &Value, new: &Value) -> bool {
    let Some(old_meta) = object::metadata(old) else { return false };
    if !object::finalizers(new).is_empty() || !old_meta.contains_key("deletionTimestamp") {
        return false;
    }
    let grace_over = old_meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).is_none_or(|grace| grace == 0);
    let namespace_finalized = info.kind != "Namespace" || namespaces::spec_finalizers(new).is_empty();
    grace_over && namespace_finalized
}

/// What a client cannot change: identity, creation, deletion state; `.status` through the main
/// resource or anything but `.status` through `/status`; and generation, which counts changes
/// of `.spec`.
fn keep_server_fields(info: &ResourceInfo, old: &Value, value: &mut Value, part: Part) {
    if part == Part::Status {
        let status = value.get("status").cloned();
        let mut kept = old.clone();
        match status {
            Some(status) => kept["status"] = status,
            None => {
                if let Some(root) = kept.as_object_mut() {
                    root.remove("status");
                }
            }
        }
        *value = kept;
        return;
    }
    let old_meta = object::metadata(old).cloned().unwrap_or_default();
    let meta = object::metadata_mut(value);
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old_meta.get(field) {
            Some(kept) => meta.insert(field.to_string(), kept.clone()),
            None => meta.remove(field),
        };
    }
    if info.kind == "Namespace" && part == Part::Main {
        // Only `/finalize` changes a namespace's `spec.finalizers`.
        match old["spec"].get("finalizers") {
            Some(kept) => {
                if !value["spec"].is_object() {
                    value["spec"] = json!({});
                }
                value["spec"]["finalizers"] = kept.clone();
            }
            None => {
                if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if info.status_subresource {
        match old.get("status") {
            Some(status) => value["status"] = status.clone(),
            None => {
                if let Some(root) = value.as_object_mut() {
                    root.remove("status");
                }
            }
        }
    }
    if info.tracks_generation && old.get("spec") != value.get("spec") {
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        object::metadata_mut(value).insert("generation".into(), json!(generation));
    }
}

/// Reads the object, changes it with `change`, and writes it back conditionally; retries when
/// another write got in between, unless `change` pinned a resourceVersion.
pub async fn read_modify_write(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    part: Part,
    options: WriteOptions,
    change: &mut (dyn FnMut(Value) -> Result<Value> + Send),
) -> Result<Written> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = current(state, info, namespace, name).await?;
        let old = decode(&current.value, current.mod_revision)?;
        let mut changed = change(old)?;
        check_kind(info, &mut changed)?;
        check_namespace(info, &mut changed, namespace)?;
        if object::name(&changed) != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&changed)
            )));
        }
        let wanted = object::resource_version(&changed).to_string();
        if !wanted.is_empty() && wanted != current.mod_revision.to_string() {
            return Err(Error::modified(ObjectRef::new(info, name)));
        }
        match replace(state, info, namespace, &current, changed, part, options.clone()).await {
            Err(Error::Conflict { .. }) if attempt < CONFLICT_RETRIES_MAX => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_leaves_out_resource_version_and_self_link_only() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "a", "resourceVersion": "7", "selfLink": "/x", "uid": "u", "labels": {"resourceVersion": "kept"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        let stored: Value = serde_json::from_slice(&encode(&object)).unwrap();
        let mut expected = object.clone();
        let meta = expected["metadata"].as_object_mut().unwrap();
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        assert_eq!(stored, expected);
        // Compact, keys in order: the same bytes as encoding the trimmed value.
        assert_eq!(encode(&object), Bytes::from(serde_json::to_vec(&expected).unwrap()));
        assert_eq!(encode(&json!("not an object")), Bytes::from_static(b"\"not an object\""));
    }

    #[test]
    fn the_resource_version_is_spliced_where_encoding_the_object_puts_it() {
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "a", "uid": "u", "resourceVersion": "3"}, "spec": {"x": "é\"\n"}}),
            json!({"kind": "Pod", "metadata": {"uid": "u"}}),
            json!({"kind": "Pod", "metadata": {"name": "a", "namespace": "n"}}),
            json!({"kind": "Pod", "metadata": {"selfLink": "/x"}, "z": 1}),
            json!({"metadata": {}}),
        ];
        for object in objects {
            let stored = Stored::encode(&object);
            assert_eq!(stored.bytes, encode(&object));
            let mut expected = object.clone();
            expected["metadata"].as_object_mut().unwrap().remove("selfLink");
            expected["metadata"]["resourceVersion"] = json!("42");
            let answer = stored.with_resource_version(42).unwrap();
            assert_eq!(std::str::from_utf8(&answer).unwrap(), serde_json::to_string(&expected).unwrap(), "{object}");
        }
        assert!(Stored::encode(&json!({"kind": "Pod"})).with_resource_version(1).is_none());
        assert!(Stored::encode(&json!({"metadata": "not an object"})).with_resource_version(1).is_none());
    }
}
