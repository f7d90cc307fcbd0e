//! The patch merge keys and strategies of the served types' list fields: the facts strategic
//! merge patch needs and k8s-openapi does not carry (Go's `patchStrategy`/`patchMergeKey` struct
//! tags). Lists not named here are atomic: a patch replaces them whole.

/// How a strategic merge patch treats a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the object's.
    Replace,
    /// Elements are objects matched by this key; matching elements merge, others are added.
    MergeByKey(&'static str),
    /// A list of scalars merged as a set (finalizers).
    MergeScalars,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The strategy of the list at `path`: field names from the object's root, list indices left out
/// (`spec.template.spec.containers` is `["spec", "template", "spec", "containers"]`).
pub fn list_strategy(path: &[String]) -> ListStrategy {
    let Some(field) = path.last().map(String::as_str) else { return ListStrategy::Replace };
    let parent = path.len().checked_sub(2).map(|index| path[index].as_str()).unwrap_or("");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "conditions" | "addresses" => ListStrategy::MergeByKey("type"),
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeByKey("containerPort"),
        "ports" if path.len() == 2 && parent == "spec" => ListStrategy::MergeByKey("port"),
        "finalizers" if parent == "metadata" => ListStrategy::MergeScalars,
        "podCIDRs" => ListStrategy::MergeScalars,
        _ => ListStrategy::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('.').map(str::to_string).collect()
    }

    #[test]
    fn table() {
        assert_eq!(list_strategy(&path("spec.template.spec.containers")), ListStrategy::MergeByKey("name"));
        assert_eq!(list_strategy(&path("spec.containers.ports")), ListStrategy::MergeByKey("containerPort"));
        assert_eq!(list_strategy(&path("spec.ports")), ListStrategy::MergeByKey("port"));
        assert_eq!(list_strategy(&path("metadata.finalizers")), ListStrategy::MergeScalars);
        assert_eq!(list_strategy(&path("spec.finalizers")), ListStrategy::Replace);
        assert_eq!(list_strategy(&path("spec.tolerations")), ListStrategy::Replace);
    }
}
