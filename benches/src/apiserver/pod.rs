//! The pod the benchmark writes: two containers with resources, probes, env and labels, about
//! 1.3 KB of JSON as sent (kube-apiserver adds defaults and managedFields to what it stores).

use bytes::Bytes;

pub fn pod(namespace: &str, name: &str, index: u64) -> Bytes {
    let json = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": format!("app-{}", index % 100), "tier": "bench", "shard": (index % 16).to_string()},
            "annotations": {"bench.keel.dev/index": index.to_string()},
        },
        "spec": {
            "nodeName": format!("node-{}", index % 500),
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/bench/app:1.2.3",
                    "args": ["--port=8080", "--log-level=info"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "POD_INDEX", "value": index.to_string()}, {"name": "MODE", "value": "bench"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
                },
                {
                    "name": "sidecar",
                    "image": "registry.example.com/bench/sidecar:4.5.6",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                },
            ],
        },
    });
    Bytes::from(serde_json::to_vec(&json).expect("a JSON value encodes"))
}
