//! The garbage collector's dependency graph: every object with owners, every owner, by uid, with
//! owner → dependents edges (kube-controller-manager's `GraphBuilder.uidToNode`).
//!
//! The graph is plain data. The monitors feed it what they observe ([`Graph::observe`],
//! [`Graph::observed_delete`], [`Graph::relisted`]); the workers tell it what a live read proved
//! absent ([`Graph::verified_absent`]). Each call returns the [`Work`] the change makes
//! necessary, which the caller queues; the graph itself never talks to the API.
//!
//! An owner named by an ownerReference but not observed (yet) is a *virtual* node, with the
//! coordinates the reference gives (its namespace is the dependent's; whether it applies depends
//! on the owner's kind). A virtual node is queued for a live read at once: if the owner does not
//! exist, its dependents are queued in turn, and each one checks its own references live.
//!
//! Worked example: background deletion of a ReplicaSet `rs` (uid R) with a Pod `p` (uid P):
//! 1. `observe(rs)`, `observe(p with owner R)`: nodes R and P, edge R → P.
//! 2. The ReplicaSet is deleted; its monitor sees it: `observed_delete(rs)` removes R and
//!    returns `AttemptToDelete(P)`.
//! 3. The worker reads R live (404, or another uid: not R), finds no other owner of P, and
//!    deletes P; its monitor's `observed_delete(p)` removes P.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Where an object is: what a live read needs and what ownerReferences name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// The object's namespace; for a virtual owner, its dependent's (used only if the owner's
    /// kind is namespaced).
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl Identity {
    fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(formatter, "{} {}/{} ({})", self.kind, namespace, self.name, self.uid),
            None => write!(formatter, "{} {} ({})", self.kind, self.name, self.uid),
        }
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("")
}

/// An object as a monitor saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// Has a `deletionTimestamp`.
    pub being_deleted: bool,
    pub orphan_finalizer: bool,
    pub foreground_finalizer: bool,
    /// The monitor that saw it (`plural.group/version`), so a relist can tell what vanished.
    pub source: String,
}

/// One object in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// Uids of the objects whose ownerReferences name this one.
    pub dependents: BTreeSet<String>,
    /// Seen by a monitor; false for a virtual node.
    pub observed: bool,
    pub source: Option<String>,
    pub being_deleted: bool,
    /// Being deleted with `foregroundDeletion`: its blocking dependents go first.
    pub deleting_dependents: bool,
    /// Being deleted with `orphan`: its dependents are freed first.
    pub orphaning: bool,
}

impl Node {
    fn virtual_owner(reference: &OwnerReference, dependent_namespace: Option<&str>) -> Node {
        Node {
            identity: Identity {
                api_version: reference.api_version.clone(),
                kind: reference.kind.clone(),
                namespace: dependent_namespace.map(str::to_string),
                name: reference.name.clone(),
                uid: reference.uid.clone(),
            },
            owners: Vec::new(),
            dependents: BTreeSet::new(),
            observed: false,
            source: None,
            being_deleted: false,
            deleting_dependents: false,
            orphaning: false,
        }
    }

    /// This object's reference to `owner_uid`, if it has one.
    pub fn reference_to(&self, owner_uid: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|reference| reference.uid == owner_uid)
    }
}

/// What a change of the graph asks the workers to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// Decide whether the object (by uid) must go, because of its owners or, for an owner being
    /// deleted in the foreground, because of its dependents.
    AttemptToDelete(String),
    /// Remove the ownerReferences to this owner (by uid) from its dependents, then its `orphan`
    /// finalizer.
    AttemptToOrphan(String),
}

fn references_coordinates(reference: &OwnerReference, identity: &Identity) -> bool {
    reference.uid == identity.uid
        && reference.name == identity.name
        && reference.kind == identity.kind
        && group_of(&reference.api_version) == identity.group()
}

fn blocks(reference: &OwnerReference) -> bool {
    reference.block_owner_deletion == Some(true)
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The dependents of `owner_uid` (as nodes), in uid order.
    pub fn dependents(&self, owner_uid: &str) -> Vec<&Node> {
        let Some(owner) = self.nodes.get(owner_uid) else { return Vec::new() };
        owner.dependents.iter().filter_map(|uid| self.nodes.get(uid)).collect()
    }

    /// The dependents whose reference to `owner_uid` has `blockOwnerDeletion: true`: what a
    /// foreground deletion of the owner waits for.
    pub fn blocking_dependents(&self, owner_uid: &str) -> Vec<&Node> {
        self.dependents(owner_uid)
            .into_iter()
            .filter(|dependent| dependent.reference_to(owner_uid).is_some_and(blocks))
            .collect()
    }

    /// A monitor saw `object` created or changed (or listed it).
    pub fn observe(&mut self, object: Observed) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = object.identity.uid.clone();
        let deleting_dependents = object.being_deleted && object.foreground_finalizer;
        let orphaning = object.being_deleted && object.orphan_finalizer;
        let (was_deleting_dependents, was_orphaning, old_owners) = match self.nodes.get_mut(&uid) {
            Some(node) => {
                let before = (node.deleting_dependents, node.orphaning, node.owners.clone());
                node.identity = object.identity.clone();
                node.observed = true;
                node.source = Some(object.source.clone());
                node.being_deleted = object.being_deleted;
                node.deleting_dependents = deleting_dependents;
                node.orphaning = orphaning;
                node.owners = object.owners.clone();
                before
            }
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: object.identity.clone(),
                        owners: object.owners.clone(),
                        dependents: BTreeSet::new(),
                        observed: true,
                        source: Some(object.source.clone()),
                        being_deleted: object.being_deleted,
                        deleting_dependents,
                        orphaning,
                    },
                );
                (false, false, Vec::new())
            }
        };
        // References that appeared, went, or stopped blocking.
        let added: Vec<&OwnerReference> =
            object.owners.iter().filter(|new| !old_owners.iter().any(|old| old.uid == new.uid)).collect();
        let removed: Vec<&OwnerReference> =
            old_owners.iter().filter(|old| !object.owners.iter().any(|new| new.uid == old.uid)).collect();
        let unblocked = old_owners.iter().filter(|old| {
            blocks(old) && object.owners.iter().find(|new| new.uid == old.uid).is_none_or(|new| !blocks(new))
        });
        for reference in unblocked {
            if self.nodes.get(&reference.uid).is_some_and(|owner| owner.deleting_dependents) {
                work.push(Work::AttemptToDelete(reference.uid.clone()));
            }
        }
        for reference in added {
            self.add_dependent(&object.identity, reference, &mut work);
        }
        for reference in removed {
            self.remove_dependent(&uid, &reference.uid);
        }
        if orphaning && !was_orphaning {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if deleting_dependents && !was_deleting_dependents {
            let node = &self.nodes[&uid];
            work.extend(node.dependents.iter().map(|dependent| Work::AttemptToDelete(dependent.clone())));
            work.push(Work::AttemptToDelete(uid));
        }
        work
    }

    fn add_dependent(&mut self, dependent: &Identity, reference: &OwnerReference, work: &mut Vec<Work>) {
        if reference.uid == dependent.uid {
            return;
        }
        match self.nodes.get_mut(&reference.uid) {
            Some(owner) => {
                owner.dependents.insert(dependent.uid.clone());
                // A dependent that appears while its owner deletes its dependents goes too.
                if owner.deleting_dependents {
                    work.push(Work::AttemptToDelete(dependent.uid.clone()));
                }
            }
            None => {
                let mut owner = Node::virtual_owner(reference, dependent.namespace.as_deref());
                owner.dependents.insert(dependent.uid.clone());
                self.nodes.insert(reference.uid.clone(), owner);
                work.push(Work::AttemptToDelete(reference.uid.clone()));
            }
        }
    }

    fn remove_dependent(&mut self, dependent_uid: &str, owner_uid: &str) {
        let Some(owner) = self.nodes.get_mut(owner_uid) else { return };
        owner.dependents.remove(dependent_uid);
        // A virtual node exists only for its dependents.
        if !owner.observed && owner.dependents.is_empty() {
            self.nodes.remove(owner_uid);
        }
    }

    /// Removes a node: its dependents are queued (their owner may be gone), and so are its
    /// owners that wait for their dependents.
    fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work: Vec<Work> =
            node.dependents.iter().map(|dependent| Work::AttemptToDelete(dependent.clone())).collect();
        for reference in &node.owners {
            if self.nodes.get(&reference.uid).is_some_and(|owner| owner.deleting_dependents) {
                work.push(Work::AttemptToDelete(reference.uid.clone()));
            }
            self.remove_dependent(uid, &reference.uid);
        }
        work
    }

    /// A monitor saw the object deleted.
    pub fn observed_delete(&mut self, identity: &Identity) -> Vec<Work> {
        self.remove(&identity.uid)
    }

    /// A monitor listed its resource again: what it had observed from `source` and did not list
    /// this time was deleted while it was not watching.
    pub fn relisted(&mut self, source: &str, listed_uids: &HashSet<String>) -> Vec<Work> {
        let vanished: Vec<String> = self
            .nodes
            .values()
            .filter(|node| node.observed && node.source.as_deref() == Some(source))
            .filter(|node| !listed_uids.contains(&node.identity.uid))
            .map(|node| node.identity.uid.clone())
            .collect();
        vanished.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// A worker read `identity` live and found no object with that uid there.
    ///
    /// Dependents may name one owner uid with different coordinates (a wrong kind, say); only
    /// those whose reference matches what was read are affected. A virtual node that others
    /// still name differently stays, with their coordinates, for another live read.
    pub fn verified_absent(&mut self, identity: &Identity) -> Vec<Work> {
        let Some(node) = self.nodes.get(&identity.uid) else { return Vec::new() };
        let (matching, other): (Vec<&Node>, Vec<&Node>) =
            node.dependents.iter().filter_map(|uid| self.nodes.get(uid)).partition(|dependent| {
                dependent.reference_to(&identity.uid).is_some_and(|r| references_coordinates(r, identity))
            });
        let same_coordinates = node.identity.name == identity.name
            && node.identity.kind == identity.kind
            && node.identity.group() == identity.group();
        if node.observed {
            if same_coordinates {
                // Gone, and its monitor has not said so yet.
                return self.remove(&identity.uid);
            }
            return matching.iter().map(|dependent| Work::AttemptToDelete(dependent.identity.uid.clone())).collect();
        }
        if other.is_empty() {
            return self.remove(&identity.uid);
        }
        let mut work: Vec<Work> =
            matching.iter().map(|dependent| Work::AttemptToDelete(dependent.identity.uid.clone())).collect();
        if same_coordinates {
            let alternative = other[0]
                .reference_to(&identity.uid)
                .map(|reference| Node::virtual_owner(reference, other[0].identity.namespace.as_deref()).identity);
            if let (Some(alternative), Some(node)) = (alternative, self.nodes.get_mut(&identity.uid)) {
                node.identity = alternative;
                work.push(Work::AttemptToDelete(identity.uid.clone()));
            }
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(kind: &str, name: &str, uid: &str) -> Identity {
        Identity {
            api_version: if kind == "ReplicaSet" { "apps/v1".into() } else { "v1".into() },
            kind: kind.into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn reference(owner: &Identity, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn observed(identity: &Identity, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            being_deleted: false,
            orphan_finalizer: false,
            foreground_finalizer: false,
            source: format!("{}s", identity.kind.to_lowercase()),
        }
    }

    fn delete(uid: &str) -> Work {
        Work::AttemptToDelete(uid.into())
    }

    #[test]
    fn an_owner_deleted_in_the_background_queues_its_dependents() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let pod = identity("Pod", "p", "P");
        assert_eq!(graph.observe(observed(&rs, vec![])), vec![]);
        assert_eq!(graph.observe(observed(&pod, vec![reference(&rs, true)])), vec![]);
        assert_eq!(graph.dependents("R").len(), 1);
        assert_eq!(graph.observed_delete(&rs), vec![delete("P")]);
        assert!(graph.node("R").is_none());
    }

    #[test]
    fn an_unseen_owner_is_a_virtual_node_checked_at_once() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let pod = identity("Pod", "p", "P");
        assert_eq!(graph.observe(observed(&pod, vec![reference(&rs, false)])), vec![delete("R")]);
        assert!(!graph.node("R").unwrap().observed);
        // Observing it later makes it real, with no work.
        assert_eq!(graph.observe(observed(&rs, vec![])), vec![]);
        assert!(graph.node("R").unwrap().observed);
        // Proved absent while virtual: its dependents are queued, the node goes.
        let mut graph = Graph::new();
        graph.observe(observed(&pod, vec![reference(&rs, false)]));
        assert_eq!(graph.verified_absent(&rs), vec![delete("P")]);
        assert!(graph.node("R").is_none());
    }

    #[test]
    fn a_virtual_owner_named_differently_by_another_dependent_stays() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let mut wrong = rs.clone();
        wrong.kind = "ConfigMap".into();
        wrong.api_version = "v1".into();
        let a = identity("Pod", "a", "A");
        let b = identity("Pod", "b", "B");
        graph.observe(observed(&a, vec![reference(&rs, false)]));
        graph.observe(observed(&b, vec![reference(&wrong, false)]));
        let work = graph.verified_absent(&rs);
        assert_eq!(work, vec![delete("A"), delete("R")], "A is checked; R is read again as B names it");
        assert_eq!(graph.node("R").unwrap().identity.kind, "ConfigMap");
    }

    #[test]
    fn foreground_deletion_queues_dependents_then_the_owner_when_a_blocker_goes() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let blocking = identity("Pod", "a", "A");
        let free = identity("Pod", "b", "B");
        graph.observe(observed(&rs, vec![]));
        graph.observe(observed(&blocking, vec![reference(&rs, true)]));
        graph.observe(observed(&free, vec![reference(&rs, false)]));
        let mut deleting = observed(&rs, vec![]);
        deleting.being_deleted = true;
        deleting.foreground_finalizer = true;
        assert_eq!(graph.observe(deleting.clone()), vec![delete("A"), delete("B"), delete("R")]);
        assert_eq!(graph.observe(deleting), vec![], "only the transition queues work");
        let blockers: Vec<&str> =
            graph.blocking_dependents("R").iter().map(|node| node.identity.name.as_str()).collect();
        assert_eq!(blockers, vec!["a"]);
        assert_eq!(graph.observed_delete(&blocking), vec![delete("R")]);
        assert!(graph.blocking_dependents("R").is_empty());
        // A dependent that stops blocking also wakes the owner.
        let c = identity("Pod", "c", "C");
        assert_eq!(graph.observe(observed(&c, vec![reference(&rs, true)])), vec![delete("C")]);
        assert_eq!(graph.observe(observed(&c, vec![reference(&rs, false)])), vec![delete("R")]);
    }

    #[test]
    fn orphaning_starts_once() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let mut orphaning = observed(&rs, vec![]);
        orphaning.being_deleted = true;
        orphaning.orphan_finalizer = true;
        assert_eq!(graph.observe(orphaning.clone()), vec![Work::AttemptToOrphan("R".into())]);
        assert_eq!(graph.observe(orphaning), vec![]);
    }

    #[test]
    fn removed_references_drop_edges_and_empty_virtual_nodes() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let pod = identity("Pod", "p", "P");
        graph.observe(observed(&pod, vec![reference(&rs, false)]));
        assert_eq!(graph.len(), 2);
        graph.observe(observed(&pod, vec![]));
        assert_eq!(graph.len(), 1, "the virtual owner went with its last dependent");
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_lists() {
        let mut graph = Graph::new();
        let rs = identity("ReplicaSet", "rs", "R");
        let pod = identity("Pod", "p", "P");
        graph.observe(observed(&rs, vec![]));
        graph.observe(observed(&pod, vec![reference(&rs, false)]));
        assert_eq!(graph.relisted("replicasets", &HashSet::from(["R".to_string()])), vec![]);
        assert_eq!(graph.relisted("replicasets", &HashSet::new()), vec![delete("P")]);
        assert!(graph.node("R").is_none() && graph.node("P").is_some());
    }
}
