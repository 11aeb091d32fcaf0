//! The EndpointSlice controller (`pkg/controller/endpointslice`, the
//! reconciler of `k8s.io/endpointslice`): the selected pods of a Service as
//! EndpointSlices of at most 100 endpoints, grouped by the ports each pod
//! resolves, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! owned by the Service. Terminating pods stay with `terminating: true`.
//!
//! The reconcile keeps churn low the way Kubernetes does: endpoints stay in
//! the slice they are in, changed slices are filled first, leftovers go into
//! the fullest unchanged slice that can take them all, and only then into
//! new slices. A [`SliceTracker`] remembers the generations this controller
//! wrote so a reconcile over a stale cache waits instead of fighting its own
//! writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ackemu_kube::api::core::v1::{Node, ObjectReference, Pod, Service};
use ackemu_kube::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use ackemu_kube::meta::ObjectMeta;

use crate::endpoints::{
    find_port, is_headless, service_selector, should_pod_be_in_endpoints, should_set_hostname,
};
use crate::nodelifecycle::LABEL_ZONE;
use crate::util::{meta, pod as podutil};

pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

#[derive(Clone, Debug, PartialEq)]
pub enum SliceAction {
    /// Create (generateName `<service>-`); record the result in the tracker.
    Create(Box<EndpointSlice>),
    /// Update; record the result's generation in the tracker.
    Update(Box<EndpointSlice>),
    /// Delete; call [`SliceTracker::expect_deletion`].
    Delete { name: String, uid: String },
}

/// What went wrong but did not stop the reconcile: pods skipped because
/// their node is unknown (the driver requeues the Service).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceOutcome {
    pub actions: Vec<SliceAction>,
    pub skipped: Vec<String>,
    /// The cache holds slices older than our own writes: do nothing now.
    pub stale: bool,
}

/// The identity of an endpoint (`hashEndpoint`).
fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut a = e.addresses.clone();
    a.sort();
    let (ns, name) = e
        .target_ref
        .as_ref()
        .map(|r| {
            (
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    (a, e.hostname.clone().unwrap_or_default(), ns, name)
}

type PortKey = Vec<(String, i32, String)>;
type EndpointKey = (Vec<String>, String, String, String);

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    k.sort();
    k
}

fn pod_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut out = Vec::new();
    for sp in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(n) = find_port(pod, sp) else {
            continue;
        };
        out.push(EndpointPort {
            name: Some(sp.name.clone().unwrap_or_default()),
            port: Some(n),
            protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: sp.app_protocol.clone(),
        });
    }
    out
}

fn to_endpoint(pod: &Pod, node: Option<&Node>, svc: &Service) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let ready = publish || podutil::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    Endpoint {
        addresses: vec![podutil::pod_ip(pod).to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(ready && !terminating),
            serving: Some(ready),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: Some(podutil::node_name(pod).to_owned()).filter(|n| !n.is_empty()),
        zone: node.and_then(|n| n.metadata.labels.as_ref()?.get(LABEL_ZONE).cloned()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `setEndpointSliceLabels`: the Service's labels plus ours.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY && k != crate::endpoints::HEADLESS
        })
        .collect();
    if is_headless(svc) {
        l.insert(crate::endpoints::HEADLESS.into(), String::new());
    }
    l.insert(
        LABEL_SERVICE_NAME.into(),
        meta::name(&svc.metadata).to_owned(),
    );
    l.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    l
}

fn new_slice(svc: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", meta::name(&svc.metadata))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![meta::controller_ref(&svc.metadata, "v1", "Service")]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    meta::controller_of(&slice.metadata).is_some_and(|r| r.uid == meta::uid(&svc.metadata))
}

/// Generations this controller wrote, per slice uid.
#[derive(Clone, Debug, Default)]
pub struct SliceTracker {
    expected: HashMap<String, Option<i64>>,
}

impl SliceTracker {
    pub fn new() -> SliceTracker {
        SliceTracker::default()
    }

    /// A create or update returned this slice.
    pub fn update(&mut self, slice: &EndpointSlice) {
        self.expected.insert(
            meta::uid(&slice.metadata).to_owned(),
            slice.metadata.generation,
        );
    }

    pub fn expect_deletion(&mut self, uid: &str) {
        self.expected.insert(uid.to_owned(), None);
    }

    /// The informer saw the slice disappear.
    pub fn deleted(&mut self, uid: &str) {
        self.expected.remove(uid);
    }

    /// `StaleSlices`: a cached slice older than what we wrote, or one we
    /// deleted that the cache still holds.
    pub fn stale(&self, slices: &[&EndpointSlice]) -> bool {
        slices
            .iter()
            .any(|s| match self.expected.get(meta::uid(&s.metadata)) {
                None => false,
                Some(None) => true,
                Some(Some(g)) => s.metadata.generation.unwrap_or(0) < *g,
            })
    }
}

/// One `syncService` for EndpointSlices. `slices` are the slices labelled
/// with this Service's name and our managed-by value; `nodes` by name.
pub fn reconcile(
    svc: &Service,
    pods: &[&Pod],
    slices: &[&EndpointSlice],
    nodes: &BTreeMap<String, &Node>,
    tracker: &SliceTracker,
) -> SliceOutcome {
    let mut outcome = SliceOutcome {
        actions: Vec::new(),
        skipped: Vec::new(),
        stale: false,
    };
    let Some(sel) = service_selector(svc) else {
        return outcome;
    };
    if tracker.stale(slices) {
        outcome.stale = true;
        return outcome;
    }
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut existing_by_ports: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    let mut to_delete: Vec<&EndpointSlice> = Vec::new();
    for s in slices {
        if owned_by(s, svc) {
            existing_by_ports
                .entry(port_key(s.ports.as_deref().unwrap_or(&[])))
                .or_default()
                .push(s);
        } else {
            to_delete.push(s);
        }
    }
    let mut desired: BTreeMap<PortKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || !sel.matches(meta::labels(&pod.metadata))
            || !should_pod_be_in_endpoints(pod, true)
        {
            continue;
        }
        let ports = pod_ports(svc, pod);
        let node = nodes.get(podutil::node_name(pod)).copied();
        if node.is_none() && !publish {
            outcome.skipped.push(format!(
                "skipping Pod {} for Service {}: Node {} Not Found",
                meta::name(&pod.metadata),
                meta::key(&svc.metadata),
                podutil::node_name(pod)
            ));
            continue;
        }
        let e = to_endpoint(pod, node, svc);
        let entry = desired
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        entry.1.insert(endpoint_key(&e), e);
    }
    let labels = slice_labels(svc);
    let mut creates: Vec<EndpointSlice> = Vec::new();
    let mut updates: Vec<EndpointSlice> = Vec::new();
    for (pk, (ports, mut want)) in desired.clone() {
        let existing = existing_by_ports.get(&pk).cloned().unwrap_or_default();
        let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
        let mut unchanged: BTreeSet<String> = BTreeSet::new();
        let mut to_update: BTreeSet<String> = BTreeSet::new();
        for s in &existing {
            let name = meta::name(&s.metadata).to_owned();
            let mut kept = Vec::new();
            let mut changed = false;
            for e in &s.endpoints {
                if let Some(got) = want.remove(&endpoint_key(e)) {
                    changed |= &got != e;
                    kept.push(got);
                }
            }
            let labels_changed = s.metadata.labels.as_ref() != Some(&labels);
            if changed || kept.len() != s.endpoints.len() {
                if kept.is_empty() {
                    to_delete.push(s);
                } else {
                    let mut n = (*s).clone();
                    n.endpoints = kept;
                    n.metadata.labels = Some(labels.clone());
                    by_name.insert(name.clone(), n);
                    to_update.insert(name);
                }
            } else if labels_changed {
                let mut n = (*s).clone();
                n.metadata.labels = Some(labels.clone());
                by_name.insert(name.clone(), n);
                to_update.insert(name);
            } else {
                by_name.insert(name.clone(), (*s).clone());
                unchanged.insert(name);
            }
        }
        let mut left: Vec<Endpoint> = want.into_values().collect();
        left.reverse();
        // Fill the slices being updated anyway, fullest first.
        let mut upd: Vec<String> = to_update.iter().cloned().collect();
        upd.sort_by_key(|n| std::cmp::Reverse(by_name[n].endpoints.len()));
        for n in upd {
            let s = by_name.get_mut(&n).expect("listed");
            while !left.is_empty() && s.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                s.endpoints.push(left.pop().expect("non-empty"));
            }
        }
        // Leftovers: the fullest unchanged slice that takes them all, else new.
        while !left.is_empty() {
            let mut fill: Option<String> = None;
            if left.len() < MAX_ENDPOINTS_PER_SLICE {
                for n in &unchanged {
                    let len = by_name[n].endpoints.len();
                    if len + left.len() <= MAX_ENDPOINTS_PER_SLICE
                        && fill
                            .as_ref()
                            .is_none_or(|f| len > by_name[f].endpoints.len())
                    {
                        fill = Some(n.clone());
                    }
                }
            }
            match fill {
                Some(n) => {
                    let s = by_name.get_mut(&n).expect("listed");
                    while !left.is_empty() && s.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                        s.endpoints.push(left.pop().expect("non-empty"));
                    }
                    unchanged.remove(&n);
                    to_update.insert(n);
                }
                None => {
                    let mut s = new_slice(svc, ports.clone());
                    while !left.is_empty() && s.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                        s.endpoints.push(left.pop().expect("non-empty"));
                    }
                    creates.push(s);
                }
            }
        }
        for n in to_update {
            updates.push(by_name.remove(&n).expect("listed"));
        }
    }
    for (pk, slices) in &existing_by_ports {
        if !desired.contains_key(pk) {
            to_delete.extend(slices.iter().copied());
        }
    }
    // A Service with no endpoints keeps one empty placeholder slice.
    if slices.len() == to_delete.len() && creates.is_empty() {
        let placeholder = new_slice(svc, Vec::new());
        let is_placeholder = |s: &EndpointSlice| {
            s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or(&[]).is_empty()
                && s.metadata.labels == placeholder.metadata.labels
                && owned_by(s, svc)
        };
        if to_delete.len() == 1 && is_placeholder(to_delete[0]) {
            to_delete.clear();
        } else {
            creates.push(placeholder);
        }
    }
    // Creates before deletes, so the Service never looks empty in between.
    outcome.actions.extend(
        creates
            .into_iter()
            .map(|s| SliceAction::Create(Box::new(s))),
    );
    outcome.actions.extend(
        updates
            .into_iter()
            .map(|s| SliceAction::Update(Box::new(s))),
    );
    outcome
        .actions
        .extend(to_delete.into_iter().map(|s| SliceAction::Delete {
            name: meta::name(&s.metadata).to_owned(),
            uid: meta::uid(&s.metadata).to_owned(),
        }));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{sport, svc};
    use crate::fixtures::{node, pod};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn web(i: usize) -> Pod {
        pod("ns", &format!("p{i}"))
            .labels(&[("app", "web")])
            .node("n1")
            .ip(&format!("172.16.{}.{}", i / 200, i % 200 + 2))
            .ready(0)
            .build()
    }

    fn nodes() -> (Node, BTreeMap<String, &'static Node>) {
        let mut n = node("n1", "4", "8Gi");
        n.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_ZONE.into(), "cn-hangzhou-k".into());
        let leaked: &'static Node = Box::leak(Box::new(n.clone()));
        (n, BTreeMap::from([("n1".to_string(), leaked)]))
    }

    /// Applies a reconcile's writes to a store of slices, naming new ones.
    fn apply(
        store: &mut Vec<EndpointSlice>,
        out: &SliceOutcome,
        tracker: &mut SliceTracker,
        next: &mut usize,
    ) {
        for a in &out.actions {
            match a {
                SliceAction::Create(s) => {
                    let mut s = (**s).clone();
                    *next += 1;
                    s.metadata.name = Some(format!("web-{next}"));
                    s.metadata.uid = Some(format!("slice-{next}"));
                    s.metadata.generation = Some(1);
                    tracker.update(&s);
                    store.push(s);
                }
                SliceAction::Update(s) => {
                    let mut s = (**s).clone();
                    s.metadata.generation = Some(s.metadata.generation.unwrap_or(0) + 1);
                    tracker.update(&s);
                    let i = store
                        .iter()
                        .position(|x| x.metadata.name == s.metadata.name)
                        .unwrap();
                    store[i] = s;
                }
                SliceAction::Delete { name, uid } => {
                    store.retain(|x| x.metadata.name.as_deref() != Some(name));
                    tracker.deleted(uid);
                }
            }
        }
    }

    #[test]
    fn slices_of_100_with_conditions_and_low_churn() {
        let s = svc(vec![sport("http", 80, IntOrString::Int(2580))]);
        let (_n, nodes) = nodes();
        let mut pods: Vec<Pod> = (0..150).map(web).collect();
        pods[3] = pod("ns", "p3")
            .labels(&[("app", "web")])
            .node("n1")
            .ip("172.16.0.5")
            .ready(0)
            .deleting(1)
            .build();
        let mut store = Vec::new();
        let mut tracker = SliceTracker::new();
        let mut next = 0;
        let out = reconcile(&s, &pods.iter().collect::<Vec<_>>(), &[], &nodes, &tracker);
        assert_eq!(out.actions.len(), 2);
        apply(&mut store, &out, &mut tracker, &mut next);
        let sizes: Vec<usize> = store.iter().map(|x| x.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 50]);
        let first = &store[0];
        let l = first.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (
                l[LABEL_SERVICE_NAME].as_str(),
                l[LABEL_MANAGED_BY].as_str(),
                l["tier"].as_str()
            ),
            ("web", CONTROLLER_NAME, "front")
        );
        assert_eq!(first.ports.as_ref().unwrap()[0].port, Some(2580));
        let terminating = store
            .iter()
            .flat_map(|x| &x.endpoints)
            .find(|e| e.addresses[0] == "172.16.0.5")
            .unwrap();
        let c = terminating.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(terminating.zone.as_deref(), Some("cn-hangzhou-k"));

        // Unchanged → nothing to do.
        let refs: Vec<&EndpointSlice> = store.iter().collect();
        assert!(
            reconcile(
                &s,
                &pods.iter().collect::<Vec<_>>(),
                &refs,
                &nodes,
                &tracker
            )
            .actions
            .is_empty()
        );

        // One pod goes away, one new pod: only the slice that lost one changes.
        pods.remove(10);
        pods.push(web(150));
        let refs: Vec<&EndpointSlice> = store.iter().collect();
        let out = reconcile(
            &s,
            &pods.iter().collect::<Vec<_>>(),
            &refs,
            &nodes,
            &tracker,
        );
        assert_eq!(
            out.actions.len(),
            1,
            "{:?}",
            out.actions
                .iter()
                .map(|a| match a {
                    SliceAction::Create(_) => "create",
                    SliceAction::Update(_) => "update",
                    SliceAction::Delete { .. } => "delete",
                })
                .collect::<Vec<_>>()
        );
        apply(&mut store, &out, &mut tracker, &mut next);
        assert_eq!(store.iter().map(|x| x.endpoints.len()).sum::<usize>(), 150);
    }

    #[test]
    fn stale_cache_waits() {
        let s = svc(vec![sport("http", 80, IntOrString::Int(2580))]);
        let (_n, nodes) = nodes();
        let pods: Vec<Pod> = (0..3).map(web).collect();
        let mut tracker = SliceTracker::new();
        let mut store = Vec::new();
        let mut next = 0;
        let out = reconcile(&s, &pods.iter().collect::<Vec<_>>(), &[], &nodes, &tracker);
        apply(&mut store, &out, &mut tracker, &mut next);
        let mut old = store[0].clone();
        old.metadata.generation = Some(0);
        let out = reconcile(
            &s,
            &pods.iter().collect::<Vec<_>>(),
            &[&old],
            &nodes,
            &tracker,
        );
        assert!(out.stale && out.actions.is_empty());
    }

    #[test]
    fn no_endpoints_keeps_a_placeholder_and_unknown_node_is_skipped() {
        let s = svc(vec![sport("http", 80, IntOrString::Int(2580))]);
        let (_n, nodes) = nodes();
        let lost = pod("ns", "lost")
            .labels(&[("app", "web")])
            .node("gone")
            .ip("172.16.9.9")
            .ready(0)
            .build();
        let out = reconcile(&s, &[&lost], &[], &nodes, &SliceTracker::new());
        assert_eq!(
            out.skipped,
            vec!["skipping Pod lost for Service ns/web: Node gone Not Found"]
        );
        match &out.actions[..] {
            [SliceAction::Create(p)] => {
                assert!(p.endpoints.is_empty());
                assert_eq!(
                    p.metadata.labels.as_ref().unwrap()[LABEL_SERVICE_NAME],
                    "web"
                );
            }
            other => panic!("want a placeholder, got {other:?}"),
        }
        let mut placeholder = match &out.actions[0] {
            SliceAction::Create(p) => (**p).clone(),
            _ => unreachable!(),
        };
        placeholder.metadata.name = Some("web-x".into());
        assert!(
            reconcile(&s, &[], &[&placeholder], &nodes, &SliceTracker::new())
                .actions
                .is_empty()
        );
    }
}
