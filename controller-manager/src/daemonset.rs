//! The DaemonSet controller (`pkg/controller/daemon`): one pod on every
//! node the template may run on (node name, node selector and required
//! affinity, NoSchedule/NoExecute taints against the template's tolerations
//! plus the ones every daemon pod gets), scheduled by the default scheduler
//! through a `metadata.name` node-affinity term; failed pods replaced with
//! backoff; extra pods pruned (oldest kept); rolling updates by the
//! `controller-revision-hash` label within `maxUnavailable`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::{DaemonSet, DaemonSetStatus};
use ackemu_kube::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::replicaset::{PodRef, pod_from_template};
use crate::util::expectations::Expectations;
use crate::util::fit::{
    EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY, TAINT_PID_PRESSURE, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE, find_untolerated, node_selector_matches, node_taints,
};
use crate::util::hash::compute_hash;
use crate::util::intstr::scaled_value;
use crate::util::meta::{self, Claim, Claimant};
use crate::util::{Event, Now, ObjectRef, pod as podutil};

pub const REVISION_HASH: &str = "controller-revision-hash";
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug, PartialEq)]
pub enum DsAction {
    PatchOwners {
        namespace: String,
        name: String,
        uid: String,
        owner_references: Vec<ackemu_kube::meta::OwnerReference>,
    },
    /// Create one pod per entry (`(node, pod)`), in slow-start batches; for
    /// each failure call [`DaemonSetController::creation_failed`].
    CreatePods(Vec<(String, Pod)>),
    /// Delete (uid precondition); failures other than NotFound →
    /// [`DaemonSetController::deletion_failed`].
    DeletePods(Vec<PodRef>),
    UpdateStatus(Box<DaemonSetStatus>),
    RequeueAfter(Duration),
    Event(Event),
}

/// The tolerations every daemon pod gets
/// (`util.AddOrUpdateDaemonPodTolerations`).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        (TAINT_NOT_READY, EFFECT_NO_EXECUTE),
        (TAINT_UNREACHABLE, EFFECT_NO_EXECUTE),
        (TAINT_DISK_PRESSURE, EFFECT_NO_SCHEDULE),
        (TAINT_MEMORY_PRESSURE, EFFECT_NO_SCHEDULE),
        (TAINT_PID_PRESSURE, EFFECT_NO_SCHEDULE),
        (TAINT_UNSCHEDULABLE, EFFECT_NO_SCHEDULE),
    ];
    if spec.host_network == Some(true) {
        add.push((TAINT_NETWORK_UNAVAILABLE, EFFECT_NO_SCHEDULE));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in add {
        let exists = tols.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !exists {
            tols.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`.
pub fn set_node_affinity(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let a = spec.affinity.get_or_insert_with(Affinity::default);
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

fn template_pod(ds: &DaemonSet) -> Pod {
    let mut p = Pod {
        spec: ds.spec.as_ref().and_then(|s| s.template.spec.clone()),
        ..Default::default()
    };
    if let Some(spec) = p.spec.as_mut() {
        add_daemon_tolerations(spec);
    }
    p
}

/// `NodeShouldRunDaemonPod`: (should run, should continue running).
pub fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let pod = template_pod(ds);
    let Some(spec) = pod.spec.as_ref() else {
        return (false, false);
    };
    let node_name = meta::name(&node.metadata);
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != node_name
    {
        return (false, false);
    }
    if !node_selector_matches(spec, node) {
        return (false, false);
    }
    let tols = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node_taints(node);
    if find_untolerated(taints, tols, |t| {
        t.effect == EFFECT_NO_SCHEDULE || t.effect == EFFECT_NO_EXECUTE
    })
    .is_some()
    {
        let no_exec = find_untolerated(taints, tols, |t| t.effect == EFFECT_NO_EXECUTE).is_some();
        return (false, !no_exec);
    }
    (true, true)
}

/// The node a daemon pod is for: its nodeName or its affinity term.
pub fn target_node(pod: &Pod) -> Option<String> {
    let n = podutil::node_name(pod);
    if !n.is_empty() {
        return Some(n.to_owned());
    }
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        })
    })
}

fn ds_ref(ds: &DaemonSet) -> ObjectRef {
    ObjectRef::new("apps/v1", "DaemonSet", &ds.metadata)
}

/// The template hash pods carry in `controller-revision-hash`.
pub fn template_hash(ds: &DaemonSet) -> String {
    let t = ds
        .spec
        .as_ref()
        .map(|s| crate::util::defaults::pod_template(&s.template));
    compute_hash(&t, ds.status.as_ref().and_then(|s| s.collision_count))
}

fn oldest_first(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let sa = !podutil::node_name(a).is_empty();
    let sb = !podutil::node_name(b).is_empty();
    sb.cmp(&sa)
        .then_with(|| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
        })
        .then_with(|| meta::name(&a.metadata).cmp(meta::name(&b.metadata)))
}

#[derive(Clone, Debug)]
struct Backoff {
    delay: Duration,
    last: ClusterInstant,
}

/// The controller's memory: expectations and failed-pod backoff.
#[derive(Clone, Debug, Default)]
pub struct DaemonSetController {
    exp: Expectations,
    backoff: HashMap<String, Backoff>,
}

#[derive(Clone, Debug)]
pub struct DsInput<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: Vec<&'a Node>,
    /// Every pod of the namespace.
    pub pods: Vec<&'a Pod>,
}

fn ds_owner_key(p: &Pod) -> Option<String> {
    let r = meta::controller_of(&p.metadata)?;
    (r.kind == "DaemonSet").then(|| format!("{}/{}", meta::namespace(&p.metadata), r.name))
}

fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let l = meta::labels(&pod.metadata);
    l.get(REVISION_HASH).map(String::as_str) == Some(hash)
        || (generation.is_some()
            && l.get(TEMPLATE_GENERATION) == generation.map(|g| g.to_string()).as_ref())
}

impl DaemonSetController {
    pub fn new() -> DaemonSetController {
        DaemonSetController::default()
    }

    pub fn pod_added(&mut self, pod: &Pod) {
        if let Some(k) = ds_owner_key(pod) {
            self.exp.creation_observed(&k);
        }
    }

    pub fn pod_deleted(&mut self, pod: &Pod) {
        if let Some(k) = ds_owner_key(pod) {
            self.exp.deletion_observed(&k, &meta::key(&pod.metadata));
        }
    }

    pub fn pod_updated(&mut self, old: &Pod, new: &Pod) {
        if old.metadata.deletion_timestamp.is_none() && new.metadata.deletion_timestamp.is_some() {
            self.pod_deleted(new);
        }
    }

    pub fn creation_failed(&mut self, key: &str) {
        self.exp.creation_observed(key);
    }

    pub fn deletion_failed(&mut self, key: &str, pod_key: &str) {
        self.exp.deletion_observed(key, pod_key);
    }

    pub fn forget(&mut self, key: &str) {
        self.exp.forget(key);
        self.backoff
            .retain(|k, _| !k.starts_with(&format!("{key}/")));
    }

    fn in_backoff(&mut self, key: &str, now: ClusterInstant) -> Option<Duration> {
        let b = self.backoff.get(key)?;
        let end = b.last + b.delay;
        (now < end).then(|| end.saturating_duration_since(now))
    }

    fn backoff_next(&mut self, key: &str, now: ClusterInstant) {
        let e = self.backoff.entry(key.to_owned()).or_insert(Backoff {
            delay: Duration::ZERO,
            last: now,
        });
        e.delay = if e.delay.is_zero() {
            BACKOFF_INITIAL
        } else {
            (e.delay * 2).min(BACKOFF_MAX)
        };
        e.last = now;
    }

    /// `syncDaemonSet`.
    pub fn reconcile(&mut self, input: &DsInput<'_>, now: Now) -> Vec<DsAction> {
        let ds = input.ds;
        let key = meta::key(&ds.metadata);
        let mut out = Vec::new();
        let Some(spec) = ds.spec.as_ref() else {
            return out;
        };
        let selector = match LabelSelector::from_meta(Some(&spec.selector)) {
            Ok(s) if !s.is_everything() => s,
            Ok(_) => return out,
            Err(e) => {
                out.push(DsAction::Event(Event::warning(
                    ds_ref(ds),
                    "SelectorParsingFailed",
                    format!("invalid selector: {e}"),
                )));
                return out;
            }
        };
        let hash = template_hash(ds);
        let deleting = meta::is_deleting(&ds.metadata);
        let owner = Claimant {
            uid: meta::uid(&ds.metadata),
            deleting,
            selector: &selector,
        };
        let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        let mut unplaced: Vec<&Pod> = Vec::new();
        for p in &input.pods {
            let mine = match meta::claim(owner, &p.metadata) {
                Claim::Owned => true,
                Claim::Adopt => {
                    out.push(DsAction::PatchOwners {
                        namespace: meta::namespace(&p.metadata).to_owned(),
                        name: meta::name(&p.metadata).to_owned(),
                        uid: meta::uid(&p.metadata).to_owned(),
                        owner_references: meta::with_owner(
                            &p.metadata,
                            meta::controller_ref(&ds.metadata, "apps/v1", "DaemonSet"),
                        ),
                    });
                    true
                }
                Claim::Release => {
                    out.push(DsAction::PatchOwners {
                        namespace: meta::namespace(&p.metadata).to_owned(),
                        name: meta::name(&p.metadata).to_owned(),
                        uid: meta::uid(&p.metadata).to_owned(),
                        owner_references: meta::without_owner(&p.metadata, meta::uid(&ds.metadata)),
                    });
                    false
                }
                Claim::Ignore => false,
            };
            if !mine {
                continue;
            }
            match target_node(p) {
                Some(n) => by_node.entry(n).or_default().push(p),
                None => unplaced.push(p),
            }
        }
        if deleting {
            return out;
        }
        if !self.exp.satisfied(&key, now.mono) {
            out.extend(self.status(input, &by_node, &hash, now));
            return out;
        }
        let manage = self.manage(input, &by_node, &hash, now);
        let acted = manage
            .iter()
            .any(|a| matches!(a, DsAction::CreatePods(_) | DsAction::DeletePods(_)));
        out.extend(manage);
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        if !acted && rolling {
            out.extend(self.rolling_update(input, &by_node, &hash, now));
        }
        out.extend(self.status(input, &by_node, &hash, now));
        out
    }

    fn manage(
        &mut self,
        input: &DsInput<'_>,
        by_node: &BTreeMap<String, Vec<&Pod>>,
        hash: &str,
        now: Now,
    ) -> Vec<DsAction> {
        let ds = input.ds;
        let key = meta::key(&ds.metadata);
        let mut out = Vec::new();
        let mut need: Vec<String> = Vec::new();
        let mut delete: Vec<&Pod> = Vec::new();
        for node in &input.nodes {
            let name = meta::name(&node.metadata).to_owned();
            let (run, keep) = should_run(node, ds);
            let pods = by_node.get(&name);
            match (run, keep, pods) {
                (true, _, None) => need.push(name),
                (_, true, Some(pods)) => {
                    let mut running: Vec<&Pod> = Vec::new();
                    for p in pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                    {
                        match podutil::phase(p) {
                            podutil::PHASE_FAILED => {
                                let bkey = format!("{key}/{name}");
                                if let Some(delay) = self.in_backoff(&bkey, now.mono) {
                                    out.push(DsAction::RequeueAfter(delay));
                                    continue;
                                }
                                self.backoff_next(&bkey, now.mono);
                                out.push(DsAction::Event(Event::warning(
                                    ds_ref(ds),
                                    "FailedDaemonPod",
                                    format!("Found failed daemon pod {} on node {name}, will try to kill it", meta::key(&p.metadata)),
                                )));
                                delete.push(p);
                            }
                            podutil::PHASE_SUCCEEDED => {
                                out.push(DsAction::Event(Event::normal(
                                    ds_ref(ds),
                                    "SucceededDaemonPod",
                                    format!("Found succeeded daemon pod {} on node {name}, will try to delete it", meta::key(&p.metadata)),
                                )));
                                delete.push(p);
                            }
                            _ => running.push(p),
                        }
                    }
                    if running.len() > 1 {
                        running.sort_by(oldest_first);
                        delete.extend(running.into_iter().skip(1));
                    }
                }
                (_, false, Some(pods)) => {
                    delete.extend(
                        pods.iter()
                            .filter(|p| p.metadata.deletion_timestamp.is_none()),
                    );
                }
                _ => {}
            }
        }
        // Unscheduled pods aimed at nodes that no longer exist.
        let names: Vec<&str> = input
            .nodes
            .iter()
            .map(|n| meta::name(&n.metadata))
            .collect();
        for (n, pods) in by_node {
            if names.contains(&n.as_str()) {
                continue;
            }
            delete.extend(pods.iter().filter(|p| {
                podutil::node_name(p).is_empty() && p.metadata.deletion_timestamp.is_none()
            }));
        }
        let burst = crate::replicaset::BURST_REPLICAS;
        need.truncate(burst);
        delete.truncate(burst);
        if need.is_empty() && delete.is_empty() {
            return out;
        }
        let del_refs: Vec<PodRef> = delete.iter().map(|p| PodRef::of(p)).collect();
        let del_keys: Vec<String> = del_refs.iter().map(PodRef::key).collect();
        self.exp.expect(&key, need.len(), &del_keys, now.mono);
        if !need.is_empty() {
            let generation = ds.metadata.generation;
            let creates = need
                .into_iter()
                .map(|n| {
                    let mut p = pod_from_template(
                        &ds.spec.as_ref().expect("checked").template,
                        &ds.metadata,
                        meta::controller_ref(&ds.metadata, "apps/v1", "DaemonSet"),
                    );
                    let l = p.metadata.labels.get_or_insert_with(BTreeMap::new);
                    l.insert(REVISION_HASH.into(), hash.to_owned());
                    if let Some(g) = generation {
                        l.insert(TEMPLATE_GENERATION.into(), g.to_string());
                    }
                    if let Some(spec) = p.spec.as_mut() {
                        add_daemon_tolerations(spec);
                        set_node_affinity(spec, &n);
                    }
                    (n, p)
                })
                .collect();
            out.push(DsAction::CreatePods(creates));
        }
        if !del_refs.is_empty() {
            out.push(DsAction::DeletePods(del_refs));
        }
        out
    }

    /// `rollingUpdate` without surge.
    fn rolling_update(
        &mut self,
        input: &DsInput<'_>,
        by_node: &BTreeMap<String, Vec<&Pod>>,
        hash: &str,
        now: Now,
    ) -> Vec<DsAction> {
        let ds = input.ds;
        let spec = ds.spec.as_ref().expect("checked");
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let desired = input.nodes.iter().filter(|n| should_run(n, ds).0).count() as i32;
        let max_unavail = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let mut max_unavail = scaled_value(&max_unavail, desired, true).unwrap_or(1);
        if max_unavail == 0 {
            max_unavail = 1;
        }
        let generation = ds.metadata.generation;
        let mut unavailable = 0;
        let mut replace: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for pods in by_node.values() {
            let (mut new, mut old, mut ok) = (None, None, true);
            for p in pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let slot = if is_updated(p, hash, generation) {
                    &mut new
                } else {
                    &mut old
                };
                if slot.is_some() {
                    ok = false;
                }
                *slot = Some(*p);
            }
            if !ok {
                unavailable += 1;
                continue;
            }
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !podutil::is_available(n, min_ready, now.wall) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !podutil::is_available(o, min_ready, now.wall) {
                        replace.push(o);
                    } else if unavailable < max_unavail {
                        candidates.push(o);
                    }
                }
            }
        }
        let room = (max_unavail - unavailable)
            .max(0)
            .min(candidates.len() as i32) as usize;
        replace.extend(candidates.into_iter().take(room));
        if replace.is_empty() {
            return Vec::new();
        }
        let refs: Vec<PodRef> = replace.iter().map(|p| PodRef::of(p)).collect();
        let keys: Vec<String> = refs.iter().map(PodRef::key).collect();
        self.exp
            .expect_deletions(&meta::key(&ds.metadata), &keys, now.mono);
        vec![DsAction::DeletePods(refs)]
    }

    fn status(
        &self,
        input: &DsInput<'_>,
        by_node: &BTreeMap<String, Vec<&Pod>>,
        hash: &str,
        now: Now,
    ) -> Vec<DsAction> {
        let ds = input.ds;
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let (mut desired, mut current, mut mis, mut ready, mut available, mut updated) =
            (0, 0, 0, 0, 0, 0);
        for node in &input.nodes {
            let (run, _) = should_run(node, ds);
            let pods = by_node
                .get(meta::name(&node.metadata))
                .filter(|p| !p.is_empty());
            if run {
                desired += 1;
                let Some(pods) = pods else { continue };
                current += 1;
                let mut pods = pods.clone();
                pods.sort_by(oldest_first);
                let p = pods[0];
                if podutil::is_ready(p) {
                    ready += 1;
                    if podutil::is_available(p, min_ready, now.wall) {
                        available += 1;
                    }
                }
                if is_updated(p, hash, ds.metadata.generation) {
                    updated += 1;
                }
            } else if pods.is_some() {
                mis += 1;
            }
        }
        let mut st = ds.status.clone().unwrap_or_default();
        st.desired_number_scheduled = desired;
        st.current_number_scheduled = current;
        st.number_misscheduled = mis;
        st.number_ready = ready;
        st.updated_number_scheduled = Some(updated);
        st.number_available = Some(available);
        st.number_unavailable = Some(desired - available);
        st.observed_generation = ds.metadata.generation;
        let mut out = Vec::new();
        if ds.status.as_ref() != Some(&st) {
            out.push(DsAction::UpdateStatus(Box::new(st)));
        }
        if min_ready > 0 && ready != available {
            out.push(DsAction::RequeueAfter(Duration::from_secs(
                min_ready as u64,
            )));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{node, pod, selector, template};
    use ackemu_kube::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use ackemu_kube::api::core::v1::Taint;

    const APP: &[(&str, &str)] = &[("app", "agent")];

    fn ds() -> DaemonSet {
        DaemonSet {
            metadata: crate::fixtures::meta("kube-system", "agent"),
            spec: Some(DaemonSetSpec {
                selector: selector(APP),
                template: template(APP, "agent:1"),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn daemon_pod(d: &DaemonSet, name: &str, node: &str) -> Pod {
        pod("kube-system", name)
            .labels(&[("app", "agent"), (REVISION_HASH, &template_hash(d))])
            .owner("DaemonSet", "agent")
            .node(node)
            .ready(0)
            .build()
    }

    fn created_on(a: &[DsAction]) -> Vec<String> {
        a.iter()
            .flat_map(|x| match x {
                DsAction::CreatePods(v) => v.iter().map(|(n, _)| n.clone()).collect(),
                _ => vec![],
            })
            .collect()
    }

    fn deleted(a: &[DsAction]) -> Vec<String> {
        a.iter()
            .flat_map(|x| match x {
                DsAction::DeletePods(v) => v.iter().map(|p| p.name.clone()).collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn should_run_table() {
        let d = ds();
        let mut master = node("master", "4", "8Gi");
        master.spec.as_mut().unwrap().taints =
            Some(vec![taint("node-role.kubernetes.io/master", "NoSchedule")]);
        let mut evicting = node("evicting", "4", "8Gi");
        evicting.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "NoExecute")]);
        let mut not_ready = node("nr", "4", "8Gi");
        not_ready.spec.as_mut().unwrap().taints = Some(vec![
            taint(TAINT_NOT_READY, "NoExecute"),
            taint(TAINT_UNSCHEDULABLE, "NoSchedule"),
        ]);
        let cases = [
            ("plain", node("w", "4", "8Gi"), (true, true)),
            ("NoSchedule taint: keep existing", master, (false, true)),
            ("NoExecute taint: evict", evicting, (false, false)),
            ("daemon tolerations", not_ready, (true, true)),
        ];
        for (name, n, want) in cases {
            assert_eq!(should_run(&n, &d), want, "{name}");
        }
        let mut sel = ds();
        sel.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some(crate::fixtures::labels(&[("gpu", "true")]));
        assert_eq!(should_run(&node("w", "4", "8Gi"), &sel), (false, false));
    }

    #[test]
    fn one_pod_per_node() {
        let d = ds();
        let nodes = [
            node("a", "4", "8Gi"),
            node("b", "4", "8Gi"),
            node("c", "4", "8Gi"),
        ];
        let on_a = daemon_pod(&d, "agent-1", "a");
        let dup_old = daemon_pod(&d, "agent-2", "b");
        let mut dup_new = daemon_pod(&d, "agent-3", "b");
        dup_new.metadata.creation_timestamp =
            Some(ackemu_kube::meta::Time(crate::util::time::wall_at_secs(50)));
        let orphan_node = daemon_pod(&d, "agent-4", "gone");
        let mut unscheduled = orphan_node.clone();
        unscheduled.metadata.name = Some("agent-5".into());
        unscheduled.spec.as_mut().unwrap().node_name = None;
        set_node_affinity(unscheduled.spec.as_mut().unwrap(), "gone");
        let mut c = DaemonSetController::new();
        let input = DsInput {
            ds: &d,
            nodes: nodes.iter().collect(),
            pods: vec![&on_a, &dup_old, &dup_new, &orphan_node, &unscheduled],
        };
        let out = c.reconcile(&input, Now::at_secs(100));
        assert_eq!(created_on(&out), vec!["c"]);
        assert_eq!(
            deleted(&out),
            vec!["agent-3", "agent-5"],
            "newest duplicate and the unscheduled pod for a gone node"
        );
        let pod = out
            .iter()
            .find_map(|a| match a {
                DsAction::CreatePods(v) => Some(v[0].1.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            target_node(&pod).as_deref(),
            Some("c"),
            "placed by node affinity, not nodeName"
        );
        assert!(pod.spec.as_ref().unwrap().node_name.is_none());
        assert!(
            pod.spec
                .as_ref()
                .unwrap()
                .tolerations
                .as_ref()
                .unwrap()
                .iter()
                .any(|t| t.key.as_deref() == Some(TAINT_UNREACHABLE))
        );
        // Expectations hold the next sync back.
        assert!(created_on(&c.reconcile(&input, Now::at_secs(101))).is_empty());
    }

    #[test]
    fn failed_pods_are_replaced_with_backoff() {
        let d = ds();
        let nodes = [node("a", "4", "8Gi")];
        let failed = pod("kube-system", "agent-x")
            .labels(&[("app", "agent"), (REVISION_HASH, &template_hash(&d))])
            .owner("DaemonSet", "agent")
            .node("a")
            .phase("Failed")
            .build();
        let mut c = DaemonSetController::new();
        let input = DsInput {
            ds: &d,
            nodes: nodes.iter().collect(),
            pods: vec![&failed],
        };
        let out = c.reconcile(&input, Now::at_secs(0));
        assert_eq!(deleted(&out), vec!["agent-x"]);
        assert!(
            out.iter()
                .any(|a| matches!(a, DsAction::Event(e) if e.reason == "FailedDaemonPod"))
        );
        c.pod_deleted(&failed);
        // Another failure right away: backed off.
        let out = c.reconcile(&input, Now::at_secs(0));
        assert!(deleted(&out).is_empty());
        assert!(out.iter().any(|a| matches!(a, DsAction::RequeueAfter(_))));
    }

    #[test]
    fn rolling_update_within_max_unavailable() {
        let mut d = ds();
        d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(1)),
                max_surge: None,
            }),
        });
        let nodes = [
            node("a", "4", "8Gi"),
            node("b", "4", "8Gi"),
            node("c", "4", "8Gi"),
        ];
        let old = |name: &str, n: &str| {
            pod("kube-system", name)
                .labels(&[("app", "agent"), (REVISION_HASH, "old")])
                .owner("DaemonSet", "agent")
                .node(n)
                .ready(0)
                .build()
        };
        let pods = [old("p-a", "a"), old("p-b", "b"), old("p-c", "c")];
        let mut c = DaemonSetController::new();
        let out = c.reconcile(
            &DsInput {
                ds: &d,
                nodes: nodes.iter().collect(),
                pods: pods.iter().collect(),
            },
            Now::at_secs(10),
        );
        assert_eq!(deleted(&out), vec!["p-a"], "one at a time");
        // While the replacement on a is not available, nothing else goes.
        let mut c = DaemonSetController::new();
        let fresh = pod("kube-system", "n-a")
            .labels(&[("app", "agent"), (REVISION_HASH, &template_hash(&d))])
            .owner("DaemonSet", "agent")
            .node("a")
            .build();
        let out = c.reconcile(
            &DsInput {
                ds: &d,
                nodes: nodes.iter().collect(),
                pods: vec![&fresh, &pods[1], &pods[2]],
            },
            Now::at_secs(11),
        );
        assert!(deleted(&out).is_empty());
        let st = out
            .iter()
            .find_map(|a| match a {
                DsAction::UpdateStatus(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (
                st.desired_number_scheduled,
                st.current_number_scheduled,
                st.number_ready,
                st.updated_number_scheduled
            ),
            (3, 3, 2, Some(1))
        );
    }
}
