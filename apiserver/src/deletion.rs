//! DELETE, as kube-apiserver's generic registry store does it (`Store.Delete`,
//! `rest.BeforeDelete`, `updateForGracefulDeletionAndFinalizers`): graceful deletion, the garbage
//! collector's finalizers, and a namespace's termination.
//!
//! A DELETE ends in one of three ways ([`Plan`]):
//! - **Remove**: the object goes now (no finalizers, and no grace period left);
//! - **Mark**: the object stays, marked for deletion: `deletionTimestamp`,
//!   `deletionGracePeriodSeconds`, and the finalizers the propagation policy asks for (`orphan`,
//!   `foregroundDeletion`). Whoever holds a finalizer removes it, and the update that removes the
//!   last one deletes the object (`writer::replace`);
//! - **Pending**: nothing changes; a graceful deletion is already under way, or a terminating
//!   namespace still waits for its `spec.finalizers`.
//!
//! Worked example, a bound pod (`spec.nodeName` set, `terminationGracePeriodSeconds: 30`):
//! 1. `DELETE` (no options): graceful, period 30 → Mark with `deletionTimestamp` = now + 30 s and
//!    `deletionGracePeriodSeconds: 30`. The node's agent stops the containers, then deletes again
//!    with `gracePeriodSeconds=0`.
//! 2. `DELETE` again without a shorter period: Pending, the answer is the pod as it is.
//! 3. `DELETE gracePeriodSeconds=0` (the agent, or `kubectl delete --force --grace-period=0`):
//!    the period shrinks to 0 → Remove (Mark instead, with grace 0, if finalizers remain).
//!
//! A pod not bound to a node (no `spec.nodeName`) has nothing to stop: its period is 0 and it is
//! removed at once, as are pods that already succeeded or failed.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::delete_options::DeleteOptions;
use crate::error::{Error, ObjectRef, Result};
use crate::registry::ResourceInfo;
use crate::state::{storage_error, ApiState};
use crate::storage::StorageError;
use crate::writer::{self, Written, CONFLICT_RETRIES_MAX};
use crate::{keys, namespaces, object, service_allocation, status};

/// kube-apiserver's warning for a batch/v1 job deleted without a policy (its pods stay).
const JOB_ORPHAN_WARNING: &str = "child pods are preserved by default when jobs are deleted; set \
propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning";

/// What a DELETE does to the object (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Pending,
    Mark,
    Remove,
}

/// `rest.BeforeDelete`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grace {
    /// The type has no graceful deletion, or the object's grace period is over.
    NotGraceful,
    /// A graceful deletion is under way and the options do not shorten it.
    Pending,
    /// A graceful deletion with this period starts or is shortened (the object was changed).
    Graceful { seconds: i64 },
}

fn has_deletion_timestamp(value: &Value) -> bool {
    object::metadata(value).is_some_and(|meta| meta.contains_key("deletionTimestamp"))
}

/// `rest.BeforeDelete` with the pod strategy's `CheckGracefulDelete`: sets `deletionTimestamp`
/// and `deletionGracePeriodSeconds` when a graceful deletion starts or shortens.
fn before_delete(info: &ResourceInfo, value: &mut Value, options: &DeleteOptions, now: jiff::Timestamp) -> Grace {
    let meta = object::metadata(value).cloned().unwrap_or_default();
    if let Some(deletion) = meta.get("deletionTimestamp").and_then(Value::as_str) {
        // Negative periods written by older servers count as one second.
        let current = match meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64) {
            None | Some(0) => return Grace::NotGraceful,
            Some(seconds) => seconds.max(1),
        };
        return match options.grace_period_seconds {
            Some(wanted) if wanted < current => {
                // Only a shorter period may be asked for: the deadline moves closer by the difference.
                let deadline = object::parse_time(deletion).unwrap_or(now);
                let shortened = object::rfc3339_after(deadline, wanted - current);
                let meta = object::metadata_mut(value);
                meta.insert("deletionTimestamp".into(), json!(shortened));
                meta.insert("deletionGracePeriodSeconds".into(), json!(wanted));
                Grace::Graceful { seconds: wanted }
            }
            _ => Grace::Pending,
        };
    }
    if info.kind != "Pod" || !info.group.is_empty() {
        return Grace::NotGraceful;
    }
    let mut seconds =
        options.grace_period_seconds.or_else(|| value["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(0);
    // Nothing runs a pod that no node was chosen for, or one that has finished.
    if value["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        seconds = 0;
    }
    if matches!(value["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        seconds = 0;
    }
    if seconds < 0 {
        seconds = 1;
    }
    let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
    let meta = object::metadata_mut(value);
    meta.insert("deletionTimestamp".into(), json!(object::rfc3339_after(now, seconds)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(seconds));
    if generation > 0 {
        meta.insert("generation".into(), json!(generation + 1));
    }
    Grace::Graceful { seconds }
}

/// `markAsDeleting`: an object that waits for finalizers without a grace period.
fn mark_as_deleting(value: &mut Value, now: jiff::Timestamp) {
    let meta = object::metadata_mut(value);
    let deletion = meta.get("deletionTimestamp").and_then(Value::as_str).and_then(object::parse_time);
    if deletion.is_none() {
        if let Some(generation) = meta.get("generation").and_then(Value::as_i64).filter(|generation| *generation > 0) {
            meta.insert("generation".into(), json!(generation + 1));
        }
    }
    if deletion.is_none_or(|deletion| deletion > now) {
        meta.insert("deletionTimestamp".into(), json!(object::rfc3339_after(now, 0)));
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
}

fn set_finalizers(value: &mut Value, finalizers: Vec<String>) {
    let meta = object::metadata_mut(value);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
}

/// Decides what a DELETE with `options` does to `value`, changing it as a Mark would store it.
fn plan(info: &ResourceInfo, value: &mut Value, options: &DeleteOptions, now: jiff::Timestamp) -> Plan {
    if info.kind == "Namespace" && info.group.is_empty() {
        if !has_deletion_timestamp(value) {
            namespaces::start_termination(value, options);
            return Plan::Mark;
        }
        if !namespaces::spec_finalizers(value).is_empty() {
            return Plan::Pending;
        }
    }
    let grace = before_delete(info, value, options, now);
    if grace == Grace::Pending {
        return Plan::Pending;
    }
    if let Some(finalizers) = options.gc_finalizers(&object::finalizers(value), info.orphans_dependents_by_default()) {
        set_finalizers(value, finalizers);
    }
    let pending_finalizers = !object::finalizers(value).is_empty();
    match grace {
        Grace::NotGraceful if pending_finalizers => {
            mark_as_deleting(value, now);
            Plan::Mark
        }
        Grace::NotGraceful => Plan::Remove,
        Grace::Graceful { seconds } if pending_finalizers || seconds > 0 => Plan::Mark,
        Grace::Graceful { .. } => Plan::Remove,
        Grace::Pending => unreachable!("returned above"),
    }
}

fn check_preconditions(object_ref: &ObjectRef, value: &Value, revision: i64, options: &DeleteOptions) -> Result<()> {
    let uid = object::meta_str(value, "uid");
    if let Some(wanted) = options.precondition_uid.as_deref().filter(|wanted| *wanted != uid) {
        return Err(Error::Conflict {
            object: object_ref.clone(),
            detail: format!("Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}"),
        });
    }
    if let Some(wanted) =
        options.precondition_resource_version.as_deref().filter(|wanted| *wanted != revision.to_string())
    {
        return Err(Error::Conflict {
            object: object_ref.clone(),
            detail: format!(
                "Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in object meta: {revision}"
            ),
        });
    }
    Ok(())
}

/// DELETE of one object.
pub async fn delete(
    state: &ApiState,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<Written> {
    let object_ref = ObjectRef::new(info, name);
    if info.kind == "Namespace" && info.group.is_empty() {
        namespaces::admit_delete(name)?;
    }
    let mut warnings = Vec::new();
    if options.propagation.is_none() && options.orphan_dependents.is_none() && info.orphans_dependents_by_default() {
        warnings.push(JOB_ORPHAN_WARNING.to_string());
    }
    // kube-apiserver answers 202 to a deprecated `orphanDependents: false` that did not delete.
    let kept_code = if options.orphan_dependents == Some(false) { StatusCode::ACCEPTED } else { StatusCode::OK };
    let key = keys::object_key(info, namespace, name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = writer::current(state, info, namespace, name).await?;
        let before = writer::decode(&current.value, current.mod_revision)?;
        check_preconditions(&object_ref, &before, current.mod_revision, options)?;
        let uid = object::meta_str(&before, "uid").to_string();
        let mut value = before.clone();
        let plan = plan(info, &mut value, options, jiff::Timestamp::now());
        let written = match plan {
            Plan::Pending => {
                let body = if info.returns_deleted_object() {
                    before
                } else {
                    status::deleted(info.plural, info.group, name, &uid)
                };
                return Ok(Written { code: kept_code, body, warnings, json: None });
            }
            Plan::Mark if options.dry_run || writer::encode(&value) == writer::encode(&before) => {
                return Ok(Written { code: kept_code, body: value, warnings, json: None });
            }
            Plan::Mark => {
                state.storage.update(key.clone(), writer::encode_for(info, &value), current.mod_revision).await
            }
            Plan::Remove if options.dry_run => {
                return Ok(Written { code: StatusCode::OK, body: value, warnings, json: None });
            }
            Plan::Remove => service_allocation::delete(state, info, key.clone(), &before, current.mod_revision).await,
        };
        match written {
            Ok(revision) => {
                if info.kind == "Namespace" {
                    state.namespace_live_lookups.deleted(name);
                }
                object::set_resource_version(&mut value, revision);
                let written = match plan {
                    Plan::Mark => Written { code: kept_code, body: value, warnings, json: None },
                    _ if info.returns_deleted_object() => {
                        Written { code: StatusCode::OK, body: value, warnings, json: None }
                    }
                    _ => Written {
                        code: StatusCode::OK,
                        body: status::deleted(info.plural, info.group, name, &uid),
                        warnings,
                        json: None,
                    },
                };
                return Ok(written);
            }
            Err(StorageError::Conflict { .. }) if attempt < CONFLICT_RETRIES_MAX => continue,
            Err(error) => return Err(storage_error(object_ref, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delete_options::Propagation;
    use crate::registry;

    fn info(plural: &str) -> &'static ResourceInfo {
        registry::RESOURCES.iter().find(|info| info.plural == plural).unwrap()
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn policy(propagation: Propagation) -> DeleteOptions {
        DeleteOptions { propagation: Some(propagation), ..DeleteOptions::default() }
    }

    fn grace(seconds: i64) -> DeleteOptions {
        DeleteOptions { grace_period_seconds: Some(seconds), ..DeleteOptions::default() }
    }

    /// Plans a DELETE of `value` and returns the plan and the object as it would be stored.
    fn check(plural: &str, value: Value, options: &DeleteOptions) -> (Plan, Value) {
        let mut value = value;
        let plan = plan(info(plural), &mut value, options, now());
        (plan, value)
    }

    #[test]
    fn objects_without_finalizers_go_at_once() {
        let (plan, _) = check("configmaps", json!({"metadata": {"name": "a"}}), &DeleteOptions::default());
        assert_eq!(plan, Plan::Remove);
        let (plan, _) = check("deployments", json!({"metadata": {"name": "a"}}), &policy(Propagation::Background));
        assert_eq!(plan, Plan::Remove);
    }

    #[test]
    fn orphan_and_foreground_mark_the_object_with_their_finalizer() {
        for (propagation, finalizer) in
            [(Propagation::Orphan, "orphan"), (Propagation::Foreground, "foregroundDeletion")]
        {
            let (plan, value) =
                check("deployments", json!({"metadata": {"name": "a", "generation": 3}}), &policy(propagation));
            assert_eq!(plan, Plan::Mark);
            assert_eq!(value["metadata"]["finalizers"], json!([finalizer]));
            assert_eq!(value["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
            assert_eq!(value["metadata"]["deletionGracePeriodSeconds"], 0);
            assert_eq!(value["metadata"]["generation"], 4, "deletion bumps the generation");
        }
    }

    #[test]
    fn batch_v1_jobs_orphan_by_default() {
        let (plan, value) = check("jobs", json!({"metadata": {"name": "a"}}), &DeleteOptions::default());
        assert_eq!(plan, Plan::Mark);
        assert_eq!(value["metadata"]["finalizers"], json!(["orphan"]));
        let (plan, _) = check("jobs", json!({"metadata": {"name": "a"}}), &policy(Propagation::Background));
        assert_eq!(plan, Plan::Remove);
    }

    #[test]
    fn a_second_delete_may_change_the_policy_but_keeps_the_timestamp() {
        let marked = json!({"metadata": {"name": "a", "finalizers": ["example.com/x", "orphan"],
            "deletionTimestamp": "2023-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0}});
        let (plan, value) = check("configmaps", marked.clone(), &policy(Propagation::Foreground));
        assert_eq!(plan, Plan::Mark);
        assert_eq!(value["metadata"]["finalizers"], json!(["example.com/x", "foregroundDeletion"]));
        assert_eq!(value["metadata"]["deletionTimestamp"], "2023-01-01T00:00:00Z");
        let (plan, value) = check("configmaps", marked.clone(), &DeleteOptions::default());
        assert_eq!((plan, value), (Plan::Mark, marked));
    }

    #[test]
    fn unbound_and_finished_pods_go_at_once() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(check("pods", pod, &DeleteOptions::default()).0, Plan::Remove);
        let finished = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30},
                              "status": {"phase": "Succeeded"}});
        assert_eq!(check("pods", finished, &DeleteOptions::default()).0, Plan::Remove);
    }

    #[test]
    fn bound_pods_are_deleted_gracefully_and_the_period_only_shortens() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        let (plan, marked) = check("pods", pod.clone(), &DeleteOptions::default());
        assert_eq!(plan, Plan::Mark);
        assert_eq!(marked["metadata"]["deletionTimestamp"], "2023-11-14T22:13:50Z");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(check("pods", marked.clone(), &DeleteOptions::default()).0, Plan::Pending);
        assert_eq!(check("pods", marked.clone(), &grace(60)).0, Plan::Pending);
        let (plan, shorter) = check("pods", marked.clone(), &grace(10));
        assert_eq!(plan, Plan::Mark);
        assert_eq!(shorter["metadata"]["deletionTimestamp"], "2023-11-14T22:13:30Z");
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
        assert_eq!(check("pods", marked, &grace(0)).0, Plan::Remove);
        assert_eq!(check("pods", pod.clone(), &grace(0)).0, Plan::Remove);
        let mut held = pod;
        held["metadata"]["finalizers"] = json!(["example.com/x"]);
        let (plan, value) = check("pods", held, &grace(0));
        assert_eq!(plan, Plan::Mark, "finalizers keep even a pod deleted at once");
        assert_eq!(value["metadata"]["deletionGracePeriodSeconds"], 0);
    }

    #[test]
    fn a_namespace_terminates_first_and_goes_once_finalized() {
        let active =
            json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let (plan, terminating) = check("namespaces", active, &policy(Propagation::Background));
        assert_eq!(plan, Plan::Mark);
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert_eq!(check("namespaces", terminating.clone(), &DeleteOptions::default()).0, Plan::Pending);
        let mut finalized = terminating;
        finalized["spec"]["finalizers"] = json!([]);
        assert_eq!(check("namespaces", finalized, &DeleteOptions::default()).0, Plan::Remove);
    }
}
