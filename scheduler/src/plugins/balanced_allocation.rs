//! `NodeResourcesBalancedAllocation`: prefer the node whose CPU and memory
//! would be requested in the most similar shares — `(1 - std) × 100` over
//! the requested fractions. Pods that request nothing are not scored by it
//! (so BestEffort pods do not pile onto one node).

use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin, Status};
use crate::plugins::names;
use crate::plugins::resource_allocation::{
    ResourceAllocationScorer, ResourceSpec, default_resources,
};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

#[derive(Clone, Debug)]
pub struct BalancedAllocation {
    scorer: ResourceAllocationScorer,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation::new(default_resources())
    }
}

impl BalancedAllocation {
    pub fn new(resources: Vec<ResourceSpec>) -> BalancedAllocation {
        BalancedAllocation {
            scorer: ResourceAllocationScorer {
                name: names::NODE_RESOURCES_BALANCED_ALLOCATION,
                resources,
                use_requested: true,
            },
        }
    }
}

/// `balancedResourceScorer`.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let mut fractions = Vec::with_capacity(requested.len());
    let mut total = 0.0;
    for i in 0..requested.len() {
        if allocatable[i] == 0 {
            continue;
        }
        let f = (requested[i] as f64 / allocatable[i] as f64).min(1.0);
        total += f;
        fractions.push(f);
    }
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = total / n as f64;
            let sum: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / n as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_BALANCED_ALLOCATION
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let reqs = self.scorer.pod_requests(pod);
        if reqs.iter().all(|&r| r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, reqs);
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        trace: &mut Trace,
    ) -> Result<i64, Status> {
        let computed;
        let reqs = match state.read::<Vec<i64>>(PRE_SCORE_KEY) {
            Some(r) => r,
            None => {
                computed = self.scorer.pod_requests(pod);
                if computed.iter().all(|&r| r == 0) {
                    return Ok(0);
                }
                &computed
            }
        };
        Ok(self.scorer.score(pod, node, reqs, balanced_score, trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::Workloads;

    #[test]
    fn balanced_score_formula() {
        // cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5: std 0.125 → 87.
        assert_eq!(balanced_score(&[3000, 5000], &[4000, 10000]), 87);
        assert_eq!(balanced_score(&[1000, 2500], &[4000, 10000]), 100);
        // Fractions above one are capped.
        assert_eq!(balanced_score(&[8000, 0], &[4000, 10000]), 50);
        // A resource the node lacks is skipped; one fraction has no spread.
        assert_eq!(balanced_score(&[3000, 0], &[4000, 0]), 100);
        // Three resources: population standard deviation.
        let three = balanced_score(&[1, 2, 3], &[4, 4, 4]);
        let mean: f64 = 0.5;
        let sd = (((0.25 - mean).powi(2) + 0.0 + (0.75 - mean).powi(2)) / 3.0).sqrt();
        assert_eq!(three, ((1.0 - sd) * 100.0) as i64);
    }

    #[test]
    fn balanced_allocation_table() {
        // (used cpu, used mem, pod cpu, pod mem, Some(score) or None = skipped)
        let cases = [
            ("2", "5000Mi", "1", "0", Some(87)),
            ("0", "0", "1", "2500Mi", Some(100)),
            ("1", "0", "", "", None),
            ("0", "0", "3", "0", Some(62)),
        ];
        for (ucpu, umem, pcpu, pmem, want) in cases {
            let used = PodBuilder::new("d", "used")
                .container_requests(&[("cpu", ucpu), ("memory", umem)])
                .node_name("n1")
                .build();
            let snap = Snapshot::from_objects(
                vec![NodeBuilder::new("n1").cpu("4").memory("10000Mi").build()],
                vec![used],
                Workloads::default(),
            );
            let pod = if pcpu.is_empty() {
                PodBuilder::new("d", "p")
            } else {
                PodBuilder::new("d", "p").container_requests(&[("cpu", pcpu), ("memory", pmem)])
            };
            let pod = PodInfo::new(pod.build());
            let pl = BalancedAllocation::default();
            let mut state = CycleState::new();
            let nodes = snap.nodes().to_vec();
            let pre = pl.pre_score(&mut state, &pod, &snap, &nodes);
            match want {
                None => assert!(pre.is_skip(), "best-effort pod is not scored"),
                Some(w) => {
                    let got = pl
                        .score(&state, &pod, &nodes[0], &snap, &mut Trace::disabled())
                        .unwrap();
                    assert_eq!(got, w, "used {ucpu}/{umem} pod {pcpu}/{pmem}");
                }
            }
        }
    }
}
