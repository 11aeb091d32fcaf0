//! The in-tree plugins of the default profile (Kubernetes
//! `pkg/scheduler/framework/plugins`), with Kubernetes' names, reasons,
//! formulas and default weights.

pub mod balanced_allocation;
pub mod image_locality;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod resource_allocation;
pub mod taint_toleration;

use ackemu_kube::api::core::v1::{Taint, Toleration};

/// Plugin names as configured and logged.
pub mod names {
    pub const NODE_NAME: &str = "NodeName";
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    pub const NODE_PORTS: &str = "NodePorts";
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    pub const NODE_RESOURCES_BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
    pub const IMAGE_LOCALITY: &str = "ImageLocality";
}

/// `Toleration.ToleratesTaint`: an empty effect matches every effect, an
/// empty key with `Exists` matches every taint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any toleration tolerates the taint.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// Runs a filter plugin the way the framework does, for table tests.
#[cfg(test)]
pub(crate) fn run_filter(
    pl: &dyn crate::framework::FilterPlugin,
    pod: ackemu_kube::api::core::v1::Pod,
    node: ackemu_kube::api::core::v1::Node,
    pods_on_node: Vec<ackemu_kube::api::core::v1::Pod>,
) -> crate::framework::Status {
    use crate::framework::CycleState;
    use crate::snapshot::{PodInfo, Snapshot, Workloads};
    let name = node.metadata.name.clone().unwrap_or_default();
    let pods = pods_on_node
        .into_iter()
        .map(|mut p| {
            p.spec.get_or_insert_with(Default::default).node_name = Some(name.clone());
            p
        })
        .collect();
    let snap = Snapshot::from_objects(vec![node], pods, Workloads::default());
    let pod = PodInfo::new(pod);
    let mut state = CycleState::new();
    let pre = pl.pre_filter(&mut state, &pod, &snap);
    if pre.is_skip() {
        return crate::framework::Status::success();
    }
    if !pre.is_success() {
        return pre;
    }
    let ni = snap.get(&name).cloned().unwrap_or_default();
    pl.filter(&state, &pod, &ni)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let o = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: o(key),
            operator: o(op),
            value: o(value),
            effect: o(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching_table() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let cases = [
            (tol("dedicated", "Equal", "gpu", "NoSchedule"), true),
            (tol("dedicated", "", "gpu", "NoSchedule"), true),
            (tol("dedicated", "Equal", "cpu", "NoSchedule"), false),
            (tol("dedicated", "Exists", "", "NoSchedule"), true),
            (tol("dedicated", "Exists", "", ""), true),
            (tol("dedicated", "Exists", "", "NoExecute"), false),
            (tol("", "Exists", "", ""), true),
            (tol("other", "Exists", "", ""), false),
            (tol("dedicated", "Gt", "gpu", ""), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{t:?}");
        }
    }
}
