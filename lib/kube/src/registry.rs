//! The resource registry: every resource the API server serves, with the
//! names discovery, RBAC and `kubectl` use for it, how it is stored, which
//! fields can be selected and which columns `kubectl get` prints.
//!
//! Built-in resources come from [`Registry::builtin`]; resources served from
//! CustomResourceDefinitions are added and removed at run time with
//! [`Registry::add`] and [`Registry::remove`].

use std::collections::BTreeMap;
use std::fmt;

use crate::printers::{self, CellFn};

/// Whether objects of a resource live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// `group/version, Kind=kind`; the core group is the empty string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The `apiVersion` field value: `v1` for core, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// `apiVersion` for a group and version.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an `apiVersion` into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// A resource independent of version: what RBAC rules and errors name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl fmt::Display for GroupResource {
    /// `pods`, `deployments.apps` — the form Kubernetes puts in error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// The kind the subresource accepts/returns (`autoscaling/v1 Scale` for scale).
    pub kind: GroupVersionKind,
    pub verbs: Vec<String>,
}

/// Where a column's cell value comes from.
#[derive(Clone)]
pub enum CellSource {
    /// `metadata.name`.
    Name,
    /// Age since `metadata.creationTimestamp`, as `kubectl` shows it (`5m3s`).
    Age,
    /// `metadata.creationTimestamp` as RFC 3339 (`Created At` columns).
    CreatedAt,
    /// A CRD `additionalPrinterColumns` JSONPath (`.spec.replicas`).
    JsonPath(String),
    /// A built-in printer function.
    Builtin(CellFn),
}

impl fmt::Debug for CellSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name => f.write_str("Name"),
            Self::Age => f.write_str("Age"),
            Self::CreatedAt => f.write_str("CreatedAt"),
            Self::JsonPath(p) => write!(f, "JsonPath({p})"),
            Self::Builtin(_) => f.write_str("Builtin"),
        }
    }
}

/// One server-side Table column (`meta.k8s.io/v1 TableColumnDefinition`).
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// OpenAPI format; `name` marks the object's name column.
    pub format: String,
    pub description: String,
    /// 0 is shown by `kubectl get`, 1 only with `-o wide`.
    pub priority: i32,
    pub source: CellSource,
}

impl Column {
    fn new(name: &str, type_: &str, priority: i32, source: CellSource) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            format: String::new(),
            description: String::new(),
            priority,
            source,
        }
    }

    pub fn name() -> Self {
        let mut c = Self::new("Name", "string", 0, CellSource::Name);
        c.format = "name".to_owned();
        c.description = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names".to_owned();
        c
    }

    pub fn age() -> Self {
        let mut c = Self::new("Age", "date", 0, CellSource::Age);
        c.description = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".to_owned();
        c
    }

    pub fn created_at() -> Self {
        let mut c = Self::new("Created At", "date", 0, CellSource::CreatedAt);
        c.description = Self::age().description;
        c
    }

    /// A string column filled by a built-in printer.
    pub fn builtin(name: &str, type_: &str, priority: i32, f: CellFn) -> Self {
        Self::new(name, type_, priority, CellSource::Builtin(f))
    }

    /// A CRD `additionalPrinterColumns` entry.
    pub fn json_path(name: &str, type_: &str, format: &str, priority: i32, path: &str) -> Self {
        let mut c = Self::new(name, type_, priority, CellSource::JsonPath(path.to_owned()));
        c.format = format.to_owned();
        c
    }
}

/// Everything known about one served resource at one version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name used in URLs (`pods`).
    pub resource: String,
    pub singular: String,
    pub list_kind: String,
    pub scope: Scope,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Table columns in server order (priority 1 columns only with `-o wide`).
    pub columns: Vec<Column>,
    /// Key prefix below the storage root (`services/specs`), `None` for
    /// virtual resources that are never stored (access reviews).
    pub storage_prefix: Option<String>,
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
}

/// The standard verbs of a stored, listable resource.
pub const CRUD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of a virtual resource that only answers POSTs (access reviews).
pub const CREATE_ONLY: &[&str] = &["create"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl ResourceInfo {
    /// A stored resource with CRUD verbs, stored under `/registry/<plural>`,
    /// printed with the default `Name`, `Created At` columns.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        resource: &str,
        singular: &str,
        scope: Scope,
    ) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            resource: resource.to_owned(),
            singular: singular.to_owned(),
            list_kind: format!("{kind}List"),
            scope,
            verbs: strings(CRUD_VERBS),
            short_names: Vec::new(),
            categories: Vec::new(),
            subresources: Vec::new(),
            columns: vec![Column::name(), Column::created_at()],
            storage_prefix: Some(resource.to_owned()),
            selectable_fields: Vec::new(),
            custom: false,
        }
    }

    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, &self.version, &self.kind)
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.resource)
    }

    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `field` may be used in a field selector for this resource.
    pub fn field_selectable(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced())
            || self.selectable_fields.iter().any(|f| f == field)
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = strings(names);
        self
    }

    fn categories(mut self, c: &[&str]) -> Self {
        self.categories = strings(c);
        self
    }

    fn verbs(mut self, v: &[&str]) -> Self {
        self.verbs = strings(v);
        self
    }

    fn sub(mut self, name: &str, kind: (&str, &str, &str), verbs: &[&str]) -> Self {
        self.subresources.push(Subresource {
            name: name.to_owned(),
            kind: GroupVersionKind::new(kind.0, kind.1, kind.2),
            verbs: strings(verbs),
        });
        self
    }

    /// `<name>/status` with the resource's own kind.
    fn status(self) -> Self {
        let kind = (self.group.clone(), self.version.clone(), self.kind.clone());
        self.sub(
            "status",
            (&kind.0, &kind.1, &kind.2),
            &["get", "patch", "update"],
        )
    }

    fn columns(mut self, c: Vec<Column>) -> Self {
        self.columns = c;
        self
    }

    fn store(mut self, prefix: &str) -> Self {
        self.storage_prefix = Some(prefix.to_owned());
        self
    }

    fn virtual_(mut self) -> Self {
        self.storage_prefix = None;
        self.verbs = strings(CREATE_ONLY);
        self.columns = Vec::new();
        self
    }

    fn fields(mut self, f: &[&str]) -> Self {
        self.selectable_fields = strings(f);
        self
    }
}

/// The resources served, indexed for the lookups the API server and clients do.
#[derive(Clone, Debug)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

/// Groups in the order kube-apiserver lists them in `/apis` (by priority).
const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "certificates.k8s.io",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
];

impl Registry {
    /// An empty registry (tests, or building up custom resources only).
    pub fn empty() -> Self {
        Self {
            resources: Vec::new(),
        }
    }

    /// Every built-in resource ackemu serves.
    pub fn builtin() -> Self {
        Self {
            resources: builtin_resources(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.iter()
    }

    /// Adds a resource (a CRD version); replaces an existing entry with the
    /// same group, version and resource.
    pub fn add(&mut self, info: ResourceInfo) {
        self.resources.retain(|r| {
            !(r.group == info.group && r.version == info.version && r.resource == info.resource)
        });
        self.resources.push(info);
    }

    /// Removes every version of a custom resource; built-ins are never removed.
    pub fn remove(&mut self, group: &str, resource: &str) {
        self.resources
            .retain(|r| !(r.custom && r.group == group && r.resource == resource));
    }

    /// Exact lookup by group, version and plural resource.
    pub fn get(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
    }

    /// The preferred (first registered) version of a group's resource.
    pub fn preferred(&self, group: &str, resource: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.resource == resource)
    }

    /// Lookup by kind; `version` empty means the preferred version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources.iter().find(|r| {
            r.group == group && r.kind == kind && (version.is_empty() || r.version == version)
        })
    }

    /// Lookup by `apiVersion` and `kind` as they appear in an object.
    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = split_api_version(api_version);
        self.by_kind(group, version, kind)
    }

    /// Resolves a name the way `kubectl get <name>` does: plural, singular,
    /// short name or kind (case-insensitive), optionally qualified as
    /// `<name>.<group>` or `<name>.<version>.<group>`. Core and built-in
    /// groups win over custom resources with the same name.
    pub fn resolve(&self, arg: &str) -> Option<&ResourceInfo> {
        let arg = arg.to_ascii_lowercase();
        let matches_name = |r: &ResourceInfo, n: &str| {
            r.resource == n
                || r.singular == n
                || r.kind.to_ascii_lowercase() == n
                || r.short_names.iter().any(|s| s == n)
        };
        // Unqualified name: core first, then registration order.
        if let Some(r) = self.resources.iter().find(|r| matches_name(r, &arg)) {
            return Some(r);
        }
        let (name, rest) = arg.split_once('.')?;
        // <name>.<version>.<group>
        if let Some((version, group)) = rest.split_once('.')
            && let Some(r) = self
                .resources
                .iter()
                .find(|r| r.version == version && r.group == group && matches_name(r, name))
        {
            return Some(r);
        }
        // <name>.<group>
        self.resources
            .iter()
            .find(|r| r.group == rest && matches_name(r, name))
    }

    /// Resources in a category (`kubectl get all`).
    pub fn in_category<'a>(&'a self, category: &'a str) -> impl Iterator<Item = &'a ResourceInfo> {
        self.resources
            .iter()
            .filter(move |r| r.categories.iter().any(|c| c == category))
    }

    /// Served groups with their versions (preferred first), core group (`""`)
    /// first, then kube-apiserver's priority order, then custom groups by name.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut map: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
        for r in &self.resources {
            let rank = GROUP_ORDER
                .iter()
                .position(|g| *g == r.group)
                .unwrap_or(GROUP_ORDER.len());
            let versions = map.entry((rank, r.group.clone())).or_default();
            if !versions.contains(&r.version) {
                versions.push(r.version.clone());
            }
        }
        map.into_iter().map(|((_, g), v)| (g, v)).collect()
    }

    /// The resources of one group version, in registration order.
    pub fn group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceInfo> {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

fn builtin_resources() -> Vec<ResourceInfo> {
    use Scope::{Cluster, Namespaced};
    let p = printers::builtin;
    let age = Column::age;
    let name = Column::name;
    let crud_no_collection = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        // ---- core/v1
        ResourceInfo::new("", "v1", "Namespace", "namespaces", "namespace", Cluster)
            .short(&["ns"])
            .verbs(crud_no_collection)
            .status()
            .sub("finalize", ("", "v1", "Namespace"), &["update"])
            .fields(&["status.phase"])
            .columns(vec![
                name(),
                p("Status", "string", 0, printers::namespace_status),
                age(),
            ]),
        ResourceInfo::new("", "v1", "Pod", "pods", "pod", Namespaced)
            .short(&["po"])
            .categories(&["all"])
            .status()
            .sub("binding", ("", "v1", "Binding"), &["create"])
            .sub("eviction", ("policy", "v1", "Eviction"), &["create"])
            .sub("log", ("", "v1", "Pod"), &["get"])
            .sub("exec", ("", "v1", "PodExecOptions"), &["create", "get"])
            .fields(&[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ])
            .columns(vec![
                name(),
                p("Ready", "string", 0, printers::pod_ready),
                p("Status", "string", 0, printers::pod_status),
                p("Restarts", "string", 0, printers::pod_restarts),
                age(),
                p("IP", "string", 1, printers::pod_ip),
                p("Node", "string", 1, printers::pod_node),
                p("Nominated Node", "string", 1, printers::pod_nominated_node),
                p(
                    "Readiness Gates",
                    "string",
                    1,
                    printers::pod_readiness_gates,
                ),
            ]),
        ResourceInfo::new("", "v1", "Service", "services", "service", Namespaced)
            .short(&["svc"])
            .categories(&["all"])
            .status()
            .store("services/specs")
            .columns(vec![
                name(),
                p("Type", "string", 0, printers::service_type),
                p("Cluster-IP", "string", 0, printers::service_cluster_ip),
                p("External-IP", "string", 0, printers::service_external_ip),
                p("Port(s)", "string", 0, printers::service_ports),
                age(),
                p("Selector", "string", 1, printers::service_selector),
            ]),
        ResourceInfo::new("", "v1", "Endpoints", "endpoints", "endpoints", Namespaced)
            .short(&["ep"])
            .store("services/endpoints")
            .columns(vec![
                name(),
                p("Endpoints", "string", 0, printers::endpoints),
                age(),
            ]),
        ResourceInfo::new("", "v1", "Node", "nodes", "node", Cluster)
            .short(&["no"])
            .status()
            .store("minions")
            .fields(&["spec.unschedulable"])
            .columns(vec![
                name(),
                p("Status", "string", 0, printers::node_status),
                p("Roles", "string", 0, printers::node_roles),
                age(),
                p("Version", "string", 0, printers::node_version),
                p("Internal-IP", "string", 1, printers::node_internal_ip),
                p("External-IP", "string", 1, printers::node_external_ip),
                p("OS-Image", "string", 1, printers::node_os_image),
                p("Kernel-Version", "string", 1, printers::node_kernel_version),
                p(
                    "Container-Runtime",
                    "string",
                    1,
                    printers::node_container_runtime,
                ),
            ]),
        ResourceInfo::new("", "v1", "ConfigMap", "configmaps", "configmap", Namespaced)
            .short(&["cm"])
            .columns(vec![
                name(),
                p("Data", "integer", 0, printers::configmap_data),
                age(),
            ]),
        ResourceInfo::new("", "v1", "Secret", "secrets", "secret", Namespaced)
            .fields(&["type"])
            .columns(vec![
                name(),
                p("Type", "string", 0, printers::secret_type),
                p("Data", "integer", 0, printers::secret_data),
                age(),
            ]),
        ResourceInfo::new(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            Namespaced,
        )
        .short(&["sa"])
        .sub(
            "token",
            ("authentication.k8s.io", "v1", "TokenRequest"),
            &["create"],
        )
        .columns(vec![
            name(),
            p("Secrets", "integer", 0, printers::serviceaccount_secrets),
            age(),
        ]),
        ResourceInfo::new("", "v1", "Event", "events", "event", Namespaced)
            .short(&["ev"])
            .fields(EVENT_FIELDS)
            .columns(event_columns()),
        // ---- apiregistration.k8s.io/v1
        ResourceInfo::new(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            "apiservice",
            Cluster,
        )
        .categories(&["api-extensions"])
        .status()
        .store("apiregistration.k8s.io/apiservices")
        .columns(vec![
            name(),
            p("Service", "string", 0, printers::apiservice_service),
            p("Available", "string", 0, printers::apiservice_available),
            age(),
        ]),
        // ---- apps/v1
        ResourceInfo::new(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            Namespaced,
        )
        .short(&["deploy"])
        .categories(&["all"])
        .status()
        .sub(
            "scale",
            ("autoscaling", "v1", "Scale"),
            &["get", "patch", "update"],
        )
        .columns(vec![
            name(),
            p("Ready", "string", 0, printers::deployment_ready),
            p("Up-to-date", "integer", 0, printers::deployment_up_to_date),
            p("Available", "integer", 0, printers::deployment_available),
            age(),
            p("Containers", "string", 1, printers::template_containers),
            p("Images", "string", 1, printers::template_images),
            p("Selector", "string", 1, printers::spec_selector),
        ]),
        ResourceInfo::new(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            Namespaced,
        )
        .short(&["rs"])
        .categories(&["all"])
        .status()
        .sub(
            "scale",
            ("autoscaling", "v1", "Scale"),
            &["get", "patch", "update"],
        )
        .fields(&["status.replicas"])
        .columns(vec![
            name(),
            p("Desired", "integer", 0, printers::replicaset_desired),
            p("Current", "integer", 0, printers::replicaset_current),
            p("Ready", "integer", 0, printers::replicaset_ready),
            age(),
            p("Containers", "string", 1, printers::template_containers),
            p("Images", "string", 1, printers::template_images),
            p("Selector", "string", 1, printers::spec_selector),
        ]),
        ResourceInfo::new(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            "daemonset",
            Namespaced,
        )
        .short(&["ds"])
        .categories(&["all"])
        .status()
        .columns(vec![
            name(),
            p("Desired", "integer", 0, printers::daemonset_desired),
            p("Current", "integer", 0, printers::daemonset_current),
            p("Ready", "integer", 0, printers::daemonset_ready),
            p("Up-to-date", "integer", 0, printers::daemonset_up_to_date),
            p("Available", "integer", 0, printers::daemonset_available),
            p(
                "Node Selector",
                "string",
                0,
                printers::daemonset_node_selector,
            ),
            age(),
            p("Containers", "string", 1, printers::template_containers),
            p("Images", "string", 1, printers::template_images),
            p("Selector", "string", 1, printers::spec_selector),
        ]),
        // ---- events.k8s.io/v1 (same storage as core events)
        ResourceInfo::new(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            "event",
            Namespaced,
        )
        .short(&["ev"])
        .fields(EVENT_FIELDS)
        .columns(event_columns()),
        // ---- authentication.k8s.io/v1
        ResourceInfo::new(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            "tokenreview",
            Cluster,
        )
        .virtual_(),
        ResourceInfo::new(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            "selfsubjectreview",
            Cluster,
        )
        .virtual_(),
        // ---- authorization.k8s.io/v1
        ResourceInfo::new(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            Namespaced,
        )
        .virtual_(),
        ResourceInfo::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            Cluster,
        )
        .virtual_(),
        ResourceInfo::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            Cluster,
        )
        .virtual_(),
        ResourceInfo::new(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            "subjectaccessreview",
            Cluster,
        )
        .virtual_(),
        // ---- certificates.k8s.io/v1
        ResourceInfo::new(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            "certificatesigningrequest",
            Cluster,
        )
        .short(&["csr"])
        .status()
        .sub(
            "approval",
            ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
            &["get", "patch", "update"],
        )
        .fields(&["spec.signerName"])
        .columns(vec![
            name(),
            age(),
            p("SignerName", "string", 0, printers::csr_signer_name),
            p("Requestor", "string", 0, printers::csr_requestor),
            p(
                "RequestedDuration",
                "string",
                0,
                printers::csr_requested_duration,
            ),
            p("Condition", "string", 0, printers::csr_condition),
        ]),
        // ---- rbac.authorization.k8s.io/v1
        ResourceInfo::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            Cluster,
        )
        .columns(binding_columns()),
        ResourceInfo::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            Cluster,
        ),
        ResourceInfo::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            Namespaced,
        )
        .columns(binding_columns()),
        ResourceInfo::new(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            "role",
            Namespaced,
        ),
        // ---- admissionregistration.k8s.io/v1
        ResourceInfo::new(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            Cluster,
        )
        .categories(&["api-extensions"])
        .columns(vec![
            name(),
            p("Webhooks", "integer", 0, printers::webhooks),
            age(),
        ]),
        ResourceInfo::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            Cluster,
        )
        .categories(&["api-extensions"])
        .columns(vec![
            name(),
            p("Webhooks", "integer", 0, printers::webhooks),
            age(),
        ]),
        // ---- apiextensions.k8s.io/v1
        ResourceInfo::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            Cluster,
        )
        .short(&["crd", "crds"])
        .categories(&["api-extensions"])
        .status()
        .store("apiextensions.k8s.io/customresourcedefinitions"),
        // ---- coordination.k8s.io/v1
        ResourceInfo::new(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            Namespaced,
        )
        .columns(vec![
            name(),
            p("Holder", "string", 0, printers::lease_holder),
            age(),
        ]),
        // ---- discovery.k8s.io/v1
        ResourceInfo::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            Namespaced,
        )
        .columns(vec![
            name(),
            p(
                "AddressType",
                "string",
                0,
                printers::endpointslice_address_type,
            ),
            p("Ports", "string", 0, printers::endpointslice_ports),
            p("Endpoints", "string", 0, printers::endpointslice_endpoints),
            age(),
        ]),
    ]
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn event_columns() -> Vec<Column> {
    let p = printers::builtin;
    let mut name = Column::name();
    name.priority = 1;
    vec![
        p("Last Seen", "string", 0, printers::event_last_seen),
        p("Type", "string", 0, printers::event_type),
        p("Reason", "string", 0, printers::event_reason),
        p("Object", "string", 0, printers::event_object),
        p("Subobject", "string", 1, printers::event_subobject),
        p("Source", "string", 1, printers::event_source),
        p("Message", "string", 0, printers::event_message),
        p("First Seen", "string", 1, printers::event_first_seen),
        p("Count", "string", 1, printers::event_count),
        name,
    ]
}

fn binding_columns() -> Vec<Column> {
    let p = printers::builtin;
    vec![
        Column::name(),
        p("Role", "string", 0, printers::binding_role),
        Column::age(),
        p("Users", "string", 1, printers::binding_users),
        p("Groups", "string", 1, printers::binding_groups),
        p(
            "ServiceAccounts",
            "string",
            1,
            printers::binding_service_accounts,
        ),
    ]
}

/// Builds the registry entry for one served version of a CRD from its JSON
/// (`apiextensions.k8s.io/v1 CustomResourceDefinition`). Returns one entry per
/// served version, storage version first.
pub fn from_crd(crd: &serde_json::Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let group = s(&spec["group"]);
    let names = &spec["names"];
    let plural = s(&names["plural"]);
    let kind = s(&names["kind"]);
    let singular = match names["singular"].as_str() {
        Some(x) if !x.is_empty() => x.to_owned(),
        _ => kind.to_ascii_lowercase(),
    };
    let list_kind = match names["listKind"].as_str() {
        Some(x) if !x.is_empty() => x.to_owned(),
        _ => format!("{kind}List"),
    };
    let scope = if spec["scope"].as_str() == Some("Cluster") {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions: Vec<&serde_json::Value> = spec["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    versions
        .into_iter()
        .map(|v| {
            let version = s(&v["name"]);
            let mut info = ResourceInfo::new(&group, &version, &kind, &plural, &singular, scope);
            info.list_kind = list_kind.clone();
            info.short_names = list(&names["shortNames"]);
            info.categories = list(&names["categories"]);
            info.custom = true;
            info.storage_prefix = Some(format!("{group}/{plural}"));
            if v["subresources"]["status"].is_object() {
                info = info.status();
            }
            if v["subresources"]["scale"].is_object() {
                info = info.sub(
                    "scale",
                    ("autoscaling", "v1", "Scale"),
                    &["get", "patch", "update"],
                );
            }
            let mut columns = vec![Column::name()];
            let printer = v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if printer.is_empty() {
                columns.push(Column::age());
            }
            for c in printer {
                let mut col = Column::json_path(
                    c["name"].as_str().unwrap_or_default(),
                    c["type"].as_str().unwrap_or("string"),
                    c["format"].as_str().unwrap_or_default(),
                    c["priority"].as_i64().unwrap_or(0) as i32,
                    c["jsonPath"].as_str().unwrap_or_default(),
                );
                col.description = s(&c["description"]);
                columns.push(col);
            }
            info.columns = columns;
            info.selectable_fields = v["selectableFields"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["jsonPath"].as_str())
                        .map(|p| p.trim_start_matches('.').to_owned())
                        .collect()
                })
                .unwrap_or_default();
            info
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issue_resource_is_registered() {
        let r = Registry::builtin();
        let want = [
            ("", "namespaces"),
            ("", "pods"),
            ("", "services"),
            ("", "endpoints"),
            ("", "nodes"),
            ("", "configmaps"),
            ("", "secrets"),
            ("", "serviceaccounts"),
            ("", "events"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "daemonsets"),
            ("coordination.k8s.io", "leases"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("certificates.k8s.io", "certificatesigningrequests"),
            ("discovery.k8s.io", "endpointslices"),
            ("apiregistration.k8s.io", "apiservices"),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("authorization.k8s.io", "selfsubjectaccessreviews"),
            ("authorization.k8s.io", "subjectaccessreviews"),
            ("events.k8s.io", "events"),
        ];
        for (g, res) in want {
            let info = r
                .preferred(g, res)
                .unwrap_or_else(|| panic!("{res}.{g} missing"));
            assert_eq!(info.version, "v1", "{res}.{g}");
            assert!(!info.singular.is_empty());
        }
    }

    #[test]
    fn resolve_table() {
        let r = Registry::builtin();
        let cases = [
            ("po", "", "pods"),
            ("pod", "", "pods"),
            ("Pods", "", "pods"),
            ("Pod", "", "pods"),
            ("svc", "", "services"),
            ("ns", "", "namespaces"),
            ("no", "", "nodes"),
            ("ep", "", "endpoints"),
            ("cm", "", "configmaps"),
            ("sa", "", "serviceaccounts"),
            ("ev", "", "events"),
            ("events.events.k8s.io", "events.k8s.io", "events"),
            ("deploy", "apps", "deployments"),
            ("deployments.apps", "apps", "deployments"),
            ("deployment.v1.apps", "apps", "deployments"),
            ("rs", "apps", "replicasets"),
            ("ds", "apps", "daemonsets"),
            ("csr", "certificates.k8s.io", "certificatesigningrequests"),
            ("crd", "apiextensions.k8s.io", "customresourcedefinitions"),
            ("crds", "apiextensions.k8s.io", "customresourcedefinitions"),
            ("apiservice", "apiregistration.k8s.io", "apiservices"),
            ("lease", "coordination.k8s.io", "leases"),
            (
                "clusterrolebinding",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
            ),
        ];
        for (arg, group, resource) in cases {
            let got = r.resolve(arg).unwrap_or_else(|| panic!("{arg} unresolved"));
            assert_eq!(
                (got.group.as_str(), got.resource.as_str()),
                (group, resource),
                "{arg}"
            );
        }
        assert!(r.resolve("nosuchthing").is_none());
        assert!(r.resolve("pods.nosuchgroup").is_none());
    }

    #[test]
    fn kinds_scopes_and_storage_prefixes() {
        let r = Registry::builtin();
        let cases = [
            ("v1", "Service", "services/specs", Scope::Namespaced),
            ("v1", "Endpoints", "services/endpoints", Scope::Namespaced),
            ("v1", "Node", "minions", Scope::Cluster),
            ("v1", "Namespace", "namespaces", Scope::Cluster),
            ("apps/v1", "Deployment", "deployments", Scope::Namespaced),
            (
                "apiregistration.k8s.io/v1",
                "APIService",
                "apiregistration.k8s.io/apiservices",
                Scope::Cluster,
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "apiextensions.k8s.io/customresourcedefinitions",
                Scope::Cluster,
            ),
            ("events.k8s.io/v1", "Event", "events", Scope::Namespaced),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "clusterroles",
                Scope::Cluster,
            ),
        ];
        for (av, kind, prefix, scope) in cases {
            let info = r
                .by_api_version_kind(av, kind)
                .unwrap_or_else(|| panic!("{av} {kind}"));
            assert_eq!(info.storage_prefix.as_deref(), Some(prefix), "{kind}");
            assert_eq!(info.scope, scope, "{kind}");
        }
        let sar = r
            .by_api_version_kind("authorization.k8s.io/v1", "SelfSubjectAccessReview")
            .unwrap();
        assert_eq!(sar.storage_prefix, None);
        assert_eq!(sar.verbs, vec!["create"]);
    }

    #[test]
    fn subresources_and_verbs() {
        let r = Registry::builtin();
        let pods = r.preferred("", "pods").unwrap();
        for s in ["status", "binding", "eviction", "log", "exec"] {
            assert!(pods.subresource(s).is_some(), "pods/{s}");
        }
        assert_eq!(
            pods.subresource("eviction").unwrap().kind.api_version(),
            "policy/v1"
        );
        let deploy = r.preferred("apps", "deployments").unwrap();
        assert_eq!(deploy.subresource("scale").unwrap().kind.kind, "Scale");
        let ns = r.preferred("", "namespaces").unwrap();
        assert!(ns.subresource("finalize").is_some());
        assert!(!ns.has_verb("deletecollection"));
        assert!(pods.has_verb("deletecollection"));
        let sa = r.preferred("", "serviceaccounts").unwrap();
        assert_eq!(sa.subresource("token").unwrap().kind.kind, "TokenRequest");
        let csr = r
            .preferred("certificates.k8s.io", "certificatesigningrequests")
            .unwrap();
        assert!(csr.subresource("approval").is_some());
    }

    #[test]
    fn categories_and_groups() {
        let r = Registry::builtin();
        let all: Vec<_> = r.in_category("all").map(|i| i.resource.as_str()).collect();
        assert_eq!(
            all,
            [
                "pods",
                "services",
                "deployments",
                "replicasets",
                "daemonsets"
            ]
        );
        let groups = r.groups();
        assert_eq!(groups[0].0, "");
        assert_eq!(groups[1].0, "apiregistration.k8s.io");
        assert_eq!(groups[2].0, "apps");
        assert!(groups.iter().all(|(_, v)| v == &vec!["v1".to_owned()]));
    }

    #[test]
    fn field_selectable() {
        let r = Registry::builtin();
        let pods = r.preferred("", "pods").unwrap();
        assert!(pods.field_selectable("metadata.name"));
        assert!(pods.field_selectable("metadata.namespace"));
        assert!(pods.field_selectable("spec.nodeName"));
        assert!(pods.field_selectable("status.phase"));
        assert!(!pods.field_selectable("spec.containers"));
        let nodes = r.preferred("", "nodes").unwrap();
        assert!(!nodes.field_selectable("metadata.namespace"));
    }

    #[test]
    fn crd_versions_become_resources() {
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "virtualservices.networking.istio.io"},
            "spec": {
                "group": "networking.istio.io",
                "scope": "Namespaced",
                "names": {"plural": "virtualservices", "singular": "virtualservice",
                          "kind": "VirtualService", "shortNames": ["vs"], "categories": ["istio-io"]},
                "versions": [
                    {"name": "v1alpha3", "served": true, "storage": false},
                    {"name": "v1beta1", "served": true, "storage": true,
                     "subresources": {"status": {}},
                     "additionalPrinterColumns": [
                        {"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]},
                    {"name": "v1", "served": false, "storage": false}
                ]
            }
        });
        let infos = from_crd(&crd);
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].version, "v1beta1");
        assert_eq!(
            infos[0].storage_prefix.as_deref(),
            Some("networking.istio.io/virtualservices")
        );
        assert!(infos[0].subresource("status").is_some());
        assert!(infos[1].subresource("status").is_none());
        let cols: Vec<_> = infos[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["Name", "Gateways", "Age"]);
        let cols: Vec<_> = infos[1].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["Name", "Age"]);

        let mut r = Registry::builtin();
        for i in infos {
            r.add(i);
        }
        assert_eq!(r.resolve("vs").unwrap().version, "v1beta1");
        assert_eq!(
            r.resolve("virtualservices.v1alpha3.networking.istio.io")
                .unwrap()
                .version,
            "v1alpha3"
        );
        assert_eq!(
            r.groups().last().unwrap(),
            &(
                "networking.istio.io".to_owned(),
                vec!["v1beta1".to_owned(), "v1alpha3".to_owned()]
            )
        );
        r.remove("networking.istio.io", "virtualservices");
        assert!(r.resolve("vs").is_none());
        r.remove("", "pods");
        assert!(r.resolve("po").is_some(), "built-ins are never removed");
    }
}
