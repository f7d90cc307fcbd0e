//! Validation of objects before they are stored: names, labels, and the required fields and
//! immutable fields kube-apiserver checks for the served types. Problems are collected as field
//! causes of one Invalid error, as kube-apiserver reports them.

use serde_json::Value;

use crate::delete_options::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};
use crate::error::{Cause, Error, ObjectRef, Result};
use crate::object;
use crate::registry::ResourceInfo;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const ANNOTATIONS_BYTES_MAX: usize = 256 * 1024;

const SUBDOMAIN_DETAIL: &str =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_DETAIL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and \
must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_DETAIL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with \
an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= DNS1123_LABEL_MAX
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

pub fn is_dns1123_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= DNS1123_SUBDOMAIN_MAX
        && text.split('.').all(|part| !part.is_empty() && part.len() <= DNS1123_LABEL_MAX && is_dns1123_label(part))
}

fn is_dns1035_label(text: &str) -> bool {
    is_dns1123_label(text) && text.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A label value or the name part of a qualified key: ≤ 63 of `[-A-Za-z0-9_.]`, alphanumeric at
/// both ends (a value may be empty).
fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= LABEL_VALUE_MAX
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// `prefix/name` with a DNS subdomain prefix, or `name`.
pub fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// The rule a resource's names follow.
fn name_problem(info: &ResourceInfo, name: &str) -> Option<&'static str> {
    match info.plural {
        "namespaces" => (!is_dns1123_label(name)).then_some(LABEL_DETAIL),
        "services" => (!is_dns1035_label(name)).then_some(DNS1035_DETAIL),
        _ => (!is_dns1123_subdomain(name)).then_some(SUBDOMAIN_DETAIL),
    }
}

/// Checks an object about to be created (`old` None) or to replace `old`.
pub fn validate(info: &ResourceInfo, value: &Value, old: Option<&Value>) -> Result<()> {
    let mut causes = Vec::new();
    let name = object::name(value);
    if name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if let Some(detail) = name_problem(info, name) {
        causes.push(Cause::invalid("metadata.name", name, detail));
    }
    for (key, label) in object::labels(value) {
        if !is_qualified_name(&key) {
            causes.push(Cause::invalid("metadata.labels", &key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        if !is_label_value(&label) {
            causes.push(Cause::invalid("metadata.labels", &label, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
    }
    let annotations = object::string_map(value, "annotations");
    let annotation_bytes: usize = annotations.iter().map(|(key, value)| key.len() + value.len()).sum();
    if annotation_bytes > ANNOTATIONS_BYTES_MAX {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: "metadata.annotations".into(),
            message: format!("Too long: must have at most {ANNOTATIONS_BYTES_MAX} bytes"),
        });
    }
    for key in annotations.keys().filter(|key| !is_qualified_name(key)) {
        causes.push(Cause::invalid("metadata.annotations", key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    validate_finalizers(value, old, &mut causes);
    match info.kind {
        "Namespace" => validate_namespace_finalizers(value, &mut causes),
        "Pod" => validate_pod_spec(&value["spec"], "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => validate_workload(value, old, &mut causes),
        "Job" => validate_pod_spec(&value["spec"]["template"]["spec"], "spec.template.spec", &mut causes),
        "Service" => {
            validate_service(value, &mut causes);
            crate::service_spec::validate(value, old, &mut causes);
        }
        "Event" => crate::events_v1::validate(info, value, old, &mut causes),
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid { object: ObjectRef::new(info, name), causes })
    }
}

/// `metadata.finalizers`: qualified names, not both of the garbage collector's, and none added
/// once the object is being deleted.
fn validate_finalizers(value: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let finalizers = object::finalizers(value);
    for finalizer in finalizers.iter().filter(|finalizer| !is_qualified_name(finalizer)) {
        causes.push(Cause::invalid("metadata.finalizers", finalizer, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    let has = |name: &str| finalizers.iter().any(|finalizer| finalizer == name);
    if has(FINALIZER_ORPHAN) && has(FINALIZER_FOREGROUND) {
        causes.push(Cause::invalid(
            "metadata.finalizers",
            &format!("{finalizers:?}"),
            &format!("finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set"),
        ));
    }
    let Some(old) = old.filter(|old| object::metadata(old).is_some_and(|meta| meta.contains_key("deletionTimestamp")))
    else {
        return;
    };
    let old_finalizers = object::finalizers(old);
    let added: Vec<&String> = finalizers.iter().filter(|finalizer| !old_finalizers.contains(finalizer)).collect();
    if !added.is_empty() {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            field: "metadata.finalizers".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
            ),
        });
    }
}

/// A namespace's `spec.finalizers`: a standard finalizer name or a qualified `domain/name`.
fn validate_namespace_finalizers(value: &Value, causes: &mut Vec<Cause>) {
    const STANDARD: &[&str] = &["kubernetes", FINALIZER_ORPHAN, FINALIZER_FOREGROUND];
    for (index, finalizer) in crate::namespaces::spec_finalizers(value).iter().enumerate() {
        let field = format!("spec.finalizers[{index}]");
        if !is_qualified_name(finalizer) {
            causes.push(Cause::invalid(&field, finalizer, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        } else if !finalizer.contains('/') && !STANDARD.contains(&finalizer.as_str()) {
            causes.push(Cause::invalid(
                &field,
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if containers.is_empty() {
        causes.push(Cause::required(&format!("{path}.containers"), ""));
    }
    for (index, container) in containers.iter().enumerate() {
        let field = format!("{path}.containers[{index}]");
        let name = container["name"].as_str().unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(&format!("{field}.name"), ""));
        } else if !is_dns1123_label(name) {
            causes.push(Cause::invalid(&format!("{field}.name"), name, LABEL_DETAIL));
        }
        if container["image"].as_str().unwrap_or("").trim().is_empty() {
            causes.push(Cause::required(&format!("{field}.image"), ""));
        }
        for (port_index, port) in container["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let number = port["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&number) {
                causes.push(Cause::invalid_number(
                    &format!("{field}.ports[{port_index}].containerPort"),
                    number,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

fn validate_workload(value: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &value["spec"];
    let selector = &spec["selector"];
    let match_labels = selector["matchLabels"].as_object();
    let has_expressions = selector["matchExpressions"].as_array().is_some_and(|list| !list.is_empty());
    if match_labels.is_none_or(|labels| labels.is_empty()) && !has_expressions {
        causes.push(Cause::required("spec.selector", ""));
    } else if let Some(match_labels) = match_labels {
        let template_labels = spec["template"]["metadata"]["labels"].as_object();
        let matches =
            match_labels.iter().all(|(key, wanted)| template_labels.and_then(|labels| labels.get(key)) == Some(wanted));
        if !matches {
            let shown = template_labels.map(|labels| {
                labels
                    .iter()
                    .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &shown.unwrap_or_default(),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(old) = old {
        if old["spec"]["selector"] != spec["selector"] {
            causes.push(Cause::invalid("spec.selector", &spec["selector"].to_string(), "field is immutable"));
        }
    }
    if spec["replicas"].as_i64().is_some_and(|replicas| replicas < 0) {
        causes.push(Cause::invalid_number(
            "spec.replicas",
            spec["replicas"].as_i64().expect("checked above"),
            "must be greater than or equal to 0",
        ));
    }
    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", causes);
}

fn validate_service(value: &Value, causes: &mut Vec<Cause>) {
    let spec = &value["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    let ports = spec["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let headless = spec["clusterIP"].as_str() == Some("None");
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports", ""));
    }
    for (index, port) in ports.iter().enumerate() {
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid_number(
                &format!("spec.ports[{index}].port"),
                number,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.len() > 1 && port["name"].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required(&format!("spec.ports[{index}].name"), ""));
        }
    }
}

/// Fields of `input` the typed decoding dropped: unknown to the type (fieldValidation=Strict
/// rejects them, Warn reports them).
pub fn unknown_fields(input: &Value, normalized: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    collect_unknown(input, normalized, &mut Vec::new(), &mut unknown);
    unknown
}

/// One step of the path `collect_unknown` is at; the path is written out only for a field it
/// reports.
enum Step<'a> {
    Field(&'a str),
    Item(usize),
}

fn collect_unknown<'a>(input: &'a Value, normalized: &Value, path: &mut Vec<Step<'a>>, unknown: &mut Vec<String>) {
    match (input, normalized) {
        (Value::Object(input), Value::Object(normalized)) => {
            for (key, value) in input {
                match normalized.get(key) {
                    Some(kept) => {
                        path.push(Step::Field(key));
                        collect_unknown(value, kept, path, unknown);
                        path.pop();
                    }
                    // A null or empty value may be dropped by the typed encoding without being unknown.
                    None if value.is_null()
                        || value.as_object().is_some_and(|map| map.is_empty())
                        || value.as_array().is_some_and(|list| list.is_empty()) => {}
                    None => {
                        path.push(Step::Field(key));
                        unknown.push(path_text(path));
                        path.pop();
                    }
                }
            }
        }
        (Value::Array(input), Value::Array(normalized)) => {
            for (index, (value, kept)) in input.iter().zip(normalized).enumerate() {
                path.push(Step::Item(index));
                collect_unknown(value, kept, path, unknown);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `spec.containers[0].bogus`.
fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(name);
            }
            Step::Item(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn check(plural: &str, value: Value, expected_fields: &[&str]) {
        let info = registry::RESOURCES.iter().find(|info| info.plural == plural).unwrap();
        let fields: Vec<String> = match validate(info, &value, None) {
            Ok(()) => Vec::new(),
            Err(Error::Invalid { causes, .. }) => causes.into_iter().map(|cause| cause.field).collect(),
            Err(other) => panic!("{other}"),
        };
        assert_eq!(fields, expected_fields, "{value}");
    }

    #[test]
    fn names() {
        check("configmaps", json!({"metadata": {"name": "a.b-c"}}), &[]);
        check("configmaps", json!({"metadata": {"name": "Bad_Name"}}), &["metadata.name"]);
        check("configmaps", json!({"metadata": {}}), &["metadata.name"]);
        check("namespaces", json!({"metadata": {"name": "a.b"}}), &["metadata.name"]);
        check("services", json!({"metadata": {"name": "1abc"}, "spec": {"ports": [{"port": 80}]}}), &["metadata.name"]);
        check("configmaps", json!({"metadata": {"name": "a", "labels": {"app": "bad value"}}}), &["metadata.labels"]);
    }

    #[test]
    fn workloads() {
        let deployment = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        check("deployments", deployment, &["spec.template.metadata.labels"]);
        check(
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
            &["spec.containers[0].image"],
        );
        check("services", json!({"metadata": {"name": "s"}, "spec": {}}), &["spec.ports"]);
    }

    #[test]
    fn unknown_fields_are_found() {
        let input = json!({"spec": {"replicas": 1, "bogus": 2, "template": {"spec": {"containers": [{"name": "a", "imag": "x"}]}}}, "empty": {}});
        let normalized = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        assert_eq!(unknown_fields(&input, &normalized), vec!["spec.bogus", "spec.template.spec.containers[0].imag"]);
    }
}
