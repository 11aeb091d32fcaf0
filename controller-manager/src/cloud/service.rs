//! The service controller (`pkg/controller/service` in cloud-provider,
//! with Alibaba Cloud's SLB model): a `LoadBalancer` Service gets an SLB
//! whose TCP listeners are the service ports, forwarding to the ports'
//! NodePorts on the backend instances — every eligible node, or under
//! `externalTrafficPolicy: Local` only nodes that run a ready endpoint.
//! The `service.kubernetes.io/load-balancer-cleanup` finalizer keeps the
//! Service until its SLB is deleted; `status.loadBalancer.ingress` carries
//! the SLB address.

use std::collections::{BTreeMap, BTreeSet};

use ackemu_kube::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service};
use ackemu_kube::api::discovery::v1::EndpointSlice;

use super::instance_id;
use crate::util::fit::EFFECT_NO_SCHEDULE;
use crate::util::{Event, ObjectRef, meta};

pub const FINALIZER_LB_CLEANUP: &str = "service.kubernetes.io/load-balancer-cleanup";
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
pub const DEFAULT_WEIGHT: u32 = 100;

/// An SLB as `DescribeLoadBalancerAttribute` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbState {
    pub id: String,
    pub address: String,
    /// Listener port → (backend port, running).
    pub listeners: BTreeMap<u16, (u16, bool)>,
    pub backends: BTreeSet<String>,
}

/// What the SLB should look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbSpec {
    pub name: String,
    pub listeners: BTreeMap<u16, u16>,
    pub backends: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LbAction {
    /// Patch the Service's finalizers to include the cleanup finalizer.
    AddFinalizer,
    /// `CreateLoadBalancer`; call again with its state.
    CreateLoadBalancer {
        name: String,
    },
    CreateListener {
        lb: String,
        port: u16,
        backend_port: u16,
    },
    /// `SetLoadBalancerTCPListenerAttribute` with a new backend port.
    SetListener {
        lb: String,
        port: u16,
        backend_port: u16,
    },
    StartListener {
        lb: String,
        port: u16,
    },
    DeleteListener {
        lb: String,
        port: u16,
    },
    /// `SetBackendServers` (and `AddBackendServers` for new ones) so the
    /// backend set is exactly this, weight [`DEFAULT_WEIGHT`].
    SetBackends {
        lb: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// `UpdateStatus` with this load balancer status.
    UpdateStatus(LoadBalancerStatus),
    DeleteLoadBalancer {
        lb: String,
    },
    RemoveFinalizer,
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    #[error("the SLB supports TCP listeners only: port {port} is {protocol}")]
    Protocol { port: i32, protocol: String },
    #[error("service port {0} has no nodePort")]
    NoNodePort(i32),
}

fn svc_ref(svc: &Service) -> ObjectRef {
    ObjectRef::new("v1", "Service", &svc.metadata)
}

pub fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// `needsCleanup`: deleted, or no longer a LoadBalancer, with our finalizer.
pub fn needs_cleanup(svc: &Service) -> bool {
    meta::has_finalizer(&svc.metadata, FINALIZER_LB_CLEANUP)
        && (svc.metadata.deletion_timestamp.is_some() || !is_load_balancer(svc))
}

/// `cloudprovider.GetLoadBalancerName`: `a` + the uid without dashes.
pub fn lb_name(svc: &Service) -> String {
    let mut n = format!("a{}", meta::uid(&svc.metadata).replace('-', ""));
    n.truncate(32);
    n
}

/// Nodes that may back a load balancer.
pub fn eligible(node: &Node) -> bool {
    let labels = meta::labels(&node.metadata);
    let ready =
        crate::nodelifecycle::node_condition(node, "Ready").is_some_and(|c| c.status == "True");
    ready
        && node.metadata.deletion_timestamp.is_none()
        && !labels.contains_key(LABEL_EXCLUDE_LB)
        && !crate::util::fit::node_taints(node)
            .iter()
            .any(|t| t.key == TAINT_TO_BE_DELETED && t.effect == EFFECT_NO_SCHEDULE)
        && instance_id(node).is_some()
}

/// The desired SLB of a LoadBalancer Service.
pub fn desired(
    svc: &Service,
    nodes: &[&Node],
    slices: &[&EndpointSlice],
) -> Result<LbSpec, LbError> {
    let spec = svc.spec.as_ref();
    let mut listeners = BTreeMap::new();
    for p in spec.and_then(|s| s.ports.as_ref()).into_iter().flatten() {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        if proto != "TCP" {
            return Err(LbError::Protocol {
                port: p.port,
                protocol: proto,
            });
        }
        let np = p
            .node_port
            .filter(|n| *n > 0)
            .ok_or(LbError::NoNodePort(p.port))?;
        listeners.insert(p.port as u16, np as u16);
    }
    let local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let with_endpoints: BTreeSet<&str> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .filter_map(|e| e.node_name.as_deref())
        .collect();
    let backends = nodes
        .iter()
        .filter(|n| eligible(n))
        .filter(|n| !local || with_endpoints.contains(meta::name(&n.metadata)))
        .filter_map(|n| instance_id(n))
        .collect();
    Ok(LbSpec {
        name: lb_name(svc),
        listeners,
        backends,
    })
}

/// One `syncLoadBalancerIfNeeded` step: given the Service, what it should
/// be and the SLB as it is (found by name), the writes to make now. Call
/// again after `CreateLoadBalancer` with the new SLB's state.
pub fn plan(
    svc: &Service,
    want: Result<LbSpec, LbError>,
    current: Option<&LbState>,
) -> Vec<LbAction> {
    let mut out = Vec::new();
    if needs_cleanup(svc) {
        out.push(LbAction::Event(Event::normal(
            svc_ref(svc),
            "DeletingLoadBalancer",
            "Deleting load balancer",
        )));
        if let Some(lb) = current {
            out.push(LbAction::DeleteLoadBalancer { lb: lb.id.clone() });
        }
        out.push(LbAction::Event(Event::normal(
            svc_ref(svc),
            "DeletedLoadBalancer",
            "Deleted load balancer",
        )));
        out.push(LbAction::RemoveFinalizer);
        if svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .is_some_and(|l| l.ingress.as_ref().is_some_and(|i| !i.is_empty()))
        {
            out.push(LbAction::UpdateStatus(LoadBalancerStatus::default()));
        }
        return out;
    }
    if !is_load_balancer(svc) || svc.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let want = match want {
        Ok(w) => w,
        Err(e) => {
            out.push(LbAction::Event(Event::warning(
                svc_ref(svc),
                "SyncLoadBalancerFailed",
                format!("Error syncing load balancer: {e}"),
            )));
            return out;
        }
    };
    if !meta::has_finalizer(&svc.metadata, FINALIZER_LB_CLEANUP) {
        out.push(LbAction::AddFinalizer);
    }
    let Some(lb) = current else {
        out.push(LbAction::Event(Event::normal(
            svc_ref(svc),
            "EnsuringLoadBalancer",
            "Ensuring load balancer",
        )));
        out.push(LbAction::CreateLoadBalancer { name: want.name });
        return out;
    };
    let id = lb.id.clone();
    let mut changed = false;
    for (port, (bp, _)) in &lb.listeners {
        if !want.listeners.contains_key(port) {
            out.push(LbAction::DeleteListener {
                lb: id.clone(),
                port: *port,
            });
            changed = true;
        } else if want.listeners[port] != *bp {
            out.push(LbAction::SetListener {
                lb: id.clone(),
                port: *port,
                backend_port: want.listeners[port],
            });
            changed = true;
        }
    }
    for (port, bp) in &want.listeners {
        if !lb.listeners.contains_key(port) {
            out.push(LbAction::CreateListener {
                lb: id.clone(),
                port: *port,
                backend_port: *bp,
            });
            out.push(LbAction::StartListener {
                lb: id.clone(),
                port: *port,
            });
            changed = true;
        } else if !lb.listeners[port].1 {
            out.push(LbAction::StartListener {
                lb: id.clone(),
                port: *port,
            });
            changed = true;
        }
    }
    let add: Vec<String> = want.backends.difference(&lb.backends).cloned().collect();
    let remove: Vec<String> = lb.backends.difference(&want.backends).cloned().collect();
    if !add.is_empty() || !remove.is_empty() {
        out.push(LbAction::SetBackends {
            lb: id.clone(),
            add,
            remove,
        });
        changed = true;
    }
    let status = LoadBalancerStatus {
        ingress: Some(vec![LoadBalancerIngress {
            ip: Some(lb.address.clone()),
            ..Default::default()
        }]),
    };
    let cur_status = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default();
    if cur_status != status {
        out.push(LbAction::UpdateStatus(status));
        out.push(LbAction::Event(Event::normal(
            svc_ref(svc),
            "EnsuredLoadBalancer",
            "Ensured load balancer",
        )));
    } else if changed {
        out.push(LbAction::Event(Event::normal(
            svc_ref(svc),
            "UpdatedLoadBalancer",
            "Updated load balancer with new hosts",
        )));
    }
    out
}

/// The event for a failed cloud call.
pub fn failed_event(svc: &Service, error: &str) -> Event {
    Event::warning(
        svc_ref(svc),
        "SyncLoadBalancerFailed",
        format!("Error syncing load balancer: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{meta as fmeta, node};
    use ackemu_kube::api::core::v1::{ServicePort, ServiceSpec};
    use ackemu_kube::api::discovery::v1::{Endpoint, EndpointConditions};

    fn svc(local: bool) -> Service {
        Service {
            metadata: fmeta("default", "web"),
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
                ports: Some(vec![ServicePort {
                    port: 80,
                    node_port: Some(30080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn n(name: &str) -> Node {
        let mut x = node(name, "4", "8Gi");
        x.spec.as_mut().unwrap().provider_id = Some(format!("cn-hangzhou.i-{name}"));
        x
    }

    fn slice_on(nodes: &[&str]) -> EndpointSlice {
        EndpointSlice {
            metadata: fmeta("default", "web-abc"),
            address_type: "IPv4".into(),
            endpoints: nodes
                .iter()
                .map(|n| Endpoint {
                    addresses: vec!["172.16.0.2".into()],
                    node_name: Some(n.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn backends_cluster_vs_local() {
        let (a, b) = (n("a"), n("b"));
        let mut c = n("c");
        c.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_EXCLUDE_LB.into(), "".into());
        let mut down = n("d");
        down.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        let sl = slice_on(&["b"]);
        let cluster = desired(&svc(false), &[&a, &b, &c, &down], &[&sl]).unwrap();
        assert_eq!(
            cluster.backends,
            BTreeSet::from(["i-a".to_string(), "i-b".to_string()])
        );
        assert_eq!(cluster.listeners, BTreeMap::from([(80, 30080)]));
        let local = desired(&svc(true), &[&a, &b, &c], &[&sl]).unwrap();
        assert_eq!(local.backends, BTreeSet::from(["i-b".to_string()]));
    }

    #[test]
    fn create_then_converge() {
        let s = svc(false);
        let a = n("a");
        let out = plan(&s, desired(&s, &[&a], &[]), None);
        assert_eq!(out[0], LbAction::AddFinalizer);
        assert!(out.contains(&LbAction::CreateLoadBalancer { name: lb_name(&s) }));
        let lb = LbState {
            id: "lb-1".into(),
            address: "192.168.0.100".into(),
            ..Default::default()
        };
        let out = plan(&s, desired(&s, &[&a], &[]), Some(&lb));
        assert!(out.contains(&LbAction::CreateListener {
            lb: "lb-1".into(),
            port: 80,
            backend_port: 30080
        }));
        assert!(out.contains(&LbAction::StartListener {
            lb: "lb-1".into(),
            port: 80
        }));
        assert!(out.contains(&LbAction::SetBackends {
            lb: "lb-1".into(),
            add: vec!["i-a".into()],
            remove: vec![]
        }));
        assert!(out.iter().any(|x| matches!(x, LbAction::UpdateStatus(st) if st.ingress.as_ref().unwrap()[0].ip.as_deref() == Some("192.168.0.100"))));
        // Converged: nothing to do.
        let mut s2 = s.clone();
        s2.metadata.finalizers = Some(vec![FINALIZER_LB_CLEANUP.into()]);
        s2.status = Some(ackemu_kube::api::core::v1::ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("192.168.0.100".into()),
                    ..Default::default()
                }]),
            }),
            conditions: None,
        });
        let done = LbState {
            listeners: BTreeMap::from([(80, (30080, true))]),
            backends: BTreeSet::from(["i-a".into()]),
            ..lb
        };
        assert!(plan(&s2, desired(&s2, &[&a], &[]), Some(&done)).is_empty());
        // A node joins.
        let b = n("b");
        let out = plan(&s2, desired(&s2, &[&a, &b], &[]), Some(&done));
        assert_eq!(
            out[0],
            LbAction::SetBackends {
                lb: "lb-1".into(),
                add: vec!["i-b".into()],
                remove: vec![]
            }
        );
        // Deleted: SLB goes, then the finalizer.
        let mut gone = s2.clone();
        gone.metadata.deletion_timestamp =
            Some(ackemu_kube::meta::Time(crate::util::time::wall_at_secs(1)));
        let out = plan(&gone, desired(&gone, &[&a], &[]), Some(&done));
        let pos = |x: &LbAction| out.iter().position(|y| y == x).unwrap();
        assert!(
            pos(&LbAction::DeleteLoadBalancer { lb: "lb-1".into() })
                < pos(&LbAction::RemoveFinalizer)
        );
    }

    #[test]
    fn unsupported_protocol_is_an_event() {
        let mut s = svc(false);
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
        let out = plan(&s, desired(&s, &[], &[]), None);
        assert!(
            matches!(&out[..], [LbAction::Event(e)] if e.reason == "SyncLoadBalancerFailed" && e.message == "Error syncing load balancer: the SLB supports TCP listeners only: port 80 is UDP")
        );
    }
}
