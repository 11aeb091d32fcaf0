//! Node IPAM (`pkg/controller/nodeipam`, the range allocator): every node
//! gets a podCIDR carved from the cluster CIDR with a configurable mask —
//! the seed article's cluster `172.16.0.0/16` with `/25` per node gives
//! `172.16.0.128/25` to one node and `172.16.8.0/25` to another.
//!
//! Allocation survives restarts the way Kubernetes' does: on start the
//! allocator marks every existing node's podCIDRs as used. A podCIDR is
//! never changed once set; a node without one gets the next free subnet
//! after the last one handed out (round robin), and the error when none is
//! left is Kubernetes' text.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ackemu_kube::api::core::v1::Node;
use ipnet::IpNet;

use crate::util::{Event, ObjectRef};

/// `clusterSubnetMaxDiff`: at most 2^16 subnets per cluster CIDR.
pub const MAX_SUBNET_BITS: u8 = 16;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(
        "New CIDR set failed; the node CIDR size is too big: cluster {cluster} with node mask /{mask} gives more than 2^{MAX_SUBNET_BITS} subnets"
    )]
    SubnetTooBig { cluster: IpNet, mask: u8 },
    #[error("node CIDR mask /{mask} does not fit cluster CIDR {cluster}: expected a mask between /{} and /{}", cluster.prefix_len(), cluster.max_prefix_len())]
    BadMask { cluster: IpNet, mask: u8 },
    #[error(
        "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
    )]
    Exhausted,
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: IpNet, cluster: IpNet },
    #[error("failed to parse node {node:?} podCIDR {cidr:?}: expected an address/prefix")]
    Parse { node: String, cidr: String },
    #[error("no cluster CIDR of the family of {0}")]
    NoFamily(IpNet),
}

/// One cluster CIDR cut into equal subnets (`cidrset.CidrSet`).
#[derive(Clone, Debug)]
pub struct CidrSet {
    cluster: IpNet,
    mask: u8,
    used: Vec<bool>,
    next_candidate: usize,
    allocated: usize,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl CidrSet {
    pub fn new(cluster: IpNet, mask: u8) -> Result<CidrSet, IpamError> {
        let cluster = cluster.trunc();
        if mask < cluster.prefix_len() || mask > cluster.max_prefix_len() {
            return Err(IpamError::BadMask { cluster, mask });
        }
        let bits = mask - cluster.prefix_len();
        if bits > MAX_SUBNET_BITS {
            return Err(IpamError::SubnetTooBig { cluster, mask });
        }
        Ok(CidrSet {
            cluster,
            mask,
            used: vec![false; 1usize << bits],
            next_candidate: 0,
            allocated: 0,
        })
    }

    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    pub fn capacity(&self) -> usize {
        self.used.len()
    }

    pub fn allocated(&self) -> usize {
        self.allocated
    }

    fn shift(&self) -> u32 {
        (self.cluster.max_prefix_len() - self.mask) as u32
    }

    fn subnet(&self, index: usize) -> IpNet {
        let base = to_u128(self.cluster.network());
        let ip = from_u128(
            base + ((index as u128) << self.shift()),
            self.cluster.network().is_ipv4(),
        );
        IpNet::new(ip, self.mask).expect("mask checked in new")
    }

    /// The subnet indices `cidr` covers (`getBeginningAndEndIndices`).
    fn indices(&self, cidr: IpNet) -> Result<(usize, usize), IpamError> {
        let cidr = cidr.trunc();
        let out = IpamError::OutOfRange {
            cidr,
            cluster: self.cluster,
        };
        if cidr.network().is_ipv4() != self.cluster.network().is_ipv4()
            || !(self.cluster.contains(&cidr.network()) || cidr.contains(&self.cluster.network()))
        {
            return Err(out);
        }
        let base = to_u128(self.cluster.network());
        let first = to_u128(cidr.network()).max(base);
        let last = to_u128(cidr.broadcast()).min(to_u128(self.cluster.broadcast()));
        let s = self.shift();
        Ok((
            ((first - base) >> s) as usize,
            ((last - base) >> s) as usize,
        ))
    }

    /// `AllocateNext`.
    pub fn allocate_next(&mut self) -> Result<IpNet, IpamError> {
        let n = self.used.len();
        if self.allocated == n {
            return Err(IpamError::Exhausted);
        }
        for i in 0..n {
            let idx = (self.next_candidate + i) % n;
            if !self.used[idx] {
                self.used[idx] = true;
                self.allocated += 1;
                self.next_candidate = (idx + 1) % n;
                return Ok(self.subnet(idx));
            }
        }
        Err(IpamError::Exhausted)
    }

    /// `Occupy`: marks every subnet `cidr` overlaps as used.
    pub fn occupy(&mut self, cidr: IpNet) -> Result<(), IpamError> {
        let (b, e) = self.indices(cidr)?;
        for i in b..=e {
            if !self.used[i] {
                self.used[i] = true;
                self.allocated += 1;
            }
        }
        Ok(())
    }

    /// `Release`.
    pub fn release(&mut self, cidr: IpNet) -> Result<(), IpamError> {
        let (b, e) = self.indices(cidr)?;
        for i in b..=e {
            if self.used[i] {
                self.used[i] = false;
                self.allocated -= 1;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct IpamConfig {
    /// `--cluster-cidr` (comma separated: at most one per family).
    pub cluster_cidrs: Vec<IpNet>,
    /// `--node-cidr-mask-size-ipv4` (Kubernetes' default 24).
    pub node_mask_ipv4: u8,
    /// `--node-cidr-mask-size-ipv6` (default 64).
    pub node_mask_ipv6: u8,
    /// `--service-cluster-ip-range`: never handed to nodes when it overlaps.
    pub service_cidrs: Vec<IpNet>,
}

impl IpamConfig {
    pub fn new(cluster_cidrs: Vec<IpNet>, node_mask_ipv4: u8) -> IpamConfig {
        IpamConfig {
            cluster_cidrs,
            node_mask_ipv4,
            node_mask_ipv6: 64,
            service_cidrs: Vec::new(),
        }
    }
}

/// What the driver does for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamAction {
    /// Patch `spec.podCIDR` and `spec.podCIDRs`. If the patch fails, call
    /// [`RangeAllocator::patch_failed`].
    SetPodCidrs { node: String, cidrs: Vec<IpNet> },
    /// Record an event (allocation failed).
    Event(Event),
}

/// The range allocator.
#[derive(Clone, Debug)]
pub struct RangeAllocator {
    sets: Vec<CidrSet>,
    /// Assigned but not yet seen on the node (patch in flight or cache stale).
    pending: BTreeMap<String, Vec<IpNet>>,
}

/// A node's podCIDRs as written in its spec.
pub fn node_pod_cidrs(node: &Node) -> Result<Vec<IpNet>, IpamError> {
    let spec = node.spec.as_ref();
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut raw: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if raw.is_empty()
        && let Some(c) = spec
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    {
        raw.push(c);
    }
    raw.into_iter()
        .map(|c| {
            c.parse::<IpNet>().map_err(|_| IpamError::Parse {
                node: name.clone(),
                cidr: c.clone(),
            })
        })
        .collect()
}

fn node_ref(node: &Node) -> ObjectRef {
    let mut r = ObjectRef::new("v1", "Node", &node.metadata);
    // Node events are recorded against the node name as uid, as kubelet does.
    r.uid = r.name.clone();
    r
}

impl RangeAllocator {
    /// Builds the allocator and occupies the podCIDRs of `existing` nodes.
    /// Nodes whose podCIDRs cannot be occupied are returned with the error
    /// (Kubernetes refuses to start; here they are reported and skipped).
    pub fn new(
        cfg: &IpamConfig,
        existing: &[Node],
    ) -> Result<(RangeAllocator, Vec<(String, IpamError)>), IpamError> {
        let mut sets = Vec::new();
        for c in &cfg.cluster_cidrs {
            let mask = if c.network().is_ipv4() {
                cfg.node_mask_ipv4
            } else {
                cfg.node_mask_ipv6
            };
            let mut set = CidrSet::new(*c, mask)?;
            for svc in &cfg.service_cidrs {
                if svc.network().is_ipv4() == c.network().is_ipv4()
                    && (c.contains(&svc.network()) || svc.contains(&c.network()))
                {
                    set.occupy(*svc)?;
                }
            }
            sets.push(set);
        }
        let mut a = RangeAllocator {
            sets,
            pending: BTreeMap::new(),
        };
        let mut errors = Vec::new();
        for n in existing {
            let name = n.metadata.name.clone().unwrap_or_default();
            match node_pod_cidrs(n).and_then(|cidrs| a.occupy_all(&cidrs)) {
                Ok(()) => {}
                Err(e) => errors.push((name, e)),
            }
        }
        Ok((a, errors))
    }

    fn set_for(&mut self, cidr: &IpNet) -> Result<&mut CidrSet, IpamError> {
        let v4 = cidr.network().is_ipv4();
        self.sets
            .iter_mut()
            .find(|s| s.cluster.network().is_ipv4() == v4)
            .ok_or(IpamError::NoFamily(*cidr))
    }

    fn occupy_all(&mut self, cidrs: &[IpNet]) -> Result<(), IpamError> {
        for c in cidrs {
            self.set_for(c)?.occupy(*c)?;
        }
        Ok(())
    }

    pub fn sets(&self) -> &[CidrSet] {
        &self.sets
    }

    /// One node seen by the informer (add or update).
    pub fn reconcile(&mut self, node: &Node) -> Vec<IpamAction> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if node.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        match node_pod_cidrs(node) {
            Ok(cidrs) if !cidrs.is_empty() => {
                // Set already (by us or someone else): remember it as used.
                self.pending.remove(&name);
                if let Err(e) = self.occupy_all(&cidrs) {
                    return vec![IpamAction::Event(Event::warning(
                        node_ref(node),
                        "CIDRNotAvailable",
                        format!("Node {name} status is now: CIDRNotAvailable ({e})"),
                    ))];
                }
                Vec::new()
            }
            Ok(_) => {
                if let Some(c) = self.pending.get(&name) {
                    return vec![IpamAction::SetPodCidrs {
                        node: name,
                        cidrs: c.clone(),
                    }];
                }
                let mut got = Vec::new();
                for i in 0..self.sets.len() {
                    match self.sets[i].allocate_next() {
                        Ok(c) => got.push(c),
                        Err(e) => {
                            for c in &got {
                                let _ = self.set_for(c).map(|s| s.release(*c));
                            }
                            return vec![IpamAction::Event(Event::normal(
                                node_ref(node),
                                "CIDRNotAvailable",
                                format!("Node {name} status is now: CIDRNotAvailable ({e})"),
                            ))];
                        }
                    }
                }
                self.pending.insert(name.clone(), got.clone());
                vec![IpamAction::SetPodCidrs {
                    node: name,
                    cidrs: got,
                }]
            }
            Err(e) => vec![IpamAction::Event(Event::warning(
                node_ref(node),
                "CIDRNotAvailable",
                format!("Node {name} status is now: CIDRNotAvailable ({e})"),
            ))],
        }
    }

    /// The podCIDR patch for `node` failed: give its subnets back.
    pub fn patch_failed(&mut self, node: &str) {
        if let Some(cidrs) = self.pending.remove(node) {
            for c in cidrs {
                let _ = self.set_for(&c).map(|s| s.release(c));
            }
        }
    }

    /// A node was deleted: release its podCIDRs.
    pub fn node_deleted(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.patch_failed(&name);
        for c in node_pod_cidrs(node).unwrap_or_default() {
            let _ = self.set_for(&c).map(|s| s.release(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackemu_kube::api::core::v1::NodeSpec;
    use ackemu_kube::meta::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                pod_cidrs: cidr.map(|c| vec![c.into()]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn set_cidrs(a: &[IpamAction]) -> Vec<String> {
        a.iter()
            .filter_map(|x| match x {
                IpamAction::SetPodCidrs { cidrs, .. } => Some(
                    cidrs
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn seed_article_slash_25() {
        // Node A already has 172.16.0.128/25 and node B 172.16.8.0/25 (the
        // article's figure); a restarted allocator hands out the others.
        let cfg = IpamConfig::new(vec![net("172.16.0.0/16")], 25);
        let existing = [
            node("a", Some("172.16.0.128/25")),
            node("b", Some("172.16.8.0/25")),
        ];
        let (mut a, errs) = RangeAllocator::new(&cfg, &existing).unwrap();
        assert!(errs.is_empty());
        assert_eq!(a.sets()[0].capacity(), 512);
        assert_eq!(a.sets()[0].allocated(), 2);
        assert_eq!(
            set_cidrs(&a.reconcile(&node("c", None))),
            vec!["172.16.0.0/25"]
        );
        assert_eq!(
            set_cidrs(&a.reconcile(&node("d", None))),
            vec!["172.16.1.0/25"]
        );
        // Existing podCIDRs are left alone.
        assert!(a.reconcile(&existing[0]).is_empty());
    }

    #[test]
    fn stale_cache_gets_the_same_cidr() {
        let cfg = IpamConfig::new(vec![net("10.0.0.0/24")], 26);
        let (mut a, _) = RangeAllocator::new(&cfg, &[]).unwrap();
        let first = set_cidrs(&a.reconcile(&node("x", None)));
        assert_eq!(
            first,
            set_cidrs(&a.reconcile(&node("x", None))),
            "same answer while the patch is in flight"
        );
        assert_eq!(a.sets()[0].allocated(), 1);
        a.reconcile(&node("x", Some("10.0.0.0/26")));
        assert_eq!(
            set_cidrs(&a.reconcile(&node("y", None))),
            vec!["10.0.0.64/26"]
        );
        a.patch_failed("y");
        assert_eq!(a.sets()[0].allocated(), 1, "failed patch releases");
    }

    #[test]
    fn exhaustion_and_release() {
        let cfg = IpamConfig::new(vec![net("10.0.0.0/24")], 25);
        let (mut a, _) = RangeAllocator::new(&cfg, &[]).unwrap();
        a.reconcile(&node("a", None));
        a.reconcile(&node("a", Some("10.0.0.0/25")));
        a.reconcile(&node("b", None));
        a.reconcile(&node("b", Some("10.0.0.128/25")));
        let out = a.reconcile(&node("c", None));
        match &out[..] {
            [IpamAction::Event(e)] => {
                assert_eq!(e.reason, "CIDRNotAvailable");
                assert!(
                    e.message.contains(
                        "there are no remaining CIDRs left to allocate in the accepted range"
                    ),
                    "{}",
                    e.message
                );
            }
            other => panic!("want an event, got {other:?}"),
        }
        a.node_deleted(&node("a", Some("10.0.0.0/25")));
        assert_eq!(
            set_cidrs(&a.reconcile(&node("c", None))),
            vec!["10.0.0.0/25"]
        );
    }

    #[test]
    fn config_and_occupancy_errors() {
        assert!(matches!(
            CidrSet::new(net("10.0.0.0/8"), 25),
            Err(IpamError::SubnetTooBig { .. })
        ));
        assert!(matches!(
            CidrSet::new(net("10.0.0.0/16"), 8),
            Err(IpamError::BadMask { .. })
        ));
        let cfg = IpamConfig::new(vec![net("172.16.0.0/16")], 24);
        let (_, errs) = RangeAllocator::new(&cfg, &[node("far", Some("10.1.0.0/24"))]).unwrap();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].1.to_string(),
            "cidr 10.1.0.0/24 is out the range of cluster cidr 172.16.0.0/16"
        );
        // A service range inside the cluster CIDR is never handed out.
        let mut cfg = IpamConfig::new(vec![net("10.0.0.0/23")], 24);
        cfg.service_cidrs = vec![net("10.0.0.0/24")];
        let (mut a, _) = RangeAllocator::new(&cfg, &[]).unwrap();
        assert_eq!(
            set_cidrs(&a.reconcile(&node("n", None))),
            vec!["10.0.1.0/24"]
        );
    }

    #[test]
    fn dual_stack() {
        let mut cfg = IpamConfig::new(vec![net("10.0.0.0/16"), net("fd00::/48")], 24);
        cfg.node_mask_ipv6 = 64;
        let (mut a, _) = RangeAllocator::new(&cfg, &[]).unwrap();
        assert_eq!(
            set_cidrs(&a.reconcile(&node("n", None))),
            vec!["10.0.0.0/24,fd00::/64"]
        );
    }
}
