//! The Deployment controller (`pkg/controller/deployment`): ReplicaSets
//! named `<deployment>-<pod-template-hash>`, revisions in the
//! `deployment.kubernetes.io/revision` annotation, rolling updates bounded
//! by maxSurge and maxUnavailable, Recreate, proportional scaling of a
//! rollout in flight, rollback by template (a template equal to an old
//! ReplicaSet's makes that ReplicaSet the new one, with the next revision
//! and its old revision kept in `revision-history`), pause/resume, history
//! cleanup, and the Available / Progressing / ReplicaFailure conditions.
//!
//! [`reconcile`] is one `syncDeployment`. It returns the writes Kubernetes'
//! controller would make in that sync, in order; the driver applies them
//! with the objects' resourceVersions and stops at the first conflict
//! (the next sync starts over from the informer caches).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use ackemu_kube::api::core::v1::{Pod, PodTemplateSpec};
use ackemu_kube::meta::{ObjectMeta, OwnerReference, Time};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::util::hash::compute_hash;
use crate::util::intstr::scaled_value;
use crate::util::meta::{self, Claim, Claimant};
use crate::util::{Event, Now, ObjectRef, time};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const MAX_REV_HISTORY_CHARS: usize = 2000;

pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// A write the driver performs.
#[derive(Clone, Debug, PartialEq)]
pub enum DeployAction {
    /// Adopt or release a ReplicaSet: patch its ownerReferences (uid
    /// precondition).
    PatchRsOwners {
        name: String,
        uid: String,
        owner_references: Vec<OwnerReference>,
    },
    /// Create this ReplicaSet. AlreadyExists means a stale cache: requeue.
    CreateReplicaSet(Box<ReplicaSet>),
    /// Update this ReplicaSet (replicas, annotations, minReadySeconds).
    UpdateReplicaSet(Box<ReplicaSet>),
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet {
        name: String,
        uid: String,
    },
    /// Set the Deployment's revision annotation (metadata patch).
    SetRevision(String),
    /// `UpdateStatus` of the Deployment.
    UpdateStatus(Box<DeploymentStatus>),
    /// Sync again after this long (progress deadline check).
    RequeueAfter(Duration),
    Event(Event),
}

fn d_ref(d: &Deployment) -> ObjectRef {
    ObjectRef::new("apps/v1", "Deployment", &d.metadata)
}

pub fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map(|s| s.replicas).unwrap_or(0),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable), never both zero.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.clone()).unwrap_or(pct("25%"));
    let unavail = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(pct("25%"));
    let n = d_replicas(d);
    let s = scaled_value(&surge, n, true).unwrap_or(0);
    let u = scaled_value(&unavail, n, false).unwrap_or(0);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) { 0 } else { fenceposts(d).0 }
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    let n = d_replicas(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d).1.min(n)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    let v = d
        .spec
        .as_ref()
        .map(|s| s.progress_deadline_seconds.unwrap_or(600))
        .unwrap_or(600);
    (v != i32::MAX).then_some(v)
}

fn revision_history_limit(d: &Deployment) -> Option<i32> {
    Some(
        d.spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10),
    )
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn min_ready(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    meta::annotation(&rs.metadata, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn template_without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = crate::util::defaults::pod_template(t);
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
        if l.is_empty() {
            t.metadata.as_mut().expect("has labels").labels = None;
        }
    }
    serde_json::to_value(&t).unwrap_or_default()
}

/// `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    template_without_hash(a) == template_without_hash(b)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb)
        .then_with(|| meta::name(&a.metadata).cmp(meta::name(&b.metadata)))
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get_condition<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`.
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let conds = st.conditions.get_or_insert_with(Vec::new);
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = st.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
        if c.is_empty() {
            st.conditions = None;
        }
    }
}

/// The Deployment and everything a sync reads.
#[derive(Clone, Debug)]
pub struct DeployInput<'a> {
    pub deployment: &'a Deployment,
    /// Every ReplicaSet of the namespace (for adoption).
    pub replica_sets: Vec<&'a ReplicaSet>,
    /// Pods of the namespace (Recreate waits for old pods to stop).
    pub pods: Vec<&'a Pod>,
}

/// One sync's working state: the Deployment's status and the ReplicaSets
/// as this sync changed them.
struct Sync<'a> {
    d: &'a Deployment,
    status: DeploymentStatus,
    rss: Vec<ReplicaSet>,
    /// Every ReplicaSet of the namespace, for name collisions.
    namespace_rss: Vec<&'a ReplicaSet>,
    new_idx: Option<usize>,
    dirty: Vec<usize>,
    actions: Vec<DeployAction>,
    events: Vec<Event>,
    revision_to_set: Option<String>,
    now: Now,
}

impl<'a> Sync<'a> {
    fn old_indices(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new_idx)
            .collect()
    }

    fn touch(&mut self, i: usize) {
        if !self.dirty.contains(&i) {
            self.dirty.push(i);
        }
    }

    fn replicas_annotations_need_update(&self, rs: &ReplicaSet) -> bool {
        let want_d = d_replicas(self.d).to_string();
        let want_m = (d_replicas(self.d) + max_surge(self.d)).to_string();
        meta::annotation(&rs.metadata, DESIRED_REPLICAS) != Some(want_d.as_str())
            || meta::annotation(&rs.metadata, MAX_REPLICAS) != Some(want_m.as_str())
    }

    fn set_replicas_annotations(&self, rs: &mut ReplicaSet) -> bool {
        let desired = d_replicas(self.d);
        let maxr = desired + max_surge(self.d);
        let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, maxr)] {
            let v = v.to_string();
            if a.get(k) != Some(&v) {
                a.insert(k.into(), v);
                changed = true;
            }
        }
        changed
    }

    /// `scaleReplicaSet`: returns whether the size changed.
    fn scale(&mut self, i: usize, new_scale: i32, op: &str) -> bool {
        let old = rs_replicas(&self.rss[i]);
        let size = old != new_scale;
        let ann = self.replicas_annotations_need_update(&self.rss[i]);
        if !(size || ann) {
            return false;
        }
        let mut rs = self.rss[i].clone();
        set_rs_replicas(&mut rs, new_scale);
        self.set_replicas_annotations(&mut rs);
        self.rss[i] = rs;
        self.touch(i);
        if size {
            self.events.push(Event::normal(
                d_ref(self.d),
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {old} to {new_scale}",
                    meta::name(&self.rss[i].metadata)
                ),
            ));
        }
        size
    }

    /// `scaleReplicaSetAndRecordEvent`.
    fn scale_and_record(&mut self, i: usize, new_scale: i32) -> bool {
        let cur = rs_replicas(&self.rss[i]);
        if cur == new_scale {
            return false;
        }
        let op = if cur < new_scale { "up" } else { "down" };
        self.scale(i, new_scale, op)
    }

    fn sum_spec(&self, idx: &[usize]) -> i32 {
        idx.iter().map(|i| rs_replicas(&self.rss[*i])).sum()
    }

    fn sum_available(&self, idx: &[usize]) -> i32 {
        idx.iter().map(|i| rs_status(&self.rss[*i]).2).sum()
    }

    fn all_indices(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    fn active(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter()
            .copied()
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect()
    }

    fn max_old_revision(&self) -> i64 {
        self.old_indices()
            .iter()
            .map(|i| revision(&self.rss[*i]))
            .max()
            .unwrap_or(0)
    }

    /// `SetNewReplicaSetAnnotations`.
    fn set_new_rs_annotations(&self, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
        let mut changed = false;
        let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            if [
                LAST_APPLIED,
                REVISION,
                REVISION_HISTORY,
                DESIRED_REPLICAS,
                MAX_REPLICAS,
                ROLLBACK_TO,
            ]
            .contains(&k.as_str())
                || a.get(k) == Some(v)
            {
                continue;
            }
            a.insert(k.clone(), v.clone());
            changed = true;
        }
        let old = a.get(REVISION).cloned();
        let old_int: i64 = match old.as_deref() {
            None | Some("") => 0,
            Some(s) => match s.parse() {
                Ok(v) => v,
                Err(_) => return false,
            },
        };
        if old_int < new_revision {
            a.insert(REVISION.into(), new_revision.to_string());
            changed = true;
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                // Rolling back to this ReplicaSet: keep its old revision.
                let hist = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
                if hist.is_empty() {
                    a.insert(REVISION_HISTORY.into(), old);
                } else {
                    let mut parts: Vec<&str> = hist.split(',').collect();
                    let mut total = hist.len() + old.len() + 1;
                    let mut start = 0;
                    while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                        total -= parts[start].len() + 1;
                        start += 1;
                    }
                    if total <= MAX_REV_HISTORY_CHARS {
                        parts = parts.split_off(start);
                        parts.push(&old);
                        let joined = parts.join(",");
                        a.insert(REVISION_HISTORY.into(), joined);
                    }
                }
            }
        }
        if !exists && self.set_replicas_annotations(rs) {
            changed = true;
        }
        changed
    }

    /// `getAllReplicaSetsAndSyncRevision` for an existing new ReplicaSet:
    /// annotations, minReadySeconds, the Deployment's revision and the
    /// FoundNewReplicaSet condition.
    fn sync_existing_new(&mut self) {
        let Some(i) = self.new_idx else { return };
        let new_revision = self.max_old_revision() + 1;
        let mut rs = self.rss[i].clone();
        let changed = self.set_new_rs_annotations(&mut rs, new_revision, true);
        let mr = min_ready(self.d);
        let spec = rs.spec.get_or_insert_with(Default::default);
        let mr_changed = spec.min_ready_seconds.unwrap_or(0) != mr;
        if changed || mr_changed {
            spec.min_ready_seconds = Some(mr);
            self.rss[i] = rs;
            self.touch(i);
            return;
        }
        let rev = meta::annotation(&self.rss[i].metadata, REVISION)
            .unwrap_or("")
            .to_owned();
        if meta::annotation(&self.d.metadata, REVISION) != Some(rev.as_str()) {
            self.revision_to_set = Some(rev);
        }
        if progress_deadline(self.d).is_some()
            && get_condition(&self.status, "Progressing").is_none()
        {
            let name = meta::name(&self.rss[i].metadata).to_owned();
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "True",
                    REASON_FOUND_NEW_RS,
                    format!("Found new replica set {name:?}"),
                    self.now.wall,
                ),
            );
        }
    }

    /// Builds the new ReplicaSet (`getNewReplicaSet` with
    /// createIfNotExisted). Returns false when the sync must stop here.
    fn create_new(&mut self) -> bool {
        let d = self.d;
        let spec = d.spec.as_ref().expect("checked by reconcile");
        let collision = self.status.collision_count;
        let hash = compute_hash(
            &crate::util::defaults::pod_template(&spec.template),
            collision,
        );
        let name = format!("{}-{hash}", meta::name(&d.metadata));
        if let Some(existing) = self
            .namespace_rss
            .iter()
            .find(|r| meta::name(&r.metadata) == name)
        {
            let ours = meta::controller_of(&existing.metadata)
                .is_some_and(|r| r.uid == meta::uid(&d.metadata));
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &spec.template));
            if !(ours && same) {
                // Hash collision: bump the count and retry with a new name.
                self.status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.actions
                    .push(DeployAction::UpdateStatus(Box::new(self.status.clone())));
                return false;
            }
        }
        let mut template = crate::util::defaults::pod_template(&spec.template);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![meta::controller_ref(
                    &d.metadata,
                    "apps/v1",
                    "Deployment",
                )]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(min_ready(d)),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let new_revision = self.max_old_revision() + 1;
        let replicas = self.new_rs_new_replicas_for(&rs);
        set_rs_replicas(&mut rs, replicas);
        self.set_new_rs_annotations(&mut rs, new_revision, false);
        self.actions
            .push(DeployAction::CreateReplicaSet(Box::new(rs)));
        if replicas > 0 {
            self.events.push(Event::normal(
                d_ref(d),
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            ));
        }
        if meta::annotation(&d.metadata, REVISION) != Some(new_revision.to_string().as_str()) {
            self.revision_to_set = Some(new_revision.to_string());
        }
        if progress_deadline(d).is_some() {
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "True",
                    REASON_NEW_RS_CREATED,
                    format!("Created new replica set {name:?}"),
                    self.now.wall,
                ),
            );
        }
        false
    }

    /// `NewRSNewReplicas` for a ReplicaSet about to be created.
    fn new_rs_new_replicas_for(&self, new_rs: &ReplicaSet) -> i32 {
        let want = d_replicas(self.d);
        if !is_rolling(self.d) {
            return want;
        }
        let current: i32 = self.sum_spec(&self.all_indices()) + rs_replicas(new_rs);
        new_rs_count(want, max_surge(self.d), current, rs_replicas(new_rs))
    }

    fn new_rs_new_replicas(&self, i: usize) -> i32 {
        let want = d_replicas(self.d);
        if !is_rolling(self.d) {
            return want;
        }
        new_rs_count(
            want,
            max_surge(self.d),
            self.sum_spec(&self.all_indices()),
            rs_replicas(&self.rss[i]),
        )
    }

    /// `scale`: proportional scaling when `spec.replicas` changed.
    fn scale_deployment(&mut self) {
        let want = d_replicas(self.d);
        // FindActiveOrLatest.
        let mut olds = self.old_indices();
        olds.sort_by(|a, b| by_creation(&self.rss[*b], &self.rss[*a]));
        let mut all = olds.clone();
        all.extend(self.new_idx);
        let active = self.active(&all);
        let target = match (active.len(), self.new_idx, olds.first()) {
            (0, Some(n), _) => Some(n),
            (0, None, Some(o)) => Some(*o),
            (1, _, _) => Some(active[0]),
            _ => None,
        };
        if all.is_empty() {
            return;
        }
        if let Some(t) = target {
            if rs_replicas(&self.rss[t]) != want {
                self.scale_and_record(t, want);
            }
            return;
        }
        if let Some(n) = self.new_idx
            && self.saturated(n)
        {
            for o in self.active(&self.old_indices()) {
                self.scale_and_record(o, 0);
            }
            return;
        }
        if !is_rolling(self.d) {
            return;
        }
        let mut all = active;
        let total = self.sum_spec(&all);
        let allowed = if want > 0 {
            want + max_surge(self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let op = match to_add.cmp(&0) {
            Ordering::Greater => {
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rss[*a], &self.rss[*b]);
                    rs_replicas(y)
                        .cmp(&rs_replicas(x))
                        .then_with(|| by_creation(y, x))
                });
                "up"
            }
            Ordering::Less => {
                all.sort_by(|a, b| {
                    let (x, y) = (&self.rss[*a], &self.rss[*b]);
                    rs_replicas(y)
                        .cmp(&rs_replicas(x))
                        .then_with(|| by_creation(x, y))
                });
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for i in &all {
            let rs = &self.rss[*i];
            if to_add != 0 {
                let p = self.proportion(rs, to_add, added);
                sizes.push(rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        for (k, i) in all.iter().enumerate() {
            if k == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale(*i, sizes[k], op);
        }
    }

    fn saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        let want = d_replicas(self.d);
        meta::annotation(&rs.metadata, DESIRED_REPLICAS) == Some(want.to_string().as_str())
            && rs_replicas(rs) == want
            && rs_status(rs).2 == want
    }

    /// `GetProportion`.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// `getReplicaSetFraction`.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let want = d_replicas(self.d);
        if want == 0 {
            return -rs_replicas(rs);
        }
        let max_now = want + max_surge(self.d);
        let mut before: i32 = meta::annotation(&rs.metadata, MAX_REPLICAS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if before == 0 {
            before = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if before == 0 {
                return 0;
            }
        }
        let size = (rs_replicas(rs) as f64 * max_now as f64) / before as f64;
        size.round() as i32 - rs_replicas(rs)
    }

    fn is_scaling_event(&self) -> bool {
        let mut all = self.old_indices();
        all.extend(self.new_idx);
        self.active(&all).iter().any(|i| {
            meta::annotation(&self.rss[*i].metadata, DESIRED_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|v| v != d_replicas(self.d))
        })
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new(&mut self) -> bool {
        let Some(n) = self.new_idx else { return false };
        let want = d_replicas(self.d);
        let cur = rs_replicas(&self.rss[n]);
        if cur == want {
            return false;
        }
        if cur > want {
            return self.scale_and_record(n, want);
        }
        let count = self.new_rs_new_replicas(n);
        self.scale_and_record(n, count)
    }

    /// `reconcileOldReplicaSets`.
    fn reconcile_old(&mut self) -> bool {
        let Some(n) = self.new_idx else { return false };
        let mut olds = self.active(&self.old_indices());
        if self.sum_spec(&olds) == 0 {
            return false;
        }
        let all = self.all_indices();
        let all_pods = self.sum_spec(&all);
        let min_available = d_replicas(self.d) - max_unavailable(self.d);
        let new_unavailable = rs_replicas(&self.rss[n]) - rs_status(&self.rss[n]).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // Unhealthy replicas first.
        olds.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let mut cleaned = 0;
        for i in olds.clone() {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[i];
            let (spec, avail) = (rs_replicas(rs), rs_status(rs).2);
            if spec == 0 || spec == avail {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - avail);
            self.scale_and_record(i, spec - down);
            cleaned += down;
        }
        // Then available ones, keeping minAvailable.
        let available = self.sum_available(&all);
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in olds {
                if scaled >= total {
                    break;
                }
                let spec = rs_replicas(&self.rss[i]);
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale_and_record(i, spec - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all_indices();
        let available = self.sum_available(&all);
        let total = self.sum_spec(&all);
        let actual: i32 = all.iter().map(|i| rs_status(&self.rss[*i]).0).sum();
        let ready: i32 = all.iter().map(|i| rs_status(&self.rss[*i]).1).sum();
        let updated = self.new_idx.map(|n| rs_status(&self.rss[n]).0).unwrap_or(0);
        let mut st = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(actual),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            ..Default::default()
        };
        if available >= d_replicas(self.d) - max_unavailable(self.d) {
            set_condition(
                &mut st,
                new_condition(
                    "Available",
                    "True",
                    REASON_MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    self.now.wall,
                ),
            );
        } else {
            set_condition(
                &mut st,
                new_condition(
                    "Available",
                    "False",
                    REASON_MIN_UNAVAILABLE,
                    "Deployment does not have minimum availability.".into(),
                    self.now.wall,
                ),
            );
        }
        st
    }

    fn complete(&self, st: &DeploymentStatus) -> bool {
        let want = d_replicas(self.d);
        st.updated_replicas == Some(want)
            && st.replicas == Some(want)
            && st.available_replicas == Some(want)
            && st.observed_generation >= self.d.metadata.generation
    }

    /// `syncRolloutStatus`.
    fn sync_rollout_status(&mut self) {
        let mut st = self.calculate_status();
        let deadline = progress_deadline(self.d);
        if deadline.is_none() {
            remove_condition(&mut st, "Progressing");
        }
        let old = self.d.status.clone().unwrap_or_default();
        let cur = get_condition(&self.status, "Progressing").cloned();
        let is_complete = st.replicas == st.updated_replicas
            && cur
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(REASON_NEW_RS_AVAILABLE));
        let new_name = self
            .new_idx
            .map(|n| meta::name(&self.rss[n].metadata).to_owned());
        let dname = meta::name(&self.d.metadata).to_owned();
        let subject = |what: &str| match &new_name {
            Some(n) => format!("ReplicaSet {n:?} {what}"),
            None => format!("Deployment {dname:?} {what}"),
        };
        if let Some(deadline_s) = deadline
            && !is_complete
        {
            let progressing = {
                let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
                let new_old = st.replicas.unwrap_or(0) - st.updated_replicas.unwrap_or(0);
                st.updated_replicas > old.updated_replicas
                    || new_old < old_old
                    || st.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
                    || st.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
            };
            if self.complete(&st) {
                set_condition(
                    &mut st,
                    new_condition(
                        "Progressing",
                        "True",
                        REASON_NEW_RS_AVAILABLE,
                        subject("has successfully progressed."),
                        self.now.wall,
                    ),
                );
            } else if progressing {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    REASON_RS_UPDATED,
                    subject("is progressing."),
                    self.now.wall,
                );
                if let Some(cur) = &cur {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, "Progressing");
                }
                set_condition(&mut st, c);
            } else if let Some(pc) = get_condition(&st, "Progressing").cloned() {
                let timed_out = match pc.reason.as_deref() {
                    Some(REASON_NEW_RS_AVAILABLE) => false,
                    Some(REASON_TIMED_OUT) => true,
                    _ => pc.last_update_time.as_ref().is_some_and(|t| {
                        time::add(t.0, Duration::from_secs(deadline_s.max(0) as u64))
                            < self.now.wall
                    }),
                };
                if timed_out {
                    set_condition(
                        &mut st,
                        new_condition(
                            "Progressing",
                            "False",
                            REASON_TIMED_OUT,
                            subject("has timed out progressing."),
                            self.now.wall,
                        ),
                    );
                }
            }
        }
        // ReplicaSet failures surface on the Deployment.
        let mut order: Vec<usize> = self.new_idx.into_iter().collect();
        order.extend(self.old_indices());
        let failure = order.iter().find_map(|i| {
            self.rss[*i]
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure")
                .cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut st,
                DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut st, "ReplicaFailure"),
        }
        if self.d.status.as_ref() == Some(&st) {
            // Nothing new: requeue for the deadline check if still rolling.
            if let (Some(deadline_s), Some(c)) = (deadline, get_condition(&st, "Progressing"))
                && !self.complete(&st)
                && c.reason.as_deref() != Some(REASON_TIMED_OUT)
                && let Some(t) = &c.last_update_time
            {
                let at = time::add(t.0, Duration::from_secs(deadline_s.max(0) as u64));
                let after = time::since(at, self.now.wall);
                self.actions.push(DeployAction::RequeueAfter(
                    after.max(Duration::from_secs(1)),
                ));
            }
            self.status = st;
            return;
        }
        self.status = st;
        self.actions
            .push(DeployAction::UpdateStatus(Box::new(self.status.clone())));
    }

    /// `syncDeploymentStatus` (scaling and paused syncs).
    fn sync_status_only(&mut self) {
        let st = self.calculate_status();
        if self.d.status.as_ref() != Some(&st) {
            self.status = st;
            self.actions
                .push(DeployAction::UpdateStatus(Box::new(self.status.clone())));
        }
    }

    /// `cleanupDeployment`.
    fn cleanup(&mut self) {
        let Some(limit) = revision_history_limit(self.d) else {
            return;
        };
        let mut olds: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| !meta::is_deleting(&self.rss[*i].metadata))
            .collect();
        let diff = olds.len() as i32 - limit;
        if diff <= 0 {
            return;
        }
        olds.sort_by(|a, b| {
            revision(&self.rss[*a])
                .cmp(&revision(&self.rss[*b]))
                .then_with(|| by_creation(&self.rss[*a], &self.rss[*b]))
        });
        for i in olds.into_iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status(rs).0 != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.actions.push(DeployAction::DeleteReplicaSet {
                name: meta::name(&rs.metadata).to_owned(),
                uid: meta::uid(&rs.metadata).to_owned(),
            });
        }
    }

    /// Recreate: are old pods still there?
    fn old_pods_running(&self, pods: &[&Pod]) -> bool {
        let olds = self.old_indices();
        if olds.iter().map(|i| rs_status(&self.rss[*i]).0).sum::<i32>() > 0 {
            return true;
        }
        let new_uid = self
            .new_idx
            .map(|n| meta::uid(&self.rss[n].metadata).to_owned());
        let uids: Vec<&str> = olds
            .iter()
            .map(|i| meta::uid(&self.rss[*i].metadata))
            .collect();
        pods.iter().any(|p| {
            let Some(r) = meta::controller_of(&p.metadata) else {
                return false;
            };
            Some(&r.uid) != new_uid.as_ref()
                && uids.contains(&r.uid.as_str())
                && !crate::util::pod::is_terminal(p)
        })
    }

    fn finish(mut self) -> Vec<DeployAction> {
        let mut out = Vec::new();
        for i in std::mem::take(&mut self.dirty) {
            out.push(DeployAction::UpdateReplicaSet(Box::new(
                self.rss[i].clone(),
            )));
        }
        // Creation and status writes were queued in order; updates to
        // existing ReplicaSets go first, as Kubernetes makes them first.
        out.extend(std::mem::take(&mut self.actions));
        if let Some(r) = self.revision_to_set.take() {
            out.insert(0, DeployAction::SetRevision(r));
        }
        out.extend(self.events.into_iter().map(DeployAction::Event));
        out
    }
}

fn new_rs_count(want: i32, surge: i32, current: i32, new_replicas: i32) -> i32 {
    let max_total = want + surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(want - new_replicas);
    new_replicas + up
}

/// One `syncDeployment`.
pub fn reconcile(input: &DeployInput<'_>, now: Now) -> Vec<DeployAction> {
    let d = input.deployment;
    let Some(spec) = d.spec.as_ref() else {
        return Vec::new();
    };
    let selector = match LabelSelector::from_meta(Some(&spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            return vec![DeployAction::Event(Event::warning(
                d_ref(d),
                "SelectorParsingFailed",
                format!("invalid selector: {e}"),
            ))];
        }
    };
    if selector.is_everything() {
        let mut out = vec![DeployAction::Event(Event::warning(
            d_ref(d),
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        ))];
        let mut st = d.status.clone().unwrap_or_default();
        if st.observed_generation != d.metadata.generation {
            st.observed_generation = d.metadata.generation;
            out.push(DeployAction::UpdateStatus(Box::new(st)));
        }
        return out;
    }
    let deleting = meta::is_deleting(&d.metadata);
    let owner = Claimant {
        uid: meta::uid(&d.metadata),
        deleting,
        selector: &selector,
    };
    let mut claimed: Vec<ReplicaSet> = Vec::new();
    let mut actions = Vec::new();
    for rs in &input.replica_sets {
        match meta::claim(owner, &rs.metadata) {
            Claim::Owned => claimed.push((*rs).clone()),
            Claim::Adopt => {
                let refs = meta::with_owner(
                    &rs.metadata,
                    meta::controller_ref(&d.metadata, "apps/v1", "Deployment"),
                );
                actions.push(DeployAction::PatchRsOwners {
                    name: meta::name(&rs.metadata).to_owned(),
                    uid: meta::uid(&rs.metadata).to_owned(),
                    owner_references: refs.clone(),
                });
                let mut rs = (*rs).clone();
                rs.metadata.owner_references = Some(refs);
                claimed.push(rs);
            }
            Claim::Release => actions.push(DeployAction::PatchRsOwners {
                name: meta::name(&rs.metadata).to_owned(),
                uid: meta::uid(&rs.metadata).to_owned(),
                owner_references: meta::without_owner(&rs.metadata, meta::uid(&d.metadata)),
            }),
            Claim::Ignore => {}
        }
    }
    claimed.sort_by(by_creation);
    let new_idx = claimed.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &spec.template))
    });
    let mut s = Sync {
        d,
        status: d.status.clone().unwrap_or_default(),
        rss: claimed,
        namespace_rss: input.replica_sets.clone(),
        new_idx,
        dirty: Vec::new(),
        actions,
        events: Vec::new(),
        revision_to_set: None,
        now,
    };
    if deleting {
        s.sync_status_only();
        return s.finish();
    }
    // Paused conditions.
    if progress_deadline(d).is_some() {
        let cond = get_condition(&s.status, "Progressing").cloned();
        let reason = cond.as_ref().and_then(|c| c.reason.clone());
        let changed = if paused(d) && reason.as_deref() != Some(REASON_PAUSED) {
            set_condition(
                &mut s.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    REASON_PAUSED,
                    "Deployment is paused".into(),
                    now.wall,
                ),
            );
            true
        } else if !paused(d) && reason.as_deref() == Some(REASON_PAUSED) {
            set_condition(
                &mut s.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    REASON_RESUMED,
                    "Deployment is resumed".into(),
                    now.wall,
                ),
            );
            true
        } else {
            false
        };
        if changed {
            s.actions
                .push(DeployAction::UpdateStatus(Box::new(s.status.clone())));
            return s.finish();
        }
    }
    s.sync_existing_new();
    if paused(d) {
        s.scale_deployment();
        s.cleanup();
        s.sync_status_only();
        return s.finish();
    }
    if s.is_scaling_event() {
        s.scale_deployment();
        s.sync_status_only();
        return s.finish();
    }
    if is_rolling(d) {
        if s.new_idx.is_none() {
            s.create_new();
            s.actions
                .push(DeployAction::UpdateStatus(Box::new(s.status.clone())));
            return s.finish();
        }
        if s.reconcile_new() || s.reconcile_old() {
            s.sync_rollout_status();
            return s.finish();
        }
        let st = s.calculate_status();
        if s.complete(&st) {
            s.cleanup();
        }
        s.sync_rollout_status();
        s.finish()
    } else {
        // Recreate.
        let mut scaled = false;
        for i in s.active(&s.old_indices()) {
            scaled |= s.scale_and_record(i, 0);
        }
        if scaled || s.old_pods_running(&input.pods) {
            s.sync_rollout_status();
            return s.finish();
        }
        let Some(n) = s.new_idx else {
            s.create_new();
            s.actions
                .push(DeployAction::UpdateStatus(Box::new(s.status.clone())));
            return s.finish();
        };
        let want = d_replicas(d);
        if rs_replicas(&s.rss[n]) != want {
            s.scale_and_record(n, want);
        }
        let st = s.calculate_status();
        if s.complete(&st) {
            s.cleanup();
        }
        s.sync_rollout_status();
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{deployment, meta as fmeta, template};
    use ackemu_kube::api::apps::v1::{
        DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };

    const APP: &[(&str, &str)] = &[("app", "web")];

    /// A ReplicaSet of `d` for `image` as the controller would have made it.
    fn owned_rs(
        d: &Deployment,
        image: &str,
        revision: i64,
        replicas: i32,
        available: i32,
        created_s: u64,
    ) -> ReplicaSet {
        let t = template(APP, image);
        let hash = compute_hash(&crate::util::defaults::pod_template(&t), None);
        let mut t2 = t.clone();
        t2.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", meta::name(&d.metadata));
        let mut m = fmeta("ns", &name);
        m.creation_timestamp = Some(Time(time::wall_at_secs(created_s)));
        m.owner_references = Some(vec![meta::controller_ref(
            &d.metadata,
            "apps/v1",
            "Deployment",
        )]);
        m.labels = t2.metadata.as_ref().unwrap().labels.clone();
        m.annotations = Some(BTreeMap::from([
            (REVISION.to_string(), revision.to_string()),
            (DESIRED_REPLICAS.to_string(), d_replicas(d).to_string()),
            (
                MAX_REPLICAS.to_string(),
                (d_replicas(d) + max_surge(d)).to_string(),
            ),
        ]));
        let mut sel = crate::fixtures::selector(APP);
        sel.match_labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), hash);
        ReplicaSet {
            metadata: m,
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(0),
                selector: sel,
                template: Some(t2),
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                fully_labeled_replicas: Some(replicas),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    fn surge_unavail(d: &mut Deployment, surge: i32, unavail: i32) {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(unavail)),
            }),
        });
    }

    fn scale_events(a: &[DeployAction]) -> Vec<String> {
        a.iter()
            .filter_map(|x| match x {
                DeployAction::Event(e) if e.reason == "ScalingReplicaSet" => {
                    Some(e.message.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn updated(a: &[DeployAction]) -> Vec<(String, i32)> {
        a.iter()
            .filter_map(|x| match x {
                DeployAction::UpdateReplicaSet(rs) => {
                    Some((meta::name(&rs.metadata).to_owned(), rs_replicas(rs)))
                }
                _ => None,
            })
            .collect()
    }

    fn status(a: &[DeployAction]) -> Option<DeploymentStatus> {
        a.iter().rev().find_map(|x| match x {
            DeployAction::UpdateStatus(s) => Some((**s).clone()),
            _ => None,
        })
    }

    fn cond<'a>(st: &'a DeploymentStatus, t: &str) -> (&'a str, &'a str) {
        let c = get_condition(st, t).unwrap();
        (c.status.as_str(), c.reason.as_deref().unwrap_or(""))
    }

    #[test]
    fn fenceposts_table() {
        let mut d = deployment("ns", "web", 10, APP, "app:1");
        assert_eq!(
            fenceposts(&d),
            (3, 2),
            "25% rounds surge up, unavailable down"
        );
        surge_unavail(&mut d, 0, 0);
        assert_eq!(fenceposts(&d), (0, 1), "never both zero");
        d.spec.as_mut().unwrap().replicas = Some(1);
        surge_unavail(&mut d, 0, 5);
        assert_eq!(max_unavailable(&d), 1, "capped at replicas");
    }

    #[test]
    fn first_sync_creates_the_new_replica_set() {
        let d = deployment("ns", "web", 3, APP, "app:1");
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![],
                pods: vec![],
            },
            Now::at_secs(0),
        );
        let rs = out
            .iter()
            .find_map(|a| match a {
                DeployAction::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .unwrap();
        let hash = compute_hash(
            &crate::util::defaults::pod_template(&d.spec.as_ref().unwrap().template),
            None,
        );
        assert_eq!(meta::name(&rs.metadata), format!("web-{hash}"));
        assert_eq!(rs_replicas(rs), 3);
        assert_eq!(
            rs.spec
                .as_ref()
                .unwrap()
                .selector
                .match_labels
                .as_ref()
                .unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("1", "3", "4")
        );
        assert!(out.contains(&DeployAction::SetRevision("1".into())));
        assert_eq!(
            scale_events(&out),
            vec![format!("Scaled up replica set web-{hash} from 0 to 3")]
        );
        let st = status(&out).unwrap();
        assert_eq!(cond(&st, "Progressing"), ("True", REASON_NEW_RS_CREATED));
    }

    #[test]
    fn rolling_update_respects_surge_and_unavailable() {
        let mut d = deployment("ns", "web", 4, APP, "app:2");
        surge_unavail(&mut d, 1, 1);
        let old = owned_rs(
            &deployment("ns", "web", 4, APP, "app:1"),
            "app:1",
            1,
            4,
            4,
            0,
        );
        // Step 1: the new ReplicaSet starts with maxSurge pods.
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old],
                pods: vec![],
            },
            Now::at_secs(10),
        );
        let new = out
            .iter()
            .find_map(|a| match a {
                DeployAction::CreateReplicaSet(rs) => Some((**rs).clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(rs_replicas(&new), 1);
        assert_eq!(revision(&new), 2);
        // Step 2: new has 1 unavailable pod; one old pod may go (4+1-3-1).
        let mut new = new;
        new.metadata.uid = Some("uid-new".into());
        new.metadata.creation_timestamp = Some(Time(time::wall_at_secs(10)));
        new.status = Some(ReplicaSetStatus {
            replicas: 1,
            ..Default::default()
        });
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old, &new],
                pods: vec![],
            },
            Now::at_secs(11),
        );
        assert_eq!(
            updated(&out),
            vec![(meta::name(&old.metadata).to_owned(), 3)]
        );
        assert_eq!(
            scale_events(&out),
            vec![format!(
                "Scaled down replica set {} from 4 to 3",
                meta::name(&old.metadata)
            )]
        );
        // Step 3: with the old one at 3 (3 available) the new one grows to 2.
        let mut old3 = old.clone();
        set_rs_replicas(&mut old3, 3);
        old3.status.as_mut().unwrap().available_replicas = Some(3);
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old3, &new],
                pods: vec![],
            },
            Now::at_secs(12),
        );
        assert_eq!(
            updated(&out),
            vec![(meta::name(&new.metadata).to_owned(), 2)]
        );
        let st = status(&out).unwrap();
        assert_eq!(cond(&st, "Available"), ("True", REASON_MIN_AVAILABLE));
    }

    #[test]
    fn unavailable_old_pods_are_scaled_down_first() {
        let mut d = deployment("ns", "web", 4, APP, "app:2");
        surge_unavail(&mut d, 0, 1);
        let old = owned_rs(
            &deployment("ns", "web", 4, APP, "app:1"),
            "app:1",
            1,
            4,
            1,
            0,
        );
        let new = owned_rs(&d, "app:2", 2, 0, 0, 10);
        // maxScaledDown = 4 - 3 - 0 = 1, taken from the 3 unhealthy old pods.
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old, &new],
                pods: vec![],
            },
            Now::at_secs(11),
        );
        assert_eq!(
            updated(&out),
            vec![(meta::name(&old.metadata).to_owned(), 3)]
        );
    }

    #[test]
    fn rollback_by_template_reuses_the_old_replica_set() {
        // Revision 1 ran app:1, revision 2 runs app:2; the user sets app:1 again.
        let d1 = deployment("ns", "web", 2, APP, "app:1");
        let rev1 = owned_rs(&d1, "app:1", 1, 0, 0, 0);
        let rev2 = owned_rs(&d1, "app:2", 2, 2, 2, 10);
        let out = reconcile(
            &DeployInput {
                deployment: &d1,
                replica_sets: vec![&rev1, &rev2],
                pods: vec![],
            },
            Now::at_secs(20),
        );
        let up = out
            .iter()
            .find_map(|a| match a {
                DeployAction::UpdateReplicaSet(rs)
                    if meta::name(&rs.metadata) == meta::name(&rev1.metadata) =>
                {
                    Some(rs)
                }
                _ => None,
            })
            .unwrap();
        let a = up.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a[REVISION].as_str(), a[REVISION_HISTORY].as_str()),
            ("3", "1")
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, DeployAction::CreateReplicaSet(_))),
            "no new ReplicaSet for a known template"
        );
    }

    #[test]
    fn proportional_scaling_mid_rollout() {
        // 10 replicas, surge 3: old 8 + new 5 = 13. Scaled to 15 (surge 4): 6 more to share.
        let mut d = deployment("ns", "web", 10, APP, "app:2");
        let old = owned_rs(&d, "app:1", 1, 8, 8, 0);
        let new = owned_rs(&d, "app:2", 2, 5, 0, 10);
        d.spec.as_mut().unwrap().replicas = Some(15);
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old, &new],
                pods: vec![],
            },
            Now::at_secs(20),
        );
        let mut got = updated(&out);
        got.sort();
        let mut want = vec![
            (meta::name(&old.metadata).to_owned(), 12),
            (meta::name(&new.metadata).to_owned(), 7),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn complete_and_timed_out_conditions() {
        let d = deployment("ns", "web", 2, APP, "app:1");
        let rs = owned_rs(&d, "app:1", 1, 2, 2, 0);
        let mut d2 = d.clone();
        d2.metadata.annotations = Some(BTreeMap::from([(REVISION.to_string(), "1".to_string())]));
        let out = reconcile(
            &DeployInput {
                deployment: &d2,
                replica_sets: vec![&rs],
                pods: vec![],
            },
            Now::at_secs(5),
        );
        let st = status(&out).unwrap();
        assert_eq!(cond(&st, "Progressing"), ("True", REASON_NEW_RS_AVAILABLE));
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.available_replicas,
                st.unavailable_replicas
            ),
            (Some(2), Some(2), Some(2), Some(0))
        );

        // Stuck: no pod becomes available for longer than the deadline.
        let mut stuck = owned_rs(&d, "app:1", 1, 2, 0, 0);
        stuck.status.as_mut().unwrap().ready_replicas = Some(0);
        let mut d3 = d2.clone();
        let mut st0 = DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(2),
            updated_replicas: Some(2),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(2),
            ..Default::default()
        };
        set_condition(
            &mut st0,
            new_condition(
                "Progressing",
                "True",
                REASON_RS_UPDATED,
                "x".into(),
                time::wall_at_secs(0),
            ),
        );
        d3.status = Some(st0);
        let out = reconcile(
            &DeployInput {
                deployment: &d3,
                replica_sets: vec![&stuck],
                pods: vec![],
            },
            Now::at_secs(300),
        );
        assert!(
            out.iter()
                .any(|a| matches!(a, DeployAction::UpdateStatus(_))),
            "Available=False is new"
        );
        let out = reconcile(
            &DeployInput {
                deployment: &d3,
                replica_sets: vec![&stuck],
                pods: vec![],
            },
            Now::at_secs(601),
        );
        let st = status(&out).unwrap();
        assert_eq!(cond(&st, "Progressing"), ("False", REASON_TIMED_OUT));
        assert_eq!(
            get_condition(&st, "Progressing")
                .unwrap()
                .message
                .as_deref(),
            Some(
                format!(
                    "ReplicaSet {:?} has timed out progressing.",
                    meta::name(&stuck.metadata)
                )
                .as_str()
            )
        );
    }

    #[test]
    fn history_cleanup_keeps_the_limit() {
        let mut d = deployment("ns", "web", 1, APP, "app:4");
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        d.metadata.annotations = Some(BTreeMap::from([(REVISION.to_string(), "4".to_string())]));
        let r1 = owned_rs(&d, "app:1", 1, 0, 0, 0);
        let r2 = owned_rs(&d, "app:2", 2, 0, 0, 1);
        let r3 = owned_rs(&d, "app:3", 3, 0, 0, 2);
        let r4 = owned_rs(&d, "app:4", 4, 1, 1, 3);
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&r1, &r2, &r3, &r4],
                pods: vec![],
            },
            Now::at_secs(10),
        );
        let deleted: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                DeployAction::DeleteReplicaSet { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            vec![meta::name(&r1.metadata), meta::name(&r2.metadata)]
        );
    }

    #[test]
    fn hash_collision_bumps_collision_count() {
        let d = deployment("ns", "web", 1, APP, "app:1");
        let hash = compute_hash(
            &crate::util::defaults::pod_template(&d.spec.as_ref().unwrap().template),
            None,
        );
        // Someone else's ReplicaSet squats on the name, matching our selector.
        let mut squat = owned_rs(&d, "other", 1, 0, 0, 0);
        squat.metadata.name = Some(format!("web-{hash}"));
        squat.metadata.owner_references = None;
        squat.metadata.labels = Some(crate::fixtures::labels(&[("app", "nope")]));
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&squat],
                pods: vec![],
            },
            Now::at_secs(0),
        );
        assert_eq!(status(&out).unwrap().collision_count, Some(1));
        assert!(
            !out.iter()
                .any(|a| matches!(a, DeployAction::CreateReplicaSet(_)))
        );
        let mut d2 = d.clone();
        d2.status = Some(DeploymentStatus {
            collision_count: Some(1),
            ..Default::default()
        });
        let out = reconcile(
            &DeployInput {
                deployment: &d2,
                replica_sets: vec![&squat],
                pods: vec![],
            },
            Now::at_secs(1),
        );
        let rs = out
            .iter()
            .find_map(|a| match a {
                DeployAction::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .unwrap();
        assert_ne!(meta::name(&rs.metadata), format!("web-{hash}"));
    }

    #[test]
    fn recreate_waits_for_old_pods() {
        let mut d = deployment("ns", "web", 2, APP, "app:2");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        let old = owned_rs(&d, "app:1", 1, 2, 2, 0);
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old],
                pods: vec![],
            },
            Now::at_secs(1),
        );
        assert_eq!(
            updated(&out),
            vec![(meta::name(&old.metadata).to_owned(), 0)]
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, DeployAction::CreateReplicaSet(_)))
        );
        // Scaled to 0 but a pod is still terminating.
        let mut old0 = old.clone();
        set_rs_replicas(&mut old0, 0);
        old0.status.as_mut().unwrap().replicas = 0;
        let p = crate::fixtures::pod("ns", "old-pod")
            .labels(APP)
            .owner("ReplicaSet", meta::name(&old.metadata))
            .ready(0)
            .build();
        let mut p = p;
        p.metadata.owner_references.as_mut().unwrap()[0].uid = meta::uid(&old.metadata).to_owned();
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old0],
                pods: vec![&p],
            },
            Now::at_secs(2),
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, DeployAction::CreateReplicaSet(_)))
        );
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old0],
                pods: vec![],
            },
            Now::at_secs(3),
        );
        let rs = out
            .iter()
            .find_map(|a| match a {
                DeployAction::CreateReplicaSet(rs) => Some(rs),
                _ => None,
            })
            .unwrap();
        assert_eq!(rs_replicas(rs), 2);
    }

    #[test]
    fn paused_only_scales() {
        let mut d = deployment("ns", "web", 3, APP, "app:2");
        d.spec.as_mut().unwrap().paused = Some(true);
        let old = owned_rs(
            &deployment("ns", "web", 2, APP, "app:1"),
            "app:1",
            1,
            2,
            2,
            0,
        );
        let out = reconcile(
            &DeployInput {
                deployment: &d,
                replica_sets: vec![&old],
                pods: vec![],
            },
            Now::at_secs(1),
        );
        assert_eq!(
            cond(&status(&out).unwrap(), "Progressing"),
            ("Unknown", REASON_PAUSED)
        );
        let mut d2 = d.clone();
        d2.status = status(&out);
        let out = reconcile(
            &DeployInput {
                deployment: &d2,
                replica_sets: vec![&old],
                pods: vec![],
            },
            Now::at_secs(2),
        );
        assert!(
            !out.iter()
                .any(|a| matches!(a, DeployAction::CreateReplicaSet(_))),
            "no rollout while paused"
        );
        assert_eq!(
            updated(&out),
            vec![(meta::name(&old.metadata).to_owned(), 3)],
            "but scaling applies"
        );
    }
}
