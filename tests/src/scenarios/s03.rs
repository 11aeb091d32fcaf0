//! S03 namespace-stuck-terminating (我们为什么会删除不了集群的命名空间 +
//! k8s 中删除 namespace 时发生了什么). Someone edits the RAM policy of the
//! role the cloud controller manager runs as so that `vpc:*` is `Deny`,
//! and the VPC route entry of the node running metrics-server is deleted.
//! The route controller cannot describe the VPC, so the route stays gone;
//! the API server (host network on the master) cannot reach the
//! metrics-server pod; the APIService `v1beta1.metrics.k8s.io` turns
//! Available=False; discovery of `metrics.k8s.io/v1beta1` fails and the
//! namespace controller cannot enumerate what to delete, so
//! `kubectl delete ns tobedeletedb` leaves it Terminating. Setting the
//! policy's Effect back to Allow heals everything with no other action.
//!
//! The mechanism, not the script: first, with the same Deny in place, the
//! route of the node that runs nothing aggregated is deleted, and a
//! namespace deleted then still goes away.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::util::json_of;
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S03";
pub const TITLE: &str = "namespace-stuck-terminating";

const APISERVICE: &str = "v1beta1.metrics.k8s.io";
const UNAVAILABLE: &str = "the server is currently unable to handle the request";

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
}

/// The APIService's Available condition: (status, message).
async fn available(c: &impl Cluster) -> anyhow::Result<(String, String)> {
    let a = json_of(c, &["get", "apiservice", APISERVICE]).await?;
    let cond = condition(&a, "Available").context("no Available condition yet")?;
    Ok((
        cond["status"].as_str().unwrap_or("").to_owned(),
        format!(
            "{} {}",
            cond["reason"].as_str().unwrap_or(""),
            cond["message"].as_str().unwrap_or("")
        ),
    ))
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

/// The custom policy attached to `role` that grants `vpc:*`, and its
/// current document.
async fn vpc_policy(c: &impl Cluster, role: &str) -> anyhow::Result<(String, Value)> {
    let out = c
        .cloud("ram", "ListPoliciesForRole", &[("RoleName", role)])
        .await?
        .ok("ListPoliciesForRole")?;
    let v: Value = serde_json::from_str(&out)?;
    for p in v["Policies"]["Policy"].as_array().into_iter().flatten() {
        if p["PolicyType"] != "Custom" {
            continue;
        }
        let name = p["PolicyName"].as_str().unwrap_or("").to_owned();
        let out = c
            .cloud("ram", "GetPolicy", &[("PolicyName", &name)])
            .await?
            .ok("GetPolicy")?;
        let g: Value = serde_json::from_str(&out)?;
        let doc = &g["DefaultPolicyVersion"]["PolicyDocument"];
        let doc: Value = match doc.as_str() {
            Some(text) => serde_json::from_str(text)?,
            None => doc.clone(),
        };
        if with_vpc_effect(&doc, "Allow").is_some() {
            return Ok((name, doc));
        }
    }
    anyhow::bail!("no custom policy of role {role} mentions vpc:*")
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// `doc` edited the way the operator did: the `vpc:*` statement (split out
/// of a combined one if needed) with `Effect` set to `effect`; `None` when
/// the document does not mention `vpc:*`.
pub fn with_vpc_effect(doc: &Value, effect: &str) -> Option<Value> {
    let stmts = doc["Statement"].as_array()?;
    let mut out = Vec::new();
    let mut found = false;
    for s in stmts {
        let acts = actions(s);
        if !acts.iter().any(|a| a == "vpc:*") {
            out.push(s.clone());
            continue;
        }
        found = true;
        let rest: Vec<&String> = acts.iter().filter(|a| *a != "vpc:*").collect();
        if !rest.is_empty() {
            let mut keep = s.clone();
            keep["Action"] = json!(rest);
            out.push(keep);
        }
        let mut vpc = s.clone();
        vpc["Action"] = json!(["vpc:*"]);
        vpc["Effect"] = json!(effect);
        out.push(vpc);
    }
    found.then(|| {
        let mut d = doc.clone();
        d["Statement"] = json!(out);
        d
    })
}

async fn set_policy(c: &impl Cluster, name: &str, doc: &Value) -> anyhow::Result<()> {
    c.cloud(
        "ram",
        "CreatePolicyVersion",
        &[
            ("PolicyName", name),
            ("PolicyDocument", &doc.to_string()),
            ("SetAsDefault", "true"),
        ],
    )
    .await?
    .ok("CreatePolicyVersion")?;
    Ok(())
}

async fn delete_route(c: &impl Cluster, table: &str, cidr: &str) -> anyhow::Result<()> {
    c.cloud(
        "vpc",
        "DeleteRouteEntry",
        &[("RouteTableId", table), ("DestinationCidrBlock", cidr)],
    )
    .await?
    .ok("DeleteRouteEntry")?;
    Ok(())
}

/// The namespace's phase and its deletion conditions, or None when gone.
async fn namespace(c: &impl Cluster, ns: &str) -> anyhow::Result<Option<Value>> {
    let out = c.kubectl(&["get", "namespace", ns, "-o", "json"]).await?;
    if !out.ok {
        if out.text().contains("NotFound") {
            return Ok(None);
        }
        anyhow::bail!("kubectl get namespace {ns}: {}", out.text());
    }
    Ok(Some(serde_json::from_str(&out.stdout)?))
}

async fn pod_cidr(c: &impl Cluster, node: &str) -> anyhow::Result<String> {
    let n = json_of(c, &["get", "node", node]).await?;
    n["spec"]["podCIDR"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("node {node} has no podCIDR"))
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let table = c.cloud_id("route_table").context("the route table")?;
    let role = c.cloud_id("master_role").context("the master RAM role")?;
    let (ms_node, other) = r
        .eventually(
            "metrics-server runs and its APIService is Available",
            Duration::from_secs(900),
            || async move {
                let pods = json_of(
                    c,
                    &[
                        "-n",
                        "kube-system",
                        "get",
                        "pods",
                        "-l",
                        "k8s-app=metrics-server",
                    ],
                )
                .await?;
                let Some(node) = pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| condition(p, "Ready").is_some_and(|c| c["status"] == "True"))
                    .find_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
                else {
                    return Ok(None);
                };
                let (status, msg) = available(c).await?;
                if status != "True" {
                    anyhow::bail!("{APISERVICE} Available={status}: {msg}")
                }
                let nodes = json_of(c, &["get", "nodes"]).await?;
                let other = nodes["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["metadata"]["name"].as_str())
                    .find(|n| *n != node)
                    .map(str::to_owned)
                    .context("a second node")?;
                let d = format!("metrics-server on {node}; {APISERVICE} Available=True");
                Ok(Some(((node, other), d)))
            },
        )
        .await?;
    let ms_cidr = pod_cidr(c, &ms_node).await?;
    let other_cidr = pod_cidr(c, &other).await?;
    r.eventually(
        "both nodes' routes are in the route table",
        Duration::from_secs(300),
        || {
            let (table, a, b) = (table.clone(), ms_cidr.clone(), other_cidr.clone());
            async move {
                let routes = route_cidrs(c, &table).await?;
                Ok((routes.contains(&a) && routes.contains(&b))
                    .then(|| ((), format!("{a} and {b} in {table}"))))
            }
        },
    )
    .await?;
    let (policy, doc) = vpc_policy(c, &role).await?;
    let deny = with_vpc_effect(&doc, "Deny").context("the vpc:* statement")?;
    // The heal edits the edited document: only the Effect changes back.
    let allow = with_vpc_effect(&deny, "Allow").context("the vpc:* statement")?;

    r.phase(Phase::Inject);
    set_policy(c, &policy, &deny).await?;
    r.step(
        "RAM policy edited: vpc:* is Deny",
        format!("{policy} (role {role})"),
    );
    r.eventually(
        "cloud-controller-manager: the route controller cannot find the VPC",
        Duration::from_secs(900),
        || async move {
            let log = c.logs("cloud-controller-manager").await?;
            Ok(log
                .lines()
                .rev()
                .find(|l| l.contains("cannot find VPC") && l.contains("Forbidden"))
                .map(|l| ((), l.trim().to_owned())))
        },
    )
    .await?;
    // The negative first: a node that runs nothing aggregated loses its
    // route; namespaces still delete.
    delete_route(c, &table, &other_cidr).await?;
    r.step(
        "route of the node running nothing aggregated deleted",
        format!("{other_cidr} (node {other})"),
    );
    c.kubectl(&["create", "namespace", "tobedeleteda"])
        .await?
        .ok("creating namespace tobedeleteda")?;
    c.kubectl(&["delete", "namespace", "tobedeleteda", "--wait=false"])
        .await?
        .ok("deleting namespace tobedeleteda")?;
    r.eventually(
        "with that route gone, a deleted namespace still disappears",
        Duration::from_secs(1800),
        || {
            let (table, cidr) = (table.clone(), other_cidr.clone());
            async move {
                if namespace(c, "tobedeleteda").await?.is_some() {
                    return Ok(None);
                }
                let (status, _) = available(c).await?;
                let routes = route_cidrs(c, &table).await?;
                anyhow::ensure!(!routes.contains(&cidr), "the route {cidr} came back");
                Ok((status == "True").then(|| {
                    (
                        (),
                        format!(
                            "tobedeleteda gone; {APISERVICE} Available=True; {cidr} still absent"
                        ),
                    )
                }))
            }
        },
    )
    .await?;
    delete_route(c, &table, &ms_cidr).await?;
    r.step(
        "route of the node running metrics-server deleted",
        format!("{ms_cidr} (node {ms_node})"),
    );

    r.phase(Phase::Observe);
    r.eventually(
        "kubectl get apiservice shows Available=False",
        Duration::from_secs(600),
        || async move {
            let (status, msg) = available(c).await?;
            Ok((status == "False").then(|| ((), format!("{APISERVICE} False: {msg}"))))
        },
    )
    .await?;
    c.kubectl(&["create", "namespace", "tobedeletedb"])
        .await?
        .ok("creating namespace tobedeletedb")?;
    c.kubectl(&["delete", "namespace", "tobedeletedb", "--wait=false"])
        .await?
        .ok("deleting namespace tobedeletedb")?;
    r.step("kubectl delete ns tobedeletedb", "deletion requested");
    r.eventually(
        "the namespace stays Terminating: NamespaceDeletionDiscoveryFailure",
        Duration::from_secs(600),
        || async move {
            let Some(ns) = namespace(c, "tobedeletedb").await? else {
                anyhow::bail!("namespace tobedeletedb was deleted");
            };
            let phase = ns["status"]["phase"].as_str().unwrap_or("");
            Ok(condition(&ns, "NamespaceDeletionDiscoveryFailure")
                .filter(|cond| {
                    phase == "Terminating"
                        && cond["status"] == "True"
                        && cond["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(UNAVAILABLE))
                })
                .map(|cond| {
                    (
                        (),
                        format!(
                            "{phase}: {} {}",
                            cond["reason"].as_str().unwrap_or(""),
                            cond["message"].as_str().unwrap_or("")
                        ),
                    )
                }))
        },
    )
    .await?;
    // The namespace controller's discovery fails with the aggregator's
    // 503; the API server's availability check says why.
    for (component, what, needle) in [
        (
            "controller-manager",
            format!("controller-manager log: {UNAVAILABLE}"),
            UNAVAILABLE.to_owned(),
        ),
        (
            "apiserver",
            format!("apiserver log: {APISERVICE} failed with: failing or missing response"),
            format!("{APISERVICE} failed with: failing or missing response"),
        ),
    ] {
        r.eventually(&what, Duration::from_secs(600), || {
            let needle = needle.clone();
            async move {
                let log = c.logs(component).await?;
                Ok(log
                    .lines()
                    .rev()
                    .find(|l| l.contains(&needle) && l.contains("metrics.k8s.io"))
                    .map(|l| ((), l.trim().to_owned())))
            }
        })
        .await?;
    }
    let routes = route_cidrs(c, &table).await?;
    anyhow::ensure!(
        !routes.contains(&ms_cidr) && !routes.contains(&other_cidr),
        "a deleted route came back under the Deny: {routes:?}"
    );
    r.step(
        "the route table lacks the nodes' podCIDRs",
        format!("{table}: {}", routes.join(", ")),
    );
    let ns = namespace(c, "tobedeletedb").await?;
    anyhow::ensure!(
        ns.as_ref()
            .is_some_and(|n| n["status"]["phase"] == "Terminating"),
        "tobedeletedb is no longer Terminating: {ns:?}"
    );
    r.step("tobedeletedb is still Terminating", "");

    r.phase(Phase::Heal);
    set_policy(c, &policy, &allow).await?;
    r.step(
        "RAM policy Effect set back to Allow",
        format!("{policy} (role {role})"),
    );

    r.phase(Phase::Recover);
    r.eventually(
        "the route controller restores the routes",
        Duration::from_secs(900),
        || {
            let (table, a, b) = (table.clone(), ms_cidr.clone(), other_cidr.clone());
            async move {
                let routes = route_cidrs(c, &table).await?;
                Ok((routes.contains(&a) && routes.contains(&b))
                    .then(|| ((), format!("{a} and {b} in {table}"))))
            }
        },
    )
    .await?;
    r.eventually(
        "the APIService is Available again",
        Duration::from_secs(600),
        || async move {
            let (status, msg) = available(c).await?;
            Ok((status == "True").then(|| ((), format!("{APISERVICE} True: {msg}"))))
        },
    )
    .await?;
    r.eventually(
        "the Terminating namespace disappears",
        Duration::from_secs(900),
        || async move {
            Ok(namespace(c, "tobedeletedb")
                .await?
                .is_none()
                .then(|| ((), "tobedeletedb is gone".to_owned())))
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_edit() {
        let doc = json!({"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": ["ecs:*", "vpc:*", "slb:*"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": ["cr:Get*"], "Resource": ["*"]}]});
        let deny = with_vpc_effect(&doc, "Deny").unwrap();
        let st = deny["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 3);
        assert_eq!(st[0]["Action"], json!(["ecs:*", "slb:*"]));
        assert_eq!(
            st[1],
            json!({"Effect": "Deny", "Action": ["vpc:*"], "Resource": ["*"]})
        );
        // Editing the edited document only flips the Effect.
        let allow = with_vpc_effect(&deny, "Allow").unwrap();
        assert_eq!(allow["Statement"].as_array().unwrap().len(), 3);
        assert_eq!(allow["Statement"][1]["Effect"], "Allow");
        assert!(with_vpc_effect(&json!({"Statement": [st[2].clone()]}), "Deny").is_none());
    }
}
