//! S12 node-released-out-of-band: a worker's ECS instance is released in
//! the console behind the cluster's back. Its heartbeats stop, the node
//! goes NotReady, the cloud node controller deletes the Node once the
//! instance is gone, the route controller removes its route, and the
//! Deployment's pods run elsewhere again. Nothing needs healing.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::util::json_of as json;
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S12";
pub const TITLE: &str = "node-released-out-of-band";

fn ready(obj: &Value) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Running, Ready web pods: (name, node).
async fn web_pods(c: &impl Cluster) -> anyhow::Result<Vec<(String, String)>> {
    let pods = json(c, &["get", "pods", "-l", "app=s12-web"]).await?;
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p))
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

async fn route_cidrs(c: &impl Cluster, table: &str) -> anyhow::Result<Vec<String>> {
    let out = c
        .cloud("vpc", "DescribeRouteEntryList", &[("RouteTableId", table)])
        .await?
        .ok("DescribeRouteEntryList")?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v["RouteEntrys"]["RouteEntry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["DestinationCidrBlock"].as_str().map(str::to_owned))
        .collect())
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    c.kubectl(&[
        "create",
        "deployment",
        "s12-web",
        "--image=app",
        "--replicas=2",
    ])
    .await?
    .ok("creating deployment s12-web")?;
    let table = c.cloud_id("route_table").context("the route table")?;
    let (victim, cidr, instance) = r
        .eventually(
            "the web pods run and their node has a route",
            Duration::from_secs(900),
            || {
                let table = table.clone();
                async move {
                    let pods = web_pods(c).await?;
                    if pods.len() < 2 {
                        return Ok(None);
                    }
                    let node = json(c, &["get", "node", &pods[0].1]).await?;
                    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or("").to_owned();
                    let id = node["spec"]["providerID"]
                        .as_str()
                        .and_then(|p| p.rsplit('.').next())
                        .unwrap_or("")
                        .to_owned();
                    let routed = route_cidrs(c, &table).await?.contains(&cidr);
                    Ok((routed && !id.is_empty()).then(|| {
                        let detail =
                            format!("{} runs on {} ({id}, route {cidr})", pods[0].0, pods[0].1);
                        ((pods[0].1.clone(), cidr, id), detail)
                    }))
                }
            },
        )
        .await?;

    r.phase(Phase::Inject);
    c.cloud(
        "ecs",
        "DeleteInstance",
        &[("InstanceId", &instance), ("Force", "true")],
    )
    .await?
    .ok("DeleteInstance")?;
    r.step("instance released in the console", instance.clone());

    r.phase(Phase::Observe);
    r.eventually("the Node is deleted", Duration::from_secs(1800), || {
        let victim = victim.clone();
        async move {
            let out = c.kubectl(&["get", "node", &victim]).await?;
            Ok((!out.ok && out.text().contains("NotFound"))
                .then(|| ((), format!("node {victim} is gone"))))
        }
    })
    .await?;
    r.eventually("its route is removed", Duration::from_secs(600), || {
        let (table, cidr) = (table.clone(), cidr.clone());
        async move {
            Ok((!route_cidrs(c, &table).await?.contains(&cidr))
                .then(|| ((), format!("{cidr} no longer in {table}"))))
        }
    })
    .await?;
    r.eventually("the pods run elsewhere", Duration::from_secs(1800), || {
        let victim = victim.clone();
        async move {
            let pods = web_pods(c).await?;
            Ok(
                (pods.len() == 2 && pods.iter().all(|(_, n)| *n != victim)).then(|| {
                    let detail = pods
                        .iter()
                        .map(|(p, n)| format!("{p} on {n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    ((), detail)
                }),
            )
        }
    })
    .await?;
    Ok(())
}
