//! The shared machinery of the resource scoring plugins
//! (`noderesources/resource_allocation.go`): which requests and which node
//! totals a scorer sees, and its `--v=10` line.

use crate::resources::{self, CPU, EPHEMERAL_STORAGE, MEMORY};
use crate::snapshot::{NodeInfo, PodInfo};
use crate::trace::{Line, Trace};

/// A resource a scorer considers, with its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

/// CPU and memory, weight 1 each (the default `NodeResourcesFitArgs` and
/// `NodeResourcesBalancedAllocationArgs`).
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: CPU.into(),
            weight: 1,
        },
        ResourceSpec {
            name: MEMORY.into(),
            weight: 1,
        },
    ]
}

/// How one plugin turns (requested, allocatable) vectors into a score.
#[derive(Clone, Debug)]
pub struct ResourceAllocationScorer {
    /// The name logged as `resourceAllocationScorer`.
    pub name: &'static str,
    pub resources: Vec<ResourceSpec>,
    /// Score on actual requests (BalancedAllocation) rather than the
    /// non-zero ones (LeastAllocated).
    pub use_requested: bool,
}

impl ResourceAllocationScorer {
    /// The pod's request per configured resource.
    pub fn pod_requests(&self, pod: &PodInfo) -> Vec<i64> {
        self.resources
            .iter()
            .map(|r| match (r.name.as_str(), self.use_requested) {
                (CPU, false) => pod.non_zero_milli_cpu,
                (MEMORY, false) => pod.non_zero_memory,
                (name, _) => pod.requests.get(name),
            })
            .collect()
    }

    /// `(allocatable, requested incl. this pod)` of one resource on a node.
    fn allocatable_request(&self, node: &NodeInfo, name: &str, pod_request: i64) -> (i64, i64) {
        let requested = if self.use_requested {
            &node.requested
        } else {
            &node.non_zero_requested
        };
        if pod_request == 0 && resources::is_scalar_resource_name(name) {
            return (0, 0);
        }
        match name {
            CPU => (
                node.allocatable.milli_cpu,
                requested.milli_cpu + pod_request,
            ),
            MEMORY => (node.allocatable.memory, requested.memory + pod_request),
            EPHEMERAL_STORAGE => (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage + pod_request,
            ),
            other => match node.allocatable.scalar.get(other) {
                Some(&a) => (a, node.requested.get(other) + pod_request),
                None => (0, 0),
            },
        }
    }

    /// Scores a node with `scorer(requested, allocatable)`; resources the
    /// node does not have are left at zero for the scorer to skip.
    pub fn score(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        pod_requests: &[i64],
        scorer: impl Fn(&[i64], &[i64]) -> i64,
        trace: &mut Trace,
    ) -> i64 {
        let n = self.resources.len();
        let mut requested = vec![0; n];
        let mut allocatable = vec![0; n];
        for (i, r) in self.resources.iter().enumerate() {
            let (alloc, req) = self.allocatable_request(node, &r.name, pod_requests[i]);
            if alloc == 0 {
                continue;
            }
            allocatable[i] = alloc;
            requested[i] = req;
        }
        let score = scorer(&requested, &allocatable);
        if trace.is_enabled() {
            trace.push(
                10,
                Line::msg(
                    "Listed internal info for allocatable resources, requested resources and score",
                )
                .s("pod", &pod.key)
                .s("node", &node.name)
                .s("resourceAllocationScorer", self.name)
                .ints("allocatableResource", &allocatable)
                .ints("requestedResource", &requested)
                .v("resourceScore", score)
                .build(),
            );
        }
        score
    }
}
