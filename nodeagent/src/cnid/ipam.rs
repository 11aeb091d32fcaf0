//! Host-local IPAM over the node's pod CIDR, persisted to one JSON file
//! (written to a temporary file, fsynced, renamed, directory fsynced) so a
//! restarted daemon neither loses nor double-assigns addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_NETNS.
    pub netns: String,
    /// The daemon created the namespace (and so removes it on DEL).
    pub created_netns: bool,
}

/// IPAM failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// No free address.
    #[error("no free address in pod CIDR {subnet}")]
    Exhausted {
        /// The pod CIDR.
        subnet: Ipv4Net,
    },
    /// The persisted file does not match.
    #[error("ipam state {path}: {reason}")]
    Corrupt {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Disk IO.
    #[error("ipam state {path}: {reason}")]
    Io {
        /// File.
        path: String,
        /// The error.
        reason: String,
    },
}

/// The allocations of one pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    subnet: Ipv4Net,
    allocations: BTreeMap<Ipv4Addr, Allocation>,
    last: Option<Ipv4Addr>,
}

impl Ipam {
    /// Empty allocations over `subnet`.
    pub fn new(subnet: Ipv4Net) -> Ipam {
        Ipam {
            subnet: subnet.trunc(),
            allocations: BTreeMap::new(),
            last: None,
        }
    }

    /// The pod CIDR.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The address held by (container, ifname).
    pub fn find(&self, container_id: &str, ifname: &str) -> Option<(Ipv4Addr, &Allocation)> {
        self.allocations
            .iter()
            .find(|(_, a)| a.container_id == container_id && a.ifname == ifname)
            .map(|(ip, a)| (*ip, a))
    }

    /// Every allocation.
    pub fn allocations(&self) -> impl Iterator<Item = (&Ipv4Addr, &Allocation)> {
        self.allocations.iter()
    }

    /// Assign an address to `a` (the same one again for a repeated ADD),
    /// continuing after the last one handed out so addresses are not
    /// reused immediately.
    pub fn allocate(&mut self, a: Allocation) -> Result<Ipv4Addr, IpamError> {
        if let Some((ip, _)) = self.find(&a.container_id, &a.ifname) {
            return Ok(ip);
        }
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.subnet.broadcast()).saturating_sub(1);
        if first > last {
            return Err(IpamError::Exhausted {
                subnet: self.subnet,
            });
        }
        let span = last - first + 1;
        let start = match self.last {
            Some(l) if (first..=last).contains(&u32::from(l)) => u32::from(l) - first + 1,
            _ => 0,
        };
        for i in 0..span {
            let ip = Ipv4Addr::from(first + (start + i) % span);
            if let std::collections::btree_map::Entry::Vacant(e) = self.allocations.entry(ip) {
                e.insert(a);
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            subnet: self.subnet,
        })
    }

    /// Release (container, ifname)'s address.
    pub fn release(&mut self, container_id: &str, ifname: &str) -> Option<(Ipv4Addr, Allocation)> {
        let ip = self.find(container_id, ifname)?.0;
        self.allocations.remove(&ip).map(|a| (ip, a))
    }

    /// Load from `path`, or start empty when it does not exist.
    pub fn load(path: &Path, subnet: Ipv4Net) -> Result<Ipam, IpamError> {
        let p = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let ipam: Ipam =
                    serde_json::from_slice(&bytes).map_err(|e| IpamError::Corrupt {
                        path: p.clone(),
                        reason: format!("decoding: {e}"),
                    })?;
                if ipam.subnet != subnet.trunc() {
                    return Err(IpamError::Corrupt {
                        path: p,
                        reason: format!(
                            "holds pod CIDR {} but the daemon was started with {subnet}",
                            ipam.subnet
                        ),
                    });
                }
                Ok(ipam)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ipam::new(subnet)),
            Err(e) => Err(IpamError::Io {
                path: p,
                reason: e.to_string(),
            }),
        }
    }

    /// Persist durably to `path`.
    pub fn save(&self, path: &Path) -> Result<(), IpamError> {
        use std::io::Write as _;
        let ioe = |e: std::io::Error| IpamError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(ioe)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(ioe)?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())
            .and_then(|_| f.sync_all())
            .map_err(ioe)?;
        std::fs::rename(&tmp, path).map_err(ioe)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(ioe)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str) -> Allocation {
        Allocation {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: format!("/run/netns/{id}"),
            created_netns: true,
        }
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_reuses_late() {
        let mut ipam = Ipam::new("172.16.1.0/29".parse().unwrap());
        assert_eq!(ipam.gateway(), Ipv4Addr::new(172, 16, 1, 1));
        let a = ipam.allocate(alloc("a")).unwrap();
        let b = ipam.allocate(alloc("b")).unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(172, 16, 1, 2), Ipv4Addr::new(172, 16, 1, 3))
        );
        assert_eq!(ipam.allocate(alloc("a")).unwrap(), a, "ADD is idempotent");
        assert_eq!(ipam.release("a", "eth0").unwrap().0, a);
        // .2 is free again but the next one continues after .3.
        assert_eq!(
            ipam.allocate(alloc("c")).unwrap(),
            Ipv4Addr::new(172, 16, 1, 4)
        );
        for id in ["d", "e", "f"] {
            ipam.allocate(alloc(id)).unwrap();
        }
        // .2 .. .6 are host addresses (.7 is broadcast): all taken now.
        assert!(matches!(
            ipam.allocate(alloc("g")),
            Err(IpamError::Exhausted { .. })
        ));
        assert!(ipam.release("nope", "eth0").is_none());
    }

    #[test]
    fn persists_and_refuses_another_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ipam.json");
        let net: Ipv4Net = "172.16.2.0/24".parse().unwrap();
        let mut ipam = Ipam::load(&p, net).unwrap();
        let ip = ipam.allocate(alloc("x")).unwrap();
        ipam.save(&p).unwrap();
        let again = Ipam::load(&p, net).unwrap();
        assert_eq!(again.find("x", "eth0").map(|(i, _)| i), Some(ip));
        assert!(matches!(
            Ipam::load(&p, "172.16.3.0/24".parse().unwrap()),
            Err(IpamError::Corrupt { .. })
        ));
    }
}
