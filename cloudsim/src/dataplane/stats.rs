//! What the fabric counts and why it drops: per-ENI and per-rule counters
//! and a bounded drop log, rendered for the cloud API
//! (`vpc DescribeFabricCounters`, `vpc DescribeFabricDrops`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::packet::{Malformed, protocol_name};
use crate::cloud::iso8601;
use crate::sg::{Direction, FlowKey, Verdict};

/// Why a packet died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Not a well-formed IPv4 packet.
    Malformed(Malformed),
    /// A datagram from an underlay address no virtual NIC registered.
    UnknownSource,
    /// No route entry of the VPC covers the destination.
    NoRoute { route_table_id: String },
    /// The destination is in a VSwitch or the cloud range but nothing has
    /// that address.
    NoSuchAddress,
    /// The destination (or the route's next hop) is an instance whose NIC
    /// is not attached (stopped, booting, or deleted).
    InstanceNotRunning { instance_id: String },
    /// A security group refused it; `rule_id` is empty for the default
    /// ingress policy.
    SecurityGroup {
        direction: Direction,
        instance_id: String,
        group_id: String,
        rule_id: String,
    },
    /// Conntrack is full and nothing has expired.
    ConntrackFull,
    /// A later fragment whose first fragment was never accepted.
    UnmatchedFragment,
    /// A packet from the cloud services to an address several VPCs use.
    AmbiguousAddress,
    /// The `fabric/forward` failpoint.
    Failpoint(String),
    /// The destination NIC's underlay refused the datagram (buffer full).
    DeliveryFailed(String),
}

impl DropReason {
    /// Stable code (API filter and counters).
    pub fn code(&self) -> &'static str {
        match self {
            DropReason::Malformed(_) => "Malformed",
            DropReason::UnknownSource => "UnknownSource",
            DropReason::NoRoute { .. } => "NoRoute",
            DropReason::NoSuchAddress => "NoSuchAddress",
            DropReason::InstanceNotRunning { .. } => "InstanceNotRunning",
            DropReason::SecurityGroup { .. } => "SecurityGroup",
            DropReason::ConntrackFull => "ConntrackFull",
            DropReason::UnmatchedFragment => "UnmatchedFragment",
            DropReason::AmbiguousAddress => "AmbiguousAddress",
            DropReason::Failpoint(_) => "Failpoint",
            DropReason::DeliveryFailed(_) => "DeliveryFailed",
        }
    }

    /// A sentence for people.
    pub fn detail(&self, dst: Option<Ipv4Addr>) -> String {
        let dst = dst.map(|d| d.to_string()).unwrap_or_else(|| "?".into());
        match self {
            DropReason::Malformed(m) => m.to_string(),
            DropReason::UnknownSource => {
                "datagram from an underlay address no virtual nic registered".into()
            }
            DropReason::NoRoute { route_table_id } => {
                format!("no route: no entry of route table {route_table_id} matches {dst}")
            }
            DropReason::NoSuchAddress => format!("no such address: nothing in the vpc has {dst}"),
            DropReason::InstanceNotRunning { instance_id } => {
                format!("instance {instance_id} (destination or next hop) has no attached nic")
            }
            DropReason::SecurityGroup {
                direction,
                instance_id,
                group_id,
                rule_id,
            } => {
                let dir = match direction {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                };
                if rule_id.is_empty() {
                    format!(
                        "security group: {dir} of {instance_id} dropped by the default policy (no rule matched)"
                    )
                } else {
                    format!(
                        "security group: {dir} of {instance_id} dropped by rule {rule_id} of {group_id}"
                    )
                }
            }
            DropReason::ConntrackFull => "conntrack table full, dropping new flow".into(),
            DropReason::UnmatchedFragment => "fragment without an accepted first fragment".into(),
            DropReason::AmbiguousAddress => {
                format!("{dst} exists in several vpcs; the cloud services cannot tell which")
            }
            DropReason::Failpoint(m) => format!("failpoint fabric/forward: {m}"),
            DropReason::DeliveryFailed(m) => format!("delivery failed: {m}"),
        }
    }
}

/// One dropped packet.
#[derive(Debug, Clone)]
pub struct DropRecord {
    pub time_unix_ms: i64,
    pub reason: DropReason,
    pub source_instance: Option<String>,
    pub destination_instance: Option<String>,
    /// `None` for malformed packets.
    pub flow: Option<FlowKey>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets it sent that the fabric dropped.
    pub tx_dropped: u64,
    /// Packets to it that the fabric dropped.
    pub rx_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCounters {
    pub direction: Option<Direction>,
    /// New flows the rule accepted.
    pub accepted_flows: u64,
    /// Packets the rule dropped.
    pub dropped_packets: u64,
}

/// Everything the fabric counts. The fabric thread holds the lock for one
/// batch at a time; API readers take it briefly.
#[derive(Debug)]
pub struct Stats {
    pub enis: HashMap<String, EniCounters>,
    /// By (group id, rule id); rule id `InnerAccess` for the group's
    /// inner-access policy.
    pub rules: HashMap<(String, String), RuleCounters>,
    pub drops_by_reason: BTreeMap<&'static str, u64>,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub cloud_tx_packets: u64,
    pub cloud_rx_packets: u64,
    pub conntrack_flows: usize,
    pub conntrack_capacity: usize,
    pub attached_nics: usize,
    log: VecDeque<DropRecord>,
    log_capacity: usize,
    /// Drop records ever appended (the log keeps the newest).
    pub logged_total: u64,
}

impl Stats {
    pub fn new(log_capacity: usize) -> Stats {
        Stats {
            enis: HashMap::new(),
            rules: HashMap::new(),
            drops_by_reason: BTreeMap::new(),
            forwarded_packets: 0,
            forwarded_bytes: 0,
            cloud_tx_packets: 0,
            cloud_rx_packets: 0,
            conntrack_flows: 0,
            conntrack_capacity: 0,
            attached_nics: 0,
            log: VecDeque::with_capacity(log_capacity.min(4096)),
            log_capacity: log_capacity.max(1),
            logged_total: 0,
        }
    }

    fn eni(&mut self, id: &str) -> &mut EniCounters {
        if !self.enis.contains_key(id) {
            self.enis.insert(id.to_owned(), EniCounters::default());
        }
        self.enis.get_mut(id).expect("inserted above")
    }

    pub fn sent(&mut self, instance: &str, bytes: usize) {
        let e = self.eni(instance);
        e.tx_packets += 1;
        e.tx_bytes += bytes as u64;
    }

    pub fn received(&mut self, instance: &str, bytes: usize) {
        let e = self.eni(instance);
        e.rx_packets += 1;
        e.rx_bytes += bytes as u64;
    }

    /// Counts a security-group decision against its rule.
    pub fn verdict(&mut self, direction: Direction, v: &Verdict) {
        let (g, r, accepted) = match v {
            Verdict::AcceptRule { group_id, rule_id } => (group_id, rule_id.as_str(), true),
            Verdict::DropRule { group_id, rule_id } => (group_id, rule_id.as_str(), false),
            Verdict::AcceptInnerGroup { group_id } => (group_id, "InnerAccess", true),
            Verdict::AcceptDefaultEgress | Verdict::DropDefaultIngress => return,
        };
        let key = (g.clone(), r.to_owned());
        let c = self.rules.entry(key).or_default();
        c.direction = Some(direction);
        if accepted {
            c.accepted_flows += 1;
        } else {
            c.dropped_packets += 1;
        }
    }

    /// Records a drop.
    pub fn drop_packet(&mut self, rec: DropRecord) {
        *self.drops_by_reason.entry(rec.reason.code()).or_default() += 1;
        if let Some(s) = &rec.source_instance {
            self.eni(s).tx_dropped += 1;
        }
        if let Some(d) = &rec.destination_instance {
            self.eni(d).rx_dropped += 1;
        }
        if self.log.len() >= self.log_capacity {
            self.log.pop_front();
        }
        self.log.push_back(rec);
        self.logged_total += 1;
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops_by_reason.values().sum()
    }

    /// The drop log, newest first, filtered.
    pub fn drops_json(&self, f: &DropFilter) -> Value {
        let items: Vec<Value> = self
            .log
            .iter()
            .rev()
            .filter(|r| f.reason.as_deref().is_none_or(|c| c == r.reason.code()))
            .filter(|r| {
                f.instance_id.as_deref().is_none_or(|i| {
                    r.source_instance.as_deref() == Some(i)
                        || r.destination_instance.as_deref() == Some(i)
                })
            })
            .filter(|r| {
                f.ip.is_none_or(|ip| r.flow.is_some_and(|fl| fl.src == ip || fl.dst == ip))
            })
            .take(f.limit)
            .map(drop_json)
            .collect();
        let n = items.len();
        json!({
            "Drops": {"Drop": items},
            "TotalCount": n,
            "DropCounts": self.drops_by_reason,
            "DroppedTotal": self.dropped_total(),
        })
    }

    pub fn counters_json(&self, instance_id: Option<&str>) -> Value {
        let mut enis: Vec<(&String, &EniCounters)> = self
            .enis
            .iter()
            .filter(|(i, _)| instance_id.is_none_or(|x| x == i.as_str()))
            .collect();
        enis.sort_by(|a, b| a.0.cmp(b.0));
        let enis: Vec<Value> = enis
            .into_iter()
            .map(|(i, c)| {
                json!({"InstanceId": i, "TxPackets": c.tx_packets, "TxBytes": c.tx_bytes,
                       "RxPackets": c.rx_packets, "RxBytes": c.rx_bytes,
                       "TxDropped": c.tx_dropped, "RxDropped": c.rx_dropped})
            })
            .collect();
        let mut rules: Vec<(&(String, String), &RuleCounters)> = self.rules.iter().collect();
        rules.sort_by(|a, b| a.0.cmp(b.0));
        let rules: Vec<Value> = rules
            .into_iter()
            .map(|((g, r), c)| {
                json!({"SecurityGroupId": g, "SecurityGroupRuleId": r,
                       "Direction": match c.direction { Some(Direction::Egress) => "egress", _ => "ingress" },
                       "AcceptedFlows": c.accepted_flows, "DroppedPackets": c.dropped_packets})
            })
            .collect();
        json!({
            "NetworkInterfaces": {"NetworkInterface": enis},
            "SecurityGroupRules": {"SecurityGroupRule": rules},
            "ForwardedPackets": self.forwarded_packets, "ForwardedBytes": self.forwarded_bytes,
            "CloudServicePacketsIn": self.cloud_tx_packets, "CloudServicePacketsOut": self.cloud_rx_packets,
            "DroppedTotal": self.dropped_total(), "DropCounts": self.drops_by_reason,
            "ConntrackFlows": self.conntrack_flows, "ConntrackMax": self.conntrack_capacity,
            "AttachedNetworkInterfaces": self.attached_nics,
        })
    }
}

/// Which drop records a query wants.
#[derive(Debug, Clone)]
pub struct DropFilter {
    pub reason: Option<String>,
    pub instance_id: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub limit: usize,
}

fn drop_json(r: &DropRecord) -> Value {
    let mut v = json!({
        "Time": iso8601(r.time_unix_ms), "TimeUnixMs": r.time_unix_ms,
        "Reason": r.reason.code(), "Detail": r.reason.detail(r.flow.map(|f| f.dst)),
        "SourceInstanceId": r.source_instance.clone().unwrap_or_default(),
        "DestinationInstanceId": r.destination_instance.clone().unwrap_or_default(),
    });
    if let Some(f) = r.flow {
        v["Protocol"] = json!(protocol_name(f.protocol));
        v["SourceIp"] = json!(f.src.to_string());
        v["DestinationIp"] = json!(f.dst.to_string());
        if f.protocol == 6 || f.protocol == 17 {
            v["SourcePort"] = json!(f.src_port);
            v["DestinationPort"] = json!(f.dst_port);
        }
    }
    if let DropReason::SecurityGroup {
        direction,
        group_id,
        rule_id,
        ..
    } = &r.reason
    {
        v["Direction"] = json!(match direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        });
        v["SecurityGroupId"] = json!(group_id);
        v["SecurityGroupRuleId"] = json!(rule_id);
    }
    if let DropReason::NoRoute { route_table_id } = &r.reason {
        v["RouteTableId"] = json!(route_table_id);
    }
    v
}
