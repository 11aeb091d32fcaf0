//! The proxy role's rules applied with the real `iptables-restore` inside
//! a fresh network namespace, then read back as an operator would.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;

use ackemu_kube::api::core::v1::{Service, ServicePort, ServiceSpec};
use ackemu_kube::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use ackemu_kube::meta::ObjectMeta;
use ackemu_nodeagent::proxy::rules::{SERVICE_NAME_LABEL, endpoint_chain, service_chain};
use ackemu_nodeagent::proxy::{ProxyInput, nat_rules};

use crate::util::{Netns, can_netns, text};

fn service(name: &str, ip: &str, port_name: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            session_affinity: Some("ClientIP".into()),
            ports: Some(vec![ServicePort {
                name: (!port_name.is_empty()).then(|| port_name.to_string()),
                protocol: Some("TCP".into()),
                port: 80,
                node_port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(svc: &str, port_name: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("{svc}-x1")),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        ports: Some(vec![EndpointPort {
            name: (!port_name.is_empty()).then(|| port_name.to_string()),
            port: Some(2580),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![(*ip).into()],
                node_name: Some("node-a".into()),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn iptables(ns: &Netns, args: &[&str]) -> String {
    let out = ns.enter().arg("iptables").args(args).output().unwrap();
    assert!(out.status.success(), "iptables {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generated_rules_load_with_iptables_restore_and_read_back() {
    if !can_netns("generated_rules_load_with_iptables_restore_and_read_back") {
        return;
    }
    let ns = Netns::new("proxy");
    let services = [
        service("web", "172.19.3.10", "", Some(30080)),
        service("api", "172.19.3.11", "http", None),
    ];
    let slices = [
        slice("web", "", &["172.16.9.2", "172.16.9.3", "172.16.9.4"]),
        slice("api", "http", &["172.16.9.5"]),
    ];
    let rules = nat_rules(&ProxyInput {
        services: &services,
        endpoint_slices: &slices,
        node_name: "node-a",
        node_ips: &[Ipv4Addr::new(192, 168, 0, 10)],
        cluster_cidr: Some("172.16.0.0/16".parse().unwrap()),
        existing_chains: &[],
    });
    restore(&ns, &rules.restore);
    for jump in &rules.jumps {
        let mut args = vec!["-t", "nat", "-A"];
        args.extend(jump.iter().map(String::as_str));
        iptables(&ns, &args);
    }

    let saved = iptables(&ns, &["-t", "nat", "-S"]);
    let web = service_chain("default/web", "TCP");
    let api = service_chain("default/api:http", "TCP");
    for want in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            .to_string(),
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
            .to_string(),
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000".to_string(),
        format!(
            "-A KUBE-SERVICES -d 172.19.3.10/32 -p tcp -m comment --comment \"default/web cluster IP\" -m tcp --dport 80 -j {web}"
        ),
        format!(
            "-A KUBE-SERVICES -d 172.19.3.11/32 -p tcp -m comment --comment \"default/api:http cluster IP\" -m tcp --dport 80 -j {api}"
        ),
    ] {
        assert!(saved.contains(&want), "missing {want}\nin:\n{saved}");
    }
    let sep = endpoint_chain("default/web", "tcp", "172.16.9.2:2580");
    assert!(
        saved.contains(&format!(
            "-A {sep} -p tcp -m comment --comment \"default/web\" -m recent --set --name {sep} --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 172.16.9.2:2580"
        )),
        "{saved}"
    );
    assert!(
        saved.contains("-m statistic --mode random --probability 0.33333333349"),
        "{saved}"
    );

    let listed = iptables(&ns, &["-t", "nat", "-nL", "KUBE-SERVICES"]);
    let rows: Vec<&str> = listed.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{listed}");
    assert!(
        rows[0].starts_with(&api) || rows[1].starts_with(&api),
        "{listed}"
    );
    assert!(
        rows[2].starts_with("KUBE-NODEPORTS")
            && rows[2].contains(
                "/* kubernetes service nodeports; NOTE: this must be the last rule in this chain */"
            )
            && rows[2].contains("ADDRTYPE match dst-type LOCAL"),
        "{listed}"
    );
    let svc = iptables(&ns, &["-t", "nat", "-nL", &web]);
    assert!(
        svc.contains("statistic mode random probability 0.33333333349"),
        "{svc}"
    );
    assert!(
        svc.contains("statistic mode random probability 0.50000000000"),
        "{svc}"
    );
    assert!(
        svc.contains("recent: CHECK seconds: 10800 reap name: KUBE-SEP-"),
        "{svc}"
    );

    // A second sync with fewer endpoints replaces our chains in place and
    // deletes the stale endpoint chains.
    let existing: Vec<String> = saved
        .lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .map(str::to_string)
        .collect();
    let slices = [
        slice("web", "", &["172.16.9.2"]),
        slice("api", "http", &["172.16.9.5"]),
    ];
    let rules = nat_rules(&ProxyInput {
        services: &services,
        endpoint_slices: &slices,
        node_name: "node-a",
        node_ips: &[],
        cluster_cidr: Some("172.16.0.0/16".parse().unwrap()),
        existing_chains: &existing,
    });
    restore(&ns, &rules.restore);
    let saved = iptables(&ns, &["-t", "nat", "-S"]);
    let gone = endpoint_chain("default/web", "tcp", "172.16.9.3:2580");
    assert!(!saved.contains(&gone), "{saved}");
    let svc = iptables(&ns, &["-t", "nat", "-S", &web]);
    assert_eq!(
        svc.lines().filter(|l| l.starts_with("-A ")).count(),
        3,
        "{svc}"
    );
    assert!(!svc.contains("statistic"), "{svc}");
    assert_eq!(
        saved.matches("-j KUBE-SERVICES").count(),
        2,
        "the jumps are untouched: {saved}"
    );
}

fn restore(ns: &Netns, rules: &str) {
    let mut child = ns
        .enter()
        .args(["iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iptables-restore: {}\n{rules}",
        text(&out)
    );
}
