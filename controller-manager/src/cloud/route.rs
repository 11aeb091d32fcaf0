//! The route controller (`pkg/controller/route` in
//! cloud-provider): the VPC route table must hold one route per node
//! podCIDR, next hop the node's instance. Missing routes are created,
//! routes inside the cluster CIDR that no node claims (or that point at the
//! wrong instance) are deleted, and each node's `NetworkUnavailable`
//! condition says whether its routes exist. Routes outside the cluster
//! CIDR are never touched.

use std::collections::{BTreeMap, BTreeSet};

use ackemu_kube::api::core::v1::{Node, NodeCondition};
use ackemu_kube::meta::Time;
use ipnet::IpNet;

use super::instance_id;
use crate::nodeipam::node_pod_cidrs;
use crate::util::{Event, Now, ObjectRef, meta};

/// A route entry as `DescribeRouteTables` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CloudRoute {
    pub destination: IpNet,
    /// The next-hop instance; empty for system (local) routes.
    pub instance_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteAction {
    /// `CreateRouteEntry` (NextHopType Instance, name hint the node uid).
    Create {
        node: String,
        name_hint: String,
        destination: IpNet,
        instance_id: String,
    },
    /// `DeleteRouteEntry`.
    Delete {
        destination: IpNet,
        instance_id: String,
    },
}

/// What a reconcile wants done.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutePlan {
    pub actions: Vec<RouteAction>,
}

fn responsible(r: &CloudRoute, cluster_cidrs: &[IpNet]) -> bool {
    !r.instance_id.is_empty() && cluster_cidrs.iter().any(|c| c.contains(&r.destination))
}

/// `reconcile(nodes, routes)`.
pub fn reconcile(nodes: &[&Node], routes: &[CloudRoute], cluster_cidrs: &[IpNet]) -> RoutePlan {
    let mut actions = Vec::new();
    let existing: BTreeSet<(IpNet, &str)> = routes
        .iter()
        .map(|r| (r.destination, r.instance_id.as_str()))
        .collect();
    let mut wanted: BTreeSet<(IpNet, String)> = BTreeSet::new();
    for n in nodes {
        let Some(id) = instance_id(n) else { continue };
        for cidr in node_pod_cidrs(n).unwrap_or_default() {
            wanted.insert((cidr, id.clone()));
            if !existing.contains(&(cidr, id.as_str())) {
                actions.push(RouteAction::Create {
                    node: meta::name(&n.metadata).to_owned(),
                    name_hint: meta::uid(&n.metadata).to_owned(),
                    destination: cidr,
                    instance_id: id.clone(),
                });
            }
        }
    }
    for r in routes {
        if responsible(r, cluster_cidrs)
            && !wanted.contains(&(r.destination, r.instance_id.clone()))
        {
            actions.push(RouteAction::Delete {
                destination: r.destination,
                instance_id: r.instance_id.clone(),
            });
        }
    }
    // A destination moving to another instance: delete the old route first.
    actions.sort_by_key(|a| matches!(a, RouteAction::Create { .. }));
    RoutePlan { actions }
}

/// `updateNetworkingCondition`: the NetworkUnavailable condition a node
/// should carry, or `None` when it already does. `created` is whether all
/// its routes exist now.
pub fn network_condition(node: &Node, created: bool, now: Now) -> Option<NodeCondition> {
    let (status, reason, message) = if created {
        ("False", "RouteCreated", "RouteController created a route")
    } else {
        (
            "True",
            "NoRouteCreated",
            "RouteController failed to create a route",
        )
    };
    let cur = crate::nodelifecycle::node_condition(node, "NetworkUnavailable");
    if cur.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason)) {
        return None;
    }
    Some(NodeCondition {
        type_: "NetworkUnavailable".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now.wall)),
        last_heartbeat_time: Some(Time(now.wall)),
    })
}

/// Which nodes have all their routes, given the table after the writes.
pub fn routes_created(nodes: &[&Node], routes: &[CloudRoute]) -> BTreeMap<String, bool> {
    let have: BTreeSet<(IpNet, &str)> = routes
        .iter()
        .map(|r| (r.destination, r.instance_id.as_str()))
        .collect();
    nodes
        .iter()
        .filter_map(|n| {
            let id = instance_id(n)?;
            let cidrs = node_pod_cidrs(n).ok().filter(|c| !c.is_empty())?;
            Some((
                meta::name(&n.metadata).to_owned(),
                cidrs.iter().all(|c| have.contains(&(*c, id.as_str()))),
            ))
        })
        .collect()
}

/// The Warning event for a route that could not be created.
pub fn failed_event(node: &Node, destination: IpNet, error: &str) -> Event {
    let mut r = ObjectRef::new("v1", "Node", &node.metadata);
    r.uid = r.name.clone();
    Event::warning(
        r,
        "FailedToCreateRoute",
        format!(
            "Could not create route {} {destination} for node {}: {error}",
            meta::uid(&node.metadata),
            meta::name(&node.metadata)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::node;

    fn n(name: &str, cidr: &str, inst: &str) -> Node {
        let mut x = node(name, "4", "8Gi");
        let s = x.spec.as_mut().unwrap();
        s.pod_cidr = Some(cidr.into());
        s.pod_cidrs = Some(vec![cidr.into()]);
        s.provider_id = Some(crate::cloud::provider_id("cn-hangzhou", inst));
        x
    }

    fn r(dst: &str, inst: &str) -> CloudRoute {
        CloudRoute {
            destination: dst.parse().unwrap(),
            instance_id: inst.into(),
        }
    }

    #[test]
    fn desired_equals_pod_cidrs() {
        let cluster: Vec<IpNet> = vec!["172.16.0.0/16".parse().unwrap()];
        let a = n("a", "172.16.0.128/25", "i-a");
        let b = n("b", "172.16.8.0/25", "i-b");
        let routes = vec![
            r("192.168.0.0/16", ""),      // system route
            r("172.16.0.128/25", "i-a"),  // fine
            r("172.16.9.0/25", "i-gone"), // stale
            r("172.16.8.0/25", "i-old"),  // wrong next hop
            r("10.0.0.0/8", "i-vpn"),     // not ours
        ];
        let plan = reconcile(&[&a, &b], &routes, &cluster);
        assert_eq!(
            plan.actions,
            vec![
                RouteAction::Delete {
                    destination: "172.16.9.0/25".parse().unwrap(),
                    instance_id: "i-gone".into()
                },
                RouteAction::Delete {
                    destination: "172.16.8.0/25".parse().unwrap(),
                    instance_id: "i-old".into()
                },
                RouteAction::Create {
                    node: "b".into(),
                    name_hint: "uid-b".into(),
                    destination: "172.16.8.0/25".parse().unwrap(),
                    instance_id: "i-b".into()
                },
            ]
        );
        let created = routes_created(&[&a, &b], &routes);
        assert_eq!(
            created,
            BTreeMap::from([("a".to_string(), true), ("b".to_string(), false)])
        );
        let c = network_condition(&b, false, Now::at_secs(0)).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("NoRouteCreated"))
        );
        let mut a2 = a.clone();
        a2.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(network_condition(&a, true, Now::at_secs(0)).unwrap());
        assert_eq!(network_condition(&a2, true, Now::at_secs(5)), None);
    }

    #[test]
    fn node_without_cidr_or_instance_is_skipped() {
        let cluster: Vec<IpNet> = vec!["172.16.0.0/16".parse().unwrap()];
        let mut x = node("x", "4", "8Gi");
        x.spec.as_mut().unwrap().provider_id = Some("cn-hangzhou.i-x".into());
        let y = n("y", "172.16.1.0/25", "i-y");
        let mut y2 = y.clone();
        y2.spec.as_mut().unwrap().provider_id = None;
        assert!(reconcile(&[&x, &y2], &[], &cluster).actions.is_empty());
    }
}
