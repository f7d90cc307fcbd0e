//! The rules kube-apiserver's Service strategy and validation apply to the fields that the
//! allocators fill (`spec.clusterIP(s)`, `spec.ipFamilies`, `spec.ipFamilyPolicy`,
//! `spec.ports[].nodePort`, `spec.healthCheckNodePort`), read on the JSON form:
//!
//! - `clusterIP` and `clusterIPs` kept in step (`normalize_cluster_ips`);
//! - values the server allocated kept when a client resubmits an object without them, so
//!   `kubectl apply` and `replace` of the original manifest work (`patch_allocated_values`);
//! - values a new type no longer uses cleared when the client left them as they were
//!   (`drop_type_dependent_fields`);
//! - validation, with kube-apiserver's messages: types, cluster IPs, node ports, and a cluster
//!   IP that may not change once set.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::error::Cause;

pub const CLUSTER_IP: &str = "ClusterIP";
pub const NODE_PORT: &str = "NodePort";
pub const LOAD_BALANCER: &str = "LoadBalancer";
pub const EXTERNAL_NAME: &str = "ExternalName";
pub const NONE: &str = "None";

const TYPES: &[&str] = &[CLUSTER_IP, EXTERNAL_NAME, LOAD_BALANCER, NODE_PORT];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];

pub fn service_type(service: &Value) -> &str {
    service["spec"]["type"].as_str().unwrap_or(CLUSTER_IP)
}

/// Every type but ExternalName has cluster IPs (or is headless).
pub fn needs_cluster_ip(service: &Value) -> bool {
    service_type(service) != EXTERNAL_NAME
}

pub fn needs_node_ports(service: &Value) -> bool {
    matches!(service_type(service), NODE_PORT | LOAD_BALANCER)
}

/// Ports without a `nodePort` get one allocated (a LoadBalancer may opt out with
/// `allocateLoadBalancerNodePorts: false`; ports it names are still honoured).
pub fn allocates_node_ports(service: &Value) -> bool {
    match service_type(service) {
        NODE_PORT => true,
        LOAD_BALANCER => service["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// A LoadBalancer that keeps traffic on the node it arrives at has a health-check node port.
pub fn needs_health_check_node_port(service: &Value) -> bool {
    service_type(service) == LOAD_BALANCER && service["spec"]["externalTrafficPolicy"] == json!("Local")
}

pub fn cluster_ip(service: &Value) -> &str {
    service["spec"]["clusterIP"].as_str().unwrap_or("")
}

pub fn cluster_ips(service: &Value) -> Vec<String> {
    strings(&service["spec"]["clusterIPs"])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|list| list.iter().map(|item| item.as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

pub fn is_headless(service: &Value) -> bool {
    cluster_ip(service) == NONE
}

fn has_selector(service: &Value) -> bool {
    service["spec"]["selector"].as_object().is_some_and(|selector| !selector.is_empty())
}

/// `spec.ports[index].nodePort`, 0 when unset.
pub fn node_port(service: &Value, index: usize) -> i64 {
    service["spec"]["ports"][index]["nodePort"].as_i64().unwrap_or(0)
}

pub fn ports(service: &Value) -> &[Value] {
    service["spec"]["ports"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub fn health_check_node_port(service: &Value) -> i64 {
    service["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0)
}

fn spec_mut(service: &mut Value) -> &mut Map<String, Value> {
    if !service["spec"].is_object() {
        service["spec"] = json!({});
    }
    service["spec"].as_object_mut().expect("spec is an object")
}

pub fn set_cluster_ips(service: &mut Value, ips: &[String]) {
    let spec = spec_mut(service);
    match ips.first() {
        Some(first) => {
            spec.insert("clusterIP".into(), json!(first));
            spec.insert("clusterIPs".into(), json!(ips));
        }
        None => {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
}

pub fn set_node_port(service: &mut Value, index: usize, port: i64) {
    if let Some(entry) = service["spec"]["ports"].get_mut(index).and_then(Value::as_object_mut) {
        if port == 0 {
            entry.remove("nodePort");
        } else {
            entry.insert("nodePort".into(), json!(port));
        }
    }
}

pub fn set_health_check_node_port(service: &mut Value, port: i64) {
    let spec = spec_mut(service);
    if port == 0 {
        spec.remove("healthCheckNodePort");
    } else {
        spec.insert("healthCheckNodePort".into(), json!(port));
    }
}

/// Go's `%#v` of a `[]string`, as kube-apiserver's messages show a list value.
pub fn go_string_list(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".into();
    }
    let quoted: Vec<String> = values.iter().map(|value| format!("{value:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// kube-apiserver's `normalizeClusterIPs`: `clusterIPs` follows `clusterIP` when a client (an
/// old one, or one editing only the singular field) changed only that.
pub fn normalize_cluster_ips(old: Option<&Value>, service: &mut Value) {
    let ip = cluster_ip(service).to_string();
    let ips = cluster_ips(service);
    let Some(old) = old else {
        if !ip.is_empty() && ips.is_empty() {
            spec_mut(service).insert("clusterIPs".into(), json!([ip]));
        }
        return;
    };
    let old_ip = cluster_ip(old).to_string();
    let old_ips = cluster_ips(old);
    let mut ips = ips;
    if !old_ips.is_empty() && ips.is_empty() && old_ip == ip {
        ips = old_ips.clone();
        spec_mut(service).insert("clusterIPs".into(), json!(ips));
    }
    if old_ip != ip && ips == old_ips {
        if ip.is_empty() {
            spec_mut(service).remove("clusterIPs");
        } else {
            spec_mut(service).insert("clusterIPs".into(), json!([ip]));
        }
    }
}

/// kube-apiserver's `patchAllocatedValues`: what the server allocated stays when a client
/// resubmits the object without it (the cluster IP; node ports, matched by port name unless
/// the client gave that number to another port; the health-check node port).
pub fn patch_allocated_values(old: &Value, service: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(service) {
        if cluster_ip(service).is_empty() && !cluster_ip(old).is_empty() {
            spec_mut(service).insert("clusterIP".into(), json!(cluster_ip(old)));
        }
        if cluster_ips(service).is_empty() && !cluster_ips(old).is_empty() {
            spec_mut(service).insert("clusterIPs".into(), old["spec"]["clusterIPs"].clone());
        }
    }
    if needs_node_ports(old) && needs_node_ports(service) {
        let used_by = |value: &Value| -> Vec<i64> {
            (0..ports(value).len()).map(|index| node_port(value, index)).filter(|port| *port != 0).collect()
        };
        let new_used = used_by(service);
        let kept: Vec<i64> = used_by(old).into_iter().filter(|port| new_used.contains(port)).collect();
        let by_name: Vec<(String, i64)> = ports(old)
            .iter()
            .enumerate()
            .map(|(index, port)| (port["name"].as_str().unwrap_or("").to_string(), node_port(old, index)))
            .collect();
        for index in 0..ports(service).len() {
            if node_port(service, index) != 0 {
                continue;
            }
            let name = ports(service)[index]["name"].as_str().unwrap_or("").to_string();
            let old_port = by_name.iter().rev().find(|(old_name, _)| *old_name == name).map_or(0, |(_, port)| *port);
            if old_port != 0 && !kept.contains(&old_port) {
                set_node_port(service, index, old_port);
            }
        }
    }
    if needs_health_check_node_port(old)
        && needs_health_check_node_port(service)
        && health_check_node_port(service) == 0
    {
        set_health_check_node_port(service, health_check_node_port(old));
    }
}

/// kube-apiserver's `dropTypeDependentFields`: on a type change, the fields the new type does
/// not use are cleared, if the client left them as they were (it may not have known the server
/// filled them in).
pub fn drop_type_dependent_fields(old: &Value, service: &mut Value) {
    if needs_cluster_ip(old) && !needs_cluster_ip(service) {
        let spec = spec_mut(service);
        if spec.get("clusterIP") == old["spec"].get("clusterIP")
            && spec.get("clusterIPs") == old["spec"].get("clusterIPs")
        {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if spec.get("ipFamilies") == old["spec"].get("ipFamilies") {
            spec.remove("ipFamilies");
        }
        if spec.get("ipFamilyPolicy") == old["spec"].get("ipFamilyPolicy") {
            spec.remove("ipFamilyPolicy");
        }
    }
    if needs_node_ports(old) && !needs_node_ports(service) {
        let same = ports(old).len() == ports(service).len()
            && (0..ports(old).len()).all(|index| node_port(old, index) == node_port(service, index));
        if same {
            for index in 0..ports(service).len() {
                set_node_port(service, index, 0);
            }
        }
    }
    if needs_health_check_node_port(old)
        && !needs_health_check_node_port(service)
        && health_check_node_port(old) == health_check_node_port(service)
    {
        set_health_check_node_port(service, 0);
    }
    let externally_accessible = |value: &Value| needs_node_ports(value);
    if externally_accessible(old)
        && !externally_accessible(service)
        && service["spec"].get("externalTrafficPolicy") == old["spec"].get("externalTrafficPolicy")
    {
        spec_mut(service).remove("externalTrafficPolicy");
    }
    if service_type(old) == LOAD_BALANCER
        && service_type(service) != LOAD_BALANCER
        && service["spec"].get("allocateLoadBalancerNodePorts") == old["spec"].get("allocateLoadBalancerNodePorts")
    {
        spec_mut(service).remove("allocateLoadBalancerNodePorts");
    }
}

/// kube-apiserver's `initIPFamilyFields` on a single-stack cluster of `family`: defaults
/// `ipFamilyPolicy` and `ipFamilies`, and refuses what the cluster cannot give.
pub fn init_ip_families(old: Option<&Value>, service: &mut Value, family: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !needs_cluster_ip(service) {
        return causes;
    }
    let headless_selectorless = is_headless(service) && !has_selector(service);
    if service["spec"]["ipFamilyPolicy"].as_str().is_none() {
        let policy = match old.and_then(|old| old["spec"]["ipFamilyPolicy"].as_str()) {
            Some(policy) => policy.to_string(),
            None if headless_selectorless => "RequireDualStack".into(),
            None => "SingleStack".into(),
        };
        spec_mut(service).insert("ipFamilyPolicy".into(), json!(policy));
    }
    let policy = service["spec"]["ipFamilyPolicy"].as_str().unwrap_or("SingleStack").to_string();
    let mut families = strings(&service["spec"]["ipFamilies"]);
    if headless_selectorless {
        // Headless without a selector: the endpoints may be of either family.
        if families.is_empty() {
            families.push(family.to_string());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let missing = if families[0] == "IPv4" { "IPv6" } else { "IPv4" };
            families.push(missing.to_string());
        }
        spec_mut(service).insert("ipFamilies".into(), json!(families));
        return causes;
    }
    if policy == "SingleStack" && cluster_ips(service).len() > 1 {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &policy,
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
        ));
    }
    if policy == "RequireDualStack" {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &policy,
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (index, ip) in cluster_ips(service).iter().enumerate() {
        if ip == NONE {
            break;
        }
        let Ok(address) = ip.parse::<IpAddr>() else { continue };
        let ip_family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
        if index >= families.len() {
            if ip_family == family {
                families.push(ip_family.to_string());
            } else {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: format!("spec.clusterIPs[{index}]"),
                    message: format!(
                        "Invalid value: {}: {ip_family} is not configured on this cluster",
                        go_string_list(&cluster_ips(service))
                    ),
                });
            }
        }
    }
    for (index, requested) in families.iter().enumerate() {
        if requested != family {
            causes.push(Cause::invalid(
                &format!("spec.ipFamilies[{index}]"),
                requested,
                "not configured on this cluster",
            ));
        }
    }
    if families.is_empty() {
        families.push(family.to_string());
    }
    spec_mut(service).insert("ipFamilies".into(), json!(families));
    causes
}

/// kube-apiserver's `ValidateServiceClusterIPsRelatedFields`: the checks that must pass before
/// any address is allocated.
pub fn validate_cluster_ips(service: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !needs_cluster_ip(service) {
        return causes;
    }
    let ip = cluster_ip(service);
    let ips = cluster_ips(service);
    let shown = go_string_list(&ips);
    let invalid = |field: &str, detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {shown}: {detail}"),
    };
    if !ip.is_empty() {
        match ips.first() {
            None => causes.push(Cause::required("spec.clusterIPs", "")),
            Some(first) if first != ip => causes.push(invalid("spec.clusterIPs", "first value must match `clusterIP`")),
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        causes.push(invalid("spec.clusterIPs", "must be empty when `clusterIP` is not specified"));
    }
    for (index, family) in strings(&service["spec"]["ipFamilies"]).iter().enumerate() {
        if !IP_FAMILIES.contains(&family.as_str()) {
            causes.push(not_supported(&format!("spec.ipFamilies[{index}]"), family, IP_FAMILIES));
        }
    }
    if let Some(policy) = service["spec"]["ipFamilyPolicy"].as_str() {
        if !IP_FAMILY_POLICIES.contains(&policy) {
            causes.push(not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES));
        }
    }
    for (index, address) in ips.iter().enumerate() {
        if index == 0 && address == NONE {
            if ips.len() > 1 {
                causes.push(invalid("spec.clusterIPs", "'None' must be the first and only value"));
            }
            continue;
        }
        if address.parse::<IpAddr>().is_err() {
            causes.push(Cause::invalid(
                &format!("spec.clusterIPs[{index}]"),
                address,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if ips.len() > 2 {
        causes.push(invalid("spec.clusterIPs", "may only hold up to 2 values"));
    }
    causes
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let quoted: Vec<String> = supported.iter().map(|value| format!("{value:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        field: field.to_string(),
        message: format!("Unsupported value: {value:?}: supported values: {}", quoted.join(", ")),
    }
}

fn forbidden(field: &str, detail: &str) -> Cause {
    Cause { reason: "FieldValueForbidden", field: field.to_string(), message: format!("Forbidden: {detail}") }
}

/// The Service rules of kube-apiserver's `ValidateService` / `ValidateServiceUpdate` that
/// concern types, addresses and node ports.
pub fn validate(service: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let kind = service_type(service);
    if !TYPES.contains(&kind) {
        causes.push(not_supported("spec.type", kind, TYPES));
        return;
    }
    if kind == EXTERNAL_NAME {
        if service["spec"]["externalName"].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required("spec.externalName", ""));
        }
        if !cluster_ip(service).is_empty() || !cluster_ips(service).is_empty() {
            causes.push(forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
        }
    } else {
        causes.extend(validate_cluster_ips(service));
    }
    if is_headless(service) && matches!(kind, NODE_PORT | LOAD_BALANCER) {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            NONE,
            &format!("may not be set to 'None' for {kind} services"),
        ));
    }
    for index in 0..ports(service).len() {
        let port = node_port(service, index);
        if port == 0 {
            continue;
        }
        let field = format!("spec.ports[{index}].nodePort");
        if kind == CLUSTER_IP {
            causes.push(forbidden(&field, "may not be used when `type` is 'ClusterIP'"));
        } else if !(1..=65535).contains(&port) {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field,
                message: format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
            });
        }
    }
    let health_check = health_check_node_port(service);
    if health_check != 0 && !needs_health_check_node_port(service) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.healthCheckNodePort".into(),
            message: format!(
                "Invalid value: {health_check}: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
            ),
        });
    }
    if let Some(policy) = service["spec"]["externalTrafficPolicy"].as_str() {
        if !needs_node_ports(service) {
            causes.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                policy,
                "may only be set for externally-accessible services",
            ));
        } else if !["Cluster", "Local"].contains(&policy) {
            causes.push(not_supported("spec.externalTrafficPolicy", policy, &["Cluster", "Local"]));
        }
    }
    if let Some(old) = old {
        validate_cluster_ips_update(old, service, causes);
    }
}

/// kube-apiserver's `validateUpgradeDowngradeClusterIPs` on a single-stack cluster: a cluster
/// IP may not change once set.
fn validate_cluster_ips_update(old: &Value, service: &Value, causes: &mut Vec<Cause>) {
    if !needs_cluster_ip(service) || !needs_cluster_ip(old) || (is_headless(old) && is_headless(service)) {
        return;
    }
    let old_ips = cluster_ips(old);
    let ips = cluster_ips(service);
    let invalid = |detail: &str, index: usize| Cause {
        reason: "FieldValueInvalid",
        field: format!("spec.clusterIPs[{index}]"),
        message: format!("Invalid value: {}: {detail}", go_string_list(&ips)),
    };
    if old_ips.len() == ips.len() {
        for (index, ip) in old_ips.iter().enumerate() {
            if *ip != ips[index] {
                causes.push(invalid("may not change once set", index));
            }
        }
    } else if old_ips.len() > ips.len() {
        if ips.is_empty() {
            causes.push(invalid("primary clusterIP can not be unset", 0));
        } else if ips[0] != old_ips[0] {
            causes.push(invalid("may not change once set", 0));
        }
    } else if !old_ips.is_empty() && ips[0] != old_ips[0] {
        causes.push(invalid("may not change once set", 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(service: &Value, old: Option<&Value>) -> Vec<String> {
        let mut causes = Vec::new();
        validate(service, old, &mut causes);
        causes.into_iter().map(|cause| format!("{}: {}", cause.field, cause.message)).collect()
    }

    #[test]
    fn resubmitting_without_allocated_values_keeps_them() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30100}, {"name": "dns", "port": 53, "nodePort": 30101}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "nodePort": 30100}]}});
        patch_allocated_values(&old, &mut new);
        normalize_cluster_ips(Some(&old), &mut new);
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.7"]));
        assert_eq!(new["spec"]["ports"][0].get("nodePort"), None, "30100 was given to another port");
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30100);
    }

    #[test]
    fn a_new_type_drops_what_it_does_not_use() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
            "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "nodePort": 30100}]}});
        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&old, &mut to_cluster_ip);
        assert_eq!(to_cluster_ip["spec"]["ports"][0].get("nodePort"), None);
        assert_eq!(to_cluster_ip["spec"].get("externalTrafficPolicy"), None);
        assert_eq!(to_cluster_ip["spec"]["clusterIP"], "10.96.0.7");
        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        drop_type_dependent_fields(&old, &mut to_external);
        assert_eq!(to_external["spec"].get("clusterIP"), None);
    }

    #[test]
    fn kube_messages() {
        let service = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
            "ports": [{"port": 80, "nodePort": 30001}]}});
        let old = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.8", "clusterIPs": ["10.96.0.8"]}});
        assert_eq!(
            messages(&service, Some(&old)),
            vec![
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.9\"}: may not change once set",
            ]
        );
        let bad = json!({"spec": {"type": "Bogus"}});
        assert_eq!(
            messages(&bad, None),
            vec!["spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
        );
        let headless = json!({"spec": {"type": "NodePort", "clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(
            messages(&headless, None),
            vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
        );
        let malformed = json!({"spec": {"clusterIP": "10.96.0.300", "clusterIPs": ["10.96.0.300"]}});
        assert_eq!(
            messages(&malformed, None),
            vec!["spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
        );
    }

    #[test]
    fn ip_families_default_as_on_a_single_stack_cluster() {
        let mut service = json!({"spec": {"selector": {"app": "a"}}});
        assert!(init_ip_families(None, &mut service, "IPv4").is_empty());
        assert_eq!(service["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(service["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert!(init_ip_families(None, &mut headless, "IPv4").is_empty());
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
        let mut dual = json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "selector": {"app": "a"}}});
        assert_eq!(init_ip_families(None, &mut dual, "IPv4").len(), 1);
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        init_ip_families(None, &mut external, "IPv4");
        assert_eq!(external["spec"].get("ipFamilies"), None);
    }
}
