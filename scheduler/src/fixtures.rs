//! Builders for the `Node` and `Pod` objects the scheduler reads: used by
//! the table tests, the seed-article example, the throughput benchmark and
//! simulations (a node built from a scaling group's template).

use std::collections::BTreeMap;

use ackemu_kube::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
};
use ackemu_kube::meta::{LabelSelector, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::snapshot::LABEL_HOSTNAME;

fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, ApiQuantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string())))
        .collect()
}

/// A container with these requests (none when empty).
pub fn container(name: &str, requests: &[(&str, &str)]) -> Container {
    Container {
        name: name.to_string(),
        image: Some("registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest".into()),
        resources: (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(list(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod of containers, init containers and an overhead.
pub fn pod_with(
    namespace: &str,
    name: &str,
    containers: Vec<Container>,
    init: Vec<Container>,
    overhead: &[(&str, &str)],
) -> Pod {
    let mut b = PodBuilder::new(namespace, name);
    let spec = b.spec();
    spec.containers = containers;
    spec.init_containers = (!init.is_empty()).then_some(init);
    spec.overhead = (!overhead.is_empty()).then(|| list(overhead));
    b.build()
}

/// Builds a `Node`.
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// A Ready node labelled with its hostname, allocatable 110 pods.
    pub fn new(name: &str) -> NodeBuilder {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_string());
        node.metadata.labels = Some([(LABEL_HOSTNAME.to_string(), name.to_string())].into());
        node.spec = Some(NodeSpec::default());
        node.status = Some(NodeStatus {
            allocatable: Some(list(&[("pods", "110")])),
            capacity: Some(list(&[("pods", "110")])),
            ..Default::default()
        });
        NodeBuilder { node }
    }

    fn status(&mut self) -> &mut NodeStatus {
        self.node.status.get_or_insert_with(Default::default)
    }

    fn spec(&mut self) -> &mut NodeSpec {
        self.node.spec.get_or_insert_with(Default::default)
    }

    /// Sets one allocatable (and capacity) resource.
    pub fn allocatable(mut self, name: &str, value: &str) -> Self {
        let st = self.status();
        for m in [&mut st.allocatable, &mut st.capacity] {
            m.get_or_insert_with(Default::default)
                .insert(name.to_string(), ApiQuantity(value.to_string()));
        }
        self
    }

    pub fn cpu(self, v: &str) -> Self {
        self.allocatable("cpu", v)
    }

    pub fn memory(self, v: &str) -> Self {
        self.allocatable("memory", v)
    }

    pub fn pods(self, v: &str) -> Self {
        self.allocatable("pods", v)
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.to_string(), v.to_string());
        self
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.node
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(k.to_string(), v.to_string());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.spec()
            .taints
            .get_or_insert_with(Default::default)
            .push(Taint {
                key: key.to_string(),
                value: (!value.is_empty()).then(|| value.to_string()),
                effect: effect.to_string(),
                time_added: None,
            });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.spec().unschedulable = Some(true);
        self
    }

    /// An image present on the node under these names.
    pub fn image(mut self, names: &[&str], size_bytes: i64) -> Self {
        self.status()
            .images
            .get_or_insert_with(Default::default)
            .push(ContainerImage {
                names: Some(names.iter().map(|s| s.to_string()).collect()),
                size_bytes: Some(size_bytes),
            });
        self
    }

    pub fn build(self) -> Node {
        self.node
    }
}

/// Builds a `Pod` with one container named `app`.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    pub fn new(namespace: &str, name: &str) -> PodBuilder {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_string());
        pod.metadata.namespace = Some(namespace.to_string());
        pod.metadata.uid = Some(format!("uid-{namespace}-{name}"));
        pod.spec = Some(PodSpec {
            containers: vec![container("app", &[])],
            ..Default::default()
        });
        PodBuilder { pod }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn first_container(&mut self) -> &mut Container {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(container("app", &[]));
        }
        &mut spec.containers[0]
    }

    /// Sets the requests of the first container.
    pub fn container_requests(mut self, requests: &[(&str, &str)]) -> Self {
        self.first_container().resources = Some(ResourceRequirements {
            requests: Some(list(requests)),
            ..Default::default()
        });
        self
    }

    /// Adds another container with these requests.
    pub fn add_container(mut self, name: &str, requests: &[(&str, &str)]) -> Self {
        self.spec().containers.push(container(name, requests));
        self
    }

    /// Adds an init container with these requests.
    pub fn init_container(mut self, name: &str, requests: &[(&str, &str)]) -> Self {
        self.spec()
            .init_containers
            .get_or_insert_with(Default::default)
            .push(container(name, requests));
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.first_container().image = Some(image.to_string());
        self
    }

    pub fn host_port(self, port: i32) -> Self {
        self.host_port_on("", "", port)
    }

    pub fn host_port_on(mut self, ip: &str, protocol: &str, port: i32) -> Self {
        let c = self.first_container();
        c.ports
            .get_or_insert_with(Default::default)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                host_ip: (!ip.is_empty()).then(|| ip.to_string()),
                protocol: (!protocol.is_empty()).then(|| protocol.to_string()),
                ..Default::default()
            });
        self
    }

    pub fn node_name(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.to_string(), v.to_string());
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.pod.status = Some(PodStatus {
            phase: Some(phase.to_string()),
            ..Default::default()
        });
        self
    }

    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        self
    }

    /// `operator` is `Equal`, `Exists` or empty; empty `effect` means all.
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Default::default)
            .push(Toleration {
                key: opt(key),
                operator: opt(operator),
                value: opt(value),
                effect: opt(effect),
                toleration_seconds: None,
            });
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(k.to_string(), v.to_string());
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }

    /// Adds a required node-selector term (terms are ORed).
    pub fn required_term(mut self, term: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }

    /// Adds a preferred term with a weight.
    pub fn preferred_term(mut self, weight: i32, term: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .push(PreferredSchedulingTerm {
                weight,
                preference: term,
            });
        self
    }

    pub fn topology_spread(
        mut self,
        max_skew: i32,
        topology_key: &str,
        when_unsatisfiable: &str,
        match_labels: &[(&str, &str)],
    ) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Default::default)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology_key.to_string(),
                when_unsatisfiable: when_unsatisfiable.to_string(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(
                        match_labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            });
        self
    }

    /// A controller owner reference.
    pub fn owner(mut self, api_version: &str, kind: &str, name: &str, uid: &str) -> Self {
        self.pod
            .metadata
            .owner_references
            .get_or_insert_with(Default::default)
            .push(OwnerReference {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                uid: uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }
}

/// A node-selector term of label expressions `(key, operator, values)`.
pub fn term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(exprs.iter().map(|e| requirement(*e)).collect()),
        match_fields: None,
    }
}

/// A node-selector term on fields (`metadata.name`).
pub fn field_term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(exprs.iter().map(|e| requirement(*e)).collect()),
    }
}

fn requirement((key, op, values): (&str, &str, &[&str])) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
    }
}
