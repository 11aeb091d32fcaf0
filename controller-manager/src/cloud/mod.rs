//! The cloud-controller-manager's decisions: routes ([`route`]), load
//! balancers ([`service`]) and nodes ([`node`]). Instances, routes and
//! load balancers are described here the way the cloud's Describe* calls
//! return them; the driver translates these decisions into Vpc, Slb and Ecs
//! calls and reports the cloud's answers back.

pub mod node;
pub mod route;
pub mod service;

use ackemu_kube::api::core::v1::Node;

/// An ECS instance as `DescribeInstances` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// `Running`, `Stopped`, `Starting`, `Stopping`, `Pending`.
    pub status: String,
    pub instance_type: String,
    pub region: String,
    pub zone: String,
    pub private_ip: String,
    pub hostname: String,
}

/// `spec.providerID` of a node on instance `id` in `region`, as Alibaba
/// Cloud's cloud-controller-manager writes it: `<region>.<instance-id>`.
pub fn provider_id(region: &str, id: &str) -> String {
    format!("{region}.{id}")
}

/// The instance id in a node's providerID (`<region>.<id>`, optionally
/// with an `alicloud://` scheme).
pub fn instance_id(node: &Node) -> Option<String> {
    let p = node.spec.as_ref()?.provider_id.as_deref()?;
    let p = p.strip_prefix("alicloud://").unwrap_or(p);
    let id = p.rsplit_once('.').map(|(_, id)| id).unwrap_or(p);
    (!id.is_empty()).then(|| id.to_owned())
}

/// The node's InternalIP, the key the cloud node controller looks its
/// instance up by before it has a providerID.
pub fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}
