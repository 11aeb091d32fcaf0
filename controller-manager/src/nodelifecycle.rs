//! Node lifecycle (`pkg/controller/nodelifecycle`) and taint-based eviction
//! (`pkg/controller/tainteviction`).
//!
//! [`NodeLifecycle::monitor`] is one `monitorNodeHealth` pass: it keeps, per
//! node, the cluster instant it last heard from the kubelet (a new Ready
//! heartbeat, a changed status, or a renewed Lease in `kube-node-lease`);
//! after the grace period (50 s, 60 s for a node that never posted status)
//! it sets Ready, MemoryPressure, DiskPressure and PIDPressure to Unknown
//! ("Kubelet stopped posting node status."), marks the node's pods not
//! ready, and queues the node for the `node.kubernetes.io/unreachable`
//! (Unknown) or `node.kubernetes.io/not-ready` (False) NoExecute taint. The
//! queue is drained through a per-zone token bucket whose rate follows the
//! zone's health (normal, partial or full disruption); when every zone is
//! fully disrupted, no node is tainted and existing taints are removed.
//! NoSchedule taints mirror node conditions on every pass.
//!
//! [`TaintEviction`] deletes pods on NoExecute-tainted nodes: at once if a
//! taint is not tolerated, otherwise after the smallest `tolerationSeconds`
//! of the tolerations used, counted from when the controller first saw the
//! pod tainted (the DefaultTolerationSeconds admission plugin gives every
//! pod 300 s for `not-ready` and `unreachable`; see
//! [`add_default_tolerations`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::api::coordination::v1::Lease;
use ackemu_kube::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use ackemu_kube::meta::Time;
use jiff::Timestamp;

use crate::util::fit::{
    EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY, TAINT_PID_PRESSURE, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE, tolerates,
};
use crate::util::{Event, Now, ObjectRef, time};

pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The DefaultTolerationSeconds admission plugin's default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// `--node-monitor-grace-period` (50 s since Kubernetes 1.32).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`.
    pub node_startup_grace_period: Duration,
    /// `--node-monitor-period`: how often the driver calls `monitor`.
    pub node_monitor_period: Duration,
    /// `--node-eviction-rate`: taints per second in a healthy zone.
    pub eviction_limiter_qps: f64,
    /// `--secondary-node-eviction-rate`: in a partially disrupted large zone.
    pub secondary_eviction_limiter_qps: f64,
    /// `--large-cluster-size-threshold`.
    pub large_cluster_threshold: usize,
    /// `--unhealthy-zone-threshold`.
    pub unhealthy_zone_threshold: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            eviction_limiter_qps: 0.1,
            secondary_eviction_limiter_qps: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// A zone's health (`ZoneState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    FullDisruption,
    PartialDisruption,
}

/// What the driver does after a pass.
#[derive(Clone, Debug, PartialEq)]
pub enum LifecycleAction {
    /// `UpdateStatus` of this node (conditions set to Unknown).
    UpdateNodeStatus(Box<Node>),
    /// Read the latest node, apply [`apply_taints`] and update it
    /// (`SwapNodeControllerTaint`, `AddOrUpdateTaintOnNode`).
    PatchTaints {
        node: String,
        add: Vec<Taint>,
        remove: Vec<Taint>,
    },
    /// Set the pod's Ready condition to False ([`mark_pod_not_ready`]) and
    /// update its status; on failure call
    /// [`NodeLifecycle::mark_pods_failed`] so the next pass retries.
    MarkPodNotReady {
        namespace: String,
        name: String,
        node: String,
    },
    Event(Event),
}

#[derive(Clone, Debug)]
struct Health {
    probe: ClusterInstant,
    ready_transition: ClusterInstant,
    /// Ready condition as last seen: (heartbeat, transition, status).
    ready: Option<(Option<Timestamp>, Option<Timestamp>, String)>,
    lease_renew: Option<Timestamp>,
}

/// A token bucket with burst 1 (`flowcontrol.NewTokenBucketRateLimiter`).
#[derive(Clone, Debug)]
struct Bucket {
    qps: f64,
    tokens: f64,
    last: ClusterInstant,
}

impl Bucket {
    fn new(qps: f64, now: ClusterInstant) -> Bucket {
        Bucket {
            qps,
            tokens: if qps > 0.0 { 1.0 } else { 0.0 },
            last: now,
        }
    }

    fn try_accept(&mut self, now: ClusterInstant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The node lifecycle controller's memory.
#[derive(Clone, Debug, Default)]
pub struct NodeLifecycle {
    cfg: LifecycleConfig,
    health: HashMap<String, Health>,
    zone_states: BTreeMap<String, ZoneState>,
    /// Per zone: the limiter and the nodes waiting for a NoExecute taint.
    tainters: BTreeMap<String, (Bucket, Vec<String>)>,
    retry_pods_not_ready: BTreeSet<String>,
}

/// Everything a pass reads from the informers.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub nodes: Vec<&'a Node>,
    /// Leases of `kube-node-lease` by node name.
    pub leases: BTreeMap<String, &'a Lease>,
    pub pods_by_node: BTreeMap<String, Vec<&'a Pod>>,
}

pub fn node_condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `GetZoneKey`: region and zone, empty when the node has neither.
pub fn zone_key(node: &Node) -> String {
    let l = node.metadata.labels.as_ref();
    let get = |k: &str| l.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let (region, zone) = (get(LABEL_REGION), get(LABEL_ZONE));
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

fn node_name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn node_ref(node: &Node) -> ObjectRef {
    let mut r = ObjectRef::new("v1", "Node", &node.metadata);
    r.uid = r.name.clone();
    r
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        value: None,
        time_added: None,
    }
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    crate::util::fit::node_taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// Applies a taint patch to `taints`: removes those matching key and
/// effect of `remove`, adds `add` (NoExecute taints get `timeAdded = now`)
/// unless an equal taint is there already.
pub fn apply_taints(
    taints: &[Taint],
    add: &[Taint],
    remove: &[Taint],
    now: Timestamp,
) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| {
            !remove
                .iter()
                .any(|r| r.key == t.key && r.effect == t.effect)
        })
        .cloned()
        .collect();
    for a in add {
        if out.iter().any(|t| t.key == a.key && t.effect == a.effect) {
            continue;
        }
        let mut a = a.clone();
        if a.effect == EFFECT_NO_EXECUTE && a.time_added.is_none() {
            a.time_added = Some(Time(now));
        }
        out.push(a);
    }
    out
}

/// `MarkPodsNotReady` for one pod: its Ready condition set to False, or
/// `None` when it is not ready already.
pub fn mark_pod_not_ready(pod: &Pod, now: Timestamp) -> Option<Pod> {
    let mut p = pod.clone();
    let c = p
        .status
        .as_mut()?
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    c.status = "False".into();
    c.last_transition_time = Some(Time(now));
    Some(p)
}

fn ready_fingerprint(
    c: Option<&NodeCondition>,
) -> Option<(Option<Timestamp>, Option<Timestamp>, String)> {
    c.map(|c| {
        (
            c.last_heartbeat_time.as_ref().map(|t| t.0),
            c.last_transition_time.as_ref().map(|t| t.0),
            c.status.clone(),
        )
    })
}

/// The conditions that go Unknown when the kubelet goes silent.
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// `nodeConditionToTaintKeyStatusMap`: (condition, status) → NoSchedule taint.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_DISK_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", TAINT_PID_PRESSURE),
];

impl NodeLifecycle {
    pub fn new(cfg: LifecycleConfig) -> NodeLifecycle {
        NodeLifecycle {
            cfg,
            ..Default::default()
        }
    }

    pub fn zone_state(&self, zone: &str) -> Option<ZoneState> {
        self.zone_states.get(zone).copied()
    }

    /// Pods of `node` could not all be marked not ready: retry next pass.
    pub fn mark_pods_failed(&mut self, node: &str) {
        self.retry_pods_not_ready.insert(node.to_owned());
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, node: &str) {
        self.health.remove(node);
        self.retry_pods_not_ready.remove(node);
        for (_, q) in self.tainters.values_mut() {
            q.retain(|n| n != node);
        }
    }

    /// `tryUpdateNodeHealth`: returns the grace period, the Ready condition
    /// as observed and as it is after this pass, and the node to write back
    /// if it changed.
    fn update_health(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        now: Now,
    ) -> (Option<NodeCondition>, Option<NodeCondition>, Option<Node>) {
        let name = node_name(node);
        let current = node_condition(node, "Ready").cloned();
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let created_mono = |now: Now| match created {
            Some(c) => now.mono - time::since(now.wall, c),
            None => now.mono,
        };
        let grace;
        let observed;
        if current.is_none() {
            observed = NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: node.metadata.creation_timestamp.clone(),
                ..Default::default()
            };
            grace = self.cfg.node_startup_grace_period;
            self.health.entry(name.clone()).or_insert_with(|| Health {
                probe: created_mono(now),
                ready_transition: created_mono(now),
                ready: None,
                lease_renew: None,
            });
        } else {
            observed = current.clone().expect("checked");
            grace = self.cfg.node_monitor_grace_period;
        }
        let fp = ready_fingerprint(current.as_ref());
        let h = match self.health.get(&name) {
            None => Health {
                probe: now.mono,
                ready_transition: now.mono,
                ready: fp.clone(),
                lease_renew: None,
            },
            Some(saved) => {
                let mut h = saved.clone();
                match (&saved.ready, &fp) {
                    (None, Some(_)) | (Some(_), None) => {
                        h.probe = now.mono;
                        h.ready_transition = now.mono;
                    }
                    (Some(s), Some(c)) if s.0 != c.0 => {
                        h.probe = now.mono;
                        if s.1 != c.1 {
                            h.ready_transition = now.mono;
                        }
                    }
                    _ => {}
                }
                h.ready = fp.clone();
                h
            }
        };
        let mut h = h;
        let renew = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        if let Some(r) = renew
            && h.lease_renew.is_none_or(|s| s < r)
        {
            h.lease_renew = Some(r);
            h.probe = now.mono;
        }
        if now.mono > h.probe + grace {
            let mut n = node.clone();
            let status = n.status.get_or_insert_with(Default::default);
            let conds = status.conditions.get_or_insert_with(Vec::new);
            for t in MONITORED_CONDITIONS {
                match conds.iter_mut().find(|c| c.type_ == t) {
                    None => conds.push(NodeCondition {
                        type_: t.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(now.time()),
                    }),
                    Some(c) if c.status != "Unknown" => {
                        c.status = "Unknown".into();
                        c.reason = Some("NodeStatusUnknown".into());
                        c.message = Some("Kubelet stopped posting node status.".into());
                        c.last_transition_time = Some(now.time());
                    }
                    Some(_) => {}
                }
            }
            let after = node_condition(&n, "Ready").cloned();
            if after.as_ref() != Some(&observed) {
                h.ready_transition = now.mono;
                h.ready = ready_fingerprint(after.as_ref());
                self.health.insert(name, h);
                return (Some(observed), after, Some(n));
            }
        }
        self.health.insert(name, h);
        (Some(observed).filter(|_| current.is_some()), current, None)
    }

    /// One `monitorNodeHealth` pass followed by a tainting pass.
    pub fn monitor(&mut self, obs: &Observed<'_>, now: Now) -> Vec<LifecycleAction> {
        let mut out = Vec::new();
        let mut zone_conditions: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut updated: HashMap<String, Node> = HashMap::new();
        let live: BTreeSet<String> = obs.nodes.iter().map(|n| node_name(n)).collect();
        self.health.retain(|k, _| live.contains(k));
        for (_, q) in self.tainters.values_mut() {
            q.retain(|n| live.contains(n));
        }

        for node in &obs.nodes {
            let name = node_name(node);
            let (observed, current, write) =
                self.update_health(node, obs.leases.get(&name).copied(), now);
            let node_now = match write {
                Some(n) => {
                    out.push(LifecycleAction::UpdateNodeStatus(Box::new(n.clone())));
                    updated.insert(name.clone(), n.clone());
                    n
                }
                None => (*node).clone(),
            };
            let excluded = node
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_EXCLUDE_DISRUPTION));
            if !excluded {
                zone_conditions
                    .entry(zone_key(node))
                    .or_default()
                    .push(current.as_ref().is_some_and(|c| c.status == "True"));
            }
            out.extend(self.no_schedule_taints(&node_now, now));

            let (Some(current), Some(observed)) = (current, observed) else {
                continue;
            };
            let pods = obs
                .pods_by_node
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let became_not_ready = current.status != "True" && observed.status == "True";
            let retry = self.retry_pods_not_ready.contains(&name) && observed.status != "True";
            if became_not_ready {
                out.push(LifecycleAction::Event(Event::normal(
                    node_ref(node),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                )));
            }
            if became_not_ready || retry {
                self.retry_pods_not_ready.remove(&name);
                for p in pods {
                    if crate::util::pod::is_ready(p) {
                        out.push(LifecycleAction::MarkPodNotReady {
                            namespace: p.metadata.namespace.clone().unwrap_or_default(),
                            name: p.metadata.name.clone().unwrap_or_default(),
                            node: name.clone(),
                        });
                    }
                }
            }
            if current.status == "True" && observed.status == "True" {
                self.retry_pods_not_ready.remove(&name);
            }
            out.extend(self.taint_based_eviction(node, &observed.status));
        }
        out.extend(self.handle_disruption(obs, &zone_conditions, now));
        out.extend(self.taint_pass(obs, &updated, now));
        out
    }

    /// `doNoScheduleTaintingPass`.
    fn no_schedule_taints(&self, node: &Node, _now: Now) -> Vec<LifecycleAction> {
        let mut want: BTreeSet<&str> = BTreeSet::new();
        for (cond, status, key) in CONDITION_TAINTS {
            if node_condition(node, cond).is_some_and(|c| c.status == status) {
                want.insert(key);
            }
        }
        if node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            want.insert(TAINT_UNSCHEDULABLE);
        }
        let managed: BTreeSet<&str> = CONDITION_TAINTS
            .iter()
            .map(|c| c.2)
            .chain([TAINT_UNSCHEDULABLE])
            .collect();
        let have: BTreeSet<&str> = crate::util::fit::node_taints(node)
            .iter()
            .filter(|t| t.effect == EFFECT_NO_SCHEDULE && managed.contains(t.key.as_str()))
            .map(|t| t.key.as_str())
            .collect();
        if want == have {
            return Vec::new();
        }
        vec![LifecycleAction::PatchTaints {
            node: node_name(node),
            add: want
                .difference(&have)
                .map(|k| taint(k, EFFECT_NO_SCHEDULE))
                .collect(),
            remove: have
                .difference(&want)
                .map(|k| taint(k, EFFECT_NO_SCHEDULE))
                .collect(),
        }]
    }

    /// `processTaintBaseEviction`, on the Ready status observed at the
    /// start of the pass.
    fn taint_based_eviction(&mut self, node: &Node, observed: &str) -> Vec<LifecycleAction> {
        let name = node_name(node);
        let zone = zone_key(node);
        match observed {
            "False" | "Unknown" => {
                let (want, opposite) = if observed == "False" {
                    (TAINT_NOT_READY, TAINT_UNREACHABLE)
                } else {
                    (TAINT_UNREACHABLE, TAINT_NOT_READY)
                };
                if has_taint(node, opposite, EFFECT_NO_EXECUTE) {
                    // Swap straight away, no rate limit.
                    return vec![LifecycleAction::PatchTaints {
                        node: name,
                        add: vec![taint(want, EFFECT_NO_EXECUTE)],
                        remove: vec![taint(opposite, EFFECT_NO_EXECUTE)],
                    }];
                }
                if !has_taint(node, want, EFFECT_NO_EXECUTE) {
                    let q = &mut self
                        .tainters
                        .entry(zone)
                        .or_insert_with(|| {
                            (
                                Bucket::new(
                                    self.cfg.eviction_limiter_qps,
                                    ClusterInstant::default(),
                                ),
                                Vec::new(),
                            )
                        })
                        .1;
                    if !q.contains(&name) {
                        q.push(name);
                    }
                }
                Vec::new()
            }
            "True" => self.mark_reachable(node),
            _ => Vec::new(),
        }
    }

    /// `markNodeAsReachable`: both NoExecute taints off, out of the queue.
    fn mark_reachable(&mut self, node: &Node) -> Vec<LifecycleAction> {
        let name = node_name(node);
        if let Some((_, q)) = self.tainters.get_mut(&zone_key(node)) {
            q.retain(|n| *n != name);
        }
        let remove: Vec<Taint> = [TAINT_NOT_READY, TAINT_UNREACHABLE]
            .into_iter()
            .filter(|k| has_taint(node, k, EFFECT_NO_EXECUTE))
            .map(|k| taint(k, EFFECT_NO_EXECUTE))
            .collect();
        if remove.is_empty() {
            return Vec::new();
        }
        vec![LifecycleAction::PatchTaints {
            node: name,
            add: Vec::new(),
            remove,
        }]
    }

    fn compute_zone_state(&self, ready: &[bool]) -> ZoneState {
        let r = ready.iter().filter(|x| **x).count();
        let nr = ready.len() - r;
        if r == 0 && nr > 0 {
            ZoneState::FullDisruption
        } else if nr > 2 && nr as f64 / (nr + r) as f64 >= self.cfg.unhealthy_zone_threshold {
            ZoneState::PartialDisruption
        } else {
            ZoneState::Normal
        }
    }

    fn qps_for(&self, state: ZoneState, zone_size: usize) -> f64 {
        match state {
            ZoneState::PartialDisruption => {
                if zone_size > self.cfg.large_cluster_threshold {
                    self.cfg.secondary_eviction_limiter_qps
                } else {
                    0.0
                }
            }
            _ => self.cfg.eviction_limiter_qps,
        }
    }

    fn set_limiter(&mut self, zone: &str, qps: f64, now: Now) {
        let e = self
            .tainters
            .entry(zone.to_owned())
            .or_insert_with(|| (Bucket::new(qps, now.mono), Vec::new()));
        if e.0.qps != qps {
            e.0 = Bucket::new(qps, now.mono);
        }
    }

    /// `handleDisruption`.
    fn handle_disruption(
        &mut self,
        obs: &Observed<'_>,
        zones: &BTreeMap<String, Vec<bool>>,
        now: Now,
    ) -> Vec<LifecycleAction> {
        let mut out = Vec::new();
        let mut new_states = BTreeMap::new();
        let mut all_are = true;
        for (k, v) in zones {
            let s = self.compute_zone_state(v);
            if s != ZoneState::FullDisruption {
                all_are = false;
            }
            new_states.insert(k.clone(), s);
            self.zone_states
                .entry(k.clone())
                .or_insert(ZoneState::Initial);
        }
        self.zone_states.retain(|k, _| zones.contains_key(k));
        let all_were = self
            .zone_states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);
        if all_are && all_were {
            return out;
        }
        if all_are {
            // Entering master disruption mode: no evictions anywhere.
            for n in &obs.nodes {
                out.extend(self.mark_reachable(n));
            }
            let zones: Vec<String> = self.zone_states.keys().cloned().collect();
            for z in zones {
                self.set_limiter(&z, 0.0, now);
                self.zone_states.insert(z, ZoneState::FullDisruption);
            }
            return out;
        }
        if all_were {
            // Exiting: every node gets a fresh grace period.
            for h in self.health.values_mut() {
                h.probe = now.mono;
                h.ready_transition = now.mono;
            }
            for (z, s) in &new_states {
                let qps = self.qps_for(*s, zones[z].len());
                self.set_limiter(z, qps, now);
                self.zone_states.insert(z.clone(), *s);
            }
            return out;
        }
        for (z, s) in &new_states {
            if self.zone_states.get(z) == Some(s) {
                continue;
            }
            let qps = self.qps_for(*s, zones[z].len());
            self.set_limiter(z, qps, now);
            self.zone_states.insert(z.clone(), *s);
        }
        out
    }

    /// `doNoExecuteTaintingPass`: drains each zone's queue through its
    /// limiter.
    fn taint_pass(
        &mut self,
        obs: &Observed<'_>,
        updated: &HashMap<String, Node>,
        now: Now,
    ) -> Vec<LifecycleAction> {
        let mut out = Vec::new();
        let by_name: HashMap<String, &Node> =
            obs.nodes.iter().map(|n| (node_name(n), *n)).collect();
        for (bucket, queue) in self.tainters.values_mut() {
            while let Some(name) = queue.first().cloned() {
                let Some(node) = updated.get(&name).or(by_name.get(&name).copied()) else {
                    queue.remove(0);
                    continue;
                };
                let status = node_condition(node, "Ready").map(|c| c.status.clone());
                let (want, opposite) = match status.as_deref() {
                    Some("False") => (TAINT_NOT_READY, TAINT_UNREACHABLE),
                    Some("Unknown") => (TAINT_UNREACHABLE, TAINT_NOT_READY),
                    _ => {
                        queue.remove(0);
                        continue;
                    }
                };
                if !bucket.try_accept(now.mono) {
                    break;
                }
                queue.remove(0);
                out.push(LifecycleAction::PatchTaints {
                    node: name,
                    add: vec![taint(want, EFFECT_NO_EXECUTE)],
                    remove: vec![taint(opposite, EFFECT_NO_EXECUTE)],
                });
            }
        }
        out
    }
}

/// The DefaultTolerationSeconds admission plugin: `not-ready` and
/// `unreachable` NoExecute tolerations for `seconds` unless the pod has its
/// own.
pub fn add_default_tolerations(pod: &mut Pod, seconds: i64) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let t = taint(key, EFFECT_NO_EXECUTE);
        if tols.iter().any(|x| tolerates(x, &t)) {
            continue;
        }
        tols.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(EFFECT_NO_EXECUTE.into()),
            toleration_seconds: Some(seconds),
            value: None,
        });
    }
}

/// What the taint eviction controller asks of the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum EvictionAction {
    /// Add the `DisruptionTarget` condition ([`disruption_condition`]) and
    /// delete the pod (with its uid as precondition).
    DeletePod {
        namespace: String,
        name: String,
        uid: String,
    },
    Event(Event),
}

/// The condition the taint manager adds before deleting.
pub fn disruption_condition(now: Timestamp) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

#[derive(Clone, Debug)]
struct Scheduled {
    created: ClusterInstant,
    fire_at: ClusterInstant,
    uid: String,
    pod_ref: ObjectRef,
}

/// The taint eviction controller's timers.
#[derive(Clone, Debug, Default)]
pub struct TaintEviction {
    scheduled: BTreeMap<String, Scheduled>,
}

/// `getMinTolerationTime`: `None` for forever.
fn min_toleration(used: &[&Toleration]) -> Option<Duration> {
    if used.is_empty() {
        return Some(Duration::ZERO);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Some(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m: i64| m.min(s)));
        }
    }
    min.map(|s| Duration::from_secs(s as u64))
}

fn pod_key(pod: &Pod) -> String {
    crate::util::meta::key(&pod.metadata)
}

impl TaintEviction {
    pub fn new() -> TaintEviction {
        TaintEviction::default()
    }

    pub fn scheduled_at(&self, pod_key: &str) -> Option<ClusterInstant> {
        self.scheduled.get(pod_key).map(|s| s.fire_at)
    }

    fn cancel(&mut self, key: &str) -> Vec<EvictionAction> {
        match self.scheduled.remove(key) {
            Some(s) => vec![EvictionAction::Event(Event::normal(
                s.pod_ref,
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {key}"),
            ))],
            None => Vec::new(),
        }
    }

    /// `processPodOnNode`: one pod and the taints of its node.
    pub fn reconcile_pod(
        &mut self,
        pod: &Pod,
        node_taints: &[Taint],
        now: Now,
    ) -> Vec<EvictionAction> {
        let key = pod_key(pod);
        let taints: Vec<&Taint> = node_taints
            .iter()
            .filter(|t| t.effect == EFFECT_NO_EXECUTE)
            .collect();
        if taints.is_empty() {
            return self.cancel(&key);
        }
        let tolerations = pod
            .spec
            .as_ref()
            .map(crate::util::fit::pod_tolerations)
            .unwrap_or(&[]);
        let mut used = Vec::new();
        for t in &taints {
            match tolerations.iter().find(|tl| tolerates(tl, t)) {
                Some(tl) => used.push(tl),
                None => {
                    let mut out = self.cancel(&key);
                    out.extend(self.schedule(pod, now.mono, now.mono));
                    out.extend(self.fire(now));
                    return out;
                }
            }
        }
        let Some(min) = min_toleration(&used) else {
            return self.cancel(&key);
        };
        let trigger = now.mono + min;
        let mut out = Vec::new();
        let mut start = now.mono;
        if let Some(s) = self.scheduled.get(&key) {
            start = s.created;
            if s.created + min < trigger {
                return self.fire(now);
            }
            self.scheduled.remove(&key);
        }
        out.extend(self.schedule(pod, start, trigger));
        out.extend(self.fire(now));
        out
    }

    fn schedule(
        &mut self,
        pod: &Pod,
        created: ClusterInstant,
        fire_at: ClusterInstant,
    ) -> Vec<EvictionAction> {
        self.scheduled.insert(
            pod_key(pod),
            Scheduled {
                created,
                fire_at,
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                pod_ref: ObjectRef::new("v1", "Pod", &pod.metadata),
            },
        );
        Vec::new()
    }

    /// The pod is gone (or left its node): forget its timer.
    pub fn pod_deleted(&mut self, pod_key: &str) -> Vec<EvictionAction> {
        self.scheduled.remove(pod_key);
        Vec::new()
    }

    /// Deletes every pod whose timer is due.
    pub fn fire(&mut self, now: Now) -> Vec<EvictionAction> {
        let due: Vec<String> = self
            .scheduled
            .iter()
            .filter(|(_, s)| s.fire_at <= now.mono)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in due {
            let s = self.scheduled.remove(&k).expect("listed");
            out.push(EvictionAction::Event(Event::normal(
                s.pod_ref.clone(),
                "TaintManagerEviction",
                format!("Marking for deletion Pod {k}"),
            )));
            out.push(EvictionAction::DeletePod {
                namespace: s.pod_ref.namespace.clone(),
                name: s.pod_ref.name.clone(),
                uid: s.uid,
            });
        }
        out
    }

    /// When the next timer fires (for the driver's sleep).
    pub fn next_wakeup(&self) -> Option<ClusterInstant> {
        self.scheduled.values().map(|s| s.fire_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::time::wall_at_secs;
    use ackemu_kube::api::coordination::v1::LeaseSpec;
    use ackemu_kube::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodStatus};
    use ackemu_kube::meta::{MicroTime, ObjectMeta};

    fn node(name: &str, zone: &str, ready: Option<(&str, u64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(wall_at_secs(0))),
                labels: Some(BTreeMap::from([(LABEL_ZONE.to_string(), zone.to_string())])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: ready.map(|(s, hb)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        last_heartbeat_time: Some(Time(wall_at_secs(hb))),
                        last_transition_time: Some(Time(wall_at_secs(0))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn lease(name: &str, renew: u64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(wall_at_secs(renew))),
                ..Default::default()
            }),
        }
    }

    fn ready_pod(name: &str, node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn patches(a: &[LifecycleAction]) -> Vec<String> {
        let mut v: Vec<String> = a
            .iter()
            .filter_map(|x| match x {
                LifecycleAction::PatchTaints { node, add, remove } => Some(format!(
                    "{node} +[{}] -[{}]",
                    add.iter()
                        .map(|t| format!(
                            "{}:{}",
                            t.key.trim_start_matches("node.kubernetes.io/"),
                            t.effect
                        ))
                        .collect::<Vec<_>>()
                        .join(","),
                    remove
                        .iter()
                        .map(|t| format!(
                            "{}:{}",
                            t.key.trim_start_matches("node.kubernetes.io/"),
                            t.effect
                        ))
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    fn status_updates(a: &[LifecycleAction]) -> Vec<(String, String, String)> {
        a.iter()
            .filter_map(|x| match x {
                LifecycleAction::UpdateNodeStatus(n) => {
                    let c = node_condition(n, "Ready").unwrap();
                    Some((
                        node_name(n),
                        c.status.clone(),
                        c.reason.clone().unwrap_or_default(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// Applies the controller's own writes, as the API server and informer
    /// would, so the next pass sees them.
    fn apply(nodes: &mut [Node], actions: &[LifecycleAction], now: Now) {
        for a in actions {
            match a {
                LifecycleAction::UpdateNodeStatus(n) => {
                    let i = nodes
                        .iter()
                        .position(|x| x.metadata.name == n.metadata.name)
                        .unwrap();
                    nodes[i].status = n.status.clone();
                }
                LifecycleAction::PatchTaints { node, add, remove } => {
                    let n = nodes
                        .iter_mut()
                        .find(|x| x.metadata.name.as_deref() == Some(node))
                        .unwrap();
                    let spec = n.spec.get_or_insert_with(Default::default);
                    let t =
                        apply_taints(spec.taints.as_deref().unwrap_or(&[]), add, remove, now.wall);
                    spec.taints = Some(t);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn lease_stops_then_unknown_then_unreachable_taint() {
        let mut lc = NodeLifecycle::new(LifecycleConfig::default());
        let mut nodes = vec![
            node("n1", "a", Some(("True", 0))),
            node("n2", "a", Some(("True", 0))),
        ];
        let pod = ready_pod("web", "n1");
        let mut leases = BTreeMap::from([
            ("n1".to_string(), lease("n1", 0)),
            ("n2".to_string(), lease("n2", 0)),
        ]);
        let mut t = 0;
        let mut first_unknown = None;
        let mut first_taint = None;
        while t <= 120 {
            let now = Now::at_secs(t);
            // n2 renews its lease every 10 s; n1 went silent at 0.
            if t % 10 == 0 {
                leases.insert("n2".into(), lease("n2", t));
            }
            let obs = Observed {
                nodes: nodes.iter().collect(),
                leases: leases.iter().map(|(k, v)| (k.clone(), v)).collect(),
                pods_by_node: BTreeMap::from([("n1".to_string(), vec![&pod])]),
            };
            let out = lc.monitor(&obs, now);
            let su = status_updates(&out);
            if !su.is_empty() {
                assert_eq!(
                    su,
                    vec![("n1".into(), "Unknown".into(), "NodeStatusUnknown".into())]
                );
                assert!(first_unknown.is_none(), "status written once");
                first_unknown = Some(t);
                assert!(out.contains(&LifecycleAction::MarkPodNotReady {
                    namespace: "default".into(),
                    name: "web".into(),
                    node: "n1".into()
                }));
                assert!(
                    out.iter().any(
                        |a| matches!(a, LifecycleAction::Event(e) if e.reason == "NodeNotReady")
                    )
                );
                assert_eq!(patches(&out), vec!["n1 +[unreachable:NoSchedule] -[]"]);
            }
            if patches(&out)
                .iter()
                .any(|p| p.contains("unreachable:NoExecute"))
            {
                first_taint.get_or_insert(t);
                assert_eq!(
                    patches(&out),
                    vec!["n1 +[unreachable:NoExecute] -[not-ready:NoExecute]"]
                );
            }
            apply(&mut nodes, &out, now);
            t += 5;
        }
        // Grace 50 s: at 50 s the probe is exactly 50 s old (not after), at 55 s it is.
        assert_eq!(first_unknown, Some(55));
        // The NoExecute taint follows on the next pass, from the observed Unknown.
        assert_eq!(first_taint, Some(60));
        let n1 = &nodes[0];
        let msg = node_condition(n1, "Ready")
            .unwrap()
            .message
            .clone()
            .unwrap();
        assert_eq!(msg, "Kubelet stopped posting node status.");
        for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(
                node_condition(n1, c).unwrap().reason.as_deref(),
                Some("NodeStatusNeverUpdated"),
                "{c}"
            );
        }
        assert!(
            crate::util::fit::node_taints(&nodes[1]).is_empty(),
            "n2 untouched"
        );

        // The kubelet comes back: Ready True → taints removed.
        nodes[0] = {
            let mut n = node("n1", "a", Some(("True", 200)));
            n.spec = nodes[0].spec.clone();
            n
        };
        leases.insert("n1".into(), lease("n1", 200));
        leases.insert("n2".into(), lease("n2", 200));
        let obs = Observed {
            nodes: nodes.iter().collect(),
            leases: leases.iter().map(|(k, v)| (k.clone(), v)).collect(),
            pods_by_node: BTreeMap::new(),
        };
        let out = lc.monitor(&obs, Now::at_secs(200));
        assert_eq!(
            patches(&out),
            vec![
                "n1 +[] -[unreachable:NoExecute]",
                "n1 +[] -[unreachable:NoSchedule]"
            ]
        );
    }

    #[test]
    fn kubelet_reports_not_ready() {
        let mut lc = NodeLifecycle::new(LifecycleConfig::default());
        let mut nodes = vec![
            node("n1", "a", Some(("True", 0))),
            node("n2", "a", Some(("True", 0))),
        ];
        fn obs(nodes: &[Node]) -> Observed<'_> {
            Observed {
                nodes: nodes.iter().collect(),
                ..Default::default()
            }
        }
        lc.monitor(&obs(&nodes), Now::at_secs(0));
        nodes[0] = node("n1", "a", Some(("False", 5)));
        let out = lc.monitor(&obs(&nodes), Now::at_secs(5));
        assert!(
            status_updates(&out).is_empty(),
            "kubelet's own status is kept"
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, LifecycleAction::MarkPodNotReady { .. })),
            "kubelet marks its pods itself"
        );
        assert_eq!(
            patches(&out),
            vec![
                "n1 +[not-ready:NoExecute] -[unreachable:NoExecute]",
                "n1 +[not-ready:NoSchedule] -[]"
            ]
        );
    }

    #[test]
    fn never_posted_node_uses_startup_grace() {
        let mut lc = NodeLifecycle::new(LifecycleConfig::default());
        let nodes = [node("new", "a", None), node("ok", "a", Some(("True", 0)))];
        let mut leases = BTreeMap::new();
        for t in [0u64, 30, 60, 65] {
            leases.insert("ok".to_string(), lease("ok", t));
            let obs = Observed {
                nodes: nodes.iter().collect(),
                leases: leases.iter().map(|(k, v)| (k.clone(), v)).collect(),
                ..Default::default()
            };
            let out = lc.monitor(&obs, Now::at_secs(t));
            let su = status_updates(&out);
            if t < 65 {
                assert!(su.is_empty(), "at {t}: {su:?}");
            } else {
                assert_eq!(
                    su,
                    vec![(
                        "new".into(),
                        "Unknown".into(),
                        "NodeStatusNeverUpdated".into()
                    )]
                );
            }
        }
    }

    fn silent_cluster(n: usize, zone_size_label: &str) -> Vec<Node> {
        (0..n)
            .map(|i| node(&format!("n{i}"), zone_size_label, Some(("True", 0))))
            .collect()
    }

    #[test]
    fn full_disruption_stops_tainting() {
        // Every node of the only zone goes silent: master disruption mode.
        let mut lc = NodeLifecycle::new(LifecycleConfig::default());
        let mut nodes = silent_cluster(3, "a");
        let mut tainted = false;
        for t in (0..=200).step_by(5) {
            let now = Now::at_secs(t);
            let obs = Observed {
                nodes: nodes.iter().collect(),
                ..Default::default()
            };
            let out = lc.monitor(&obs, now);
            tainted |= patches(&out)
                .iter()
                .any(|p| p.contains("NoExecute]") && p.contains("+[unreachable:NoExecute]"));
            apply(&mut nodes, &out, now);
        }
        assert!(!tainted, "no NoExecute taint while every zone is down");
        assert_eq!(
            lc.zone_state(&zone_key(&nodes[0])),
            Some(ZoneState::FullDisruption)
        );
    }

    #[test]
    fn eviction_rate_limits_tainting() {
        // 2 of 10 nodes go silent: zone stays Normal, one taint per 10 s.
        let mut lc = NodeLifecycle::new(LifecycleConfig::default());
        let mut nodes = silent_cluster(10, "a");
        let mut leases = BTreeMap::new();
        let mut taint_times = Vec::new();
        for t in (0..=120).step_by(5) {
            for i in 2..10 {
                leases.insert(format!("n{i}"), lease(&format!("n{i}"), t));
            }
            let now = Now::at_secs(t);
            let obs = Observed {
                nodes: nodes.iter().collect(),
                leases: leases.iter().map(|(k, v)| (k.clone(), v)).collect(),
                ..Default::default()
            };
            let out = lc.monitor(&obs, now);
            for p in patches(&out) {
                if p.contains("+[unreachable:NoExecute]") {
                    taint_times.push(t);
                }
            }
            apply(&mut nodes, &out, now);
        }
        assert_eq!(taint_times, vec![60, 70]);
        assert_eq!(lc.zone_state(&zone_key(&nodes[0])), Some(ZoneState::Normal));
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    fn deletes(a: &[EvictionAction]) -> Vec<String> {
        a.iter()
            .filter_map(|x| match x {
                EvictionAction::DeletePod { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn taint_eviction_table() {
        let unreachable = vec![Taint {
            key: TAINT_UNREACHABLE.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }];
        let with = |tols: Vec<Toleration>| {
            let mut p = ready_pod("p", "n1");
            p.spec.as_mut().unwrap().tolerations = Some(tols);
            p
        };
        let mut default_tols = ready_pod("p", "n1");
        add_default_tolerations(&mut default_tols, DEFAULT_TOLERATION_SECONDS);
        // (pod, when it is deleted, seconds after first seen; None = never)
        let cases = [
            ("no toleration", with(vec![]), Some(0)),
            ("default 300 s", default_tols, Some(300)),
            (
                "min of two",
                with(vec![
                    tol(TAINT_UNREACHABLE, Some(60)),
                    tol(TAINT_UNREACHABLE, Some(30)),
                ]),
                Some(60),
            ),
            ("forever", with(vec![tol(TAINT_UNREACHABLE, None)]), None),
            ("zero", with(vec![tol(TAINT_UNREACHABLE, Some(0))]), Some(0)),
        ];
        for (name, pod, want) in cases {
            let mut te = TaintEviction::new();
            let mut deleted_at = None;
            for t in (0..=400).step_by(10) {
                let mut out = te.reconcile_pod(&pod, &unreachable, Now::at_secs(t));
                out.extend(te.fire(Now::at_secs(t)));
                if !deletes(&out).is_empty() {
                    deleted_at.get_or_insert(t);
                    break;
                }
            }
            assert_eq!(deleted_at, want, "{name}");
        }
    }

    #[test]
    fn taint_removed_cancels_eviction() {
        let unreachable = vec![Taint {
            key: TAINT_UNREACHABLE.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }];
        let mut pod = ready_pod("p", "n1");
        add_default_tolerations(&mut pod, DEFAULT_TOLERATION_SECONDS);
        let mut te = TaintEviction::new();
        assert!(
            te.reconcile_pod(&pod, &unreachable, Now::at_secs(0))
                .is_empty()
        );
        assert_eq!(te.scheduled_at("default/p"), Some(Now::at_secs(300).mono));
        // Seen again later: the timer keeps its start.
        te.reconcile_pod(&pod, &unreachable, Now::at_secs(100));
        assert_eq!(te.scheduled_at("default/p"), Some(Now::at_secs(300).mono));
        let out = te.reconcile_pod(&pod, &[], Now::at_secs(200));
        assert!(
            matches!(&out[..], [EvictionAction::Event(e)] if e.message == "Cancelling deletion of Pod default/p")
        );
        assert!(te.fire(Now::at_secs(400)).is_empty());
    }
}
