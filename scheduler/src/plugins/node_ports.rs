//! `NodePorts`: a pod's `hostPort`s must be free on the node.

use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::plugins::names;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        names::NODE_PORTS
    }

    fn pre_filter(&self, _state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        if pod.host_ports.is_empty() {
            return Status::skip();
        }
        Status::success()
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod
            .host_ports
            .iter()
            .any(|hp| node.used_ports.conflicts(hp))
        {
            return Status::new(Code::Unschedulable, ERR_REASON);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use crate::plugins::run_filter;

    #[test]
    fn node_ports_table() {
        let existing = |b: PodBuilder| vec![b.build()];
        let cases = [
            ("no host ports", PodBuilder::new("d", "p"), vec![], true),
            (
                "free port",
                PodBuilder::new("d", "p").host_port(8080),
                existing(PodBuilder::new("d", "o").host_port(80)),
                true,
            ),
            (
                "same port on all addresses",
                PodBuilder::new("d", "p").host_port(80),
                existing(PodBuilder::new("d", "o").host_port(80)),
                false,
            ),
            (
                "same port, other protocol",
                PodBuilder::new("d", "p").host_port_on("", "UDP", 53),
                existing(PodBuilder::new("d", "o").host_port_on("", "TCP", 53)),
                true,
            ),
            (
                "specific address against 0.0.0.0",
                PodBuilder::new("d", "p").host_port_on("10.0.0.1", "", 80),
                existing(PodBuilder::new("d", "o").host_port(80)),
                false,
            ),
            (
                "two specific addresses",
                PodBuilder::new("d", "p").host_port_on("10.0.0.1", "", 80),
                existing(PodBuilder::new("d", "o").host_port_on("10.0.0.2", "", 80)),
                true,
            ),
        ];
        for (name, pod, on_node, fits) in cases {
            let s = run_filter(
                &NodePorts,
                pod.build(),
                NodeBuilder::new("n1").build(),
                on_node,
            );
            assert_eq!(s.is_success(), fits, "{name}");
            if !fits {
                assert_eq!(s.code, Code::Unschedulable);
                assert_eq!(s.reasons, [ERR_REASON], "{name}");
            }
        }
    }
}
