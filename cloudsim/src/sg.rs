//! Security-group rules and their evaluation — a pure core the VPC fabric
//! calls per packet.
//!
//! Semantics (Alibaba basic security groups):
//! - the rules of every group an ENI belongs to are merged and ordered by
//!   priority (1 is highest, 100 lowest); at equal priority `drop` wins; the
//!   first matching rule decides;
//! - when no rule matches, two members of a common group whose
//!   `InnerAccessPolicy` is `Accept` may talk; otherwise ingress is dropped and
//!   egress is accepted;
//! - evaluation is for the *first* packet of a flow: the fabric records
//!   accepted flows in a [`Conntrack`] and lets replies through without
//!   evaluating rules again (stateful).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::error::CloudError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl Protocol {
    /// Parses `IpProtocol` as the API takes it (case-insensitive).
    pub fn parse(s: &str) -> Result<Protocol, CloudError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            "all" => Ok(Protocol::All),
            _ => Err(CloudError::new(
                "InvalidIpProtocol.Malformed",
                format!(
                    "The specified parameter IpProtocol {s:?} is not valid: expected tcp, udp, icmp or all."
                ),
                400,
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
            Protocol::All => "ALL",
        }
    }

    /// IP protocol number, `None` for `All`.
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::All => None,
        }
    }

    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            1 => Some(Protocol::Icmp),
            _ => None,
        }
    }
}

/// A port range `from/to`; `-1/-1` (stored as `None`) means "no ports"
/// (ICMP, ALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { from: 1, to: 65535 };

    /// Parses `PortRange` for `protocol`: tcp/udp need `a/b` with
    /// 1 <= a <= b <= 65535; icmp/all need `-1/-1`.
    pub fn parse(s: &str, protocol: Protocol) -> Result<Option<PortRange>, CloudError> {
        let bad = || {
            CloudError::new(
                "InvalidIpPortRange.Malformed",
                format!(
                    "The specified parameter PortRange {s:?} is not valid for {}: expected {}.",
                    protocol.as_str(),
                    match protocol {
                        Protocol::Tcp | Protocol::Udp => "from/to with 1 <= from <= to <= 65535",
                        Protocol::Icmp | Protocol::All => "-1/-1",
                    }
                ),
                400,
            )
        };
        let (a, b) = s.split_once('/').ok_or_else(bad)?;
        match protocol {
            Protocol::Icmp | Protocol::All => {
                if a.trim() == "-1" && b.trim() == "-1" {
                    Ok(None)
                } else {
                    Err(bad())
                }
            }
            Protocol::Tcp | Protocol::Udp => {
                let from: u16 = a.trim().parse().map_err(|_| bad())?;
                let to: u16 = b.trim().parse().map_err(|_| bad())?;
                if from == 0 || from > to {
                    return Err(bad());
                }
                Ok(Some(PortRange { from, to }))
            }
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.from <= port && port <= self.to
    }

    pub fn render(range: Option<PortRange>) -> String {
        match range {
            Some(r) => format!("{}/{}", r.from, r.to),
            None => "-1/-1".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, CloudError> {
        match s.to_ascii_lowercase().as_str() {
            "accept" => Ok(Policy::Accept),
            "drop" => Ok(Policy::Drop),
            _ => Err(CloudError::new(
                "InvalidPolicy.Malformed",
                format!(
                    "The specified parameter Policy {s:?} is not valid: expected accept or drop."
                ),
                400,
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "Accept",
            Policy::Drop => "Drop",
        }
    }
}

/// The other end of a rule: an address block or the members of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Peer {
    Cidr(Ipv4Net),
    Group(String),
}

/// One security-group rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub rule_id: String,
    pub direction: Direction,
    pub protocol: Protocol,
    pub ports: Option<PortRange>,
    pub peer: Peer,
    pub policy: Policy,
    pub priority: u8,
    pub description: String,
}

impl Rule {
    /// Same rule ignoring id and description (what Authorize calls a duplicate
    /// and Revoke matches on).
    pub fn same_permission(&self, other: &Rule) -> bool {
        self.direction == other.direction
            && self.protocol == other.protocol
            && self.ports == other.ports
            && self.peer == other.peer
            && self.policy == other.policy
            && self.priority == other.priority
    }
}

pub fn parse_priority(s: Option<&str>) -> Result<u8, CloudError> {
    let Some(s) = s else { return Ok(1) };
    match s.trim().parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(CloudError::new(
            "InvalidPriority.Malformed",
            format!(
                "The specified parameter Priority {s:?} is not valid: expected an integer from 1 to 100."
            ),
            400,
        )),
    }
}

/// A security group as evaluation needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRules {
    pub group_id: String,
    /// `InnerAccessPolicy`: members of this group may talk to each other.
    pub inner_accept: bool,
    pub rules: Vec<Rule>,
}

/// The first packet of a flow as the fabric sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Source port (TCP/UDP), ICMP identifier, 0 otherwise.
    pub src_port: u16,
    /// Destination port (TCP/UDP), 0 otherwise.
    pub dst_port: u16,
}

impl FlowKey {
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            protocol: self.protocol,
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// Why a packet was accepted or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A rule accepted it: (group, rule id).
    AcceptRule { group_id: String, rule_id: String },
    /// A rule dropped it.
    DropRule { group_id: String, rule_id: String },
    /// No rule matched; the peers share a group with inner access.
    AcceptInnerGroup { group_id: String },
    /// No rule matched: egress defaults to accept.
    AcceptDefaultEgress,
    /// No rule matched: ingress defaults to drop.
    DropDefaultIngress,
}

impl Verdict {
    pub fn accepted(&self) -> bool {
        matches!(
            self,
            Verdict::AcceptRule { .. }
                | Verdict::AcceptInnerGroup { .. }
                | Verdict::AcceptDefaultEgress
        )
    }
}

fn rule_matches(
    rule: &Rule,
    dir: Direction,
    flow: &FlowKey,
    peer_ip: Ipv4Addr,
    peer_groups: &[&str],
) -> bool {
    if rule.direction != dir {
        return false;
    }
    match rule.protocol.number() {
        None => {}
        Some(n) if n == flow.protocol => {}
        Some(_) => return false,
    }
    if let Some(range) = rule.ports {
        // Port ranges constrain the destination port of the flow.
        if !range.contains(flow.dst_port) {
            return false;
        }
    }
    match &rule.peer {
        Peer::Cidr(net) => net.contains(&peer_ip),
        Peer::Group(g) => peer_groups.iter().any(|pg| pg == g),
    }
}

/// Evaluates the first packet of `flow` in `direction` for an ENI that is a
/// member of `local`; `peer_groups` are the groups of the ENI at the other
/// end (empty when the peer is not an ENI in this VPC).
pub fn evaluate(
    direction: Direction,
    local: &[&GroupRules],
    flow: &FlowKey,
    peer_groups: &[&str],
) -> Verdict {
    let peer_ip = match direction {
        Direction::Ingress => flow.src,
        Direction::Egress => flow.dst,
    };
    let mut best: Option<(&GroupRules, &Rule)> = None;
    for g in local {
        for r in &g.rules {
            if !rule_matches(r, direction, flow, peer_ip, peer_groups) {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, b)) => {
                    r.priority < b.priority
                        || (r.priority == b.priority
                            && r.policy == Policy::Drop
                            && b.policy == Policy::Accept)
                }
            };
            if better {
                best = Some((g, r));
            }
        }
    }
    if let Some((g, r)) = best {
        let (group_id, rule_id) = (g.group_id.clone(), r.rule_id.clone());
        return match r.policy {
            Policy::Accept => Verdict::AcceptRule { group_id, rule_id },
            Policy::Drop => Verdict::DropRule { group_id, rule_id },
        };
    }
    if let Some(g) = local
        .iter()
        .find(|g| g.inner_accept && peer_groups.contains(&g.group_id.as_str()))
    {
        return Verdict::AcceptInnerGroup {
            group_id: g.group_id.clone(),
        };
    }
    match direction {
        Direction::Egress => Verdict::AcceptDefaultEgress,
        Direction::Ingress => Verdict::DropDefaultIngress,
    }
}

/// The rules ACK puts into a cluster's security group at creation: accept
/// everything from the pod CIDR, accept ICMP from anywhere, and accept all
/// egress. (Members of the group reach each other through inner access.)
pub fn ack_default_rules(pod_cidr: Ipv4Net) -> Vec<Rule> {
    vec![
        Rule {
            rule_id: "sgr-default-pod-cidr".into(),
            direction: Direction::Ingress,
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Cidr(pod_cidr),
            policy: Policy::Accept,
            priority: 1,
            description: "ACK default: pod CIDR".into(),
        },
        Rule {
            rule_id: "sgr-default-icmp".into(),
            direction: Direction::Ingress,
            protocol: Protocol::Icmp,
            ports: None,
            peer: Peer::Cidr("0.0.0.0/0".parse().expect("literal cidr")),
            policy: Policy::Accept,
            priority: 100,
            description: "ACK default: icmp".into(),
        },
        Rule {
            rule_id: "sgr-default-egress".into(),
            direction: Direction::Egress,
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Cidr("0.0.0.0/0".parse().expect("literal cidr")),
            policy: Policy::Accept,
            priority: 100,
            description: "ACK default: egress".into(),
        },
    ]
}

/// Idle timeouts of tracked flows (cluster time), by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackTimeouts {
    pub tcp: Duration,
    pub udp: Duration,
    /// ICMP and every other protocol.
    pub other: Duration,
    /// A TCP flow after a FIN or RST was seen.
    pub closing: Duration,
}

impl ConntrackTimeouts {
    /// Alibaba's security groups keep idle TCP flows 910 s; UDP and ICMP
    /// get the shorter netfilter-like values.
    pub const DEFAULT: ConntrackTimeouts = ConntrackTimeouts {
        tcp: Duration::from_secs(910),
        udp: Duration::from_secs(180),
        other: Duration::from_secs(30),
        closing: Duration::from_secs(10),
    };

    /// The same timeout for everything.
    pub fn uniform(d: Duration) -> ConntrackTimeouts {
        ConntrackTimeouts {
            tcp: d,
            udp: d,
            other: d,
            closing: d,
        }
    }
}

/// A tracked flow: its original direction is the key it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    zone: u32,
    flow: FlowKey,
}

#[derive(Debug, Clone, Copy)]
struct ConnEntry {
    last_ms: u64,
    /// The rules revision the flow was last checked against.
    revision: u64,
    closing: bool,
}

/// Which way a packet of a tracked flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowDirection {
    /// Same direction as the packet that opened the flow.
    Original,
    Reply,
}

/// What [`Conntrack::find`] knows about a packet's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub direction: FlowDirection,
    /// The rules revision the flow was accepted under.
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("conntrack table full: {capacity} flows tracked, none idle long enough to expire")]
pub struct ConntrackFull {
    pub capacity: usize,
}

/// Connection tracking for stateful security groups: the fabric records
/// each accepted flow and asks whether a packet belongs to one (either
/// direction). Flows live in zones (one per VPC, so overlapping address
/// plans do not mix). Time is passed in (cluster milliseconds). Capacity is
/// bounded: when the table is full and nothing has expired, new flows are
/// refused (like netfilter's "table full, dropping packet") rather than
/// silently evicting live ones.
#[derive(Debug)]
pub struct Conntrack {
    entries: HashMap<ConnKey, ConnEntry>,
    capacity: usize,
    timeouts: ConntrackTimeouts,
}

impl Conntrack {
    /// One idle timeout for every protocol.
    pub fn new(capacity: usize, timeout: Duration) -> Conntrack {
        Conntrack::with_timeouts(capacity, ConntrackTimeouts::uniform(timeout))
    }

    pub fn with_timeouts(capacity: usize, timeouts: ConntrackTimeouts) -> Conntrack {
        Conntrack {
            entries: HashMap::with_capacity(capacity.min(1 << 14)),
            capacity: capacity.max(1),
            timeouts,
        }
    }

    fn timeout_ms(&self, flow: &FlowKey, e: &ConnEntry) -> u64 {
        let d = if e.closing {
            self.timeouts.closing
        } else {
            match flow.protocol {
                6 => self.timeouts.tcp,
                17 => self.timeouts.udp,
                _ => self.timeouts.other,
            }
        };
        d.as_millis() as u64
    }

    fn live(&self, key: &ConnKey, e: &ConnEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.last_ms) <= self.timeout_ms(&key.flow, e)
    }

    /// Records that `flow` (original direction) was accepted at `now_ms`
    /// in zone 0; refreshes it if present. `false` when the table is full.
    pub fn record(&mut self, flow: FlowKey, now_ms: u64) -> bool {
        self.track(0, flow, now_ms, 0).is_ok()
    }

    /// Whether `packet` belongs to a tracked flow of zone 0, either
    /// direction; a hit refreshes the entry.
    pub fn established(&mut self, packet: &FlowKey, now_ms: u64) -> bool {
        self.find(0, packet, now_ms).is_some()
    }

    /// Starts tracking `flow` (its original direction) in `zone`, accepted
    /// under rules `revision`; refreshes an existing entry.
    pub fn track(
        &mut self,
        zone: u32,
        flow: FlowKey,
        now_ms: u64,
        revision: u64,
    ) -> Result<(), ConntrackFull> {
        let key = ConnKey { zone, flow };
        if let Some(e) = self.entries.get_mut(&key) {
            e.last_ms = now_ms;
            e.revision = revision;
            return Ok(());
        }
        if self.entries.len() >= self.capacity {
            self.sweep(now_ms);
            if self.entries.len() >= self.capacity {
                return Err(ConntrackFull {
                    capacity: self.capacity,
                });
            }
        }
        self.entries.insert(
            key,
            ConnEntry {
                last_ms: now_ms,
                revision,
                closing: false,
            },
        );
        Ok(())
    }

    /// The tracked flow `packet` belongs to in `zone`, if any (either
    /// direction); a hit refreshes the entry, an expired entry is removed.
    pub fn find(&mut self, zone: u32, packet: &FlowKey, now_ms: u64) -> Option<Tracked> {
        for (flow, direction) in [
            (*packet, FlowDirection::Original),
            (packet.reversed(), FlowDirection::Reply),
        ] {
            let key = ConnKey { zone, flow };
            let Some(e) = self.entries.get(&key).copied() else {
                continue;
            };
            if !self.live(&key, &e, now_ms) {
                self.entries.remove(&key);
                continue;
            }
            if let Some(e) = self.entries.get_mut(&key) {
                e.last_ms = now_ms;
            }
            return Some(Tracked {
                direction,
                revision: e.revision,
            });
        }
        None
    }

    fn key_of(&self, zone: u32, packet: &FlowKey) -> Option<ConnKey> {
        [*packet, packet.reversed()]
            .into_iter()
            .map(|flow| ConnKey { zone, flow })
            .find(|k| self.entries.contains_key(k))
    }

    /// Notes that the flow of `packet` was re-checked under `revision`.
    pub fn set_revision(&mut self, zone: u32, packet: &FlowKey, revision: u64) {
        if let Some(k) = self.key_of(zone, packet)
            && let Some(e) = self.entries.get_mut(&k)
        {
            e.revision = revision;
        }
    }

    /// A FIN or RST was seen: the flow expires after the closing timeout.
    pub fn mark_closing(&mut self, zone: u32, packet: &FlowKey) {
        if let Some(k) = self.key_of(zone, packet)
            && let Some(e) = self.entries.get_mut(&k)
        {
            e.closing = true;
        }
    }

    /// Stops tracking the flow of `packet` (either direction).
    pub fn forget(&mut self, zone: u32, packet: &FlowKey) {
        if let Some(k) = self.key_of(zone, packet) {
            self.entries.remove(&k);
        }
    }

    /// Removes expired flows; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        let t = self.timeouts;
        self.entries.retain(|k, e| {
            let d = if e.closing {
                t.closing
            } else {
                match k.flow.protocol {
                    6 => t.tcp,
                    17 => t.udp,
                    _ => t.other,
                }
            };
            now_ms.saturating_sub(e.last_ms) <= d.as_millis() as u64
        });
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn rule(
        id: &str,
        dir: Direction,
        proto: Protocol,
        ports: &str,
        peer: Peer,
        policy: Policy,
        prio: u8,
    ) -> Rule {
        Rule {
            rule_id: id.into(),
            direction: dir,
            protocol: proto,
            ports: PortRange::parse(ports, proto).unwrap(),
            peer,
            policy,
            priority: prio,
            description: String::new(),
        }
    }

    fn cluster_group() -> GroupRules {
        GroupRules {
            group_id: "sg-cluster".into(),
            inner_accept: true,
            rules: ack_default_rules(net("172.16.0.0/16")),
        }
    }

    fn flow(proto: Protocol, src: &str, dst: &str, dport: u16) -> FlowKey {
        FlowKey {
            protocol: proto.number().unwrap(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 40000,
            dst_port: dport,
        }
    }

    #[test]
    fn parse_table() {
        assert_eq!(
            PortRange::parse("1/65535", Protocol::Tcp).unwrap(),
            Some(PortRange::ALL)
        );
        assert_eq!(
            PortRange::parse("53/53", Protocol::Udp).unwrap(),
            Some(PortRange { from: 53, to: 53 })
        );
        assert_eq!(PortRange::parse("-1/-1", Protocol::Icmp).unwrap(), None);
        assert_eq!(PortRange::parse("-1/-1", Protocol::All).unwrap(), None);
        for (bad, p) in [
            ("0/10", Protocol::Tcp),
            ("10/1", Protocol::Tcp),
            ("1/65536", Protocol::Udp),
            ("80", Protocol::Tcp),
            ("a/b", Protocol::Tcp),
            ("1/65535", Protocol::Icmp),
            ("-1/-1", Protocol::Tcp),
        ] {
            let e = PortRange::parse(bad, p).expect_err(bad);
            assert_eq!(e.code, "InvalidIpPortRange.Malformed");
        }
        assert_eq!(Protocol::parse("TCP").unwrap(), Protocol::Tcp);
        assert_eq!(
            Protocol::parse("gre2").unwrap_err().code,
            "InvalidIpProtocol.Malformed"
        );
        assert_eq!(parse_priority(None).unwrap(), 1);
        assert_eq!(parse_priority(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "x", "-1"] {
            assert_eq!(
                parse_priority(Some(bad)).unwrap_err().code,
                "InvalidPriority.Malformed"
            );
        }
        assert_eq!(Policy::parse("Drop").unwrap(), Policy::Drop);
        assert_eq!(
            Policy::parse("reject").unwrap_err().code,
            "InvalidPolicy.Malformed"
        );
    }

    #[test]
    fn ack_default_rules_table() {
        let g = cluster_group();
        let local = [&g];
        let cases: Vec<(&str, Direction, FlowKey, Vec<&str>, bool)> = vec![
            (
                "pod to pod cross node tcp",
                Direction::Ingress,
                flow(Protocol::Tcp, "172.16.1.5", "172.16.2.6", 8080),
                vec![],
                true,
            ),
            (
                "pod to coredns udp 53",
                Direction::Ingress,
                flow(Protocol::Udp, "172.16.1.5", "172.16.2.10", 53),
                vec![],
                true,
            ),
            (
                "icmp from anywhere",
                Direction::Ingress,
                flow(Protocol::Icmp, "10.0.0.1", "192.168.0.5", 0),
                vec![],
                true,
            ),
            (
                "tcp from internet dropped",
                Direction::Ingress,
                flow(Protocol::Tcp, "8.8.8.8", "192.168.0.5", 22),
                vec![],
                false,
            ),
            (
                "node to node in same group (inner access)",
                Direction::Ingress,
                flow(Protocol::Tcp, "192.168.0.6", "192.168.0.5", 10250),
                vec!["sg-cluster"],
                true,
            ),
            (
                "node from vpc address not in group",
                Direction::Ingress,
                flow(Protocol::Tcp, "192.168.0.9", "192.168.0.5", 10250),
                vec!["sg-other"],
                false,
            ),
            (
                "egress anywhere",
                Direction::Egress,
                flow(Protocol::Udp, "192.168.0.5", "100.100.100.200", 80),
                vec![],
                true,
            ),
        ];
        for (name, dir, f, peers, want) in cases {
            let v = evaluate(dir, &local, &f, &peers);
            assert_eq!(v.accepted(), want, "{name}: {v:?}");
        }
    }

    /// S04: without the pod-CIDR rule, cross-node DNS fails while ping works.
    #[test]
    fn pod_cidr_rule_removed_blocks_dns_but_not_ping() {
        let mut g = cluster_group();
        g.rules.retain(|r| r.rule_id != "sgr-default-pod-cidr");
        let local = [&g];
        let dns = evaluate(
            Direction::Ingress,
            &local,
            &flow(Protocol::Udp, "172.16.1.5", "172.16.2.10", 53),
            &[],
        );
        assert_eq!(dns, Verdict::DropDefaultIngress);
        let tcp53 = evaluate(
            Direction::Ingress,
            &local,
            &flow(Protocol::Tcp, "172.16.1.5", "172.16.2.10", 53),
            &[],
        );
        assert!(!tcp53.accepted());
        let ping = evaluate(
            Direction::Ingress,
            &local,
            &flow(Protocol::Icmp, "172.16.1.5", "172.16.2.10", 0),
            &[],
        );
        assert_eq!(
            ping,
            Verdict::AcceptRule {
                group_id: "sg-cluster".into(),
                rule_id: "sgr-default-icmp".into()
            }
        );
    }

    #[test]
    fn priority_order_and_drop_wins_at_equal_priority() {
        let any = Peer::Cidr(net("0.0.0.0/0"));
        let g = GroupRules {
            group_id: "sg-a".into(),
            inner_accept: false,
            rules: vec![
                rule(
                    "accept-5",
                    Direction::Ingress,
                    Protocol::Tcp,
                    "80/80",
                    any.clone(),
                    Policy::Accept,
                    5,
                ),
                rule(
                    "drop-5",
                    Direction::Ingress,
                    Protocol::Tcp,
                    "1/65535",
                    any.clone(),
                    Policy::Drop,
                    5,
                ),
                rule(
                    "accept-1",
                    Direction::Ingress,
                    Protocol::Tcp,
                    "443/443",
                    any.clone(),
                    Policy::Accept,
                    1,
                ),
                rule(
                    "accept-10",
                    Direction::Ingress,
                    Protocol::Tcp,
                    "8080/8080",
                    any.clone(),
                    Policy::Accept,
                    10,
                ),
            ],
        };
        let local = [&g];
        let cases = [
            (
                80,
                Verdict::DropRule {
                    group_id: "sg-a".into(),
                    rule_id: "drop-5".into(),
                },
            ),
            (
                443,
                Verdict::AcceptRule {
                    group_id: "sg-a".into(),
                    rule_id: "accept-1".into(),
                },
            ),
            (
                8080,
                Verdict::DropRule {
                    group_id: "sg-a".into(),
                    rule_id: "drop-5".into(),
                },
            ),
        ];
        for (port, want) in cases {
            assert_eq!(
                evaluate(
                    Direction::Ingress,
                    &local,
                    &flow(Protocol::Tcp, "1.2.3.4", "192.168.0.5", port),
                    &[]
                ),
                want,
                "port {port}"
            );
        }
    }

    /// Management case 1: restrict egress without breaking the cluster — keep
    /// the pod CIDR and 100.64.0.0/10 open, drop the rest at lowest priority.
    /// Then S06: dropping 100.64.0.0/10 cuts the metadata server off.
    #[test]
    fn restricting_egress_keeps_pod_cidr_and_cloud_range() {
        let mut g = cluster_group();
        g.rules.retain(|r| r.direction == Direction::Ingress);
        g.rules.push(rule(
            "e-pod",
            Direction::Egress,
            Protocol::All,
            "-1/-1",
            Peer::Cidr(net("172.16.0.0/16")),
            Policy::Accept,
            1,
        ));
        g.rules.push(rule(
            "e-cloud",
            Direction::Egress,
            Protocol::All,
            "-1/-1",
            Peer::Cidr(net("100.64.0.0/10")),
            Policy::Accept,
            1,
        ));
        g.rules.push(rule(
            "e-vpc",
            Direction::Egress,
            Protocol::All,
            "-1/-1",
            Peer::Cidr(net("192.168.0.0/16")),
            Policy::Accept,
            1,
        ));
        g.rules.push(rule(
            "e-deny",
            Direction::Egress,
            Protocol::All,
            "-1/-1",
            Peer::Cidr(net("0.0.0.0/0")),
            Policy::Drop,
            100,
        ));
        let cases = [
            (
                "metadata",
                flow(Protocol::Tcp, "192.168.0.5", "100.100.100.200", 80),
                true,
            ),
            (
                "registry in cloud range",
                flow(Protocol::Tcp, "192.168.0.5", "100.100.0.7", 443),
                true,
            ),
            (
                "pod cidr",
                flow(Protocol::Udp, "172.16.1.5", "172.16.2.10", 53),
                true,
            ),
            (
                "internet",
                flow(Protocol::Tcp, "192.168.0.5", "8.8.8.8", 443),
                false,
            ),
        ];
        for (name, f, want) in cases {
            assert_eq!(
                evaluate(Direction::Egress, &[&g], &f, &[]).accepted(),
                want,
                "{name}"
            );
        }
        // S06: an operator turns the cloud-range rule into a drop.
        for r in &mut g.rules {
            if r.rule_id == "e-cloud" {
                r.policy = Policy::Drop;
            }
        }
        let v = evaluate(
            Direction::Egress,
            &[&g],
            &flow(Protocol::Tcp, "192.168.0.5", "100.100.100.200", 80),
            &[],
        );
        assert_eq!(
            v,
            Verdict::DropRule {
                group_id: "sg-cluster".into(),
                rule_id: "e-cloud".into()
            }
        );
    }

    /// Management case 2: an IDC (10.1.0.0/16) reaches the cluster once an
    /// ingress rule for its range is added; other ranges stay out.
    #[test]
    fn idc_access_by_ingress_rule() {
        let mut g = cluster_group();
        let from_idc = flow(Protocol::Tcp, "10.1.2.3", "192.168.0.5", 30080);
        assert!(!evaluate(Direction::Ingress, &[&g], &from_idc, &[]).accepted());
        g.rules.push(rule(
            "idc",
            Direction::Ingress,
            Protocol::Tcp,
            "1/65535",
            Peer::Cidr(net("10.1.0.0/16")),
            Policy::Accept,
            1,
        ));
        assert!(evaluate(Direction::Ingress, &[&g], &from_idc, &[]).accepted());
        assert!(
            !evaluate(
                Direction::Ingress,
                &[&g],
                &flow(Protocol::Tcp, "10.2.0.1", "192.168.0.5", 30080),
                &[]
            )
            .accepted()
        );
        assert!(
            evaluate(
                Direction::Egress,
                &[&g],
                &flow(Protocol::Tcp, "192.168.0.5", "10.1.2.3", 22),
                &[]
            )
            .accepted()
        );
    }

    /// Management case 3: nodes in several groups (rules merged by priority)
    /// and a node moved out of the cluster group (S05: the control-plane ENI
    /// cannot reach :10250) healed by authorizing between the groups.
    #[test]
    fn nodes_in_several_groups_and_moved_out() {
        let cluster = cluster_group();
        let mut custom = GroupRules {
            group_id: "sg-custom".into(),
            inner_accept: true,
            rules: vec![rule(
                "no-ssh",
                Direction::Ingress,
                Protocol::Tcp,
                "22/22",
                Peer::Cidr(net("0.0.0.0/0")),
                Policy::Drop,
                1,
            )],
        };
        // In both groups: the custom group's priority-1 drop beats inner access.
        let ssh = flow(Protocol::Tcp, "192.168.0.6", "192.168.0.5", 22);
        let v = evaluate(
            Direction::Ingress,
            &[&cluster, &custom],
            &ssh,
            &["sg-cluster"],
        );
        assert_eq!(
            v,
            Verdict::DropRule {
                group_id: "sg-custom".into(),
                rule_id: "no-ssh".into()
            }
        );
        let kubelet = flow(Protocol::Tcp, "192.168.0.6", "192.168.0.5", 10250);
        assert!(
            evaluate(
                Direction::Ingress,
                &[&cluster, &custom],
                &kubelet,
                &["sg-cluster"]
            )
            .accepted()
        );
        // Moved out: the node is only in sg-custom; the control-plane ENI stays in sg-cluster.
        assert_eq!(
            evaluate(Direction::Ingress, &[&custom], &kubelet, &["sg-cluster"]),
            Verdict::DropDefaultIngress
        );
        // Heal: authorize sg-cluster into sg-custom by group.
        custom.rules.push(rule(
            "from-cluster",
            Direction::Ingress,
            Protocol::All,
            "-1/-1",
            Peer::Group("sg-cluster".into()),
            Policy::Accept,
            1,
        ));
        assert!(evaluate(Direction::Ingress, &[&custom], &kubelet, &["sg-cluster"]).accepted());
        // A non-member VPC address is still refused.
        assert!(!evaluate(Direction::Ingress, &[&custom], &kubelet, &["sg-third"]).accepted());
    }

    #[test]
    fn conntrack_lets_replies_through_until_timeout() {
        let mut ct = Conntrack::new(2, Duration::from_secs(60));
        let f = flow(Protocol::Tcp, "192.168.0.6", "192.168.0.5", 10250);
        assert!(!ct.established(&f.reversed(), 0));
        assert!(ct.record(f, 1_000));
        assert!(ct.established(&f.reversed(), 2_000));
        assert!(ct.established(&f, 50_000));
        assert!(!ct.established(&f.reversed(), 50_000 + 60_001));
        assert!(ct.is_empty());
        // Bounded: a full table refuses new flows until old ones expire.
        let a = flow(Protocol::Udp, "1.1.1.1", "2.2.2.2", 1);
        let b = flow(Protocol::Udp, "1.1.1.1", "2.2.2.2", 2);
        let c = flow(Protocol::Udp, "1.1.1.1", "2.2.2.2", 3);
        assert!(ct.record(a, 0));
        assert!(ct.record(b, 0));
        assert!(!ct.record(c, 1));
        assert_eq!(ct.len(), 2);
        assert!(ct.established(&a, 1));
        assert!(!ct.established(&c, 1));
        assert!(ct.record(c, 60_002), "expired flows make room");
        assert_eq!(ct.len(), 1);
    }

    #[test]
    fn conntrack_zones_revisions_and_closing() {
        let mut ct = Conntrack::with_timeouts(
            10,
            ConntrackTimeouts {
                tcp: Duration::from_secs(900),
                udp: Duration::from_secs(100),
                other: Duration::from_secs(30),
                closing: Duration::from_secs(10),
            },
        );
        let t = flow(Protocol::Tcp, "192.168.0.6", "192.168.0.5", 80);
        ct.track(1, t, 0, 7).unwrap();
        // Another zone (VPC) does not see it.
        assert_eq!(ct.find(2, &t, 1), None);
        assert_eq!(
            ct.find(1, &t.reversed(), 1),
            Some(Tracked {
                direction: FlowDirection::Reply,
                revision: 7
            })
        );
        ct.set_revision(1, &t.reversed(), 8);
        assert_eq!(ct.find(1, &t, 2).unwrap().revision, 8);
        // TCP lives long until closing, then 10 s.
        assert!(ct.find(1, &t, 800_000).is_some());
        ct.mark_closing(1, &t.reversed());
        assert!(ct.find(1, &t, 809_000).is_some());
        assert!(ct.find(1, &t, 819_001).is_none());
        // UDP uses its own timeout; sweep removes expired flows.
        let u = flow(Protocol::Udp, "192.168.0.6", "192.168.0.5", 53);
        ct.track(1, u, 0, 1).unwrap();
        ct.track(1, t, 0, 1).unwrap();
        assert_eq!(ct.sweep(100_001), 1);
        ct.forget(1, &t.reversed());
        assert!(ct.is_empty());
    }
}
