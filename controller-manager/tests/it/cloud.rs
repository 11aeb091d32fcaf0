//! The cloud-controller-manager binary against the real API server and the
//! real `ackemu-cloudsim` (recording hypervisor, no data plane): routes
//! kept equal to the nodes' podCIDRs, and not while the caller's RAM policy
//! denies `vpc:*` (S03, the log says why); LoadBalancer Services get an SLB
//! with the right backends (S06's event when the metadata service is
//! unreachable); an ECS released out of band loses its Node and route
//! (S12). The test plays the operator (root AccessKey, RAM edits through
//! the RAM API) and the kubelets (Node objects, their Ready condition).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ackemu_base::clock::Clock;
use ackemu_controller_manager::cloudapi::{
    CloudClient, CredentialSource, Credentials, Product, items,
};
use ackemu_kube::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Service, ServicePort, ServiceSpec,
    Taint,
};
use ackemu_kube::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use ackemu_kube::meta::{ObjectMeta, Time};
use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};

use crate::harness::{Cluster, Proc, component_bin, eventually, free_port};

pub const TIME_SCALE: &str = "50";
pub const TRUST_ECS: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}"#;
/// What the master role needs (see ARCHITECTURE.md).
pub const MASTER_POLICY: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","vpc:DescribeVpcs","vpc:DescribeRouteTables","vpc:DescribeRouteEntryList","vpc:CreateRouteEntry","vpc:DeleteRouteEntry","slb:*","ess:Describe*","ess:ModifyScalingGroup","ess:RemoveInstances"],"Resource":["*"]}]}"#;
pub const MASTER_POLICY_DENY_VPC: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","slb:*","ess:Describe*","ess:ModifyScalingGroup","ess:RemoveInstances"],"Resource":["*"]},{"Effect":"Deny","Action":["vpc:*"],"Resource":["*"]}]}"#;

/// A real cloudsim process on free loopback ports.
pub struct Cloudsim {
    _proc: Proc,
    pub grpc: String,
    pub metadata: String,
    pub root: CloudClient,
}

impl Cloudsim {
    pub async fn start(dir: &Path, clock: &Clock) -> anyhow::Result<Cloudsim> {
        let listen = dir.join("cloudsim-listen.json");
        let profile = dir.join("cloud-profile.json");
        let log = std::fs::File::create(dir.join("cloudsim.log"))?;
        let child = Command::new(component_bin("ackemu-cloudsim", "ackemu-cloudsim")?)
            .arg(format!("--data-dir={}", dir.join("cloudsim").display()))
            .args([
                "--grpc-listen=127.0.0.1:0",
                "--metadata-listen=127.0.0.1:0",
                "--registry-listen=127.0.0.1:0",
                "--instance-start-delay=0s",
                "--metadata-trust-forwarded-for",
            ])
            .arg(format!("--listen-file={}", listen.display()))
            .arg(format!("--admin-profile-file={}", profile.display()))
            .args(clock_flags(clock))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ackemu-cloudsim")?;
        let proc = Proc(child);
        let l: Value = eventually("cloudsim's listen file", || {
            let f = listen.clone();
            async move {
                Ok(std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok()))
            }
        })
        .await?;
        let p: Value = serde_json::from_str(&std::fs::read_to_string(&profile)?)?;
        let p = &p["profiles"][0];
        let grpc = format!("http://{}", l["grpc"].as_str().context("grpc address")?);
        let env = ackemu_base::Env::for_test(Clock::real());
        let root = CloudClient::new(
            &grpc,
            CredentialSource::Static(Credentials {
                access_key_id: p["access_key_id"].as_str().unwrap_or_default().into(),
                access_key_secret: p["access_key_secret"].as_str().unwrap_or_default().into(),
                security_token: None,
            }),
            clock.clone(),
            env.tasks.clone(),
        )?;
        Ok(Cloudsim {
            _proc: proc,
            grpc,
            metadata: format!("http://{}", l["metadata"].as_str().context("metadata")?),
            root,
        })
    }

    pub async fn ok(&self, p: Product, action: &str, params: &[(&str, &str)]) -> Value {
        match self.root.call_with(p, action, params).await {
            Ok(v) => v,
            Err(e) => panic!("{action} failed: {e}"),
        }
    }
}

/// The flags that put a child process on the test's cluster clock.
pub fn clock_flags(clock: &Clock) -> Vec<String> {
    ackemu_base::CommonArgs::clock_flags(clock)
}

/// A clock at [`TIME_SCALE`] shared by every process of one test.
pub fn cluster_clock() -> Clock {
    Clock::new(ackemu_base::clock::ClockConfig {
        time_scale: TIME_SCALE.parse().expect("scale"),
        ..ackemu_base::clock::ClockConfig::real_now()
    })
}

/// The cloud side of a cluster: VPC, VSwitch, security group, the master
/// role with its policy, and a master instance holding the role.
pub struct Network {
    pub vpc: String,
    pub vswitch: String,
    pub sg: String,
    pub route_table: String,
    pub master_ip: String,
    pub region: String,
}

pub async fn network(cs: &Cloudsim) -> Network {
    let v = cs
        .ok(
            Product::Vpc,
            "CreateVpc",
            &[("CidrBlock", "192.168.0.0/16"), ("VpcName", "ackvpc")],
        )
        .await;
    let vpc = v["VpcId"].as_str().unwrap().to_owned();
    let route_table = v["RouteTableId"].as_str().unwrap().to_owned();
    let w = cs
        .ok(
            Product::Vpc,
            "CreateVSwitch",
            &[
                ("VpcId", &vpc),
                ("ZoneId", "cn-hangzhou-b"),
                ("CidrBlock", "192.168.0.0/24"),
            ],
        )
        .await;
    let vswitch = w["VSwitchId"].as_str().unwrap().to_owned();
    let g = cs
        .ok(
            Product::Ecs,
            "CreateSecurityGroup",
            &[("VpcId", &vpc), ("SecurityGroupName", "k8s-sg")],
        )
        .await;
    let sg = g["SecurityGroupId"].as_str().unwrap().to_owned();
    cs.ok(
        Product::Ram,
        "CreatePolicy",
        &[
            ("PolicyName", "k8sMasterRolePolicy"),
            ("PolicyDocument", MASTER_POLICY),
        ],
    )
    .await;
    cs.ok(
        Product::Ram,
        "CreateRole",
        &[
            ("RoleName", "KubernetesMasterRole"),
            ("AssumeRolePolicyDocument", TRUST_ECS),
        ],
    )
    .await;
    cs.ok(
        Product::Ram,
        "AttachPolicyToRole",
        &[
            ("RoleName", "KubernetesMasterRole"),
            ("PolicyName", "k8sMasterRolePolicy"),
            ("PolicyType", "Custom"),
        ],
    )
    .await;
    let (ids, ips) = run_instances(cs, &vswitch, &sg, 1, Some("KubernetesMasterRole")).await;
    let i = describe(cs, &ids[0]).await.expect("master instance");
    Network {
        vpc,
        vswitch,
        sg,
        route_table,
        master_ip: ips[0].clone(),
        region: i["RegionId"].as_str().unwrap().to_owned(),
    }
}

/// Instances with their private IPs.
pub async fn run_instances(
    cs: &Cloudsim,
    vswitch: &str,
    sg: &str,
    n: u32,
    role: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let amount = n.to_string();
    let mut p = vec![
        ("InstanceType", "ecs.g6.large"),
        ("VSwitchId", vswitch),
        ("SecurityGroupId", sg),
        ("Amount", amount.as_str()),
    ];
    if let Some(r) = role {
        p.push(("RamRoleName", r));
    }
    let v = cs.ok(Product::Ecs, "RunInstances", &p).await;
    let ids: Vec<String> = v["InstanceIdSets"]["InstanceIdSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    let mut ips = Vec::new();
    for id in &ids {
        let i = describe(cs, id).await.expect("new instance");
        ips.push(
            i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (ids, ips)
}

pub async fn describe(cs: &Cloudsim, id: &str) -> Option<Value> {
    let ids = serde_json::to_string(&[id]).unwrap();
    let v = cs
        .ok(Product::Ecs, "DescribeInstances", &[("InstanceIds", &ids)])
        .await;
    items(&v, "Instances", "Instance").first().cloned()
}

fn now_time(clock: &Clock) -> Time {
    Time(jiff::Timestamp::from_millisecond(clock.wall_unix_ms()).unwrap())
}

/// A node as a kubelet registers it with `--cloud-provider=external`.
pub fn node(
    name: &str,
    ip: &str,
    pod_cidr: Option<&str>,
    provider_id: Option<String>,
    clock: &Clock,
) -> Node {
    let alloc = BTreeMap::from([
        ("cpu".to_string(), Quantity("2".into())),
        ("memory".to_string(), Quantity("8Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidr.map(str::to_owned),
            pod_cidrs: pod_cidr.map(|c| vec![c.to_owned()]),
            provider_id,
            taints: Some(vec![Taint {
                key: "node.cloudprovider.kubernetes.io/uninitialized".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            allocatable: Some(alloc.clone()),
            capacity: Some(alloc),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(now_time(clock)),
                last_transition_time: Some(now_time(clock)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Creates the node and writes its status (as a kubelet does).
pub async fn register(c: &Cluster, n: &Node) -> anyhow::Result<()> {
    let api = c.client.api::<Node>(None)?;
    let name = n.metadata.name.clone().unwrap();
    let created = api.create(n).await?;
    let mut s = created.clone();
    s.status = n.status.clone();
    api.replace_status(&name, &s).await?;
    Ok(())
}

/// Sets the node's Ready condition (what node lifecycle does after the
/// grace period when the kubelet is gone).
pub async fn set_ready(c: &Cluster, name: &str, status: &str) -> anyhow::Result<()> {
    let cl = c.client.clone();
    let name = name.to_owned();
    let status = status.to_owned();
    eventually("the node's Ready condition written", || {
        let (cl, name, status) = (cl.clone(), name.clone(), status.clone());
        async move {
            let api = cl.api::<Node>(None)?;
            let mut n = api.get(&name).await?;
            for cond in n
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .into_iter()
                .flatten()
            {
                if cond.type_ == "Ready" {
                    cond.status = status.clone();
                    cond.reason = Some("NodeStatusUnknown".into());
                }
            }
            Ok(api.replace_status(&name, &n).await.ok().map(|_| ()))
        }
    })
    .await
}

/// The running cloud-controller-manager binary and its log.
pub struct Ccm {
    _proc: Proc,
    pub log: PathBuf,
}

impl Ccm {
    pub fn start(
        c: &Cluster,
        clock: &Clock,
        name: &str,
        flags: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Ccm> {
        let log = c.dir().join(format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_ackemu-cloud-controller-manager"))
            .arg(format!("--kubeconfig={}", c.kubeconfig().display()))
            .args(flags)
            .args(clock_flags(clock))
            .env_remove("ACKEMU_ACCESS_KEY_ID")
            .env_remove("ACKEMU_ACCESS_KEY_SECRET")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .context("starting ackemu-cloud-controller-manager")?;
        Ok(Ccm {
            _proc: Proc(child),
            log,
        })
    }

    /// The first log line containing every one of `needles`.
    pub fn first(&self, needles: &[&str]) -> Option<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    }

    /// Log lines containing every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

/// Custom routes of the table: destination → next-hop instance.
pub async fn routes(cs: &Cloudsim, table: &str) -> BTreeMap<String, String> {
    let v = cs
        .ok(
            Product::Vpc,
            "DescribeRouteTables",
            &[("RouteTableId", table)],
        )
        .await;
    let mut out = BTreeMap::new();
    for rt in items(&v, "RouteTables", "RouteTable") {
        for e in items(rt, "RouteEntrys", "RouteEntry") {
            if e["Type"] == "Custom" {
                out.insert(
                    e["DestinationCidrBlock"].as_str().unwrap().to_owned(),
                    e["InstanceId"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    out
}

async fn wait_routes(
    cs: &Cloudsim,
    table: &str,
    want: &BTreeMap<String, String>,
    what: &str,
) -> anyhow::Result<()> {
    eventually(what, || async {
        Ok((routes(cs, table).await == *want).then_some(()))
    })
    .await
}

fn ccm_flags(cs: &Cloudsim, net: &Network, extra: &[&str]) -> Vec<String> {
    let mut f = vec![
        format!("--cloud-endpoint={}", cs.grpc),
        format!("--metadata-endpoint={}", cs.metadata),
        format!("--metadata-forwarded-for={}", net.master_ip),
        format!("--vpc-id={}", net.vpc),
        format!("--region={}", net.region),
        "--cluster-cidr=172.16.0.0/16".into(),
        "--configure-cloud-routes=true".into(),
        "--route-reconciliation-period=10s".into(),
        "--leader-elect=true".into(),
    ];
    f.extend(extra.iter().map(|s| s.to_string()));
    f
}

/// Two workers registered as nodes `<region>.<ip>` with podCIDRs.
async fn workers(
    c: &Cluster,
    cs: &Cloudsim,
    net: &Network,
    clock: &Clock,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let (ids, ips) = run_instances(cs, &net.vswitch, &net.sg, 2, None).await;
    let cidrs = ["172.16.0.0/25", "172.16.0.128/25"];
    let mut out = Vec::new();
    for i in 0..2 {
        let name = format!("{}.{}", net.region, ips[i]);
        register(c, &node(&name, &ips[i], Some(cidrs[i]), None, clock)).await?;
        out.push((name, ids[i].clone(), cidrs[i].to_string()));
    }
    Ok(out)
}

async fn wait_initialized(c: &Cluster, name: &str, region: &str, id: &str) -> anyhow::Result<()> {
    let want = format!("{region}.{id}");
    eventually("the cloud node controller to initialize the node", || {
        let (cl, name, want) = (c.client.clone(), name.to_owned(), want.clone());
        async move {
            let n = cl.api::<Node>(None)?.get(&name).await?;
            let spec = n.spec.clone().unwrap_or_default();
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let ok = spec.provider_id.as_deref() == Some(want.as_str())
                && labels
                    .get("node.kubernetes.io/instance-type")
                    .map(String::as_str)
                    == Some("ecs.g6.large")
                && labels
                    .get("topology.kubernetes.io/zone")
                    .map(String::as_str)
                    == Some("cn-hangzhou-b")
                && labels
                    .get("topology.kubernetes.io/region")
                    .map(String::as_str)
                    == Some(region)
                && !spec
                    .taints
                    .unwrap_or_default()
                    .iter()
                    .any(|t| t.key == "node.cloudprovider.kubernetes.io/uninitialized");
            Ok(ok.then_some(()))
        }
    })
    .await
}

fn network_unavailable(n: &Node) -> Option<(String, String)> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "NetworkUnavailable")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn set_policy(cs: &Cloudsim, doc: &str) {
    cs.ok(
        Product::Ram,
        "CreatePolicyVersion",
        &[
            ("PolicyName", "k8sMasterRolePolicy"),
            ("PolicyDocument", doc),
            ("SetAsDefault", "true"),
            (
                "RotateStrategy",
                "DeleteOldestNonDefaultVersionWhenLimitExceeded",
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_nodes_and_stop_while_vpc_is_denied() -> anyhow::Result<()> {
    let clock = cluster_clock();
    let c = Cluster::start(&[]).await?;
    let cs = Cloudsim::start(c.dir(), &clock).await?;
    let net = network(&cs).await;
    let nodes = workers(&c, &cs, &net, &clock).await?;
    let ccm = Ccm::start(&c, &clock, "ccm", &ccm_flags(&cs, &net, &[]), &[])?;
    for (name, id, _) in &nodes {
        wait_initialized(&c, name, &net.region, id).await?;
    }
    let want: BTreeMap<String, String> = nodes
        .iter()
        .map(|(_, id, cidr)| (cidr.clone(), id.clone()))
        .collect();
    wait_routes(&cs, &net.route_table, &want, "a route per podCIDR").await?;
    for (name, _, _) in &nodes {
        let cl = c.client.clone();
        eventually("NetworkUnavailable=False RouteCreated", || {
            let (cl, name) = (cl.clone(), name.clone());
            async move {
                let n = cl.api::<Node>(None)?.get(&name).await?;
                Ok(
                    (network_unavailable(&n) == Some(("False".into(), "RouteCreated".into())))
                        .then_some(()),
                )
            }
        })
        .await?;
    }

    // Deleted out of band: restored.
    let (_, id0, cidr0) = &nodes[0];
    let del = [
        ("RouteTableId", net.route_table.as_str()),
        ("DestinationCidrBlock", cidr0.as_str()),
        ("NextHopId", id0.as_str()),
    ];
    cs.ok(Product::Vpc, "DeleteRouteEntry", &del).await;
    wait_routes(&cs, &net.route_table, &want, "the deleted route restored").await?;

    // vpc:* denied: the route is not restored, and the log says why.
    set_policy(&cs, MASTER_POLICY_DENY_VPC).await;
    cs.ok(Product::Vpc, "DeleteRouteEntry", &del).await;
    let needles = [
        "Couldn't reconcile node routes",
        "cannot find VPC",
        &net.vpc,
        "Forbidden.RAM",
    ];
    let before = ccm.count(&needles);
    eventually("the route controller to fail twice more", || async {
        Ok((ccm.count(&needles) >= before + 2).then_some(()))
    })
    .await?;
    println!("{}", ccm.first(&needles).unwrap_or_default());
    let mut missing = want.clone();
    missing.remove(cidr0);
    assert_eq!(
        routes(&cs, &net.route_table).await,
        missing,
        "with vpc:* denied the route controller must not restore the route"
    );

    // Allowed again: restored with no other action.
    set_policy(&cs, MASTER_POLICY).await;
    wait_routes(
        &cs,
        &net.route_table,
        &want,
        "the route restored after Allow",
    )
    .await?;
    Ok(())
}

fn lb_service(name: &str, local: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2580),
                ),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The SLB of a Service: (id, address, listeners port → (backend port,
/// status), backends).
async fn slb_of(
    cs: &Cloudsim,
    svc: &Service,
) -> Option<(
    String,
    String,
    BTreeMap<u64, (u64, String)>,
    BTreeSet<String>,
)> {
    let name = format!("a{}", svc.metadata.uid.clone()?.replace('-', ""));
    let name: String = name.chars().take(32).collect();
    let v = cs
        .root
        .call_with(
            Product::Slb,
            "DescribeLoadBalancers",
            &[("LoadBalancerName", &name)],
        )
        .await
        .ok()?;
    let id = items(&v, "LoadBalancers", "LoadBalancer").first()?["LoadBalancerId"]
        .as_str()?
        .to_owned();
    let a = cs
        .root
        .call_with(
            Product::Slb,
            "DescribeLoadBalancerAttribute",
            &[("LoadBalancerId", &id)],
        )
        .await
        .ok()?;
    let listeners = items(&a, "ListenerPortsAndProtocol", "ListenerPortAndProtocol")
        .iter()
        .map(|l| {
            (
                l["ListenerPort"].as_u64().unwrap(),
                (
                    l["BackendServerPort"].as_u64().unwrap(),
                    l["Status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let backends = items(&a, "BackendServers", "BackendServer")
        .iter()
        .map(|b| b["ServerId"].as_str().unwrap().to_owned())
        .collect();
    Some((id, a["Address"].as_str()?.to_owned(), listeners, backends))
}

async fn events_for(c: &Cluster, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let v = c
        .client
        .request("GET", "/api/v1/namespaces/default/events", None)
        .await?;
    Ok(v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_and_released_instances() -> anyhow::Result<()> {
    let clock = cluster_clock();
    let c = Cluster::start(&[]).await?;
    let cs = Cloudsim::start(c.dir(), &clock).await?;
    let net = network(&cs).await;
    let nodes = workers(&c, &cs, &net, &clock).await?;
    let _ccm = Ccm::start(
        &c,
        &clock,
        "ccm",
        &ccm_flags(&cs, &net, &["--node-monitor-period=5s"]),
        &[],
    )?;
    for (name, id, _) in &nodes {
        wait_initialized(&c, name, &net.region, id).await?;
    }
    let svcs = c.client.api::<Service>(Some("default"))?;
    let svc = svcs.create(&lb_service("web", false)).await?;
    let node_port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .context("a nodePort allocated")? as u64;
    let all: BTreeSet<String> = nodes.iter().map(|(_, id, _)| id.clone()).collect();
    let (lb_id, addr) = eventually("an SLB with every node as backend", || {
        let (cs, svc, all) = (&cs, svc.clone(), all.clone());
        async move {
            Ok(slb_of(cs, &svc).await.and_then(|(id, addr, l, b)| {
                (l == BTreeMap::from([(80, (node_port, "running".to_string()))]) && b == all)
                    .then_some((id, addr))
            }))
        }
    })
    .await?;
    eventually("status.loadBalancer.ingress and the finalizer", || {
        let (svcs, addr) = (&svcs, addr.clone());
        async move {
            let s = svcs.get("web").await?;
            let ip = s
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone());
            let fin = s
                .metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"service.kubernetes.io/load-balancer-cleanup".to_string());
            Ok((ip.as_deref() == Some(addr.as_str()) && fin).then_some(()))
        }
    })
    .await?;
    eventually(
        "EnsuringLoadBalancer and EnsuredLoadBalancer events",
        || async {
            let ev = events_for(&c, "web").await?;
            let has = |r: &str| ev.iter().any(|(x, _)| x == r);
            Ok((has("EnsuringLoadBalancer") && has("EnsuredLoadBalancer")).then_some(()))
        },
    )
    .await?;

    // externalTrafficPolicy: Local → only nodes with a ready endpoint.
    let patch = json!({"spec": {"externalTrafficPolicy": "Local"}});
    svcs.patch("web", ackemu_kube::client::PatchType::Merge, &patch)
        .await?;
    let slices = c.client.api::<EndpointSlice>(Some("default"))?;
    slices
        .create(&EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc12".into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/service-name".to_string(),
                    "web".to_string(),
                )])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint {
                addresses: vec!["172.16.0.2".into()],
                node_name: Some(nodes[0].0.clone()),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ports: None,
        })
        .await?;
    let only0 = BTreeSet::from([nodes[0].1.clone()]);
    eventually("backends = the node with the endpoint", || {
        let (cs, svc, only0) = (&cs, svc.clone(), only0.clone());
        async move {
            Ok(slb_of(cs, &svc)
                .await
                .and_then(|(_, _, _, b)| (b == only0).then_some(())))
        }
    })
    .await?;

    // S12: the second worker's ECS is released behind the cluster's back.
    let (name1, id1, cidr1) = nodes[1].clone();
    let want_before: BTreeMap<String, String> = nodes
        .iter()
        .map(|(_, id, cidr)| (cidr.clone(), id.clone()))
        .collect();
    wait_routes(&cs, &net.route_table, &want_before, "routes for both nodes").await?;
    cs.ok(
        Product::Ecs,
        "DeleteInstance",
        &[("InstanceId", &id1), ("Force", "true")],
    )
    .await;
    set_ready(&c, &name1, "Unknown").await?;
    eventually("the Node of the released instance deleted", || {
        let (cl, name1) = (c.client.clone(), name1.clone());
        async move {
            match cl.api::<Node>(None)?.get(&name1).await {
                Err(e) if e.is_not_found() => Ok(Some(())),
                _ => Ok(None),
            }
        }
    })
    .await?;
    let mut want_after = want_before.clone();
    want_after.remove(&cidr1);
    wait_routes(&cs, &net.route_table, &want_after, "its route removed").await?;

    // Deleted: the SLB goes, then the finalizer.
    svcs.delete("web", None).await?;
    eventually("the Service gone", || {
        let svcs = &svcs;
        async move {
            match svcs.get("web").await {
                Err(e) if e.is_not_found() => Ok(Some(())),
                _ => Ok(None),
            }
        }
    })
    .await?;
    let left = cs
        .ok(
            Product::Slb,
            "DescribeLoadBalancers",
            &[("LoadBalancerId", &lb_id)],
        )
        .await;
    assert!(
        items(&left, "LoadBalancers", "LoadBalancer").is_empty(),
        "the SLB must be deleted with the Service: {left}"
    );
    Ok(())
}

/// S06: the metadata service is unreachable, so there is no STS token;
/// the Service stays pending with an event naming the token error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_service_is_a_token_error_event() -> anyhow::Result<()> {
    let clock = cluster_clock();
    let c = Cluster::start(&[]).await?;
    // Nothing listens on this port: the metadata service is cut off.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let _ccm = Ccm::start(
        &c,
        &clock,
        "ccm",
        &[
            format!("--cloud-endpoint=http://127.0.0.1:{}", free_port()),
            format!("--metadata-endpoint={dead}"),
            "--ram-role-name=KubernetesMasterRole".into(),
            "--controllers=service".into(),
            "--leader-elect=false".into(),
        ],
        &[],
    )?;
    let svcs = c.client.api::<Service>(Some("default"))?;
    svcs.create(&lb_service("web", false)).await?;
    let msg = eventually("a SyncLoadBalancerFailed event", || async {
        let ev = events_for(&c, "web").await?;
        Ok(ev
            .into_iter()
            .find(|(r, _)| r == "SyncLoadBalancerFailed")
            .map(|(_, m)| m))
    })
    .await?;
    assert!(
        msg.starts_with("Error syncing load balancer: failed to ensure load balancer: refresh Ecs sts token err: "),
        "{msg}"
    );
    assert!(msg.contains("KubernetesMasterRole"), "{msg}");
    let s = svcs.get("web").await?;
    assert!(
        s.status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none_or(|i| i.is_empty()),
        "the Service must stay <pending>"
    );
    Ok(())
}
