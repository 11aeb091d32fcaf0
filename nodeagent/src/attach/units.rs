//! The node's unit files and CNI configuration that `attach` writes once
//! it has the node's credentials and pod CIDR (what ACK's
//! `attach_node.sh` lays down before `systemctl start kubelet`): one
//! `.service` per node role, enabled (`WantedBy=multi-user.target`), run
//! from `--bin-dir`, with the cluster clock flags, all state under the
//! node's root.

use std::path::{Path, PathBuf};

/// Everything the units are rendered from.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    /// Directory of `ackemu-node` and `ackemu-workload`.
    pub bin_dir: PathBuf,
    /// The node's root (`--data-dir`).
    pub data_dir: PathBuf,
    /// The node's run directory (sockets).
    pub run_dir: PathBuf,
    /// Node name.
    pub node_name: String,
    /// InternalIP, if known.
    pub node_ip: Option<String>,
    /// Cluster DNS servers.
    pub cluster_dns: Vec<String>,
    /// The node's pod CIDR.
    pub pod_cidr: String,
    /// `--time-scale=…` and friends.
    pub clock_flags: Vec<String>,
    /// Give every role its admin port on the node's loopback
    /// ([`ADMIN_PORTS`]); only for a node with its own network namespace.
    pub admin_ports: bool,
}

/// The admin port (`FaultService`, `/metrics`, `/debug/tasks`) of each node
/// process on the node's loopback, when attach runs with `--admin-ports`.
/// The kubelet's and kube-proxy's are their upstream healthz/metrics ports.
pub const ADMIN_PORTS: [(&str, u16); 5] = [
    ("systemd", 10260),
    ("cnid", 10261),
    ("runtime", 10262),
    ("kubelet", 10248),
    ("proxy", 10249),
];

/// `role`'s admin address on the node's loopback.
pub fn admin_addr(role: &str) -> Option<String> {
    ADMIN_PORTS
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, p)| format!("127.0.0.1:{p}"))
}

/// Where attach records the admin addresses: `<data-dir>/admin.json`,
/// `{"<role>": "127.0.0.1:<port>", …}`, read by `ackemu chaos --target
/// <instance>/<role>`.
pub fn admin_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.json")
}

impl NodeLayout {
    /// `<data-dir>/units`.
    pub fn unit_dir(&self) -> PathBuf {
        self.data_dir.join("units")
    }
    /// `<data-dir>/cni/net.d`.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.data_dir.join("cni/net.d")
    }
    /// `<data-dir>/cni/bin`.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.data_dir.join("cni/bin")
    }
    fn node_bin(&self) -> String {
        self.bin_dir.join("ackemu-node").display().to_string()
    }
    fn d(&self, rel: &str) -> String {
        self.data_dir.join(rel).display().to_string()
    }
    /// `--admin-listen=…` for `role`, when admin ports are on.
    pub fn admin_flag(&self, role: &str) -> Vec<String> {
        match admin_addr(role) {
            Some(a) if self.admin_ports => vec![format!("--admin-listen={a}")],
            _ => Vec::new(),
        }
    }
}

fn service(description: &str, argv: &[String]) -> String {
    format!(
        "[Unit]\nDescription={description}\n\n[Service]\nExecStart={}\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n",
        argv.join(" ")
    )
}

/// `(file name, contents)` of every unit, in start order.
pub fn render(l: &NodeLayout) -> Vec<(String, String)> {
    let run = l.run_dir.display().to_string();
    let mut cnid = vec![
        l.node_bin(),
        "cnid".into(),
        "--run-dir".into(),
        run.clone(),
        "--pod-cidr".into(),
        l.pod_cidr.clone(),
        "--data-dir".into(),
        l.d("cnid"),
    ];
    cnid.extend(l.clock_flags.iter().cloned());
    cnid.extend(l.admin_flag("cnid"));
    let mut runtime = vec![
        l.node_bin(),
        "runtime".into(),
        "--run-dir".into(),
        run.clone(),
        "--root".into(),
        l.d("runtime"),
        "--cni-conf-dir".into(),
        l.cni_conf_dir().display().to_string(),
        "--cni-bin-dir".into(),
        l.cni_bin_dir().display().to_string(),
        "--workload-binary".into(),
        l.bin_dir.join("ackemu-workload").display().to_string(),
    ];
    runtime.extend(l.clock_flags.iter().cloned());
    runtime.extend(l.admin_flag("runtime"));
    let mut kubelet = vec![
        l.node_bin(),
        "kubelet".into(),
        "--run-dir".into(),
        run,
        "--kubeconfig".into(),
        l.d("kubelet.conf"),
        "--hostname-override".into(),
        l.node_name.clone(),
        "--root-dir".into(),
        l.d("kubelet"),
        "--pod-logs-dir".into(),
        l.d("pods"),
        "--client-ca-file".into(),
        l.d("pki/ca.crt"),
        "--authentication-token-webhook".into(),
    ];
    if let Some(ip) = &l.node_ip {
        kubelet.extend(["--node-ip".to_string(), ip.clone()]);
    }
    if !l.cluster_dns.is_empty() {
        kubelet.extend(["--cluster-dns".to_string(), l.cluster_dns.join(",")]);
    }
    kubelet.extend(l.clock_flags.iter().cloned());
    kubelet.extend(l.admin_flag("kubelet"));
    let mut proxy = vec![
        l.node_bin(),
        "proxy".into(),
        "--kubeconfig".into(),
        l.d("kubelet.conf"),
        "--hostname-override".into(),
        l.node_name.clone(),
    ];
    if let Some(ip) = &l.node_ip {
        proxy.extend(["--node-ip".to_string(), ip.clone()]);
    }
    proxy.extend(l.clock_flags.iter().cloned());
    proxy.extend(l.admin_flag("proxy"));
    vec![
        ("cnid.service".into(), service("ackemu CNI daemon", &cnid)),
        (
            "runtime.service".into(),
            service("ackemu container runtime", &runtime),
        ),
        (
            "kubelet.service".into(),
            service("kubelet: The Kubernetes Node Agent", &kubelet),
        ),
        (
            "proxy.service".into(),
            service("kube-proxy: The Kubernetes network proxy", &proxy),
        ),
    ]
}

/// The CNI network configuration pointing the plugin at cnid.
pub fn cni_conf(run_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "ackemu",
        "type": "ackemu-cni",
        "socket": run_dir.join("cnid.sock").display().to_string(),
    })
    .to_string()
}

/// Write the units, the CNI configuration and the plugin link.
pub fn write(l: &NodeLayout) -> std::io::Result<Vec<String>> {
    let dir = l.unit_dir();
    std::fs::create_dir_all(&dir)?;
    let mut names = Vec::new();
    for (name, text) in render(l) {
        std::fs::write(dir.join(&name), text)?;
        names.push(name);
    }
    let admin = admin_file(&l.data_dir);
    if l.admin_ports {
        let map: serde_json::Map<String, serde_json::Value> = ADMIN_PORTS
            .iter()
            .map(|(r, p)| ((*r).to_owned(), format!("127.0.0.1:{p}").into()))
            .collect();
        std::fs::write(&admin, serde_json::Value::Object(map).to_string())?;
    } else if admin.exists() {
        std::fs::remove_file(&admin)?;
    }
    std::fs::create_dir_all(l.cni_conf_dir())?;
    std::fs::write(
        l.cni_conf_dir().join("10-ackemu.conf"),
        cni_conf(&l.run_dir),
    )?;
    std::fs::create_dir_all(l.cni_bin_dir())?;
    let link = l.cni_bin_dir().join("ackemu-cni");
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(l.bin_dir.join("ackemu-node"), &link)?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::unitfile::parse_service;

    #[test]
    fn units_parse_and_point_at_the_node_root() {
        let l = NodeLayout {
            bin_dir: "/opt/ackemu/bin".into(),
            data_dir: "/nodes/i-1".into(),
            run_dir: "/nodes/i-1/run".into(),
            node_name: "i-1".into(),
            node_ip: Some("192.168.0.12".into()),
            cluster_dns: vec!["172.19.0.10".into()],
            pod_cidr: "172.16.3.0/24".into(),
            clock_flags: vec!["--time-scale=10".into()],
            admin_ports: false,
        };
        let units = render(&l);
        let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "cnid.service",
                "runtime.service",
                "kubelet.service",
                "proxy.service"
            ]
        );
        for (name, text) in &units {
            let u = parse_service(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(u.enabled, "{name} starts at boot");
            assert_eq!(u.exec_start[0], "/opt/ackemu/bin/ackemu-node");
            assert!(u.exec_start.contains(&"--time-scale=10".to_string()));
            assert!(
                name == "proxy.service" || u.exec_start.contains(&"/nodes/i-1/run".to_string())
            );
        }
        let kubelet = parse_service("kubelet.service", &units[2].1).unwrap();
        let argv = kubelet.exec_start.join(" ");
        assert!(
            argv.contains("--kubeconfig /nodes/i-1/kubelet.conf"),
            "{argv}"
        );
        assert!(argv.contains("--node-ip 192.168.0.12"), "{argv}");
        assert!(argv.contains("--cluster-dns 172.19.0.10"), "{argv}");
        assert!(
            argv.contains("--client-ca-file /nodes/i-1/pki/ca.crt"),
            "{argv}"
        );
        assert!(units[0].1.contains("--pod-cidr 172.16.3.0/24"));
        assert!(
            units.iter().all(|(_, t)| !t.contains("--admin-listen")),
            "no admin ports unless asked: nodes sharing a namespace would collide"
        );
    }

    #[test]
    fn admin_ports_give_every_role_its_own_loopback_port() {
        let l = NodeLayout {
            bin_dir: "/opt/ackemu/bin".into(),
            data_dir: "/nodes/i-1".into(),
            run_dir: "/nodes/i-1/run".into(),
            node_name: "i-1".into(),
            node_ip: None,
            cluster_dns: vec![],
            pod_cidr: "172.16.3.0/24".into(),
            clock_flags: vec![],
            admin_ports: true,
        };
        let mut seen = Vec::new();
        for (name, text) in render(&l) {
            let role = name.trim_end_matches(".service");
            let u = parse_service(&name, &text).unwrap();
            let flag = format!("--admin-listen={}", admin_addr(role).unwrap());
            assert!(u.exec_start.contains(&flag), "{name}: {:?}", u.exec_start);
            seen.push(flag);
        }
        seen.push(l.admin_flag("systemd")[0].clone());
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "ports collide: {seen:?}");
        assert!(
            l.admin_flag("runc").is_empty(),
            "short-lived roles get none"
        );
    }
}
