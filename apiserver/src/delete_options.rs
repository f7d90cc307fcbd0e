//! `DeleteOptions`: what a DELETE asks for (grace period, propagation policy, preconditions, dry
//! run), and the garbage-collection finalizers a policy puts on the object.
//!
//! kube-apiserver reads the options from the body, or from the query when the body is empty
//! (`gracePeriodSeconds`, `propagationPolicy`, `orphanDependents`, `dryRun`). The policy decides
//! which of the garbage collector's two finalizers the object carries while it is being deleted:
//! `orphan` (Orphan: the collector removes the ownerReferences to it from its dependents) or
//! `foregroundDeletion` (Foreground: the collector deletes its dependents first). Background adds
//! neither; the object goes at once and the collector deletes its dependents afterwards.

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::Value;

use crate::error::{Cause, Error, ObjectRef, Result};
use crate::http::Params;

/// The garbage collector orphans the object's dependents before the object goes.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The garbage collector deletes the object's dependents before the object goes.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// `metav1.DeletionPropagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    fn parse(text: &str) -> Option<Propagation> {
        match text {
            "Orphan" => Some(Propagation::Orphan),
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            _ => None,
        }
    }
}

/// A DELETE's options, decoded and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Negative values were already raised to 1, as kube-apiserver does on the delete path.
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    /// The deprecated form of the policy: true is Orphan, false is Foreground for namespaces and
    /// "not Orphan" for the rest.
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

fn invalid(causes: Vec<Cause>) -> Error {
    let object =
        ObjectRef { group: "meta.k8s.io", plural: "deleteoptions", kind: "DeleteOptions", name: String::new() };
    Error::Invalid { object, causes }
}

impl DeleteOptions {
    /// From the body, or from the query when the body is empty.
    pub fn parse(body: &[u8], params: &Params) -> Result<DeleteOptions> {
        let body_is_empty = body.iter().all(u8::is_ascii_whitespace);
        let (options, propagation) = if body_is_empty { from_query(params)? } else { from_body(body)? };
        let mut options = options;
        if let Some(text) = propagation {
            options.propagation = Some(Propagation::parse(&text).ok_or_else(|| {
                invalid(vec![Cause {
                    reason: "FieldValueNotSupported",
                    field: "propagationPolicy".into(),
                    message: format!(
                        "Unsupported value: {text:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                }])
            })?);
        }
        if let (Some(_), Some(propagation)) = (options.orphan_dependents, options.propagation) {
            return Err(invalid(vec![Cause::invalid(
                "propagationPolicy",
                &format!("{propagation:?}"),
                "orphanDependents and deletionPropagation cannot be both set",
            )]));
        }
        if let Some(grace) = options.grace_period_seconds.filter(|grace| *grace < 0) {
            // Older clients sent negative periods; the delete path reads them as one second.
            tracing::trace!(grace, "a negative grace period is read as 1 s");
            options.grace_period_seconds = Some(1);
        }
        Ok(options)
    }

    /// `shouldOrphanDependents`: the options first, then the finalizers the object already
    /// has, then the resource's default.
    pub fn should_orphan(&self, finalizers: &[String], orphan_by_default: bool) -> bool {
        if let Some(orphan) = self.orphan_dependents {
            return orphan;
        }
        if let Some(policy) = self.propagation {
            return policy == Propagation::Orphan;
        }
        for finalizer in finalizers {
            match finalizer.as_str() {
                FINALIZER_ORPHAN => return true,
                FINALIZER_FOREGROUND => return false,
                _ => {}
            }
        }
        orphan_by_default
    }

    /// `shouldDeleteDependents`: Foreground asked for, or already chosen by a finalizer.
    pub fn should_delete_dependents(&self, finalizers: &[String]) -> bool {
        if self.orphan_dependents.is_some() {
            return false;
        }
        if let Some(policy) = self.propagation {
            return policy == Propagation::Foreground;
        }
        for finalizer in finalizers {
            match finalizer.as_str() {
                FINALIZER_FOREGROUND => return true,
                FINALIZER_ORPHAN => return false,
                _ => {}
            }
        }
        false
    }

    /// `deletionFinalizersForGarbageCollection`: the object's finalizers with the two
    /// garbage-collection ones set as the options ask; None when that changes nothing.
    pub fn gc_finalizers(&self, finalizers: &[String], orphan_by_default: bool) -> Option<Vec<String>> {
        let orphan = self.should_orphan(finalizers, orphan_by_default);
        let foreground = self.should_delete_dependents(finalizers);
        let mut wanted: Vec<String> = finalizers
            .iter()
            .filter(|finalizer| *finalizer != FINALIZER_ORPHAN && *finalizer != FINALIZER_FOREGROUND)
            .cloned()
            .collect();
        if orphan {
            wanted.push(FINALIZER_ORPHAN.into());
        }
        if foreground {
            wanted.push(FINALIZER_FOREGROUND.into());
        }
        let as_set = |list: &[String]| list.iter().cloned().collect::<std::collections::BTreeSet<String>>();
        (as_set(&wanted) != as_set(finalizers)).then_some(wanted)
    }

    /// The namespace's own rules (`shouldHaveOrphanFinalizer`, `shouldHaveDeleteDependentsFinalizer`):
    /// the finalizers a namespace being terminated carries, given the ones it has.
    pub fn namespace_finalizers(&self, finalizers: &[String]) -> Vec<String> {
        let has = |name: &str| finalizers.iter().any(|finalizer| finalizer == name);
        let orphan = match (self.orphan_dependents, self.propagation) {
            (Some(orphan), _) => orphan,
            (None, Some(policy)) => policy == Propagation::Orphan,
            (None, None) => has(FINALIZER_ORPHAN),
        };
        let foreground = match (self.orphan_dependents, self.propagation) {
            (Some(orphan), _) => !orphan,
            (None, Some(policy)) => policy == Propagation::Foreground,
            (None, None) => has(FINALIZER_FOREGROUND),
        };
        let mut wanted: Vec<String> = finalizers
            .iter()
            .filter(|finalizer| *finalizer != FINALIZER_ORPHAN && *finalizer != FINALIZER_FOREGROUND)
            .cloned()
            .collect();
        if orphan {
            wanted.push(FINALIZER_ORPHAN.into());
        }
        if foreground {
            wanted.push(FINALIZER_FOREGROUND.into());
        }
        wanted
    }
}

/// The options and the policy as text (checked by the caller).
type Parsed = (DeleteOptions, Option<String>);

fn from_body(body: &[u8]) -> Result<Parsed> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| Error::BadRequest(format!("the body of the request could not be decoded: {error}")))?;
    if let Some(kind) = value.get("kind").and_then(Value::as_str).filter(|kind| *kind != "DeleteOptions") {
        return Err(Error::BadRequest(format!("a DELETE body must be a DeleteOptions, not a {kind}")));
    }
    let wire: meta::DeleteOptions = serde_json::from_value(value)
        .map_err(|error| Error::BadRequest(format!("the body of the request is not a DeleteOptions: {error}")))?;
    let dry_run = check_dry_run(wire.dry_run.as_deref().unwrap_or(&[]))?;
    let preconditions = wire.preconditions.unwrap_or_default();
    let options = DeleteOptions {
        grace_period_seconds: wire.grace_period_seconds,
        propagation: None,
        orphan_dependents: wire.orphan_dependents,
        precondition_uid: preconditions.uid,
        precondition_resource_version: preconditions.resource_version,
        dry_run,
    };
    Ok((options, wire.propagation_policy))
}

fn from_query(params: &Params) -> Result<Parsed> {
    let orphan_dependents = match params.get("orphanDependents") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(Error::BadRequest(format!("orphanDependents: {other:?} is not a boolean"))),
    };
    let dry_run = match params.get("dryRun") {
        None => false,
        Some(value) => check_dry_run(&[value.to_string()])?,
    };
    let options = DeleteOptions {
        grace_period_seconds: params.number("gracePeriodSeconds")?,
        propagation: None,
        orphan_dependents,
        precondition_uid: None,
        precondition_resource_version: None,
        dry_run,
    };
    Ok((options, params.get("propagationPolicy").map(str::to_string)))
}

fn check_dry_run(values: &[String]) -> Result<bool> {
    for value in values {
        if value != "All" {
            return Err(invalid(vec![Cause {
                reason: "FieldValueNotSupported",
                field: "dryRun".into(),
                message: format!("Unsupported value: {value:?}: supported values: \"All\""),
            }]));
        }
    }
    Ok(!values.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, query: &str) -> Result<DeleteOptions> {
        DeleteOptions::parse(body.as_bytes(), &Params::from_query(Some(query)))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|text| text.to_string()).collect()
    }

    #[test]
    fn the_body_wins_and_the_query_serves_an_empty_body() {
        let options = parse(
            r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground","gracePeriodSeconds":5,
               "preconditions":{"uid":"u1"}}"#,
            "propagationPolicy=Orphan",
        )
        .unwrap();
        assert_eq!(options.propagation, Some(Propagation::Foreground));
        assert_eq!(options.grace_period_seconds, Some(5));
        assert_eq!(options.precondition_uid.as_deref(), Some("u1"));
        let options = parse("", "propagationPolicy=Orphan&gracePeriodSeconds=0&dryRun=All").unwrap();
        assert_eq!(options.propagation, Some(Propagation::Orphan));
        assert_eq!(options.grace_period_seconds, Some(0));
        assert!(options.dry_run);
        assert_eq!(parse("{}", "").unwrap(), DeleteOptions::default());
        assert_eq!(parse("", "gracePeriodSeconds=-5").unwrap().grace_period_seconds, Some(1));
    }

    #[test]
    fn invalid_options_are_refused_as_kube_apiserver_refuses_them() {
        let error = parse(r#"{"propagationPolicy":"Sideways"}"#, "").unwrap_err();
        assert!(error.to_string().contains("Unsupported value: \"Sideways\""), "{error}");
        assert!(error.to_string().starts_with("DeleteOptions.meta.k8s.io \"\" is invalid"), "{error}");
        let error = parse(r#"{"propagationPolicy":"Orphan","orphanDependents":true}"#, "").unwrap_err();
        assert!(error.to_string().contains("cannot be both set"), "{error}");
        assert!(matches!(parse("", "orphanDependents=maybe"), Err(Error::BadRequest(_))));
        assert!(matches!(parse(r#"{"gracePeriodSeconds":"soon"}"#, ""), Err(Error::BadRequest(_))));
        assert!(matches!(parse(r#"{"kind":"Pod"}"#, ""), Err(Error::BadRequest(_))));
    }

    #[test]
    fn gc_finalizers_follow_options_then_finalizers_then_the_default() {
        let policy = |propagation| DeleteOptions { propagation: Some(propagation), ..DeleteOptions::default() };
        let none = DeleteOptions::default();
        assert_eq!(policy(Propagation::Orphan).gc_finalizers(&[], false), Some(strings(&["orphan"])));
        assert_eq!(policy(Propagation::Foreground).gc_finalizers(&[], false), Some(strings(&["foregroundDeletion"])));
        assert_eq!(policy(Propagation::Background).gc_finalizers(&[], true), None);
        assert_eq!(none.gc_finalizers(&[], false), None);
        // batch/v1 jobs orphan by default.
        assert_eq!(none.gc_finalizers(&[], true), Some(strings(&["orphan"])));
        // An existing finalizer is kept as the choice when the options say nothing.
        assert_eq!(none.gc_finalizers(&strings(&["x/y", "foregroundDeletion"]), true), None);
        // An explicit policy replaces the other finalizer and keeps unrelated ones.
        assert_eq!(
            policy(Propagation::Orphan).gc_finalizers(&strings(&["x/y", "foregroundDeletion"]), false),
            Some(strings(&["x/y", "orphan"]))
        );
        assert_eq!(policy(Propagation::Background).gc_finalizers(&strings(&["orphan"]), false), Some(vec![]));
        let deprecated = DeleteOptions { orphan_dependents: Some(false), ..DeleteOptions::default() };
        assert_eq!(deprecated.gc_finalizers(&strings(&["orphan"]), true), Some(vec![]));
        let deprecated = DeleteOptions { orphan_dependents: Some(true), ..DeleteOptions::default() };
        assert_eq!(deprecated.gc_finalizers(&[], false), Some(strings(&["orphan"])));
    }

    #[test]
    fn namespaces_have_their_own_finalizer_rules() {
        let none = DeleteOptions::default();
        assert!(none.namespace_finalizers(&[]).is_empty());
        let deprecated = DeleteOptions { orphan_dependents: Some(false), ..DeleteOptions::default() };
        assert_eq!(deprecated.namespace_finalizers(&[]), strings(&["foregroundDeletion"]));
        let orphan = DeleteOptions { propagation: Some(Propagation::Orphan), ..DeleteOptions::default() };
        assert_eq!(orphan.namespace_finalizers(&strings(&["foregroundDeletion"])), strings(&["orphan"]));
    }
}
