//! `TaintToleration`: a pod must tolerate a node's `NoSchedule` and
//! `NoExecute` taints to be placed there, and prefers nodes with fewer
//! `PreferNoSchedule` taints it does not tolerate.

use std::sync::Arc;

use ackemu_kube::api::core::v1::{Taint, Toleration};

use crate::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Status, default_normalize_score,
};
use crate::plugins::{names, tolerations_tolerate_taint};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// The first `NoSchedule`/`NoExecute` taint no toleration tolerates
/// (`FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations_tolerate_taint(tolerations, t)
    })
}

/// The filter's reason for a taint, as 1.33 prints it.
pub fn untolerated_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

#[derive(Clone, Debug)]
pub struct TaintToleration {
    /// 100 for the plugin; 10 for the 1.11 `TaintTolerationPriority`.
    pub max_score: i64,
    pub name: &'static str,
}

impl Default for TaintToleration {
    fn default() -> Self {
        TaintToleration {
            max_score: MAX_NODE_SCORE,
            name: names::TAINT_TOLERATION,
        }
    }
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match find_untolerated_taint(&node.taints, &pod.tolerations) {
            None => Status::success(),
            Some(t) => Status::new(Code::UnschedulableAndUnresolvable, untolerated_reason(t)),
        }
    }
}

/// How many `PreferNoSchedule` taints the tolerations leave untolerated.
fn count_intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerations_tolerate_taint(tolerations, t))
        .count() as i64
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        self.name
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let prefer: Vec<Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, prefer);
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
        let tolerations = state
            .read::<Vec<Toleration>>(PRE_SCORE_KEY)
            .map(Vec::as_slice)
            .unwrap_or(&pod.tolerations);
        Ok(count_intolerable_prefer_no_schedule(
            &node.taints,
            tolerations,
        ))
    }

    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
        _trace: &mut Trace,
    ) -> Status {
        default_normalize_score(self.max_score, true, scores);
        Status::success()
    }

    fn max_score(&self) -> i64 {
        self.max_score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::plugins::run_filter;
    use crate::snapshot::Workloads;

    #[test]
    fn taint_filter_table() {
        let cases = [
            (
                "no taints",
                NodeBuilder::new("n1"),
                PodBuilder::new("d", "p"),
                None,
            ),
            (
                "untolerated NoSchedule",
                NodeBuilder::new("n1").taint("dedicated", "gpu", "NoSchedule"),
                PodBuilder::new("d", "p"),
                Some("node(s) had untolerated taint {dedicated: gpu}"),
            ),
            (
                "master taint without value",
                NodeBuilder::new("n1").taint(
                    "node-role.kubernetes.io/control-plane",
                    "",
                    "NoSchedule",
                ),
                PodBuilder::new("d", "p"),
                Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
            ),
            (
                "NoExecute counts too",
                NodeBuilder::new("n1").taint("node.kubernetes.io/not-ready", "", "NoExecute"),
                PodBuilder::new("d", "p"),
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "PreferNoSchedule does not filter",
                NodeBuilder::new("n1").taint("k", "v", "PreferNoSchedule"),
                PodBuilder::new("d", "p"),
                None,
            ),
            (
                "tolerated",
                NodeBuilder::new("n1").taint("dedicated", "gpu", "NoSchedule"),
                PodBuilder::new("d", "p").toleration("dedicated", "Equal", "gpu", "NoSchedule"),
                None,
            ),
            (
                "first untolerated taint is reported",
                NodeBuilder::new("n1")
                    .taint("a", "1", "NoSchedule")
                    .taint("b", "2", "NoSchedule"),
                PodBuilder::new("d", "p").toleration("a", "Exists", "", ""),
                Some("node(s) had untolerated taint {b: 2}"),
            ),
        ];
        for (name, node, pod, want) in cases {
            let s = run_filter(
                &TaintToleration::default(),
                pod.build(),
                node.build(),
                vec![],
            );
            match want {
                None => assert!(s.is_success(), "{name}: {s:?}"),
                Some(r) => {
                    assert_eq!(s.code, Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(s.reasons, [r], "{name}");
                }
            }
        }
    }

    #[test]
    fn taint_score_table() {
        // Nodes with 0, 1 and 2 untolerated PreferNoSchedule taints.
        let nodes = vec![
            NodeBuilder::new("clean").build(),
            NodeBuilder::new("one")
                .taint("a", "1", "PreferNoSchedule")
                .build(),
            NodeBuilder::new("two")
                .taint("a", "1", "PreferNoSchedule")
                .taint("b", "2", "PreferNoSchedule")
                .build(),
        ];
        let cases = [
            (
                "intolerant pod",
                PodBuilder::new("d", "p"),
                vec![100, 50, 0],
            ),
            (
                "tolerates a",
                PodBuilder::new("d", "p").toleration("a", "Exists", "", "PreferNoSchedule"),
                vec![100, 100, 0],
            ),
            (
                "a NoSchedule toleration does not count",
                PodBuilder::new("d", "p").toleration("a", "Exists", "", "NoSchedule"),
                vec![100, 50, 0],
            ),
            (
                "tolerates everything",
                PodBuilder::new("d", "p").toleration("", "Exists", "", ""),
                vec![100, 100, 100],
            ),
        ];
        let snap = Snapshot::from_objects(nodes, vec![], Workloads::default());
        let by_name = |n: &str| snap.get(n).cloned().unwrap();
        let order = [by_name("clean"), by_name("one"), by_name("two")];
        for (name, pod, want) in cases {
            let pod = PodInfo::new(pod.build());
            let pl = TaintToleration::default();
            let mut state = CycleState::new();
            pl.pre_score(&mut state, &pod, &snap, &order);
            let mut scores: Vec<i64> = order
                .iter()
                .map(|n| {
                    pl.score(&state, &pod, n, &snap, &mut Trace::disabled())
                        .unwrap()
                })
                .collect();
            pl.normalize(&state, &pod, &order, &mut scores, &mut Trace::disabled());
            assert_eq!(scores, want, "{name}");
        }
    }
}
