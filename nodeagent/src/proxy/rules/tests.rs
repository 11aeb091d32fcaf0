use super::*;

use ackemu_kube::api::core::v1::{ClientIPConfig, ServicePort, ServiceSpec, SessionAffinityConfig};
use ackemu_kube::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use ackemu_kube::meta::ObjectMeta;

fn svc(ns: &str, name: &str, ip: &str, ports: &[(&str, &str, i32, Option<i32>)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            type_: Some(if ports.iter().any(|p| p.3.is_some()) {
                "NodePort".into()
            } else {
                "ClusterIP".into()
            }),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, proto, port, np)| ServicePort {
                        name: (!n.is_empty()).then(|| (*n).to_string()),
                        protocol: Some((*proto).into()),
                        port: *port,
                        node_port: *np,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `eps`: (address, node name, ready).
fn slice(
    ns: &str,
    svc: &str,
    port_name: &str,
    port: i32,
    eps: &[(&str, &str, bool)],
) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(format!("{svc}-abcde")),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        ports: Some(vec![EndpointPort {
            name: (!port_name.is_empty()).then(|| port_name.to_string()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: eps
            .iter()
            .map(|(ip, node, ready)| SliceEndpoint {
                addresses: vec![(*ip).into()],
                node_name: Some((*node).into()),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn generate(services: &[Service], slices: &[EndpointSlice]) -> String {
    nat_rules(&ProxyInput {
        services,
        endpoint_slices: slices,
        node_name: "node-a",
        node_ips: &[Ipv4Addr::new(192, 168, 0, 2)],
        cluster_cidr: Some("10.0.0.0/8".parse().unwrap()),
        existing_chains: &[],
    })
    .restore
}

fn chain<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("-A {name} ");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn chain_names_match_kube_proxy() {
    // From kube-proxy's own tests and `iptables -t nat -nL` of real clusters.
    for (spn, proto, want) in [
        ("ns1/svc1:p80", "TCP", "KUBE-SVC-XPGD46QRK7WJZT7O"),
        ("ns4/svc4:p80", "tcp", "KUBE-SVC-4SW47YFZTEDKD3PK"),
        (
            "default/kubernetes:https",
            "TCP",
            "KUBE-SVC-NPX46M4PTMTKRN6Y",
        ),
        (
            "kube-system/kube-dns:dns",
            "UDP",
            "KUBE-SVC-TCOU7JCQXEZGVUNU",
        ),
        (
            "kube-system/kube-dns:dns-tcp",
            "TCP",
            "KUBE-SVC-ERIFXISQEP7F7OF4",
        ),
        (
            "kube-system/kube-dns:metrics",
            "TCP",
            "KUBE-SVC-JD5MR3NA4I4DYORP",
        ),
        ("default/nginx", "TCP", "KUBE-SVC-2CMXP7HKUVJN7L6M"),
    ] {
        assert_eq!(service_chain(spn, proto), want, "{spn} {proto}");
    }
    for (spn, ep, want) in [
        ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        ("ns1/svc1:p80", "10.180.0.2:80", "KUBE-SEP-LXVODXWDISEETFEF"),
        ("ns1/svc1:p80", "10.180.2.1:80", "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"),
        ("ns2/svc2:p80", "10.180.0.2:80", "KUBE-SEP-RS4RBKLTHTF2IUXJ"),
    ] {
        assert_eq!(endpoint_chain(spn, "tcp", ep), want, "{spn} {ep}");
    }
    assert_eq!(service_port_name("default", "nginx", ""), "default/nginx");
}

#[test]
fn base32_matches_rfc4648_vectors() {
    for (input, want) in [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ] {
        assert_eq!(base32(input.as_bytes()), want, "{input:?}");
    }
}

#[test]
fn probabilities_are_one_over_remaining() {
    assert_eq!(probability(3), "0.3333333333");
    assert_eq!(probability(2), "0.5000000000");
}

#[test]
fn cluster_ip_service_with_three_endpoints() {
    let text = generate(
        &[svc(
            "ns1",
            "svc1",
            "172.30.0.41",
            &[("p80", "TCP", 80, None)],
        )],
        &[slice(
            "ns1",
            "svc1",
            "p80",
            80,
            &[
                ("10.180.0.2", "node-b", true),
                ("10.180.0.1", "node-a", true),
                ("10.180.2.1", "node-c", true),
                ("10.180.9.9", "node-c", false),
            ],
        )],
    );
    let want = "\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-LXVODXWDISEETFEF - [0:0]
:KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SVC-XPGD46QRK7WJZT7O ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.2:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.2.1:80\" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1/32 -m comment --comment \"ns1/svc1:p80\" -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp -m comment --comment \"ns1/svc1:p80\" -m tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-LXVODXWDISEETFEF -s 10.180.0.2/32 -m comment --comment \"ns1/svc1:p80\" -j KUBE-MARK-MASQ
-A KUBE-SEP-LXVODXWDISEETFEF -p tcp -m comment --comment \"ns1/svc1:p80\" -m tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -s 10.180.2.1/32 -m comment --comment \"ns1/svc1:p80\" -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -p tcp -m comment --comment \"ns1/svc1:p80\" -m tcp -j DNAT --to-destination 10.180.2.1:80
COMMIT
";
    assert_eq!(text, want, "got:\n{text}");
}

#[test]
fn nodeports_is_the_last_services_rule_and_goes_through_ext() {
    let text = generate(
        &[
            svc(
                "default",
                "web",
                "172.19.1.1",
                &[("", "TCP", 80, Some(30080))],
            ),
            svc(
                "default",
                "api",
                "172.19.1.2",
                &[("http", "TCP", 8080, None)],
            ),
        ],
        &[
            slice("default", "web", "", 80, &[("10.1.0.5", "node-b", true)]),
            slice(
                "default",
                "api",
                "http",
                8080,
                &[("10.1.0.6", "node-a", true)],
            ),
        ],
    );
    let services = chain(&text, "KUBE-SERVICES");
    assert_eq!(services.len(), 3, "{text}");
    assert!(services[2].contains("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"));
    let h = port_proto_hash("default/web", "tcp");
    assert_eq!(
        chain(&text, "KUBE-NODEPORTS"),
        [format!(
            "-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j KUBE-EXT-{h}"
        )]
    );
    assert_eq!(
        chain(&text, &format!("KUBE-EXT-{h}")),
        [
            format!(
                "-A KUBE-EXT-{h} -m comment --comment \"masquerade traffic for default/web external destinations\" -j KUBE-MARK-MASQ"
            ),
            format!("-A KUBE-EXT-{h} -j KUBE-SVC-{h}"),
        ]
    );
    assert!(text.contains(&format!(":KUBE-EXT-{h} - [0:0]")));
}

#[test]
fn external_traffic_policy_local_uses_only_local_endpoints() {
    let mut s = svc(
        "default",
        "web",
        "172.19.1.1",
        &[("", "TCP", 80, Some(30080))],
    );
    s.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
    let text = generate(
        &[s],
        &[slice(
            "default",
            "web",
            "",
            80,
            &[("10.1.0.5", "node-b", true), ("10.1.0.7", "node-a", true)],
        )],
    );
    let h = port_proto_hash("default/web", "tcp");
    let local_sep = endpoint_chain("default/web", "tcp", "10.1.0.7:80");
    let ext = chain(&text, &format!("KUBE-EXT-{h}"));
    assert_eq!(ext.len(), 4, "{text}");
    assert!(ext[0].contains("-s 10.0.0.0/8") && ext[0].ends_with(&format!("-j KUBE-SVC-{h}")));
    assert!(ext[1].contains("--src-type LOCAL -j KUBE-MARK-MASQ"));
    assert!(ext[2].contains("--src-type LOCAL -j KUBE-SVC-"));
    assert_eq!(ext[3], format!("-A KUBE-EXT-{h} -j KUBE-SVL-{h}"));
    assert_eq!(
        chain(&text, &format!("KUBE-SVL-{h}")),
        [format!(
            "-A KUBE-SVL-{h} -m comment --comment \"default/web -> 10.1.0.7:80\" -j {local_sep}"
        )]
    );
    // The cluster chain still balances over both.
    assert_eq!(chain(&text, &format!("KUBE-SVC-{h}")).len(), 3, "{text}");
}

#[test]
fn client_ip_affinity_uses_recent() {
    let mut s = svc("default", "sticky", "172.19.1.3", &[("", "TCP", 80, None)]);
    let spec = s.spec.as_mut().unwrap();
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(600),
        }),
    });
    let text = generate(
        &[s],
        &[slice(
            "default",
            "sticky",
            "",
            80,
            &[("10.1.0.5", "node-b", true), ("10.1.0.6", "node-a", true)],
        )],
    );
    let svc_chain = service_chain("default/sticky", "TCP");
    let sep = endpoint_chain("default/sticky", "tcp", "10.1.0.5:80");
    let rules = chain(&text, &svc_chain);
    assert_eq!(rules.len(), 5, "{text}");
    assert_eq!(
        rules[1],
        format!(
            "-A {svc_chain} -m comment --comment \"default/sticky -> 10.1.0.5:80\" -m recent --rcheck --seconds 600 --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}"
        )
    );
    assert!(rules[3].contains("--probability 0.5000000000"));
    assert!(chain(&text, &sep)[1].contains(&format!(
        "-m recent --set --name {sep} --mask 255.255.255.255 --rsource"
    )));
}

#[test]
fn services_without_ready_endpoints_get_no_nat_chains() {
    let text = generate(
        &[svc(
            "default",
            "empty",
            "172.19.1.4",
            &[("", "TCP", 80, Some(30081))],
        )],
        &[slice(
            "default",
            "empty",
            "",
            80,
            &[("10.1.0.5", "node-b", false)],
        )],
    );
    assert!(!text.contains("KUBE-SVC-"), "{text}");
    assert!(!text.contains("KUBE-EXT-"), "{text}");
    assert_eq!(chain(&text, "KUBE-SERVICES").len(), 1);
}

#[test]
fn stale_service_chains_are_deleted() {
    let existing: Vec<String> = [
        "KUBE-SERVICES",
        "KUBE-SVC-XPGD46QRK7WJZT7O",
        "KUBE-SEP-OLDOLDOLDOLDOLD1",
        "KUBE-EXT-OLDOLDOLDOLDOLD2",
        "DOCKER",
    ]
    .map(String::from)
    .to_vec();
    let text = nat_rules(&ProxyInput {
        services: &[svc(
            "ns1",
            "svc1",
            "172.30.0.41",
            &[("p80", "TCP", 80, None)],
        )],
        endpoint_slices: &[slice(
            "ns1",
            "svc1",
            "p80",
            80,
            &[("10.180.0.1", "node-a", true)],
        )],
        node_name: "node-a",
        node_ips: &[],
        cluster_cidr: None,
        existing_chains: &existing,
    })
    .restore;
    let deleted: Vec<&str> = text.lines().filter(|l| l.starts_with("-X ")).collect();
    assert_eq!(
        deleted,
        [
            "-X KUBE-SEP-OLDOLDOLDOLDOLD1",
            "-X KUBE-EXT-OLDOLDOLDOLDOLD2"
        ],
        "{text}"
    );
    assert!(text.contains(":KUBE-SEP-OLDOLDOLDOLDOLD1 - [0:0]"));
    assert!(!text.contains("DOCKER"));
    assert_eq!(chain(&text, "KUBE-SVC-XPGD46QRK7WJZT7O").len(), 1, "{text}");
}

#[test]
fn endpoints_feed_the_same_rules_as_slices() {
    use ackemu_kube::api::core::v1::{EndpointAddress, EndpointPort as CorePort, EndpointSubset};
    let addr = |ip: &str, node: &str| EndpointAddress {
        ip: ip.into(),
        node_name: Some(node.into()),
        ..Default::default()
    };
    let eps = Endpoints {
        metadata: ObjectMeta {
            namespace: Some("ns1".into()),
            name: Some("svc1".into()),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![
                addr("10.180.0.2", "node-b"),
                addr("10.180.0.1", "node-a"),
            ]),
            not_ready_addresses: Some(vec![addr("10.180.9.9", "node-c")]),
            ports: Some(vec![CorePort {
                name: Some("p80".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }]),
    };
    let services = [svc(
        "ns1",
        "svc1",
        "172.30.0.41",
        &[("p80", "TCP", 80, None)],
    )];
    let from_endpoints = generate(&services, &slices_from_endpoints(&eps));
    let from_slices = generate(
        &services,
        &[slice(
            "ns1",
            "svc1",
            "p80",
            80,
            &[
                ("10.180.0.1", "node-a", true),
                ("10.180.0.2", "node-b", true),
            ],
        )],
    );
    assert_eq!(from_endpoints, from_slices);
    assert!(from_endpoints.contains("KUBE-SEP-SXIVWICOYRO3J4NJ"));
    assert!(!from_endpoints.contains("10.180.9.9"));
}
