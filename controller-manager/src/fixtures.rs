//! Object builders for table tests (here and in `tests/it`).

use std::collections::BTreeMap;

use ackemu_kube::api::apps::v1::{
    Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
};
use ackemu_kube::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec, ResourceRequirements,
};
use ackemu_kube::meta::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::util::time::wall_at_secs;

pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!ns.is_empty()).then(|| ns.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(format!("uid-{name}")),
        creation_timestamp: Some(Time(wall_at_secs(0))),
        resource_version: Some("1".into()),
        generation: Some(1),
        ..Default::default()
    }
}

/// A pod builder.
#[derive(Clone, Debug)]
pub struct PodB(pub Pod);

pub fn pod(ns: &str, name: &str) -> PodB {
    PodB(Pod {
        metadata: meta(ns, name),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    })
}

impl PodB {
    pub fn labels(mut self, kv: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(labels(kv));
        self
    }
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: if kind == "ReplicaSet" || kind == "DaemonSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }
    pub fn node(mut self, n: &str) -> Self {
        self.0.spec.as_mut().unwrap().node_name = Some(n.into());
        self
    }
    pub fn phase(mut self, p: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = Some(p.into());
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        self.0.status.as_mut().unwrap().pod_ip = Some(ip.into());
        self
    }
    /// Running and Ready since `since_s`.
    pub fn ready(mut self, since_s: u64) -> Self {
        let st = self.0.status.as_mut().unwrap();
        st.phase = Some("Running".into());
        st.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(wall_at_secs(since_s))),
            ..Default::default()
        }]);
        self
    }
    pub fn not_ready(mut self) -> Self {
        let st = self.0.status.as_mut().unwrap();
        st.phase = Some("Running".into());
        st.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..Default::default()
        }]);
        self
    }
    pub fn created(mut self, s: u64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(wall_at_secs(s)));
        self
    }
    pub fn deleting(mut self, s: u64) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(wall_at_secs(s)));
        self
    }
    pub fn cpu(mut self, q: &str) -> Self {
        let c = &mut self.0.spec.as_mut().unwrap().containers[0];
        c.resources
            .get_or_insert_with(ResourceRequirements::default)
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert("cpu".into(), Quantity(q.into()));
        self
    }
    pub fn mem(mut self, q: &str) -> Self {
        let c = &mut self.0.spec.as_mut().unwrap().containers[0];
        c.resources
            .get_or_insert_with(ResourceRequirements::default)
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert("memory".into(), Quantity(q.into()));
        self
    }
    pub fn port(mut self, name: &str, port: i32) -> Self {
        let c = &mut self.0.spec.as_mut().unwrap().containers[0];
        c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            name: (!name.is_empty()).then(|| name.into()),
            container_port: port,
            ..Default::default()
        });
        self
    }
    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
}

/// A Ready node with allocatable CPU, memory and pods.
pub fn node(name: &str, cpu: &str, mem: &str) -> Node {
    let alloc = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(mem.into())),
        ("pods".to_string(), Quantity("110".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            labels: Some(labels(&[("kubernetes.io/hostname", name)])),
            ..meta("", name)
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(alloc.clone()),
            capacity: Some(alloc),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn template(kv: &[(&str, &str)], image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(kv)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

pub fn selector(kv: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(kv)),
        match_expressions: None,
    }
}

pub fn replicaset(ns: &str, name: &str, replicas: i32, kv: &[(&str, &str)]) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(ns, name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: selector(kv),
            template: Some(template(kv, "app:1")),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus::default()),
    }
}

pub fn deployment(
    ns: &str,
    name: &str,
    replicas: i32,
    kv: &[(&str, &str)],
    image: &str,
) -> Deployment {
    Deployment {
        metadata: meta(ns, name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(kv),
            template: template(kv, image),
            ..Default::default()
        }),
        status: None,
    }
}
