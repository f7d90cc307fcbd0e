//! Service cluster IPs and node ports, allocated and released in the same store txn as the
//! Service write that takes or gives them up.
//!
//! **Why this is race-free.** Every allocated value is one key (`service_ip.rs`,
//! `node_ports.rs`). A write that takes a value includes, in its txn, the compare "this key does
//! not exist" (`create_revision == 0`) and the put of the key, next to the Service's own compare
//! (absent for a create, unchanged since it was read for an update) and put. Raft orders txns,
//! so of two writes that want the same value, one commits and the other's compare fails and
//! nothing of it is written: it then chooses again (a value it chose itself) or answers 422 (a
//! value its client asked for). A write that gives a value up deletes the key in the txn that
//! removes it from the Service (or deletes the Service), so a key exists exactly while a stored
//! Service holds its value, and no repair loop is needed. kube-apiserver instead CAS-updates a
//! bitmap (or creates an IPAddress object) before the Service write and undoes it on failure,
//! with a repair controller for what a crash in between leaks; with one txn there is no in
//! between. One key per value, rather than one bitmap, also means two creates conflict only
//! when they want the same value, not whenever they run at once.
//!
//! Releases delete a key only if it still holds this Service's record (a nested txn comparing
//! the value), so a Service stored before keel allocated (with a cluster IP it was never given)
//! cannot free a value another Service holds.
//!
//! Worked example, two `kubectl create service nodeport` at once, both choosing 31000:
//! 1. A commits: `svc/a` absent, `nodeports/31000` absent → puts both.
//! 2. B's txn: `svc/b` absent holds, `nodeports/31000` absent fails → B writes nothing; the
//!    txn's failure branch reads both keys back, so B sees which compare failed.
//! 3. B marks 31000 taken, chooses 31422, commits. Had B's client asked for 31000, B would
//!    answer `spec.ports[0].nodePort: Invalid value: 31000: provided port is already allocated`.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use bytes::Bytes;
use rand::Rng;
use serde_json::Value;

use crate::error::{Cause, Error, ObjectRef, Result};
use crate::node_ports::{self, PortRange};
use crate::registry::ResourceInfo;
use crate::service_ip::{self, ServiceCidr};
use crate::service_spec as spec;
use crate::state::{storage_error, ApiState};
use crate::storage::{Condition, StorageError, StorageResult, Write};
use crate::{keys, object};

/// Commits of one Service write whose own choices another write took first; each retry
/// chooses again, so only a nearly full range under contention runs out.
const COMMIT_ATTEMPTS_MAX: usize = 16;
/// Keys per page when reading which values are taken.
const SCAN_PAGE_KEYS: i64 = 1000;
/// Values one Service may hold, and one Service write take and give up: each is a compare and
/// a write (or a nested txn) of one txn, which the store bounds (`--max-txn-ops`, 128 by
/// default).
const VALUES_PER_WRITE_MAX: usize = 100;

/// The ranges Services get their values from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub cidr: ServiceCidr,
    pub node_ports: PortRange,
}

impl Default for ServiceNetwork {
    fn default() -> ServiceNetwork {
        ServiceNetwork {
            cidr: ServiceCidr::parse("10.96.0.0/12").expect("the default range parses"),
            node_ports: PortRange::DEFAULT,
        }
    }
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

/// One allocated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Allocated {
    Ip(IpAddr),
    Port(u16),
}

impl Allocated {
    fn key(&self) -> Bytes {
        match self {
            Allocated::Ip(address) => service_ip::key(*address),
            Allocated::Port(port) => node_ports::key(*port),
        }
    }

    /// The record that says `service` holds it.
    fn record(&self, network: &ServiceNetwork, service: &Value) -> Bytes {
        let (namespace, name) = (object::namespace(service), object::name(service));
        match self {
            Allocated::Ip(address) => service_ip::record(*address, network.cidr.family(), namespace, name),
            Allocated::Port(_) => node_ports::record(namespace, name),
        }
    }
}

/// The values a Service object holds: its cluster IPs and node ports (whatever the range: a
/// value of an earlier range is still held until released).
fn held(service: &Value) -> BTreeSet<Allocated> {
    let mut values = BTreeSet::new();
    if spec::needs_cluster_ip(service) {
        for ip in spec::cluster_ips(service) {
            if let Ok(address) = ip.parse::<IpAddr>() {
                values.insert(Allocated::Ip(address));
            }
        }
    }
    let ports = (0..spec::ports(service).len()).map(|index| spec::node_port(service, index));
    for port in ports.chain([spec::health_check_node_port(service)]) {
        if let Ok(port) = u16::try_from(port) {
            if port != 0 {
                values.insert(Allocated::Port(port));
            }
        }
    }
    values
}

/// Where a node port this write chose is written in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortUse {
    Port(usize),
    HealthCheck,
}

/// A Service write's allocations: what the stored version holds, and the values this write
/// chose itself (which it may choose again if another write takes them first).
#[derive(Debug)]
pub struct Plan {
    network: ServiceNetwork,
    old: BTreeSet<Allocated>,
    chosen_ip: Option<IpAddr>,
    chosen_ports: Vec<(u16, Vec<PortUse>)>,
    /// Values known to be taken, read once when this write first chooses one.
    taken: Option<HashSet<Allocated>>,
}

/// kube-apiserver's update preparation of a Service (`patchAllocatedValues`,
/// `normalizeClusterIPs`, `dropTypeDependentFields`), before its managed fields are recorded.
pub fn before_update(info: &ResourceInfo, old: &Value, service: &mut Value) {
    if !is_service(info) {
        return;
    }
    spec::patch_allocated_values(old, service);
    spec::normalize_cluster_ips(Some(old), service);
    spec::drop_type_dependent_fields(old, service);
}

fn invalid(service: &Value, causes: Vec<Cause>) -> Error {
    Error::Invalid {
        object: ObjectRef { group: "", plural: "services", kind: "Service", name: object::name(service).into() },
        causes,
    }
}

fn ip_cause(service: &Value, address: IpAddr, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: "spec.clusterIPs".into(),
        message: format!(
            "Invalid value: {}: failed to allocate IP {address}: {detail}",
            spec::go_string_list(&spec::cluster_ips(service))
        ),
    }
}

/// The error of a requested value that cannot be had, as kube-apiserver words it.
fn unavailable(service: &Value, value: Allocated, detail: &str) -> Error {
    match value {
        Allocated::Ip(address) => invalid(service, vec![ip_cause(service, address, detail)]),
        Allocated::Port(port) => {
            let index = (0..spec::ports(service).len()).find(|index| spec::node_port(service, *index) == port as i64);
            match index {
                Some(index) => invalid(
                    service,
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: format!("spec.ports[{index}].nodePort"),
                        message: format!("Invalid value: {port}: {detail}"),
                    }],
                ),
                None => Error::Internal(format!("failed to allocate requested HealthCheck NodePort {port}: {detail}")),
            }
        }
    }
}

const IP_TAKEN: &str = "provided IP is already allocated";
const PORT_TAKEN: &str = "provided port is already allocated";

/// Fills in and checks a Service's cluster IP, IP families and node ports before it is validated
/// and written (kube-apiserver's `BeginCreate` / `BeginUpdate`): what the client asked for must
/// be in range and free; what it left out is chosen. None for other resources.
pub async fn prepare(
    state: &ApiState,
    info: &ResourceInfo,
    old: Option<&Value>,
    service: &mut Value,
) -> Result<Option<Plan>> {
    if !is_service(info) {
        return Ok(None);
    }
    let network = state.service_network;
    if old.is_none() {
        spec::normalize_cluster_ips(None, service);
    }
    let mut causes = spec::init_ip_families(old, service, network.cidr.family());
    causes.extend(spec::validate_cluster_ips(service));
    if !causes.is_empty() {
        return Err(invalid(service, causes));
    }
    let mut plan = Plan {
        network,
        old: old.map(held).unwrap_or_default(),
        chosen_ip: None,
        chosen_ports: Vec::new(),
        taken: None,
    };
    // A cluster IP: when the type needs one and the client named none (on create, or on an
    // update from ExternalName; otherwise it may not change and validation says so).
    let gains_cluster_ip = spec::needs_cluster_ip(service) && old.is_none_or(|old| !spec::needs_cluster_ip(old));
    if gains_cluster_ip && spec::cluster_ip(service).is_empty() {
        let address = plan.choose_ip(state).await?;
        plan.chosen_ip = Some(address);
        spec::set_cluster_ips(service, &[address.to_string()]);
    }
    if spec::needs_node_ports(service) {
        plan.fill_node_ports(state, service).await?;
    }
    // What this write takes that the stored version does not hold: a value the client named
    // must be in range and free (the txn checks again; this answers before validation, as
    // kube-apiserver's allocators do).
    let now = held(service);
    let gained: Vec<Allocated> = now.difference(&plan.old).copied().collect();
    let given_up = plan.old.difference(&now).count();
    // Bounds both this write and the delete that will give everything back.
    let values = now.len().max(gained.len() + given_up);
    if values > VALUES_PER_WRITE_MAX {
        return Err(invalid(
            service,
            vec![Cause {
                reason: "FieldValueTooMany",
                field: "spec.ports".into(),
                message: format!("Too many: {values}: must have at most {VALUES_PER_WRITE_MAX} items"),
            }],
        ));
    }
    for value in gained.iter().filter(|value| !plan.is_chosen(**value)) {
        if matches!(value, Allocated::Ip(_)) && !gains_cluster_ip {
            // A cluster IP may not change once set: validation says so.
            continue;
        }
        match value {
            Allocated::Ip(address) if network.cidr.offset(*address).is_none() => {
                let detail = format!(
                    "the provided IP ({address}) is not in the valid range. The range of valid IPs is {}",
                    network.cidr
                );
                return Err(unavailable(service, *value, &detail));
            }
            Allocated::Port(port) if !network.node_ports.contains(*port as i64) => {
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}",
                    network.node_ports
                );
                return Err(unavailable(service, *value, &detail));
            }
            _ => {}
        }
        let existing = state
            .storage
            .get(value.key())
            .await
            .map_err(|error| storage_error(ObjectRef::new(info, object::name(service)), error))?;
        if existing.is_some() {
            let detail = if matches!(value, Allocated::Ip(_)) { IP_TAKEN } else { PORT_TAKEN };
            return Err(unavailable(service, *value, detail));
        }
    }
    Ok(Some(plan))
}

impl Plan {
    fn is_chosen(&self, value: Allocated) -> bool {
        match value {
            Allocated::Ip(address) => self.chosen_ip == Some(address),
            Allocated::Port(port) => self.chosen_ports.iter().any(|(chosen, _)| *chosen == port),
        }
    }

    /// Node ports for the ports without one: a port shares the node port of another with the
    /// same port number (TCP and UDP 53), else gets its own; and the health-check node port.
    async fn fill_node_ports(&mut self, state: &ApiState, service: &mut Value) -> Result<()> {
        let count = spec::ports(service).len();
        if spec::allocates_node_ports(service) {
            for index in 0..count {
                if spec::node_port(service, index) != 0 {
                    continue;
                }
                let number = &spec::ports(service)[index]["port"];
                let shared = (0..count)
                    .find(|other| {
                        spec::ports(service)[*other]["port"] == *number && spec::node_port(service, *other) != 0
                    })
                    .map(|other| spec::node_port(service, other));
                match shared {
                    Some(port) => {
                        spec::set_node_port(service, index, port);
                        if let Some((_, uses)) = self.chosen_ports.iter_mut().find(|(chosen, _)| *chosen as i64 == port)
                        {
                            uses.push(PortUse::Port(index));
                        }
                    }
                    None => {
                        let port = self.choose_port(state, service).await?;
                        spec::set_node_port(service, index, port as i64);
                        self.chosen_ports.push((port, vec![PortUse::Port(index)]));
                    }
                }
            }
        }
        if spec::needs_health_check_node_port(service) && spec::health_check_node_port(service) == 0 {
            let port = self.choose_port(state, service).await?;
            spec::set_health_check_node_port(service, port as i64);
            self.chosen_ports.push((port, vec![PortUse::HealthCheck]));
        }
        Ok(())
    }

    /// The values known to be taken: read from the store the first time.
    async fn taken(&mut self, state: &ApiState) -> Result<&mut HashSet<Allocated>> {
        if self.taken.is_none() {
            let mut taken = HashSet::new();
            for prefix in [service_ip::KEY_PREFIX, node_ports::KEY_PREFIX] {
                for key in scan_keys(state, prefix).await? {
                    let suffix = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    if let Ok(address) = suffix.parse::<IpAddr>() {
                        taken.insert(Allocated::Ip(address));
                    } else if let Ok(port) = suffix.parse::<u16>() {
                        taken.insert(Allocated::Port(port));
                    }
                }
            }
            self.taken = Some(taken);
        }
        Ok(self.taken.as_mut().expect("just loaded"))
    }

    async fn choose_ip(&mut self, state: &ApiState) -> Result<IpAddr> {
        let cidr = self.network.cidr;
        let taken = self.taken(state).await?;
        let offset = choose(cidr.size(), cidr.static_size(), |offset| {
            let address = cidr.address(offset).expect("offsets below the size are in range");
            !taken.contains(&Allocated::Ip(address))
        });
        let address = offset
            .and_then(|offset| cidr.address(offset))
            .ok_or_else(|| Error::Internal("failed to allocate a serviceIP: range is full".into()))?;
        taken.insert(Allocated::Ip(address));
        Ok(address)
    }

    /// A free node port, none of those `service` already names.
    async fn choose_port(&mut self, state: &ApiState, service: &Value) -> Result<u16> {
        let range = self.network.node_ports;
        let named = held(service);
        let taken = self.taken(state).await?;
        let offset = choose(range.size as u128, range.static_size() as u128, |offset| {
            let port = Allocated::Port(range.base + offset as u16);
            !taken.contains(&port) && !named.contains(&port)
        });
        let port = offset
            .map(|offset| range.base + offset as u16)
            .ok_or_else(|| Error::Internal("failed to allocate a nodePort: range is full".into()))?;
        taken.insert(Allocated::Port(port));
        Ok(port)
    }

    /// Another write took `value`, which this write chose: choose again and rewrite the object.
    /// False if this write did not choose it (its client asked for it).
    async fn choose_again(&mut self, state: &ApiState, service: &mut Value, value: Allocated) -> Result<bool> {
        self.taken(state).await?.insert(value);
        match value {
            Allocated::Ip(address) if self.chosen_ip == Some(address) => {
                let address = self.choose_ip(state).await?;
                self.chosen_ip = Some(address);
                spec::set_cluster_ips(service, &[address.to_string()]);
                Ok(true)
            }
            Allocated::Port(port) => {
                let Some(position) = self.chosen_ports.iter().position(|(chosen, _)| *chosen == port) else {
                    return Ok(false);
                };
                let replacement = self.choose_port(state, service).await?;
                let (_, uses) = &mut self.chosen_ports[position];
                for place in uses.iter() {
                    match place {
                        PortUse::Port(index) => spec::set_node_port(service, *index, replacement as i64),
                        PortUse::HealthCheck => spec::set_health_check_node_port(service, replacement as i64),
                    }
                }
                self.chosen_ports[position].0 = replacement;
                Ok(true)
            }
            Allocated::Ip(_) => Ok(false),
        }
    }

    /// Writes the Service (`key`, on condition `object`: absent for a create, its read revision
    /// for an update) with what it takes and gives up, in one txn; chooses again what another
    /// write took first. `encode` gives the stored bytes of the object.
    pub async fn commit(
        mut self,
        state: &ApiState,
        info: &ResourceInfo,
        key: Bytes,
        object_condition: Condition,
        service: &mut Value,
        encode: impl Fn(&Value) -> Bytes,
    ) -> Result<i64> {
        let object_ref = ObjectRef::new(info, object::name(service));
        for _ in 0..COMMIT_ATTEMPTS_MAX {
            let now = held(service);
            let gained: Vec<Allocated> = now.difference(&self.old).copied().collect();
            let mut conditions = vec![object_condition.clone()];
            let mut writes = vec![Write::Put(key.clone(), encode(service))];
            for value in &gained {
                conditions.push(Condition::Absent(value.key()));
                writes.push(Write::Put(value.key(), value.record(&self.network, service)));
            }
            for value in self.old.difference(&now) {
                writes.push(Write::DeleteIfValue(value.key(), value.record(&self.network, service)));
            }
            let current = match state.storage.commit(conditions.clone(), writes).await {
                Ok(revision) => return Ok(revision),
                Err(StorageError::ConditionsFailed { current }) => current,
                Err(error) => return Err(storage_error(object_ref, error)),
            };
            if !conditions[0].holds(current[0].as_ref()) {
                return Err(match object_condition {
                    Condition::Absent(_) => Error::AlreadyExists(object_ref),
                    Condition::ModRevision(..) => Error::modified(object_ref),
                });
            }
            for (index, value) in gained.iter().enumerate() {
                if conditions[index + 1].holds(current[index + 1].as_ref()) {
                    continue;
                }
                if !self.choose_again(state, service, *value).await? {
                    let detail = if matches!(value, Allocated::Ip(_)) { IP_TAKEN } else { PORT_TAKEN };
                    return Err(unavailable(service, *value, detail));
                }
            }
        }
        Err(Error::ServiceUnavailable(format!(
            "could not allocate the Service's cluster IP and node ports in {COMMIT_ATTEMPTS_MAX} attempts: \
             other writes took every value chosen; try again"
        )))
    }
}

/// A free offset in [0, size): first in the dynamic band [static_size, size) from a random
/// start, then in the static band [0, static_size) (kube-apiserver's order); None when full.
fn choose(size: u128, static_size: u128, free: impl Fn(u128) -> bool) -> Option<u128> {
    let mut random = rand::thread_rng();
    for (low, high) in [(static_size, size), (0, static_size.min(size))] {
        if high <= low {
            continue;
        }
        let span = high - low;
        let start = random.gen_range(0..span);
        // Bounded by the band's size; a band nearly full is the only long walk.
        for step in 0..span {
            let offset = low + (start + step) % span;
            if free(offset) {
                return Some(offset);
            }
        }
    }
    None
}

/// Every key under `prefix`, read page by page at one revision.
async fn scan_keys(state: &ApiState, prefix: &str) -> Result<Vec<Bytes>> {
    let start = Bytes::from(prefix.to_string());
    let end = keys::prefix_end(prefix.as_bytes());
    let mut from = start;
    let mut revision = 0;
    let mut found = Vec::new();
    loop {
        let page = state
            .storage
            .range(from.clone(), end.clone(), revision, SCAN_PAGE_KEYS)
            .await
            .map_err(|error| Error::Internal(format!("reading the allocated values: {error}")))?;
        revision = page.revision;
        found.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                let mut next = last.key.to_vec();
                next.push(0);
                from = Bytes::from(next);
            }
            _ => return Ok(found),
        }
    }
}

/// Deletes a stored object at `mod_revision`; a Service gives up its values in the same txn.
pub async fn delete(
    state: &ApiState,
    info: &ResourceInfo,
    key: Bytes,
    stored: &Value,
    mod_revision: i64,
) -> StorageResult<i64> {
    if !is_service(info) {
        return state.storage.delete(key, mod_revision).await;
    }
    let network = state.service_network;
    let mut writes = vec![Write::Delete(key.clone())];
    for value in held(stored) {
        writes.push(Write::DeleteIfValue(value.key(), value.record(&network, stored)));
    }
    match state.storage.commit(vec![Condition::ModRevision(key, mod_revision)], writes).await {
        Err(StorageError::ConditionsFailed { current }) => match current.into_iter().next().flatten() {
            Some(current) => Err(StorageError::Conflict { current }),
            None => Err(StorageError::KeyNotFound),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_holds_its_addresses_and_ports() {
        let service = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 30500,
            "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053}, {"port": 53, "nodePort": 30053}]}});
        let values: Vec<Allocated> = held(&service).into_iter().collect();
        assert_eq!(
            values,
            vec![Allocated::Ip("10.96.0.7".parse().unwrap()), Allocated::Port(30053), Allocated::Port(30500)]
        );
        let headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}});
        assert!(held(&headless).is_empty());
        let external = json!({"spec": {"type": "ExternalName", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"]}});
        assert!(held(&external).is_empty());
    }

    #[test]
    fn choosing_prefers_the_dynamic_band_and_finds_the_last_free_value() {
        for _ in 0..50 {
            let offset = choose(100, 16, |_| true).unwrap();
            assert!((16..100).contains(&offset), "{offset}");
        }
        assert_eq!(choose(100, 16, |offset| offset == 3), Some(3), "the static band when the dynamic one is full");
        assert_eq!(choose(100, 16, |offset| offset == 99), Some(99));
        assert_eq!(choose(100, 16, |_| false), None);
        assert_eq!(choose(5, 0, |offset| offset == 4), Some(4));
    }
}
