//! What a container sees of its pod: the service environment variables
//! (`KUBERNETES_SERVICE_HOST`, Docker-link style `<NAME>_PORT_<port>_TCP…`),
//! `$(VAR)` expansion, `resolv.conf` for the pod's DNS policy and the
//! `/etc/hosts` file — pure functions.

use std::collections::BTreeMap;

use serde_json::Value;

fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

/// The service variables for a pod in `namespace`: every Service of that
/// namespace with a cluster IP when `enable_links`, plus the `kubernetes`
/// Service of `default` always (kubelet's `getServiceEnvVarMap`).
pub fn service_env(
    services: &[Value],
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut picked: BTreeMap<String, &Value> = BTreeMap::new();
    for s in services {
        let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
        let name = s["metadata"]["name"].as_str().unwrap_or("");
        let ip = s["spec"]["clusterIP"].as_str().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if ns == "default" && name == "kubernetes" {
            picked.insert(name.to_string(), s);
        } else if enable_links && ns == namespace {
            picked.entry(name.to_string()).or_insert(s);
        }
    }
    let mut out = Vec::new();
    for (name, s) in picked {
        let ip = s["spec"]["clusterIP"].as_str().unwrap_or("");
        let ports = s["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let n = env_name(&name);
        out.push((format!("{n}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{n}_SERVICE_PORT"), first["port"].to_string()));
        for p in &ports {
            if let Some(pn) = p["name"].as_str().filter(|s| !s.is_empty()) {
                out.push((
                    format!("{n}_SERVICE_PORT_{}", env_name(pn)),
                    p["port"].to_string(),
                ));
            }
        }
        let proto = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_string();
        out.push((
            format!("{n}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first["port"]),
        ));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{n}_PORT_{}_{}", p["port"], pr.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p["port"]),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p["port"].to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` from `vars`, `$$` → `$`,
/// unknown references left as they are.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// DNS settings for a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dns {
    /// nameserver lines.
    pub servers: Vec<String>,
    /// search domains.
    pub searches: Vec<String>,
    /// options.
    pub options: Vec<String>,
}

impl Dns {
    /// The `resolv.conf` text.
    pub fn resolv_conf(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for n in &self.servers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// DNS for `dnsPolicy` (`ClusterFirst` by default, `Default` = the node's
/// resolv.conf, `None` = only `dnsConfig`), with `dnsConfig` merged in.
pub fn pod_dns(
    policy: Option<&str>,
    dns_config: Option<&Value>,
    namespace: &str,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &Dns,
) -> Dns {
    let mut d = match policy.unwrap_or("ClusterFirst") {
        "None" => Dns::default(),
        "Default" => host.clone(),
        _ if cluster_dns.is_empty() => host.clone(),
        _ => Dns {
            servers: cluster_dns.to_vec(),
            searches: vec![
                format!("{namespace}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ],
            options: vec!["ndots:5".into()],
        },
    };
    if let Some(c) = dns_config {
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        for n in strs(&c["nameservers"]) {
            if !d.servers.contains(&n) {
                d.servers.push(n);
            }
        }
        for s in strs(&c["searches"]) {
            if !d.searches.contains(&s) {
                d.searches.push(s);
            }
        }
        for o in c["options"].as_array().into_iter().flatten() {
            let name = o["name"].as_str().unwrap_or("");
            if name.is_empty() {
                continue;
            }
            let opt = match o["value"].as_str() {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            d.options.retain(|x| x.split(':').next() != Some(name));
            d.options.push(opt);
        }
    }
    d
}

/// Parse a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut d = Dns::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => d.servers.extend(f.next().map(str::to_owned)),
            Some("search") | Some("domain") => d.searches = f.map(str::to_owned).collect(),
            Some("options") => d.options = f.map(str::to_owned).collect(),
            _ => {}
        }
    }
    d
}

/// The kubelet-managed `/etc/hosts` of a pod.
pub fn etc_hosts(pod_ip: &str, hostname: &str, fqdn: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        match fqdn {
            Some(f) => s.push_str(&format!("{pod_ip}\t{f}\t{hostname}\n")),
            None => s.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_variables_like_docker_links() {
        let svcs = vec![
            json!({"metadata": {"namespace": "default", "name": "kubernetes"}, "spec": {"clusterIP": "172.19.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
            json!({"metadata": {"namespace": "web", "name": "my-app"}, "spec": {"clusterIP": "172.19.3.4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"namespace": "web", "name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            json!({"metadata": {"namespace": "other", "name": "x"}, "spec": {"clusterIP": "172.19.9.9", "ports": [{"port": 80}]}}),
        ];
        let env: BTreeMap<String, String> = service_env(&svcs, "web", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "172.19.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://172.19.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://172.19.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "172.19.0.1");
        assert_eq!(env["MY_APP_SERVICE_HOST"], "172.19.3.4");
        assert_eq!(env["MY_APP_SERVICE_PORT_DNS"], "53");
        assert_eq!(env["MY_APP_PORT_53_UDP"], "udp://172.19.3.4:53");
        assert!(
            !env.keys()
                .any(|k| k.starts_with("HEADLESS_") || k.starts_with("X_"))
        );
        let off: BTreeMap<String, String> = service_env(&svcs, "web", false).into_iter().collect();
        assert!(off.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!off.contains_key("MY_APP_SERVICE_HOST"));
    }

    #[test]
    fn expansion() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }

    #[test]
    fn cluster_first_dns() {
        let host = parse_resolv_conf("nameserver 100.100.2.136\nsearch localdomain\n");
        let d = pod_dns(
            None,
            None,
            "web",
            &["172.19.0.10".into()],
            "cluster.local",
            &host,
        );
        assert_eq!(
            d.resolv_conf(),
            "search web.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.19.0.10\noptions ndots:5\n"
        );
        let d = pod_dns(
            Some("Default"),
            None,
            "web",
            &["172.19.0.10".into()],
            "cluster.local",
            &host,
        );
        assert_eq!(d.servers, ["100.100.2.136"]);
        let cfg = json!({"nameservers": ["1.2.3.4"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]});
        let d = pod_dns(Some("None"), Some(&cfg), "web", &[], "cluster.local", &host);
        assert_eq!(
            d.resolv_conf(),
            "nameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
        assert!(etc_hosts("172.16.9.2", "web-0", None).ends_with("172.16.9.2\tweb-0\n"));
    }
}
