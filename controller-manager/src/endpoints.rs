//! The Endpoints controller (`pkg/controller/endpoint`): for every Service
//! with a selector, one Endpoints object of the same name whose subsets are
//! the selected pods' IPs — ready pods under `addresses`, the others under
//! `notReadyAddresses` (all ready with `publishNotReadyAddresses`) — and
//! the service ports resolved against each pod (named target ports looked
//! up in its containers), repacked so pods offering the same ports share a
//! subset. More than 1000 addresses are truncated and annotated
//! `endpoints.kubernetes.io/over-capacity: truncated`.

use std::collections::{BTreeMap, BTreeSet};

use ackemu_kube::LabelSelector;
use ackemu_kube::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use ackemu_kube::meta::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::util::{meta, pod as podutil};

pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// `ShouldPodBeInEndpoints`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if podutil::is_terminal(pod) {
        return false;
    }
    let st = pod.status.as_ref();
    let has_ip = st
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|i| !i.is_empty())
        || st
            .and_then(|s| s.pod_ips.as_ref())
            .is_some_and(|v| !v.is_empty());
    if !has_ip {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// `ShouldSetHostname`.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref())
        .is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// `podutil.FindPort`: the container port a service port targets.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let proto = sp.protocol.as_deref().unwrap_or("TCP");
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
        }
    }
}

pub fn service_selector(svc: &Service) -> Option<LabelSelector> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .map(LabelSelector::from_set)
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn address(pod: &Pod, svc: &Service) -> EndpointAddress {
    EndpointAddress {
        ip: podutil::pod_ip(pod).to_owned(),
        node_name: Some(podutil::node_name(pod).to_owned()).filter(|n| !n.is_empty()),
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

fn addr_key(a: &EndpointAddress) -> (String, String) {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

fn port_key(p: &EndpointPort) -> (String, i32, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

type PortKey = (String, i32, String);
type AddrKey = (String, String);
type PortsAndAddrs = (Vec<EndpointPort>, Vec<(EndpointAddress, bool)>);
type AddrMap = BTreeMap<AddrKey, (EndpointAddress, bool)>;

/// `RepackSubsets` + `SortSubsets`, with a deterministic order.
pub fn repack(entries: Vec<(EndpointAddress, bool, Option<EndpointPort>)>) -> Vec<EndpointSubset> {
    // port → address key → (address, ready)
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, AddrMap)> = BTreeMap::new();
    for (a, ready, p) in entries {
        let e = by_port
            .entry(p.as_ref().map(port_key))
            .or_insert_with(|| (p.clone(), BTreeMap::new()));
        let slot = e.1.entry(addr_key(&a)).or_insert((a, ready));
        slot.1 |= ready;
    }
    // address set → ports
    let mut by_addrs: BTreeMap<Vec<(AddrKey, bool)>, PortsAndAddrs> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let key: Vec<(AddrKey, bool)> = addrs.iter().map(|(k, (_, r))| (k.clone(), *r)).collect();
        let e = by_addrs
            .entry(key)
            .or_insert_with(|| (Vec::new(), addrs.into_values().collect()));
        if let Some(p) = port {
            e.0.push(p);
        }
    }
    by_addrs
        .into_values()
        .map(|(ports, addrs)| {
            let ready: Vec<EndpointAddress> = addrs
                .iter()
                .filter(|(_, r)| *r)
                .map(|(a, _)| a.clone())
                .collect();
            let not_ready: Vec<EndpointAddress> = addrs
                .iter()
                .filter(|(_, r)| !*r)
                .map(|(a, _)| a.clone())
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The subsets for `svc` over `pods` (the namespace's pods).
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(sel) = service_selector(svc) else {
        return Vec::new();
    };
    let tolerate = publish_not_ready(svc);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut entries = Vec::new();
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || !sel.matches(meta::labels(&pod.metadata))
            || !should_pod_be_in_endpoints(pod, tolerate)
        {
            continue;
        }
        let a = address(pod, svc);
        let ready = tolerate || podutil::is_ready(pod);
        if ports.is_empty() {
            if is_headless(svc) {
                entries.push((a, ready, None));
            }
            continue;
        }
        for sp in &ports {
            let Some(n) = find_port(pod, sp) else {
                continue;
            };
            entries.push((
                a.clone(),
                ready,
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: n,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                }),
            ));
        }
    }
    repack(entries)
}

/// `truncateEndpoints`: true when addresses were dropped.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let not_ready: usize = subsets
        .iter()
        .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut can = max;
    for s in subsets.iter_mut() {
        let n = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let add = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let add = add.min(can);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(add);
                can -= a.len();
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(add);
            can -= a.len();
        }
    }
    true
}

#[derive(Clone, Debug, PartialEq)]
pub enum EndpointsAction {
    Create(Box<Endpoints>),
    /// Update (carries the current resourceVersion).
    Update(Box<Endpoints>),
    Delete {
        namespace: String,
        name: String,
    },
}

/// One `syncService`. `svc` is `None` when the Service is gone.
pub fn reconcile(
    key_namespace: &str,
    key_name: &str,
    svc: Option<&Service>,
    pods: &[&Pod],
    current: Option<&Endpoints>,
) -> Option<EndpointsAction> {
    let Some(svc) = svc else {
        return current.map(|_| EndpointsAction::Delete {
            namespace: key_namespace.to_owned(),
            name: key_name.to_owned(),
        });
    };
    service_selector(svc)?;
    let mut subsets = desired_subsets(svc, pods);
    let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
    let mut ep = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    let truncated = truncate(&mut subsets);
    let mut labels = svc_labels;
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    ep.metadata.labels = Some(labels);
    let ann = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        ann.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        ann.remove(OVER_CAPACITY);
    }
    if ann.is_empty() {
        ep.metadata.annotations = None;
    }
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    if current.is_some() {
        if current == Some(&ep) {
            return None;
        }
        Some(EndpointsAction::Update(Box::new(ep)))
    } else {
        Some(EndpointsAction::Create(Box::new(ep)))
    }
}

/// The pod IPs of a subset list, for tests and logs.
pub fn addresses(subsets: &[EndpointSubset]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for s in subsets {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    (ready, not_ready)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fixtures::{labels, meta as fmeta, pod};
    use ackemu_kube::api::core::v1::ServiceSpec;

    pub(crate) fn svc(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                labels: Some(labels(&[("tier", "front")])),
                ..fmeta("ns", "web")
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "web")])),
                cluster_ip: Some("172.19.0.20".into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub(crate) fn sport(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn subsets_ready_not_ready_and_named_ports() {
        let s = svc(vec![
            sport("http", 80, IntOrString::String("web".into())),
            sport("metrics", 9090, IntOrString::Int(9090)),
        ]);
        let w = |name: &str| pod("ns", name).labels(&[("app", "web")]).node("n1");
        let a = w("a").ip("172.16.0.2").port("web", 2580).ready(0).build();
        let b = w("b")
            .ip("172.16.0.3")
            .port("web", 8080)
            .not_ready()
            .build();
        let no_port = w("c").ip("172.16.0.4").ready(0).build();
        let no_ip = w("d").ready(0).build();
        let done = w("e").ip("172.16.0.6").phase("Succeeded").build();
        let going = w("f")
            .ip("172.16.0.7")
            .port("web", 2580)
            .ready(0)
            .deleting(1)
            .build();
        let other = pod("ns", "x")
            .labels(&[("app", "db")])
            .ip("172.16.0.9")
            .ready(0)
            .build();
        let out = reconcile(
            "ns",
            "web",
            Some(&s),
            &[&a, &b, &no_port, &no_ip, &done, &going, &other],
            None,
        );
        let Some(EndpointsAction::Create(ep)) = out else {
            panic!("want create, got {out:?}")
        };
        let subsets = ep.subsets.clone().unwrap();
        let (ready, not_ready) = addresses(&subsets);
        assert_eq!(
            ready,
            BTreeSet::from(["172.16.0.2".into(), "172.16.0.4".into()])
        );
        assert_eq!(not_ready, BTreeSet::from(["172.16.0.3".into()]));
        // a offers http:2580 and metrics; b http:8080 and metrics; c only metrics.
        let find = |ip: &str| -> Vec<(String, i32)> {
            let mut v: Vec<(String, i32)> = subsets
                .iter()
                .filter(|s| {
                    s.addresses
                        .iter()
                        .flatten()
                        .chain(s.not_ready_addresses.iter().flatten())
                        .any(|x| x.ip == ip)
                })
                .flat_map(|s| {
                    s.ports
                        .iter()
                        .flatten()
                        .map(|p| (p.name.clone().unwrap(), p.port))
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            find("172.16.0.2"),
            vec![("http".into(), 2580), ("metrics".into(), 9090)]
        );
        assert_eq!(
            find("172.16.0.3"),
            vec![("http".into(), 8080), ("metrics".into(), 9090)]
        );
        assert_eq!(find("172.16.0.4"), vec![("metrics".into(), 9090)]);
        let a_addr = subsets
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .find(|x| x.ip == "172.16.0.2")
            .unwrap();
        assert_eq!(a_addr.node_name.as_deref(), Some("n1"));
        assert_eq!(
            a_addr.target_ref.as_ref().unwrap().name.as_deref(),
            Some("a")
        );
        assert_eq!(
            ep.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("tier")
                .map(String::as_str),
            Some("front")
        );
        // Unchanged → no write.
        let mut stored = (*ep).clone();
        stored.metadata.resource_version = Some("7".into());
        assert_eq!(
            reconcile("ns", "web", Some(&s), &[&a, &b, &no_port], Some(&stored)),
            None
        );
        // b becomes ready → update.
        let b2 = w("b").ip("172.16.0.3").port("web", 8080).ready(5).build();
        assert!(matches!(
            reconcile("ns", "web", Some(&s), &[&a, &b2, &no_port], Some(&stored)),
            Some(EndpointsAction::Update(_))
        ));
        // Service gone → delete; selectorless service → untouched.
        assert_eq!(
            reconcile("ns", "web", None, &[], Some(&stored)),
            Some(EndpointsAction::Delete {
                namespace: "ns".into(),
                name: "web".into()
            })
        );
        let mut manual = s.clone();
        manual.spec.as_mut().unwrap().selector = None;
        assert_eq!(
            reconcile("ns", "web", Some(&manual), &[&a], Some(&stored)),
            None
        );
    }

    #[test]
    fn publish_not_ready_and_headless() {
        let mut s = svc(vec![]);
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let b = pod("ns", "b")
            .labels(&[("app", "web")])
            .ip("172.16.0.3")
            .not_ready()
            .build();
        let Some(EndpointsAction::Create(ep)) = reconcile("ns", "web", Some(&s), &[&b], None)
        else {
            panic!()
        };
        assert_eq!(
            addresses(ep.subsets.as_deref().unwrap()).0,
            BTreeSet::from(["172.16.0.3".into()])
        );
        assert_eq!(
            ep.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(HEADLESS)
                .map(String::as_str),
            Some("")
        );
    }

    #[test]
    fn over_capacity_is_truncated() {
        let s = svc(vec![sport("http", 80, IntOrString::Int(80))]);
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod("ns", &format!("p{i}"))
                    .labels(&[("app", "web")])
                    .ip(&format!("10.0.{}.{}", i / 250, i % 250))
                    .ready(0)
                    .build()
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let Some(EndpointsAction::Create(ep)) = reconcile("ns", "web", Some(&s), &refs, None)
        else {
            panic!()
        };
        assert_eq!(
            addresses(ep.subsets.as_deref().unwrap()).0.len(),
            MAX_CAPACITY
        );
        assert_eq!(
            meta::annotation(&ep.metadata, OVER_CAPACITY),
            Some("truncated")
        );
    }
}
