//! The cluster autoscaler's decisions (kubernetes/autoscaler
//! `cluster-autoscaler/core`): node groups are ESS scaling groups, sized by
//! *reservation* — pods' requests — never by usage, as the seed article
//! stresses.
//!
//! - Scale up ([`Autoscaler::run_once`], `ScaleUp`): pods the scheduler
//!   marked Unschedulable that would not fit on existing or already
//!   requested nodes are bin-packed onto nodes built from each group's
//!   template; the group that wastes least grows by the nodes needed,
//!   within its maximum.
//! - Scale down (`ScaleDown`): a node whose requested CPU and memory are
//!   both under the threshold (0.5), whose pods can all move elsewhere,
//!   and which stays so for the unneeded time (10 min) is drained and its
//!   instance removed from the group, never below the group's minimum and
//!   not within 10 min of a scale-up.
//!
//! The fit check is [`crate::util::fit`], a local copy of the scheduler's
//! filters: components do not share code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::api::core::v1::{Node, Pod};

use crate::replicaset::PodRef;
use crate::util::fit::{NodeUsage, Resources, fit_reasons, node_allocatable, pod_requests};
use crate::util::{Event, Now, ObjectRef, meta, pod as podutil};

pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
pub const STATUS_CONFIGMAP: &str = "cluster-autoscaler-status";

#[derive(Clone, Debug)]
pub struct AutoscalerConfig {
    /// `--scale-down-utilization-threshold`.
    pub scale_down_utilization_threshold: f64,
    /// `--scale-down-unneeded-time`.
    pub scale_down_unneeded_time: Duration,
    /// `--scale-down-delay-after-add`.
    pub scale_down_delay_after_add: Duration,
    /// `--max-empty-bulk-delete`.
    pub max_empty_bulk_delete: usize,
    /// `--skip-nodes-with-system-pods`.
    pub skip_nodes_with_system_pods: bool,
    /// `--skip-nodes-with-local-storage`.
    pub skip_nodes_with_local_storage: bool,
    /// `--scale-down-enabled`.
    pub scale_down_enabled: bool,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            scale_down_utilization_threshold: 0.5,
            scale_down_unneeded_time: Duration::from_secs(600),
            scale_down_delay_after_add: Duration::from_secs(600),
            max_empty_bulk_delete: 10,
            skip_nodes_with_system_pods: true,
            skip_nodes_with_local_storage: true,
            scale_down_enabled: true,
        }
    }
}

/// A node group (`--nodes=min:max:<group-id>`) as the cloud reports it.
#[derive(Clone, Debug)]
pub struct NodeGroup {
    pub id: String,
    pub min: usize,
    pub max: usize,
    /// The group's desired capacity.
    pub target: usize,
    /// A node as the group's scaling configuration would register it.
    pub template: Node,
    /// Registered nodes of this group (by name) and their instance ids.
    pub nodes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScaleAction {
    /// Raise the group's desired capacity from `from` to `to`.
    IncreaseSize {
        group: String,
        from: usize,
        to: usize,
    },
    /// Taint the node `ToBeDeletedByClusterAutoscaler`, evict `evict`, then
    /// remove the instance from the group.
    ScaleDown {
        group: String,
        node: String,
        instance_id: String,
        evict: Vec<PodRef>,
    },
    Event(Event),
}

/// Why a node cannot be removed (`simulator.UnremovableReason`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unremovable {
    NotAutoscaled,
    NotUnderutilized,
    ScaleDownDisabledAnnotation,
    NodeGroupMinSizeReached,
    NotReady,
    BlockedByPod { pod: String, reason: &'static str },
    NoPlaceToMovePods,
}

/// The last pass, for the status ConfigMap and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    pub scale_up: Option<(String, usize, usize)>,
    pub unschedulable: usize,
    pub unneeded: Vec<String>,
    pub removed: Vec<String>,
    pub unremovable: BTreeMap<String, Unremovable>,
    pub utilization: BTreeMap<String, f64>,
}

/// The autoscaler's memory.
#[derive(Clone, Debug, Default)]
pub struct Autoscaler {
    pub cfg: AutoscalerConfig,
    unneeded_since: BTreeMap<String, ClusterInstant>,
    last_scale_up: Option<ClusterInstant>,
}

/// cluster-autoscaler's `GetReadinessState`: Ready, no disk pressure, a
/// network (its route exists), and no not-ready/unreachable taint.
fn ready(n: &Node) -> bool {
    let cond = |t: &str| crate::nodelifecycle::node_condition(n, t).map(|c| c.status.clone());
    let tainted = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            t.key == "node.kubernetes.io/not-ready" || t.key == "node.kubernetes.io/unreachable"
        });
    cond("Ready").as_deref() == Some("True")
        && cond("DiskPressure").as_deref() != Some("True")
        && cond("NetworkUnavailable").as_deref() != Some("True")
        && !tainted
}

/// How long a registered node may stay not Ready and still count as
/// starting (cluster-autoscaler's `MaxNodeStartupTime`).
pub const MAX_NODE_STARTUP_TIME: Duration = Duration::from_secs(15 * 60);

/// A registered node's readiness as cluster-autoscaler's cluster state
/// counts it (`updateReadinessStats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not Ready yet, registered less than [`MAX_NODE_STARTUP_TIME`] ago:
    /// still booting, so it is one of the group's upcoming nodes.
    NotStarted,
    Unready,
}

pub fn readiness(n: &Node, now: Now) -> Readiness {
    if ready(n) {
        return Readiness::Ready;
    }
    let created = n.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match created {
        Some(t) if crate::util::time::since(now.wall, t) < MAX_NODE_STARTUP_TIME => {
            Readiness::NotStarted
        }
        _ => Readiness::Unready,
    }
}

/// Nodes the group will have that cannot hold pods yet: its target minus
/// the registered nodes that are Ready or long Unready
/// (`GetUpcomingNodes`). Instances that are still booting — not
/// registered, or registered and not Ready yet — are upcoming, so pods
/// waiting for them do not raise the group again.
pub fn upcoming(g: &NodeGroup, nodes: &[&Node], now: Now) -> usize {
    let counted = g
        .nodes
        .keys()
        .filter(|name| {
            nodes
                .iter()
                .find(|n| meta::name(&n.metadata) == name.as_str())
                .is_none_or(|n| readiness(n, now) != Readiness::NotStarted)
        })
        .count();
    g.target.saturating_sub(counted)
}

fn unschedulable(p: &Pod) -> bool {
    podutil::node_name(p).is_empty()
        && p.metadata.deletion_timestamp.is_none()
        && !podutil::is_terminal(p)
        && podutil::condition(p, "PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

fn is_daemonset_pod(p: &Pod) -> bool {
    meta::controller_of(&p.metadata).is_some_and(|r| r.kind == "DaemonSet")
}

fn is_mirror(p: &Pod) -> bool {
    meta::annotation(&p.metadata, MIRROR_POD).is_some()
}

/// Requested share of the node: the larger of CPU and memory.
pub fn utilization(node: &Node, pods: &[&Pod]) -> f64 {
    let alloc = node_allocatable(node);
    let mut req = Resources::default();
    for p in pods {
        req.add(&pod_requests(p));
    }
    let share = |r: i64, a: i64| if a > 0 { r as f64 / a as f64 } else { 0.0 };
    share(req.milli_cpu, alloc.milli_cpu).max(share(req.memory, alloc.memory))
}

/// The drain rules: why `p` blocks removing its node, if it does.
fn blocks_drain(p: &Pod, cfg: &AutoscalerConfig) -> Option<&'static str> {
    match meta::annotation(&p.metadata, SAFE_TO_EVICT) {
        Some("true") => return None,
        Some("false") => return Some("NotSafeToEvictAnnotation"),
        _ => {}
    }
    if meta::controller_of(&p.metadata).is_none() {
        return Some("NotReplicated");
    }
    if cfg.skip_nodes_with_system_pods && meta::namespace(&p.metadata) == "kube-system" {
        return Some("UnmovableKubeSystemPod");
    }
    let local = p
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.empty_dir.is_some() || v.host_path.is_some())
        });
    if cfg.skip_nodes_with_local_storage && local {
        return Some("LocalStorageRequested");
    }
    None
}

fn node_with_name(template: &Node, name: &str) -> Node {
    let mut n = template.clone();
    n.metadata.name = Some(name.to_owned());
    if let Some(l) = n.metadata.labels.as_mut() {
        l.insert("kubernetes.io/hostname".into(), name.to_owned());
    }
    n
}

/// Places `pods` greedily on `nodes` (with their usage); returns the pods
/// that found no place.
fn place<'a>(pods: &[&'a Pod], nodes: &mut [(Node, NodeUsage)]) -> Vec<&'a Pod> {
    let mut left = Vec::new();
    for p in pods {
        match nodes
            .iter_mut()
            .find(|(n, u)| fit_reasons(p, n, u).is_empty())
        {
            Some((_, u)) => u.add(p),
            None => left.push(*p),
        }
    }
    left
}

fn pod_score(p: &Pod, alloc: &Resources) -> f64 {
    let r = pod_requests(p);
    let f = |x: i64, a: i64| if a > 0 { x as f64 / a as f64 } else { 0.0 };
    f(r.milli_cpu, alloc.milli_cpu) + f(r.memory, alloc.memory)
}

/// `BinpackingNodeEstimator`: how many template nodes `pods` need (at most
/// `limit`), and which pods they would hold.
pub fn estimate<'a>(template: &Node, pods: &[&'a Pod], limit: usize) -> (usize, Vec<&'a Pod>) {
    let alloc = node_allocatable(template);
    let mut sorted = pods.to_vec();
    sorted.sort_by(|a, b| pod_score(b, &alloc).total_cmp(&pod_score(a, &alloc)));
    let mut nodes: Vec<(Node, NodeUsage)> = Vec::new();
    let mut placed = Vec::new();
    for p in sorted {
        if let Some((_, u)) = nodes
            .iter_mut()
            .find(|(n, u)| fit_reasons(p, n, u).is_empty())
        {
            u.add(p);
            placed.push(p);
            continue;
        }
        let fresh = node_with_name(template, &format!("template-{}", nodes.len()));
        if nodes.len() < limit && fit_reasons(p, &fresh, &NodeUsage::default()).is_empty() {
            let mut u = NodeUsage::default();
            u.add(p);
            nodes.push((fresh, u));
            placed.push(p);
        }
    }
    (nodes.len(), placed)
}

/// `least-waste` expander score: unused CPU and memory share of the new
/// nodes (lower is better).
fn waste(template: &Node, n: usize, pods: &[&Pod]) -> f64 {
    let alloc = node_allocatable(template);
    let mut req = Resources::default();
    for p in pods {
        req.add(&pod_requests(p));
    }
    let total_cpu = (alloc.milli_cpu * n as i64).max(1) as f64;
    let total_mem = (alloc.memory * n as i64).max(1) as f64;
    (total_cpu - req.milli_cpu as f64) / total_cpu + (total_mem - req.memory as f64) / total_mem
}

fn pod_ref(p: &Pod) -> ObjectRef {
    ObjectRef::new("v1", "Pod", &p.metadata)
}

impl Autoscaler {
    pub fn new(cfg: AutoscalerConfig) -> Autoscaler {
        Autoscaler {
            cfg,
            ..Default::default()
        }
    }

    pub fn unneeded_since(&self, node: &str) -> Option<ClusterInstant> {
        self.unneeded_since.get(node).copied()
    }

    /// One `RunOnce`.
    pub fn run_once(
        &mut self,
        nodes: &[&Node],
        pods: &[&Pod],
        groups: &[NodeGroup],
        now: Now,
    ) -> (Vec<ScaleAction>, PassReport) {
        let mut out = Vec::new();
        let mut report = PassReport::default();
        let mut on_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for p in pods
            .iter()
            .filter(|p| !podutil::is_terminal(p) && !podutil::node_name(p).is_empty())
        {
            on_node.entry(podutil::node_name(p)).or_default().push(p);
        }
        // Pending pods that still would not fit on the nodes we have or
        // the nodes already requested.
        let pending: Vec<&Pod> = pods.iter().copied().filter(|p| unschedulable(p)).collect();
        let mut sim: Vec<(Node, NodeUsage)> = nodes
            .iter()
            .filter(|n| ready(n) && n.metadata.deletion_timestamp.is_none())
            .map(|n| {
                (
                    (*n).clone(),
                    NodeUsage::of(
                        on_node
                            .get(meta::name(&n.metadata))
                            .into_iter()
                            .flatten()
                            .copied(),
                    ),
                )
            })
            .collect();
        for g in groups {
            for i in 0..upcoming(g, nodes, now) {
                sim.push((
                    node_with_name(&g.template, &format!("upcoming-{}-{i}", g.id)),
                    NodeUsage::default(),
                ));
            }
        }
        let still = place(&pending, &mut sim);
        report.unschedulable = still.len();
        if !still.is_empty() {
            let mut best: Option<(f64, usize, &NodeGroup, usize, Vec<&Pod>)> = None;
            let mut no_fit: BTreeMap<String, usize> = BTreeMap::new();
            for g in groups {
                if g.target >= g.max {
                    *no_fit
                        .entry("max node group size reached".into())
                        .or_default() += 1;
                    continue;
                }
                let (n, helped) = estimate(&g.template, &still, g.max - g.target);
                if n == 0 {
                    let probe = node_with_name(&g.template, "template");
                    for r in fit_reasons(still[0], &probe, &NodeUsage::default()) {
                        *no_fit.entry(r).or_default() += 1;
                    }
                    continue;
                }
                let w = waste(&g.template, n, &helped);
                let better = match &best {
                    None => true,
                    Some((bw, bh, bg, _, _)) => {
                        w < *bw
                            || (w == *bw
                                && (helped.len() > *bh || (helped.len() == *bh && g.id < bg.id)))
                    }
                };
                if better {
                    best = Some((w, helped.len(), g, n, helped));
                }
            }
            match best {
                Some((_, _, g, n, helped)) => {
                    let to = g.target + n;
                    out.push(ScaleAction::IncreaseSize {
                        group: g.id.clone(),
                        from: g.target,
                        to,
                    });
                    let info = format!("[{{{} {}->{} (max: {})}}]", g.id, g.target, to, g.max);
                    for p in &helped {
                        out.push(ScaleAction::Event(Event::normal(
                            pod_ref(p),
                            "TriggeredScaleUp",
                            format!("pod triggered scale-up: {info}"),
                        )));
                    }
                    let helped_keys: BTreeSet<String> =
                        helped.iter().map(|p| meta::key(&p.metadata)).collect();
                    for p in still
                        .iter()
                        .filter(|p| !helped_keys.contains(&meta::key(&p.metadata)))
                    {
                        out.push(ScaleAction::Event(Event::normal(pod_ref(p), "NotTriggerScaleUp", "pod didn't trigger scale-up: it wouldn't fit on a new node together with the other pending pods".to_string())));
                    }
                    report.scale_up = Some((g.id.clone(), g.target, to));
                    self.last_scale_up = Some(now.mono);
                    // Scale-down waits while nodes are being added.
                    return (out, report);
                }
                None => {
                    let reasons: Vec<String> =
                        no_fit.iter().map(|(r, n)| format!("{n} {r}")).collect();
                    for p in &still {
                        out.push(ScaleAction::Event(Event::normal(
                            pod_ref(p),
                            "NotTriggerScaleUp",
                            format!("pod didn't trigger scale-up: {}", reasons.join(", ")),
                        )));
                    }
                }
            }
        }
        if self.cfg.scale_down_enabled {
            out.extend(self.scale_down(nodes, &on_node, groups, now, &mut report));
        }
        (out, report)
    }

    fn scale_down(
        &mut self,
        nodes: &[&Node],
        on_node: &BTreeMap<&str, Vec<&Pod>>,
        groups: &[NodeGroup],
        now: Now,
        report: &mut PassReport,
    ) -> Vec<ScaleAction> {
        let group_of: BTreeMap<&str, &NodeGroup> = groups
            .iter()
            .flat_map(|g| g.nodes.keys().map(move |n| (n.as_str(), g)))
            .collect();
        let mut size: BTreeMap<&str, usize> =
            groups.iter().map(|g| (g.id.as_str(), g.target)).collect();
        let mut removing: BTreeSet<String> = BTreeSet::new();
        let mut candidates: Vec<(&Node, Vec<&Pod>)> = Vec::new();
        // Unneeded nodes: under-utilized with movable pods.
        for n in nodes {
            let name = meta::name(&n.metadata);
            let pods: Vec<&Pod> = on_node.get(name).cloned().unwrap_or_default();
            let verdict = (|| {
                if !group_of.contains_key(name) {
                    return Err(Unremovable::NotAutoscaled);
                }
                if !ready(n) {
                    return Err(Unremovable::NotReady);
                }
                if meta::annotation(&n.metadata, SCALE_DOWN_DISABLED) == Some("true") {
                    return Err(Unremovable::ScaleDownDisabledAnnotation);
                }
                let u = utilization(n, &pods);
                report.utilization.insert(name.to_owned(), u);
                if u >= self.cfg.scale_down_utilization_threshold {
                    return Err(Unremovable::NotUnderutilized);
                }
                let mut movable = Vec::new();
                for p in &pods {
                    if is_daemonset_pod(p) || is_mirror(p) {
                        continue;
                    }
                    if let Some(reason) = blocks_drain(p, &self.cfg) {
                        return Err(Unremovable::BlockedByPod {
                            pod: meta::key(&p.metadata),
                            reason,
                        });
                    }
                    movable.push(*p);
                }
                Ok(movable)
            })();
            match verdict {
                Ok(movable) => {
                    self.unneeded_since
                        .entry(name.to_owned())
                        .or_insert(now.mono);
                    report.unneeded.push(name.to_owned());
                    candidates.push((n, movable));
                }
                Err(e) => {
                    self.unneeded_since.remove(name);
                    report.unremovable.insert(name.to_owned(), e);
                }
            }
        }
        let live: BTreeSet<&str> = nodes.iter().map(|n| meta::name(&n.metadata)).collect();
        self.unneeded_since.retain(|k, _| live.contains(k.as_str()));
        if self
            .last_scale_up
            .is_some_and(|t| now.mono < t + self.cfg.scale_down_delay_after_add)
        {
            return Vec::new();
        }
        let due = |s: &Autoscaler, n: &str| {
            s.unneeded_since.get(n).is_some_and(|t| {
                now.mono.saturating_duration_since(*t) >= s.cfg.scale_down_unneeded_time
            })
        };
        let mut out = Vec::new();
        // Empty nodes first, in bulk.
        let mut empty_done = 0;
        for (n, movable) in &candidates {
            let name = meta::name(&n.metadata);
            if !movable.is_empty()
                || !due(self, name)
                || empty_done >= self.cfg.max_empty_bulk_delete
            {
                continue;
            }
            let g = group_of[name];
            if size[g.id.as_str()] <= g.min {
                report
                    .unremovable
                    .insert(name.to_owned(), Unremovable::NodeGroupMinSizeReached);
                continue;
            }
            *size.get_mut(g.id.as_str()).expect("group") -= 1;
            removing.insert(name.to_owned());
            empty_done += 1;
            out.push(self.remove(n, g, Vec::new()));
        }
        if empty_done > 0 {
            report.removed = removing.into_iter().collect();
            return out;
        }
        // Then one node whose pods fit elsewhere.
        for (n, movable) in &candidates {
            let name = meta::name(&n.metadata);
            if movable.is_empty() || !due(self, name) {
                continue;
            }
            let g = group_of[name];
            if size[g.id.as_str()] <= g.min {
                report
                    .unremovable
                    .insert(name.to_owned(), Unremovable::NodeGroupMinSizeReached);
                continue;
            }
            let mut others: Vec<(Node, NodeUsage)> = nodes
                .iter()
                .filter(|o| meta::name(&o.metadata) != name && ready(o))
                .filter(|o| {
                    !crate::util::fit::node_taints(o)
                        .iter()
                        .any(|t| t.key == TAINT_TO_BE_DELETED)
                })
                .map(|o| {
                    (
                        (*o).clone(),
                        NodeUsage::of(
                            on_node
                                .get(meta::name(&o.metadata))
                                .into_iter()
                                .flatten()
                                .copied(),
                        ),
                    )
                })
                .collect();
            // Moved pods are recreated by their controllers: no node name.
            let moved: Vec<Pod> = movable
                .iter()
                .map(|p| {
                    let mut p = (*p).clone();
                    if let Some(s) = p.spec.as_mut() {
                        s.node_name = None;
                    }
                    p
                })
                .collect();
            let moved_refs: Vec<&Pod> = moved.iter().collect();
            if !place(&moved_refs, &mut others).is_empty() {
                report
                    .unremovable
                    .insert(name.to_owned(), Unremovable::NoPlaceToMovePods);
                continue;
            }
            report.removed = vec![name.to_owned()];
            out.push(self.remove(n, g, movable.iter().map(|p| PodRef::of(p)).collect()));
            break;
        }
        out
    }

    fn remove(&mut self, n: &Node, g: &NodeGroup, evict: Vec<PodRef>) -> ScaleAction {
        let name = meta::name(&n.metadata).to_owned();
        self.unneeded_since.remove(&name);
        ScaleAction::ScaleDown {
            group: g.id.clone(),
            instance_id: g.nodes.get(&name).cloned().unwrap_or_default(),
            node: name,
            evict,
        }
    }
}

/// The `cluster-autoscaler-status` ConfigMap's `status` text.
pub fn render_status(
    nodes: &[&Node],
    groups: &[NodeGroup],
    report: &PassReport,
    now: Now,
) -> String {
    let count = |names: &mut dyn Iterator<Item = &Node>| {
        let (mut r, mut ns, mut u) = (0, 0, 0);
        for n in names {
            match readiness(n, now) {
                Readiness::Ready => r += 1,
                Readiness::NotStarted => ns += 1,
                Readiness::Unready => u += 1,
            }
        }
        (r, ns, u)
    };
    let (ready_n, not_started, unready) = count(&mut nodes.iter().copied());
    let total = nodes.len();
    let mut s = format!("Cluster-autoscaler status at {}:\n", now.wall);
    s += &format!(
        "Cluster-wide:\n  Health:      Healthy (ready={ready_n} unready={unready} notStarted={not_started} longNotStarted=0 registered={total} longUnregistered=0)\n"
    );
    match &report.scale_up {
        Some((g, from, to)) => {
            s += &format!(
                "  ScaleUp:     InProgress (ready={ready_n} registered={total})\n               {g} {from}->{to}\n"
            )
        }
        None => s += &format!("  ScaleUp:     NoActivity (ready={ready_n} registered={total})\n"),
    }
    if report.unneeded.is_empty() {
        s += "  ScaleDown:   NoCandidates (candidates=0)\n";
    } else {
        s += &format!(
            "  ScaleDown:   CandidatesPresent (candidates={})\n",
            report.unneeded.len()
        );
    }
    s += "\nNodeGroups:\n";
    for g in groups {
        let (gready, gnot_started, gunready) = count(
            &mut nodes
                .iter()
                .copied()
                .filter(|x| g.nodes.contains_key(meta::name(&x.metadata))),
        );
        s += &format!("  Name:        {}\n", g.id);
        s += &format!(
            "  Health:      Healthy (ready={gready} unready={gunready} notStarted={gnot_started} longNotStarted=0 registered={} longUnregistered=0 cloudProviderTarget={} (minSize={}, maxSize={}))\n",
            g.nodes.len(),
            g.target,
            g.min,
            g.max
        );
        match &report.scale_up {
            Some((id, from, to)) if *id == g.id => {
                s += &format!(
                    "  ScaleUp:     InProgress (ready={gready} cloudProviderTarget={to})\n               {from}->{to}\n"
                )
            }
            _ => {
                s += &format!(
                    "  ScaleUp:     NoActivity (ready={gready} cloudProviderTarget={})\n",
                    g.target
                )
            }
        }
        let cands = report
            .unneeded
            .iter()
            .filter(|n| g.nodes.contains_key(*n))
            .count();
        if cands == 0 {
            s += "  ScaleDown:   NoCandidates (candidates=0)\n\n";
        } else {
            s += &format!("  ScaleDown:   CandidatesPresent (candidates={cands})\n\n");
        }
    }
    s
}

#[cfg(test)]
mod tests;
