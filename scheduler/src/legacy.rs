//! The priority functions of kube-scheduler before the scheduling framework
//! (1.11–1.13, the version the seed article ran): scores from 0 to 10,
//! combined by a `--policy-config-file` list of priorities and weights, and
//! their `--v=10` printf-style log lines — `LeastResourceAllocation`,
//! `BalancedResourceAllocation`, `SelectorSpreadPriority`,
//! `Host … => Score …`.
//!
//! Differences from the 1.33 plugins, kept on purpose: scores are 0–10;
//! both resource priorities count the *non-zero* requests (100m / 200 MiB
//! for containers without requests); balanced allocation is
//! `(1 − |cpu% − mem%|) × 10` and 0 for a full node; spreading counts the
//! pods matched by any Service/RC/ReplicaSet/StatefulSet selecting the pod
//! and weighs zones ⅔; `NodePreferAvoidPodsPriority` honours the node
//! annotation `scheduler.alpha.kubernetes.io/preferAvoidPods`.

use std::sync::Arc;

use crate::framework::{CycleState, ScorePlugin, Status};
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::taint_toleration::TaintToleration;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

/// The largest score of a 1.11 priority function.
pub const MAX_PRIORITY: i64 = 10;

pub const LEAST_REQUESTED: &str = "LeastRequestedPriority";
pub const BALANCED_RESOURCE_ALLOCATION: &str = "BalancedResourceAllocation";
pub const SELECTOR_SPREAD: &str = "SelectorSpreadPriority";
pub const NODE_PREFER_AVOID_PODS: &str = "NodePreferAvoidPodsPriority";
pub const NODE_AFFINITY: &str = "NodeAffinityPriority";
pub const TAINT_TOLERATION: &str = "TaintTolerationPriority";

pub const PREFER_AVOID_PODS_ANNOTATION: &str = "scheduler.alpha.kubernetes.io/preferAvoidPods";

/// `zoneWeighting`: how much the zone spread counts against the node spread.
const ZONE_WEIGHTING: f64 = 2.0 / 3.0;

/// A priority function by its policy-file name.
pub fn priority(name: &str) -> Option<Arc<dyn ScorePlugin>> {
    Some(match name {
        LEAST_REQUESTED => Arc::new(LeastRequested),
        BALANCED_RESOURCE_ALLOCATION => Arc::new(BalancedResourceAllocation),
        SELECTOR_SPREAD => Arc::new(SelectorSpread),
        NODE_PREFER_AVOID_PODS => Arc::new(NodePreferAvoidPods),
        NODE_AFFINITY => Arc::new(NodeAffinity {
            max_score: MAX_PRIORITY,
            name: NODE_AFFINITY,
        }),
        TAINT_TOLERATION => Arc::new(TaintToleration {
            max_score: MAX_PRIORITY,
            name: TAINT_TOLERATION,
        }),
        _ => return None,
    })
}

/// The non-zero requests with the pod added: `(allocatable, requested)` for
/// CPU and memory.
fn totals(pod: &PodInfo, node: &NodeInfo) -> ((i64, i64), (i64, i64)) {
    (
        (
            node.allocatable.milli_cpu,
            node.non_zero_requested.milli_cpu + pod.non_zero_milli_cpu,
        ),
        (
            node.allocatable.memory,
            node.non_zero_requested.memory + pod.non_zero_memory,
        ),
    )
}

fn trace_resource_line(
    trace: &mut Trace,
    pod: &PodInfo,
    node: &NodeInfo,
    name: &str,
    totals: ((i64, i64), (i64, i64)),
    score: i64,
) {
    if trace.is_enabled() {
        let ((cpu_cap, cpu_req), (mem_cap, mem_req)) = totals;
        trace.push(
            10,
            format!(
                "{} -> {}: {name}, capacity {cpu_cap} millicores {mem_cap} memory bytes, total request {cpu_req} millicores {mem_req} memory bytes, score {score}",
                pod.name, node.name
            ),
        );
    }
}

fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_PRIORITY / capacity
}

/// `LeastRequestedPriority`: the mean free share of CPU and memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastRequested;

impl ScorePlugin for LeastRequested {
    fn name(&self) -> &'static str {
        LEAST_REQUESTED
    }

    fn score(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        trace: &mut Trace,
    ) -> Result<i64, Status> {
        let t = totals(pod, node);
        let ((cpu_cap, cpu_req), (mem_cap, mem_req)) = t;
        let score =
            (least_requested_score(cpu_req, cpu_cap) + least_requested_score(mem_req, mem_cap)) / 2;
        trace_resource_line(trace, pod, node, "LeastResourceAllocation", t, score);
        Ok(score)
    }

    fn max_score(&self) -> i64 {
        MAX_PRIORITY
    }
}

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity == 0 {
        1.0
    } else {
        requested as f64 / capacity as f64
    }
}

/// `BalancedResourceAllocation`: `(1 − |cpu% − mem%|) × 10`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BalancedResourceAllocation;

impl ScorePlugin for BalancedResourceAllocation {
    fn name(&self) -> &'static str {
        BALANCED_RESOURCE_ALLOCATION
    }

    fn score(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        trace: &mut Trace,
    ) -> Result<i64, Status> {
        let t = totals(pod, node);
        let ((cpu_cap, cpu_req), (mem_cap, mem_req)) = t;
        let cpu = fraction(cpu_req, cpu_cap);
        let mem = fraction(mem_req, mem_cap);
        let score = if cpu >= 1.0 || mem >= 1.0 {
            0
        } else {
            ((1.0 - (cpu - mem).abs()) * MAX_PRIORITY as f64) as i64
        };
        trace_resource_line(trace, pod, node, "BalancedResourceAllocation", t, score);
        Ok(score)
    }

    fn max_score(&self) -> i64 {
        MAX_PRIORITY
    }
}

const SELECTOR_SPREAD_KEY: &str = "PreScoreSelectorSpreadPriority";

/// `SelectorSpreadPriority`: fewer pods of the same Services and
/// controllers on the node (and in its zone) is better.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectorSpread;

impl ScorePlugin for SelectorSpread {
    fn name(&self) -> &'static str {
        SELECTOR_SPREAD
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        state.write(
            SELECTOR_SPREAD_KEY,
            snapshot.workloads().matching_selectors(pod),
        );
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
        _trace: &mut Trace,
    ) -> Result<i64, Status> {
        let computed;
        let selectors = match state.read::<Vec<ackemu_kube::LabelSelector>>(SELECTOR_SPREAD_KEY) {
            Some(s) => s,
            None => {
                computed = snapshot.workloads().matching_selectors(pod);
                &computed
            }
        };
        if selectors.is_empty() {
            return Ok(0);
        }
        Ok(node
            .pods
            .iter()
            .filter(|p| p.namespace == pod.namespace && !p.terminating)
            .filter(|p| selectors.iter().any(|s| s.matches(&p.labels)))
            .count() as i64)
    }

    fn normalize(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
        trace: &mut Trace,
    ) -> Status {
        let mut counts_by_zone: std::collections::HashMap<&str, i64> = Default::default();
        let mut max_by_node = 0;
        for (i, n) in nodes.iter().enumerate() {
            max_by_node = max_by_node.max(scores[i]);
            if !n.zone.is_empty() {
                *counts_by_zone.entry(n.zone.as_str()).or_default() += scores[i];
            }
        }
        let max_by_zone = counts_by_zone.values().copied().max().unwrap_or(0);
        let have_zones = !counts_by_zone.is_empty();
        let max_p = MAX_PRIORITY as f64;
        for (i, n) in nodes.iter().enumerate() {
            let mut f = max_p;
            if max_by_node > 0 {
                f = max_p * ((max_by_node - scores[i]) as f64 / max_by_node as f64);
            }
            if have_zones && !n.zone.is_empty() {
                let mut zone_score = max_p;
                if max_by_zone > 0 {
                    let c = counts_by_zone.get(n.zone.as_str()).copied().unwrap_or(0);
                    zone_score = max_p * ((max_by_zone - c) as f64 / max_by_zone as f64);
                }
                f = f * (1.0 - ZONE_WEIGHTING) + ZONE_WEIGHTING * zone_score;
            }
            scores[i] = f as i64;
            if trace.is_enabled() {
                trace.push(
                    10,
                    format!(
                        "{} -> {}: SelectorSpreadPriority, Score: ({})",
                        pod.name, n.name, scores[i]
                    ),
                );
            }
        }
        Status::success()
    }

    fn max_score(&self) -> i64 {
        MAX_PRIORITY
    }
}

/// `NodePreferAvoidPodsPriority`: 0 on nodes whose `preferAvoidPods`
/// annotation names the pod's ReplicationController or ReplicaSet, 10
/// elsewhere. Its policy weight is 10000, so it dominates every other.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodePreferAvoidPods;

impl ScorePlugin for NodePreferAvoidPods {
    fn name(&self) -> &'static str {
        NODE_PREFER_AVOID_PODS
    }

    fn score(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        _trace: &mut Trace,
    ) -> Result<i64, Status> {
        let Some(owner) = pod
            .controller
            .as_ref()
            .filter(|o| matches!(o.kind.as_str(), "ReplicationController" | "ReplicaSet"))
        else {
            return Ok(MAX_PRIORITY);
        };
        let Some(raw) = node.annotations.get(PREFER_AVOID_PODS_ANNOTATION) else {
            return Ok(MAX_PRIORITY);
        };
        // An annotation that does not parse is ignored, as kube-scheduler did.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
            return Ok(MAX_PRIORITY);
        };
        let avoided = v["preferAvoidPods"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                let c = &a["podSignature"]["podController"];
                c["kind"].as_str() == Some(owner.kind.as_str())
                    && c["uid"].as_str() == Some(owner.uid.as_str())
            });
        Ok(if avoided { 0 } else { MAX_PRIORITY })
    }

    fn max_score(&self) -> i64 {
        MAX_PRIORITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::{LABEL_ZONE, Workloads};
    use ackemu_kube::api::core::v1::{Service, ServiceSpec};

    fn score_all(pl: &dyn ScorePlugin, snap: &Snapshot, pod: &PodInfo) -> Vec<i64> {
        let mut nodes = snap.nodes().to_vec();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut state = CycleState::new();
        pl.pre_score(&mut state, pod, snap, &nodes);
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| {
                pl.score(&state, pod, n, snap, &mut Trace::disabled())
                    .unwrap()
            })
            .collect();
        pl.normalize(&state, pod, &nodes, &mut s, &mut Trace::disabled());
        s
    }

    #[test]
    fn legacy_resource_priorities_table() {
        // (used cpu, used mem) on a 4-core 8000Mi node, best-effort pod.
        let cases = [
            ("300m", "600Mi", 9, 10),
            ("700m", "1400Mi", 8, 10),
            ("2", "200Mi", 6, 5),
            ("4", "0", 4, 0),
        ];
        for (cpu, mem, lr, bra) in cases {
            let snap = Snapshot::from_objects(
                vec![NodeBuilder::new("n1").cpu("4").memory("8000Mi").build()],
                vec![
                    PodBuilder::new("kube-system", "sys")
                        .container_requests(&[("cpu", cpu), ("memory", mem)])
                        .node_name("n1")
                        .build(),
                ],
                Workloads::default(),
            );
            let pod = PodInfo::new(PodBuilder::new("default", "app").build());
            assert_eq!(
                score_all(&LeastRequested, &snap, &pod),
                [lr],
                "LR {cpu}/{mem}"
            );
            assert_eq!(
                score_all(&BalancedResourceAllocation, &snap, &pod),
                [bra],
                "BRA {cpu}/{mem}"
            );
        }
    }

    #[test]
    fn selector_spread_table() {
        let mut w = Workloads::default();
        let mut svc = Service::default();
        svc.metadata.name = Some("web".into());
        svc.metadata.namespace = Some("default".into());
        svc.spec = Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        w.upsert_service(&svc);
        let web = |n: &str, node: &str| {
            PodBuilder::new("default", n)
                .label("app", "web")
                .node_name(node)
                .build()
        };
        let pod = PodInfo::new(
            PodBuilder::new("default", "new")
                .label("app", "web")
                .build(),
        );

        // No zones: 10 × (max − count) / max over counts 2, 1, 0.
        let snap = Snapshot::from_objects(
            ["a", "b", "c"]
                .map(|n| NodeBuilder::new(n).build())
                .to_vec(),
            vec![web("1", "a"), web("2", "a"), web("3", "b")],
            w.clone(),
        );
        assert_eq!(score_all(&SelectorSpread, &snap, &pod), [0, 5, 10]);

        // Zones weigh two thirds: a, b in zone x (3 pods), c alone in y.
        let snap = Snapshot::from_objects(
            vec![
                NodeBuilder::new("a").label(LABEL_ZONE, "x").build(),
                NodeBuilder::new("b").label(LABEL_ZONE, "x").build(),
                NodeBuilder::new("c").label(LABEL_ZONE, "y").build(),
            ],
            vec![web("1", "a"), web("2", "a"), web("3", "b")],
            w.clone(),
        );
        assert_eq!(score_all(&SelectorSpread, &snap, &pod), [0, 1, 10]);

        // A pod no Service selects scores 10 everywhere, zones or not.
        let lonely = PodInfo::new(PodBuilder::new("default", "app").build());
        assert_eq!(score_all(&SelectorSpread, &snap, &lonely), [10, 10, 10]);
    }

    #[test]
    fn prefer_avoid_pods_annotation() {
        let avoid = r#"{"preferAvoidPods":[{"podSignature":{"podController":{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-1","uid":"uid-rs","controller":true}},"reason":"some reason"}]}"#;
        let snap = Snapshot::from_objects(
            vec![
                NodeBuilder::new("a")
                    .annotation(PREFER_AVOID_PODS_ANNOTATION, avoid)
                    .build(),
                NodeBuilder::new("b").build(),
                NodeBuilder::new("c")
                    .annotation(PREFER_AVOID_PODS_ANNOTATION, "not json")
                    .build(),
            ],
            vec![],
            Workloads::default(),
        );
        let owned = PodInfo::new(
            PodBuilder::new("default", "w")
                .owner("apps/v1", "ReplicaSet", "web-1", "uid-rs")
                .build(),
        );
        assert_eq!(score_all(&NodePreferAvoidPods, &snap, &owned), [0, 10, 10]);
        let free = PodInfo::new(PodBuilder::new("default", "app").build());
        assert_eq!(score_all(&NodePreferAvoidPods, &snap, &free), [10, 10, 10]);
        assert!(priority("NoSuchPriority").is_none());
        assert_eq!(priority(TAINT_TOLERATION).map(|p| p.max_score()), Some(10));
    }
}
