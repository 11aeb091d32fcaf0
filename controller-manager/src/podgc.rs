//! Pod garbage collection (`pkg/controller/podgc`): terminated pods beyond
//! the threshold (oldest first), pods bound to nodes that have been gone
//! for the 40 s quarantine, terminating pods that were never scheduled, and
//! terminating pods on not-ready nodes tainted `out-of-service` are marked
//! Failed with a `DisruptionTarget` condition and force-deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::api::core::v1::{Node, Pod};

use crate::replicaset::PodRef;
use crate::util::fit::{TAINT_OUT_OF_SERVICE, node_taints};
use crate::util::{Now, pod as podutil};

/// `--terminated-pod-gc-threshold`.
pub const DEFAULT_TERMINATED_THRESHOLD: usize = 12500;
/// `quarantineTime`.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// `gcCheckPeriod`.
pub const GC_PERIOD: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodGcAction {
    pub pod: PodRef,
    /// Patch phase Failed and this `DisruptionTarget` condition (reason,
    /// message) first, unless the pod is terminal already.
    pub condition: Option<(&'static str, &'static str)>,
    /// Confirm with a live GET that this node is really gone before acting.
    pub verify_node_absent: Option<String>,
}

/// The quarantine of missing nodes.
#[derive(Clone, Debug, Default)]
pub struct PodGc {
    pub terminated_threshold: usize,
    missing_since: BTreeMap<String, ClusterInstant>,
}

fn terminated(p: &Pod) -> bool {
    !matches!(
        podutil::phase(p),
        podutil::PHASE_PENDING | podutil::PHASE_RUNNING | podutil::PHASE_UNKNOWN
    )
}

fn node_ready(n: &Node) -> bool {
    crate::nodelifecycle::node_condition(n, "Ready").is_some_and(|c| c.status == "True")
}

impl PodGc {
    pub fn new(terminated_threshold: usize) -> PodGc {
        PodGc {
            terminated_threshold,
            missing_since: BTreeMap::new(),
        }
    }

    /// One `gc` pass.
    pub fn gc(&mut self, pods: &[&Pod], nodes: &[&Node], now: Now) -> Vec<PodGcAction> {
        let mut out = Vec::new();
        let by_name: BTreeMap<&str, &Node> = nodes
            .iter()
            .map(|n| (crate::util::meta::name(&n.metadata), *n))
            .collect();
        // Terminated pods over the threshold, evicted first, then oldest.
        if self.terminated_threshold > 0 {
            let mut done: Vec<&Pod> = pods.iter().copied().filter(|p| terminated(p)).collect();
            if done.len() > self.terminated_threshold {
                done.sort_by_key(|p| {
                    let evicted =
                        p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
                    (
                        !evicted,
                        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    )
                });
                let n = done.len() - self.terminated_threshold;
                out.extend(done.into_iter().take(n).map(|p| PodGcAction {
                    pod: PodRef::of(p),
                    condition: None,
                    verify_node_absent: None,
                }));
            }
        }
        // Terminating pods on out-of-service, not-ready nodes.
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
        {
            if let Some(n) = by_name.get(podutil::node_name(p))
                && !node_ready(n)
                && node_taints(n).iter().any(|t| t.key == TAINT_OUT_OF_SERVICE)
            {
                out.push(PodGcAction {
                    pod: PodRef::of(p),
                    condition: Some(("DeletionByPodGC", "PodGC: node is out of service")),
                    verify_node_absent: None,
                });
            }
        }
        // Orphaned pods: node missing for the quarantine.
        let missing: BTreeSet<&str> = pods
            .iter()
            .map(|p| podutil::node_name(p))
            .filter(|n| !n.is_empty() && !by_name.contains_key(n))
            .collect();
        self.missing_since
            .retain(|n, _| missing.contains(n.as_str()));
        for n in &missing {
            self.missing_since
                .entry((*n).to_owned())
                .or_insert(now.mono);
        }
        for p in pods {
            let n = podutil::node_name(p);
            if self
                .missing_since
                .get(n)
                .is_some_and(|since| now.mono.saturating_duration_since(*since) >= QUARANTINE)
            {
                out.push(PodGcAction {
                    pod: PodRef::of(p),
                    condition: Some(("DeletionByPodGC", "PodGC: node no longer exists")),
                    verify_node_absent: Some(n.to_owned()),
                });
            }
        }
        // Terminating pods that were never scheduled.
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && podutil::node_name(p).is_empty())
        {
            out.push(PodGcAction {
                pod: PodRef::of(p),
                condition: None,
                verify_node_absent: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{node, pod};
    use ackemu_kube::api::core::v1::Taint;

    fn names(a: &[PodGcAction]) -> Vec<String> {
        a.iter().map(|x| x.pod.name.clone()).collect()
    }

    #[test]
    fn terminated_over_threshold_oldest_first() {
        let old = pod("ns", "old").phase("Succeeded").created(0).build();
        let new = pod("ns", "new").phase("Failed").created(10).build();
        let running = pod("ns", "run").node("n1").ready(0).build();
        let n1 = node("n1", "4", "8Gi");
        let mut gc = PodGc::new(1);
        assert_eq!(
            names(&gc.gc(&[&new, &old, &running], &[&n1], Now::at_secs(0))),
            vec!["old"]
        );
    }

    #[test]
    fn orphans_after_quarantine() {
        let p = pod("ns", "p").node("gone").ready(0).build();
        let n1 = node("n1", "4", "8Gi");
        let mut gc = PodGc::new(DEFAULT_TERMINATED_THRESHOLD);
        assert!(gc.gc(&[&p], &[&n1], Now::at_secs(0)).is_empty());
        assert!(gc.gc(&[&p], &[&n1], Now::at_secs(20)).is_empty());
        let out = gc.gc(&[&p], &[&n1], Now::at_secs(40));
        assert_eq!(
            out,
            vec![PodGcAction {
                pod: PodRef::of(&p),
                condition: Some(("DeletionByPodGC", "PodGC: node no longer exists")),
                verify_node_absent: Some("gone".into())
            }]
        );
        // The node came back: quarantine ends.
        let back = node("gone", "4", "8Gi");
        assert!(gc.gc(&[&p], &[&n1, &back], Now::at_secs(60)).is_empty());
        assert!(
            gc.gc(&[&p], &[&n1], Now::at_secs(61)).is_empty(),
            "a fresh quarantine starts"
        );
    }

    #[test]
    fn terminating_pods() {
        let unscheduled = pod("ns", "u").deleting(1).build();
        let stuck = pod("ns", "s").node("n1").ready(0).deleting(1).build();
        let mut n1 = node("n1", "4", "8Gi");
        let mut gc = PodGc::new(DEFAULT_TERMINATED_THRESHOLD);
        assert_eq!(
            names(&gc.gc(&[&unscheduled, &stuck], &[&n1], Now::at_secs(0))),
            vec!["u"]
        );
        n1.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        n1.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: TAINT_OUT_OF_SERVICE.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }]);
        assert_eq!(
            names(&gc.gc(&[&unscheduled, &stuck], &[&n1], Now::at_secs(0))),
            vec!["s", "u"]
        );
    }
}
