//! The ReplicaSet controller (`pkg/controller/replicaset`): keep
//! `spec.replicas` active pods matching the selector, adopting orphans and
//! releasing pods that stopped matching; create with expectations so a
//! stale cache never doubles a burst; delete the pods Kubernetes would
//! delete first ([`rank_for_deletion`]); report status.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use ackemu_kube::api::core::v1::{Pod, PodTemplateSpec};
use ackemu_kube::meta::{ObjectMeta, OwnerReference, Time};
use jiff::Timestamp;

use crate::util::expectations::Expectations;
use crate::util::meta::{self, Claim, Claimant};
use crate::util::{Event, Now, ObjectRef, pod as podutil};

/// `BurstReplicas`: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;
/// `controller.kubernetes.io/pod-deletion-cost`.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the driver does for a ReplicaSet.
#[derive(Clone, Debug, PartialEq)]
pub enum RsAction {
    /// Patch the pod's `metadata.ownerReferences` to this list (adoption or
    /// release), with the pod's uid as precondition.
    PatchOwners {
        namespace: String,
        name: String,
        uid: String,
        owner_references: Vec<OwnerReference>,
    },
    /// Create `count` pods from `pod` (generateName set) in slow-start
    /// batches ([`slow_start_batches`]). Expectations for all of them are
    /// already set: for each creation that fails or is skipped call
    /// [`ReplicaSetController::creation_failed`]. Record `SuccessfulCreate`
    /// / `FailedCreate` events ([`created_message`]).
    CreatePods {
        count: usize,
        pod: Box<Pod>,
    },
    /// Delete these pods (uid precondition); for each failure other than
    /// NotFound call [`ReplicaSetController::deletion_failed`].
    DeletePods {
        pods: Vec<PodRef>,
    },
    /// `UpdateStatus` with this status (only emitted when it changed).
    UpdateStatus(Box<ReplicaSetStatus>),
    /// Sync again after this long (waiting for minReadySeconds).
    RequeueAfter(Duration),
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    pub fn of(p: &Pod) -> PodRef {
        PodRef {
            namespace: meta::namespace(&p.metadata).to_owned(),
            name: meta::name(&p.metadata).to_owned(),
            uid: meta::uid(&p.metadata).to_owned(),
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub fn created_message(pod_name: &str) -> String {
    format!("Created pod: {pod_name}")
}

pub fn deleted_message(pod_name: &str) -> String {
    format!("Deleted pod: {pod_name}")
}

/// `slowStartBatch` sizes: 1, 2, 4, … up to `count` in total.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (count, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size *= 2;
    }
    out
}

/// `GetPodFromTemplate`: a pod to create for `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner_meta: &ObjectMeta,
    owner_ref: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            namespace: owner_meta.namespace.clone(),
            generate_name: Some(format!("{}-", meta::name(owner_meta))),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn phase_ordinal(p: &Pod) -> u8 {
    match podutil::phase(p) {
        podutil::PHASE_UNKNOWN => 1,
        podutil::PHASE_RUNNING => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    meta::annotation(&p.metadata, POD_DELETION_COST)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `logarithmicRankDiff`: compares ages in powers of two.
fn log_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let d = now.duration_since(t).as_nanos();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    rank(t1) - rank(t2)
}

/// `afterOrZero`: t1 first when it is unset or later.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

fn created(p: &Pod) -> Option<Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `ActivePodsWithRanks.Less`: true when `a` should be deleted before `b`.
fn delete_first(a: (&Pod, usize), b: (&Pod, usize), now: Timestamp) -> bool {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let (na, nb) = (podutil::node_name(pa), podutil::node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    if phase_ordinal(pa) != phase_ordinal(pb) {
        return phase_ordinal(pa) < phase_ordinal(pb);
    }
    let (ready_a, ready_b) = (podutil::is_ready(pa), podutil::is_ready(pb));
    if ready_a != ready_b {
        return !ready_a;
    }
    if deletion_cost(pa) != deletion_cost(pb) {
        return deletion_cost(pa) < deletion_cost(pb);
    }
    if ra != rb {
        return ra > rb;
    }
    let uid_less = || meta::uid(&pa.metadata) < meta::uid(&pb.metadata);
    if ready_a && ready_b {
        let (ta, tb) = (podutil::ready_since(pa), podutil::ready_since(pb));
        if ta != tb {
            let (Some(x), Some(y)) = (ta, tb) else {
                return after_or_zero(ta, tb);
            };
            let d = log_rank_diff(x, y, now);
            return if d == 0 { uid_less() } else { d < 0 };
        }
    }
    let (rsa, rsb) = (podutil::restart_count(pa), podutil::restart_count(pb));
    if rsa != rsb {
        return rsa > rsb;
    }
    let (ca, cb) = (created(pa), created(pb));
    if ca != cb {
        let (Some(x), Some(y)) = (ca, cb) else {
            return after_or_zero(ca, cb);
        };
        let d = log_rank_diff(x, y, now);
        return if d == 0 { uid_less() } else { d < 0 };
    }
    false
}

/// `getPodsToDelete`: the `diff` pods Kubernetes deletes first.
/// `related` are the active pods of every ReplicaSet of the same owner
/// (a pod sharing its node with many of them goes first).
pub fn rank_for_deletion<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related {
        if podutil::is_active(p) {
            *on_node.entry(podutil::node_name(p)).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(podutil::node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| {
        if delete_first(*a, *b, now) {
            Ordering::Less
        } else if delete_first(*b, *a, now) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// The ReplicaSet as a reconcile sees it.
#[derive(Clone, Debug)]
pub struct RsInput<'a> {
    pub rs: &'a ReplicaSet,
    /// Every pod of the namespace (for adoption).
    pub pods: Vec<&'a Pod>,
    /// Active pods of sibling ReplicaSets of the same Deployment.
    pub related: Vec<&'a Pod>,
    /// The error of the last create/delete attempt, for `ReplicaFailure`.
    pub last_error: Option<String>,
}

/// The controller's memory: expectations per ReplicaSet key.
#[derive(Clone, Debug, Default)]
pub struct ReplicaSetController {
    pub burst_replicas: usize,
    exp: Expectations,
}

fn rs_owner_key(p: &Pod) -> Option<String> {
    let r = meta::controller_of(&p.metadata)?;
    (r.kind == "ReplicaSet").then(|| format!("{}/{}", meta::namespace(&p.metadata), r.name))
}

fn rs_ref(rs: &ReplicaSet) -> ObjectRef {
    ObjectRef::new("apps/v1", "ReplicaSet", &rs.metadata)
}

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

impl ReplicaSetController {
    pub fn new() -> ReplicaSetController {
        ReplicaSetController {
            burst_replicas: BURST_REPLICAS,
            exp: Expectations::new(),
        }
    }

    pub fn expectations(&self) -> &Expectations {
        &self.exp
    }

    /// Informer: a pod appeared.
    pub fn pod_added(&mut self, pod: &Pod) {
        if let Some(k) = rs_owner_key(pod) {
            if pod.metadata.deletion_timestamp.is_some() {
                self.exp.deletion_observed(&k, &meta::key(&pod.metadata));
            } else {
                self.exp.creation_observed(&k);
            }
        }
    }

    /// Informer: a pod changed; a new deletionTimestamp counts as deleted.
    pub fn pod_updated(&mut self, old: &Pod, new: &Pod) {
        if old.metadata.deletion_timestamp.is_none()
            && new.metadata.deletion_timestamp.is_some()
            && let Some(k) = rs_owner_key(new)
        {
            self.exp.deletion_observed(&k, &meta::key(&new.metadata));
        }
    }

    /// Informer: a pod is gone.
    pub fn pod_deleted(&mut self, pod: &Pod) {
        if let Some(k) = rs_owner_key(pod) {
            self.exp.deletion_observed(&k, &meta::key(&pod.metadata));
        }
    }

    pub fn creation_failed(&mut self, rs_key: &str) {
        self.exp.creation_observed(rs_key);
    }

    pub fn deletion_failed(&mut self, rs_key: &str, pod_key: &str) {
        self.exp.deletion_observed(rs_key, pod_key);
    }

    /// The ReplicaSet is gone.
    pub fn forget(&mut self, rs_key: &str) {
        self.exp.forget(rs_key);
    }

    /// `syncReplicaSet`.
    pub fn reconcile(&mut self, input: &RsInput<'_>, now: Now) -> Vec<RsAction> {
        let rs = input.rs;
        let key = meta::key(&rs.metadata);
        let mut out = Vec::new();
        let selector = match LabelSelector::from_meta(rs.spec.as_ref().map(|s| &s.selector)) {
            Ok(s) => s,
            Err(e) => {
                out.push(RsAction::Event(Event::warning(
                    rs_ref(rs),
                    "SelectorParsingFailed",
                    format!("invalid selector: {e}"),
                )));
                return out;
            }
        };
        let deleting = meta::is_deleting(&rs.metadata);
        let owner = Claimant {
            uid: meta::uid(&rs.metadata),
            deleting,
            selector: &selector,
        };
        let mut filtered: Vec<&Pod> = Vec::new();
        for p in input.pods.iter().filter(|p| podutil::is_active(p)) {
            match meta::claim(owner, &p.metadata) {
                Claim::Owned => filtered.push(p),
                Claim::Adopt => {
                    out.push(RsAction::PatchOwners {
                        namespace: meta::namespace(&p.metadata).to_owned(),
                        name: meta::name(&p.metadata).to_owned(),
                        uid: meta::uid(&p.metadata).to_owned(),
                        owner_references: meta::with_owner(
                            &p.metadata,
                            meta::controller_ref(&rs.metadata, "apps/v1", "ReplicaSet"),
                        ),
                    });
                    filtered.push(p);
                }
                Claim::Release => out.push(RsAction::PatchOwners {
                    namespace: meta::namespace(&p.metadata).to_owned(),
                    name: meta::name(&p.metadata).to_owned(),
                    uid: meta::uid(&p.metadata).to_owned(),
                    owner_references: meta::without_owner(&p.metadata, meta::uid(&rs.metadata)),
                }),
                Claim::Ignore => {}
            }
        }

        if self.exp.satisfied(&key, now.mono) && !deleting {
            out.extend(self.manage(rs, &key, &filtered, &input.related, now));
        }

        let want = replicas(rs);
        let status = calculate_status(rs, &filtered, input.last_error.as_deref(), now.wall);
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if rs.status.as_ref() != Some(&status) {
            out.push(RsAction::UpdateStatus(Box::new(status.clone())));
        }
        if input.last_error.is_none()
            && min_ready > 0
            && status.ready_replicas.unwrap_or(0) == want
            && status.available_replicas.unwrap_or(0) != want
        {
            out.push(RsAction::RequeueAfter(Duration::from_secs(
                min_ready as u64,
            )));
        }
        out
    }

    fn manage(
        &mut self,
        rs: &ReplicaSet,
        key: &str,
        filtered: &[&Pod],
        related: &[&Pod],
        now: Now,
    ) -> Vec<RsAction> {
        let want = replicas(rs).max(0) as usize;
        let have = filtered.len();
        let burst = if self.burst_replicas == 0 {
            BURST_REPLICAS
        } else {
            self.burst_replicas
        };
        if have < want {
            let n = (want - have).min(burst);
            let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
                return Vec::new();
            };
            self.exp.expect_creations(key, n, now.mono);
            let pod = pod_from_template(
                template,
                &rs.metadata,
                meta::controller_ref(&rs.metadata, "apps/v1", "ReplicaSet"),
            );
            vec![RsAction::CreatePods {
                count: n,
                pod: Box::new(pod),
            }]
        } else if have > want {
            let n = (have - want).min(burst);
            let victims = rank_for_deletion(filtered, related, n, now.wall);
            let refs: Vec<PodRef> = victims.iter().map(|p| PodRef::of(p)).collect();
            let keys: Vec<String> = refs.iter().map(PodRef::key).collect();
            self.exp.expect_deletions(key, &keys, now.mono);
            vec![RsAction::DeletePods { pods: refs }]
        } else {
            Vec::new()
        }
    }
}

/// `calculateStatus` + observedGeneration.
pub fn calculate_status(
    rs: &ReplicaSet,
    filtered: &[&Pod],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut st = rs.status.clone().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template_sel = LabelSelector::from_set(&template_labels);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for p in filtered {
        if template_sel.matches(meta::labels(&p.metadata)) {
            fully += 1;
        }
        if podutil::is_ready(p) {
            ready += 1;
            if podutil::is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let conds = st.conditions.get_or_insert_with(Vec::new);
    let has_failure = conds.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(e) if !has_failure => {
            let diff = filtered.len() as i64 - replicas(rs) as i64;
            let reason = match diff.cmp(&0) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            conds.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_owned()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conds.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if conds.is_empty() {
        st.conditions = None;
    }
    st.replicas = filtered.len() as i32;
    st.fully_labeled_replicas = Some(fully);
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.observed_generation = rs.metadata.generation;
    st
}

/// When the first unavailable-but-ready pod becomes available, for drivers
/// that want a precise wakeup rather than `RequeueAfter`.
pub fn next_available(
    pods: &[&Pod],
    min_ready_seconds: i32,
    now: Timestamp,
    mono: ClusterInstant,
) -> Option<ClusterInstant> {
    pods.iter()
        .filter(|p| podutil::is_ready(p) && !podutil::is_available(p, min_ready_seconds, now))
        .filter_map(|p| podutil::ready_since(p))
        .map(|t| {
            let at =
                crate::util::time::add(t, Duration::from_secs(min_ready_seconds.max(0) as u64));
            mono + crate::util::time::since(at, now)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod, replicaset};

    const APP: &[(&str, &str)] = &[("app", "web")];

    fn creates(a: &[RsAction]) -> Option<usize> {
        a.iter().find_map(|x| match x {
            RsAction::CreatePods { count, .. } => Some(*count),
            _ => None,
        })
    }

    fn deletes(a: &[RsAction]) -> Vec<String> {
        a.iter()
            .flat_map(|x| match x {
                RsAction::DeletePods { pods } => pods.iter().map(|p| p.name.clone()).collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn creates_with_expectations_against_stale_cache() {
        let rs = replicaset("ns", "web-1", 3, APP);
        let mut c = ReplicaSetController::new();
        let input = RsInput {
            rs: &rs,
            pods: vec![],
            related: vec![],
            last_error: None,
        };
        let out = c.reconcile(&input, Now::at_secs(0));
        assert_eq!(creates(&out), Some(3));
        match out
            .iter()
            .find(|a| matches!(a, RsAction::CreatePods { .. }))
        {
            Some(RsAction::CreatePods { pod, .. }) => {
                assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-1-"));
                let r = &pod.metadata.owner_references.as_ref().unwrap()[0];
                assert_eq!(
                    (r.kind.as_str(), r.controller, r.block_owner_deletion),
                    ("ReplicaSet", Some(true), Some(true))
                );
            }
            _ => unreachable!(),
        }
        // The cache has not caught up: no second burst.
        assert_eq!(creates(&c.reconcile(&input, Now::at_secs(1))), None);
        // Two creations observed, one failed.
        let p1 = pod("ns", "a")
            .labels(APP)
            .owner("ReplicaSet", "web-1")
            .build();
        let p2 = pod("ns", "b")
            .labels(APP)
            .owner("ReplicaSet", "web-1")
            .build();
        c.pod_added(&p1);
        c.pod_added(&p2);
        c.creation_failed("ns/web-1");
        let input = RsInput {
            rs: &rs,
            pods: vec![&p1, &p2],
            related: vec![],
            last_error: Some("pods \"web-1-x\" is forbidden: exceeded quota".into()),
        };
        let out = c.reconcile(&input, Now::at_secs(2));
        assert_eq!(creates(&out), Some(1));
        let status = out
            .iter()
            .find_map(|a| match a {
                RsAction::UpdateStatus(s) => Some(s),
                _ => None,
            })
            .unwrap();
        let cond = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.type_.as_str(), cond.reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
        assert_eq!(status.replicas, 2);
    }

    #[test]
    fn expectations_expire() {
        let rs = replicaset("ns", "web-1", 2, APP);
        let mut c = ReplicaSetController::new();
        let input = RsInput {
            rs: &rs,
            pods: vec![],
            related: vec![],
            last_error: None,
        };
        assert_eq!(creates(&c.reconcile(&input, Now::at_secs(0))), Some(2));
        assert_eq!(creates(&c.reconcile(&input, Now::at_secs(300))), None);
        assert_eq!(creates(&c.reconcile(&input, Now::at_secs(301))), Some(2));
    }

    #[test]
    fn adopts_and_releases() {
        let rs = replicaset("ns", "web-1", 2, APP);
        let orphan = pod("ns", "orphan").labels(APP).build();
        let stray = pod("ns", "stray")
            .labels(&[("app", "other")])
            .owner("ReplicaSet", "web-1")
            .build();
        let foreign = pod("ns", "foreign")
            .labels(APP)
            .owner("ReplicaSet", "other")
            .build();
        let mut c = ReplicaSetController::new();
        let out = c.reconcile(
            &RsInput {
                rs: &rs,
                pods: vec![&orphan, &stray, &foreign],
                related: vec![],
                last_error: None,
            },
            Now::at_secs(0),
        );
        let patches: Vec<(String, usize)> = out
            .iter()
            .filter_map(|a| match a {
                RsAction::PatchOwners {
                    name,
                    owner_references,
                    ..
                } => Some((name.clone(), owner_references.len())),
                _ => None,
            })
            .collect();
        assert_eq!(patches, vec![("orphan".into(), 1), ("stray".into(), 0)]);
        assert_eq!(creates(&out), Some(1), "the adopted orphan counts");
    }

    #[test]
    fn deletion_ranking() {
        // Kubernetes' order: unassigned, pending, not ready, low deletion
        // cost, doubled-up node, ready more recently, more restarts, newer.
        let o = |name: &str| pod("ns", name).labels(APP).owner("ReplicaSet", "web-1");
        let pods = [
            o("running-old").node("n1").ready(0).created(0).build(),
            o("unassigned").build(),
            o("pending").node("n2").build(),
            o("not-ready").node("n3").not_ready().build(),
            o("costly")
                .node("n4")
                .ready(0)
                .created(0)
                .annotate(POD_DELETION_COST, "100")
                .build(),
            o("cheap")
                .node("n5")
                .ready(0)
                .created(0)
                .annotate(POD_DELETION_COST, "-5")
                .build(),
            o("young-ready").node("n6").ready(3500).created(0).build(),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let now = crate::util::time::wall_at_secs(3600);
        let order: Vec<String> = rank_for_deletion(&refs, &refs, 6, now)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            order,
            vec![
                "unassigned",
                "pending",
                "not-ready",
                "cheap",
                "young-ready",
                "running-old"
            ]
        );

        // Doubled up: the pod sharing its node with a sibling goes first.
        let a = o("alone").node("n1").ready(0).build();
        let b = o("crowded").node("n2").ready(0).build();
        let sibling = pod("ns", "sib").node("n2").ready(0).build();
        let order = rank_for_deletion(&[&a, &b], &[&a, &b, &sibling], 1, now);
        assert_eq!(order[0].metadata.name.as_deref(), Some("crowded"));
    }

    #[test]
    fn scale_down_and_status() {
        let mut rs = replicaset("ns", "web-1", 1, APP);
        rs.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let o = |name: &str| pod("ns", name).labels(APP).owner("ReplicaSet", "web-1");
        let a = o("a").node("n1").ready(0).created(0).build();
        let b = o("b").node("n1").ready(100).created(90).build();
        let gone = o("gone").node("n1").ready(0).deleting(5).build();
        let mut c = ReplicaSetController::new();
        let input = RsInput {
            rs: &rs,
            pods: vec![&a, &b, &gone],
            related: vec![],
            last_error: None,
        };
        let out = c.reconcile(&input, Now::at_secs(110));
        assert_eq!(deletes(&out), vec!["b"], "the newest-ready pod goes");
        let st = out
            .iter()
            .find_map(|x| match x {
                RsAction::UpdateStatus(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (st.replicas, st.ready_replicas, st.available_replicas),
            (2, Some(2), Some(1)),
            "b is not available for 30 s"
        );
        assert_eq!(st.observed_generation, Some(1));
        // Until b's deletion is observed nothing more is deleted.
        assert!(deletes(&c.reconcile(&input, Now::at_secs(111))).is_empty());
        c.pod_deleted(&b);
        let input = RsInput {
            rs: &rs,
            pods: vec![&a],
            related: vec![],
            last_error: None,
        };
        assert!(deletes(&c.reconcile(&input, Now::at_secs(112))).is_empty());
    }

    #[test]
    fn slow_start() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }
}
