//! Defaulting: the values kube-apiserver fills in for fields a client left out, for the served
//! types (the `SetDefaults_*` functions of each API group). Applied on create and on update, as
//! kube-apiserver applies them on every decode.

use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

/// Sets `object[key]` to `value` when it is absent or null.
fn default(object: &mut Map<String, Value>, key: &str, value: Value) {
    if object.get(key).is_none_or(Value::is_null) {
        object.insert(key.to_string(), value);
    }
}

/// The map at `value[key]`, created if missing.
fn child<'a>(value: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !value.get(key).is_some_and(Value::is_object) {
        value.insert(key.to_string(), Value::Object(Map::new()));
    }
    value.get_mut(key).and_then(Value::as_object_mut).expect("just made an object")
}

pub fn apply(info: &ResourceInfo, value: &mut Value) {
    let Some(root) = value.as_object_mut() else { return };
    match info.kind {
        "Pod" => pod_spec(child(root, "spec")),
        "Deployment" => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
            template(spec);
        }
        "ReplicaSet" => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            template(spec);
        }
        "StatefulSet" => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template(spec);
        }
        "DaemonSet" => {
            let spec = child(root, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            template(spec);
        }
        "Job" => {
            let spec = child(root, "spec");
            default(spec, "completions", json!(1));
            default(spec, "parallelism", json!(1));
            default(spec, "backoffLimit", json!(6));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            default(spec, "manualSelector", json!(false));
            default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            template(spec);
        }
        "Service" => {
            let spec = child(root, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            default(spec, "internalTrafficPolicy", json!("Cluster"));
            let kind = spec["type"].as_str().unwrap_or("").to_string();
            if kind == "NodePort" || kind == "LoadBalancer" {
                default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if kind == "LoadBalancer" {
                default(spec, "allocateLoadBalancerNodePorts", json!(true));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(port, "protocol", json!("TCP"));
                    let number = port.get("port").cloned().unwrap_or(Value::Null);
                    default(port, "targetPort", number);
                }
            }
        }
        "Secret" => default(root, "type", json!("Opaque")),
        "Namespace" => {
            let name = crate::object::name(&Value::Object(root.clone())).to_string();
            // kube-apiserver labels every namespace with its name, so selectors can pick it.
            let labels = child(child(root, "metadata"), "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        _ => {}
    }
}

/// A Job's generated selector (kube-apiserver's job strategy, on create): its pods are selected
/// by the Job's uid, unless the client chose `manualSelector`.
pub fn job_selector(value: &mut Value) {
    if value["spec"]["manualSelector"] == json!(true) {
        return;
    }
    let uid = crate::object::meta_str(value, "uid").to_string();
    let name = crate::object::name(value).to_string();
    let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for (key, label) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.insert(key.into(), json!(label));
    }
}

fn template(spec: &mut Map<String, Value>) {
    let template = child(spec, "template");
    pod_spec(child(template, "spec"));
}

fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            default(container, "terminationMessagePath", json!("/dev/termination-log"));
            default(container, "terminationMessagePolicy", json!("File"));
            default(container, "resources", json!({}));
            let image = container.get("image").and_then(Value::as_str).unwrap_or("");
            // Go's rule: `:latest` or no tag pulls always; a tag or digest pulls if absent.
            let tag = image.rsplit('/').next().unwrap_or("");
            let pull = if image.contains('@') || tag.contains(':') && !tag.ends_with(":latest") {
                "IfNotPresent"
            } else {
                "Always"
            };
            default(container, "imagePullPolicy", json!(pull));
            if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(port, "protocol", json!("TCP"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn deployments_get_kube_defaults() {
        let info = registry::find("apps", "v1", "deployments").unwrap();
        let mut value = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        apply(info, &mut value);
        assert_eq!(value["spec"]["replicas"], 1);
        assert_eq!(value["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(value["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn jobs_select_their_pods_by_uid() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        job_selector(&mut job);
        assert_eq!(job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    }

    #[test]
    fn untagged_images_pull_always() {
        let info = registry::find("", "v1", "pods").unwrap();
        let mut value = json!({"spec": {"containers": [{"name": "c", "image": "registry:5000/nginx"}]}});
        apply(info, &mut value);
        assert_eq!(value["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }
}
