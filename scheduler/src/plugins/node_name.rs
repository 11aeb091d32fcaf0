//! `NodeName`: a pod that names its node fits only there.

use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::plugins::names;
use crate::snapshot::{NodeInfo, PodInfo};

pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        names::NODE_NAME
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name.as_deref() {
            None => Status::success(),
            Some(n) if n == node.name => Status::success(),
            Some(_) => Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::plugins::run_filter;

    #[test]
    fn node_name_table() {
        let cases = [
            ("no node name", PodBuilder::new("default", "p"), true),
            (
                "same node",
                PodBuilder::new("default", "p").node_name("n1"),
                true,
            ),
            (
                "other node",
                PodBuilder::new("default", "p").node_name("n2"),
                false,
            ),
        ];
        for (name, pod, fits) in cases {
            let s = run_filter(
                &NodeName,
                pod.build(),
                NodeBuilder::new("n1").build(),
                vec![],
            );
            assert_eq!(s.is_success(), fits, "{name}");
            if !fits {
                assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
                assert_eq!(s.reasons, [ERR_REASON]);
            }
        }
    }
}
