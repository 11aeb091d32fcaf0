//! The scheduling predicates controllers evaluate themselves: taints and
//! tolerations (`v1helper.TolerationsTolerateTaint`), node selectors and
//! required node affinity (`nodeaffinity.GetRequiredNodeAffinity`), host
//! ports, and resource fit on requests (`resourcehelper.PodRequests`).
//!
//! The DaemonSet controller asks "should this pod run here", the taint
//! eviction controller "is this taint tolerated, and for how long", and the
//! cluster autoscaler "would this pod fit on a node built from this
//! template". The scheduler has its own copy; components never share code
//! with each other (ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};

use ackemu_kube::Quantity;
use ackemu_kube::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn find_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerated(tolerations, t))
}

pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

pub fn pod_tolerations(spec: &PodSpec) -> &[Toleration] {
    spec.tolerations.as_deref().unwrap_or(&[])
}

fn node_labels(node: &Node) -> BTreeMap<String, String> {
    node.metadata.labels.clone().unwrap_or_default()
}

fn requirement_matches(r: &NodeSelectorRequirement, get: impl Fn(&str) -> Option<String>) -> bool {
    let value = get(&r.key);
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if r.operator == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A term matches when all its requirements do; an empty term matches
/// nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node_labels(node);
    let name = node.metadata.name.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_matches(r, |k| labels.get(k).cloned()))
        && fields
            .iter()
            .all(|r| requirement_matches(r, |k| (k == "metadata.name").then(|| name.clone())))
}

/// `nodeSelector` and required node affinity.
pub fn node_selector_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node_labels(node);
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
    }
}

/// A vector of resources: CPU in millicores, everything else in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

fn quantity(q: &ApiQuantity) -> Quantity {
    Quantity::from_api(q).unwrap_or_default()
}

impl Resources {
    pub fn from_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let q = quantity(q);
            match name.as_str() {
                "cpu" => r.milli_cpu = q.milli_value(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pods" => r.pods = q.value(),
                other if other.contains('/') || other.starts_with("hugepages-") => {
                    r.scalar.insert(other.to_owned(), q.value());
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// `resourcehelper.PodRequests`: containers summed, init containers as the
/// maximum at any point of the init sequence (restartable "sidecar" init
/// containers keep running and add up), plus overhead; `pods` is 1.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources {
            pods: 1,
            ..Default::default()
        };
    };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c));
    }
    let mut restartable = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            restartable.add(&r);
            restartable.clone()
        } else {
            let mut t = r;
            t.add(&restartable);
            t
        };
        init_max.max_with(&during);
    }
    reqs.max_with(&init_max);
    if let Some(o) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(Some(o)));
    }
    reqs.pods = 1;
    reqs
}

pub fn node_allocatable(node: &Node) -> Resources {
    let st = node.status.as_ref();
    Resources::from_list(
        st.and_then(|s| s.allocatable.as_ref())
            .or_else(|| st.and_then(|s| s.capacity.as_ref())),
    )
}

/// `(protocol, hostIP, hostPort)` of every container port with a host port.
pub fn host_ports(pod: &Pod) -> BTreeSet<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeSet::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                hp,
            ))
        })
        .collect()
}

fn ports_conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// What is already on a node, as the fit check needs it.
#[derive(Clone, Debug, Default)]
pub struct NodeUsage {
    pub requested: Resources,
    pub host_ports: BTreeSet<(String, String, i32)>,
}

impl NodeUsage {
    pub fn of<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> NodeUsage {
        let mut u = NodeUsage::default();
        for p in pods {
            u.add(p);
        }
        u
    }

    pub fn add(&mut self, pod: &Pod) {
        self.requested.add(&pod_requests(pod));
        self.host_ports.extend(host_ports(pod));
    }
}

/// Why a pod does not fit a node, in the scheduler's words.
pub fn fit_reasons(pod: &Pod, node: &Node, usage: &NodeUsage) -> Vec<String> {
    let mut reasons = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return reasons;
    };
    let tolerations = pod_tolerations(spec);
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != node_name
    {
        reasons.push("node(s) didn't match the requested node name".to_owned());
    }
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if unschedulable {
        let t = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: EFFECT_NO_SCHEDULE.into(),
            ..Default::default()
        };
        if !tolerated(tolerations, &t) {
            reasons.push("node(s) were unschedulable".to_owned());
        }
    }
    if !node_selector_matches(spec, node) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_owned());
    }
    if let Some(t) = find_untolerated(node_taints(node), tolerations, |t| {
        t.effect == EFFECT_NO_SCHEDULE || t.effect == EFFECT_NO_EXECUTE
    }) {
        let v = t.value.as_deref().unwrap_or("");
        let kv = if v.is_empty() {
            t.key.clone()
        } else {
            format!("{}: {v}", t.key)
        };
        reasons.push(format!("node(s) had untolerated taint {{{kv}}}"));
    }
    let wanted = host_ports(pod);
    if wanted
        .iter()
        .any(|w| usage.host_ports.iter().any(|u| ports_conflict(w, u)))
    {
        reasons.push("node(s) didn't have free ports for the requested pod ports".to_owned());
    }
    reasons.extend(insufficient(
        &pod_requests(pod),
        &node_allocatable(node),
        &usage.requested,
    ));
    reasons
}

/// `Insufficient <resource>` / `Too many pods` reasons (NodeResourcesFit).
pub fn insufficient(req: &Resources, alloc: &Resources, used: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    if used.pods + 1 > alloc.pods {
        out.push("Too many pods".to_owned());
    }
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push("Insufficient cpu".to_owned());
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        out.push("Insufficient memory".to_owned());
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push("Insufficient ephemeral-storage".to_owned());
    }
    for (k, v) in &req.scalar {
        if *v > 0
            && *v
                > alloc.scalar.get(k).copied().unwrap_or(0)
                    - used.scalar.get(k).copied().unwrap_or(0)
        {
            out.push(format!("Insufficient {k}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackemu_kube::api::core::v1::{
        Affinity, ContainerPort, NodeAffinity, NodeSelector, NodeSpec, NodeStatus,
        ResourceRequirements,
    };
    use ackemu_kube::meta::ObjectMeta;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_table() {
        let t = taint("k", "v", EFFECT_NO_SCHEDULE);
        let cases = [
            (tol("k", "Equal", "v", "NoSchedule"), true),
            (tol("k", "", "v", ""), true),
            (tol("k", "Equal", "w", ""), false),
            (tol("k", "Exists", "", ""), true),
            (tol("", "Exists", "", ""), true),
            (tol("", "Exists", "", "NoExecute"), false),
            (tol("other", "Exists", "", ""), false),
        ];
        for (tl, want) in cases {
            assert_eq!(tolerates(&tl, &t), want, "{tl:?}");
        }
    }

    fn node(labels: &[(&str, &str)], cpu: &str, mem: &str, pods: &str) -> Node {
        let list = |c: &str, m: &str, p: &str| {
            Some(BTreeMap::from([
                ("cpu".to_string(), ApiQuantity(c.into())),
                ("memory".to_string(), ApiQuantity(m.into())),
                ("pods".to_string(), ApiQuantity(p.into())),
            ]))
        };
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: list(cpu, mem, pods),
                ..Default::default()
            }),
        }
    }

    fn pod(cpu: &str, host_port: Option<i32>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "cpu".to_string(),
                            ApiQuantity(cpu.into()),
                        )])),
                        ..Default::default()
                    }),
                    ports: host_port.map(|h| {
                        vec![ContainerPort {
                            container_port: 80,
                            host_port: Some(h),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_with_init_and_sidecars() {
        let mut p = pod("500m", None);
        let init = |cpu: &str, always: bool| Container {
            name: "i".into(),
            restart_policy: always.then(|| "Always".into()),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "cpu".to_string(),
                    ApiQuantity(cpu.into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        p.spec.as_mut().unwrap().init_containers = Some(vec![init("2", false)]);
        assert_eq!(
            pod_requests(&p).milli_cpu,
            2000,
            "an init container above the sum wins"
        );
        p.spec.as_mut().unwrap().init_containers = Some(vec![init("100m", true), init("1", false)]);
        assert_eq!(
            pod_requests(&p).milli_cpu,
            1100,
            "sidecar runs beside the next init container"
        );
        p.spec.as_mut().unwrap().init_containers = Some(vec![init("100m", true)]);
        assert_eq!(
            pod_requests(&p).milli_cpu,
            600,
            "sidecar adds to the containers"
        );
    }

    #[test]
    fn fit_table() {
        let n = node(&[("zone", "a")], "2", "4Gi", "3");
        let used = NodeUsage::of([&pod("1500m", Some(8080))]);
        let mut affinity = pod("100m", None);
        affinity.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["b".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut tainted = n.clone();
        tainted.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "gpu", "NoSchedule")]);
        let cases: Vec<(&str, Pod, &Node, Vec<&str>)> = vec![
            ("fits", pod("500m", None), &n, vec![]),
            ("cpu", pod("600m", None), &n, vec!["Insufficient cpu"]),
            (
                "port",
                pod("100m", Some(8080)),
                &n,
                vec!["node(s) didn't have free ports for the requested pod ports"],
            ),
            (
                "affinity",
                affinity,
                &n,
                vec!["node(s) didn't match Pod's node affinity/selector"],
            ),
            (
                "taint",
                pod("100m", None),
                &tainted,
                vec!["node(s) had untolerated taint {dedicated: gpu}"],
            ),
        ];
        for (name, p, node, want) in cases {
            assert_eq!(fit_reasons(&p, node, &used), want, "{name}");
        }
        let full = NodeUsage::of([&pod("0", None), &pod("0", None), &pod("0", None)]);
        assert_eq!(
            fit_reasons(&pod("0", None), &n, &full),
            vec!["Too many pods"]
        );
    }
}
