//! `NodeUnschedulable`: cordoned nodes (`spec.unschedulable`) take only pods
//! that tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use ackemu_kube::api::core::v1::Taint;

use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::plugins::{names, tolerations_tolerate_taint};
use crate::snapshot::{NodeInfo, PodInfo};

pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        names::NODE_UNSCHEDULABLE
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate_taint(&pod.tolerations, &taint) {
            return Status::success();
        }
        Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON_UNSCHEDULABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::plugins::run_filter;

    #[test]
    fn node_unschedulable_table() {
        let cases = [
            (
                "schedulable node",
                NodeBuilder::new("n1"),
                PodBuilder::new("d", "p"),
                true,
            ),
            (
                "cordoned node",
                NodeBuilder::new("n1").unschedulable(),
                PodBuilder::new("d", "p"),
                false,
            ),
            (
                "cordoned node, pod tolerates the unschedulable taint",
                NodeBuilder::new("n1").unschedulable(),
                PodBuilder::new("d", "p").toleration(
                    TAINT_NODE_UNSCHEDULABLE,
                    "Exists",
                    "",
                    "NoSchedule",
                ),
                true,
            ),
            (
                "cordoned node, toleration for another effect",
                NodeBuilder::new("n1").unschedulable(),
                PodBuilder::new("d", "p").toleration(
                    TAINT_NODE_UNSCHEDULABLE,
                    "Exists",
                    "",
                    "NoExecute",
                ),
                false,
            ),
        ];
        for (name, node, pod, fits) in cases {
            let s = run_filter(&NodeUnschedulable, pod.build(), node.build(), vec![]);
            assert_eq!(s.is_success(), fits, "{name}");
            if !fits {
                assert_eq!(s.reasons, [ERR_REASON_UNSCHEDULABLE], "{name}");
                assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
            }
        }
    }
}
