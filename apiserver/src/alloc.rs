//! ClusterIP and NodePort allocation for Services, as pure functions over
//! the set of addresses and ports already in use (computed from the
//! Services that exist). The first address of the service CIDR belongs to
//! the `kubernetes` Service.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

/// The allocation ranges.
#[derive(Clone, Debug)]
pub struct ServiceRanges {
    pub cidr: Ipv4Net,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self {
            cidr: "172.19.0.0/20".parse().expect("valid default service CIDR"),
            node_ports: (30000, 32767),
        }
    }
}

impl ServiceRanges {
    /// The `kubernetes` Service's address: the first usable one.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + 1)
    }
}

/// What is in use.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    pub ips: BTreeSet<Ipv4Addr>,
    pub node_ports: BTreeSet<u16>,
}

impl InUse {
    /// Collects the addresses and ports of existing Services.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut u = InUse::default();
        for s in services {
            for ip in s["spec"]["clusterIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&s["spec"]["clusterIP"]))
            {
                if let Some(ip) = ip.as_str().and_then(|i| i.parse().ok()) {
                    u.ips.insert(ip);
                }
            }
            for p in s["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(np) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                    u.node_ports.insert(np);
                }
            }
        }
        u
    }
}

/// An allocation failure: (field, message) for an Invalid status.
pub type Invalid = (String, String);

/// Fills `spec.clusterIP(s)` and node ports of a new Service. `seed` picks
/// where the search for a free address or port starts.
pub fn allocate(
    svc: &mut Value,
    ranges: &ServiceRanges,
    used: &InUse,
    seed: u64,
) -> Result<(), Invalid> {
    let spec = &mut svc["spec"];
    let typ = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    if typ == "ExternalName" {
        return Ok(());
    }
    let requested = spec["clusterIP"].as_str().unwrap_or("").to_owned();
    let ip = if requested == "None" {
        "None".to_owned()
    } else if requested.is_empty() {
        let size = 1u64 << (32 - ranges.cidr.prefix_len());
        // Skip the network address, the reserved first address and broadcast.
        let usable = size.saturating_sub(3).max(1);
        let base = u32::from(ranges.cidr.network()) + 2;
        let mut found = None;
        for i in 0..usable {
            let cand = Ipv4Addr::from(base + ((seed.wrapping_add(i)) % usable) as u32);
            if !used.ips.contains(&cand) {
                found = Some(cand);
                break;
            }
        }
        let Some(ip) = found else {
            return Err((
                "spec.clusterIPs".to_owned(),
                "Internal error: failed to allocate a serviceIP: range is full".to_owned(),
            ));
        };
        ip.to_string()
    } else {
        let parsed: Ipv4Addr = requested.parse().map_err(|_| {
            (
                "spec.clusterIPs[0]".to_owned(),
                format!("Invalid value: {requested:?}: must be a valid IP address"),
            )
        })?;
        if !ranges.cidr.contains(&parsed) {
            return Err((
                "spec.clusterIPs".to_owned(),
                format!(
                    "Invalid value: []string{{{requested:?}}}: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                    ranges.cidr
                ),
            ));
        }
        if used.ips.contains(&parsed) {
            return Err((
                "spec.clusterIPs".to_owned(),
                format!(
                    "Invalid value: []string{{{requested:?}}}: failed to allocate IP {requested}: provided IP is already allocated"
                ),
            ));
        }
        requested
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    if ip != "None" {
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if typ == "NodePort" || typ == "LoadBalancer" {
        let mut taken = used.node_ports.clone();
        let (lo, hi) = ranges.node_ports;
        let span = u64::from(hi - lo) + 1;
        if let Some(ports) = spec["ports"].as_array_mut() {
            // Requested ports first, so an automatic pick never takes one.
            for (i, p) in ports.iter().enumerate() {
                let Some(np) = p["nodePort"].as_u64().filter(|n| *n != 0) else {
                    continue;
                };
                let np16 = u16::try_from(np).unwrap_or(0);
                if np16 < lo || np16 > hi {
                    return Err((
                        format!("spec.ports[{i}].nodePort"),
                        format!(
                            "Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                        ),
                    ));
                }
                if !taken.insert(np16) {
                    return Err((
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {np}: provided port is already allocated"),
                    ));
                }
            }
            for (i, p) in ports.iter_mut().enumerate() {
                if p["nodePort"].as_u64().is_some_and(|n| n != 0) {
                    continue;
                }
                let mut found = None;
                for k in 0..span {
                    let cand = lo + ((seed.wrapping_add(k)) % span) as u16;
                    if !taken.contains(&cand) {
                        found = Some(cand);
                        break;
                    }
                }
                let Some(np) = found else {
                    return Err((
                        format!("spec.ports[{i}].nodePort"),
                        "Internal error: failed to allocate a nodePort: range is full".to_owned(),
                    ));
                };
                taken.insert(np);
                p["nodePort"] = json!(np);
            }
        }
    }
    Ok(())
}

/// On update, keeps the allocated address and node ports the new spec omits
/// (kubectl replace and apply send Services without them).
pub fn keep_allocations(old: &Value, new: &mut Value) {
    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if new["spec"][f].is_null() && !old["spec"][f].is_null() {
            new["spec"][f] = old["spec"][f].clone();
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for p in ports {
            if p["nodePort"].is_null()
                && let Some(o) = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                && !o["nodePort"].is_null()
            {
                p["nodePort"] = o["nodePort"].clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn allocates_cluster_ips_and_node_ports() {
        let r = ServiceRanges::default();
        assert_eq!(r.first(), Ipv4Addr::new(172, 19, 0, 1));
        let mut used = InUse::default();
        used.ips.insert(Ipv4Addr::new(172, 19, 0, 2));
        used.node_ports.insert(30000);
        let mut s = svc(
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]}),
        );
        allocate(&mut s, &r, &used, 0).unwrap();
        assert_eq!(s["spec"]["clusterIP"], "172.19.0.3");
        assert_eq!(s["spec"]["clusterIPs"], json!(["172.19.0.3"]));
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30443);

        let mut fixed = svc(json!({"clusterIP": "172.19.0.10", "ports": [{"port": 53}]}));
        allocate(&mut fixed, &r, &used, 7).unwrap();
        assert_eq!(fixed["spec"]["clusterIP"], "172.19.0.10");
        assert!(fixed["spec"]["ports"][0].get("nodePort").is_none());

        let mut taken = svc(json!({"clusterIP": "172.19.0.2"}));
        let (field, msg) = allocate(&mut taken, &r, &used, 0).unwrap_err();
        assert_eq!(field, "spec.clusterIPs");
        assert_eq!(
            msg,
            "Invalid value: []string{\"172.19.0.2\"}: failed to allocate IP 172.19.0.2: provided IP is already allocated"
        );
        let mut outside = svc(json!({"clusterIP": "10.0.0.1"}));
        assert!(
            allocate(&mut outside, &r, &used, 0)
                .unwrap_err()
                .1
                .contains("not in the valid range")
        );
        let mut dup_port =
            svc(json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30000}]}));
        assert_eq!(
            allocate(&mut dup_port, &r, &used, 0).unwrap_err().1,
            "Invalid value: 30000: provided port is already allocated"
        );
        let mut headless = svc(json!({"clusterIP": "None"}));
        allocate(&mut headless, &r, &used, 0).unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut ext = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        allocate(&mut ext, &r, &used, 0).unwrap();
        assert!(ext["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn full_range_is_an_error_and_in_use_is_collected() {
        let r = ServiceRanges {
            cidr: "10.0.0.0/30".parse().unwrap(),
            node_ports: (30000, 30000),
        };
        let used = InUse::from_services([
            &json!({"spec": {"clusterIP": "10.0.0.2", "ports": [{"nodePort": 30000}]}}),
        ]);
        assert!(used.ips.contains(&Ipv4Addr::new(10, 0, 0, 2)));
        let mut s = svc(json!({}));
        assert!(allocate(&mut s, &r, &used, 0).is_err());
        let mut np =
            svc(json!({"clusterIP": "10.0.0.3", "type": "NodePort", "ports": [{"port": 1}]}));
        assert!(
            allocate(&mut np, &r, &used, 0)
                .unwrap_err()
                .1
                .contains("range is full")
        );
    }

    #[test]
    fn updates_keep_allocations() {
        let old = json!({"spec": {"clusterIP": "172.19.0.5", "clusterIPs": ["172.19.0.5"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut new = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        keep_allocations(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "172.19.0.5");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }
}
