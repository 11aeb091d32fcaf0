//! The cluster DNS zone: a pure function from (Services, Endpoints, query) to
//! an answer, with the record shapes of CoreDNS's `kubernetes` plugin.
//!
//! - `A <svc>.<ns>.svc.<domain>` → the ClusterIP; for headless Services the
//!   ready endpoint addresses;
//! - `A <hostname>.<svc>.<ns>.svc.<domain>` → a headless endpoint with that
//!   hostname;
//! - `SRV _<port>._<proto>.<svc>.<ns>.svc.<domain>` → one record per port;
//! - `A <a-b-c-d>.<ns>.pod.<domain>` → `a.b.c.d`;
//! - `CNAME` for ExternalName Services;
//! - `PTR` for ClusterIPs and endpoint addresses;
//! - NXDOMAIN for anything else under the cluster domain; names outside it
//!   go to the upstream resolvers (none exist in the emulated VPC, so the
//!   server answers SERVFAIL, as CoreDNS does when its upstream is
//!   unreachable).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Record TTL, seconds (CoreDNS `kubernetes` plugin default).
pub const TTL: u32 = 5;

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// IPv4 address.
    A(Ipv4Addr),
    /// Alias.
    Cname(String),
    /// Service location: (port, target name).
    Srv(u16, String),
    /// Reverse name.
    Ptr(String),
}

/// What the zone says about a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records (may be empty: the name exists but has no data of that type).
    Records(Vec<Record>),
    /// The name does not exist.
    NxDomain,
    /// Not our zone: ask upstream.
    NotAuthoritative,
}

/// Query types the zone understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// A.
    A,
    /// AAAA (always empty: the cluster is IPv4).
    Aaaa,
    /// SRV.
    Srv,
    /// PTR.
    Ptr,
    /// CNAME.
    Cname,
    /// Anything else.
    Other,
}

#[derive(Debug, Clone, Default)]
struct Svc {
    cluster_ip: Option<Ipv4Addr>,
    headless: bool,
    external_name: Option<String>,
    /// (port name, protocol, port)
    ports: Vec<(String, String, u16)>,
    /// (address, hostname)
    endpoints: Vec<(Ipv4Addr, Option<String>)>,
}

/// How `<a-b-c-d>.<ns>.pod.<domain>` is answered (CoreDNS `pods` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodsMode {
    /// Always answer with the address in the name (kubeadm's default).
    #[default]
    Insecure,
    /// Answer only if a pod with that address runs in that namespace.
    Verified,
    /// NXDOMAIN.
    Disabled,
}

impl std::str::FromStr for PodsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "insecure" => Ok(Self::Insecure),
            "verified" => Ok(Self::Verified),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "invalid pods mode {other:?}: expected insecure, verified or disabled"
            )),
        }
    }
}

/// A snapshot of the cluster's DNS data.
#[derive(Debug, Clone)]
pub struct Zone {
    domain: String,
    services: BTreeMap<(String, String), Svc>,
    reverse: BTreeMap<Ipv4Addr, String>,
    pods_mode: PodsMode,
    /// (namespace, address) of running pods, for `PodsMode::Verified`.
    pods: std::collections::BTreeSet<(String, Ipv4Addr)>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// An empty zone for `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str) -> Zone {
        Zone {
            domain: norm(domain),
            services: BTreeMap::new(),
            reverse: BTreeMap::new(),
            pods_mode: PodsMode::Insecure,
            pods: Default::default(),
        }
    }

    /// Set how pod records are answered; `pods` are the running pods'
    /// (namespace, address) pairs, used by [`PodsMode::Verified`].
    pub fn with_pods(
        mut self,
        mode: PodsMode,
        pods: impl IntoIterator<Item = (String, Ipv4Addr)>,
    ) -> Zone {
        self.pods_mode = mode;
        self.pods = pods.into_iter().collect();
        self
    }

    /// Build from Services and their Endpoints.
    pub fn build(domain: &str, services: &[Service], endpoints: &[Endpoints]) -> Zone {
        let mut z = Zone::new(domain);
        for s in services {
            let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) else {
                continue;
            };
            let spec = s.spec.clone().unwrap_or_default();
            let mut svc = Svc::default();
            match spec.type_.as_deref() {
                Some("ExternalName") => svc.external_name = spec.external_name.clone(),
                _ => match spec.cluster_ip.as_deref() {
                    None | Some("None") | Some("") => svc.headless = true,
                    Some(ip) => svc.cluster_ip = ip.parse().ok(),
                },
            }
            for p in spec.ports.unwrap_or_default() {
                if let Ok(port) = u16::try_from(p.port) {
                    svc.ports.push((
                        p.name.unwrap_or_default(),
                        p.protocol.unwrap_or_else(|| "TCP".into()),
                        port,
                    ));
                }
            }
            let fqdn = format!("{name}.{ns}.svc.{}", z.domain);
            if let Some(ip) = svc.cluster_ip {
                z.reverse.insert(ip, fqdn);
            }
            z.services.insert((ns.clone(), name.clone()), svc);
        }
        for e in endpoints {
            let (Some(ns), Some(name)) = (&e.metadata.namespace, &e.metadata.name) else {
                continue;
            };
            let Some(svc) = z.services.get_mut(&(ns.clone(), name.clone())) else {
                continue;
            };
            for subset in e.subsets.clone().unwrap_or_default() {
                // Only ready addresses are published.
                for a in subset.addresses.unwrap_or_default() {
                    if let Ok(ip) = a.ip.parse::<Ipv4Addr>() {
                        svc.endpoints.push((ip, a.hostname.clone()));
                    }
                }
            }
            if svc.headless {
                for (ip, host) in &svc.endpoints {
                    let label = host
                        .clone()
                        .unwrap_or_else(|| ip.to_string().replace('.', "-"));
                    z.reverse
                        .entry(*ip)
                        .or_insert_with(|| format!("{label}.{name}.{ns}.svc.{}", z.domain));
                }
            }
        }
        z
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Answer `qtype` for `qname`.
    pub fn resolve(&self, qname: &str, qtype: QType) -> Answer {
        let name = norm(qname);
        if qtype == QType::Ptr || name.ends_with(".in-addr.arpa") {
            return self.resolve_ptr(&name, qtype);
        }
        let Some(rel) = name
            .strip_suffix(&self.domain)
            .and_then(|r| r.strip_suffix('.'))
        else {
            return if name == self.domain {
                Answer::Records(vec![])
            } else {
                Answer::NotAuthoritative
            };
        };
        let labels: Vec<&str> = rel.split('.').collect();
        match labels.as_slice() {
            // <a-b-c-d>.<ns>.pod
            [ip, ns, "pod"] => match ip.replace('-', ".").parse::<Ipv4Addr>() {
                Ok(addr) => match self.pods_mode {
                    PodsMode::Insecure => self.records(qtype, vec![Record::A(addr)]),
                    PodsMode::Verified if self.pods.contains(&(ns.to_string(), addr)) => {
                        self.records(qtype, vec![Record::A(addr)])
                    }
                    PodsMode::Verified | PodsMode::Disabled => Answer::NxDomain,
                },
                Err(_) => Answer::NxDomain,
            },
            [_, "pod"] | ["pod"] | ["svc"] | [_, "svc"] => Answer::Records(vec![]),
            // <svc>.<ns>.svc
            [svc, ns, "svc"] => match self.services.get(&(ns.to_string(), svc.to_string())) {
                None => Answer::NxDomain,
                Some(s) => self.service_records(s, &name, qtype),
            },
            // _<port>._<proto>.<svc>.<ns>.svc
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let Some(s) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Answer::NxDomain;
                };
                let target = format!("{svc}.{ns}.svc.{}", self.domain);
                let recs: Vec<Record> = s
                    .ports
                    .iter()
                    .filter(|(pname, pproto, _)| {
                        pname.eq_ignore_ascii_case(&port[1..])
                            && pproto.eq_ignore_ascii_case(&proto[1..])
                    })
                    .map(|(_, _, p)| Record::Srv(*p, target.clone()))
                    .collect();
                if recs.is_empty() {
                    Answer::NxDomain
                } else {
                    self.records(qtype, recs)
                }
            }
            // <hostname>.<svc>.<ns>.svc (headless)
            [host, svc, ns, "svc"] => match self.services.get(&(ns.to_string(), svc.to_string())) {
                Some(s) if s.headless => {
                    let ips: Vec<Record> = s
                        .endpoints
                        .iter()
                        .filter(|(ip, h)| {
                            h.as_deref() == Some(*host) || ip.to_string().replace('.', "-") == *host
                        })
                        .map(|(ip, _)| Record::A(*ip))
                        .collect();
                    if ips.is_empty() {
                        Answer::NxDomain
                    } else {
                        self.records(qtype, ips)
                    }
                }
                _ => Answer::NxDomain,
            },
            _ => Answer::NxDomain,
        }
    }

    fn service_records(&self, s: &Svc, name: &str, qtype: QType) -> Answer {
        if let Some(ext) = &s.external_name {
            let _ = name;
            return Answer::Records(vec![Record::Cname(ext.clone())]);
        }
        let recs = match (s.cluster_ip, s.headless) {
            (Some(ip), false) => vec![Record::A(ip)],
            (_, true) => s.endpoints.iter().map(|(ip, _)| Record::A(*ip)).collect(),
            (None, false) => vec![],
        };
        self.records(qtype, recs)
    }

    fn records(&self, qtype: QType, recs: Vec<Record>) -> Answer {
        let keep = |r: &Record| match qtype {
            QType::A => matches!(r, Record::A(_) | Record::Cname(_)),
            QType::Srv => matches!(r, Record::Srv(..)),
            QType::Cname => matches!(r, Record::Cname(_)),
            QType::Aaaa | QType::Ptr | QType::Other => false,
        };
        Answer::Records(recs.into_iter().filter(keep).collect())
    }

    fn resolve_ptr(&self, name: &str, qtype: QType) -> Answer {
        let Some(rev) = name.strip_suffix(".in-addr.arpa") else {
            return Answer::NotAuthoritative;
        };
        let mut octets: Vec<&str> = rev.split('.').collect();
        octets.reverse();
        let Ok(ip) = octets.join(".").parse::<Ipv4Addr>() else {
            return Answer::NotAuthoritative;
        };
        match self.reverse.get(&ip) {
            Some(n) if qtype == QType::Ptr => Answer::Records(vec![Record::Ptr(n.clone())]),
            Some(_) => Answer::Records(vec![]),
            None => Answer::NotAuthoritative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(&str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some(n.to_string()),
                            port: *p,
                            protocol: Some("UDP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn eps(ns: &str, name: &str, ips: &[(&str, Option<&str>)]) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(
                    ips.iter()
                        .map(|(ip, h)| EndpointAddress {
                            ip: ip.to_string(),
                            hostname: h.map(str::to_string),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }]),
        }
    }

    fn zone() -> Zone {
        Zone::build(
            "cluster.local",
            &[
                svc("kube-system", "kube-dns", "172.19.0.10", &[("dns", 53)]),
                svc(
                    "istio-system",
                    "istio-pilot",
                    "172.19.3.4",
                    &[("grpc", 15010)],
                ),
                svc("default", "db", "None", &[]),
            ],
            &[
                eps(
                    "default",
                    "db",
                    &[("172.16.1.5", Some("db-0")), ("172.16.2.7", None)],
                ),
                eps("kube-system", "kube-dns", &[("172.16.0.3", None)]),
            ],
        )
    }

    #[test]
    fn answers_like_coredns_kubernetes_plugin() {
        let z = zone();
        let a = |ip: &str| Record::A(ip.parse().unwrap());
        let cases: Vec<(&str, QType, Answer)> = vec![
            (
                "kube-dns.kube-system.svc.cluster.local.",
                QType::A,
                Answer::Records(vec![a("172.19.0.10")]),
            ),
            (
                "ISTIO-PILOT.istio-system.svc.cluster.local",
                QType::A,
                Answer::Records(vec![a("172.19.3.4")]),
            ),
            (
                "db.default.svc.cluster.local",
                QType::A,
                Answer::Records(vec![a("172.16.1.5"), a("172.16.2.7")]),
            ),
            (
                "db-0.db.default.svc.cluster.local",
                QType::A,
                Answer::Records(vec![a("172.16.1.5")]),
            ),
            (
                "172-16-2-7.db.default.svc.cluster.local",
                QType::A,
                Answer::Records(vec![a("172.16.2.7")]),
            ),
            ("nope.default.svc.cluster.local", QType::A, Answer::NxDomain),
            (
                "kube-dns.kube-system.svc.cluster.local",
                QType::Aaaa,
                Answer::Records(vec![]),
            ),
            (
                "_dns._udp.kube-dns.kube-system.svc.cluster.local",
                QType::Srv,
                Answer::Records(vec![Record::Srv(
                    53,
                    "kube-dns.kube-system.svc.cluster.local".into(),
                )]),
            ),
            (
                "_dns._tcp.kube-dns.kube-system.svc.cluster.local",
                QType::Srv,
                Answer::NxDomain,
            ),
            (
                "172-16-9-9.default.pod.cluster.local",
                QType::A,
                Answer::Records(vec![a("172.16.9.9")]),
            ),
            ("www.aliyun.com", QType::A, Answer::NotAuthoritative),
            (
                "10.0.19.172.in-addr.arpa",
                QType::Ptr,
                Answer::Records(vec![Record::Ptr(
                    "kube-dns.kube-system.svc.cluster.local".into(),
                )]),
            ),
            (
                "5.1.16.172.in-addr.arpa.",
                QType::Ptr,
                Answer::Records(vec![Record::Ptr(
                    "db-0.db.default.svc.cluster.local".into(),
                )]),
            ),
            ("9.9.9.9.in-addr.arpa", QType::Ptr, Answer::NotAuthoritative),
        ];
        for (name, qt, want) in cases {
            assert_eq!(z.resolve(name, qt), want, "{name} {qt:?}");
        }
    }

    #[test]
    fn pod_records_follow_the_pods_mode() {
        let q = "172-16-9-9.default.pod.cluster.local";
        let a = Answer::Records(vec![Record::A("172.16.9.9".parse().unwrap())]);
        let pods = vec![("default".to_string(), "172.16.9.9".parse().unwrap())];
        let z = |m| zone().with_pods(m, pods.clone());
        assert_eq!(z(PodsMode::Insecure).resolve(q, QType::A), a);
        assert_eq!(z(PodsMode::Verified).resolve(q, QType::A), a);
        assert_eq!(
            z(PodsMode::Verified).resolve("172-16-9-9.other.pod.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(z(PodsMode::Disabled).resolve(q, QType::A), Answer::NxDomain);
        assert!("sometimes".parse::<PodsMode>().is_err());
    }

    #[test]
    fn a_recreated_service_answers_its_new_ip() {
        // S07: kube-dns recreated without its fixed clusterIP.
        let z = Zone::build(
            "cluster.local",
            &[svc("kube-system", "kube-dns", "172.19.7.7", &[])],
            &[],
        );
        assert_eq!(
            z.resolve("kube-dns.kube-system.svc.cluster.local", QType::A),
            Answer::Records(vec![Record::A("172.19.7.7".parse().unwrap())])
        );
    }
}
