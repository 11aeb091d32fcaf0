//! S04 sg-pod-cidr-rule-removed: the cluster security group's default
//! ingress rule for the pod CIDR is revoked. Cross-node pod traffic dies in
//! the VPC: DNS queries from a pod to CoreDNS on another node time out while
//! `ping` of the same address works (ICMP is allowed from anywhere), and the
//! fabric's drop log says "SecurityGroup". Re-adding the rule heals it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::util::json_of as json;
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S04";
pub const TITLE: &str = "sg-pod-cidr-rule-removed";

const POD_CIDR: &str = "172.16.0.0/16";
const CLIENT: &str = "s04-client";

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `nslookup` from the client pod against `server`: its output, and
/// whether it resolved.
async fn lookup(c: &impl Cluster, server: &str) -> anyhow::Result<(bool, String)> {
    let out = c
        .kubectl(&[
            "exec",
            CLIENT,
            "--",
            "nslookup",
            "-timeout=2",
            "-retry=1",
            "kubernetes.default.svc.cluster.local",
            server,
        ])
        .await?;
    let text = out.text();
    Ok((out.ok && text.contains("172.19.0.1"), text))
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    // A CoreDNS pod, and a node it does not run on.
    let (dns_ip, dns_node, client_node) = r
        .eventually(
            "a Ready CoreDNS pod and another node",
            Duration::from_secs(600),
            || async move {
                let pods = json(
                    c,
                    &["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"],
                )
                .await?;
                let nodes = json(c, &["get", "nodes"]).await?;
                let names: Vec<String> = nodes["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
                    .collect();
                for p in pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| ready(p))
                {
                    let (ip, node) = (
                        p["status"]["podIP"].as_str().unwrap_or(""),
                        p["spec"]["nodeName"].as_str().unwrap_or(""),
                    );
                    if let Some(other) = names.iter().find(|n| *n != node) {
                        let found = (ip.to_owned(), node.to_owned(), other.clone());
                        let detail = format!("coredns {ip} on {node}; client on {other}");
                        return Ok(Some((found, detail)));
                    }
                }
                Ok(None)
            },
        )
        .await?;
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": CLIENT, "namespace": "default"},
        "spec": {"nodeName": client_node, "containers": [{"name": "app", "image": "app"}]}});
    let file = std::env::temp_dir().join(format!("ackemu-s04-{}.json", std::process::id()));
    std::fs::write(&file, pod.to_string())?;
    let created = c
        .kubectl(&["create", "-f", &file.display().to_string()])
        .await;
    let _ = std::fs::remove_file(&file);
    created?.ok("creating the client pod")?;
    r.eventually("the client pod runs", Duration::from_secs(600), || {
        let on = client_node.clone();
        async move {
            let p = json(c, &["get", "pod", CLIENT]).await?;
            Ok(ready(&p).then(|| ((), format!("{CLIENT} on {on}"))))
        }
    })
    .await?;
    let ip = dns_ip.clone();
    r.eventually(
        "cross-node DNS works before the change",
        Duration::from_secs(120),
        || {
            let ip = ip.clone();
            let node = dns_node.clone();
            async move {
                let (ok, _) = lookup(c, &ip).await?;
                Ok(ok.then(|| ((), format!("nslookup via {ip} on {node} resolves"))))
            }
        },
    )
    .await?;

    r.phase(Phase::Inject);
    let sg = c
        .cloud_id("security_group")
        .context("the cluster security group")?;
    c.cloud(
        "ecs",
        "RevokeSecurityGroup",
        &[
            ("SecurityGroupId", &sg),
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", POD_CIDR),
            ("Priority", "1"),
        ],
    )
    .await?
    .ok("RevokeSecurityGroup")?;
    r.step(
        "pod CIDR rule revoked",
        format!("{sg}: ingress all from {POD_CIDR}"),
    );

    r.phase(Phase::Observe);
    let ip = dns_ip.clone();
    r.eventually(
        "nslookup to CoreDNS on the other node times out (no servers could be reached)",
        Duration::from_secs(3600),
        || {
            let ip = ip.clone();
            async move {
                let (ok, text) = lookup(c, &ip).await?;
                // BIND's nslookup: "communications error to …#53: timed
                // out" then "no servers could be reached".
                if !ok && text.contains("timed out") && text.contains("no servers could be reached")
                {
                    let line = text.lines().find(|l| l.contains("timed out"));
                    return Ok(Some(((), line.unwrap_or("").to_owned())));
                }
                // Kept as the last answer for the report.
                anyhow::bail!("nslookup answered: {}", text.trim())
            }
        },
    )
    .await?;
    let out = c
        .kubectl(&["exec", CLIENT, "--", "ping", "-c", "1", "-W", "2", &dns_ip])
        .await?;
    if !out.ok || !out.text().contains("1 received") {
        anyhow::bail!("ping of {dns_ip} under the revoked rule: {}", out.text());
    }
    r.step(
        "ping of the same address works",
        out.text()
            .lines()
            .find(|l| l.contains("received"))
            .unwrap_or("")
            .to_owned(),
    );
    let ip = dns_ip.clone();
    r.eventually(
        "the fabric's drop log names the security group",
        Duration::from_secs(60),
        || {
            let ip = ip.clone();
            async move {
                let out = c
                    .cloud(
                        "vpc",
                        "DescribeFabricDrops",
                        &[("Reason", "SecurityGroup"), ("IpAddress", &ip)],
                    )
                    .await?
                    .ok("DescribeFabricDrops")?;
                let v: Value = serde_json::from_str(&out)?;
                Ok(v["Drops"]["Drop"]
                    .as_array()
                    .and_then(|d| d.first())
                    .map(|d| ((), format!("{} {}", d["Reason"], d["Detail"]))))
            }
        },
    )
    .await?;

    r.phase(Phase::Heal);
    c.cloud(
        "ecs",
        "AuthorizeSecurityGroup",
        &[
            ("SecurityGroupId", &sg),
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", POD_CIDR),
            ("Priority", "1"),
            ("Description", "ACK default: pod CIDR"),
        ],
    )
    .await?
    .ok("AuthorizeSecurityGroup")?;
    r.step("pod CIDR rule re-added", sg.clone());

    r.phase(Phase::Recover);
    let ip = dns_ip.clone();
    r.eventually(
        "cross-node DNS works again",
        Duration::from_secs(300),
        || {
            let ip = ip.clone();
            async move {
                let (ok, _) = lookup(c, &ip).await?;
                Ok(ok.then(|| ((), format!("nslookup via {ip} resolves"))))
            }
        },
    )
    .await?;
    Ok(())
}
