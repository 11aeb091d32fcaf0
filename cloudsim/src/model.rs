//! The cloud's whole state as one serialisable value. Actions mutate a copy
//! (see `cloud.rs`), so a failed action changes nothing; the copy is
//! persisted before it becomes visible.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ram::PolicyDocument;
use crate::route::RouteTable;
use crate::sg::Rule;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Bumped on every committed mutation.
    pub revision: u64,
    pub account_id: String,
    pub region: String,
    /// Key for STS security tokens, registry JWTs and temporary registry
    /// passwords (hex).
    pub signing_key: String,
    pub quotas: Quotas,
    pub instance_types: BTreeMap<String, InstanceType>,
    pub instances: BTreeMap<String, Instance>,
    pub vpcs: BTreeMap<String, Vpc>,
    pub vswitches: BTreeMap<String, VSwitch>,
    pub route_tables: BTreeMap<String, RouteTableRec>,
    pub security_groups: BTreeMap<String, SecurityGroup>,
    pub users: BTreeMap<String, RamUser>,
    pub access_keys: BTreeMap<String, AccessKey>,
    pub roles: BTreeMap<String, RamRole>,
    pub policies: BTreeMap<String, RamPolicy>,
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    pub scaling_groups: BTreeMap<String, ScalingGroup>,
    pub scaling_configurations: BTreeMap<String, ScalingConfiguration>,
    pub scaling_rules: BTreeMap<String, ScalingRule>,
    pub scaling_activities: BTreeMap<String, ScalingActivity>,
    pub registry: Registry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quotas {
    pub route_entries_per_table: usize,
    pub instances: usize,
    pub scaling_activities_kept: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            route_entries_per_table: crate::route::DEFAULT_ROUTE_ENTRY_QUOTA,
            instances: 500,
            scaling_activities_kept: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceType {
    pub id: String,
    pub cpu_core_count: u32,
    pub memory_size_gib: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Pending => "Pending",
            InstanceStatus::Starting => "Starting",
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopping => "Stopping",
            InstanceStatus::Stopped => "Stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub host_name: String,
    pub instance_type: String,
    pub image_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub zone_id: String,
    pub private_ip: Ipv4Addr,
    pub security_group_ids: Vec<String>,
    pub status: InstanceStatus,
    /// Decoded UserData (the API carries it base64-encoded).
    pub user_data: String,
    pub ram_role: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub creation_unix_ms: i64,
    /// Scaling group that created it, if any.
    pub scaling_group_id: Option<String>,
    /// Why the last start failed, if it did.
    pub last_error: Option<String>,
    /// Set when a stop/delete was asked while a boot was in flight.
    pub desired_running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub name: String,
    pub cidr: Ipv4Net,
    pub vrouter_id: String,
    pub route_table_id: String,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VSwitch {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr: Ipv4Net,
    /// Addresses in use (ENIs and SLB VIPs).
    pub used: BTreeSet<Ipv4Addr>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteTableRec {
    pub id: String,
    pub vpc_id: String,
    pub vrouter_id: String,
    pub table: RouteTable,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub inner_accept: bool,
    pub rules: Vec<Rule>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RamUser {
    pub name: String,
    pub id: String,
    pub attached_policies: BTreeSet<String>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    /// `None` for the account's root key.
    pub user: Option<String>,
    pub active: bool,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RamRole {
    pub name: String,
    pub id: String,
    pub trust_policy: String,
    pub attached_policies: BTreeSet<String>,
    pub max_session_duration_s: u64,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RamPolicy {
    pub name: String,
    pub system: bool,
    pub description: String,
    /// Versions by id (`v1`, `v2`, …); `default_version` is the one in force.
    pub versions: BTreeMap<String, String>,
    pub default_version: String,
    pub next_version: u32,
    /// The parsed default version.
    pub document: PolicyDocument,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub address: Ipv4Addr,
    pub listeners: BTreeMap<u16, TcpListener>,
    pub backends: Vec<Backend>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcpListener {
    pub port: u16,
    pub backend_port: u16,
    pub running: bool,
    pub health_check: HealthCheck,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthCheck {
    pub connect_port: Option<u16>,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub interval_s: u32,
    pub connect_timeout_s: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            connect_port: None,
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            interval_s: 2,
            connect_timeout_s: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendHealth {
    Normal,
    Abnormal,
    Unavailable,
}

impl BackendHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendHealth::Normal => "normal",
            BackendHealth::Abnormal => "abnormal",
            BackendHealth::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backend {
    pub server_id: String,
    pub weight: u32,
    /// Per listener port: health as last reported by the data plane.
    pub health: BTreeMap<u16, BackendHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingGroup {
    pub id: String,
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: Option<u32>,
    pub vswitch_ids: Vec<String>,
    pub load_balancer_ids: Vec<String>,
    pub active_configuration_id: Option<String>,
    pub enabled: bool,
    pub instance_ids: Vec<String>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingConfiguration {
    pub id: String,
    pub scaling_group_id: String,
    pub name: String,
    pub instance_type: String,
    pub image_id: String,
    pub security_group_id: String,
    pub user_data: String,
    pub ram_role: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdjustmentType {
    QuantityChangeInCapacity,
    TotalCapacity,
    PercentChangeInCapacity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingRule {
    pub id: String,
    pub ari: String,
    pub scaling_group_id: String,
    pub name: String,
    pub adjustment_type: AdjustmentType,
    pub adjustment_value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityStatus {
    InProgress,
    Successful,
    Warning,
    Failed,
}

impl ActivityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::InProgress => "InProgress",
            ActivityStatus::Successful => "Successful",
            ActivityStatus::Warning => "Warning",
            ActivityStatus::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingActivity {
    pub id: String,
    pub scaling_group_id: String,
    pub status: ActivityStatus,
    pub cause: String,
    pub description: String,
    pub status_message: String,
    pub instance_ids: Vec<String>,
    pub start_unix_ms: i64,
    pub end_unix_ms: Option<i64>,
    /// Orders activities (newest first in Describe).
    pub seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    pub namespaces: BTreeMap<String, RegistryNamespace>,
    /// Keyed by `<namespace>/<name>`.
    pub repos: BTreeMap<String, Repo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryNamespace {
    pub name: String,
    pub default_public: bool,
    pub creation_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repo {
    pub namespace: String,
    pub name: String,
    pub public: bool,
    pub summary: String,
    /// tag → image.
    pub tags: BTreeMap<String, Image>,
    pub creation_unix_ms: i64,
}

/// What a tag points at: the built-in workload program (and its arguments)
/// a container of this image runs, identified by the manifest digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    pub program: String,
    pub args: Vec<String>,
    pub digest: String,
    pub update_unix_ms: i64,
}

/// Instance types offered (family `ecs.g6` like the seed clusters use).
pub fn builtin_instance_types() -> BTreeMap<String, InstanceType> {
    [
        ("ecs.t5-lc1m1.small", 1, 1.0),
        ("ecs.g6.large", 2, 8.0),
        ("ecs.g6.xlarge", 4, 16.0),
        ("ecs.g6.2xlarge", 8, 32.0),
        ("ecs.c6.large", 2, 4.0),
        ("ecs.c6.xlarge", 4, 8.0),
        ("ecs.r6.large", 2, 16.0),
    ]
    .into_iter()
    .map(|(id, cpu, mem)| {
        (
            id.to_owned(),
            InstanceType {
                id: id.to_owned(),
                cpu_core_count: cpu,
                memory_size_gib: mem,
            },
        )
    })
    .collect()
}

impl State {
    /// A fresh account with the system policies and the built-in instance
    /// types.
    pub fn new(
        account_id: String,
        region: String,
        signing_key: String,
        quotas: Quotas,
        now_ms: i64,
    ) -> State {
        let mut s = State {
            revision: 0,
            account_id,
            region,
            signing_key,
            quotas,
            instance_types: builtin_instance_types(),
            instances: BTreeMap::new(),
            vpcs: BTreeMap::new(),
            vswitches: BTreeMap::new(),
            route_tables: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            users: BTreeMap::new(),
            access_keys: BTreeMap::new(),
            roles: BTreeMap::new(),
            policies: BTreeMap::new(),
            load_balancers: BTreeMap::new(),
            scaling_groups: BTreeMap::new(),
            scaling_configurations: BTreeMap::new(),
            scaling_rules: BTreeMap::new(),
            scaling_activities: BTreeMap::new(),
            registry: Registry::default(),
        };
        for (name, action) in [
            ("AdministratorAccess", "*"),
            ("AliyunECSFullAccess", "ecs:*"),
            ("AliyunVPCFullAccess", "vpc:*"),
            ("AliyunSLBFullAccess", "slb:*"),
            ("AliyunESSFullAccess", "ess:*"),
            ("AliyunRAMFullAccess", "ram:*"),
            ("AliyunSTSAssumeRoleAccess", "sts:AssumeRole"),
            ("AliyunContainerRegistryFullAccess", "cr:*"),
        ] {
            let text = format!(
                r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
            );
            let document = PolicyDocument::parse(&text).expect("system policy is valid");
            s.policies.insert(
                name.to_owned(),
                RamPolicy {
                    name: name.to_owned(),
                    system: true,
                    description: format!("system policy granting {action}"),
                    versions: BTreeMap::from([("v1".to_owned(), text)]),
                    default_version: "v1".to_owned(),
                    next_version: 2,
                    document,
                    creation_unix_ms: now_ms,
                },
            );
        }
        s
    }

    /// Security groups' rules in the shape `sg::evaluate` takes.
    pub fn group_rules(&self, id: &str) -> Option<crate::sg::GroupRules> {
        self.security_groups.get(id).map(|g| crate::sg::GroupRules {
            group_id: g.id.clone(),
            inner_accept: g.inner_accept,
            rules: g.rules.clone(),
        })
    }

    /// The instance whose primary ENI has `ip`.
    pub fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<&Instance> {
        self.instances.values().find(|i| i.private_ip == ip)
    }
}
