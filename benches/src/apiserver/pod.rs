//! The pod the benchmark writes: two containers with resources, probes, env and labels, about
//! 1.3 KB of JSON as sent (kube-apiserver adds defaults and managedFields to what it stores).
//!
//! The body is formatted as text rather than built as a `serde_json::Value` and encoded: the
//! load generator shares the two cores with the server it measures, so what it spends per
//! request is taken from the server.

use bytes::Bytes;

/// `namespace` and `name` are the benchmark's own (`[a-z0-9-]`), so they need no escaping.
pub fn pod(namespace: &str, name: &str, index: u64) -> Bytes {
    let (app, shard, node) = (index % 100, index % 16, index % 500);
    Bytes::from(format!(
        concat!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{namespace}","#,
            r#""labels":{{"app":"app-{app}","tier":"bench","shard":"{shard}"}},"#,
            r#""annotations":{{"bench.keel.dev/index":"{index}"}}}},"#,
            r#""spec":{{"nodeName":"node-{node}","containers":["#,
            r#"{{"name":"app","image":"registry.example.com/bench/app:1.2.3","#,
            r#""args":["--port=8080","--log-level=info"],"#,
            r#""ports":[{{"name":"http","containerPort":8080,"protocol":"TCP"}}],"#,
            r#""env":[{{"name":"POD_INDEX","value":"{index}"}},{{"name":"MODE","value":"bench"}}],"#,
            r#""resources":{{"requests":{{"cpu":"100m","memory":"128Mi"}},"limits":{{"memory":"256Mi"}}}},"#,
            r#""readinessProbe":{{"httpGet":{{"path":"/ready","port":8080}},"periodSeconds":10}}}},"#,
            r#"{{"name":"sidecar","image":"registry.example.com/bench/sidecar:4.5.6","#,
            r#""resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}}}}}}]}}}}"#,
        ),
        name = name,
        namespace = namespace,
        app = app,
        shard = shard,
        index = index,
        node = node,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn the_pod_is_json_with_its_name_labels_and_both_containers() {
        let pod: Value = serde_json::from_slice(&super::pod("bench", "pod-0000117", 117)).unwrap();
        assert_eq!(pod["metadata"]["name"], "pod-0000117");
        assert_eq!(pod["metadata"]["namespace"], "bench");
        assert_eq!(pod["metadata"]["labels"], json!({"app": "app-17", "tier": "bench", "shard": "5"}));
        assert_eq!(pod["metadata"]["annotations"]["bench.keel.dev/index"], "117");
        assert_eq!(pod["spec"]["nodeName"], "node-117");
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["env"][0], json!({"name": "POD_INDEX", "value": "117"}));
        assert_eq!(containers[0]["readinessProbe"]["httpGet"]["port"], 8080);
        assert_eq!(containers[1]["resources"]["requests"]["memory"], "16Mi");
    }
}
