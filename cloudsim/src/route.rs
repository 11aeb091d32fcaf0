//! VPC route tables and longest-prefix lookup — a pure core the fabric calls
//! per packet.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::CloudError;

/// Where a route entry sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum NextHop {
    /// The VSwitch subnets of the VPC (system entries).
    Local,
    /// An ECS instance (its primary ENI).
    Instance(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteEntry {
    pub destination: Ipv4Net,
    pub next_hop: NextHop,
    /// `System` for VSwitch routes, `Custom` for CreateRouteEntry.
    pub system: bool,
    pub name: String,
}

/// Default custom route entries per route table (Alibaba's default quota).
pub const DEFAULT_ROUTE_ENTRY_QUOTA: usize = 200;

/// A route table, kept sorted by prefix length (longest first) so a lookup
/// returns at the first hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    pub fn custom_count(&self) -> usize {
        self.entries.iter().filter(|e| !e.system).count()
    }

    /// Adds an entry; refuses a duplicate destination and custom entries
    /// beyond `quota`.
    pub fn add(&mut self, entry: RouteEntry, quota: usize) -> Result<(), CloudError> {
        if let Some(existing) = self
            .entries
            .iter()
            .find(|e| e.destination == entry.destination)
        {
            return Err(CloudError::new(
                "InvalidCIDRBlock.Duplicate",
                format!(
                    "The specified DestinationCidrBlock {} already exists in the route table (next hop {:?}).",
                    entry.destination, existing.next_hop
                ),
                400,
            ));
        }
        if !entry.system && self.custom_count() >= quota {
            return Err(CloudError::quota(
                "QuotaExceeded.RouteEntry",
                format!(
                    "The number of route entries in the route table exceeds the quota of {quota}."
                ),
            ));
        }
        let pos = self
            .entries
            .iter()
            .position(|e| e.destination.prefix_len() < entry.destination.prefix_len())
            .unwrap_or(self.entries.len());
        self.entries.insert(pos, entry);
        Ok(())
    }

    /// Removes the custom entry for `destination` (and `next_hop` if given).
    pub fn remove(
        &mut self,
        destination: Ipv4Net,
        next_hop: Option<&NextHop>,
    ) -> Result<RouteEntry, CloudError> {
        let pos = self.entries.iter().position(|e| {
            e.destination == destination && next_hop.is_none_or(|h| *h == e.next_hop)
        });
        match pos {
            Some(i) if self.entries[i].system => Err(CloudError::new(
                "OperationDenied.SystemRouteEntry",
                format!("The system route entry {destination} cannot be deleted."),
                400,
            )),
            Some(i) => Ok(self.entries.remove(i)),
            None => Err(CloudError::new(
                "InvalidRouteEntry.NotFound",
                format!("The specified route entry {destination} does not exist."),
                404,
            )),
        }
    }

    /// Longest-prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&RouteEntry> {
        self.entries.iter().find(|e| e.destination.contains(&dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dst: &str, hop: NextHop, system: bool) -> RouteEntry {
        RouteEntry {
            destination: dst.parse().unwrap(),
            next_hop: hop,
            system,
            name: String::new(),
        }
    }

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.add(entry("192.168.0.0/24", NextHop::Local, true), 10)
            .unwrap();
        t.add(
            entry("172.16.0.0/24", NextHop::Instance("i-a".into()), false),
            10,
        )
        .unwrap();
        t.add(
            entry("172.16.1.0/24", NextHop::Instance("i-b".into()), false),
            10,
        )
        .unwrap();
        t.add(
            entry("172.16.0.0/16", NextHop::Instance("i-gw".into()), false),
            10,
        )
        .unwrap();
        t.add(
            entry("172.16.1.128/25", NextHop::Instance("i-c".into()), false),
            10,
        )
        .unwrap();
        t
    }

    #[test]
    fn longest_prefix_table() {
        let t = table();
        let cases = [
            ("172.16.0.9", Some(NextHop::Instance("i-a".into()))),
            ("172.16.1.12", Some(NextHop::Instance("i-b".into()))),
            ("172.16.1.200", Some(NextHop::Instance("i-c".into()))),
            ("172.16.9.1", Some(NextHop::Instance("i-gw".into()))),
            ("192.168.0.193", Some(NextHop::Local)),
            ("8.8.8.8", None),
        ];
        for (ip, want) in cases {
            assert_eq!(
                t.lookup(ip.parse().unwrap()).map(|e| e.next_hop.clone()),
                want,
                "{ip}"
            );
        }
    }

    #[test]
    fn delete_then_lookup_falls_back_or_misses() {
        let mut t = table();
        t.remove("172.16.1.0/24".parse().unwrap(), None).unwrap();
        assert_eq!(
            t.lookup("172.16.1.12".parse().unwrap()).unwrap().next_hop,
            NextHop::Instance("i-gw".into())
        );
        t.remove(
            "172.16.0.0/16".parse().unwrap(),
            Some(&NextHop::Instance("i-gw".into())),
        )
        .unwrap();
        assert!(t.lookup("172.16.1.12".parse().unwrap()).is_none());
        assert_eq!(
            t.remove("172.16.0.0/16".parse().unwrap(), None)
                .unwrap_err()
                .code,
            "InvalidRouteEntry.NotFound"
        );
        assert_eq!(
            t.remove("192.168.0.0/24".parse().unwrap(), None)
                .unwrap_err()
                .code,
            "OperationDenied.SystemRouteEntry"
        );
    }

    #[test]
    fn quota_and_duplicates() {
        let mut t = RouteTable::default();
        t.add(entry("192.168.0.0/24", NextHop::Local, true), 2)
            .unwrap();
        t.add(
            entry("172.16.0.0/24", NextHop::Instance("i-a".into()), false),
            2,
        )
        .unwrap();
        t.add(
            entry("172.16.1.0/24", NextHop::Instance("i-b".into()), false),
            2,
        )
        .unwrap();
        let before = t.clone();
        let e = t
            .add(
                entry("172.16.2.0/24", NextHop::Instance("i-c".into()), false),
                2,
            )
            .unwrap_err();
        assert_eq!(e.code, "QuotaExceeded.RouteEntry");
        let e = t
            .add(
                entry("172.16.1.0/24", NextHop::Instance("i-c".into()), false),
                5,
            )
            .unwrap_err();
        assert_eq!(e.code, "InvalidCIDRBlock.Duplicate");
        assert_eq!(t, before, "failed adds change nothing");
        // System entries do not count against the quota.
        t.add(entry("192.168.1.0/24", NextHop::Local, true), 2)
            .unwrap();
    }
}
