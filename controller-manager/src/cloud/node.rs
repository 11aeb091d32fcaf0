//! The cloud node controllers (`pkg/controller/cloud` in cloud-provider):
//! initialization of nodes registered with the
//! `node.cloudprovider.kubernetes.io/uninitialized` taint (providerID,
//! instance-type / zone / region labels, addresses), and the lifecycle
//! check of not-ready nodes — the Node is deleted when its instance no
//! longer exists (an ECS released behind the cluster's back), and tainted
//! `node.cloudprovider.kubernetes.io/shutdown` while the instance is
//! stopped.

use std::collections::BTreeMap;

use ackemu_kube::api::core::v1::{Node, NodeAddress, Taint};

use super::{Instance, provider_id};
use crate::util::fit::EFFECT_NO_SCHEDULE;
use crate::util::{Event, ObjectRef, meta};

pub const TAINT_UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";
pub const TAINT_SHUTDOWN: &str = "node.cloudprovider.kubernetes.io/shutdown";
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const LABEL_INSTANCE_TYPE_BETA: &str = "beta.kubernetes.io/instance-type";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";

fn node_ref(n: &Node) -> ObjectRef {
    let mut r = ObjectRef::new("v1", "Node", &n.metadata);
    r.uid = r.name.clone();
    r
}

pub fn uninitialized(node: &Node) -> bool {
    crate::util::fit::node_taints(node)
        .iter()
        .any(|t| t.key == TAINT_UNINITIALIZED)
}

/// `syncNode` of the cloud node controller: the node as it should be after
/// initialization, or `None` when nothing changes.
pub fn initialize(node: &Node, inst: &Instance) -> Option<Node> {
    let mut n = node.clone();
    let spec = n.spec.get_or_insert_with(Default::default);
    if spec.provider_id.as_deref().is_none_or(str::is_empty) {
        spec.provider_id = Some(provider_id(&inst.region, &inst.id));
    }
    if let Some(t) = spec.taints.as_mut() {
        t.retain(|t| t.key != TAINT_UNINITIALIZED);
    }
    let labels = n.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in [
        (LABEL_INSTANCE_TYPE, &inst.instance_type),
        (LABEL_INSTANCE_TYPE_BETA, &inst.instance_type),
        (LABEL_ZONE, &inst.zone),
        (LABEL_ZONE_BETA, &inst.zone),
        (LABEL_REGION, &inst.region),
        (LABEL_REGION_BETA, &inst.region),
    ] {
        if !v.is_empty() {
            labels.insert(k.into(), v.clone());
        }
    }
    let st = n.status.get_or_insert_with(Default::default);
    let mut addrs: Vec<NodeAddress> = Vec::new();
    if !inst.private_ip.is_empty() {
        addrs.push(NodeAddress {
            type_: "InternalIP".into(),
            address: inst.private_ip.clone(),
        });
    }
    let host = if inst.hostname.is_empty() {
        meta::name(&node.metadata).to_owned()
    } else {
        inst.hostname.clone()
    };
    addrs.push(NodeAddress {
        type_: "Hostname".into(),
        address: host,
    });
    st.addresses = Some(addrs);
    (n != *node).then_some(n)
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeLifecycleAction {
    /// Delete the Node object.
    DeleteNode {
        name: String,
        uid: String,
    },
    PatchTaints {
        node: String,
        add: Vec<Taint>,
        remove: Vec<Taint>,
    },
    Event(Event),
}

/// `MonitorNodes` for one node: `instance` is `None` when the cloud says
/// the instance does not exist.
pub fn lifecycle(node: &Node, instance: Option<&Instance>) -> Vec<NodeLifecycleAction> {
    let name = meta::name(&node.metadata).to_owned();
    let ready =
        crate::nodelifecycle::node_condition(node, "Ready").is_some_and(|c| c.status == "True");
    let shutdown_taint = Taint {
        key: TAINT_SHUTDOWN.into(),
        effect: EFFECT_NO_SCHEDULE.into(),
        ..Default::default()
    };
    let has_shutdown = crate::util::fit::node_taints(node)
        .iter()
        .any(|t| t.key == TAINT_SHUTDOWN);
    if ready {
        if has_shutdown {
            return vec![NodeLifecycleAction::PatchTaints {
                node: name,
                add: vec![],
                remove: vec![shutdown_taint],
            }];
        }
        return Vec::new();
    }
    match instance {
        None => vec![
            NodeLifecycleAction::Event(Event::normal(
                node_ref(node),
                "DeletingNode",
                format!("Deleting node {name} because it does not exist in the cloud provider"),
            )),
            NodeLifecycleAction::DeleteNode {
                name,
                uid: meta::uid(&node.metadata).to_owned(),
            },
        ],
        Some(i) if i.status == "Stopped" && !has_shutdown => {
            vec![NodeLifecycleAction::PatchTaints {
                node: name,
                add: vec![shutdown_taint],
                remove: vec![],
            }]
        }
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::node;

    fn inst(status: &str) -> Instance {
        Instance {
            id: "i-abc".into(),
            status: status.into(),
            instance_type: "ecs.g6.large".into(),
            region: "cn-hangzhou".into(),
            zone: "cn-hangzhou-k".into(),
            private_ip: "192.168.0.41".into(),
            hostname: "iZbp1abc".into(),
        }
    }

    #[test]
    fn initializes_uninitialized_nodes() {
        let mut n = node("n1", "2", "8Gi");
        n.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: TAINT_UNINITIALIZED.into(),
            value: Some("true".into()),
            effect: EFFECT_NO_SCHEDULE.into(),
            time_added: None,
        }]);
        assert!(uninitialized(&n));
        let done = initialize(&n, &inst("Running")).unwrap();
        assert!(!uninitialized(&done));
        assert_eq!(
            done.spec.as_ref().unwrap().provider_id.as_deref(),
            Some("cn-hangzhou.i-abc")
        );
        assert_eq!(crate::cloud::instance_id(&done).as_deref(), Some("i-abc"));
        let l = done.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (
                l[LABEL_INSTANCE_TYPE].as_str(),
                l[LABEL_ZONE].as_str(),
                l[LABEL_REGION].as_str()
            ),
            ("ecs.g6.large", "cn-hangzhou-k", "cn-hangzhou")
        );
        assert_eq!(
            crate::cloud::internal_ip(&done).as_deref(),
            Some("192.168.0.41")
        );
        assert_eq!(initialize(&done, &inst("Running")), None);
    }

    #[test]
    fn lifecycle_table() {
        let ready = node("n1", "2", "8Gi");
        let mut down = ready.clone();
        down.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        assert!(
            lifecycle(&ready, None).is_empty(),
            "ready nodes are never deleted"
        );
        assert!(
            matches!(&lifecycle(&down, None)[..], [NodeLifecycleAction::Event(e), NodeLifecycleAction::DeleteNode { name, .. }] if name == "n1" && e.message == "Deleting node n1 because it does not exist in the cloud provider")
        );
        assert!(
            matches!(&lifecycle(&down, Some(&inst("Stopped")))[..], [NodeLifecycleAction::PatchTaints { add, .. }] if add[0].key == TAINT_SHUTDOWN)
        );
        assert!(lifecycle(&down, Some(&inst("Running"))).is_empty());
    }
}
