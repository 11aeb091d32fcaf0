//! What ACK does in the cloud when a cluster is created, done through the
//! fake cloud's public API with the account's AccessKey, as an operator
//! (or ACK's provisioning service) would: the VPC and VSwitch, the cluster
//! security group with ACK's default rules, the master and worker RAM roles
//! with their policies, the master ECS instance, and the ESS scaling group
//! whose instances join as workers through their UserData.

use std::path::Path;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_cloudsim::cli::{Client, ProfileFile};
use ackemu_cloudsim::cloud::Product;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The region and zone ackemu clusters live in.
pub const REGION: &str = "cn-hangzhou";
pub const ZONE: &str = "cn-hangzhou-b";
/// The VPC and VSwitch ranges of the seed articles.
pub const VPC_CIDR: &str = "192.168.0.0/16";
pub const VSWITCH_CIDR: &str = "192.168.0.0/24";
/// The pod network, split into node podCIDRs by the controller manager.
pub const CLUSTER_CIDR: &str = "172.16.0.0/16";
/// The Service network; cluster DNS is 172.19.0.10.
pub const SERVICE_CIDR: &str = "172.19.0.0/20";
/// The master's fixed ENI address.
pub const MASTER_IP: &str = "192.168.0.10";
/// Instance type of masters and workers (2 vCPU, 8 GiB).
pub const INSTANCE_TYPE: &str = "ecs.g6.large";

const TRUST_ECS: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}"#;

/// What the cloud side of a cluster is made of.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct CloudIds {
    pub vpc: String,
    pub route_table: String,
    pub vswitch: String,
    pub security_group: String,
    pub master_role: String,
    pub worker_role: String,
    pub master_instance: String,
    pub master_ip: String,
    #[serde(default)]
    pub scaling_group: Option<String>,
}

/// A client with the account's root AccessKey (the profile cloudsim wrote).
pub fn admin_client(profile_file: &Path, clock: &Clock) -> anyhow::Result<(Client, String)> {
    let text = std::fs::read_to_string(profile_file)
        .with_context(|| format!("reading {}", profile_file.display()))?;
    let file: ProfileFile = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", profile_file.display()))?;
    let p = file
        .profiles
        .iter()
        .find(|p| p.name == file.current)
        .with_context(|| format!("{}: no current profile", profile_file.display()))?;
    let creds = ackemu_cloudsim::auth::Credentials {
        access_key_id: p.access_key_id.clone(),
        access_key_secret: p.access_key_secret.clone(),
        security_token: p.sts_token.clone(),
    };
    Ok((
        Client::new(&p.endpoint, creds, clock.clone())?,
        p.endpoint.clone(),
    ))
}

async fn call(
    c: &Client,
    p: Product,
    action: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<Value> {
    c.call_with(p, action, params)
        .await
        .map_err(|e| anyhow::anyhow!("cloud {action}: {e}"))
}

fn s(v: &Value, path: &[&str]) -> anyhow::Result<String> {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_str()
        .map(str::to_owned)
        .with_context(|| format!("cloud answer without {}: {v}", path.join(".")))
}

/// The policy ACK attaches to the master role: what the cloud controller
/// manager and the autoscaler call.
fn master_policy() -> String {
    serde_json::json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["ecs:*", "vpc:*", "slb:*", "ess:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["cr:Get*", "cr:List*", "cr:PullRepository"], "Resource": ["*"]},
    ]})
    .to_string()
}

/// The policy ACK attaches to the worker role (S03 edits its `vpc:*`).
fn worker_policy() -> String {
    serde_json::json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["ecs:Describe*", "ecs:AttachDisk", "ecs:DetachDisk"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["vpc:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["slb:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["ess:Describe*"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["cr:Get*", "cr:List*", "cr:PullRepository"], "Resource": ["*"]},
    ]})
    .to_string()
}

/// Creates the cluster's network, roles and master instance. `suffix`
/// makes the RAM names unique per cluster.
pub async fn network_and_master(
    c: &Client,
    suffix: &str,
    master_user_data: &str,
) -> anyhow::Result<CloudIds> {
    let v = call(
        c,
        Product::Vpc,
        "CreateVpc",
        &[
            ("RegionId", REGION),
            ("CidrBlock", VPC_CIDR),
            ("VpcName", &format!("ack-vpc-{suffix}")),
        ],
    )
    .await?;
    let vpc = s(&v, &["VpcId"])?;
    let route_table = s(&v, &["RouteTableId"])?;
    let w = call(
        c,
        Product::Vpc,
        "CreateVSwitch",
        &[
            ("VpcId", &vpc),
            ("ZoneId", ZONE),
            ("CidrBlock", VSWITCH_CIDR),
            ("VSwitchName", &format!("ack-vsw-{suffix}")),
        ],
    )
    .await?;
    let vswitch = s(&w, &["VSwitchId"])?;
    let g = call(
        c,
        Product::Ecs,
        "CreateSecurityGroup",
        &[
            ("RegionId", REGION),
            ("VpcId", &vpc),
            ("SecurityGroupName", &format!("k8s-sg-{suffix}")),
            ("Description", "ACK cluster security group"),
        ],
    )
    .await?;
    let sg = s(&g, &["SecurityGroupId"])?;
    // ACK's default rules: everything from the pod CIDR, ICMP from
    // anywhere, all egress; members reach each other by inner access.
    for (action, params) in [
        (
            "AuthorizeSecurityGroup",
            vec![
                ("IpProtocol", "all"),
                ("PortRange", "-1/-1"),
                ("SourceCidrIp", CLUSTER_CIDR),
                ("Priority", "1"),
                ("Description", "ACK default: pod CIDR"),
            ],
        ),
        (
            "AuthorizeSecurityGroup",
            vec![
                ("IpProtocol", "icmp"),
                ("PortRange", "-1/-1"),
                ("SourceCidrIp", "0.0.0.0/0"),
                ("Priority", "100"),
                ("Description", "ACK default: icmp"),
            ],
        ),
        (
            "AuthorizeSecurityGroupEgress",
            vec![
                ("IpProtocol", "all"),
                ("PortRange", "-1/-1"),
                ("DestCidrIp", "0.0.0.0/0"),
                ("Priority", "100"),
                ("Description", "ACK default: egress"),
            ],
        ),
    ] {
        let mut p = vec![("SecurityGroupId", sg.as_str())];
        p.extend(params);
        call(c, Product::Ecs, action, &p).await?;
    }

    let master_role = format!("KubernetesMasterRole-{suffix}");
    let worker_role = format!("KubernetesWorkerRole-{suffix}");
    for (role, policy, doc) in [
        (
            &master_role,
            format!("k8sMasterRolePolicy-{suffix}"),
            master_policy(),
        ),
        (
            &worker_role,
            format!("k8sWorkerRolePolicy-{suffix}"),
            worker_policy(),
        ),
    ] {
        call(
            c,
            Product::Ram,
            "CreateRole",
            &[("RoleName", role), ("AssumeRolePolicyDocument", TRUST_ECS)],
        )
        .await?;
        call(
            c,
            Product::Ram,
            "CreatePolicy",
            &[("PolicyName", &policy), ("PolicyDocument", &doc)],
        )
        .await?;
        call(
            c,
            Product::Ram,
            "AttachPolicyToRole",
            &[
                ("PolicyType", "Custom"),
                ("PolicyName", &policy),
                ("RoleName", role),
            ],
        )
        .await?;
    }

    use base64::Engine as _;
    let ud = base64::engine::general_purpose::STANDARD.encode(master_user_data);
    let r = call(
        c,
        Product::Ecs,
        "RunInstances",
        &[
            ("RegionId", REGION),
            ("InstanceType", INSTANCE_TYPE),
            ("VSwitchId", &vswitch),
            ("SecurityGroupId", &sg),
            ("PrivateIpAddress", MASTER_IP),
            ("InstanceName", &format!("master-{suffix}")),
            ("HostName", "master-0"),
            ("RamRoleName", &master_role),
            ("UserData", &ud),
        ],
    )
    .await?;
    let master_instance = r["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .with_context(|| format!("RunInstances answered without an instance id: {r}"))?
        .to_owned();
    Ok(CloudIds {
        vpc,
        route_table,
        vswitch,
        security_group: sg,
        master_role,
        worker_role,
        master_instance,
        master_ip: MASTER_IP.into(),
        scaling_group: None,
    })
}

/// The status of instance `id` (`None` if it does not exist).
pub async fn instance_status(c: &Client, id: &str) -> anyhow::Result<Option<String>> {
    let v = call(
        c,
        Product::Ecs,
        "DescribeInstances",
        &[("InstanceIds", &format!("[\"{id}\"]"))],
    )
    .await?;
    Ok(v["Instances"]["Instance"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["InstanceId"] == id)
        .and_then(|i| i["Status"].as_str().map(str::to_owned)))
}

/// Waits (bounded, real time) until instance `id` is Running.
pub async fn wait_running(c: &Client, id: &str, limit: Duration) -> anyhow::Result<()> {
    let clock = Clock::real();
    let deadline = clock.now() + limit;
    loop {
        let st = instance_status(c, id).await?;
        match st.as_deref() {
            Some("Running") => return Ok(()),
            None => anyhow::bail!("instance {id} does not exist"),
            _ if clock.now() > deadline => {
                anyhow::bail!("instance {id} not Running after {limit:?} (status {st:?})")
            }
            _ => clock.sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The workers' scaling group: `desired` instances of the worker
/// configuration, each running `user_data` (the attach script).
pub async fn worker_group(
    c: &Client,
    ids: &CloudIds,
    suffix: &str,
    desired: u32,
    max: u32,
    user_data: &str,
) -> anyhow::Result<String> {
    let (desired, max) = (desired.to_string(), max.max(desired).to_string());
    let g = call(
        c,
        Product::Ess,
        "CreateScalingGroup",
        &[
            ("RegionId", REGION),
            ("ScalingGroupName", &format!("ack-workers-{suffix}")),
            ("MinSize", "0"),
            ("MaxSize", &max),
            ("DesiredCapacity", &desired),
            ("VSwitchId", &ids.vswitch),
        ],
    )
    .await?;
    let group = s(&g, &["ScalingGroupId"])?;
    use base64::Engine as _;
    let ud = base64::engine::general_purpose::STANDARD.encode(user_data);
    let conf = call(
        c,
        Product::Ess,
        "CreateScalingConfiguration",
        &[
            ("ScalingGroupId", &group),
            ("ScalingConfigurationName", &format!("ack-worker-{suffix}")),
            ("InstanceType", INSTANCE_TYPE),
            ("SecurityGroupId", &ids.security_group),
            ("RamRoleName", &ids.worker_role),
            ("UserData", &ud),
        ],
    )
    .await?;
    let conf = s(&conf, &["ScalingConfigurationId"])?;
    call(
        c,
        Product::Ess,
        "EnableScalingGroup",
        &[
            ("ScalingGroupId", &group),
            ("ActiveScalingConfigurationId", &conf),
        ],
    )
    .await?;
    Ok(group)
}
