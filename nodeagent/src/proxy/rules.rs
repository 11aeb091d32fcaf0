//! Rule generation: (Services, EndpointSlices — or Endpoints through
//! [`slices_from_endpoints`] —, node, cluster CIDR) → the
//! nat table's `iptables-restore` text. Pure; no I/O.
//!
//! Chains, as kube-proxy's iptables mode names them:
//! - `KUBE-SERVICES`: one rule per service port (cluster IP, external IPs),
//!   and last `KUBE-NODEPORTS` for destinations of type LOCAL;
//! - `KUBE-SVC-<hash>`: masquerade off-cluster sources, then pick an
//!   endpoint with `statistic mode random` (sticky with `recent` under
//!   ClientIP session affinity);
//! - `KUBE-SEP-<hash>`: hairpin masquerade and DNAT to one endpoint;
//! - `KUBE-EXT-<hash>` / `KUBE-SVL-<hash>`: node-port and external-IP
//!   traffic; with `externalTrafficPolicy: Local` only local endpoints and
//!   no masquerade for external clients;
//! - `KUBE-MARK-MASQ` / `KUBE-POSTROUTING`: mark 0x4000, masquerade marked.
//!
//! `<hash>` is kube-proxy's: the first 16 characters of the base32 of the
//! sha256 of `<namespace>/<name>[:<port name>]` + lowercase protocol (and
//! + `<ip>:<port>` for an endpoint chain).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ackemu_kube::api::core::v1::{EndpointAddress, Endpoints, Service, ServicePort};
use ackemu_kube::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use ackemu_kube::meta::ObjectMeta;
use ipnet::Ipv4Net;
use sha2::{Digest as _, Sha256};

/// The mark that asks `KUBE-POSTROUTING` to masquerade.
pub const MASQ_MARK: &str = "0x4000";

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// ClientIP affinity timeout when the Service does not set one (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_S: i32 = 10800;

/// What the rules are computed from.
#[derive(Debug, Clone, Copy)]
pub struct ProxyInput<'a> {
    /// All Services.
    pub services: &'a [Service],
    /// All EndpointSlices.
    pub endpoint_slices: &'a [EndpointSlice],
    /// This node's name (endpoints with this `nodeName` are local).
    pub node_name: &'a str,
    /// This node's addresses (endpoints at these addresses are local too).
    pub node_ips: &'a [Ipv4Addr],
    /// The pod network; traffic to a cluster IP from outside it is
    /// masqueraded (kube-proxy's `--cluster-cidr`). `None`: never.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Chains the nat table holds now (from `iptables-save -t nat`); ours
    /// that are no longer wanted are flushed and deleted.
    pub existing_chains: &'a [String],
}

/// Prefixes of the per-service chains this module owns.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SEP-",
    "KUBE-EXT-",
    "KUBE-SVL-",
    "KUBE-FW-",
];

/// The generated rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRules {
    /// `iptables-restore --noflush` input for the nat table.
    pub restore: String,
    /// Jumps from the built-in chains into ours, as `iptables -t nat`
    /// arguments after `-A`/`-C` (kube-proxy ensures these one by one).
    pub jumps: Vec<Vec<String>>,
}

/// The `iptables -t nat` argument lists that hook our chains in.
pub fn jump_rules() -> Vec<Vec<String>> {
    let r = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    vec![
        r(&[
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ]),
        r(&[
            "OUTPUT",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ]),
        r(&[
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes postrouting rules",
            "-j",
            "KUBE-POSTROUTING",
        ]),
    ]
}

/// RFC 4648 base32 (standard alphabet, no padding needed for our prefix).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

fn hash16(s: &str) -> String {
    let mut h = base32(&Sha256::digest(s.as_bytes()));
    h.truncate(16);
    h
}

/// `<namespace>/<name>[:<port name>]`: kube-proxy's ServicePortName.
pub fn service_port_name(namespace: &str, name: &str, port_name: &str) -> String {
    if port_name.is_empty() {
        format!("{namespace}/{name}")
    } else {
        format!("{namespace}/{name}:{port_name}")
    }
}

/// The hash shared by a service port's SVC, SVL, EXT and FW chains.
pub fn port_proto_hash(service_port_name: &str, protocol: &str) -> String {
    hash16(&format!(
        "{service_port_name}{}",
        protocol.to_ascii_lowercase()
    ))
}

/// `KUBE-SVC-<hash>`.
pub fn service_chain(service_port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", port_proto_hash(service_port_name, protocol))
}

/// `KUBE-SEP-<hash>` of one endpoint (`<ip>:<port>`) of a service port.
pub fn endpoint_chain(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!(
            "{service_port_name}{}{endpoint}",
            protocol.to_ascii_lowercase()
        ))
    )
}

/// The EndpointSlices equivalent to a core/v1 Endpoints object (one per
/// subset; `notReadyAddresses` become not-ready endpoints), for feeding
/// [`nat_rules`] from Endpoints.
pub fn slices_from_endpoints(eps: &Endpoints) -> Vec<EndpointSlice> {
    let name = eps.metadata.name.clone().unwrap_or_default();
    let conv = |a: &EndpointAddress, ready: bool| SliceEndpoint {
        addresses: vec![a.ip.clone()],
        hostname: a.hostname.clone(),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    };
    eps.subsets
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, subset)| EndpointSlice {
            address_type: "IPv4".into(),
            metadata: ObjectMeta {
                namespace: eps.metadata.namespace.clone(),
                name: Some(format!("{name}-{i}")),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), name.clone())].into()),
                ..Default::default()
            },
            ports: Some(
                subset
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| SlicePort {
                        name: p.name.clone(),
                        port: Some(p.port),
                        protocol: p.protocol.clone(),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect(),
            ),
            endpoints: subset
                .addresses
                .iter()
                .flatten()
                .map(|a| conv(a, true))
                .chain(
                    subset
                        .not_ready_addresses
                        .iter()
                        .flatten()
                        .map(|a| conv(a, false)),
                )
                .collect(),
        })
        .collect()
}

/// One ready endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    ip: Ipv4Addr,
    port: i32,
    local: bool,
}

impl Endpoint {
    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Ready endpoints per (namespace, service, port name, protocol).
type EndpointMap = BTreeMap<(String, String, String, String), Vec<Endpoint>>;

fn endpoint_map(input: &ProxyInput<'_>) -> EndpointMap {
    let mut map = EndpointMap::new();
    for slice in input.endpoint_slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        for port in slice.ports.iter().flatten() {
            let Some(number) = port.port else { continue };
            let key = (
                ns.clone(),
                svc.clone(),
                port.name.clone().unwrap_or_default(),
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            let list = map.entry(key).or_default();
            for ep in &slice.endpoints {
                let cond = ep.conditions.clone().unwrap_or_default();
                if cond.ready == Some(false) || cond.terminating == Some(true) {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let local = ep.node_name.as_deref() == Some(input.node_name)
                        || input.node_ips.contains(&ip);
                    list.push(Endpoint {
                        ip,
                        port: number,
                        local,
                    });
                }
            }
        }
    }
    for list in map.values_mut() {
        list.sort();
        list.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    }
    map
}

/// One service port, everything its chains need.
struct PortInfo<'a> {
    spn: String,
    proto: String,
    cluster_ip: Option<Ipv4Addr>,
    port: &'a ServicePort,
    external_ips: Vec<Ipv4Addr>,
    local_policy: bool,
    affinity_s: Option<i32>,
    endpoints: Vec<Endpoint>,
}

fn port_infos<'a>(input: &ProxyInput<'a>, eps: &EndpointMap) -> Vec<PortInfo<'a>> {
    let mut out = Vec::new();
    for svc in input.services {
        let Some(spec) = &svc.spec else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let external = ty == "NodePort" || ty == "LoadBalancer" || !external_ips.is_empty();
        let local_policy = external && spec.external_traffic_policy.as_deref() == Some("Local");
        let affinity_s = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S)
        });
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.clone().unwrap_or_default();
            let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let endpoints = eps
                .get(&(ns.clone(), name.clone(), port_name.clone(), proto.clone()))
                .cloned()
                .unwrap_or_default();
            out.push(PortInfo {
                spn: service_port_name(&ns, &name, &port_name),
                proto: proto.to_ascii_lowercase(),
                cluster_ip,
                port,
                external_ips: external_ips.clone(),
                local_policy,
                affinity_s,
                endpoints,
            });
        }
    }
    out.sort_by(|a, b| (&a.spn, &a.proto).cmp(&(&b.spn, &b.proto)));
    out
}

/// kube-proxy's probability for the i-th of n endpoints: 1/(n-i), `%0.10f`.
pub fn probability(n_remaining: usize) -> String {
    format!("{:.10}", 1.0 / n_remaining as f64)
}

/// Compute the nat table.
pub fn nat_rules(input: &ProxyInput<'_>) -> NatRules {
    let eps = endpoint_map(input);
    let ports = port_infos(input, &eps);
    let mut chains: Vec<String> = [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let base_rules: Vec<String> = vec![
        format!("-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}"),
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".into(),
        format!("-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"),
    ];
    let mut services_rules = Vec::new();
    let mut nodeport_rules = Vec::new();
    let mut svc_rules = Vec::new();
    for p in &ports {
        if p.endpoints.is_empty() {
            // kube-proxy rejects these in the filter table; nothing in nat.
            continue;
        }
        let hash = port_proto_hash(&p.spn, &p.proto);
        let svc = format!("KUBE-SVC-{hash}");
        let ext = format!("KUBE-EXT-{hash}");
        let svl = format!("KUBE-SVL-{hash}");
        let (spn, proto, port) = (&p.spn, &p.proto, p.port.port);
        let has_ext = p.port.node_port.is_some() || !p.external_ips.is_empty();
        chains.push(svc.clone());
        if let Some(ip) = p.cluster_ip {
            services_rules.push(format!(
                "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{spn} cluster IP\" -m {proto} --dport {port} -j {svc}"
            ));
            if let Some(cidr) = input.cluster_cidr {
                svc_rules.push(format!(
                    "-A {svc} ! -s {cidr} -d {ip}/32 -p {proto} -m comment --comment \"{spn} cluster IP\" -m {proto} --dport {port} -j KUBE-MARK-MASQ"
                ));
            }
        }
        for ip in &p.external_ips {
            services_rules.push(format!(
                "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{spn} external IP\" -m {proto} --dport {port} -j {ext}"
            ));
        }
        if let Some(np) = p.port.node_port {
            nodeport_rules.push(format!(
                "-A KUBE-NODEPORTS -p {proto} -m comment --comment \"{spn}\" -m {proto} --dport {np} -j {ext}"
            ));
        }
        svc_rules.extend(balance(&svc, spn, proto, p.affinity_s, &p.endpoints));
        if has_ext {
            chains.push(ext.clone());
            if p.local_policy {
                if let Some(cidr) = input.cluster_cidr {
                    svc_rules.push(format!(
                        "-A {ext} -s {cidr} -m comment --comment \"pod traffic for {spn} external destinations\" -j {svc}"
                    ));
                }
                svc_rules.push(format!(
                    "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                ));
                svc_rules.push(format!(
                    "-A {ext} -m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {svc}"
                ));
                let local: Vec<Endpoint> =
                    p.endpoints.iter().filter(|e| e.local).cloned().collect();
                if !local.is_empty() {
                    chains.push(svl.clone());
                    svc_rules.push(format!("-A {ext} -j {svl}"));
                    svc_rules.extend(balance(&svl, spn, proto, p.affinity_s, &local));
                }
            } else {
                svc_rules.push(format!(
                    "-A {ext} -m comment --comment \"masquerade traffic for {spn} external destinations\" -j KUBE-MARK-MASQ"
                ));
                svc_rules.push(format!("-A {ext} -j {svc}"));
            }
        }
        for e in &p.endpoints {
            let sep = endpoint_chain(spn, proto, &e.addr());
            chains.push(sep.clone());
            svc_rules.push(format!(
                "-A {sep} -s {}/32 -m comment --comment \"{spn}\" -j KUBE-MARK-MASQ",
                e.ip
            ));
            let recent = if p.affinity_s.is_some() {
                format!(" -m recent --set --name {sep} --mask 255.255.255.255 --rsource")
            } else {
                String::new()
            };
            svc_rules.push(format!(
                "-A {sep} -p {proto} -m comment --comment \"{spn}\"{recent} -m {proto} -j DNAT --to-destination {}",
                e.addr()
            ));
        }
    }
    services_rules.push(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".into(),
    );
    chains.dedup();
    let stale: Vec<&String> = input
        .existing_chains
        .iter()
        .filter(|c| SERVICE_CHAIN_PREFIXES.iter().any(|p| c.starts_with(p)))
        .filter(|c| !chains.contains(c))
        .collect();
    let mut text = String::from("*nat\n");
    for c in chains.iter().chain(stale.iter().copied()) {
        let _ = writeln!(text, ":{c} - [0:0]");
    }
    for r in services_rules
        .iter()
        .chain(&nodeport_rules)
        .chain(&base_rules)
        .chain(&svc_rules)
    {
        text.push_str(r);
        text.push('\n');
    }
    for c in &stale {
        let _ = writeln!(text, "-X {c}");
    }
    text.push_str("COMMIT\n");
    NatRules {
        restore: text,
        jumps: jump_rules(),
    }
}

/// The endpoint-selection rules of `chain` (a SVC or SVL chain).
fn balance(
    chain: &str,
    spn: &str,
    proto: &str,
    affinity_s: Option<i32>,
    endpoints: &[Endpoint],
) -> Vec<String> {
    let mut out = Vec::new();
    let seps: Vec<(String, String)> = endpoints
        .iter()
        .map(|e| (e.addr(), endpoint_chain(spn, proto, &e.addr())))
        .collect();
    if let Some(secs) = affinity_s {
        for (addr, sep) in &seps {
            out.push(format!(
                "-A {chain} -m comment --comment \"{spn} -> {addr}\" -m recent --rcheck --seconds {secs} --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}"
            ));
        }
    }
    let n = seps.len();
    for (i, (addr, sep)) in seps.iter().enumerate() {
        if i + 1 < n {
            out.push(format!(
                "-A {chain} -m comment --comment \"{spn} -> {addr}\" -m statistic --mode random --probability {} -j {sep}",
                probability(n - i)
            ));
        } else {
            out.push(format!(
                "-A {chain} -m comment --comment \"{spn} -> {addr}\" -j {sep}"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
