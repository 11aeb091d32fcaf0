//! Resource arithmetic the scheduler does on requests and allocatable
//! (`framework.Resource`, `resourcehelper.PodRequests`): CPU in millicores,
//! memory and ephemeral storage in bytes, the allowed pod count, and every
//! other ("scalar": extended, hugepages) resource by name.

use std::collections::BTreeMap;

use ackemu_kube::Quantity;
use ackemu_kube::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// `DefaultMilliCPURequest`: the CPU a container without a CPU request is
/// counted with when *scoring* (never when filtering).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// `DefaultMemoryRequest`: 200 MiB, likewise.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// A vector of resources (`framework.Resource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for allocatable (`status.allocatable.pods`).
    pub allowed_pod_number: i64,
    /// Extended and hugepages resources, in units (`Quantity.Value()`).
    pub scalar: BTreeMap<String, i64>,
}

fn parse(q: &ApiQuantity) -> Option<Quantity> {
    Quantity::from_api(q).ok()
}

impl Resource {
    /// Reads a `ResourceList` (`NewResource`). Unparsable quantities count as
    /// zero: the API server validates them, so they only come from fixtures.
    pub fn from_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            let Some(q) = parse(q) else { continue };
            r.set(name, &q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            CPU => self.milli_cpu = q.milli_value(),
            MEMORY => self.memory = q.value(),
            EPHEMERAL_STORAGE => self.ephemeral_storage = q.value(),
            PODS => self.allowed_pod_number = q.value(),
            other if is_scalar_resource_name(other) => {
                self.scalar.insert(other.to_string(), q.value());
            }
            _ => {}
        }
    }

    /// Adds a vector (`Resource.Add`).
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts a vector (used when a pod leaves a node).
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Raises every dimension to at least `other`'s (`SetMaxResource`).
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero_request(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.is_empty()
    }

    /// The amount of one named resource, in the unit scoring uses.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Whether a resource is tracked in `Resource::scalar`: anything but the
/// four native ones and `storage` (`IsScalarResourceName`: extended,
/// hugepages, attachable volumes, native `kubernetes.io/` ones).
pub fn is_scalar_resource_name(name: &str) -> bool {
    !matches!(name, CPU | MEMORY | EPHEMERAL_STORAGE | PODS | "storage")
}

/// Whether a name is an extended resource (domain-prefixed, not in the
/// `kubernetes.io/` namespace, not `requests.`-prefixed).
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    !(domain == "kubernetes.io"
        || domain.ends_with(".kubernetes.io")
        || name.starts_with("requests."))
}

fn container_requests(c: &Container, non_missing: bool) -> Resource {
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(reqs);
    if non_missing {
        let has = |k: &str| reqs.is_some_and(|m| m.contains_key(k));
        if !has(CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has(MEMORY) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What a pod asks of a node (`resourcehelper.PodRequests`): the sum of its
/// containers, raised to the largest init container (init containers run one
/// at a time, each alongside the sidecars started before it; sidecars —
/// init containers with `restartPolicy: Always` — keep running and add to the
/// sum), plus the RuntimeClass overhead.
///
/// With `non_missing`, a container that names no CPU (memory) request is
/// counted with 100m (200 MiB): the "non-zero" requests scoring uses so that
/// BestEffort pods still spread.
pub fn pod_requests(pod: &Pod, non_missing: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_missing));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_missing);
        if is_restartable_init(c) {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            let mut tmp = r;
            tmp.add(&sidecars);
            init_max.set_max(&tmp);
        }
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{container, pod_with};

    #[test]
    fn pod_requests_table() {
        struct Case {
            name: &'static str,
            containers: Vec<Container>,
            init: Vec<Container>,
            overhead: &'static [(&'static str, &'static str)],
            non_missing: bool,
            want_cpu: i64,
            want_mem: i64,
        }
        let gi = 1024 * 1024 * 1024;
        let cases = vec![
            Case {
                name: "sum of containers",
                containers: vec![
                    container("a", &[("cpu", "2"), ("memory", "1Gi")]),
                    container("b", &[("cpu", "1"), ("memory", "1Gi")]),
                ],
                init: vec![],
                overhead: &[],
                non_missing: false,
                want_cpu: 3000,
                want_mem: 2 * gi,
            },
            Case {
                // Kubernetes' computePodResourceRequest doc example.
                name: "init containers raise each dimension to their max",
                containers: vec![
                    container("c1", &[("cpu", "2"), ("memory", "1Gi")]),
                    container("c2", &[("cpu", "1"), ("memory", "1Gi")]),
                ],
                init: vec![
                    container("i1", &[("cpu", "2"), ("memory", "1Gi")]),
                    container("i2", &[("cpu", "2"), ("memory", "3Gi")]),
                ],
                overhead: &[],
                non_missing: false,
                want_cpu: 3000,
                want_mem: 3 * gi,
            },
            Case {
                name: "overhead is added after the init max",
                containers: vec![container("c", &[("cpu", "500m")])],
                init: vec![container("i", &[("cpu", "1")])],
                overhead: &[("cpu", "250m"), ("memory", "120Mi")],
                non_missing: false,
                want_cpu: 1250,
                want_mem: 120 * 1024 * 1024,
            },
            Case {
                name: "sidecars add to the sum and run beside later init containers",
                containers: vec![container("c", &[("cpu", "1")])],
                init: vec![
                    {
                        let mut s = container("sidecar", &[("cpu", "500m")]);
                        s.restart_policy = Some("Always".into());
                        s
                    },
                    container("i", &[("cpu", "2")]),
                ],
                overhead: &[],
                non_missing: false,
                want_cpu: 2500,
                want_mem: 0,
            },
            Case {
                name: "best effort counts as zero for filtering",
                containers: vec![container("c", &[])],
                init: vec![],
                overhead: &[],
                non_missing: false,
                want_cpu: 0,
                want_mem: 0,
            },
            Case {
                name: "best effort counts 100m and 200Mi per container for scoring",
                containers: vec![container("c", &[]), container("d", &[("cpu", "0")])],
                init: vec![],
                overhead: &[],
                non_missing: true,
                want_cpu: 100,
                want_mem: 2 * DEFAULT_MEMORY_REQUEST,
            },
        ];
        for c in cases {
            let pod = pod_with("default", "p", c.containers, c.init, c.overhead);
            let r = pod_requests(&pod, c.non_missing);
            assert_eq!(r.milli_cpu, c.want_cpu, "{}: cpu", c.name);
            assert_eq!(r.memory, c.want_mem, "{}: memory", c.name);
        }
    }

    #[test]
    fn allocatable_reads_pods_and_scalars() {
        let mut list = BTreeMap::new();
        list.insert("cpu".to_string(), ApiQuantity("3920m".into()));
        list.insert("memory".to_string(), ApiQuantity("7Gi".into()));
        list.insert("pods".to_string(), ApiQuantity("110".into()));
        list.insert("nvidia.com/gpu".to_string(), ApiQuantity("2".into()));
        let r = Resource::from_list(Some(&list));
        assert_eq!(r.milli_cpu, 3920);
        assert_eq!(r.memory, 7 * 1024 * 1024 * 1024);
        assert_eq!(r.allowed_pod_number, 110);
        assert_eq!(r.scalar.get("nvidia.com/gpu"), Some(&2));
        assert!(is_extended_resource_name("nvidia.com/gpu"));
        assert!(!is_extended_resource_name("hugepages-2Mi"));
        assert!(is_scalar_resource_name("hugepages-2Mi"));
    }
}
