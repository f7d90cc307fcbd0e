//! `meta.k8s.io/v1` Table output (`Accept: application/json;as=Table;...`): the columns
//! `kubectl get` shows for each type (priority 1 columns are `-o wide`'s), with each row's
//! object as PartialObjectMetadata, the full object, or nothing (`includeObject`).

use bytes::Bytes;
use serde_json::{json, Value};

use crate::cached_object::CachedObject;
use crate::http::{IncludeObject, MetaVersion};
use crate::registry::ResourceInfo;

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
}

const fn column(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column { name, kind: "string", priority, description }
}

const NAME: Column =
    Column { name: "Name", kind: "string", priority: 0, description: "Name must be unique within a namespace." };
const AGE: Column = column("Age", 0, "CreationTimestamp is the time the object was created.");

fn columns(info: &ResourceInfo) -> Vec<Column> {
    match info.kind {
        "Pod" => vec![
            NAME,
            column("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", 0, "The aggregate status of the containers in this pod."),
            Column { name: "Restarts", kind: "string", priority: 0, description: "The number of times the containers in this pod have been restarted." },
            AGE,
            column("IP", 1, "The IP address assigned to the pod."),
            column("Node", 1, "The name of the node the pod is assigned to."),
            column("Nominated Node", 1, "The node the scheduler nominated for the pod."),
            column("Readiness Gates", 1, "The readiness gates of the pod."),
        ],
        "Deployment" => vec![
            NAME,
            column("Ready", 0, "Number of the pod with ready state."),
            Column { name: "Up-to-date", kind: "integer", priority: 0, description: "Total number of non-terminated pods targeted by this deployment that have the desired template spec." },
            Column { name: "Available", kind: "integer", priority: 0, description: "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment." },
            AGE,
            column("Containers", 1, "Names of each container in the template."),
            column("Images", 1, "Images referenced by each container in the template."),
            column("Selector", 1, "Label selector for pods."),
        ],
        "ReplicaSet" => vec![
            NAME,
            Column { name: "Desired", kind: "integer", priority: 0, description: "Number of desired pods." },
            Column { name: "Current", kind: "integer", priority: 0, description: "Number of actual pods." },
            Column { name: "Ready", kind: "integer", priority: 0, description: "Number of ready pods." },
            AGE,
        ],
        "StatefulSet" => vec![NAME, column("Ready", 0, "Number of the pod with ready state."), AGE],
        "DaemonSet" => vec![
            NAME,
            Column { name: "Desired", kind: "integer", priority: 0, description: "The number of nodes that should be running the daemon pod." },
            Column { name: "Current", kind: "integer", priority: 0, description: "The number of nodes running the daemon pod." },
            Column { name: "Ready", kind: "integer", priority: 0, description: "The number of nodes with a ready daemon pod." },
            AGE,
        ],
        "Job" => vec![
            NAME,
            column("Status", 0, "Status of the job."),
            column("Completions", 0, "The completion status of the job."),
            column("Duration", 0, "Time required to complete the job."),
            AGE,
        ],
        "Service" => vec![
            NAME,
            column("Type", 0, "The type of the service."),
            column("Cluster-IP", 0, "The cluster IP of the service."),
            column("External-IP", 0, "The external IPs of the service."),
            column("Port(s)", 0, "The ports of the service."),
            AGE,
            column("Selector", 1, "The label selector of the service."),
        ],
        "Node" => vec![
            NAME,
            column("Status", 0, "The status of the node."),
            column("Roles", 0, "The roles of the node."),
            AGE,
            column("Version", 0, "Kubelet Version reported by the node."),
            column("Internal-IP", 1, "The internal IP of the node."),
            column("External-IP", 1, "The external IP of the node."),
        ],
        "Namespace" => vec![NAME, column("Status", 0, "The status of the namespace."), AGE],
        "ConfigMap" => vec![NAME, Column { name: "Data", kind: "integer", priority: 0, description: "Number of entries in data." }, AGE],
        "Secret" => vec![
            NAME,
            column("Type", 0, "The type of the secret."),
            Column { name: "Data", kind: "integer", priority: 0, description: "Number of entries in data." },
            AGE,
        ],
        "Event" => vec![
            column("Last Seen", 0, "The time at which the most recent occurrence of this event was recorded."),
            column("Type", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
            column("Reason", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            column("Object", 0, "The object that this event is about."),
            column("Subobject", 1, "The field of the object that this event is about."),
            column("Source", 1, "The component reporting this event."),
            column("Message", 0, "A human-readable description of the status of this operation."),
            column("First Seen", 1, "The time at which the event was first recorded."),
            column("Count", 1, "The number of times this event has occurred."),
            Column { name: "Name", kind: "string", priority: 1, description: "Name must be unique within a namespace." },
        ],
        _ => vec![NAME, AGE],
    }
}

/// kube-apiserver's event row, from the core/v1 form of the event.
fn event_cells(event: &Value, now: i64) -> Vec<Value> {
    let since = |time: &Value| match time.as_str() {
        Some(time) if !time.is_empty() => age(time, now),
        _ => "<unknown>".to_string(),
    };
    let mut first = since(&event["firstTimestamp"]);
    if event["firstTimestamp"].as_str().unwrap_or("").is_empty() {
        first = since(&event["eventTime"]);
    }
    let mut last = if event["lastTimestamp"].as_str().unwrap_or("").is_empty() {
        first.clone()
    } else {
        since(&event["lastTimestamp"])
    };
    let mut count = event["count"].as_i64().unwrap_or(0);
    if event["series"].is_object() {
        last = since(&event["series"]["lastObservedTime"]);
        count = event["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let involved = &event["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = match text(&involved["name"]) {
        name if name.is_empty() => kind,
        name => format!("{kind}/{name}"),
    };
    let first_non_empty = |one: &Value, other: &Value| {
        let one = text(one);
        if one.is_empty() {
            text(other)
        } else {
            one
        }
    };
    let component = first_non_empty(&event["source"]["component"], &event["reportingComponent"]);
    let instance = first_non_empty(&event["source"]["host"], &event["reportingInstance"]);
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(text(&event["type"])),
        json!(text(&event["reason"])),
        json!(target),
        json!(text(&involved["fieldPath"])),
        json!(source),
        json!(text(&event["message"]).trim()),
        json!(first),
        json!(count),
        json!(crate::object::name(event)),
    ]
}

fn count(value: &Value) -> usize {
    value.as_object().map_or(0, |map| map.len()).max(value.as_array().map_or(0, Vec::len))
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

fn or_none(text: String) -> Value {
    if text.is_empty() {
        json!("<none>")
    } else {
        json!(text)
    }
}

fn selector_text(selector: &Value) -> String {
    selector
        .as_object()
        .map(|map| map.iter().map(|(key, value)| format!("{key}={}", text(value))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// The cells of one row.
fn cells(info: &ResourceInfo, object: &Value, now: i64) -> Vec<Value> {
    let name = json!(crate::object::name(object));
    let age = json!(age(crate::object::meta_str(object, "creationTimestamp"), now));
    let spec = &object["spec"];
    let status = &object["status"];
    let number = |value: &Value| json!(value.as_i64().unwrap_or(0));
    match info.kind {
        "Pod" => {
            let containers = spec["containers"].as_array().map_or(0, Vec::len);
            let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
            let ready = statuses.iter().filter(|status| status["ready"] == json!(true)).count();
            let restarts: i64 = statuses.iter().map(|status| status["restartCount"].as_i64().unwrap_or(0)).sum();
            let mut phase = text(&status["phase"]);
            if object["metadata"]["deletionTimestamp"].is_string() {
                phase = "Terminating".into();
            }
            vec![
                name,
                json!(format!("{ready}/{containers}")),
                json!(phase),
                json!(restarts.to_string()),
                age,
                or_none(text(&status["podIP"])),
                or_none(text(&spec["nodeName"])),
                or_none(text(&status["nominatedNodeName"])),
                json!("<none>"),
            ]
        }
        "Deployment" => {
            let containers = spec["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = containers.iter().map(|container| text(&container["name"])).collect();
            let images: Vec<String> = containers.iter().map(|container| text(&container["image"])).collect();
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    status["readyReplicas"].as_i64().unwrap_or(0),
                    spec["replicas"].as_i64().unwrap_or(0)
                )),
                number(&status["updatedReplicas"]),
                number(&status["availableReplicas"]),
                age,
                json!(names.join(",")),
                json!(images.join(",")),
                or_none(selector_text(&spec["selector"]["matchLabels"])),
            ]
        }
        "ReplicaSet" | "DaemonSet" => {
            let (desired, current, ready) = if info.kind == "ReplicaSet" {
                (&spec["replicas"], &status["replicas"], &status["readyReplicas"])
            } else {
                (&status["desiredNumberScheduled"], &status["currentNumberScheduled"], &status["numberReady"])
            };
            vec![name, number(desired), number(current), number(ready), age]
        }
        "StatefulSet" => vec![
            name,
            json!(format!(
                "{}/{}",
                status["readyReplicas"].as_i64().unwrap_or(0),
                spec["replicas"].as_i64().unwrap_or(0)
            )),
            age,
        ],
        "Job" => {
            let succeeded = status["succeeded"].as_i64().unwrap_or(0);
            let completions = spec["completions"].as_i64().unwrap_or(1);
            let state = if succeeded >= completions { "Complete" } else { "Running" };
            vec![name, json!(state), json!(format!("{succeeded}/{completions}")), json!(""), age]
        }
        "Service" => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|port| {
                    let protocol = port["protocol"].as_str().unwrap_or("TCP");
                    match port["nodePort"].as_i64() {
                        Some(node_port) => format!("{}:{node_port}/{protocol}", port["port"]),
                        None => format!("{}/{protocol}", port["port"]),
                    }
                })
                .collect();
            let external: Vec<String> =
                spec["externalIPs"].as_array().cloned().unwrap_or_default().iter().map(text).collect();
            vec![
                name,
                json!(text(&spec["type"])),
                or_none(text(&spec["clusterIP"])),
                or_none(external.join(",")),
                or_none(ports.join(",")),
                age,
                or_none(selector_text(&spec["selector"])),
            ]
        }
        "Node" => {
            let ready = status["conditions"]
                .as_array()
                .and_then(|conditions| conditions.iter().find(|condition| condition["type"] == "Ready"))
                .map(|condition| if condition["status"] == "True" { "Ready" } else { "NotReady" })
                .unwrap_or("Unknown");
            let roles: Vec<String> = crate::object::labels(object)
                .keys()
                .filter_map(|key| key.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
                .collect();
            let address = |kind: &str| {
                status["addresses"]
                    .as_array()
                    .and_then(|addresses| addresses.iter().find(|address| address["type"] == kind))
                    .map(|address| text(&address["address"]))
                    .unwrap_or_default()
            };
            vec![
                name,
                json!(ready),
                or_none(roles.join(",")),
                age,
                json!(text(&status["nodeInfo"]["kubeletVersion"])),
                or_none(address("InternalIP")),
                or_none(address("ExternalIP")),
            ]
        }
        "Namespace" => vec![name, json!(text(&status["phase"])), age],
        "ConfigMap" => vec![name, json!(count(&object["data"]) + count(&object["binaryData"])), age],
        "Secret" => vec![name, json!(text(&object["type"])), json!(count(&object["data"])), age],
        "Event" if info.group == "events.k8s.io" => event_cells(&crate::events_v1::to_core(object.clone()), now),
        "Event" => event_cells(object, now),
        _ => vec![name, age],
    }
}

/// One row: cells and the object as `includeObject` asks.
fn row(info: &ResourceInfo, object: &Value, include: IncludeObject, version: MetaVersion, now: i64) -> Value {
    let mut row = json!({ "cells": cells(info, object, now) });
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = object.clone(),
        IncludeObject::Metadata => row["object"] = crate::object::partial_metadata(object, version),
    }
    row
}

/// A Table of `objects`, with the list's metadata (resourceVersion, continue).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_metadata: Value,
    include: IncludeObject,
    version: MetaVersion,
) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let mut table = head(info, list_metadata, version);
    table["rows"] = objects.iter().map(|object| row(info, object, include, version, now)).collect();
    table
}

/// A Table without its rows, which a LIST streams after it as the last member (`rows` sorts
/// last, so the bytes are those of [`table`]'s encoding).
pub fn head(info: &ResourceInfo, list_metadata: Value, version: MetaVersion) -> Value {
    let definitions: Vec<Value> = columns(info)
        .iter()
        .map(|column| {
            let format = if column.name == "Name" { "name" } else { "" };
            json!({"name": column.name, "type": column.kind, "format": format, "description": column.description, "priority": column.priority})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": version.api_version(),
        "metadata": list_metadata,
        "columnDefinitions": definitions,
    })
}

/// The rows of a streamed Table: each cached object decoded, made a row and encoded on its own,
/// so a Table of 100k pods never holds more than one of them decoded.
pub fn row_encoder(
    info: &'static ResourceInfo,
    include: IncludeObject,
    version: MetaVersion,
) -> impl Fn(&CachedObject) -> Bytes + Send {
    let now = jiff::Timestamp::now().as_second();
    move |object| {
        let row = row(info, &object.value(), include, version, now);
        Bytes::from(serde_json::to_vec(&row).expect("a JSON value encodes"))
    }
}

/// The age of an object created at `timestamp` (RFC 3339), in kubectl's short form.
fn age(timestamp: &str, now: i64) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(created) => human_duration(now - created.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// apimachinery's `HumanDuration`: 2 significant units at most, coarser as time passes.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 { format!("{minutes}m") } else { format!("{minutes}m{rest}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 { format!("{hours}h") } else { format!("{hours}h{rest}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        return if rest == 0 { format!("{}d", hours / 24) } else { format!("{}d{rest}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(400 * 24 * 3600), "400d");
    }

    #[test]
    fn pod_rows() {
        let pods = registry::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let table = table(
            pods,
            std::slice::from_ref(&pod),
            json!({"resourceVersion": "5"}),
            IncludeObject::Metadata,
            MetaVersion::V1,
        );
        assert_eq!(table["rows"][0]["cells"][1], "1/1");
        assert_eq!(table["rows"][0]["cells"][2], "Running");
        assert_eq!(table["rows"][0]["cells"][6], "n1");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        // Asked as v1beta1, the Table and its rows' metadata say so, as kube-apiserver's do.
        let beta = super::table(pods, &[pod], json!({}), IncludeObject::Metadata, MetaVersion::V1beta1);
        assert_eq!(beta["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(beta["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");
    }
}
