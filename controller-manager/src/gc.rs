//! The garbage collector (`pkg/controller/garbagecollector`), as the seed
//! post describes it: a graph of every object's ownerReferences built from
//! informer events ([`GarbageCollector::observe`], the GraphBuilder's
//! `processGraphChanges`), feeding two queues — attempt-to-delete and
//! attempt-to-orphan — whose items are decided by
//! [`GarbageCollector::attempt_to_delete`] and
//! [`GarbageCollector::attempt_to_orphan`].
//!
//! - background: an owner is gone, so dependents whose owners are all
//!   dangling are deleted;
//! - foreground: an owner carries the `foregroundDeletion` finalizer and a
//!   deletionTimestamp; its dependents are deleted first (those with
//!   `blockOwnerDeletion: true` keep it waiting), then the finalizer is
//!   removed;
//! - orphan: an owner carries the `orphan` finalizer; its dependents lose
//!   their references to it, then the finalizer is removed.
//!
//! The collector never trusts the graph alone before deleting: the driver
//! fetches the latest object and the owners' current state (from the API
//! server, as Kubernetes does) and passes them in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ackemu_kube::meta::{ObjectMeta, OwnerReference};

use crate::util::{Event, ObjectRef};

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Where an object is: its coordinates and uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Identity {
    pub fn of(api_version: &str, kind: &str, meta: &ObjectMeta) -> Identity {
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }

    fn owner(r: &OwnerReference, namespace: &str) -> Identity {
        Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: namespace.into(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// The parts of an object the collector reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub resource_version: String,
}

impl Observed {
    pub fn of(api_version: &str, kind: &str, meta: &ObjectMeta) -> Observed {
        Observed {
            identity: Identity::of(api_version, kind, meta),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        }
    }

    fn has(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// An informer event.
#[derive(Clone, Debug)]
pub enum GraphEvent {
    /// Add or update; `old` is the previous object for updates.
    Upsert {
        old: Option<Observed>,
        new: Observed,
    },
    Delete(Observed),
}

/// Work for the two queues, keyed by uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    AttemptToDelete(String),
    AttemptToOrphan(String),
}

#[derive(Clone, Debug)]
struct GNode {
    identity: Identity,
    owners: Vec<OwnerReference>,
    dependents: BTreeSet<String>,
    being_deleted: bool,
    deleting_dependents: bool,
    virtual_: bool,
}

/// An owner's state as the driver found it (a live GET by name in the
/// item's namespace, or cluster-wide for cluster-scoped kinds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Found, with its uid, whether it is being deleted and whether it
    /// carries `foregroundDeletion`.
    Present {
        uid: String,
        deleting: bool,
        foreground: bool,
    },
    NotFound,
    /// A cluster-scoped item names a namespaced owner kind.
    InvalidNamespacedOwner,
}

/// What the latest GET of the item returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Latest {
    Found(Observed),
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Foreground,
    Background,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Orphan => "Orphan",
            Propagation::Foreground => "Foreground",
            Propagation::Background => "Background",
        }
    }
}

/// What the driver does for a queue item, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    /// Fetch the latest object of this identity and call again.
    FetchItem(Identity),
    /// Look these owners up and call again with their states.
    FetchOwners(Vec<OwnerReference>),
    /// Remove the owner references with these uids (uid precondition).
    RemoveOwnerRefs {
        item: Identity,
        owner_uids: Vec<String>,
    },
    /// Set `blockOwnerDeletion: false` on every blocking reference.
    UnblockOwnerRefs {
        item: Identity,
        owner_references: Vec<OwnerReference>,
    },
    /// Delete with this propagation, preconditions uid and resourceVersion.
    Delete {
        item: Identity,
        resource_version: String,
        propagation: Propagation,
    },
    RemoveFinalizer {
        item: Identity,
        finalizer: String,
    },
    /// Put these on the queues.
    Enqueue(Vec<Work>),
    Event(Event),
}

/// The dependency graph and the absent-owner cache.
#[derive(Clone, Debug, Default)]
pub struct GarbageCollector {
    nodes: HashMap<String, GNode>,
    absent: HashSet<Identity>,
}

fn blocks(r: &OwnerReference) -> bool {
    r.block_owner_deletion == Some(true)
}

impl GarbageCollector {
    pub fn new() -> GarbageCollector {
        GarbageCollector::default()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.nodes.contains_key(uid)
    }

    pub fn is_virtual(&self, uid: &str) -> Option<bool> {
        self.nodes.get(uid).map(|n| n.virtual_)
    }

    pub fn dependents(&self, uid: &str) -> Vec<String> {
        self.nodes
            .get(uid)
            .map(|n| n.dependents.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn add_dependent_to_owners(
        &mut self,
        uid: &str,
        owners: &[OwnerReference],
        namespace: &str,
        work: &mut Vec<Work>,
    ) {
        for o in owners {
            match self.nodes.get_mut(&o.uid) {
                Some(n) => {
                    n.dependents.insert(uid.to_owned());
                }
                None => {
                    // A virtual owner, to be confirmed by the collector.
                    let mut n = GNode {
                        identity: Identity::owner(o, namespace),
                        owners: Vec::new(),
                        dependents: BTreeSet::new(),
                        being_deleted: false,
                        deleting_dependents: false,
                        virtual_: true,
                    };
                    n.dependents.insert(uid.to_owned());
                    self.nodes.insert(o.uid.clone(), n);
                    work.push(Work::AttemptToDelete(o.uid.clone()));
                }
            }
        }
    }

    fn remove_dependent_from_owners(&mut self, uid: &str, owners: &[OwnerReference]) {
        for o in owners {
            if let Some(n) = self.nodes.get_mut(&o.uid) {
                n.dependents.remove(uid);
            }
        }
    }

    /// `processTransitions`.
    fn transitions(&mut self, old: Option<&Observed>, new: &Observed, work: &mut Vec<Work>) {
        let starts =
            |f: &str| new.deleting && new.has(f) && old.is_none_or(|o| !o.deleting || !o.has(f));
        let uid = new.identity.uid.clone();
        if starts(FINALIZER_ORPHAN) {
            work.push(Work::AttemptToOrphan(uid));
            return;
        }
        if starts(FINALIZER_FOREGROUND) {
            let n = self
                .nodes
                .get_mut(&uid)
                .expect("inserted before transitions");
            n.deleting_dependents = true;
            work.extend(
                n.dependents
                    .iter()
                    .map(|d| Work::AttemptToDelete(d.clone())),
            );
            work.push(Work::AttemptToDelete(uid));
        }
    }

    /// `processGraphChanges` for one informer event.
    pub fn observe(&mut self, ev: &GraphEvent) -> Vec<Work> {
        let mut work = Vec::new();
        match ev {
            GraphEvent::Upsert { old, new } => {
                let uid = new.identity.uid.clone();
                if let Some(n) = self.nodes.get_mut(&uid)
                    && n.virtual_
                {
                    if n.identity != new.identity {
                        // Dependents that named us by other coordinates get re-checked.
                        let deps: Vec<String> = n.dependents.iter().cloned().collect();
                        n.identity = new.identity.clone();
                        work.extend(deps.into_iter().map(Work::AttemptToDelete));
                    }
                    n.virtual_ = false;
                }
                match self.nodes.get(&uid).cloned() {
                    None => {
                        self.nodes.insert(
                            uid.clone(),
                            GNode {
                                identity: new.identity.clone(),
                                owners: new.owners.clone(),
                                dependents: BTreeSet::new(),
                                being_deleted: new.deleting,
                                deleting_dependents: new.deleting && new.has(FINALIZER_FOREGROUND),
                                virtual_: false,
                            },
                        );
                        self.add_dependent_to_owners(
                            &uid,
                            &new.owners,
                            &new.identity.namespace,
                            &mut work,
                        );
                    }
                    Some(existing) => {
                        let old_by_uid: BTreeMap<&str, &OwnerReference> = existing
                            .owners
                            .iter()
                            .map(|o| (o.uid.as_str(), o))
                            .collect();
                        let new_by_uid: BTreeMap<&str, &OwnerReference> =
                            new.owners.iter().map(|o| (o.uid.as_str(), o)).collect();
                        let added: Vec<OwnerReference> = new
                            .owners
                            .iter()
                            .filter(|o| !old_by_uid.contains_key(o.uid.as_str()))
                            .cloned()
                            .collect();
                        let removed: Vec<OwnerReference> = existing
                            .owners
                            .iter()
                            .filter(|o| !new_by_uid.contains_key(o.uid.as_str()))
                            .cloned()
                            .collect();
                        // Unblocked owners get a chance to finish their foreground deletion.
                        for r in &removed {
                            if blocks(r) && self.nodes.contains_key(&r.uid) {
                                work.push(Work::AttemptToDelete(r.uid.clone()));
                            }
                        }
                        for (u, o) in &old_by_uid {
                            if let Some(n) = new_by_uid.get(u)
                                && blocks(o)
                                && !blocks(n)
                                && self.nodes.contains_key(*u)
                            {
                                work.push(Work::AttemptToDelete(u.to_string()));
                            }
                        }
                        if !added.is_empty()
                            || !removed.is_empty()
                            || old_by_uid.len() != new_by_uid.len()
                            || existing.owners != new.owners
                        {
                            self.nodes.get_mut(&uid).expect("exists").owners = new.owners.clone();
                            self.add_dependent_to_owners(
                                &uid,
                                &added,
                                &new.identity.namespace,
                                &mut work,
                            );
                            self.remove_dependent_from_owners(&uid, &removed);
                        }
                        if new.deleting {
                            self.nodes.get_mut(&uid).expect("exists").being_deleted = true;
                        }
                    }
                }
                self.transitions(old.as_ref(), new, &mut work);
            }
            GraphEvent::Delete(obj) => {
                self.remove(&obj.identity, &mut work);
            }
        }
        work
    }

    fn remove(&mut self, identity: &Identity, work: &mut Vec<Work>) {
        let Some(n) = self.nodes.remove(&identity.uid) else {
            return;
        };
        self.remove_dependent_from_owners(&identity.uid, &n.owners);
        if !n.dependents.is_empty() {
            self.absent.insert(identity.clone());
        }
        work.extend(
            n.dependents
                .iter()
                .map(|d| Work::AttemptToDelete(d.clone())),
        );
        for o in &n.owners {
            if self
                .nodes
                .get(&o.uid)
                .is_some_and(|x| x.deleting_dependents)
            {
                work.push(Work::AttemptToDelete(o.uid.clone()));
            }
        }
    }

    /// A virtual delete: the collector confirmed `identity` does not exist.
    fn virtual_delete(&mut self, identity: &Identity) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(n) = self.nodes.get(&identity.uid).cloned() else {
            return work;
        };
        if !n.virtual_ && n.identity != *identity {
            // A real node disagrees with the coordinates: only the
            // dependents that used these coordinates are affected.
            self.absent.insert(identity.clone());
            for d in &n.dependents {
                if self.dependent_refers_as(d, identity) {
                    work.push(Work::AttemptToDelete(d.clone()));
                }
            }
            return work;
        }
        self.remove(identity, &mut work);
        work
    }

    fn dependent_refers_as(&self, dep: &str, owner: &Identity) -> bool {
        self.nodes.get(dep).is_some_and(|d| {
            d.owners.iter().any(|o| {
                o.uid == owner.uid
                    && o.kind == owner.kind
                    && o.name == owner.name
                    && o.api_version == owner.api_version
            })
        })
    }

    fn is_absent(&self, r: &OwnerReference, namespace: &str) -> bool {
        self.absent.contains(&Identity::owner(r, ""))
            || self.absent.contains(&Identity::owner(r, namespace))
    }

    /// `attemptToDeleteItem`. Call with `latest: None` first; the collector
    /// asks for what it needs (`FetchItem`, `FetchOwners`) and the driver
    /// calls again with the answers.
    pub fn attempt_to_delete(
        &mut self,
        uid: &str,
        latest: Option<&Latest>,
        owners: &BTreeMap<String, OwnerState>,
    ) -> Vec<GcAction> {
        let Some(item) = self.nodes.get(uid).cloned() else {
            return Vec::new();
        };
        if item.being_deleted && !item.deleting_dependents {
            return Vec::new();
        }
        let latest = match latest {
            None => return vec![GcAction::FetchItem(item.identity.clone())],
            Some(Latest::NotFound) => {
                let w = self.virtual_delete(&item.identity);
                return vec![GcAction::Enqueue(w)];
            }
            Some(Latest::Found(o)) if o.identity.uid != item.identity.uid => {
                let w = self.virtual_delete(&item.identity);
                return vec![GcAction::Enqueue(w)];
            }
            Some(Latest::Found(o)) => o,
        };
        if item.deleting_dependents {
            return self.deleting_dependents(&item);
        }
        if latest.owners.is_empty() {
            return Vec::new();
        }
        let ns = &item.identity.namespace;
        let missing: Vec<OwnerReference> = latest
            .owners
            .iter()
            .filter(|r| !self.is_absent(r, ns) && !owners.contains_key(&r.uid))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return vec![GcAction::FetchOwners(missing)];
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &latest.owners {
            if self.is_absent(r, ns) {
                dangling.push(r.clone());
                continue;
            }
            match &owners[&r.uid] {
                OwnerState::NotFound => {
                    self.absent.insert(Identity::owner(r, ns));
                    dangling.push(r.clone());
                }
                OwnerState::Present { uid, .. } if *uid != r.uid => {
                    self.absent.insert(Identity::owner(r, ns));
                    dangling.push(r.clone());
                }
                OwnerState::Present {
                    deleting: true,
                    foreground: true,
                    ..
                } => waiting.push(r.clone()),
                OwnerState::Present { .. } => solid.push(r.clone()),
                OwnerState::InvalidNamespacedOwner => {
                    return vec![GcAction::Event(Event::warning(
                        item.identity.object_ref(),
                        "OwnerRefInvalidNamespace",
                        format!(
                            "ownerRef [{}, namespace: , name: {}, uid: {}] does not exist in namespace {:?}",
                            format_args!("{}/{}", r.api_version, r.kind),
                            r.name,
                            r.uid,
                            ns
                        ),
                    ))];
                }
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Vec::new();
            }
            let owner_uids = dangling
                .iter()
                .chain(&waiting)
                .map(|r| r.uid.clone())
                .collect();
            return vec![GcAction::RemoveOwnerRefs {
                item: item.identity.clone(),
                owner_uids,
            }];
        }
        let mut out = Vec::new();
        if !waiting.is_empty() && !item.dependents.is_empty() {
            if item
                .dependents
                .iter()
                .any(|d| self.nodes.get(d).is_some_and(|n| n.deleting_dependents))
            {
                // Possible cycle: stop blocking our owners.
                let refs = latest
                    .owners
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        if blocks(&r) {
                            r.block_owner_deletion = Some(false);
                        }
                        r
                    })
                    .collect();
                out.push(GcAction::UnblockOwnerRefs {
                    item: item.identity.clone(),
                    owner_references: refs,
                });
            }
            out.push(GcAction::Delete {
                item: item.identity.clone(),
                resource_version: latest.resource_version.clone(),
                propagation: Propagation::Foreground,
            });
            return out;
        }
        let propagation = if latest.has(FINALIZER_ORPHAN) {
            Propagation::Orphan
        } else if latest.has(FINALIZER_FOREGROUND) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        vec![GcAction::Delete {
            item: item.identity.clone(),
            resource_version: latest.resource_version.clone(),
            propagation,
        }]
    }

    /// `processDeletingDependentsItem`.
    fn deleting_dependents(&self, item: &GNode) -> Vec<GcAction> {
        let blocking: Vec<&GNode> = item
            .dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == item.identity.uid && blocks(o))
            })
            .collect();
        if blocking.is_empty() {
            return vec![GcAction::RemoveFinalizer {
                item: item.identity.clone(),
                finalizer: FINALIZER_FOREGROUND.into(),
            }];
        }
        let w: Vec<Work> = blocking
            .iter()
            .filter(|d| !d.deleting_dependents)
            .map(|d| Work::AttemptToDelete(d.identity.uid.clone()))
            .collect();
        if w.is_empty() {
            Vec::new()
        } else {
            vec![GcAction::Enqueue(w)]
        }
    }

    /// `attemptToOrphanWorker`: drop every dependent's reference to the
    /// owner, then the owner's `orphan` finalizer.
    pub fn attempt_to_orphan(&self, uid: &str) -> Vec<GcAction> {
        let Some(owner) = self.nodes.get(uid) else {
            return Vec::new();
        };
        let mut out: Vec<GcAction> = owner
            .dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|d| GcAction::RemoveOwnerRefs {
                item: d.identity.clone(),
                owner_uids: vec![uid.to_owned()],
            })
            .collect();
        out.push(GcAction::RemoveFinalizer {
            item: owner.identity.clone(),
            finalizer: FINALIZER_ORPHAN.into(),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny API server: objects by uid, applying the GC's writes and the
    /// API server's side of deletion (finalizers, propagation policies),
    /// feeding every change back to the graph as an informer would.
    #[derive(Default)]
    struct World {
        objects: BTreeMap<String, Observed>,
        gc: GarbageCollector,
        queue: BTreeSet<Work>,
        log: Vec<String>,
    }

    impl World {
        fn put(&mut self, o: Observed) {
            let old = self.objects.insert(o.identity.uid.clone(), o.clone());
            let w = self.gc.observe(&GraphEvent::Upsert { old, new: o });
            self.queue.extend(w);
        }

        fn create(&mut self, kind: &str, name: &str, owners: &[(&str, bool)]) {
            let owners = owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Owner".into(),
                    name: o.to_string(),
                    uid: format!("uid-{o}"),
                    controller: Some(true),
                    block_owner_deletion: Some(*block),
                })
                .collect();
            self.put(Observed {
                identity: Identity {
                    api_version: "apps/v1".into(),
                    kind: kind.into(),
                    namespace: "ns".into(),
                    name: name.into(),
                    uid: format!("uid-{name}"),
                },
                owners,
                deleting: false,
                finalizers: vec![],
                resource_version: "1".into(),
            });
        }

        /// The API server's DELETE with a propagation policy.
        fn delete(&mut self, name: &str, p: Propagation) {
            let uid = format!("uid-{name}");
            let Some(mut o) = self.objects.get(&uid).cloned() else {
                return;
            };
            self.log.push(format!("delete {name} {}", p.as_str()));
            match p {
                Propagation::Background => {
                    if o.finalizers.is_empty() {
                        self.gone(&uid);
                    } else {
                        o.deleting = true;
                        self.put(o);
                    }
                }
                Propagation::Foreground | Propagation::Orphan => {
                    let f = if p == Propagation::Foreground {
                        FINALIZER_FOREGROUND
                    } else {
                        FINALIZER_ORPHAN
                    };
                    if !o.finalizers.iter().any(|x| x == f) {
                        o.finalizers.push(f.into());
                    }
                    o.deleting = true;
                    self.put(o);
                }
            }
        }

        fn gone(&mut self, uid: &str) {
            if let Some(o) = self.objects.remove(uid) {
                let w = self.gc.observe(&GraphEvent::Delete(o));
                self.queue.extend(w);
            }
        }

        fn owner_states(&self, refs: &[OwnerReference]) -> BTreeMap<String, OwnerState> {
            refs.iter()
                .map(|r| {
                    let s = match self.objects.get(&r.uid) {
                        Some(o) => OwnerState::Present {
                            uid: o.identity.uid.clone(),
                            deleting: o.deleting,
                            foreground: o.has(FINALIZER_FOREGROUND),
                        },
                        None => OwnerState::NotFound,
                    };
                    (r.uid.clone(), s)
                })
                .collect()
        }

        fn apply(&mut self, actions: Vec<GcAction>) {
            for a in actions {
                match a {
                    GcAction::RemoveOwnerRefs { item, owner_uids } => {
                        if let Some(mut o) = self.objects.get(&item.uid).cloned() {
                            self.log.push(format!("unown {}", item.name));
                            o.owners.retain(|r| !owner_uids.contains(&r.uid));
                            self.put(o);
                        }
                    }
                    GcAction::UnblockOwnerRefs {
                        item,
                        owner_references,
                    } => {
                        if let Some(mut o) = self.objects.get(&item.uid).cloned() {
                            o.owners = owner_references;
                            self.put(o);
                        }
                    }
                    GcAction::Delete {
                        item, propagation, ..
                    } => self.delete(&item.name, propagation),
                    GcAction::RemoveFinalizer { item, finalizer } => {
                        if let Some(mut o) = self.objects.get(&item.uid).cloned() {
                            self.log
                                .push(format!("unfinalize {} {finalizer}", item.name));
                            o.finalizers.retain(|f| *f != finalizer);
                            if o.deleting && o.finalizers.is_empty() {
                                self.gone(&item.uid);
                            } else {
                                self.put(o);
                            }
                        }
                    }
                    GcAction::Enqueue(w) => self.queue.extend(w),
                    GcAction::Event(_) | GcAction::FetchItem(_) | GcAction::FetchOwners(_) => {}
                }
            }
        }

        /// Drains the queues, answering the collector's questions.
        fn run(&mut self) {
            for _ in 0..1000 {
                let Some(w) = self.queue.pop_first() else {
                    return;
                };
                let actions = match w {
                    Work::AttemptToOrphan(uid) => self.gc.attempt_to_orphan(&uid),
                    Work::AttemptToDelete(uid) => {
                        let mut latest = None;
                        let mut owners = BTreeMap::new();
                        loop {
                            let a = self.gc.attempt_to_delete(&uid, latest.as_ref(), &owners);
                            match a.as_slice() {
                                [GcAction::FetchItem(id)] => {
                                    latest = Some(match self.objects.get(&id.uid) {
                                        Some(o) => Latest::Found(o.clone()),
                                        None => Latest::NotFound,
                                    });
                                }
                                [GcAction::FetchOwners(refs)] => {
                                    owners.extend(self.owner_states(refs))
                                }
                                _ => break a,
                            }
                        }
                    }
                };
                self.apply(actions);
            }
            panic!("garbage collector did not settle");
        }

        fn names(&self) -> Vec<String> {
            self.objects
                .values()
                .map(|o| o.identity.name.clone())
                .collect()
        }
    }

    fn deployment_tree(block: bool) -> World {
        let mut w = World::default();
        w.create("Deployment", "web", &[]);
        w.create("ReplicaSet", "web-rs", &[("web", block)]);
        w.create("Pod", "web-rs-a", &[("web-rs", block)]);
        w.create("Pod", "web-rs-b", &[("web-rs", block)]);
        w.run();
        w
    }

    #[test]
    fn background_deletes_dependents_after_the_owner() {
        let mut w = deployment_tree(true);
        w.delete("web", Propagation::Background);
        w.run();
        assert!(w.names().is_empty(), "{:?}", w.names());
        assert_eq!(w.log[0], "delete web Background", "the owner goes first");
    }

    #[test]
    fn foreground_deletes_dependents_first() {
        let mut w = deployment_tree(true);
        w.delete("web", Propagation::Foreground);
        w.run();
        assert!(w.names().is_empty(), "{:?}", w.names());
        let pos = |s: &str| {
            w.log
                .iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} not in {:?}", w.log))
        };
        // The ReplicaSet is deleted in the foreground too (it has dependents),
        // so the pods go before the ReplicaSet's finalizer is removed, and
        // the Deployment's finalizer is removed last.
        assert!(pos("delete web-rs Foreground") < pos("unfinalize web-rs foregroundDeletion"));
        assert!(pos("delete web-rs-a Background") < pos("unfinalize web-rs foregroundDeletion"));
        assert_eq!(w.log.last().unwrap(), "unfinalize web foregroundDeletion");
    }

    #[test]
    fn foreground_without_block_owner_deletion_does_not_wait() {
        let mut w = deployment_tree(false);
        w.delete("web", Propagation::Foreground);
        w.run();
        assert!(w.names().is_empty(), "{:?}", w.names());
        // Non-blocking dependents do not hold the owner: its finalizer goes
        // as soon as it is processed, before its dependents are gone.
        let pos = |s: &str| w.log.iter().position(|x| x == s).unwrap();
        assert!(pos("unfinalize web foregroundDeletion") < pos("delete web-rs Background"));
    }

    #[test]
    fn orphan_keeps_dependents() {
        let mut w = deployment_tree(true);
        w.delete("web", Propagation::Orphan);
        w.run();
        assert_eq!(w.names(), vec!["web-rs", "web-rs-a", "web-rs-b"]);
        assert!(
            w.objects["uid-web-rs"].owners.is_empty(),
            "reference to the deployment removed"
        );
        assert_eq!(
            w.objects["uid-web-rs-a"].owners.len(),
            1,
            "pods still owned by the ReplicaSet"
        );
        assert_eq!(w.log.last().unwrap(), "unfinalize web orphan");
    }

    #[test]
    fn owner_never_seen_is_confirmed_absent() {
        // A pod refers to a ReplicaSet that does not exist: the virtual
        // owner is checked, found absent, and the pod collected.
        let mut w = World::default();
        w.create("Pod", "stray", &[("ghost", true)]);
        assert_eq!(w.gc.is_virtual("uid-ghost"), Some(true));
        w.run();
        assert!(w.names().is_empty());
        assert!(!w.gc.contains("uid-ghost"));
    }

    #[test]
    fn solid_owner_keeps_item_and_drops_dangling_reference() {
        let mut w = World::default();
        w.create("Owner", "alive", &[]);
        w.create("ConfigMap", "shared", &[("alive", false), ("dead", false)]);
        w.run();
        assert_eq!(w.names(), vec!["alive", "shared"]);
        assert_eq!(
            w.objects["uid-shared"]
                .owners
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            vec!["alive"]
        );
    }
}
