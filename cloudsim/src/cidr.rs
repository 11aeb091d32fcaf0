//! CIDR validation, VSwitch placement and ENI address allocation — pure.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::CloudError;

fn malformed(param: &str, s: &str, why: &str) -> CloudError {
    CloudError::new(
        "InvalidCidrBlock.Malformed",
        format!("The specified {param} {s:?} is not valid: {why}."),
        400,
    )
}

/// Parses a CIDR in canonical form (host bits zero).
pub fn parse_cidr(param: &str, s: &str) -> Result<Ipv4Net, CloudError> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| malformed(param, s, "expected a.b.c.d/len"))?;
    if net.trunc() != net {
        return Err(malformed(
            param,
            s,
            &format!("host bits must be zero (did you mean {}?)", net.trunc()),
        ));
    }
    Ok(net)
}

/// A VPC CIDR: within 10/8, 172.16/12 or 192.168/16, prefix 8..=28.
pub fn validate_vpc_cidr(s: &str) -> Result<Ipv4Net, CloudError> {
    let net = parse_cidr("CidrBlock", s)?;
    let private: [Ipv4Net; 3] = [
        "10.0.0.0/8".parse().expect("literal"),
        "172.16.0.0/12".parse().expect("literal"),
        "192.168.0.0/16".parse().expect("literal"),
    ];
    if !private.iter().any(|p| p.contains(&net)) {
        return Err(malformed(
            "CidrBlock",
            s,
            "a VPC must use 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 or a subnet of them",
        ));
    }
    if !(8..=28).contains(&net.prefix_len()) {
        return Err(malformed(
            "CidrBlock",
            s,
            "the prefix length must be between 8 and 28",
        ));
    }
    Ok(net)
}

/// A VSwitch CIDR: inside the VPC, prefix 16..=29, overlapping no sibling.
pub fn validate_vswitch_cidr<'a>(
    s: &str,
    vpc: Ipv4Net,
    siblings: impl IntoIterator<Item = (&'a str, Ipv4Net)>,
) -> Result<Ipv4Net, CloudError> {
    let net = parse_cidr("CidrBlock", s)?;
    if !(16..=29).contains(&net.prefix_len()) {
        return Err(malformed(
            "CidrBlock",
            s,
            "the prefix length must be between 16 and 29",
        ));
    }
    if !vpc.contains(&net) {
        return Err(CloudError::new(
            "InvalidCidrBlock.Mismatch",
            format!("The specified CidrBlock {net} is not inside the VPC CIDR block {vpc}."),
            400,
        ));
    }
    for (id, other) in siblings {
        if other.contains(&net.network()) || net.contains(&other.network()) {
            return Err(CloudError::new(
                "InvalidCidrBlock.Overlapped",
                format!("The specified CidrBlock {net} overlaps with vswitch {id} ({other})."),
                400,
            ));
        }
    }
    Ok(net)
}

/// Addresses a VSwitch can hand out: all but the first and the last three.
pub fn usable_range(net: Ipv4Net) -> (u32, u32) {
    let first = u32::from(net.network()) + 1;
    let last = u32::from(net.broadcast()).saturating_sub(3);
    (first, last)
}

pub fn usable_count(net: Ipv4Net) -> u64 {
    let (a, b) = usable_range(net);
    if b < a { 0 } else { u64::from(b - a) + 1 }
}

/// Picks an address for an ENI: `wanted` if given (must be usable and
/// free), else the lowest free usable address.
pub fn allocate(
    net: Ipv4Net,
    used: &BTreeSet<Ipv4Addr>,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, CloudError> {
    let (first, last) = usable_range(net);
    if let Some(ip) = wanted {
        let n = u32::from(ip);
        if n < first || n > last {
            return Err(CloudError::new(
                "InvalidPrivateIpAddress.Malformed",
                format!("The specified PrivateIpAddress {ip} is not a usable address of {net}."),
                400,
            ));
        }
        if used.contains(&ip) {
            return Err(CloudError::new(
                "InvalidPrivateIpAddress.Duplicated",
                format!("The specified PrivateIpAddress {ip} is already in use."),
                400,
            ));
        }
        return Ok(ip);
    }
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            CloudError::new(
                "InvalidVSwitchId.IpNotEnough",
                format!("The specified VSwitch ({net}) has not enough IpAddress."),
                400,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpc_cidr_table() {
        let ok = [
            "192.168.0.0/16",
            "172.16.0.0/12",
            "10.0.0.0/8",
            "10.1.0.0/28",
        ];
        for s in ok {
            validate_vpc_cidr(s).unwrap();
        }
        let bad = [
            ("192.168.0.1/16", "host bits"),
            ("192.168.0.0/33", "expected"),
            ("banana", "expected"),
            ("8.8.0.0/16", "10.0.0.0/8"),
            ("10.0.0.0/29", "between 8 and 28"),
        ];
        for (s, why) in bad {
            let e = validate_vpc_cidr(s).unwrap_err();
            assert_eq!(e.code, "InvalidCidrBlock.Malformed", "{s}");
            assert!(e.message.contains(why), "{s}: {}", e.message);
        }
    }

    #[test]
    fn vswitch_cidr_table() {
        let vpc: Ipv4Net = "192.168.0.0/16".parse().unwrap();
        let siblings = [
            ("vsw-a", "192.168.0.0/24".parse().unwrap()),
            ("vsw-b", "192.168.4.0/22".parse().unwrap()),
        ];
        let cases = [
            ("192.168.1.0/24", Ok(())),
            ("192.168.0.128/25", Err("InvalidCidrBlock.Overlapped")),
            ("192.168.0.0/20", Err("InvalidCidrBlock.Overlapped")),
            ("192.168.5.0/24", Err("InvalidCidrBlock.Overlapped")),
            ("172.16.0.0/24", Err("InvalidCidrBlock.Mismatch")),
            ("192.168.8.0/30", Err("InvalidCidrBlock.Malformed")),
            ("192.168.8.1/24", Err("InvalidCidrBlock.Malformed")),
        ];
        for (s, want) in cases {
            let got = validate_vswitch_cidr(s, vpc, siblings.iter().map(|(i, n)| (*i, *n)));
            match want {
                Ok(()) => {
                    got.unwrap();
                }
                Err(code) => assert_eq!(got.unwrap_err().code, code, "{s}"),
            }
        }
    }

    #[test]
    fn allocation_skips_reserved_and_used() {
        let net: Ipv4Net = "192.168.0.0/29".parse().unwrap();
        assert_eq!(usable_count(net), 4);
        let mut used = BTreeSet::new();
        let mut got = vec![];
        for _ in 0..4 {
            let ip = allocate(net, &used, None).unwrap();
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            ["192.168.0.1", "192.168.0.2", "192.168.0.3", "192.168.0.4"]
        );
        assert_eq!(
            allocate(net, &used, None).unwrap_err().code,
            "InvalidVSwitchId.IpNotEnough"
        );
        let net: Ipv4Net = "192.168.1.0/24".parse().unwrap();
        assert_eq!(
            allocate(net, &used, Some("192.168.1.193".parse().unwrap()))
                .unwrap()
                .to_string(),
            "192.168.1.193"
        );
        for bad in ["192.168.1.0", "192.168.1.253", "192.168.2.1"] {
            assert_eq!(
                allocate(net, &used, Some(bad.parse().unwrap()))
                    .unwrap_err()
                    .code,
                "InvalidPrivateIpAddress.Malformed",
                "{bad}"
            );
        }
        used.insert("192.168.1.7".parse().unwrap());
        assert_eq!(
            allocate(net, &used, Some("192.168.1.7".parse().unwrap()))
                .unwrap_err()
                .code,
            "InvalidPrivateIpAddress.Duplicated"
        );
    }
}
