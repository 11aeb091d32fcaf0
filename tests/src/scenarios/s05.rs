//! S05 sg-node-moved-out: a worker's ECS instance is moved from the
//! cluster security group into another one. The API server (on the master,
//! in the cluster group) can no longer reach the kubelet's port 10250:
//! `kubectl logs` fails with a dial timeout to `<node-ip>:10250` while the
//! pod itself keeps running. Putting the node back heals it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::util::json_of as json;
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S05";
pub const TITLE: &str = "sg-node-moved-out";

const POD: &str = "s05-web";

/// The instance id in a node's providerID (`<region>.<id>`).
fn instance_of(node: &Value) -> Option<String> {
    node["spec"]["providerID"]
        .as_str()
        .and_then(|p| p.rsplit('.').next())
        .map(str::to_owned)
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let (node, ip, instance) = r
        .eventually(
            "a Ready worker with its instance",
            Duration::from_secs(600),
            || async move {
                let nodes = json(c, &["get", "nodes"]).await?;
                for n in nodes["items"].as_array().into_iter().flatten() {
                    let ready = n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let ip = n["status"]["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["type"] == "InternalIP")
                        .and_then(|a| a["address"].as_str());
                    if let (true, Some(ip), Some(id)) = (ready, ip, instance_of(n)) {
                        let name = n["metadata"]["name"].as_str().unwrap_or("").to_owned();
                        let detail = format!("{name} at {ip} ({id})");
                        return Ok(Some(((name, ip.to_owned(), id), detail)));
                    }
                }
                Ok(None)
            },
        )
        .await?;
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": "default"},
        // Tolerating an unreachable node forever: the pod must outlive the
        // node's NotReady spell (its kubelet cannot reach the API server
        // either while it is out of the group) to show it keeps running.
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}],
                 "tolerations": [
                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                     {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]}});
    let file = std::env::temp_dir().join(format!("ackemu-s05-{}.json", std::process::id()));
    std::fs::write(&file, pod.to_string())?;
    let created = c
        .kubectl(&["create", "-f", &file.display().to_string()])
        .await;
    let _ = std::fs::remove_file(&file);
    created?.ok("creating the pod")?;
    r.eventually(
        "kubectl logs works",
        Duration::from_secs(600),
        || async move {
            let out = c.kubectl(&["logs", POD]).await?;
            Ok((out.ok && out.stdout.contains("2580")).then(|| ((), out.stdout.trim().to_owned())))
        },
    )
    .await?;

    r.phase(Phase::Inject);
    let cluster_sg = c
        .cloud_id("security_group")
        .context("the cluster security group")?;
    let vpc = c.cloud_id("vpc").context("the VPC")?;
    let other = c
        .cloud(
            "ecs",
            "CreateSecurityGroup",
            &[("VpcId", &vpc), ("SecurityGroupName", "s05-other")],
        )
        .await?
        .ok("CreateSecurityGroup")?;
    let other: Value = serde_json::from_str(&other)?;
    let other = other["SecurityGroupId"]
        .as_str()
        .context("CreateSecurityGroup answered without an id")?
        .to_owned();
    for (action, sg) in [
        ("JoinSecurityGroup", &other),
        ("LeaveSecurityGroup", &cluster_sg),
    ] {
        c.cloud(
            "ecs",
            action,
            &[("InstanceId", &instance), ("SecurityGroupId", sg)],
        )
        .await?
        .ok(action)?;
    }
    r.step(
        "node moved out of the cluster security group",
        format!("{instance}: {cluster_sg} → {other}"),
    );

    r.phase(Phase::Observe);
    let want = format!("dial tcp {ip}:10250: i/o timeout");
    r.eventually(
        "kubectl logs fails with a dial timeout to the kubelet",
        Duration::from_secs(3600),
        || {
            let want = want.clone();
            async move {
                let out = c.kubectl(&["logs", POD]).await?;
                if !out.ok && out.text().contains(&want) {
                    return Ok(Some(((), out.text().trim().to_owned())));
                }
                anyhow::bail!("kubectl logs answered: {}", out.text().trim())
            }
        },
    )
    .await?;
    let p = json(c, &["get", "pod", POD]).await?;
    if p["status"]["phase"] != "Running" {
        anyhow::bail!("the pod stopped running: {}", p["status"]);
    }
    r.step(
        "the pod itself keeps running",
        format!("{POD} Running on {node}"),
    );

    r.phase(Phase::Heal);
    for (action, sg) in [
        ("JoinSecurityGroup", &cluster_sg),
        ("LeaveSecurityGroup", &other),
    ] {
        c.cloud(
            "ecs",
            action,
            &[("InstanceId", &instance), ("SecurityGroupId", sg)],
        )
        .await?
        .ok(action)?;
    }
    r.step(
        "node back in the cluster security group",
        cluster_sg.clone(),
    );

    r.phase(Phase::Recover);
    r.eventually(
        "kubectl logs works again",
        Duration::from_secs(600),
        || async move {
            let out = c.kubectl(&["logs", POD]).await?;
            Ok((out.ok && out.stdout.contains("2580")).then(|| ((), "logs served".to_owned())))
        },
    )
    .await?;
    Ok(())
}
