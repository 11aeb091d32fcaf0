//! The VPC data plane with real tools inside the instances' namespaces
//! (issue 6, "Done when").

use base64::Engine as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ackemu_cloudsim::cloud::Product;
use ackemu_cloudsim::dataplane::{netns, packet, wire};
use serde_json::Value;

use crate::netlab::{
    Lab, TRUST_ECS, host_addrs, host_routes, leftover_processes, ping, ping_eventually, sh_ok,
    tcp_get, tcp_server, udp_ask, udp_echo,
};
use crate::{ok, poll};

const QUICK: Duration = Duration::from_millis(1500);
const PATIENT: Duration = Duration::from_secs(5);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn pid_alive(pid: i32) -> bool {
    netns::alive(pid)
}

async fn tcp_eventually(ns: &str, src: Option<Ipv4Addr>, dst: SocketAddr) -> String {
    poll(&format!("tcp {dst} from {ns}"), 20, || {
        let r = tcp_get(ns, src, dst, PATIENT).ok();
        async move { r }
    })
    .await
}

/// Booting creates the namespace, `eth0` with the ENI address and the
/// default route, and runs the UserData inside (which reaches the metadata
/// service on the wire); stop and delete leave nothing behind; nothing
/// emulated appears in the host namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_boots_runs_user_data_and_tears_down() {
    let Some(lab) = Lab::start("life").await else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let script = format!(
        "#!/bin/sh\n\
         echo \"hello from $ACKEMU_INSTANCE_ID\" > {o}/marker.tmp\n\
         ip -4 -o addr show dev eth0 >> {o}/marker.tmp\n\
         ip route >> {o}/marker.tmp\n\
         ip -o link show dev eth0 >> {o}/marker.tmp\n\
         curl -s --max-time 10 http://100.100.100.200/latest/meta-data/instance-id >> {o}/marker.tmp\n\
         echo \"console: joined as $ACKEMU_INSTANCE_ID\"\n\
         echo $$ > {o}/shell.pid\n\
         sleep 100000 &\n\
         echo $! > {o}/child.pid\n\
         mv {o}/marker.tmp {o}/marker\n\
         wait\n"
    );
    let id = lab.instance(&[&lab.sg], "192.168.0.7", &script, None).await;
    let ns = lab.ns(&id);
    assert!(netns::exists(&ns));
    assert!(netns::exists(&lab.cloud_ns()));
    let marker_path = out.path().join("marker");
    let marker = poll("the user data to finish its marker", 30, || {
        let t = std::fs::read_to_string(&marker_path).ok();
        async move { t }
    })
    .await;
    assert!(marker.contains(&format!("hello from {id}")), "{marker}");
    assert!(marker.contains("inet 192.168.0.7/24"), "{marker}");
    assert!(
        marker.contains("default via 192.168.0.253 dev eth0"),
        "{marker}"
    );
    assert!(marker.contains("mtu 1500"), "{marker}");
    assert!(
        marker.trim_end().ends_with(&id),
        "metadata answered for the caller: {marker}"
    );
    let read_pid = |f: &str| -> i32 {
        std::fs::read_to_string(out.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (shell, child) = (read_pid("shell.pid"), read_pid("child.pid"));
    assert!(pid_alive(shell) && pid_alive(child));
    // What the UserData printed is the instance's console output.
    let console = ok(
        &lab.c,
        Product::Ecs,
        "GetInstanceConsoleOutput",
        &[("InstanceId", &id)],
    )
    .await;
    let text = base64::engine::general_purpose::STANDARD
        .decode(console["ConsoleOutput"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains(&format!("console: joined as {id}")),
        "{console}"
    );
    // Nothing emulated in the host namespace.
    assert!(!host_addrs().contains("192.168.0.7/"), "{}", host_addrs());
    assert!(!host_addrs().contains("100.100.100.200"));
    assert!(!host_routes().contains("100.64.0.0/10"));

    ok(&lab.c, Product::Ecs, "StopInstance", &[("InstanceId", &id)]).await;
    lab.wait_status(&id, "Stopped").await;
    assert!(!netns::exists(&ns), "stop removes the namespace");
    assert!(
        !pid_alive(shell) && !pid_alive(child),
        "stop ends the instance's processes"
    );
    assert!(
        leftover_processes(&ns).is_empty(),
        "{:?}",
        leftover_processes(&ns)
    );

    std::fs::remove_file(&marker_path).unwrap();
    ok(
        &lab.c,
        Product::Ecs,
        "StartInstance",
        &[("InstanceId", &id)],
    )
    .await;
    lab.wait_status(&id, "Running").await;
    assert!(netns::exists(&ns));
    poll("the user data to run again", 30, || {
        let t = std::fs::read_to_string(&marker_path).ok();
        async move { t }
    })
    .await;
    let (shell, child) = (read_pid("shell.pid"), read_pid("child.pid"));

    ok(
        &lab.c,
        Product::Ecs,
        "DeleteInstance",
        &[("InstanceId", &id), ("Force", "true")],
    )
    .await;
    poll("the namespace to go", 30, || {
        let gone = !netns::exists(&ns);
        async move { gone.then_some(()) }
    })
    .await;
    poll("the processes to go", 30, || {
        let gone = !pid_alive(shell) && !pid_alive(child) && leftover_processes(&ns).is_empty();
        async move { gone.then_some(()) }
    })
    .await;
    assert!(
        !lab.cs.dir.join("data/instances").join(&id).exists(),
        "delete removes the run directory"
    );
    lab.shutdown().await;
}

/// Two instances reach each other; a route entry makes an address behind B
/// reachable from A; deleting it drops the traffic and the drop log says
/// no route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_entry_reaches_behind_an_instance_and_its_deletion_drops_with_no_route() {
    let Some(lab) = Lab::start("route").await else {
        return;
    };
    let a = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let b = lab.instance(&[&lab.sg], "192.168.0.2", "", None).await;
    let (na, nb) = (lab.ns(&a), lab.ns(&b));
    ping_eventually(&na, "192.168.0.2", None).await;
    assert!(ping(&nb, "192.168.0.1", None));
    let _srv = tcp_server(&nb, addr("0.0.0.0:8080"), "i am b");
    assert_eq!(
        tcp_eventually(&na, None, addr("192.168.0.2:8080")).await,
        "i am b"
    );

    sh_ok(&nb, "ip addr add 172.16.1.5/32 dev lo");
    assert!(!ping(&na, "172.16.1.5", None), "no route yet");
    lab.route("172.16.1.0/24", &b).await;
    ping_eventually(&na, "172.16.1.5", None).await;
    assert_eq!(
        tcp_eventually(&na, None, addr("172.16.1.5:8080")).await,
        "i am b"
    );

    ok(
        &lab.c,
        Product::Vpc,
        "DeleteRouteEntry",
        &[
            ("RouteTableId", &lab.rt),
            ("DestinationCidrBlock", "172.16.1.0/24"),
        ],
    )
    .await;
    assert!(!ping(&na, "172.16.1.5", None), "the route is gone");
    assert!(tcp_get(&na, None, addr("172.16.1.5:8080"), QUICK).is_err());
    let d = lab
        .expect_drop(&[("Reason", "NoRoute"), ("IpAddress", "172.16.1.5")], |d| {
            d["Protocol"] == "tcp" && d["DestinationPort"] == 8080
        })
        .await;
    assert!(d["Detail"].as_str().unwrap().starts_with("no route"), "{d}");
    assert_eq!(d["SourceInstanceId"], a.as_str());
    assert_eq!(d["RouteTableId"], lab.rt.as_str());
    // Still fine between the ENIs themselves, and counted.
    assert!(ping(&na, "192.168.0.2", None));
    let c = ok(
        &lab.c,
        Product::Vpc,
        "DescribeFabricCounters",
        &[("InstanceId", &a)],
    )
    .await;
    let eni = &c["NetworkInterfaces"]["NetworkInterface"][0];
    assert!(
        eni["TxPackets"].as_u64().unwrap() > 0 && eni["TxDropped"].as_u64().unwrap() > 0,
        "{c}"
    );
    // Nothing emulated is routed in the host namespace.
    assert!(!host_routes().contains("172.16.1.0/24"));
    assert!(!host_addrs().contains("192.168.0.2/"));
    lab.shutdown().await;
}

async fn authorize(lab: &Lab, action: &str, p: &[(&str, &str)]) -> String {
    ok(&lab.c, Product::Ecs, action, p).await["SecurityGroupRuleId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// S04: revoking the pod-CIDR ingress rule drops cross-node pod TCP and
/// UDP while ICMP still passes (the default ICMP rule); re-adding it
/// restores traffic without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_revoking_the_pod_cidr_rule_drops_tcp_udp_but_not_icmp() {
    let Some(lab) = Lab::start("s04").await else {
        return;
    };
    let pod_rule = [
        ("SecurityGroupId", lab.sg.as_str()),
        ("IpProtocol", "all"),
        ("PortRange", "-1/-1"),
        ("SourceCidrIp", "172.16.0.0/16"),
        ("Priority", "1"),
    ];
    authorize(&lab, "AuthorizeSecurityGroup", &pod_rule).await;
    authorize(
        &lab,
        "AuthorizeSecurityGroup",
        &[
            ("SecurityGroupId", &lab.sg),
            ("IpProtocol", "icmp"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", "0.0.0.0/0"),
            ("Priority", "100"),
        ],
    )
    .await;
    let a = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let b = lab.instance(&[&lab.sg], "192.168.0.2", "", None).await;
    let (na, nb) = (lab.ns(&a), lab.ns(&b));
    // "Pods": an address of each node's podCIDR, routed by the VPC.
    sh_ok(&na, "ip addr add 172.16.0.5/32 dev lo");
    sh_ok(&nb, "ip addr add 172.16.1.10/32 dev lo");
    lab.route("172.16.0.0/24", &a).await;
    lab.route("172.16.1.0/24", &b).await;
    let pod_a = Some(Ipv4Addr::new(172, 16, 0, 5));
    let dns = addr("172.16.1.10:53");
    let _udp = udp_echo(&nb, dns);
    let _tcp = tcp_server(&nb, dns, "dns over tcp");

    ping_eventually(&na, "172.16.1.10", Some("172.16.0.5")).await;
    assert_eq!(udp_ask(&na, pod_a, dns, PATIENT).unwrap(), b"ackemu?");
    assert_eq!(tcp_eventually(&na, pod_a, dns).await, "dns over tcp");

    ok(&lab.c, Product::Ecs, "RevokeSecurityGroup", &pod_rule).await;
    assert!(udp_ask(&na, pod_a, dns, QUICK).is_err(), "udp is dropped");
    assert_eq!(
        tcp_get(&na, pod_a, dns, QUICK).unwrap_err(),
        "connect timed out"
    );
    assert!(
        ping(&na, "172.16.1.10", Some("172.16.0.5")),
        "icmp still passes"
    );
    let d = lab
        .expect_drop(&[("Reason", "SecurityGroup"), ("InstanceId", &b)], |d| {
            d["Protocol"] == "udp" && d["SourceIp"] == "172.16.0.5"
        })
        .await;
    assert_eq!(d["Direction"], "ingress");
    assert!(
        d["Detail"].as_str().unwrap().contains("default policy"),
        "{d}"
    );
    // Node to node (inner access of the group) is unaffected.
    let _kubelet = tcp_server(&nb, addr("192.168.0.2:10250"), "kubelet");
    assert_eq!(
        tcp_eventually(&na, None, addr("192.168.0.2:10250")).await,
        "kubelet"
    );

    authorize(&lab, "AuthorizeSecurityGroup", &pod_rule).await;
    poll("udp to come back", 20, || {
        let r = udp_ask(&na, pod_a, dns, QUICK).ok();
        async move { r }
    })
    .await;
    assert_eq!(tcp_eventually(&na, pod_a, dns).await, "dns over tcp");
    let c = ok(&lab.c, Product::Vpc, "DescribeFabricCounters", &[]).await;
    let rules = c["SecurityGroupRules"]["SecurityGroupRule"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        rules
            .iter()
            .any(|r| r["SecurityGroupId"] == lab.sg.as_str()
                && r["AcceptedFlows"].as_u64().unwrap() > 0),
        "{c}"
    );
    lab.shutdown().await;
}

/// S05: a node moved out of the cluster group cannot be reached on :10250
/// from a member; putting it back heals at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_moving_an_instance_out_of_the_group_blocks_kubelet() {
    let Some(lab) = Lab::start("s05").await else {
        return;
    };
    let other = ok(
        &lab.c,
        Product::Ecs,
        "CreateSecurityGroup",
        &[("VpcId", &lab.vpc), ("SecurityGroupName", "custom-sg")],
    )
    .await["SecurityGroupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let master = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let node = lab.instance(&[&lab.sg], "192.168.0.2", "", None).await;
    let (nm, nn) = (lab.ns(&master), lab.ns(&node));
    let _kubelet = tcp_server(&nn, addr("0.0.0.0:10250"), "kubelet");
    let kubelet = addr("192.168.0.2:10250");
    assert_eq!(tcp_eventually(&nm, None, kubelet).await, "kubelet");

    let join = |g: &str| {
        [
            ("InstanceId", node.clone()),
            ("SecurityGroupId", g.to_owned()),
        ]
    };
    let p = join(&other);
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&lab.c, Product::Ecs, "JoinSecurityGroup", &p).await;
    let q = join(&lab.sg);
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(&lab.c, Product::Ecs, "LeaveSecurityGroup", &q).await;
    assert_eq!(
        tcp_get(&nm, None, kubelet, QUICK).unwrap_err(),
        "connect timed out"
    );
    let d = lab
        .expect_drop(&[("Reason", "SecurityGroup"), ("InstanceId", &node)], |d| {
            d["DestinationPort"] == 10250
        })
        .await;
    assert_eq!(d["Direction"], "ingress");
    assert_eq!(d["DestinationInstanceId"], node.as_str());

    ok(&lab.c, Product::Ecs, "JoinSecurityGroup", &q).await;
    assert_eq!(tcp_eventually(&nm, None, kubelet).await, "kubelet");
    lab.shutdown().await;
}

/// S06 and the metadata service: from inside an instance the metadata
/// service hands out STS credentials of its RAM role and the registry and
/// the cloud API answer at their cloud addresses; an egress deny of
/// 100.64.0.0/10 cuts all three off; revoking it restores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_egress_deny_of_the_cloud_range_cuts_off_metadata_and_registry() {
    let Some(lab) = Lab::start("s06").await else {
        return;
    };
    ok(
        &lab.c,
        Product::Ram,
        "CreateRole",
        &[
            ("RoleName", "KubernetesWorkerRole"),
            ("AssumeRolePolicyDocument", TRUST_ECS),
        ],
    )
    .await;
    let a = lab
        .instance(&[&lab.sg], "192.168.0.1", "", Some("KubernetesWorkerRole"))
        .await;
    let na = lab.ns(&a);
    let creds = "curl -s --max-time 3 http://100.100.100.200/latest/meta-data/ram/security-credentials/KubernetesWorkerRole";
    let registry = "curl -s --max-time 3 -o /dev/null -w '%{http_code}' http://100.100.0.20/v2/";
    let api = "curl -s --max-time 3 --http2-prior-knowledge -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/grpc' http://100.100.0.10/ackemu.cloud.v1.Ecs/Invoke";

    let body = sh_ok(&na, creds);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["Code"], "Success");
    assert!(
        v["AccessKeyId"].as_str().unwrap().starts_with("STS."),
        "{v}"
    );
    assert!(!v["SecurityToken"].as_str().unwrap().is_empty());
    assert_eq!(
        sh_ok(
            &na,
            "curl -s --max-time 3 http://100.100.100.200/latest/meta-data/private-ipv4"
        ),
        "192.168.0.1"
    );
    assert_eq!(sh_ok(&na, registry), "401");
    assert_eq!(sh_ok(&na, api), "200");

    let deny = [
        ("SecurityGroupId", lab.sg.as_str()),
        ("IpProtocol", "all"),
        ("PortRange", "-1/-1"),
        ("DestCidrIp", "100.64.0.0/10"),
        ("Policy", "drop"),
        ("Priority", "1"),
    ];
    let rule = authorize(&lab, "AuthorizeSecurityGroupEgress", &deny).await;
    for cmd in [creds, registry, api] {
        let o = crate::netlab::sh(&na, cmd);
        assert!(
            !o.status.success(),
            "{cmd} should fail: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let d = lab
        .expect_drop(
            &[
                ("Reason", "SecurityGroup"),
                ("IpAddress", "100.100.100.200"),
            ],
            |_| true,
        )
        .await;
    assert_eq!(d["Direction"], "egress");
    assert_eq!(d["SecurityGroupRuleId"], rule.as_str());
    lab.expect_drop(
        &[("Reason", "SecurityGroup"), ("IpAddress", "100.100.0.20")],
        |_| true,
    )
    .await;

    ok(&lab.c, Product::Ecs, "RevokeSecurityGroupEgress", &deny).await;
    let body = sh_ok(&na, creds);
    assert!(body.contains("SecurityToken"), "{body}");
    assert_eq!(sh_ok(&na, registry), "401");
    lab.shutdown().await;
}

async fn health(lab: &Lab, lb: &str) -> Vec<(String, String)> {
    let v = ok(
        &lab.c,
        Product::Slb,
        "DescribeHealthStatus",
        &[("LoadBalancerId", lb)],
    )
    .await;
    v["BackendServers"]["BackendServer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["ServerId"].as_str().unwrap().to_owned(),
                b["ServerHealthStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An SLB VIP with two backends balances connections, and stops sending
/// to a backend whose port closes (health checks through the fabric).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slb_balances_over_healthy_backends_and_drops_a_dead_one() {
    let Some(lab) = Lab::start("slb").await else {
        return;
    };
    let a = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let b = lab.instance(&[&lab.sg], "192.168.0.2", "", None).await;
    let client = lab.instance(&[&lab.sg], "192.168.0.3", "", None).await;
    let _sa = tcp_server(&lab.ns(&a), addr("0.0.0.0:8080"), "backend a");
    let sb = tcp_server(&lab.ns(&b), addr("0.0.0.0:8080"), "backend b");
    let lb = ok(
        &lab.c,
        Product::Slb,
        "CreateLoadBalancer",
        &[("VSwitchId", &lab.vsw)],
    )
    .await;
    let (lb_id, vip) = (
        lb["LoadBalancerId"].as_str().unwrap().to_owned(),
        lb["Address"].as_str().unwrap().to_owned(),
    );
    ok(
        &lab.c,
        Product::Slb,
        "CreateLoadBalancerTCPListener",
        &[
            ("LoadBalancerId", &lb_id),
            ("ListenerPort", "80"),
            ("BackendServerPort", "8080"),
            ("HealthCheckInterval", "1"),
            ("HealthyThreshold", "2"),
            ("UnhealthyThreshold", "2"),
            ("HealthCheckConnectTimeout", "1"),
        ],
    )
    .await;
    let backends =
        format!(r#"[{{"ServerId":"{a}","Weight":100}},{{"ServerId":"{b}","Weight":100}}]"#);
    ok(
        &lab.c,
        Product::Slb,
        "AddBackendServers",
        &[("LoadBalancerId", &lb_id), ("BackendServers", &backends)],
    )
    .await;
    ok(
        &lab.c,
        Product::Slb,
        "StartLoadBalancerListener",
        &[("LoadBalancerId", &lb_id), ("ListenerPort", "80")],
    )
    .await;
    poll("both backends healthy", 30, || {
        let f = health(&lab, &lb_id);
        async move { f.await.iter().all(|(_, h)| h == "normal").then_some(()) }
    })
    .await;
    let v = ok(
        &lab.c,
        Product::Slb,
        "DescribeLoadBalancers",
        &[("LoadBalancerId", &lb_id)],
    )
    .await;
    let shown =
        v["LoadBalancers"]["LoadBalancer"][0]["BackendServers"]["BackendServer"].to_string();
    assert!(shown.contains("\"normal\""), "{v}");

    let nc = lab.ns(&client);
    let vip_addr: SocketAddr = format!("{vip}:80").parse().unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(tcp_get(&nc, None, vip_addr, PATIENT).unwrap());
    }
    assert!(
        seen.iter().filter(|s| *s == "backend a").count() >= 2,
        "{seen:?}"
    );
    assert!(
        seen.iter().filter(|s| *s == "backend b").count() >= 2,
        "{seen:?}"
    );

    sb.stop();
    poll("backend b to turn abnormal", 30, || {
        let f = health(&lab, &lb_id);
        let b = b.clone();
        async move {
            f.await
                .iter()
                .any(|(s, h)| *s == b && h == "abnormal")
                .then_some(())
        }
    })
    .await;
    for _ in 0..4 {
        assert_eq!(tcp_get(&nc, None, vip_addr, PATIENT).unwrap(), "backend a");
    }
    lab.shutdown().await;
}

/// Malformed datagrams (truncated, bad lengths, not IPv4, oversized) and
/// datagrams from unknown underlay addresses are counted and dropped; the
/// fabric keeps forwarding. The test plays an instance's NIC itself: it
/// freezes the real one and says hello with the instance's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_datagrams_are_counted_and_harmless() {
    let Some(lab) = Lab::start("junk").await else {
        return;
    };
    let a = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let x = lab.instance(&[&lab.sg], "192.168.0.9", "", None).await;
    let listen: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.cs.dir.join("listen.json")).unwrap())
            .unwrap();
    let fabric: SocketAddrV4 = listen["fabric"].as_str().unwrap().parse().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENT)).unwrap();

    // Unknown source.
    sock.send_to(
        &packet::build(
            1,
            Ipv4Addr::new(192, 168, 0, 9),
            Ipv4Addr::new(192, 168, 0, 1),
            1,
            0,
            &[8, 0, 0, 0, 0, 1, 0, 1],
        ),
        fabric,
    )
    .unwrap();
    lab.expect_drop(&[("Reason", "UnknownSource")], |_| true)
        .await;

    // Take over x's NIC.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.cs.dir.join("data/state.json")).unwrap())
            .unwrap();
    let key = state["signing_key"].as_str().unwrap();
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.cs.dir.join("data/instances").join(&x).join("vnic.json"))
            .unwrap(),
    )
    .unwrap();
    let vnic = nix::unistd::Pid::from_raw(rec["pid"].as_i64().unwrap() as i32);
    nix::sys::signal::kill(vnic, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // A forged token is ignored; the right one attaches us.
    sock.send_to(&wire::hello(&x, "00ff"), fabric).unwrap();
    sock.send_to(&wire::hello(&x, &wire::token(key, &x)), fabric)
        .unwrap();

    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45, 0, 0],
        vec![0x60; 40],
        vec![0x00, 1, 2, 3],
        vec![0x4f; 24],
        vec![0u8; 4000],
    ];
    let mut bad_len = packet::build(
        17,
        Ipv4Addr::new(192, 168, 0, 9),
        Ipv4Addr::new(192, 168, 0, 1),
        1,
        0,
        &packet::udp_header(1, 2, 0),
    );
    bad_len[2..4].copy_from_slice(&900u16.to_be_bytes());
    junk.push(bad_len);
    let mut bad_sum = packet::build(
        6,
        Ipv4Addr::new(192, 168, 0, 9),
        Ipv4Addr::new(192, 168, 0, 1),
        1,
        0,
        &packet::tcp_header(1, 2, 2),
    );
    bad_sum[10] ^= 0xff;
    junk.push(bad_sum);
    junk.push(packet::build(
        6,
        Ipv4Addr::new(192, 168, 0, 9),
        Ipv4Addr::new(192, 168, 0, 1),
        1,
        0,
        &[0; 7],
    ));
    let n_junk = junk.len();
    // Keep saying hello (the frozen NIC's last hello may land later) and
    // send the junk plus a real echo request to a; its reply proves the
    // fabric still forwards.
    let echo = packet::build(
        1,
        Ipv4Addr::new(192, 168, 0, 9),
        Ipv4Addr::new(192, 168, 0, 1),
        7,
        0,
        &{
            let mut icmp = vec![8, 0, 0, 0, 0x42, 0x42, 0, 1, b'a', b'c', b'k', b'!'];
            let sum = !icmp
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
                .fold(0u32, |s, w| {
                    let t = s + w;
                    (t & 0xffff) + (t >> 16)
                }) as u16;
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            icmp
        },
    );
    let reply = poll("an echo reply through the fabric", 20, || {
        sock.send_to(&wire::hello(&x, &wire::token(key, &x)), fabric)
            .unwrap();
        for j in &junk {
            let _ = sock.send_to(j, fabric);
        }
        sock.send_to(&echo, fabric).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let r = loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let p = packet::parse(&buf[..n]);
                    if let Ok(p) = p
                        && p.flow.src == Ipv4Addr::new(192, 168, 0, 1)
                        && p.flow.protocol == 1
                    {
                        break Some(buf[..n].to_vec());
                    }
                }
                Err(_) => break None,
            }
        };
        async move { r }
    })
    .await;
    assert_eq!(reply[20], 0, "an echo reply");
    // Every kind of junk lands in the drop log as Malformed. Junk is sent
    // again on each round: a datagram the kernel or a batch boundary lost
    // before the fabric read it must not decide the test.
    let wants = [
        "empty datagram",
        "truncated ipv4 header",
        "not an ipv4 packet: ip version 6",
        "bad ipv4 total length 900",
        "bad ipv4 header checksum",
        "truncated tcp header",
        "datagram larger than",
    ];
    let query = [
        ("Reason", "Malformed"),
        ("InstanceId", x.as_str()),
        ("MaxResults", "1000"),
    ];
    let details: Vec<String> = poll("every kind of junk in the drop log", 20, || {
        for j in &junk {
            let _ = sock.send_to(j, fabric);
        }
        let fut = lab.drops(&query);
        async move {
            let details: Vec<String> = fut
                .await
                .iter()
                .filter_map(|d| d["Detail"].as_str().map(str::to_owned))
                .collect();
            wants
                .iter()
                .all(|w| details.iter().any(|d| d.contains(w)))
                .then_some(details)
        }
    })
    .await;
    assert!(details.len() >= n_junk, "{details:?}");
    nix::sys::signal::kill(vnic, nix::sys::signal::Signal::SIGCONT).unwrap();
    let c = ok(&lab.c, Product::Vpc, "DescribeFabricCounters", &[]).await;
    assert!(
        c["DropCounts"]["Malformed"].as_u64().unwrap() >= n_junk as u64,
        "{c}"
    );
    // The real NIC is back (its hellos re-attach it) and traffic flows.
    ping_eventually(&lab.ns(&a), "192.168.0.9", None).await;
    lab.shutdown().await;
}

/// With `--on-exit keep`, instances run on while cloudsim is down, and the
/// restarted cloudsim adopts them (same processes, no second boot) and
/// forwards their packets again; a plain stop powers everything off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_cloudsim_adopts_running_instances() {
    let Some(mut lab) = Lab::start_with("adopt", &["--on-exit", "keep"]).await else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let script = format!(
        "#!/bin/sh\necho boot >> {o}/boots\nsleep 100000 &\necho $! > {o}/sleep.pid\nwait\n"
    );
    let a = lab.instance(&[&lab.sg], "192.168.0.1", &script, None).await;
    let b = lab.instance(&[&lab.sg], "192.168.0.2", "", None).await;
    let pid_file = out.path().join("sleep.pid");
    let sleeper: i32 = poll("the user data's sleeper", 30, || {
        let p = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        async move { p }
    })
    .await;
    ping_eventually(&lab.ns(&a), "192.168.0.2", None).await;
    let fabric = lab.fabric_addr();

    lab.restart(&["--on-exit", "keep", "--fabric-listen", &fabric])
        .await;
    assert!(
        netns::exists(&lab.ns(&a)) && pid_alive(sleeper),
        "the instance ran on"
    );
    ping_eventually(&lab.ns(&a), "192.168.0.2", None).await;
    ping_eventually(&lab.ns(&b), "192.168.0.1", None).await;
    assert!(pid_alive(sleeper), "adopted, not rebooted");
    assert_eq!(
        std::fs::read_to_string(out.path().join("boots")).unwrap(),
        "boot\n"
    );

    // A restart on another fabric address cannot adopt: it boots again.
    lab.restart(&["--fabric-listen", "127.0.0.1:0"]).await;
    poll("a second boot", 30, || {
        let t = std::fs::read_to_string(out.path().join("boots")).unwrap_or_default();
        async move { (t == "boot\nboot\n").then_some(()) }
    })
    .await;
    assert!(!pid_alive(sleeper), "the old incarnation is gone");
    ping_eventually(&lab.ns(&a), "192.168.0.2", None).await;
    lab.shutdown().await;
}

/// The host reaches an instance's service only through an explicit
/// loopback forward; the forward stops working when the instance stops,
/// without pinning its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reaches_an_instance_only_through_a_loopback_forward() {
    let Some(lab) = Lab::start("fwd").await else {
        return;
    };
    let a = lab.instance(&[&lab.sg], "192.168.0.1", "", None).await;
    let _srv = tcp_server(&lab.ns(&a), addr("0.0.0.0:6443"), "apiserver");
    let tasks = ackemu_base::tasks::Tasks::new(ackemu_base::clock::Clock::real());
    let local = ackemu_cloudsim::dataplane::forward::start(
        &tasks,
        addr("127.0.0.1:0"),
        &lab.ns(&a),
        "192.168.0.1:6443".parse().unwrap(),
    )
    .await
    .unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(local).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(got, "apiserver");
    assert!(
        ackemu_cloudsim::dataplane::forward::start(
            &tasks,
            addr("0.0.0.0:0"),
            &lab.ns(&a),
            "192.168.0.1:6443".parse().unwrap()
        )
        .await
        .is_err(),
        "forwards listen on loopback only"
    );
    ok(&lab.c, Product::Ecs, "StopInstance", &[("InstanceId", &a)]).await;
    lab.wait_status(&a, "Stopped").await;
    assert!(!netns::exists(&lab.ns(&a)));
    tasks.shutdown().await;
    lab.shutdown().await;
}
