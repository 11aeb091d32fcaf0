//! The per-packet decision of the VPC fabric — pure: (view, conntrack,
//! packet, now) → forward or drop, with counters and the drop log updated.
//!
//! For each packet: parse; find the VPC (the sender's, or for packets from
//! the cloud services the one conntrack or the destination address names);
//! resolve the destination (longest prefix over the route table → an ENI, a
//! next-hop instance, an SLB VIP or a cloud service; else no route / no such
//! address); then security groups, statefully: a packet of a tracked flow
//! passes, re-checked once after any rule change; a new flow needs the
//! sender's egress and the receiver's ingress rules to accept it. Peer
//! groups only count when the packet's address *is* the peer ENI's
//! address (pod addresses behind a node are not members of its groups —
//! why S04 happens).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::packet::{self, Fragment, PROTO_TCP, TCP_FIN, TCP_RST};
use super::stats::{DropReason, DropRecord, Stats};
use super::view::{EniIdx, Resolved, View};
use crate::sg::{self, Conntrack, Direction, FlowDirection, FlowKey, GroupRules, Verdict};

/// Who sent a packet into the fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Eni(EniIdx),
    /// The cloud-services namespace (metadata, APIs, registry, SLB).
    Cloud,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Deliver the first `len` bytes to this ENI's NIC.
    Eni {
        idx: EniIdx,
        len: usize,
    },
    /// Deliver the first `len` bytes to the cloud-services namespace.
    Cloud {
        len: usize,
    },
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
}

/// Fragment ids whose first fragment was accepted, so later fragments
/// (which carry no ports) follow it. Bounded; cleared when full.
#[derive(Debug, Default)]
struct Frags {
    accepted: HashMap<FragKey, (u64, Endpoint)>,
}

const FRAGS_MAX: usize = 4096;
const FRAG_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Eni(EniIdx),
    Cloud,
}

/// The fabric's per-packet state: conntrack and fragment tracking.
#[derive(Debug)]
pub struct Decider {
    pub conntrack: Conntrack,
    frags: Frags,
}

/// Per-call context.
pub struct Now {
    /// Monotonic cluster milliseconds (timeouts).
    pub mono_ms: u64,
    /// Cluster wall time (drop log).
    pub wall_ms: i64,
}

impl Decider {
    pub fn new(conntrack: Conntrack) -> Decider {
        Decider {
            conntrack,
            frags: Frags::default(),
        }
    }

    /// Decides one datagram from `src`.
    pub fn decide(
        &mut self,
        view: &View,
        stats: &mut Stats,
        src: Source,
        datagram: &[u8],
        now: &Now,
    ) -> Forward {
        let src_instance = match src {
            Source::Eni(i) => Some(view.enis[i].instance_id.as_str()),
            Source::Cloud => None,
        };
        let pkt = match packet::parse(datagram) {
            Ok(p) => p,
            Err(m) => {
                drop_it(
                    stats,
                    now,
                    DropReason::Malformed(m),
                    src_instance,
                    None,
                    None,
                );
                return Forward::Drop;
            }
        };
        let flow = pkt.flow;
        if let Err(e) = ackemu_base::failpoint_sync!("fabric/forward") {
            drop_it(
                stats,
                now,
                DropReason::Failpoint(e.message),
                src_instance,
                None,
                Some(flow),
            );
            return Forward::Drop;
        }
        let src_ep = match src {
            Source::Eni(i) => Endpoint::Eni(i),
            Source::Cloud => Endpoint::Cloud,
        };

        // Later fragments follow their first fragment's decision.
        if let Fragment::Later { id } = pkt.fragment {
            let key = FragKey {
                src: flow.src,
                dst: flow.dst,
                protocol: flow.protocol,
                id,
            };
            return match self.frags.accepted.get(&key) {
                Some((t, dst)) if now.mono_ms.saturating_sub(*t) <= FRAG_TIMEOUT_MS => {
                    let dst = *dst;
                    self.deliver(view, stats, src_ep, dst, pkt.len)
                }
                _ => {
                    drop_it(
                        stats,
                        now,
                        DropReason::UnmatchedFragment,
                        src_instance,
                        None,
                        Some(flow),
                    );
                    Forward::Drop
                }
            };
        }

        // Zone (VPC) and destination.
        let (zone, tracked, dst_ep) = match src {
            Source::Eni(i) => {
                let zone = view.enis[i].zone;
                let dst = match view.resolve(zone, flow.dst) {
                    Resolved::Eni(d) => Endpoint::Eni(d),
                    Resolved::Cloud => Endpoint::Cloud,
                    Resolved::Drop(r) => {
                        let dst_inst = match &r {
                            DropReason::InstanceNotRunning { instance_id } => {
                                Some(instance_id.as_str())
                            }
                            _ => None,
                        };
                        drop_it(stats, now, r.clone(), src_instance, dst_inst, Some(flow));
                        return Forward::Drop;
                    }
                };
                let tracked = self.conntrack.find(zone, &flow, now.mono_ms);
                (zone, tracked, dst)
            }
            Source::Cloud => {
                // A reply (or a packet of a flow an ENI opened): conntrack
                // knows the VPC.
                let mut found = None;
                for z in view.zones() {
                    if let Some(t) = self.conntrack.find(z, &flow, now.mono_ms) {
                        found = Some((z, t));
                        break;
                    }
                }
                match found {
                    Some((z, t)) => match view.resolve(z, flow.dst) {
                        Resolved::Eni(d) => (z, Some(t), Endpoint::Eni(d)),
                        Resolved::Cloud => (z, Some(t), Endpoint::Cloud),
                        Resolved::Drop(r) => {
                            drop_it(stats, now, r, None, None, Some(flow));
                            return Forward::Drop;
                        }
                    },
                    None => match view.enis_with_ip(flow.dst) {
                        [d] => (view.enis[*d].zone, None, Endpoint::Eni(*d)),
                        [] => {
                            drop_it(
                                stats,
                                now,
                                DropReason::NoSuchAddress,
                                None,
                                None,
                                Some(flow),
                            );
                            return Forward::Drop;
                        }
                        _ => {
                            drop_it(
                                stats,
                                now,
                                DropReason::AmbiguousAddress,
                                None,
                                None,
                                Some(flow),
                            );
                            return Forward::Drop;
                        }
                    },
                }
            }
        };
        if let Endpoint::Eni(d) = dst_ep
            && view.enis[d].underlay.is_none()
        {
            let id = view.enis[d].instance_id.clone();
            drop_it(
                stats,
                now,
                DropReason::InstanceNotRunning {
                    instance_id: id.clone(),
                },
                src_instance,
                Some(&id),
                Some(flow),
            );
            return Forward::Drop;
        }
        let dst_instance = match dst_ep {
            Endpoint::Eni(d) => Some(view.enis[d].instance_id.as_str()),
            Endpoint::Cloud => None,
        };

        // Security groups, statefully.
        let related = pkt
            .icmp_error_of
            .is_some_and(|q| self.conntrack.find(zone, &q, now.mono_ms).is_some());
        if !related {
            match tracked {
                Some(t) if t.revision == view.revision => {}
                Some(t) => {
                    // The rules changed since this flow was accepted: check
                    // its original direction against them once.
                    let res = match t.direction {
                        FlowDirection::Original => check(view, stats, src_ep, dst_ep, &flow),
                        FlowDirection::Reply => {
                            check(view, stats, dst_ep, src_ep, &flow.reversed())
                        }
                    };
                    match res {
                        Ok(()) => self.conntrack.set_revision(zone, &flow, view.revision),
                        Err(r) => {
                            self.conntrack.forget(zone, &flow);
                            drop_it(stats, now, r, src_instance, dst_instance, Some(flow));
                            return Forward::Drop;
                        }
                    }
                }
                None => {
                    if let Err(r) = check(view, stats, src_ep, dst_ep, &flow) {
                        drop_it(stats, now, r, src_instance, dst_instance, Some(flow));
                        return Forward::Drop;
                    }
                    if self
                        .conntrack
                        .track(zone, flow, now.mono_ms, view.revision)
                        .is_err()
                    {
                        drop_it(
                            stats,
                            now,
                            DropReason::ConntrackFull,
                            src_instance,
                            dst_instance,
                            Some(flow),
                        );
                        return Forward::Drop;
                    }
                }
            }
        }
        if flow.protocol == PROTO_TCP && pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            self.conntrack.mark_closing(zone, &flow);
        }
        if let Fragment::First { id } = pkt.fragment {
            if self.frags.accepted.len() >= FRAGS_MAX {
                let now_ms = now.mono_ms;
                self.frags
                    .accepted
                    .retain(|_, (t, _)| now_ms.saturating_sub(*t) <= FRAG_TIMEOUT_MS);
                if self.frags.accepted.len() >= FRAGS_MAX {
                    self.frags.accepted.clear();
                }
            }
            self.frags.accepted.insert(
                FragKey {
                    src: flow.src,
                    dst: flow.dst,
                    protocol: flow.protocol,
                    id,
                },
                (now.mono_ms, dst_ep),
            );
        }
        self.deliver(view, stats, src_ep, dst_ep, pkt.len)
    }

    fn deliver(
        &self,
        view: &View,
        stats: &mut Stats,
        src: Endpoint,
        dst: Endpoint,
        len: usize,
    ) -> Forward {
        match src {
            Endpoint::Eni(i) => stats.sent(&view.enis[i].instance_id, len),
            Endpoint::Cloud => stats.cloud_tx_packets += 1,
        }
        stats.forwarded_packets += 1;
        stats.forwarded_bytes += len as u64;
        match dst {
            Endpoint::Eni(d) => {
                stats.received(&view.enis[d].instance_id, len);
                Forward::Eni { idx: d, len }
            }
            Endpoint::Cloud => {
                stats.cloud_rx_packets += 1;
                Forward::Cloud { len }
            }
        }
    }
}

fn drop_it(
    stats: &mut Stats,
    now: &Now,
    reason: DropReason,
    src: Option<&str>,
    dst: Option<&str>,
    flow: Option<FlowKey>,
) {
    stats.drop_packet(DropRecord {
        time_unix_ms: now.wall_ms,
        reason,
        source_instance: src.map(str::to_owned),
        destination_instance: dst.map(str::to_owned),
        flow,
    });
}

/// Groups of the ENI at the other end, when the packet's address is that
/// ENI's own address.
fn peer_groups(view: &View, ep: Endpoint, addr: Ipv4Addr) -> Vec<&str> {
    match ep {
        Endpoint::Eni(i) if view.enis[i].ip == addr => view.enis[i].group_ids(),
        _ => Vec::new(),
    }
}

fn sg_drop(view: &View, idx: EniIdx, direction: Direction, v: &Verdict) -> DropReason {
    let e = &view.enis[idx];
    let (group_id, rule_id) = match v {
        Verdict::DropRule { group_id, rule_id } => (group_id.clone(), rule_id.clone()),
        _ => (e.group_ids().join(","), String::new()),
    };
    DropReason::SecurityGroup {
        direction,
        instance_id: e.instance_id.clone(),
        group_id,
        rule_id,
    }
}

/// The first packet of a flow from `src` to `dst`: egress of the sender,
/// ingress of the receiver. Traffic from the cloud services (SLB
/// forwarding, health checks) passes the receiver's default ingress policy
/// but not an explicit drop rule.
fn check(
    view: &View,
    stats: &mut Stats,
    src: Endpoint,
    dst: Endpoint,
    flow: &FlowKey,
) -> Result<(), DropReason> {
    if let Endpoint::Eni(i) = src {
        let local: Vec<&GroupRules> = view.enis[i].groups.iter().map(|g| g.as_ref()).collect();
        let peers = peer_groups(view, dst, flow.dst);
        let v = sg::evaluate(Direction::Egress, &local, flow, &peers);
        stats.verdict(Direction::Egress, &v);
        if !v.accepted() {
            return Err(sg_drop(view, i, Direction::Egress, &v));
        }
    }
    if let Endpoint::Eni(d) = dst {
        let local: Vec<&GroupRules> = view.enis[d].groups.iter().map(|g| g.as_ref()).collect();
        let peers = peer_groups(view, src, flow.src);
        let v = sg::evaluate(Direction::Ingress, &local, flow, &peers);
        stats.verdict(Direction::Ingress, &v);
        let cloud_default = src == Endpoint::Cloud && v == Verdict::DropDefaultIngress;
        if !v.accepted() && !cloud_default {
            return Err(sg_drop(view, d, Direction::Ingress, &v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddrV4;
    use std::time::Duration;

    use super::*;
    use crate::dataplane::packet::{PROTO_ICMP, PROTO_UDP, TCP_SYN, build, tcp_header, udp_header};
    use crate::dataplane::view::Zones;
    use crate::model::{
        Instance, InstanceStatus, RouteTableRec, SecurityGroup, State, VSwitch, Vpc,
    };
    use crate::route::{NextHop, RouteEntry, RouteTable};
    use crate::sg::{Peer, Policy, PortRange, Protocol, Rule, ack_default_rules};

    const META: &str = "100.100.100.200";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn rule(
        id: &str,
        dir: Direction,
        proto: Protocol,
        ports: &str,
        cidr: &str,
        policy: Policy,
        prio: u8,
    ) -> Rule {
        Rule {
            rule_id: id.into(),
            direction: dir,
            protocol: proto,
            ports: PortRange::parse(ports, proto).unwrap(),
            peer: Peer::Cidr(cidr.parse().unwrap()),
            policy,
            priority: prio,
            description: String::new(),
        }
    }

    /// A VPC 192.168.0.0/16 with a /24 VSwitch, the ACK cluster group, and
    /// instances a (.1), b (.2), c (.3, stopped); route 172.16.1.0/24 → b,
    /// 172.16.0.0/24 → a; an SLB VIP .100.
    fn state() -> State {
        let mut s = State::new(
            "1".into(),
            "cn-hangzhou".into(),
            "00".into(),
            Default::default(),
            0,
        );
        let mut table = RouteTable::default();
        for (dst, hop, system) in [
            ("100.64.0.0/10", NextHop::Local, true),
            ("192.168.0.0/24", NextHop::Local, true),
            ("172.16.1.0/24", NextHop::Instance("i-b".into()), false),
            ("172.16.0.0/24", NextHop::Instance("i-a".into()), false),
            ("172.16.2.0/24", NextHop::Instance("i-c".into()), false),
        ] {
            table
                .add(
                    RouteEntry {
                        destination: dst.parse().unwrap(),
                        next_hop: hop,
                        system,
                        name: String::new(),
                    },
                    100,
                )
                .unwrap();
        }
        s.route_tables.insert(
            "vtb-1".into(),
            RouteTableRec {
                id: "vtb-1".into(),
                vpc_id: "vpc-1".into(),
                vrouter_id: "vrt-1".into(),
                table,
            },
        );
        s.vpcs.insert(
            "vpc-1".into(),
            Vpc {
                id: "vpc-1".into(),
                name: String::new(),
                cidr: "192.168.0.0/16".parse().unwrap(),
                vrouter_id: "vrt-1".into(),
                route_table_id: "vtb-1".into(),
                creation_unix_ms: 0,
            },
        );
        s.vswitches.insert(
            "vsw-1".into(),
            VSwitch {
                id: "vsw-1".into(),
                name: String::new(),
                vpc_id: "vpc-1".into(),
                zone_id: "cn-hangzhou-b".into(),
                cidr: "192.168.0.0/24".parse().unwrap(),
                used: Default::default(),
                creation_unix_ms: 0,
            },
        );
        s.security_groups.insert(
            "sg-cluster".into(),
            SecurityGroup {
                id: "sg-cluster".into(),
                name: String::new(),
                vpc_id: "vpc-1".into(),
                inner_accept: true,
                rules: ack_default_rules("172.16.0.0/16".parse().unwrap()),
                creation_unix_ms: 0,
            },
        );
        s.security_groups.insert(
            "sg-other".into(),
            SecurityGroup {
                id: "sg-other".into(),
                name: String::new(),
                vpc_id: "vpc-1".into(),
                inner_accept: true,
                rules: vec![],
                creation_unix_ms: 0,
            },
        );
        for (id, addr) in [
            ("i-a", "192.168.0.1"),
            ("i-b", "192.168.0.2"),
            ("i-c", "192.168.0.3"),
        ] {
            s.instances.insert(
                id.into(),
                Instance {
                    id: id.into(),
                    name: id.into(),
                    host_name: id.into(),
                    instance_type: "ecs.g6.large".into(),
                    image_id: String::new(),
                    vpc_id: "vpc-1".into(),
                    vswitch_id: "vsw-1".into(),
                    zone_id: "cn-hangzhou-b".into(),
                    private_ip: ip(addr),
                    security_group_ids: vec!["sg-cluster".into()],
                    status: InstanceStatus::Running,
                    user_data: String::new(),
                    ram_role: None,
                    tags: Default::default(),
                    creation_unix_ms: 0,
                    scaling_group_id: None,
                    last_error: None,
                    desired_running: true,
                },
            );
        }
        s.load_balancers.insert(
            "lb-1".into(),
            crate::model::LoadBalancer {
                id: "lb-1".into(),
                name: String::new(),
                vpc_id: "vpc-1".into(),
                vswitch_id: "vsw-1".into(),
                address: ip("192.168.0.100"),
                listeners: Default::default(),
                backends: vec![],
                creation_unix_ms: 0,
            },
        );
        s.revision = 1;
        s
    }

    struct Fab {
        view: View,
        zones: Zones,
        d: Decider,
        stats: Stats,
        now: u64,
    }

    fn attached() -> HashMap<String, SocketAddrV4> {
        [("i-a", 40001), ("i-b", 40002)]
            .into_iter()
            .map(|(i, p)| (i.to_owned(), SocketAddrV4::new(ip("127.0.0.1"), p)))
            .collect()
    }

    impl Fab {
        fn new(s: &State) -> Fab {
            let mut zones = Zones::default();
            let view = View::compile(
                s,
                &mut zones,
                &attached(),
                &crate::dataplane::services::service_addrs(),
            );
            Fab {
                view,
                zones,
                d: Decider::new(Conntrack::with_timeouts(
                    100,
                    sg::ConntrackTimeouts::DEFAULT,
                )),
                stats: Stats::new(100),
                now: 1,
            }
        }
        fn recompile(&mut self, s: &State) {
            self.view = View::compile(
                s,
                &mut self.zones,
                &attached(),
                &crate::dataplane::services::service_addrs(),
            );
        }
        fn send(&mut self, from: &str, pkt: &[u8]) -> Forward {
            self.now += 1;
            let src = if from == "cloud" {
                Source::Cloud
            } else {
                Source::Eni(self.view.eni_by_instance(from).unwrap())
            };
            let now = Now {
                mono_ms: self.now,
                wall_ms: 0,
            };
            self.d.decide(&self.view, &mut self.stats, src, pkt, &now)
        }
        fn to(&self, id: &str, len: usize) -> Forward {
            Forward::Eni {
                idx: self.view.eni_by_instance(id).unwrap(),
                len,
            }
        }
        fn last_drop(&self) -> String {
            let j = self.stats.drops_json(&crate::dataplane::stats::DropFilter {
                reason: None,
                instance_id: None,
                ip: None,
                limit: 1,
            });
            format!(
                "{} {}",
                j["Drops"]["Drop"][0]["Reason"].as_str().unwrap(),
                j["Drops"]["Drop"][0]["Detail"].as_str().unwrap()
            )
        }
    }

    fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        build(
            PROTO_TCP,
            ip(src),
            ip(dst),
            1,
            0,
            &tcp_header(sport, dport, flags),
        )
    }

    fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
        build(
            PROTO_UDP,
            ip(src),
            ip(dst),
            1,
            0,
            &udp_header(sport, dport, 0),
        )
    }

    fn ping(src: &str, dst: &str, reply: bool) -> Vec<u8> {
        build(
            PROTO_ICMP,
            ip(src),
            ip(dst),
            1,
            0,
            &[if reply { 0 } else { 8 }, 0, 0, 0, 0, 9, 0, 1],
        )
    }

    #[test]
    fn resolution_table() {
        let s = state();
        let mut f = Fab::new(&s);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "eni to eni",
                ping("192.168.0.1", "192.168.0.2", false),
                "eni i-b",
            ),
            (
                "route entry to next hop",
                ping("192.168.0.1", "172.16.1.5", false),
                "eni i-b",
            ),
            (
                "pod behind a",
                ping("192.168.0.2", "172.16.0.9", false),
                "eni i-a",
            ),
            (
                "metadata",
                tcp("192.168.0.1", META, 40000, 80, TCP_SYN),
                "cloud",
            ),
            (
                "slb vip",
                tcp("192.168.0.1", "192.168.0.100", 40001, 80, TCP_SYN),
                "cloud",
            ),
            (
                "no route (internet)",
                ping("192.168.0.1", "8.8.8.8", false),
                "NoRoute",
            ),
            (
                "no route in vpc cidr",
                ping("192.168.0.1", "192.168.7.1", false),
                "NoRoute",
            ),
            (
                "no such address",
                ping("192.168.0.1", "192.168.0.77", false),
                "NoSuchAddress",
            ),
            (
                "no such cloud address",
                ping("192.168.0.1", "100.100.0.99", false),
                "NoSuchAddress",
            ),
            (
                "stopped instance",
                ping("192.168.0.1", "192.168.0.3", false),
                "InstanceNotRunning",
            ),
            (
                "next hop stopped",
                ping("192.168.0.1", "172.16.2.1", false),
                "InstanceNotRunning",
            ),
            ("malformed", vec![0x45, 0, 0], "Malformed"),
        ];
        for (name, p, want) in cases {
            let got = match f.send("i-a", &p) {
                Forward::Eni { idx, .. } => format!("eni {}", f.view.enis[idx].instance_id),
                Forward::Cloud { .. } => "cloud".into(),
                Forward::Drop => f.last_drop(),
            };
            assert!(got.starts_with(want), "{name}: got {got}, want {want}");
        }
        assert!(f.last_drop().contains("truncated ipv4 header"));
    }

    #[test]
    fn deleting_the_route_entry_drops_with_no_route() {
        let mut s = state();
        let mut f = Fab::new(&s);
        let p = ping("192.168.0.1", "172.16.1.5", false);
        assert_eq!(f.send("i-a", &p), f.to("i-b", p.len()));
        let rt = s.route_tables.get_mut("vtb-1").unwrap();
        rt.table
            .remove("172.16.1.0/24".parse().unwrap(), None)
            .unwrap();
        s.revision += 1;
        f.recompile(&s);
        assert_eq!(f.send("i-a", &p), Forward::Drop);
        assert_eq!(
            f.last_drop(),
            "NoRoute no route: no entry of route table vtb-1 matches 172.16.1.5"
        );
    }

    /// S04: without the pod-CIDR rule cross-node pod TCP/UDP dies, ICMP
    /// passes (default ICMP rule), node-to-node still works (inner access).
    #[test]
    fn pod_cidr_rule_removed_blocks_pod_tcp_udp_not_icmp() {
        let mut s = state();
        let mut f = Fab::new(&s);
        let dns = udp("172.16.0.5", "172.16.1.10", 5353, 53);
        assert_eq!(f.send("i-a", &dns), f.to("i-b", dns.len()));
        s.security_groups
            .get_mut("sg-cluster")
            .unwrap()
            .rules
            .retain(|r| r.rule_id != "sgr-default-pod-cidr");
        s.revision += 1;
        f.recompile(&s);
        // The tracked flow is re-checked against the new rules and dies.
        assert_eq!(f.send("i-a", &dns), Forward::Drop);
        assert!(f.last_drop().starts_with(
            "SecurityGroup security group: ingress of i-b dropped by the default policy"
        ));
        let new_dns = udp("172.16.0.5", "172.16.1.10", 5354, 53);
        assert_eq!(f.send("i-a", &new_dns), Forward::Drop);
        let t = tcp("172.16.0.5", "172.16.1.10", 40000, 53, TCP_SYN);
        assert_eq!(f.send("i-a", &t), Forward::Drop);
        let p = ping("172.16.0.5", "172.16.1.10", false);
        assert_eq!(f.send("i-a", &p), f.to("i-b", p.len()));
        let r = ping("172.16.1.10", "172.16.0.5", true);
        assert_eq!(f.send("i-b", &r), f.to("i-a", r.len()));
        // Node to node is inner access, unaffected.
        let k = tcp("192.168.0.1", "192.168.0.2", 40000, 10250, TCP_SYN);
        assert_eq!(f.send("i-a", &k), f.to("i-b", k.len()));
        let counters = f.stats.counters_json(None);
        let rules = counters["SecurityGroupRules"]["SecurityGroupRule"]
            .as_array()
            .unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r["SecurityGroupRuleId"] == "sgr-default-icmp" && r["AcceptedFlows"] == 1)
        );
        assert!(
            rules
                .iter()
                .any(|r| r["SecurityGroupRuleId"] == "InnerAccess")
        );
    }

    /// S05: b leaves the cluster group → a cannot reach :10250; rejoining heals.
    #[test]
    fn moved_out_of_the_group_blocks_kubelet() {
        let mut s = state();
        s.instances.get_mut("i-b").unwrap().security_group_ids = vec!["sg-other".into()];
        s.revision += 1;
        let mut f = Fab::new(&s);
        let k = tcp("192.168.0.1", "192.168.0.2", 40000, 10250, TCP_SYN);
        assert_eq!(f.send("i-a", &k), Forward::Drop);
        assert!(
            f.last_drop()
                .contains("ingress of i-b dropped by the default policy")
        );
        s.instances.get_mut("i-b").unwrap().security_group_ids =
            vec!["sg-other".into(), "sg-cluster".into()];
        s.revision += 1;
        f.recompile(&s);
        assert_eq!(f.send("i-a", &k), f.to("i-b", k.len()));
    }

    /// S06: an egress drop of 100.64.0.0/10 cuts the metadata service off;
    /// replies of allowed flows pass; removing the rule restores it.
    #[test]
    fn egress_deny_of_cloud_range_blocks_metadata() {
        let mut s = state();
        let mut f = Fab::new(&s);
        let syn = tcp("192.168.0.1", META, 40000, 80, TCP_SYN);
        assert_eq!(f.send("i-a", &syn), Forward::Cloud { len: syn.len() });
        let synack = tcp(META, "192.168.0.1", 80, 40000, TCP_SYN | 0x10);
        assert_eq!(f.send("cloud", &synack), f.to("i-a", synack.len()));
        let g = s.security_groups.get_mut("sg-cluster").unwrap();
        g.rules.push(rule(
            "sgr-deny-cloud",
            Direction::Egress,
            Protocol::All,
            "-1/-1",
            "100.64.0.0/10",
            Policy::Drop,
            1,
        ));
        s.revision += 1;
        f.recompile(&s);
        let syn2 = tcp("192.168.0.1", META, 40001, 80, TCP_SYN);
        assert_eq!(f.send("i-a", &syn2), Forward::Drop);
        assert!(
            f.last_drop()
                .contains("egress of i-a dropped by rule sgr-deny-cloud of sg-cluster")
        );
        // The established flow is re-checked too, from its original side.
        assert_eq!(f.send("cloud", &synack), Forward::Drop);
        s.security_groups
            .get_mut("sg-cluster")
            .unwrap()
            .rules
            .retain(|r| r.rule_id != "sgr-deny-cloud");
        s.revision += 1;
        f.recompile(&s);
        assert_eq!(f.send("i-a", &syn2), Forward::Cloud { len: syn2.len() });
    }

    #[test]
    fn cloud_initiated_traffic_passes_default_ingress_not_drop_rules() {
        let mut s = state();
        let mut f = Fab::new(&s);
        let hc = tcp("100.64.1.1", "192.168.0.2", 50000, 8080, TCP_SYN);
        assert_eq!(f.send("cloud", &hc), f.to("i-b", hc.len()));
        let back = tcp("192.168.0.2", "100.64.1.1", 8080, 50000, TCP_SYN | 0x10);
        assert_eq!(f.send("i-b", &back), Forward::Cloud { len: back.len() });
        s.security_groups
            .get_mut("sg-cluster")
            .unwrap()
            .rules
            .push(rule(
                "sgr-no-slb",
                Direction::Ingress,
                Protocol::Tcp,
                "8080/8080",
                "100.64.0.0/10",
                Policy::Drop,
                1,
            ));
        s.revision += 1;
        f.recompile(&s);
        let hc2 = tcp("100.64.1.1", "192.168.0.2", 50001, 8080, TCP_SYN);
        assert_eq!(f.send("cloud", &hc2), Forward::Drop);
        // Unknown destination from the cloud side.
        assert_eq!(
            f.send("cloud", &tcp("100.64.1.1", "192.168.9.9", 1, 2, TCP_SYN)),
            Forward::Drop
        );
        assert!(f.last_drop().starts_with("NoSuchAddress"));
    }

    #[test]
    fn replies_pass_without_ingress_rules_and_new_flows_do_not() {
        let mut s = state();
        // b in a group with no rules and no shared membership: default ingress drop.
        s.instances.get_mut("i-b").unwrap().security_group_ids = vec!["sg-other".into()];
        s.revision += 1;
        let mut f = Fab::new(&s);
        // b → a: egress default accept, a's ingress: inner access? No, b is
        // not in sg-cluster; 192.168.0.2 is not a pod address: dropped.
        let syn = tcp("192.168.0.2", "192.168.0.1", 40000, 22, TCP_SYN);
        assert_eq!(f.send("i-b", &syn), Forward::Drop);
        // a → b:22 is dropped at b's ingress...
        let syn = tcp("192.168.0.1", "192.168.0.2", 40000, 22, TCP_SYN);
        assert_eq!(f.send("i-a", &syn), Forward::Drop);
        // ...until b accepts it; then b's reply passes a's ingress (stateful).
        s.security_groups
            .get_mut("sg-other")
            .unwrap()
            .rules
            .push(rule(
                "sgr-ssh",
                Direction::Ingress,
                Protocol::Tcp,
                "22/22",
                "192.168.0.0/24",
                Policy::Accept,
                1,
            ));
        s.revision += 1;
        f.recompile(&s);
        assert_eq!(f.send("i-a", &syn), f.to("i-b", syn.len()));
        let synack = tcp("192.168.0.2", "192.168.0.1", 22, 40000, TCP_SYN | 0x10);
        assert_eq!(f.send("i-b", &synack), f.to("i-a", synack.len()));
        // An ICMP error about the flow is related and passes.
        let mut quoted = vec![3, 3, 0, 0, 0, 0, 0, 0];
        quoted.extend_from_slice(&syn[..28]);
        let err = build(
            PROTO_ICMP,
            ip("192.168.0.2"),
            ip("192.168.0.1"),
            5,
            0,
            &quoted,
        );
        assert_eq!(f.send("i-b", &err), f.to("i-a", err.len()));
    }

    #[test]
    fn fragments_follow_their_first_fragment() {
        let s = state();
        let mut f = Fab::new(&s);
        let later = build(
            PROTO_UDP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            42,
            185,
            &[0; 16],
        );
        assert_eq!(f.send("i-a", &later), Forward::Drop);
        assert!(f.last_drop().starts_with("UnmatchedFragment"));
        let first = build(
            PROTO_UDP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            42,
            0x2000,
            &udp_header(1, 2, 1472),
        );
        assert_eq!(f.send("i-a", &first), f.to("i-b", first.len()));
        assert_eq!(f.send("i-a", &later), f.to("i-b", later.len()));
    }

    #[test]
    fn conntrack_full_is_a_visible_drop() {
        let s = state();
        let mut f = Fab::new(&s);
        f.d = Decider::new(Conntrack::new(2, Duration::from_secs(60)));
        for port in 1..=2 {
            let p = udp("192.168.0.1", "192.168.0.2", port, 53);
            assert_eq!(f.send("i-a", &p), f.to("i-b", p.len()));
        }
        assert_eq!(
            f.send("i-a", &udp("192.168.0.1", "192.168.0.2", 3, 53)),
            Forward::Drop
        );
        assert!(f.last_drop().starts_with("ConntrackFull"));
        let c = f.stats.counters_json(Some("i-a"));
        assert_eq!(
            c["NetworkInterfaces"]["NetworkInterface"][0]["TxPackets"],
            2
        );
        assert_eq!(
            c["NetworkInterfaces"]["NetworkInterface"][0]["TxDropped"],
            1
        );
    }
}
