//! The fabric's compiled view of the cloud state: what the per-packet path
//! looks up (ENIs by address and by underlay, route tables as LPM tries,
//! SLB VIPs, security groups). Rebuilt when the state revision changes;
//! pure.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use super::lpm::Lpm;
use super::stats::DropReason;
use crate::model::State;
use crate::route::NextHop;
use crate::sg::GroupRules;

pub type EniIdx = usize;

/// An instance's primary ENI.
#[derive(Debug, Clone)]
pub struct EniView {
    pub instance_id: String,
    /// Conntrack zone of its VPC.
    pub zone: u32,
    pub ip: Ipv4Addr,
    pub groups: Vec<Arc<GroupRules>>,
    /// Where its virtual NIC listens, once it said hello.
    pub underlay: Option<SocketAddrV4>,
}

impl EniView {
    pub fn group_ids(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.group_id.as_str()).collect()
    }
}

#[derive(Debug, Clone)]
enum Hop {
    /// A VSwitch or the cloud-service range.
    Local,
    /// A custom entry's next-hop instance (its ENI, if it exists).
    Instance(String, Option<EniIdx>),
}

#[derive(Debug, Clone)]
pub struct VpcView {
    pub id: String,
    pub route_table_id: String,
    routes: Lpm<Hop>,
    enis: HashMap<Ipv4Addr, EniIdx>,
    vips: HashSet<Ipv4Addr>,
}

/// Where a destination address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An ENI: its own address, or a custom route entry's next hop.
    Eni(EniIdx),
    /// The cloud services (metadata, APIs, registry) or an SLB VIP.
    Cloud,
    Drop(DropReason),
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub revision: u64,
    pub enis: Vec<EniView>,
    by_instance: HashMap<String, EniIdx>,
    vpcs: HashMap<u32, VpcView>,
    by_underlay: HashMap<SocketAddrV4, EniIdx>,
    by_ip: HashMap<Ipv4Addr, Vec<EniIdx>>,
    cloud_addrs: HashSet<Ipv4Addr>,
}

/// Stable conntrack zone numbers for VPC ids (kept across recompiles).
#[derive(Debug, Clone, Default)]
pub struct Zones {
    ids: HashMap<String, u32>,
}

impl Zones {
    pub fn of(&mut self, vpc_id: &str) -> u32 {
        let next = self.ids.len() as u32 + 1;
        *self.ids.entry(vpc_id.to_owned()).or_insert(next)
    }
}

impl View {
    /// Compiles `s`; `attached` maps instance ids to their NICs' underlay
    /// addresses; `cloud_addrs` are the service addresses answered by the
    /// cloud-services namespace.
    pub fn compile(
        s: &State,
        zones: &mut Zones,
        attached: &HashMap<String, SocketAddrV4>,
        cloud_addrs: &[Ipv4Addr],
    ) -> View {
        let groups: HashMap<&str, Arc<GroupRules>> = s
            .security_groups
            .keys()
            .filter_map(|id| s.group_rules(id).map(|g| (id.as_str(), Arc::new(g))))
            .collect();
        let mut v = View {
            revision: s.revision,
            cloud_addrs: cloud_addrs.iter().copied().collect(),
            ..View::default()
        };
        for i in s.instances.values() {
            let idx = v.enis.len();
            let underlay = attached.get(&i.id).copied();
            v.enis.push(EniView {
                instance_id: i.id.clone(),
                zone: zones.of(&i.vpc_id),
                ip: i.private_ip,
                groups: i
                    .security_group_ids
                    .iter()
                    .filter_map(|g| groups.get(g.as_str()).cloned())
                    .collect(),
                underlay,
            });
            v.by_instance.insert(i.id.clone(), idx);
            v.by_ip.entry(i.private_ip).or_default().push(idx);
            if let Some(u) = underlay {
                v.by_underlay.insert(u, idx);
            }
        }
        for vpc in s.vpcs.values() {
            let zone = zones.of(&vpc.id);
            let mut routes = Lpm::default();
            if let Some(rt) = s.route_tables.get(&vpc.route_table_id) {
                for e in rt.table.entries() {
                    let hop = match &e.next_hop {
                        NextHop::Local => Hop::Local,
                        NextHop::Instance(id) => {
                            Hop::Instance(id.clone(), v.by_instance.get(id).copied())
                        }
                    };
                    routes.insert(e.destination, hop);
                }
            }
            let enis = v
                .enis
                .iter()
                .enumerate()
                .filter(|(_, e)| e.zone == zone)
                .map(|(i, e)| (e.ip, i))
                .collect();
            let vips = s
                .load_balancers
                .values()
                .filter(|lb| lb.vpc_id == vpc.id)
                .map(|lb| lb.address)
                .collect();
            v.vpcs.insert(
                zone,
                VpcView {
                    id: vpc.id.clone(),
                    route_table_id: vpc.route_table_id.clone(),
                    routes,
                    enis,
                    vips,
                },
            );
        }
        v
    }

    pub fn eni_by_underlay(&self, a: &SocketAddrV4) -> Option<EniIdx> {
        self.by_underlay.get(a).copied()
    }

    pub fn eni_by_instance(&self, id: &str) -> Option<EniIdx> {
        self.by_instance.get(id).copied()
    }

    /// ENIs (any VPC) with address `ip`.
    pub fn enis_with_ip(&self, ip: Ipv4Addr) -> &[EniIdx] {
        self.by_ip.get(&ip).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn zones(&self) -> impl Iterator<Item = u32> + '_ {
        self.vpcs.keys().copied()
    }

    pub fn vpc(&self, zone: u32) -> Option<&VpcView> {
        self.vpcs.get(&zone)
    }

    pub fn is_cloud_addr(&self, ip: Ipv4Addr) -> bool {
        self.cloud_addrs.contains(&ip)
    }

    /// Records that `instance`'s NIC is at `underlay`; `false` if the
    /// instance does not exist.
    pub fn attach(&mut self, instance: &str, underlay: SocketAddrV4) -> bool {
        let Some(idx) = self.eni_by_instance(instance) else {
            return false;
        };
        if let Some(old) = self.enis[idx].underlay.replace(underlay) {
            self.by_underlay.remove(&old);
        }
        self.by_underlay.insert(underlay, idx);
        true
    }

    pub fn detach(&mut self, instance: &str) {
        if let Some(idx) = self.eni_by_instance(instance)
            && let Some(old) = self.enis[idx].underlay.take()
        {
            self.by_underlay.remove(&old);
        }
    }

    pub fn attached_count(&self) -> usize {
        self.by_underlay.len()
    }

    /// Resolves `dst` in the VPC of `zone`: longest prefix over the route
    /// table; a local (VSwitch) hit is an ENI or an SLB VIP, a hit of the
    /// cloud range a service address.
    pub fn resolve(&self, zone: u32, dst: Ipv4Addr) -> Resolved {
        let Some(vpc) = self.vpcs.get(&zone) else {
            return Resolved::Drop(DropReason::NoRoute {
                route_table_id: String::new(),
            });
        };
        match vpc.routes.lookup(dst) {
            None => Resolved::Drop(DropReason::NoRoute {
                route_table_id: vpc.route_table_id.clone(),
            }),
            Some((_, Hop::Instance(id, idx))) => match idx {
                Some(i) if self.enis[*i].underlay.is_some() => Resolved::Eni(*i),
                _ => Resolved::Drop(DropReason::InstanceNotRunning {
                    instance_id: id.clone(),
                }),
            },
            Some((_, Hop::Local)) => {
                if let Some(&i) = vpc.enis.get(&dst) {
                    if self.enis[i].underlay.is_some() {
                        Resolved::Eni(i)
                    } else {
                        Resolved::Drop(DropReason::InstanceNotRunning {
                            instance_id: self.enis[i].instance_id.clone(),
                        })
                    }
                } else if vpc.vips.contains(&dst) || self.cloud_addrs.contains(&dst) {
                    Resolved::Cloud
                } else {
                    Resolved::Drop(DropReason::NoSuchAddress)
                }
            }
        }
    }
}
