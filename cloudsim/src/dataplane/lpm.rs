//! Longest-prefix match in O(number of distinct prefix lengths): one hash
//! map per prefix length, probed from the longest length down. A route
//! table with hundreds of /24 pod routes costs a handful of probes.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Entries of one prefix length: network address → (prefix, value).
type Level<T> = HashMap<u32, (Ipv4Net, T)>;

#[derive(Debug, Clone)]
pub struct Lpm<T> {
    /// (prefix length, entries), longest length first.
    by_len: Vec<(u8, Level<T>)>,
}

impl<T> Default for Lpm<T> {
    fn default() -> Self {
        Lpm { by_len: Vec::new() }
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl<T> Lpm<T> {
    /// Adds `net → value`, replacing an entry for the same prefix.
    pub fn insert(&mut self, net: Ipv4Net, value: T) {
        let net = net.trunc();
        let len = net.prefix_len();
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.by_len.insert(p, (len, HashMap::new()));
                p
            }
        };
        self.by_len[pos]
            .1
            .insert(u32::from(net.network()), (net, value));
    }

    /// The most specific entry containing `ip`.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<(&Ipv4Net, &T)> {
        let a = u32::from(ip);
        self.by_len
            .iter()
            .find_map(|(len, m)| m.get(&(a & mask(*len))))
            .map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_matches_the_linear_table() {
        let mut l = Lpm::default();
        let entries = [
            ("0.0.0.0/0", "default"),
            ("192.168.0.0/24", "vsw"),
            ("172.16.0.0/16", "gw"),
            ("172.16.1.0/24", "b"),
            ("172.16.1.128/25", "c"),
            ("100.64.0.0/10", "cloud"),
            ("10.0.0.7/32", "host"),
        ];
        for (n, v) in entries {
            l.insert(n.parse().unwrap(), v);
        }
        assert_eq!(l.len(), entries.len());
        let cases = [
            ("172.16.1.200", "c"),
            ("172.16.1.5", "b"),
            ("172.16.9.1", "gw"),
            ("192.168.0.253", "vsw"),
            ("100.100.100.200", "cloud"),
            ("10.0.0.7", "host"),
            ("10.0.0.8", "default"),
        ];
        for (ip, want) in cases {
            let (_, got) = l.lookup(ip.parse().unwrap()).unwrap();
            assert_eq!(*got, want, "{ip}");
            // Same answer as a linear scan over the route module's table.
            let linear = entries
                .iter()
                .filter(|(n, _)| {
                    n.parse::<Ipv4Net>()
                        .unwrap()
                        .contains(&ip.parse::<Ipv4Addr>().unwrap())
                })
                .max_by_key(|(n, _)| n.parse::<Ipv4Net>().unwrap().prefix_len())
                .unwrap()
                .1;
            assert_eq!(linear, want);
        }
        let mut empty: Lpm<()> = Lpm::default();
        assert!(empty.lookup("1.2.3.4".parse().unwrap()).is_none());
        empty.insert("1.2.3.0/24".parse().unwrap(), ());
        empty.insert("1.2.3.0/24".parse().unwrap(), ());
        assert_eq!(empty.len(), 1);
    }
}
