//! `events.k8s.io/v1` Events, served over the same storage as core/v1 Events: kube-apiserver
//! keeps both at `/registry/events/<namespace>/<name>` in the core form and converts
//! (`pkg/apis/events/v1/conversion.go`), so an event written through either API is read
//! through both. The two forms differ only in names:
//!
//! | core/v1              | events.k8s.io/v1           |
//! |----------------------|----------------------------|
//! | `involvedObject`     | `regarding`                |
//! | `message`            | `note`                     |
//! | `source`             | `deprecatedSource`         |
//! | `firstTimestamp`     | `deprecatedFirstTimestamp` |
//! | `lastTimestamp`      | `deprecatedLastTimestamp`  |
//! | `count`              | `deprecatedCount`          |
//! | `reportingComponent` | `reportingController`      |
//!
//! (`eventTime`, `series`, `related`, `action`, `reason`, `reportingInstance` and `type` keep
//! their names.) Validation is kube-apiserver's `ValidateEventCreate` / `ValidateEventUpdate`:
//! the legacy rules for both APIs, and the strict ones (`eventTime`, `reportingController`,
//! `reportingInstance`, `action` required; no deprecated fields) for writes through
//! events.k8s.io/v1. It runs on the core form, so its field paths are the core names.

use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::registry::{Conversion, ResourceInfo};

/// (core/v1 name, events.k8s.io/v1 name).
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

const REPORTING_INSTANCE_MAX: usize = 128;
const ACTION_MAX: usize = 128;
const REASON_MAX: usize = 128;
const NOTE_MAX: usize = 1024;

/// The conversion of the events.k8s.io/v1 row of the registry.
pub static CONVERSION: Conversion = Conversion { to_storage: to_core, from_storage: from_core };

fn rename(
    value: Value,
    from: fn(&(&'static str, &'static str)) -> &'static str,
    to: fn(&(&'static str, &'static str)) -> &'static str,
) -> Value {
    let Value::Object(mut fields) = value else { return value };
    let mut renamed = Map::new();
    for pair in RENAMED {
        if let Some(field) = fields.remove(from(pair)) {
            renamed.insert(to(pair).to_string(), field);
        }
    }
    fields.extend(renamed);
    Value::Object(fields)
}

/// An events.k8s.io/v1 Event in the core/v1 form.
pub fn to_core(value: Value) -> Value {
    let mut core = rename(value, |pair| pair.1, |pair| pair.0);
    core["apiVersion"] = json!("v1");
    core
}

/// A core/v1 Event in the events.k8s.io/v1 form.
pub fn from_core(value: Value) -> Value {
    let mut event = rename(value, |pair| pair.0, |pair| pair.1);
    event["apiVersion"] = json!("events.k8s.io/v1");
    event
}

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or("")
}

fn is_set(value: &Value) -> bool {
    !(value.is_null() || value.as_str() == Some("") || value.as_i64() == Some(0))
}

fn invalid_empty(field: &str, detail: &str) -> Cause {
    Cause::invalid(field, "", detail)
}

/// kube-apiserver's event validation, on the core form of `event` (and of `old` on update).
pub fn validate(info: &ResourceInfo, event: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let strict = info.group == "events.k8s.io";
    let core = |value: &Value| if strict { to_core(value.clone()) } else { value.clone() };
    let event = core(event);
    legacy(&event, causes);
    if !strict {
        return;
    }
    match old.map(core) {
        None => {
            if !is_set(&event["eventTime"]) {
                causes.push(Cause::required("eventTime", ""));
            }
            let kind = text(&event, "type");
            if kind != "Normal" && kind != "Warning" {
                causes.push(invalid_empty("type", &format!("has invalid value: {kind}")));
            }
            for field in ["firstTimestamp", "lastTimestamp", "count"] {
                if is_set(&event[field]) {
                    causes.push(invalid_empty(field, "needs to be unset"));
                }
            }
            let source = &event["source"];
            if is_set(&source["component"]) || is_set(&source["host"]) {
                causes.push(invalid_empty("source", "needs to be unset"));
            }
            series(&event, causes);
        }
        Some(old) => {
            if event["series"] != old["series"] {
                series(&event, causes);
            }
            for field in [
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ] {
                if event.get(field) != old.get(field) {
                    let path = if field == "reportingComponent" { "reportingController" } else { field };
                    let shown = match &event[field] {
                        Value::String(text) => format!("{text:?}"),
                        other => other.to_string(),
                    };
                    causes.push(Cause {
                        reason: "FieldValueInvalid",
                        field: path.into(),
                        message: format!("Invalid value: {shown}: field is immutable"),
                    });
                }
            }
        }
    }
}

fn series(event: &Value, causes: &mut Vec<Cause>) {
    let series = &event["series"];
    if series.is_null() {
        return;
    }
    if series["count"].as_i64().unwrap_or(0) < 2 {
        causes.push(invalid_empty("series.count", "should be at least 2"));
    }
    if !is_set(&series["lastObservedTime"]) {
        causes.push(Cause::required("series.lastObservedTime", ""));
    }
}

/// `legacyValidateEvent`: namespaces agree, and an event with `eventTime` (a "new" event)
/// names its reporter, action and reason.
fn legacy(event: &Value, causes: &mut Vec<Cause>) {
    let namespace = crate::object::namespace(event);
    let involved_namespace = event["involvedObject"]["namespace"].as_str().unwrap_or("");
    let mismatch = || Cause::invalid("involvedObject.namespace", involved_namespace, "does not match event.namespace");
    if !is_set(&event["eventTime"]) {
        if involved_namespace.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                causes.push(mismatch());
            }
        } else if namespace != involved_namespace {
            causes.push(mismatch());
        }
        return;
    }
    if involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
        causes.push(mismatch());
    }
    let controller = text(event, "reportingComponent");
    if controller.is_empty() {
        causes.push(Cause::required("reportingController", ""));
    } else if !crate::validation::is_qualified_name(controller) {
        causes.push(Cause::invalid(
            "reportingController",
            controller,
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ));
    }
    for (field, name, max) in [
        ("reportingInstance", "reportingInstance", REPORTING_INSTANCE_MAX),
        ("action", "action", ACTION_MAX),
        ("reason", "reason", REASON_MAX),
    ] {
        let value = text(event, field);
        if value.is_empty() {
            causes.push(Cause::required(name, ""));
        } else if value.len() > max {
            causes.push(invalid_empty(name, &format!("can have at most {max} characters")));
        }
    }
    if text(event, "message").len() > NOTE_MAX {
        causes.push(invalid_empty("message", &format!("can have at most {NOTE_MAX} characters")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn core_event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "message": "pulled",
            "reason": "Pulled", "source": {"component": "kubelet"}, "count": 3, "type": "Normal",
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:01:00Z",
            "reportingComponent": "kubelet", "reportingInstance": "node-1"})
    }

    #[test]
    fn the_two_forms_convert_both_ways() {
        let event = from_core(core_event());
        assert_eq!(event["apiVersion"], "events.k8s.io/v1");
        assert_eq!(event["regarding"]["name"], "p");
        assert_eq!(event["note"], "pulled");
        assert_eq!(event["deprecatedSource"]["component"], "kubelet");
        assert_eq!(event["deprecatedCount"], 3);
        assert_eq!(event["reportingController"], "kubelet");
        assert_eq!(event["reportingInstance"], "node-1");
        assert!(event.get("involvedObject").is_none() && event.get("message").is_none());
        assert_eq!(to_core(event), core_event());
    }

    fn check(group: &str, event: Value, old: Option<Value>, expected: &[&str]) {
        let info = registry::RESOURCES.iter().find(|info| info.plural == "events" && info.group == group).unwrap();
        let mut causes = Vec::new();
        validate(info, &event, old.as_ref(), &mut causes);
        let found: Vec<String> =
            causes.into_iter().map(|cause| format!("{}: {}", cause.field, cause.message)).collect();
        assert_eq!(found, expected, "{event}");
    }

    #[test]
    fn core_events_get_the_legacy_rules_and_new_ones_the_strict_rules() {
        check("", core_event(), None, &[]);
        let mut elsewhere = core_event();
        elsewhere["involvedObject"]["namespace"] = json!("other");
        check(
            "",
            elsewhere,
            None,
            &["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"],
        );
        let mut bare = from_core(core_event());
        bare["eventTime"] = json!("2025-01-01T00:00:00.000000Z");
        check(
            "events.k8s.io",
            bare.clone(),
            None,
            &[
                "action: Required value",
                "firstTimestamp: Invalid value: \"\": needs to be unset",
                "lastTimestamp: Invalid value: \"\": needs to be unset",
                "count: Invalid value: \"\": needs to be unset",
                "source: Invalid value: \"\": needs to be unset",
            ],
        );
        let good = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "note": "scheduled", "reason": "Scheduled",
            "type": "Normal", "eventTime": "2025-01-01T00:00:00.000000Z", "action": "Binding",
            "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-1"});
        check("events.k8s.io", good.clone(), None, &[]);
        let mut changed = good.clone();
        changed["note"] = json!("other");
        check("events.k8s.io", changed, Some(good), &["message: Invalid value: \"other\": field is immutable"]);
    }
}
