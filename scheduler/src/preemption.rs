//! PostFilter: the DefaultPreemption plugin (Kubernetes
//! `framework/preemption/preemption.go` and
//! `plugins/defaultpreemption/default_preemption.go`), pure. After a
//! [`FitError`] it decides whether evicting lower-priority pods from one
//! node lets the pod fit there, and which pods (the victims, after
//! reprieving every pod that can stay). When no node can help it yields the
//! `preemption: 0/N nodes are available: …` text kube-scheduler 1.33 appends
//! to the FailedScheduling message.
//!
//! Unlike kube-scheduler, PodDisruptionBudgets are not weighed (the
//! scheduler does not watch them), so the first selection criterion
//! (fewest PDB violations) is a tie everywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cycle::{Algorithm, FitError};
use crate::framework::{Code, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The reason of nodes preemption cannot help (filters said
/// UnschedulableAndUnresolvable).
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The reason of nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NOT_ELIGIBLE_POLICY: &str = "not eligible due to preemptionPolicy=Never.";
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// A node where evicting `victims` lets the pod fit.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
}

/// What PostFilter decided.
#[derive(Clone, Debug)]
pub enum PostFilter {
    /// Evict the victims and nominate the node for the pod.
    Preempt(Candidate),
    /// No preemption: the `preemption: …` message (the FitError's
    /// `post_filter_msg`).
    NotPossible(String),
}

fn preemption_policy_never(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
}

fn nominated_node(pod: &PodInfo) -> Option<&str> {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// `corev1helpers.MoreImportantPod`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    let start = |p: &PodInfo| {
        p.pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_millisecond())
            .unwrap_or(i64::MAX)
    };
    b.priority
        .cmp(&a.priority)
        .then_with(|| start(a).cmp(&start(b)))
}

/// Runs DefaultPreemption for `pod` after `fit` on `snapshot`.
pub fn post_filter(
    alg: &Algorithm,
    snapshot: &Snapshot,
    pod: &PodInfo,
    fit: &FitError,
) -> PostFilter {
    let statuses: BTreeMap<&str, &Status> = fit
        .node_to_status
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let code_of = |node: &str| -> Code {
        if let Some(c) = fit.pre_filter_code {
            return c;
        }
        statuses
            .get(node)
            .map(|s| s.code)
            .unwrap_or(Code::UnschedulableAndUnresolvable)
    };

    // PodEligibleToPreemptOthers.
    if preemption_policy_never(pod) {
        return PostFilter::NotPossible(format!("preemption: {NOT_ELIGIBLE_POLICY}"));
    }
    if let Some(nom) = nominated_node(pod)
        && code_of(nom) != Code::UnschedulableAndUnresolvable
        && let Some(ni) = snapshot.get(nom)
        && ni
            .pods
            .iter()
            .any(|p| p.priority < pod.priority && p.terminating)
    {
        return PostFilter::NotPossible(format!("preemption: {NOT_ELIGIBLE_TERMINATING}"));
    }

    let mut reasons: Vec<(String, Status)> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let prepared = alg.pre_filter(pod, snapshot);
    for ni in snapshot.nodes() {
        if code_of(&ni.name) == Code::UnschedulableAndUnresolvable {
            reasons.push((
                ni.name.clone(),
                Status::new(Code::UnschedulableAndUnresolvable, NOT_HELPFUL),
            ));
            continue;
        }
        match select_victims(alg, prepared.as_ref(), pod, ni) {
            Ok(victims) => candidates.push(Candidate {
                node: ni.name.clone(),
                victims,
            }),
            Err(s) => reasons.push((ni.name.clone(), s)),
        }
    }
    if let Some(best) = pick_one(candidates) {
        return PostFilter::Preempt(best);
    }
    let inner = FitError {
        pod: pod.key.clone(),
        num_all_nodes: snapshot.num_nodes(),
        pre_filter_msg: None,
        pre_filter_code: None,
        post_filter_msg: None,
        node_to_status: reasons,
        unschedulable_plugins: Default::default(),
    };
    PostFilter::NotPossible(format!("preemption: {inner}"))
}

/// `SelectVictimsOnNode`: remove every lower-priority pod; if the pod then
/// fits, add them back most important first while it still fits.
fn select_victims(
    alg: &Algorithm,
    prepared: Result<&(crate::framework::CycleState, Vec<bool>), &Status>,
    pod: &PodInfo,
    node: &Arc<NodeInfo>,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::new(Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    let (state, enabled) = prepared.map_err(|s| s.clone())?;
    let mut ni = (**node).clone();
    for p in &potential {
        ni.remove_pod(&p.key);
    }
    let s = alg.filter_node(state, enabled, pod, &ni);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for p in potential {
        ni.add_pod(p.clone());
        if !alg.filter_node(state, enabled, pod, &ni).is_success() {
            ni.remove_pod(&p.key);
            victims.push(p);
        }
    }
    Ok(victims)
}

/// `pickOneNodeForPreemption`: the lowest highest-priority victim, then
/// the smallest sum of priorities, then the fewest victims, then the latest
/// start among the most important victims, then the first node.
fn pick_one(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    if candidates.is_empty() {
        return None;
    }
    let key = |c: &Candidate| {
        let highest = c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
        // Offset each priority so negative priorities still add up to more.
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
            .sum();
        let earliest_start = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .filter_map(|v| {
                v.pod
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0.as_millisecond())
            })
            .min()
            .unwrap_or(i64::MAX);
        (
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest_start),
        )
    };
    let mut best = 0;
    for i in 1..candidates.len() {
        if key(&candidates[i]) < key(&candidates[best]) {
            best = i;
        }
    }
    Some(candidates.swap_remove(best))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::{Profile, ScheduleError};
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::Workloads;
    use crate::trace::Trace;
    use ackemu_kube::api::core::v1::{Node, Pod};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn with_priority(mut p: Pod, prio: i32) -> Pod {
        p.spec.get_or_insert_with(Default::default).priority = Some(prio);
        p
    }

    fn run(nodes: Vec<Node>, pods: Vec<Pod>, pod: Pod) -> (String, Option<Candidate>) {
        let snap = Snapshot::from_objects(nodes, pods, Workloads::default());
        let mut alg = Algorithm::new(Profile::default_profile());
        let pi = PodInfo::new(pod);
        let fit = match alg.schedule_pod(
            &snap,
            &pi,
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut Trace::disabled(),
        ) {
            Err(ScheduleError::Fit(f)) => f,
            other => panic!("expected a fit error, got {other:?}"),
        };
        match post_filter(&alg, &snap, &pi, &fit) {
            PostFilter::Preempt(c) => (fit.to_string(), Some(c)),
            PostFilter::NotPossible(m) => {
                let mut f = fit.clone();
                f.post_filter_msg = Some(m);
                (f.to_string(), None)
            }
        }
    }

    fn big(name: &str) -> PodBuilder {
        PodBuilder::new("default", name).container_requests(&[("cpu", "2")])
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let nodes = || {
            vec![
                NodeBuilder::new("n1").cpu("1").build(),
                NodeBuilder::new("n2").cpu("1").build(),
                NodeBuilder::new("n3").cpu("1").unschedulable().build(),
            ]
        };
        let (msg, c) = run(nodes(), vec![], big("p").build());
        assert!(c.is_none());
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );

        let mut never = big("p").build();
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let (msg, _) = run(nodes(), vec![], never);
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );

        // Lower-priority pods exist but evicting them is not enough.
        let low = with_priority(
            PodBuilder::new("default", "low")
                .container_requests(&[("cpu", "500m")])
                .node_name("n1")
                .build(),
            0,
        );
        let (msg, c) = run(
            vec![NodeBuilder::new("n1").cpu("1").build()],
            vec![low],
            with_priority(big("p").build(), 100),
        );
        assert!(c.is_none());
        assert_eq!(
            msg,
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn victims_are_the_fewest_least_important_pods() {
        let on = |name: &str, node: &str, cpu: &str, prio: i32| {
            with_priority(
                PodBuilder::new("default", name)
                    .container_requests(&[("cpu", cpu)])
                    .node_name(node)
                    .build(),
                prio,
            )
        };
        let nodes = vec![
            NodeBuilder::new("n1").cpu("2").build(),
            NodeBuilder::new("n2").cpu("2").build(),
        ];
        let pods = vec![
            // n1: evicting one priority-10 pod suffices, the other stays.
            on("a", "n1", "1", 10),
            on("b", "n1", "1", 10),
            // n2: only priority-50 pods.
            on("c", "n2", "1", 50),
            on("d", "n2", "1", 50),
            // Higher than the preemptor: never a victim.
        ];
        let preemptor = with_priority(
            PodBuilder::new("default", "p")
                .container_requests(&[("cpu", "1")])
                .build(),
            100,
        );
        let (msg, c) = run(nodes, pods, preemptor);
        let c = c.expect("a candidate");
        assert_eq!(c.node, "n1");
        assert_eq!(c.victims.len(), 1);
        assert_eq!(msg, "0/2 nodes are available: 2 Insufficient cpu.");
    }
}
