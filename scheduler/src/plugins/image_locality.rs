//! `ImageLocality`: prefer nodes that already hold the pod's images,
//! weighted by image size and by how widely the image is spread (an image
//! on every node says nothing).

use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin, Status};
use crate::plugins::names;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot, normalized_image_name};
use crate::trace::Trace;

const MB: i64 = 1024 * 1024;
/// Below this the score is zero (a small image is pulled quickly anyway).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: above this the score is the maximum.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Clone, Copy, Debug, Default)]
pub struct ImageLocality;

fn calculate_priority(sum: i64, num_containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * num_containers as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD));
    if max <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// The pod's images, normalized, and its container count.
struct PodImages {
    names: Vec<String>,
    containers: usize,
}

fn pod_images(pod: &PodInfo) -> PodImages {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return PodImages {
            names: Vec::new(),
            containers: 0,
        };
    };
    let containers: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    PodImages {
        names: containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image_name)
            .collect(),
        containers: containers.len(),
    }
}

const PRE_SCORE_KEY: &str = "PreScoreImageLocality";

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        names::IMAGE_LOCALITY
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        state.write(PRE_SCORE_KEY, pod_images(pod));
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
        let images = match state.read::<PodImages>(PRE_SCORE_KEY) {
            Some(i) => i,
            None => {
                computed = pod_images(pod);
                &computed
            }
        };
        let total = snapshot.num_nodes().max(1) as f64;
        let mut sum = 0;
        for name in &images.names {
            if let Some(&size) = node.image_sizes.get(name) {
                let spread = snapshot.image_num_nodes(name) as f64 / total;
                sum += (size as f64 * spread) as i64;
            }
        }
        Ok(calculate_priority(sum, images.containers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::snapshot::Workloads;

    #[test]
    fn image_locality_table() {
        let img = "registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest";
        let nodes = vec![
            NodeBuilder::new("a").image(&[img], 300 * MB).build(),
            NodeBuilder::new("b").image(&[img], 300 * MB).build(),
            NodeBuilder::new("c").image(&["small:1"], 10 * MB).build(),
            NodeBuilder::new("d").build(),
        ];
        let snap = Snapshot::from_objects(nodes, vec![], Workloads::default());
        let score = |pod: &PodInfo, n: &str| {
            ImageLocality
                .score(
                    &CycleState::new(),
                    pod,
                    snap.get(n).unwrap(),
                    &snap,
                    &mut Trace::disabled(),
                )
                .unwrap()
        };
        // 300 MiB on 2 of 4 nodes counts 150 MiB: 100·(150−23)/(1000−23) = 12.
        let app = PodInfo::new(PodBuilder::new("d", "p").image(img).build());
        assert_eq!(score(&app, "a"), 12);
        assert_eq!(score(&app, "d"), 0);
        // The tag defaults to latest.
        let untagged = PodInfo::new(
            PodBuilder::new("d", "p")
                .image("registry.cn-hangzhou.aliyuncs.com/kube-easy/app")
                .build(),
        );
        assert_eq!(score(&untagged, "b"), 12);
        // Small images stay under the threshold.
        let small = PodInfo::new(PodBuilder::new("d", "p").image("small:1").build());
        assert_eq!(score(&small, "c"), 0);
    }
}
