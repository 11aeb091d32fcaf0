//! S06 sg-egress-blocks-cloud (阿里云ACK产品安全组配置管理): an egress
//! rule of the cluster security group drops traffic to 100.64.0.0/10, the
//! range of the cloud's services inside the VPC — the metadata server and
//! its STS credentials, the cloud API endpoint, the container registry.
//! The cloud controller manager on the master can no longer reach the
//! cloud, so a `LoadBalancer` Service stays `<pending>` with a
//! SyncLoadBalancerFailed event naming the unreachable endpoint (`refresh
//! Ecs sts token err: Get "http://100.100.100.200/…": context deadline
//! exceeded` once its STS credentials need refreshing); a pod
//! whose image the node does not have fails `ErrImagePull` with the dial
//! timeout to the registry. Allowing the range again heals both.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::util::{REGISTRY, create, event_messages, items, json_of, registry_app, workers_ready};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S06";
pub const TITLE: &str = "sg-egress-blocks-cloud";

/// Workers the cluster starts with.
pub const NODES: usize = 1;
const CLOUD_RANGE: &str = "100.64.0.0/10";
const NAMESPACE: &str = "s06-public";
const APP: &str = "s06-web";

fn rule(sg: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SecurityGroupId", sg.to_owned()),
        ("IpProtocol", "all".into()),
        ("PortRange", "-1/-1".into()),
        ("DestCidrIp", CLOUD_RANGE.into()),
        ("Policy", "drop".into()),
        ("Priority", "1".into()),
    ]
}

fn refs<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The app pod's first container: (name, waiting reason, message, running).
async fn app_pod(c: &impl Cluster) -> anyhow::Result<Option<(String, String, String, bool)>> {
    let v = json_of(c, &["get", "pods", "-l", &format!("app={APP}")]).await?;
    Ok(items(&v)
        .find(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let st = &p["status"]["containerStatuses"][0]["state"];
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                text(&p["metadata"]["name"]),
                text(&st["waiting"]["reason"]),
                text(&st["waiting"]["message"]),
                st["running"].is_object(),
            )
        }))
}

/// The Service's ingress address, if it has one.
async fn ingress(c: &impl Cluster) -> anyhow::Result<Option<String>> {
    let s = json_of(c, &["get", "service", APP]).await?;
    Ok(s["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_owned))
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let sg = c
        .cloud_id("security_group")
        .context("the cluster security group")?;
    workers_ready(c, r, NODES).await?;
    let image = registry_app(c, NAMESPACE, "PUBLIC").await?;
    r.step(
        "an image in a public repository of the registry",
        image.clone(),
    );

    r.phase(Phase::Inject);
    let deny = rule(&sg);
    let mut add = refs(&deny);
    add.push(("Description", "deny cloud services"));
    c.cloud("ecs", "AuthorizeSecurityGroupEgress", &add)
        .await?
        .ok("AuthorizeSecurityGroupEgress")?;
    r.step(
        "egress to the cloud service range is denied",
        format!("{sg}: egress drop {CLOUD_RANGE}, priority 1"),
    );

    r.phase(Phase::Observe);
    create(
        c,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": APP, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": APP}},
                "template": {"metadata": {"labels": {"app": APP}},
                    "spec": {"containers": [{"name": "app", "image": image,
                        "ports": [{"containerPort": 2580}]}]}}}}),
    )
    .await?;
    r.step(
        "a Deployment of that image",
        format!("deployment {APP}: image {}", image),
    );
    let timeout = format!("dial tcp {REGISTRY}:80: i/o timeout");
    r.eventually(
        "the pod fails ErrImagePull: the registry does not answer",
        Duration::from_secs(900),
        || {
            let timeout = timeout.clone();
            async move {
                // ErrImagePull lasts until the next sync: the kubelet's
                // Failed event keeps the error.
                let Some(p) = app_pod(c)
                    .await?
                    .filter(|p| p.1 == "ErrImagePull" || p.1 == "ImagePullBackOff")
                else {
                    return Ok(None);
                };
                let failed = event_messages(c, &p.0, "Failed").await?;
                Ok(failed
                    .into_iter()
                    .find(|m| m.starts_with("Failed to pull image") && m.contains(&timeout))
                    .map(|m| ((), format!("{} {}: {m}", p.0, p.1))))
            }
        },
    )
    .await?;
    // Connections open before the rule keep working (security groups are
    // stateful); the next STS refresh from the metadata server does not.
    r.eventually(
        "the cloud controller manager cannot refresh its STS token",
        Duration::from_secs(2 * 3600),
        || async move {
            let log = c.logs("cloud-controller-manager").await?;
            Ok(log
                .lines()
                .rev()
                .find(|l| l.contains("refresh Ecs sts token err") && l.contains("100.100.100.200"))
                .map(|l| ((), l.trim().to_owned())))
        },
    )
    .await?;
    create(
        c,
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": APP, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "selector": {"app": APP},
                     "ports": [{"port": 80, "targetPort": 2580, "protocol": "TCP"}]}}),
    )
    .await?;
    r.step(
        "a LoadBalancer Service for it",
        format!("service {APP} (type LoadBalancer)"),
    );
    r.eventually(
        "the Service stays <pending>: SyncLoadBalancerFailed names the token error",
        Duration::from_secs(1800),
        || async move {
            let v = json_of(
                c,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    &format!("involvedObject.name={APP},reason=SyncLoadBalancerFailed"),
                ],
            )
            .await?;
            let msg = items(&v)
                .filter(|e| e["involvedObject"]["kind"] == "Service")
                .filter_map(|e| e["message"].as_str())
                .find(|m| m.contains("refresh Ecs sts token err"))
                .map(str::to_owned);
            let pending = ingress(c).await?.is_none();
            Ok(msg.filter(|_| pending).map(|m| ((), m)))
        },
    )
    .await?;

    r.phase(Phase::Heal);
    c.cloud("ecs", "RevokeSecurityGroupEgress", &refs(&deny))
        .await?
        .ok("RevokeSecurityGroupEgress")?;
    r.step(
        "the range is allowed again",
        format!("{sg}: the egress drop of {CLOUD_RANGE} is revoked"),
    );

    r.phase(Phase::Recover);
    r.eventually(
        "the Service gets its load balancer",
        Duration::from_secs(1800),
        || async move {
            Ok(ingress(c)
                .await?
                .map(|ip| ((), format!("EXTERNAL-IP {ip}"))))
        },
    )
    .await?;
    r.eventually(
        "the pod pulls its image and runs",
        Duration::from_secs(1800),
        || async move {
            Ok(app_pod(c)
                .await?
                .filter(|p| p.3)
                .map(|p| ((), format!("{} Running", p.0))))
        },
    )
    .await?;
    Ok(())
}
