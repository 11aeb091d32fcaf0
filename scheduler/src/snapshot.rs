//! What the scheduler knows about the cluster: per-pod and per-node
//! summaries built from `k8s-openapi` objects ([`PodInfo`], [`NodeInfo`]),
//! the mutable [`Cache`] the informers (and the scheduler's own assumptions)
//! write to, and the immutable [`Snapshot`] one scheduling cycle reads
//! (Kubernetes `pkg/scheduler/framework/types.go`, `backend/cache`).
//!
//! A snapshot shares unchanged `NodeInfo`s with the cache (`Arc`); the cache
//! copies a node's info before changing it, so a snapshot never changes under
//! a cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::{ReplicaSet, StatefulSet};
use ackemu_kube::api::core::v1::{Node, Pod, ReplicationController, Service, Taint, Toleration};
use ackemu_kube::meta::OwnerReference;

use crate::resources::{self, Resource};

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";

/// `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// A host port a container binds (`hostIP` defaults to `0.0.0.0`,
/// `protocol` to `TCP`, as `HostPortInfo.sanitize` does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

pub const BIND_ALL_HOST_IP: &str = "0.0.0.0";

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let port = p.host_port.unwrap_or(0);
            if port <= 0 {
                continue;
            }
            out.push(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| BIND_ALL_HOST_IP.to_string()),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".to_string()),
                port,
            });
        }
    }
    out
}

/// The host ports in use on a node (`HostPortInfo`), counted so that removing
/// one of two pods that (wrongly) share a port keeps it in use.
#[derive(Clone, Debug, Default)]
pub struct HostPortInfo {
    by_port: HashMap<(String, i32), BTreeMap<String, u32>>,
}

impl HostPortInfo {
    pub fn add(&mut self, hp: &HostPort) {
        *self
            .by_port
            .entry((hp.protocol.clone(), hp.port))
            .or_default()
            .entry(hp.ip.clone())
            .or_default() += 1;
    }

    pub fn remove(&mut self, hp: &HostPort) {
        let key = (hp.protocol.clone(), hp.port);
        if let Some(ips) = self.by_port.get_mut(&key) {
            if let Some(n) = ips.get_mut(&hp.ip) {
                *n -= 1;
                if *n == 0 {
                    ips.remove(&hp.ip);
                }
            }
            if ips.is_empty() {
                self.by_port.remove(&key);
            }
        }
    }

    /// `HostPortInfo.CheckConflict`: `0.0.0.0` conflicts with every address
    /// on the same protocol and port; a specific address conflicts with
    /// itself and with `0.0.0.0`.
    pub fn conflicts(&self, hp: &HostPort) -> bool {
        if hp.port <= 0 {
            return false;
        }
        let Some(ips) = self.by_port.get(&(hp.protocol.clone(), hp.port)) else {
            return false;
        };
        if hp.ip == BIND_ALL_HOST_IP {
            return !ips.is_empty();
        }
        ips.contains_key(BIND_ALL_HOST_IP) || ips.contains_key(&hp.ip)
    }

    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }
}

/// A pod as the scheduler sees it, derived once per object.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// A hash of `labels`, so a cycle matches a selector once per distinct
    /// label set instead of once per pod.
    pub labels_hash: u64,
    /// Requests for filtering (`PodRequests`).
    pub requests: Resource,
    /// CPU and memory with 100m / 200 MiB for containers that name none.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub priority: i32,
    pub terminating: bool,
    pub node_name: Option<String>,
    pub controller: Option<OwnerReference>,
}

impl PodInfo {
    pub fn new(pod: Pod) -> PodInfo {
        Self::from_arc(Arc::new(pod))
    }

    pub fn from_arc(pod: Arc<Pod>) -> PodInfo {
        let requests = resources::pod_requests(&pod, false);
        let non_zero = resources::pod_requests(&pod, true);
        let spec = pod.spec.as_ref();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let labels_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            labels.hash(&mut h);
            h.finish()
        };
        PodInfo {
            key: pod_key(&pod),
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels,
            labels_hash,
            requests,
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: host_ports(&pod),
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            controller: pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .cloned(),
            pod,
        }
    }

    /// Whether the pod finished (`Succeeded`/`Failed`): it no longer holds
    /// resources, so the scheduler forgets it.
    pub fn is_terminal(pod: &Pod) -> bool {
        matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    }
}

/// The zone key Kubernetes spreads and interleaves nodes by
/// (`utilnode.GetZoneKey`): region and zone, or empty.
pub fn zone_key(labels: &BTreeMap<String, String>) -> String {
    let pick = |a: &str, b: &str| {
        labels
            .get(a)
            .or_else(|| labels.get(b))
            .cloned()
            .unwrap_or_default()
    };
    let region = pick(LABEL_REGION, LABEL_REGION_BETA);
    let zone = pick(LABEL_ZONE, LABEL_ZONE_BETA);
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\u{0}:{zone}")
}

/// Appends `:latest` to an image reference without a tag
/// (`normalizedImageName`).
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':').map(|i| i as isize).unwrap_or(-1);
    let slash = name.rfind('/').map(|i| i as isize).unwrap_or(-1);
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// A node and what is placed on it (`framework.NodeInfo`).
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// `None` while pods reference a node the cache has not seen yet.
    pub node: Option<Arc<Node>>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resource,
    /// Sum of the pods' requests (filtering).
    pub requested: Resource,
    /// Sum of the pods' non-zero CPU and memory requests (scoring).
    pub non_zero_requested: Resource,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: HostPortInfo,
    /// Image name (every name the node reports) → size in bytes.
    pub image_sizes: HashMap<String, i64>,
    pub zone: String,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Node) -> NodeInfo {
        let mut ni = NodeInfo::default();
        ni.set_node(Arc::new(node));
        ni
    }

    /// Replaces the node object, keeping its pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.annotations = node.metadata.annotations.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        self.allocatable = Resource::from_list(status.and_then(|s| s.allocatable.as_ref()));
        self.image_sizes.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                self.image_sizes
                    .insert(n.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        self.zone = zone_key(&self.labels);
        self.node = Some(node);
        self.generation += 1;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_requested.memory += pod.non_zero_memory;
        for hp in &pod.host_ports {
            self.used_ports.add(hp);
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes a pod by key; false when it was not here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_requested.memory -= pod.non_zero_memory;
        for hp in &pod.host_ports {
            self.used_ports.remove(hp);
        }
        self.generation += 1;
        true
    }
}

/// One selector that is the AND of several (a merged service selector plus a
/// ReplicaSet's requirements).
#[derive(Clone, Debug, Default)]
pub struct Selector {
    parts: Vec<LabelSelector>,
}

impl Selector {
    pub fn new(parts: Vec<LabelSelector>) -> Selector {
        Selector { parts }
    }

    /// `selector.Empty()`: selects everything, so it says nothing.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_everything())
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.parts.iter().all(|p| p.matches(labels))
    }
}

#[derive(Clone, Debug)]
struct ServiceSel {
    namespace: String,
    selector: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug)]
struct ControllerSel {
    namespace: String,
    selector: LabelSelector,
}

/// The objects whose selectors define "pods of the same workload" for
/// spreading: Services, ReplicationControllers, ReplicaSets, StatefulSets.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    services: BTreeMap<String, ServiceSel>,
    rcs: BTreeMap<String, ControllerSel>,
    replica_sets: BTreeMap<String, ControllerSel>,
    stateful_sets: BTreeMap<String, ControllerSel>,
}

fn meta_key(ns: Option<&String>, name: Option<&String>) -> (String, String) {
    (
        ns.cloned().unwrap_or_else(|| "default".into()),
        name.cloned().unwrap_or_default(),
    )
}

impl Workloads {
    pub fn upsert_service(&mut self, svc: &Service) {
        let (ns, name) = meta_key(svc.metadata.namespace.as_ref(), svc.metadata.name.as_ref());
        let selector = svc.spec.as_ref().and_then(|s| s.selector.clone());
        self.services.insert(
            format!("{ns}/{name}"),
            ServiceSel {
                namespace: ns,
                selector,
            },
        );
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        self.services.remove(&format!("{namespace}/{name}"));
    }

    pub fn upsert_replication_controller(&mut self, rc: &ReplicationController) {
        let (ns, name) = meta_key(rc.metadata.namespace.as_ref(), rc.metadata.name.as_ref());
        let Some(sel) = rc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            self.rcs.remove(&format!("{ns}/{name}"));
            return;
        };
        self.rcs.insert(
            format!("{ns}/{name}"),
            ControllerSel {
                namespace: ns,
                selector: LabelSelector::from_set(sel),
            },
        );
    }

    pub fn remove_replication_controller(&mut self, namespace: &str, name: &str) {
        self.rcs.remove(&format!("{namespace}/{name}"));
    }

    pub fn upsert_replica_set(&mut self, rs: &ReplicaSet) {
        let (ns, name) = meta_key(rs.metadata.namespace.as_ref(), rs.metadata.name.as_ref());
        let sel = rs.spec.as_ref().map(|s| &s.selector);
        Self::upsert_controller(&mut self.replica_sets, ns, name, sel);
    }

    pub fn remove_replica_set(&mut self, namespace: &str, name: &str) {
        self.replica_sets.remove(&format!("{namespace}/{name}"));
    }

    pub fn upsert_stateful_set(&mut self, ss: &StatefulSet) {
        let (ns, name) = meta_key(ss.metadata.namespace.as_ref(), ss.metadata.name.as_ref());
        let sel = ss.spec.as_ref().map(|s| &s.selector);
        Self::upsert_controller(&mut self.stateful_sets, ns, name, sel);
    }

    pub fn remove_stateful_set(&mut self, namespace: &str, name: &str) {
        self.stateful_sets.remove(&format!("{namespace}/{name}"));
    }

    fn upsert_controller(
        map: &mut BTreeMap<String, ControllerSel>,
        namespace: String,
        name: String,
        sel: Option<&ackemu_kube::meta::LabelSelector>,
    ) {
        let key = format!("{namespace}/{name}");
        match LabelSelector::from_meta(sel) {
            Ok(selector) => {
                map.insert(
                    key,
                    ControllerSel {
                        namespace,
                        selector,
                    },
                );
            }
            Err(_) => {
                map.remove(&key);
            }
        }
    }

    fn pod_services<'a>(&'a self, pod: &'a PodInfo) -> impl Iterator<Item = &'a ServiceSel> + 'a {
        self.services.values().filter(move |s| {
            s.namespace == pod.namespace
                && s.selector.as_ref().is_some_and(|sel| {
                    sel.iter()
                        .all(|(k, v)| pod.labels.get(k).is_some_and(|pv| pv == v))
                })
        })
    }

    /// The selector of "the pod's siblings" (`helper.DefaultSelector`): the
    /// merged selectors of the Services selecting it, narrowed by its
    /// controlling ReplicationController, ReplicaSet or StatefulSet.
    pub fn default_selector(&self, pod: &PodInfo) -> Selector {
        let mut set = BTreeMap::new();
        for s in self.pod_services(pod) {
            for (k, v) in s.selector.iter().flatten() {
                set.insert(k.clone(), v.clone());
            }
        }
        let mut extra = None;
        if let Some(owner) = pod.controller.as_ref() {
            let key = format!("{}/{}", pod.namespace, owner.name);
            let group = owner.api_version.split('/').next().unwrap_or("");
            match (owner.kind.as_str(), owner.api_version.contains('/')) {
                ("ReplicationController", false) => {
                    if let Some(rc) = self.rcs.get(&key) {
                        for r in rc.selector.requirements() {
                            if let Some(v) = r.values().first() {
                                set.insert(r.key().to_string(), v.clone());
                            }
                        }
                    }
                }
                ("ReplicaSet", true) if group == "apps" => {
                    extra = self.replica_sets.get(&key).map(|c| c.selector.clone());
                }
                ("StatefulSet", true) if group == "apps" => {
                    extra = self.stateful_sets.get(&key).map(|c| c.selector.clone());
                }
                _ => {}
            }
        }
        let merged = LabelSelector::from_set(&set);
        let mut parts = Vec::with_capacity(2);
        // A controller selecting exactly what the Services select adds
        // nothing; keep the per-pod match cheap.
        if let Some(extra) = extra.filter(|e| *e != merged) {
            if !merged.is_everything() {
                parts.push(merged);
            }
            parts.push(extra);
        } else {
            parts.push(merged);
        }
        Selector::new(parts)
    }

    /// Every selector of a Service, RC, ReplicaSet or StatefulSet in the
    /// pod's namespace that selects it (the 1.11 `getSelectors`).
    pub fn matching_selectors(&self, pod: &PodInfo) -> Vec<LabelSelector> {
        let mut out: Vec<LabelSelector> = self
            .pod_services(pod)
            .map(|s| LabelSelector::from_set(s.selector.as_ref().unwrap_or(&BTreeMap::new())))
            .collect();
        for map in [&self.rcs, &self.replica_sets, &self.stateful_sets] {
            for c in map.values() {
                if c.namespace == pod.namespace && c.selector.matches(&pod.labels) {
                    out.push(c.selector.clone());
                }
            }
        }
        out
    }
}

/// The immutable view one scheduling cycle reads.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    image_num_nodes: Arc<HashMap<String, usize>>,
    workloads: Arc<Workloads>,
    generation: u64,
}

impl Snapshot {
    /// A snapshot of exactly these objects (tests, simulations). Pods with a
    /// `nodeName` are placed on their node; others are ignored.
    pub fn from_objects(nodes: Vec<Node>, pods: Vec<Pod>, workloads: Workloads) -> Snapshot {
        let mut cache = Cache::new();
        for n in nodes {
            cache.add_node(n);
        }
        for p in pods {
            cache.add_pod(p);
        }
        cache.set_workloads(workloads);
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        snap
    }

    /// Nodes in Kubernetes' node-tree order (zones interleaved).
    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// How many nodes have an image (`ImageStateSummary.NumNodes`).
    pub fn image_num_nodes(&self, image: &str) -> usize {
        self.image_num_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn workloads(&self) -> &Workloads {
        &self.workloads
    }
}

#[derive(Clone, Debug)]
struct PodState {
    pod: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// Errors of cache bookkeeping: the caller's view and the cache disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("pod {0} is already in the cache, so it cannot be assumed")]
    AlreadyPresent(String),
    #[error("pod {0} was not assumed, so it cannot be forgotten")]
    NotAssumed(String),
    #[error("pod {key} is assumed on node {node}, not on {other}")]
    WrongNode {
        key: String,
        node: String,
        other: String,
    },
    #[error("assumed pod {0} has no node name")]
    NoNodeName(String),
}

/// The scheduler's mutable model of the cluster (`backend/cache`): nodes and
/// their pods as the informers report them, plus pods the scheduler has
/// *assumed* onto a node before the binding is confirmed.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Node names per zone key, in arrival order (the node tree).
    zones: BTreeMap<String, Vec<String>>,
    pods: HashMap<String, PodState>,
    image_num_nodes: Arc<HashMap<String, usize>>,
    workloads: Arc<Workloads>,
    dirty: HashSet<String>,
    tree_changed: bool,
    generation: u64,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    fn touch(&mut self, name: &str) {
        self.generation += 1;
        self.dirty.insert(name.to_string());
    }

    fn image_names(ni: &NodeInfo) -> BTreeSet<String> {
        ni.image_sizes.keys().cloned().collect()
    }

    fn adjust_images(&mut self, names: &BTreeSet<String>, add: bool) {
        if names.is_empty() {
            return;
        }
        let map = Arc::make_mut(&mut self.image_num_nodes);
        for n in names {
            if add {
                *map.entry(n.clone()).or_default() += 1;
            } else if let Some(c) = map.get_mut(n) {
                *c -= 1;
                if *c == 0 {
                    map.remove(n);
                }
            }
        }
    }

    /// Adds or replaces a node object.
    pub fn add_node(&mut self, node: Node) {
        self.update_node(node);
    }

    /// Adds or replaces a node object (the informer's add and update).
    pub fn update_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node = Arc::new(node);
        let entry = self.nodes.entry(name.clone()).or_default();
        let had_node = entry.node.is_some();
        let old_images = Self::image_names(entry);
        let old_zone = entry.zone.clone();
        let ni = Arc::make_mut(entry);
        ni.set_node(node);
        let new_images = Self::image_names(ni);
        let new_zone = ni.zone.clone();
        if had_node {
            self.adjust_images(&old_images, false);
            if old_zone != new_zone {
                self.remove_from_tree(&name, &old_zone);
                self.zones.entry(new_zone).or_default().push(name.clone());
                self.tree_changed = true;
            }
        } else {
            self.zones.entry(new_zone).or_default().push(name.clone());
            self.tree_changed = true;
        }
        self.adjust_images(&new_images, true);
        self.touch(&name);
    }

    fn remove_from_tree(&mut self, name: &str, zone: &str) {
        if let Some(v) = self.zones.get_mut(zone) {
            v.retain(|n| n != name);
            if v.is_empty() {
                self.zones.remove(zone);
            }
        }
    }

    /// Removes a node. Its pods stay known (they will be deleted by the
    /// garbage collector and reported), but the node leaves the snapshot.
    pub fn remove_node(&mut self, name: &str) {
        let Some(entry) = self.nodes.get_mut(name) else {
            return;
        };
        if entry.node.is_none() {
            return;
        }
        let images = Self::image_names(entry);
        let zone = entry.zone.clone();
        let ni = Arc::make_mut(entry);
        ni.node = None;
        ni.image_sizes.clear();
        ni.generation += 1;
        let empty = ni.pods.is_empty();
        if empty {
            self.nodes.remove(name);
        }
        self.adjust_images(&images, false);
        self.remove_from_tree(name, &zone);
        self.tree_changed = true;
        self.touch(name);
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str) {
        let entry = self.nodes.entry(node.to_string()).or_insert_with(|| {
            Arc::new(NodeInfo {
                name: node.to_string(),
                ..NodeInfo::default()
            })
        });
        Arc::make_mut(entry).add_pod(pod);
        self.touch(node);
    }

    fn unplace(&mut self, key: &str, node: &str) {
        if let Some(entry) = self.nodes.get_mut(node) {
            let ni = Arc::make_mut(entry);
            ni.remove_pod(key);
            if ni.node.is_none() && ni.pods.is_empty() {
                self.nodes.remove(node);
            }
        }
        self.touch(node);
    }

    /// An assigned pod was added by the informer; confirms an assumption.
    /// Unassigned and terminal pods are ignored.
    pub fn add_pod(&mut self, pod: Pod) {
        self.update_pod(pod);
    }

    /// An assigned pod changed (or was added): replaces what the cache
    /// holds for it, confirming an assumed pod on whichever node the API
    /// says. A pod that became terminal is removed.
    pub fn update_pod(&mut self, pod: Pod) {
        let info = Arc::new(PodInfo::new(pod));
        let terminal = PodInfo::is_terminal(&info.pod);
        if let Some(old) = self.pods.remove(&info.key) {
            self.unplace(&info.key, &old.node);
        }
        let Some(node) = info.node_name.clone() else {
            return;
        };
        if terminal {
            return;
        }
        self.pods.insert(
            info.key.clone(),
            PodState {
                pod: info.clone(),
                node: node.clone(),
                assumed: false,
            },
        );
        self.place(info, &node);
    }

    /// A pod was deleted.
    pub fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            self.unplace(key, &old.node);
        }
    }

    /// Places a pod the scheduler chose a node for before the API confirms
    /// the binding (`AssumePod`); the pod's `nodeName` must be set.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>) -> Result<(), CacheError> {
        if self.pods.contains_key(&pod.key) {
            return Err(CacheError::AlreadyPresent(pod.key.clone()));
        }
        let node = pod
            .node_name
            .clone()
            .ok_or_else(|| CacheError::NoNodeName(pod.key.clone()))?;
        self.pods.insert(
            pod.key.clone(),
            PodState {
                pod: pod.clone(),
                node: node.clone(),
                assumed: true,
            },
        );
        self.place(pod, &node);
        Ok(())
    }

    /// Drops an assumption after a failed binding (`ForgetPod`).
    pub fn forget_pod(&mut self, key: &str, node: &str) -> Result<(), CacheError> {
        match self.pods.get(key) {
            Some(s) if s.assumed && s.node == node => {
                self.pods.remove(key);
                self.unplace(key, node);
                Ok(())
            }
            Some(s) if s.assumed => Err(CacheError::WrongNode {
                key: key.to_string(),
                node: s.node.clone(),
                other: node.to_string(),
            }),
            _ => Err(CacheError::NotAssumed(key.to_string())),
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|s| s.assumed)
    }

    /// The node a pod is placed on (assumed or confirmed).
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|s| s.node.as_str())
    }

    pub fn pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(key).map(|s| &s.pod)
    }

    pub fn workloads_mut(&mut self) -> &mut Workloads {
        self.generation += 1;
        Arc::make_mut(&mut self.workloads)
    }

    pub fn set_workloads(&mut self, w: Workloads) {
        self.workloads = Arc::new(w);
        self.generation += 1;
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    pub fn num_nodes(&self) -> usize {
        self.zones.values().map(Vec::len).sum()
    }

    /// Node names in node-tree order: one node from each zone in turn.
    fn tree_order(&self) -> Vec<String> {
        let zones: Vec<&Vec<String>> = self.zones.values().collect();
        let total: usize = zones.iter().map(|z| z.len()).sum();
        let mut out = Vec::with_capacity(total);
        let mut i = 0;
        while out.len() < total {
            for z in &zones {
                if let Some(n) = z.get(i) {
                    out.push(n.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// Brings a snapshot up to date (`UpdateSnapshot`): only changed nodes
    /// are replaced unless nodes were added or removed.
    pub fn update_snapshot(&mut self, snap: &mut Snapshot) {
        if self.tree_changed || snap.nodes.len() != self.num_nodes() || snap.generation == 0 {
            let order = self.tree_order();
            snap.nodes = order
                .iter()
                .filter_map(|n| self.nodes.get(n).cloned())
                .collect();
            snap.index = order.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
            self.tree_changed = false;
        } else {
            for name in &self.dirty {
                if let (Some(&i), Some(ni)) = (snap.index.get(name), self.nodes.get(name)) {
                    snap.nodes[i] = ni.clone();
                }
            }
        }
        self.dirty.clear();
        snap.image_num_nodes = self.image_num_nodes.clone();
        snap.workloads = self.workloads.clone();
        snap.generation = self.generation.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};

    #[test]
    fn node_info_tracks_requests_ports_and_pods() {
        let mut ni = NodeInfo::new(NodeBuilder::new("n1").cpu("4").memory("8Gi").build());
        let p1 = Arc::new(PodInfo::new(
            PodBuilder::new("default", "a")
                .container_requests(&[("cpu", "1"), ("memory", "1Gi")])
                .host_port(80)
                .build(),
        ));
        let p2 = Arc::new(PodInfo::new(PodBuilder::new("default", "b").build()));
        ni.add_pod(p1);
        ni.add_pod(p2);
        assert_eq!(ni.requested.milli_cpu, 1000);
        assert_eq!(ni.non_zero_requested.milli_cpu, 1100);
        assert_eq!(
            ni.non_zero_requested.memory,
            (1 << 30) + resources::DEFAULT_MEMORY_REQUEST
        );
        let http = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        assert!(ni.used_ports.conflicts(&http));
        assert!(!ni.used_ports.conflicts(&HostPort {
            protocol: "UDP".into(),
            ..http.clone()
        }));
        assert!(ni.remove_pod("default/a"));
        assert!(!ni.used_ports.conflicts(&http));
        assert_eq!(ni.requested.milli_cpu, 0);
        assert_eq!(ni.pods.len(), 1);
        assert!(!ni.remove_pod("default/a"));
    }

    #[test]
    fn host_port_conflicts_table() {
        // (in use, wanted, conflict)
        let cases = [
            (("0.0.0.0", "TCP", 80), ("0.0.0.0", "TCP", 80), true),
            (("0.0.0.0", "TCP", 80), ("10.0.0.1", "TCP", 80), true),
            (("10.0.0.1", "TCP", 80), ("0.0.0.0", "TCP", 80), true),
            (("10.0.0.1", "TCP", 80), ("10.0.0.2", "TCP", 80), false),
            (("10.0.0.1", "TCP", 80), ("10.0.0.1", "UDP", 80), false),
            (("10.0.0.1", "TCP", 80), ("10.0.0.1", "TCP", 8080), false),
        ];
        for (used, want, conflict) in cases {
            let mut h = HostPortInfo::default();
            let hp = |t: (&str, &str, i32)| HostPort {
                ip: t.0.into(),
                protocol: t.1.into(),
                port: t.2,
            };
            h.add(&hp(used));
            assert_eq!(h.conflicts(&hp(want)), conflict, "{used:?} vs {want:?}");
        }
    }

    #[test]
    fn cache_assume_confirm_forget() {
        let mut cache = Cache::new();
        cache.add_node(NodeBuilder::new("n1").cpu("4").build());
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let before = snap.get("n1").cloned();

        let pod = PodBuilder::new("default", "p")
            .container_requests(&[("cpu", "1")])
            .node_name("n1")
            .build();
        cache
            .assume_pod(Arc::new(PodInfo::new(pod.clone())))
            .unwrap();
        assert!(cache.is_assumed("default/p"));
        assert_eq!(
            cache.assume_pod(Arc::new(PodInfo::new(pod.clone()))),
            Err(CacheError::AlreadyPresent("default/p".into()))
        );
        // The old snapshot did not change under us.
        assert_eq!(before.as_ref().unwrap().requested.milli_cpu, 0);
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);

        // The informer confirms the binding.
        cache.add_pod(pod);
        assert!(!cache.is_assumed("default/p"));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
        assert_eq!(
            cache.forget_pod("default/p", "n1"),
            Err(CacheError::NotAssumed("default/p".into()))
        );

        let q = PodBuilder::new("default", "q").node_name("n1").build();
        cache.assume_pod(Arc::new(PodInfo::new(q))).unwrap();
        cache.forget_pod("default/q", "n1").unwrap();
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn pods_before_their_node_and_terminal_pods() {
        let mut cache = Cache::new();
        cache.add_pod(
            PodBuilder::new("default", "early")
                .container_requests(&[("cpu", "1")])
                .node_name("n1")
                .build(),
        );
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(
            snap.num_nodes(),
            0,
            "a node nobody has seen is not schedulable"
        );
        cache.add_node(NodeBuilder::new("n1").cpu("4").build());
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);

        cache.update_pod(
            PodBuilder::new("default", "early")
                .container_requests(&[("cpu", "1")])
                .node_name("n1")
                .phase("Succeeded")
                .build(),
        );
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 0);

        cache.remove_node("n1");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.num_nodes(), 0);
    }

    #[test]
    fn node_tree_interleaves_zones() {
        let mut cache = Cache::new();
        for (n, z) in [
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
            ("b1", "b"),
            ("c1", "c"),
        ] {
            cache.add_node(NodeBuilder::new(n).label(LABEL_ZONE, z).build());
        }
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let order: Vec<&str> = snap.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "a3"]);
    }

    #[test]
    fn image_names_are_normalized() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized_image_name("registry:5000/app"),
            "registry:5000/app:latest"
        );
    }

    #[test]
    fn default_selector_merges_services_and_owner() {
        use ackemu_kube::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
        use ackemu_kube::api::core::v1::ServiceSpec;
        let mut w = Workloads::default();
        let mut svc = Service::default();
        svc.metadata.name = Some("web".into());
        svc.metadata.namespace = Some("default".into());
        svc.spec = Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        w.upsert_service(&svc);
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some("web-1".into());
        rs.metadata.namespace = Some("default".into());
        rs.spec = Some(ReplicaSetSpec {
            selector: ackemu_kube::meta::LabelSelector {
                match_labels: Some([("pod-template-hash".to_string(), "1".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        });
        w.upsert_replica_set(&rs);

        let pod = PodInfo::new(
            PodBuilder::new("default", "web-1-x")
                .label("app", "web")
                .label("pod-template-hash", "1")
                .owner("apps/v1", "ReplicaSet", "web-1", "uid-rs")
                .build(),
        );
        let sel = w.default_selector(&pod);
        assert!(!sel.is_empty());
        let mut other = pod.labels.clone();
        assert!(sel.matches(&other));
        other.insert("pod-template-hash".into(), "2".into());
        assert!(!sel.matches(&other), "the ReplicaSet's requirement narrows");
        assert_eq!(w.matching_selectors(&pod).len(), 2);

        let lonely = PodInfo::new(PodBuilder::new("default", "app").build());
        assert!(w.default_selector(&lonely).is_empty());
        assert!(w.matching_selectors(&lonely).is_empty());
    }
}
