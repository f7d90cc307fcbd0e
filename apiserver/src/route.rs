//! Request paths to what they name. Kubernetes' REST paths are regular enough to parse by hand:
//! `/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]`, and `/apis/GROUP/VERSION/...` alike.

use crate::registry::{self, ResourceInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/GROUP`
    Group(String),
    /// `/api/v1`, `/apis/GROUP/VERSION`
    Resources {
        group: String,
        version: String,
    },
    /// A served resource's collection, object or subresource.
    Resource(ResourcePath),
    /// A path under a known group version that names no served resource.
    UnknownResource(String),
    Version,
    Health(String),
    OpenApiV2,
    OpenApiV3Root,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`
    OpenApiV3 {
        group: String,
        version: String,
    },
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// The namespace the path names; None for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|segment| !segment.is_empty()).collect();
    match segments.as_slice() {
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::Resources { group: String::new(), version: version.to_string() },
        ["apis", group, version] => Route::Resources { group: group.to_string(), version: version.to_string() },
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        ["version"] => Route::Version,
        [check @ ("healthz" | "livez" | "readyz"), ..] => Route::Health(check.to_string()),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", "api", version] => Route::OpenApiV3 { group: String::new(), version: version.to_string() },
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiV3 { group: group.to_string(), version: version.to_string() }
        }
        _ => Route::NotFound,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let known = |plural: &str| registry::find(group, version, plural);
    let path = |info, namespace: Option<&str>, name: Option<&str>, subresource: Option<&str>| {
        Route::Resource(ResourcePath {
            info,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: subresource.map(str::to_string),
        })
    };
    let unknown = || Route::UnknownResource(rest.join("/"));
    match rest {
        // `/namespaces/NS/status` and `/namespaces/NS/finalize` are the namespace's own subresources.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            known("namespaces").map_or_else(unknown, |info| path(info, None, Some(name), Some(sub)))
        }
        ["namespaces", namespace, plural, tail @ ..] => match known(plural) {
            Some(info) if info.namespaced => match tail {
                [] => path(info, Some(namespace), None, None),
                [name] => path(info, Some(namespace), Some(name), None),
                [name, sub] => path(info, Some(namespace), Some(name), Some(sub)),
                _ => unknown(),
            },
            _ => unknown(),
        },
        [plural] => known(plural).map_or_else(unknown, |info| path(info, None, None, None)),
        [plural, name] => match known(plural) {
            Some(info) if !info.namespaced => path(info, None, Some(name), None),
            _ => unknown(),
        },
        [plural, name, sub] => match known(plural) {
            Some(info) if !info.namespaced => path(info, None, Some(name), Some(sub)),
            _ => unknown(),
        },
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource_of(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
        match parse(path) {
            Route::Resource(found) => (found.info.plural.to_string(), found.namespace, found.name, found.subresource),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api"), Route::CoreVersions);
        assert_eq!(parse("/apis/apps/v1"), Route::Resources { group: "apps".into(), version: "v1".into() });
        assert_eq!(resource_of("/api/v1/pods"), ("pods".into(), None, None, None));
        assert_eq!(resource_of("/api/v1/namespaces"), ("namespaces".into(), None, None, None));
        assert_eq!(
            resource_of("/api/v1/namespaces/kube-system"),
            ("namespaces".into(), None, Some("kube-system".into()), None)
        );
        assert_eq!(
            resource_of("/api/v1/namespaces/a/status"),
            ("namespaces".into(), None, Some("a".into()), Some("status".into()))
        );
        assert_eq!(resource_of("/api/v1/namespaces/a/pods"), ("pods".into(), Some("a".into()), None, None));
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/a/deployments/web/scale"),
            ("deployments".into(), Some("a".into()), Some("web".into()), Some("scale".into()))
        );
        assert_eq!(
            resource_of("/api/v1/nodes/n1/status"),
            ("nodes".into(), None, Some("n1".into()), Some("status".into()))
        );
        assert!(matches!(parse("/api/v1/namespaces/a/bogus"), Route::UnknownResource(_)));
        assert!(matches!(parse("/api/v1/pods/x"), Route::UnknownResource(_)));
        assert_eq!(parse("/livez/ping"), Route::Health("livez".into()));
    }
}
