//! `NodeResourcesFit`: the pod's *requests* must fit in the node's
//! allocatable minus the requests already placed there — the articles'
//! "reservation rate", not usage — and, as a score, prefer the node with
//! the most left (`LeastAllocated`, the default strategy).

use std::sync::Arc;

use crate::framework::{Code, CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Status};
use crate::plugins::names;
use crate::plugins::resource_allocation::{
    ResourceAllocationScorer, ResourceSpec, default_resources,
};
use crate::resources::{Resource, is_extended_resource_name};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// One resource the node lacks for the pod (`InsufficientResource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource: String,
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

/// What the pod lacks on the node, in Kubernetes' order: pod count, cpu,
/// memory, ephemeral storage, then scalar resources by name (`fitsRequest`).
/// Used by the filter and by simulations (the cluster autoscaler's).
pub fn fits_request(
    pod_request: &Resource,
    node: &NodeInfo,
    ignored_extended: &[String],
) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let allowed = node.allocatable.allowed_pod_number;
    if node.pods.len() as i64 + 1 > allowed {
        out.push(InsufficientResource {
            resource: "pods".into(),
            reason: "Too many pods".into(),
            requested: 1,
            used: node.pods.len() as i64,
            capacity: allowed,
        });
    }
    if pod_request.is_zero_request() {
        return out;
    }
    let checks = [
        (
            "cpu",
            pod_request.milli_cpu,
            node.requested.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            "memory",
            pod_request.memory,
            node.requested.memory,
            node.allocatable.memory,
        ),
        (
            "ephemeral-storage",
            pod_request.ephemeral_storage,
            node.requested.ephemeral_storage,
            node.allocatable.ephemeral_storage,
        ),
    ];
    for (name, want, used, cap) in checks {
        if want > 0 && want > cap - used {
            out.push(InsufficientResource {
                resource: name.into(),
                reason: format!("Insufficient {name}"),
                requested: want,
                used,
                capacity: cap,
            });
        }
    }
    for (name, &want) in &pod_request.scalar {
        if want == 0 {
            continue;
        }
        if is_extended_resource_name(name) && ignored_extended.iter().any(|i| i == name) {
            continue;
        }
        let cap = node.allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = node.requested.scalar.get(name).copied().unwrap_or(0);
        if want > cap - used {
            out.push(InsufficientResource {
                resource: name.clone(),
                reason: format!("Insufficient {name}"),
                requested: want,
                used,
                capacity: cap,
            });
        }
    }
    out
}

/// The plugin, configured like the default profile.
#[derive(Clone, Debug)]
pub struct NodeResourcesFit {
    /// Extended resources the filter does not check.
    pub ignored_resources: Vec<String>,
    scorer: ResourceAllocationScorer,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit::new(default_resources())
    }
}

impl NodeResourcesFit {
    pub fn new(resources: Vec<ResourceSpec>) -> NodeResourcesFit {
        NodeResourcesFit {
            ignored_resources: Vec::new(),
            scorer: ResourceAllocationScorer {
                name: "LeastAllocated",
                resources,
                use_requested: false,
            },
        }
    }
}

/// `leastRequestedScore`: the free share of one resource, 0..=100.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `leastResourceScorer`: the weighted mean over the resources the node has.
pub fn least_allocated(requested: &[i64], allocatable: &[i64], resources: &[ResourceSpec]) -> i64 {
    let (mut score, mut weights) = (0, 0);
    for i in 0..requested.len() {
        if allocatable[i] == 0 {
            continue;
        }
        let w = resources[i].weight;
        score += least_requested_score(requested[i], allocatable[i]) * w;
        weights += w;
    }
    if weights == 0 { 0 } else { score / weights }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_FIT
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let insufficient = fits_request(&pod.requests, node, &self.ignored_resources);
        if insufficient.is_empty() {
            return Status::success();
        }
        Status::with_reasons(
            Code::Unschedulable,
            insufficient.into_iter().map(|r| r.reason).collect(),
        )
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_FIT
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        state.write(PRE_SCORE_KEY, self.scorer.pod_requests(pod));
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
                &computed
            }
        };
        let res = &self.scorer.resources;
        Ok(self
            .scorer
            .score(pod, node, reqs, |r, a| least_allocated(r, a, res), trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::plugins::run_filter;
    use crate::snapshot::Workloads;

    fn node() -> NodeBuilder {
        NodeBuilder::new("n1").cpu("4").memory("8Gi").pods("3")
    }

    #[test]
    fn fit_filter_table() {
        let used = |cpu: &str, mem: &str| {
            vec![
                PodBuilder::new("d", "used")
                    .container_requests(&[("cpu", cpu), ("memory", mem)])
                    .build(),
            ]
        };
        struct Case {
            name: &'static str,
            pod: PodBuilder,
            node: NodeBuilder,
            on_node: Vec<ackemu_kube::api::core::v1::Pod>,
            want: &'static [&'static str],
        }
        let cases = vec![
            Case {
                name: "fits",
                pod: PodBuilder::new("d", "p")
                    .container_requests(&[("cpu", "1"), ("memory", "1Gi")]),
                node: node(),
                on_node: used("2", "4Gi"),
                want: &[],
            },
            Case {
                name: "fits exactly",
                pod: PodBuilder::new("d", "p").container_requests(&[("cpu", "2")]),
                node: node(),
                on_node: used("2", "4Gi"),
                want: &[],
            },
            Case {
                name: "insufficient cpu",
                pod: PodBuilder::new("d", "p").container_requests(&[("cpu", "2001m")]),
                node: node(),
                on_node: used("2", "4Gi"),
                want: &["Insufficient cpu"],
            },
            Case {
                name: "insufficient cpu and memory",
                pod: PodBuilder::new("d", "p")
                    .container_requests(&[("cpu", "3"), ("memory", "5Gi")]),
                node: node(),
                on_node: used("2", "4Gi"),
                want: &["Insufficient cpu", "Insufficient memory"],
            },
            Case {
                name: "too many pods even for a best-effort pod",
                pod: PodBuilder::new("d", "p"),
                node: node().pods("1"),
                on_node: used("0", "0"),
                want: &["Too many pods"],
            },
            Case {
                name: "best-effort pod fits an over-committed node",
                pod: PodBuilder::new("d", "p"),
                node: node(),
                on_node: used("5", "9Gi"),
                want: &[],
            },
            Case {
                name: "zero cpu request is not checked against an over-committed node",
                pod: PodBuilder::new("d", "p")
                    .container_requests(&[("cpu", "0"), ("memory", "1Gi")]),
                node: node(),
                on_node: used("5", "1Gi"),
                want: &[],
            },
            Case {
                name: "init container max counts",
                pod: PodBuilder::new("d", "p")
                    .container_requests(&[("cpu", "1")])
                    .init_container("init", &[("cpu", "3")]),
                node: node(),
                on_node: used("2", "0"),
                want: &["Insufficient cpu"],
            },
            Case {
                name: "insufficient ephemeral-storage",
                pod: PodBuilder::new("d", "p").container_requests(&[("ephemeral-storage", "20Gi")]),
                node: node().allocatable("ephemeral-storage", "10Gi"),
                on_node: vec![],
                want: &["Insufficient ephemeral-storage"],
            },
            Case {
                name: "insufficient extended resource",
                pod: PodBuilder::new("d", "p").container_requests(&[("nvidia.com/gpu", "1")]),
                node: node(),
                on_node: vec![],
                want: &["Insufficient nvidia.com/gpu"],
            },
        ];
        for c in cases {
            let s = run_filter(
                &NodeResourcesFit::default(),
                c.pod.build(),
                c.node.build(),
                c.on_node,
            );
            assert_eq!(s.reasons, c.want, "{}", c.name);
            if !c.want.is_empty() {
                assert_eq!(s.code, Code::Unschedulable, "{}", c.name);
            }
        }
    }

    #[test]
    fn least_allocated_table() {
        // Kubernetes least_allocated_test.go's cases, in our words:
        // (node cpu, node mem, used cpu, used mem, pod cpu, pod mem, score).
        let cases = [
            // Nothing requested: the pod counts 100m/200Mi (non-zero).
            ("4", "10000Mi", "0", "0", "", "", 97),
            // 3000m of 4000 and 5000 of 10000 Mi: (25 + 50) / 2.
            ("4", "10000Mi", "2", "5000Mi", "1", "0", 37),
            ("4", "10000Mi", "4", "10000Mi", "0", "0", 0),
            ("4", "10000Mi", "6", "0", "0", "0", 50),
        ];
        for (ncpu, nmem, ucpu, umem, pcpu, pmem, want) in cases {
            let mut node_pods = Vec::new();
            if ucpu != "0" || umem != "0" {
                node_pods.push(
                    PodBuilder::new("d", "used")
                        .container_requests(&[("cpu", ucpu), ("memory", umem)])
                        .node_name("n1")
                        .build(),
                );
            }
            let snap = Snapshot::from_objects(
                vec![NodeBuilder::new("n1").cpu(ncpu).memory(nmem).build()],
                node_pods,
                Workloads::default(),
            );
            let mut reqs = Vec::new();
            if !pcpu.is_empty() {
                reqs.push(("cpu", pcpu));
            }
            if !pmem.is_empty() {
                reqs.push(("memory", pmem));
            }
            let pod = PodBuilder::new("d", "p");
            let pod = if reqs.is_empty() {
                pod
            } else {
                pod.container_requests(&reqs)
            };
            let pod = PodInfo::new(pod.build());
            let pl = NodeResourcesFit::default();
            let mut state = CycleState::new();
            let nodes = snap.nodes().to_vec();
            ScorePlugin::pre_score(&pl, &mut state, &pod, &snap, &nodes);
            let mut trace = Trace::enabled();
            let got = pl
                .score(&state, &pod, &nodes[0], &snap, &mut trace)
                .unwrap();
            assert_eq!(
                got, want,
                "{ncpu}/{nmem} used {ucpu}/{umem} pod {pcpu}/{pmem}"
            );
            assert!(trace.texts()[0].contains("resourceAllocationScorer=\"LeastAllocated\""));
        }
    }
}
