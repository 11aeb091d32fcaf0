//! One scheduling cycle for one pod (Kubernetes `schedule_one.go`
//! `schedulePod`): PreFilter, Filter over the nodes (stopping once enough
//! feasible nodes are found, resuming where the last cycle stopped), the
//! `0/N nodes are available: …` error when none fits, PreScore, Score,
//! NormalizeScore, weights, and the choice among the best nodes with a
//! caller-provided RNG. Pure: the snapshot, the pod and the RNG go in, a
//! decision and a trace come out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use rand::{Rng, RngCore};

use crate::framework::{Code, CycleState, FilterPlugin, ScorePlugin, Status};
use crate::legacy;
use crate::plugins::balanced_allocation::BalancedAllocation;
use crate::plugins::image_locality::ImageLocality;
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_fit::NodeResourcesFit;
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::pod_topology_spread::PodTopologySpread;
use crate::plugins::taint_toleration::TaintToleration;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::{Line, Trace};

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Which log lines the cycle writes for scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceStyle {
    /// kube-scheduler 1.33's structured lines.
    Structured,
    /// kube-scheduler 1.11's `Host … => Score …` (with [`crate::legacy`]).
    Legacy,
}

/// A score plugin and its weight.
#[derive(Clone)]
pub struct WeightedScorer {
    pub plugin: Arc<dyn ScorePlugin>,
    pub weight: i64,
}

/// The plugins and settings of one scheduler profile.
#[derive(Clone)]
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    pub scorers: Vec<WeightedScorer>,
    /// Percentage of nodes to find feasible before scoring; 0 = adaptive
    /// (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    pub trace_style: TraceStyle,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("scheduler_name", &self.scheduler_name)
            .field(
                "filters",
                &self.filters.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "scorers",
                &self
                    .scorers
                    .iter()
                    .map(|s| (s.plugin.name(), s.weight))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A profile could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "unknown priority {0:?}: expected one of LeastRequestedPriority, BalancedResourceAllocation, SelectorSpreadPriority, NodePreferAvoidPodsPriority, NodeAffinityPriority, TaintTolerationPriority"
    )]
    UnknownPriority(String),
    #[error("priority {name:?} has weight {weight}, expected a positive weight")]
    BadWeight { name: String, weight: i64 },
}

fn default_filters() -> Vec<Arc<dyn FilterPlugin>> {
    vec![
        Arc::new(NodeUnschedulable),
        Arc::new(NodeName),
        Arc::new(TaintToleration::default()),
        Arc::new(NodeAffinity::default()),
        Arc::new(NodePorts),
        Arc::new(NodeResourcesFit::default()),
    ]
}

impl Profile {
    /// The 1.33 default profile: filters in their default order, and scores
    /// TaintToleration 3, NodeAffinity 2, NodeResourcesFit (LeastAllocated)
    /// 1, PodTopologySpread 2, NodeResourcesBalancedAllocation 1,
    /// ImageLocality 1.
    pub fn default_profile() -> Profile {
        let w = |plugin: Arc<dyn ScorePlugin>, weight| WeightedScorer { plugin, weight };
        Profile {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            filters: default_filters(),
            scorers: vec![
                w(Arc::new(TaintToleration::default()), 3),
                w(Arc::new(NodeAffinity::default()), 2),
                w(Arc::new(NodeResourcesFit::default()), 1),
                w(Arc::new(PodTopologySpread::default()), 2),
                w(Arc::new(BalancedAllocation::default()), 1),
                w(Arc::new(ImageLocality), 1),
            ],
            percentage_of_nodes_to_score: 0,
            trace_style: TraceStyle::Structured,
        }
    }

    /// A 1.11 `--policy-config-file`-style profile: the default filters and
    /// the named priority functions with their weights, 1.11 log lines.
    pub fn legacy_policy(priorities: &[(&str, i64)]) -> Result<Profile, ProfileError> {
        let mut scorers = Vec::new();
        for &(name, weight) in priorities {
            if weight <= 0 {
                return Err(ProfileError::BadWeight {
                    name: name.into(),
                    weight,
                });
            }
            let plugin =
                legacy::priority(name).ok_or_else(|| ProfileError::UnknownPriority(name.into()))?;
            scorers.push(WeightedScorer { plugin, weight });
        }
        Ok(Profile {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            filters: default_filters(),
            scorers,
            percentage_of_nodes_to_score: 0,
            trace_style: TraceStyle::Legacy,
        })
    }
}

/// No node fits the pod (`framework.FitError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub pod: String,
    pub num_all_nodes: usize,
    /// Set when a PreFilter plugin rejected the pod outright.
    pub pre_filter_msg: Option<String>,
    /// The code of that PreFilter rejection (it applies to every node).
    pub pre_filter_code: Option<Code>,
    /// What PostFilter (preemption) said, appended after the filter reasons
    /// (`Diagnosis.PostFilterMsg`): `preemption: …` when it found no
    /// candidate.
    pub post_filter_msg: Option<String>,
    /// The status of every node that was filtered out.
    pub node_to_status: Vec<(String, Status)>,
    /// The plugins that rejected a node (the queue requeues on their events).
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

impl FitError {
    /// `"<count> <reason>"` for every distinct reason, sorted as strings.
    pub fn reasons_histogram(&self) -> Vec<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, s) in &self.node_to_status {
            for r in &s.reasons {
                *counts.entry(r.as_str()).or_default() += 1;
            }
        }
        let mut out: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        out.sort();
        out
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter_msg {
            write!(f, " {msg}.")?;
        } else {
            let h = self.reasons_histogram();
            if !h.is_empty() {
                write!(f, " {}.", h.join(", "))?;
            }
        }
        if let Some(msg) = &self.post_filter_msg {
            write!(f, " {msg}")?;
        }
        Ok(())
    }
}

/// Why a cycle produced no node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    #[error("{0}")]
    Fit(FitError),
    /// A plugin failed (not a rejection): retried after backoff.
    #[error("running {plugin:?} {point} plugin: {message}")]
    Plugin {
        plugin: &'static str,
        point: &'static str,
        message: String,
    },
}

/// The scores of one node: each plugin's weighted score and the total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeScores {
    pub name: String,
    pub scores: Vec<(&'static str, i64)>,
    pub total: i64,
}

/// A node was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    pub suggested_host: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
    /// Empty when a single node was feasible (nothing to rank).
    pub scores: Vec<NodeScores>,
}

/// The scheduling algorithm of one profile, with the node index the next
/// cycle starts filtering at.
#[derive(Clone, Debug)]
pub struct Algorithm {
    profile: Profile,
    next_start_node_index: usize,
}

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`).
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let n = num_all_nodes * pct / 100;
    n.max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl Algorithm {
    pub fn new(profile: Profile) -> Algorithm {
        Algorithm {
            profile,
            next_start_node_index: 0,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Finds a node for `pod` in `snapshot`.
    pub fn schedule_pod(
        &mut self,
        snapshot: &Snapshot,
        pod: &PodInfo,
        rng: &mut dyn RngCore,
        trace: &mut Trace,
    ) -> Result<ScheduleResult, ScheduleError> {
        let all = snapshot.nodes();
        if all.is_empty() {
            return Err(ScheduleError::NoNodesAvailable);
        }
        let mut state = CycleState::new();

        // PreFilter.
        let mut filter_enabled = Vec::with_capacity(self.profile.filters.len());
        for f in &self.profile.filters {
            let s = f.pre_filter(&mut state, pod, snapshot);
            match s.code {
                Code::Success => filter_enabled.push(true),
                Code::Skip => filter_enabled.push(false),
                Code::Error => {
                    return Err(ScheduleError::Plugin {
                        plugin: f.name(),
                        point: "PreFilter",
                        message: s.message(),
                    });
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    return Err(ScheduleError::Fit(FitError {
                        pod: pod.key.clone(),
                        num_all_nodes: all.len(),
                        pre_filter_msg: Some(s.message()),
                        pre_filter_code: Some(s.code),
                        post_filter_msg: None,
                        node_to_status: Vec::new(),
                        unschedulable_plugins: [f.name()].into(),
                    }));
                }
            }
        }

        // Filter, from where the last cycle stopped.
        let n = all.len();
        let to_find = if self.profile.scorers.is_empty() {
            1
        } else {
            num_feasible_nodes_to_find(self.profile.percentage_of_nodes_to_score, n)
        };
        let start = self.next_start_node_index % n;
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
        let mut failed: Vec<(String, Status)> = Vec::new();
        let mut plugins = BTreeSet::new();
        for i in 0..n {
            if feasible.len() >= to_find {
                break;
            }
            let node = &all[(start + i) % n];
            let s = self.run_filters(&state, pod, node, &filter_enabled, trace);
            match s.code {
                Code::Success => feasible.push(node.clone()),
                Code::Error => {
                    self.next_start_node_index = (start + feasible.len() + failed.len()) % n;
                    return Err(ScheduleError::Plugin {
                        plugin: s.plugin,
                        point: "Filter",
                        message: s.message(),
                    });
                }
                _ => {
                    plugins.insert(s.plugin);
                    failed.push((node.name.clone(), s));
                }
            }
        }
        let processed = feasible.len() + failed.len();
        self.next_start_node_index = (start + processed) % n;

        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                pod: pod.key.clone(),
                num_all_nodes: n,
                pre_filter_msg: None,
                pre_filter_code: None,
                post_filter_msg: None,
                node_to_status: failed,
                unschedulable_plugins: plugins,
            }));
        }
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                suggested_host: feasible[0].name.clone(),
                evaluated_nodes: 1 + failed.len(),
                feasible_nodes: 1,
                scores: Vec::new(),
            });
        }

        let scores = self.prioritize(&mut state, snapshot, pod, &feasible, trace)?;
        let host = select_host(&scores, rng);
        Ok(ScheduleResult {
            suggested_host: scores[host].name.clone(),
            evaluated_nodes: feasible.len() + failed.len(),
            feasible_nodes: feasible.len(),
            scores,
        })
    }

    /// PreFilter for `pod` outside a cycle (preemption's dry runs): the
    /// state and which filters run, or the rejecting status.
    pub fn pre_filter(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<(CycleState, Vec<bool>), Status> {
        let mut state = CycleState::new();
        let mut enabled = Vec::with_capacity(self.profile.filters.len());
        for f in &self.profile.filters {
            let mut s = f.pre_filter(&mut state, pod, snapshot);
            s.plugin = f.name();
            match s.code {
                Code::Success => enabled.push(true),
                Code::Skip => enabled.push(false),
                _ => return Err(s),
            }
        }
        Ok((state, enabled))
    }

    /// Every enabled filter on one node, stopping at the first rejection.
    pub fn filter_node(
        &self,
        state: &CycleState,
        enabled: &[bool],
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_filters(state, pod, node, enabled, &mut Trace::disabled())
    }

    fn run_filters(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        enabled: &[bool],
        trace: &mut Trace,
    ) -> Status {
        for (f, _) in self
            .profile
            .filters
            .iter()
            .zip(enabled)
            .filter(|(_, e)| **e)
        {
            let mut s = f.filter(state, pod, node);
            s.plugin = f.name();
            if trace.is_enabled() {
                let mut l = Line::msg("Filter plugin result for pod")
                    .s("pod", &pod.key)
                    .s("node", &node.name)
                    .s("plugin", f.name())
                    .s("status", s.code.as_str());
                if !s.reasons.is_empty() {
                    l = l.s("reason", &s.message());
                }
                trace.push(10, l.build());
            }
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    fn prioritize(
        &self,
        state: &mut CycleState,
        snapshot: &Snapshot,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        trace: &mut Trace,
    ) -> Result<Vec<NodeScores>, ScheduleError> {
        let mut active = Vec::new();
        for ws in &self.profile.scorers {
            let s = ws.plugin.pre_score(state, pod, snapshot, nodes);
            match s.code {
                Code::Success => active.push(ws),
                Code::Skip => {}
                _ => {
                    return Err(ScheduleError::Plugin {
                        plugin: ws.plugin.name(),
                        point: "PreScore",
                        message: s.message(),
                    });
                }
            }
        }
        let mut result: Vec<NodeScores> = nodes
            .iter()
            .map(|n| NodeScores {
                name: n.name.clone(),
                scores: Vec::with_capacity(active.len()),
                total: 0,
            })
            .collect();
        let mut scores = vec![0i64; nodes.len()];
        for ws in active {
            let pl = &ws.plugin;
            for (i, n) in nodes.iter().enumerate() {
                scores[i] = pl.score(state, pod, n, snapshot, trace).map_err(|s| {
                    ScheduleError::Plugin {
                        plugin: pl.name(),
                        point: "Score",
                        message: s.message(),
                    }
                })?;
            }
            let s = pl.normalize(state, pod, nodes, &mut scores, trace);
            if !s.is_success() {
                return Err(ScheduleError::Plugin {
                    plugin: pl.name(),
                    point: "NormalizeScore",
                    message: s.message(),
                });
            }
            let max = pl.max_score();
            for (i, r) in result.iter_mut().enumerate() {
                if !(0..=max).contains(&scores[i]) {
                    return Err(ScheduleError::Plugin {
                        plugin: pl.name(),
                        point: "Score",
                        message: format!(
                            "plugin {:?} returns an invalid score {}, it should in the range of [0, {max}] after normalizing",
                            pl.name(),
                            scores[i]
                        ),
                    });
                }
                let weighted = scores[i] * ws.weight;
                r.scores.push((pl.name(), weighted));
                r.total += weighted;
            }
        }
        if trace.is_enabled() {
            match self.profile.trace_style {
                TraceStyle::Structured => {
                    for r in &result {
                        for (plugin, score) in &r.scores {
                            trace.push(
                                10,
                                Line::msg("Plugin scored node for pod")
                                    .s("pod", &pod.key)
                                    .s("plugin", plugin)
                                    .s("node", &r.name)
                                    .v("score", score)
                                    .build(),
                            );
                        }
                    }
                    for r in &result {
                        trace.push(
                            10,
                            Line::msg("Calculated node's final score for pod")
                                .s("pod", &pod.key)
                                .s("node", &r.name)
                                .v("score", r.total)
                                .build(),
                        );
                    }
                }
                TraceStyle::Legacy => {
                    for r in &result {
                        trace.push(10, format!("Host {} => Score {}", r.name, r.total));
                    }
                }
            }
        }
        Ok(result)
    }
}

/// The index of a node with the highest total, uniformly among ties
/// (reservoir sampling, as `selectHost`).
fn select_host(scores: &[NodeScores], rng: &mut dyn RngCore) -> usize {
    let mut selected = 0;
    let mut max = scores[0].total;
    let mut ties = 1u64;
    for (i, s) in scores.iter().enumerate().skip(1) {
        if s.total > max {
            max = s.total;
            selected = i;
            ties = 1;
        } else if s.total == max {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                selected = i;
            }
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::Workloads;
    use ackemu_kube::api::core::v1::{Node, Pod};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn snap(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        Snapshot::from_objects(nodes, pods, Workloads::default())
    }

    fn run(s: &Snapshot, pod: Pod) -> Result<ScheduleResult, ScheduleError> {
        let mut alg = Algorithm::new(Profile::default_profile());
        alg.schedule_pod(
            s,
            &PodInfo::new(pod),
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut Trace::disabled(),
        )
    }

    fn fit_message(r: Result<ScheduleResult, ScheduleError>) -> String {
        match r {
            Err(ScheduleError::Fit(e)) => e.to_string(),
            other => format!("not a fit error: {other:?}"),
        }
    }

    #[test]
    fn fit_error_messages_table() {
        let small = || NodeBuilder::new("x").cpu("1").memory("1Gi");
        let cases: Vec<(&str, Vec<Node>, PodBuilder, &str)> = vec![
            (
                "the article's reservation failure",
                vec![
                    NodeBuilder::new("n1").cpu("1").build(),
                    NodeBuilder::new("n2").cpu("1").build(),
                    NodeBuilder::new("n3").cpu("1").build(),
                ],
                PodBuilder::new("default", "p").container_requests(&[("cpu", "2")]),
                "0/3 nodes are available: 3 Insufficient cpu.",
            ),
            (
                "mixed reasons are counted and sorted",
                vec![
                    NodeBuilder::new("a").cpu("1").memory("1Gi").build(),
                    NodeBuilder::new("b").cpu("1").memory("8Gi").build(),
                    NodeBuilder::new("c").cpu("8").memory("1Gi").build(),
                    NodeBuilder::new("m")
                        .cpu("8")
                        .memory("8Gi")
                        .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
                        .build(),
                    NodeBuilder::new("d")
                        .cpu("8")
                        .memory("8Gi")
                        .unschedulable()
                        .build(),
                ],
                PodBuilder::new("default", "p")
                    .container_requests(&[("cpu", "2"), ("memory", "2Gi")]),
                "0/5 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) were unschedulable, 2 Insufficient cpu, 2 Insufficient memory.",
            ),
            (
                "counts sort as strings",
                (0..12)
                    .map(|i| {
                        let b = NodeBuilder::new(&format!("n{i}")).cpu("1").memory("1Gi");
                        if i < 2 {
                            b.label("gpu", "true").build()
                        } else {
                            b.build()
                        }
                    })
                    .collect(),
                PodBuilder::new("default", "p")
                    .node_selector("gpu", "true")
                    .container_requests(&[("cpu", "2")]),
                "0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu.",
            ),
            (
                "node name and ports",
                vec![
                    small().build(),
                    NodeBuilder::new("y").cpu("1").memory("1Gi").build(),
                ],
                PodBuilder::new("default", "p").node_name("z"),
                "0/2 nodes are available: 2 node(s) didn't match the requested node name.",
            ),
            (
                "too many pods",
                vec![NodeBuilder::new("x").pods("0").build()],
                PodBuilder::new("default", "p"),
                "0/1 nodes are available: 1 Too many pods.",
            ),
        ];
        for (name, nodes, pod, want) in cases {
            let s = snap(nodes, vec![]);
            assert_eq!(fit_message(run(&s, pod.build())), want, "{name}");
        }
    }

    #[test]
    fn host_ports_conflict_on_every_node() {
        let nodes = vec![NodeBuilder::new("a").build(), NodeBuilder::new("b").build()];
        let used = ["a", "b"].map(|n| {
            PodBuilder::new("default", n)
                .host_port(80)
                .node_name(n)
                .build()
        });
        let s = snap(nodes, used.to_vec());
        assert_eq!(
            fit_message(run(
                &s,
                PodBuilder::new("default", "p").host_port(80).build()
            )),
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        );
    }

    #[test]
    fn no_nodes() {
        let s = snap(vec![], vec![]);
        assert_eq!(
            run(&s, PodBuilder::new("d", "p").build()),
            Err(ScheduleError::NoNodesAvailable)
        );
        assert_eq!(
            ScheduleError::NoNodesAvailable.to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn single_feasible_node_is_not_scored() {
        let s = snap(
            vec![
                NodeBuilder::new("a").cpu("4").build(),
                NodeBuilder::new("b").cpu("1").build(),
            ],
            vec![],
        );
        let r = run(
            &s,
            PodBuilder::new("d", "p")
                .container_requests(&[("cpu", "2")])
                .build(),
        )
        .unwrap();
        assert_eq!(r.suggested_host, "a");
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (2, 1));
        assert!(r.scores.is_empty());
    }

    #[test]
    fn picks_the_least_allocated_node() {
        let s = snap(
            vec![
                NodeBuilder::new("busy").cpu("4").memory("8Gi").build(),
                NodeBuilder::new("idle").cpu("4").memory("8Gi").build(),
            ],
            vec![
                PodBuilder::new("d", "x")
                    .container_requests(&[("cpu", "3"), ("memory", "6Gi")])
                    .node_name("busy")
                    .build(),
            ],
        );
        let r = run(
            &s,
            PodBuilder::new("d", "p")
                .container_requests(&[("cpu", "500m")])
                .build(),
        )
        .unwrap();
        assert_eq!(r.suggested_host, "idle");
        let idle = r.scores.iter().find(|n| n.name == "idle").unwrap();
        let plugins: Vec<&str> = idle.scores.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            plugins,
            [
                "TaintToleration",
                "NodeResourcesFit",
                "NodeResourcesBalancedAllocation",
                "ImageLocality"
            ]
        );
        assert_eq!(idle.scores[0].1, 300, "TaintToleration 100 × weight 3");
    }

    #[test]
    fn ties_are_broken_by_the_seeded_rng() {
        let nodes: Vec<Node> = (0..4)
            .map(|i| NodeBuilder::new(&format!("n{i}")).cpu("4").build())
            .collect();
        let s = snap(nodes, vec![]);
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let mut alg = Algorithm::new(Profile::default_profile());
            let r = alg
                .schedule_pod(
                    &s,
                    &PodInfo::new(PodBuilder::new("d", "p").build()),
                    &mut ChaCha8Rng::seed_from_u64(seed),
                    &mut Trace::disabled(),
                )
                .unwrap();
            seen.insert(r.suggested_host.clone());
            // Same seed, same answer.
            let mut again = Algorithm::new(Profile::default_profile());
            let r2 = again
                .schedule_pod(
                    &s,
                    &PodInfo::new(PodBuilder::new("d", "p").build()),
                    &mut ChaCha8Rng::seed_from_u64(seed),
                    &mut Trace::disabled(),
                )
                .unwrap();
            assert_eq!(r.suggested_host, r2.suggested_host);
        }
        assert_eq!(seen.len(), 4, "every tied node gets chosen for some seed");
    }

    #[test]
    fn feasible_node_search_is_bounded_and_rotates() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300);
        assert_eq!(num_feasible_nodes_to_find(0, 200), 100);
        assert_eq!(num_feasible_nodes_to_find(10, 500), 100);
        assert_eq!(num_feasible_nodes_to_find(100, 500), 500);

        let nodes: Vec<Node> = (0..1000)
            .map(|i| NodeBuilder::new(&format!("n{i:04}")).cpu("4").build())
            .collect();
        let s = snap(nodes, vec![]);
        let mut alg = Algorithm::new(Profile::default_profile());
        let pod = PodInfo::new(PodBuilder::new("d", "p").build());
        let r = alg
            .schedule_pod(
                &s,
                &pod,
                &mut ChaCha8Rng::seed_from_u64(0),
                &mut Trace::disabled(),
            )
            .unwrap();
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (420, 420));
        assert_eq!(alg.next_start_node_index, 420);
        alg.schedule_pod(
            &s,
            &pod,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut Trace::disabled(),
        )
        .unwrap();
        alg.schedule_pod(
            &s,
            &pod,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut Trace::disabled(),
        )
        .unwrap();
        assert_eq!(alg.next_start_node_index, 260, "wraps around");
    }

    #[test]
    fn trace_has_every_filter_and_score() {
        let s = snap(
            vec![
                NodeBuilder::new("n1").cpu("4").memory("8Gi").build(),
                NodeBuilder::new("n2").cpu("1").memory("8Gi").build(),
                NodeBuilder::new("n3").cpu("4").memory("8Gi").build(),
            ],
            vec![],
        );
        let mut alg = Algorithm::new(Profile::default_profile());
        let mut trace = Trace::enabled();
        alg.schedule_pod(
            &s,
            &PodInfo::new(
                PodBuilder::new("default", "app")
                    .container_requests(&[("cpu", "2")])
                    .build(),
            ),
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut trace,
        )
        .unwrap();
        let t = trace.texts();
        assert!(t.contains(&r#""Filter plugin result for pod" pod="default/app" node="n2" plugin="NodeResourcesFit" status="Unschedulable" reason="Insufficient cpu""#));
        assert!(t.contains(&r#""Filter plugin result for pod" pod="default/app" node="n1" plugin="NodeResourcesFit" status="Success""#));
        assert!(t.contains(&r#""Plugin scored node for pod" pod="default/app" plugin="TaintToleration" node="n3" score=300"#));
        assert!(t.contains(&r#""Listed internal info for allocatable resources, requested resources and score" pod="default/app" node="n1" resourceAllocationScorer="LeastAllocated" allocatableResource=[4000 8589934592] requestedResource=[2000 209715200] resourceScore=73"#));
        let finals: Vec<&&str> = t
            .iter()
            .filter(|l| l.starts_with("\"Calculated node's final score"))
            .collect();
        assert_eq!(finals.len(), 2, "{t:#?}");
        assert!(
            !t.iter().any(|l| l.contains("node=\"n2\" score=")),
            "n2 was filtered out"
        );
    }

    #[test]
    fn legacy_policy_rejects_unknown_priorities() {
        assert_eq!(
            Profile::legacy_policy(&[("EqualPriority", 1)]).err(),
            Some(ProfileError::UnknownPriority("EqualPriority".into()))
        );
        assert!(matches!(
            Profile::legacy_policy(&[("LeastRequestedPriority", 0)]),
            Err(ProfileError::BadWeight { .. })
        ));
    }
}
