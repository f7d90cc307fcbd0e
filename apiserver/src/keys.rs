//! Where objects live in the store: `/registry/<resource>/<namespace>/<name>` for namespaced
//! resources, `/registry/<resource>/<name>` for cluster-scoped ones (kube-apiserver's layout,
//! with each resource under its own plural).

use bytes::Bytes;

use crate::registry::ResourceInfo;

pub fn object_key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Bytes {
    match namespace.filter(|_| info.namespaced) {
        Some(namespace) => Bytes::from(format!("{}{namespace}/{name}", info.key_prefix())),
        None => Bytes::from(format!("{}{name}", info.key_prefix())),
    }
}

/// The prefix of a collection: every object of the resource, or those of one namespace.
pub fn collection_prefix(info: &ResourceInfo, namespace: Option<&str>) -> Bytes {
    match namespace.filter(|_| info.namespaced) {
        Some(namespace) => Bytes::from(format!("{}{namespace}/", info.key_prefix())),
        None => Bytes::from(info.key_prefix()),
    }
}

/// The end of the key range of a prefix.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    Bytes::from(store::prefix_end(prefix).expect("a registry prefix has an end"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn layout() {
        let pods = registry::find("", "v1", "pods").unwrap();
        let nodes = registry::find("", "v1", "nodes").unwrap();
        assert_eq!(object_key(pods, Some("ns"), "p"), "/registry/pods/ns/p");
        assert_eq!(object_key(nodes, None, "n"), "/registry/nodes/n");
        assert_eq!(collection_prefix(pods, Some("ns")), "/registry/pods/ns/");
        assert_eq!(collection_prefix(pods, None), "/registry/pods/");
        assert_eq!(prefix_end(b"/registry/pods/"), "/registry/pods0");
    }
}
