//! `resolv.conf`, as the kubelet writes it for pods.

use std::net::SocketAddr;

/// The resolver configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvConf {
    /// Nameservers (port 53 unless given).
    pub nameservers: Vec<SocketAddr>,
    /// Search domains.
    pub search: Vec<String>,
    /// `options ndots:N` (default 1).
    pub ndots: usize,
    /// `options timeout:N` seconds (default 5).
    pub timeout_secs: u64,
    /// `options attempts:N` (default 2).
    pub attempts: u32,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![],
            search: vec![],
            ndots: 1,
            timeout_secs: 5,
            attempts: 2,
        }
    }
}

/// The file a program should read: `$ACKEMU_RESOLV_CONF` (set by runc when
/// the pod has no mount namespace of its own) or `/etc/resolv.conf`.
pub fn path() -> String {
    std::env::var("ACKEMU_RESOLV_CONF").unwrap_or_else(|_| "/etc/resolv.conf".into())
}

/// Parse resolv.conf text. Unknown lines are ignored, as libc does.
pub fn parse(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(a)) = words.next().map(str::parse::<std::net::IpAddr>) {
                    rc.nameservers.push(SocketAddr::new(a, 53));
                }
            }
            Some("search") | Some("domain") => {
                rc.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
            }
            Some("options") => {
                for o in words {
                    if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        rc.ndots = n;
                    } else if let Some(n) = o.strip_prefix("timeout:").and_then(|n| n.parse().ok())
                    {
                        rc.timeout_secs = n;
                    } else if let Some(n) = o.strip_prefix("attempts:").and_then(|n| n.parse().ok())
                    {
                        rc.attempts = n;
                    }
                }
            }
            _ => {}
        }
    }
    rc
}

/// The names to try for `name`, in order (glibc's search algorithm).
pub fn candidates(rc: &ResolvConf, name: &str) -> Vec<String> {
    if let Some(abs) = name.strip_suffix('.') {
        return vec![abs.to_string()];
    }
    let dots = name.matches('.').count();
    let searched = rc.search.iter().map(|d| format!("{name}.{d}"));
    if dots >= rc.ndots {
        std::iter::once(name.to_string()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "nameserver 172.19.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

    #[test]
    fn parses_kubelet_resolv_conf() {
        let rc = parse(POD);
        assert_eq!(rc.nameservers, vec!["172.19.0.10:53".parse().unwrap()]);
        assert_eq!(rc.search.len(), 3);
        assert_eq!(rc.ndots, 5);
    }

    #[test]
    fn search_order_follows_ndots() {
        let rc = parse(POD);
        assert_eq!(
            candidates(&rc, "istio-pilot.istio-system"),
            vec![
                "istio-pilot.istio-system.default.svc.cluster.local",
                "istio-pilot.istio-system.svc.cluster.local",
                "istio-pilot.istio-system.cluster.local",
                "istio-pilot.istio-system",
            ]
        );
        assert_eq!(candidates(&rc, "www.aliyun.com.")[0], "www.aliyun.com");
        let rc1 = ResolvConf {
            search: vec!["a".into()],
            ..ResolvConf::default()
        };
        assert_eq!(candidates(&rc1, "x.y"), vec!["x.y", "x.y.a"]);
    }
}
