//! `PodTopologySpread` scoring: prefer nodes and zones holding fewer pods of
//! the same workload. Pods without `topologySpreadConstraints` get the
//! system defaults (hostname, max skew 3; zone, max skew 5; `ScheduleAnyway`)
//! over the selector of their Services and controller — the successor of
//! `SelectorSpread`. Constraints with `DoNotSchedule` (the filter half) are
//! not evaluated here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ackemu_kube::LabelSelector;
use ackemu_kube::api::core::v1::TopologySpreadConstraint;

use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin, Status};
use crate::plugins::names;
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::plugins::taint_toleration::find_untolerated_taint;
use crate::snapshot::{LABEL_HOSTNAME, LABEL_ZONE, NodeInfo, PodInfo, Selector, Snapshot};
use crate::trace::Trace;

const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

/// One constraint as the plugin evaluates it.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

#[derive(Debug)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    ignored_nodes: BTreeSet<String>,
    /// Per constraint: topology value → matching pods (not for hostname).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

/// The plugin with the system default constraints.
#[derive(Clone, Debug)]
pub struct PodTopologySpread {
    /// `(maxSkew, topologyKey)` applied with `ScheduleAnyway` to pods
    /// without constraints of their own.
    pub default_constraints: Vec<(i64, String)>,
    /// Whether the defaults are the system's (then nodes missing a topology
    /// key are only ignored for pods with a `nodeSelector`).
    pub system_defaulted: bool,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        PodTopologySpread {
            default_constraints: vec![(3, LABEL_HOSTNAME.into()), (5, LABEL_ZONE.into())],
            system_defaulted: true,
        }
    }
}

fn count_pods_match_selector(node: &NodeInfo, selector: &Selector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    node.pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == namespace && selector.matches(&p.labels))
        .count() as i64
}

/// [`count_pods_match_selector`] remembering each distinct label set's
/// answer for the cycle (pods of one workload share their labels).
fn count_pods_match_selector_memo(
    node: &NodeInfo,
    selector: &Selector,
    namespace: &str,
    memo: &mut HashMap<u64, (Arc<PodInfo>, bool)>,
) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    let mut n = 0;
    for p in &node.pods {
        if p.terminating || p.namespace != namespace {
            continue;
        }
        let hit = match memo.get(&p.labels_hash) {
            // Same hash: the same labels unless a collision, checked.
            Some((seen, m)) if seen.labels == p.labels => *m,
            Some(_) => selector.matches(&p.labels),
            None => {
                let m = selector.matches(&p.labels);
                memo.insert(p.labels_hash, (p.clone(), m));
                m
            }
        };
        n += i64::from(hit);
    }
    n
}

fn node_has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.labels.contains_key(&c.topology_key))
}

/// `topologyNormalizingWeight`: bigger topologies weigh more.
fn normalizing_weight(size: usize) -> f64 {
    ((size + 2) as f64).ln()
}

fn score_for_count(cnt: i64, max_skew: i64, weight: f64) -> f64 {
    cnt as f64 * weight + (max_skew - 1) as f64
}

impl PodTopologySpread {
    /// The pod's soft constraints (`ScheduleAnyway`), or the defaults.
    fn constraints(&self, pod: &PodInfo, snapshot: &Snapshot) -> Vec<Constraint> {
        let own: Vec<&TopologySpreadConstraint> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        if !own.is_empty() {
            return own
                .into_iter()
                .filter(|c| c.when_unsatisfiable == "ScheduleAnyway")
                .map(|c| {
                    let mut parts = vec![
                        LabelSelector::from_meta(c.label_selector.as_ref())
                            .unwrap_or_else(|_| LabelSelector::nothing()),
                    ];
                    for key in c.match_label_keys.iter().flatten() {
                        if let Some(v) = pod.labels.get(key) {
                            parts.push(LabelSelector::from_set(&[(key.clone(), v.clone())].into()));
                        }
                    }
                    Constraint {
                        max_skew: i64::from(c.max_skew),
                        topology_key: c.topology_key.clone(),
                        selector: Selector::new(parts),
                        honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                        honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                    }
                })
                .collect();
        }
        if self.default_constraints.is_empty() {
            return Vec::new();
        }
        let selector = snapshot.workloads().default_selector(pod);
        if selector.is_empty() {
            return Vec::new();
        }
        self.default_constraints
            .iter()
            .map(|(skew, key)| Constraint {
                max_skew: *skew,
                topology_key: key.clone(),
                selector: selector.clone(),
                honor_node_affinity: true,
                honor_node_taints: false,
            })
            .collect()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        names::POD_TOPOLOGY_SPREAD
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let constraints = self.constraints(pod, snapshot);
        if constraints.is_empty() {
            return Status::skip();
        }
        let has_node_selector = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .is_some_and(|m| !m.is_empty());
        let require_all = has_node_selector || !self.system_defaulted;

        let mut ignored = BTreeSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for n in nodes {
            if require_all && !node_has_all_keys(n, &constraints) {
                ignored.insert(n.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let value = n.labels.get(&c.topology_key).cloned().unwrap_or_default();
                counts[i].entry(value).or_insert(0);
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                normalizing_weight(size)
            })
            .collect();

        // Count the matching pods of every node into its topology domain.
        // Per-node (hostname) counts are taken at Score time. The order of
        // the checks keeps this loop over all nodes cheap: a node without
        // matching pods adds nothing, whatever its labels.
        let required = RequiredNodeAffinity::of(&pod.pod);
        let has_required = !required.is_empty();
        let mut memos: Vec<HashMap<u64, (Arc<PodInfo>, bool)>> =
            vec![HashMap::new(); constraints.len()];
        for n in snapshot.nodes() {
            if n.pods.is_empty() {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME || counts[i].is_empty() {
                    continue;
                }
                let matching =
                    count_pods_match_selector_memo(n, &c.selector, &pod.namespace, &mut memos[i]);
                if matching == 0 {
                    continue;
                }
                if require_all && !node_has_all_keys(n, &constraints) {
                    continue;
                }
                if c.honor_node_affinity && has_required && !required.matches(n) {
                    continue;
                }
                if c.honor_node_taints
                    && find_untolerated_taint(&n.taints, &pod.tolerations).is_some()
                {
                    continue;
                }
                let value = n
                    .labels
                    .get(&c.topology_key)
                    .map(String::as_str)
                    .unwrap_or("");
                if let Some(slot) = counts[i].get_mut(value) {
                    *slot += matching;
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                ignored_nodes: ignored,
                counts,
                weights,
            },
        );
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        _trace: &mut Trace,
    ) -> Result<i64, Status> {
        let s = state.read::<PreScoreState>(PRE_SCORE_KEY).ok_or_else(|| {
            Status::error("reading \"PreScorePodTopologySpread\" from cycleState: not found")
        })?;
        if s.ignored_nodes.contains(&node.name) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == LABEL_HOSTNAME {
                count_pods_match_selector(node, &c.selector, &pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += score_for_count(cnt, c.max_skew, s.weights[i]);
        }
        Ok(score.round() as i64)
    }

    fn normalize(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
        _trace: &mut Trace,
    ) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::success();
        };
        let mut min = i64::MAX;
        let mut max = 0;
        let mut ignored = vec![false; scores.len()];
        for (i, sc) in scores.iter().enumerate() {
            if s.ignored_nodes.contains(&nodes[i].name) {
                ignored[i] = true;
                continue;
            }
            min = min.min(*sc);
            max = max.max(*sc);
        }
        for (i, sc) in scores.iter_mut().enumerate() {
            if ignored[i] {
                *sc = 0;
            } else if max == 0 {
                *sc = MAX_NODE_SCORE;
            } else {
                *sc = MAX_NODE_SCORE * (max + min - *sc) / max;
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::Workloads;
    use ackemu_kube::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
    use ackemu_kube::api::core::v1::{Node, Pod};

    #[test]
    fn memoized_matching_equals_direct_matching_even_on_hash_collisions() {
        let mut node = NodeInfo::new(NodeBuilder::new("n1").build());
        let pod = |name: &str, app: &str, hash: u64| {
            let mut p = PodInfo::new(
                PodBuilder::new("default", name)
                    .label("app", app)
                    .node_name("n1")
                    .build(),
            );
            p.labels_hash = hash;
            Arc::new(p)
        };
        // "db" collides with "web" on purpose.
        for p in [
            pod("a", "web", 1),
            pod("b", "db", 1),
            pod("c", "web", 1),
            pod("d", "x", 2),
        ] {
            node.add_pod(p);
        }
        let sel = Selector::new(vec![LabelSelector::from_set(
            &[("app".to_string(), "web".to_string())].into(),
        )]);
        let mut memo = HashMap::new();
        for _ in 0..2 {
            assert_eq!(
                count_pods_match_selector_memo(&node, &sel, "default", &mut memo),
                count_pods_match_selector(&node, &sel, "default")
            );
        }
        assert_eq!(count_pods_match_selector(&node, &sel, "default"), 2);
        assert_eq!(
            count_pods_match_selector_memo(&node, &sel, "other", &mut memo),
            0
        );
    }

    fn workloads() -> Workloads {
        let mut w = Workloads::default();
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some("web-1".into());
        rs.metadata.namespace = Some("default".into());
        rs.spec = Some(ReplicaSetSpec {
            selector: ackemu_kube::meta::LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        });
        w.upsert_replica_set(&rs);
        w
    }

    fn web(name: &str) -> PodBuilder {
        PodBuilder::new("default", name).label("app", "web").owner(
            "apps/v1",
            "ReplicaSet",
            "web-1",
            "uid-rs",
        )
    }

    fn run(nodes: Vec<Node>, pods: Vec<Pod>, pod: Pod) -> Option<Vec<i64>> {
        let snap = Snapshot::from_objects(nodes, pods, workloads());
        let mut order: Vec<_> = snap.nodes().to_vec();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        let pod = PodInfo::new(pod);
        let pl = PodTopologySpread::default();
        let mut state = CycleState::new();
        if pl.pre_score(&mut state, &pod, &snap, &order).is_skip() {
            return None;
        }
        let mut scores: Vec<i64> = order
            .iter()
            .map(|n| {
                pl.score(&state, &pod, n, &snap, &mut Trace::disabled())
                    .unwrap()
            })
            .collect();
        pl.normalize(&state, &pod, &order, &mut scores, &mut Trace::disabled());
        Some(scores)
    }

    fn placed(b: PodBuilder, node: &str) -> Pod {
        b.node_name(node).build()
    }

    #[test]
    fn spreads_a_replica_sets_pods_over_hosts() {
        let nodes = ["n1", "n2", "n3"]
            .map(|n| NodeBuilder::new(n).build())
            .to_vec();
        let pods = vec![
            placed(web("w1"), "n1"),
            placed(web("w2"), "n1"),
            placed(web("w3"), "n2"),
            // Other workloads, other namespaces and terminating pods don't count.
            placed(PodBuilder::new("default", "db").label("app", "db"), "n3"),
            placed(PodBuilder::new("other", "w").label("app", "web"), "n3"),
            placed(web("old").terminating(), "n3"),
        ];
        // hostname weight ln(5): n1 2·1.609+2 → 5, n2 → 4, n3 → 2;
        // normalized 100·(5+2−s)/5.
        assert_eq!(
            run(nodes, pods, web("new").build()),
            Some(vec![40, 60, 100])
        );
    }

    #[test]
    fn spreads_over_zones_too() {
        let nodes = vec![
            NodeBuilder::new("n1").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("n2").label(LABEL_ZONE, "a").build(),
            NodeBuilder::new("n3").label(LABEL_ZONE, "b").build(),
        ];
        let pods = vec![
            placed(web("w1"), "n1"),
            placed(web("w2"), "n1"),
            placed(web("w3"), "n2"),
        ];
        // zone weight ln(4), zone a holds 3: n1 13, n2 12, n3 6 before
        // normalizing by 100·(13+6−s)/13.
        assert_eq!(
            run(nodes, pods, web("new").build()),
            Some(vec![46, 53, 100])
        );
    }

    #[test]
    fn pods_without_workload_are_not_spread() {
        let nodes = vec![NodeBuilder::new("n1").build()];
        assert_eq!(
            run(nodes, vec![], PodBuilder::new("default", "app").build()),
            None
        );
    }

    #[test]
    fn explicit_soft_constraint() {
        let nodes = vec![
            NodeBuilder::new("n1").label("rack", "r1").build(),
            NodeBuilder::new("n2").label("rack", "r2").build(),
        ];
        let pods = vec![placed(web("w1"), "n1")];
        let pod = PodBuilder::new("default", "new")
            .label("app", "web")
            .topology_spread(1, "rack", "ScheduleAnyway", &[("app", "web")])
            .build();
        // rack weight ln(4): n1 1·1.386 → 1, n2 → 0; normalized 100·(1+0−s)/1.
        assert_eq!(run(nodes.clone(), pods.clone(), pod), Some(vec![0, 100]));
        let hard = PodBuilder::new("default", "new")
            .label("app", "web")
            .topology_spread(1, "rack", "DoNotSchedule", &[("app", "web")])
            .build();
        assert_eq!(
            run(nodes, pods, hard),
            None,
            "DoNotSchedule is the filter's business"
        );
    }
}
