//! S09 autoscale-by-reservation (集群伸缩原理): the scheduler and the
//! cluster autoscaler measure *reservation* (pods' requests), not usage.
//! Pods whose CPU requests exceed the free allocatable stay Pending with
//! `0/2 nodes are available: 2 Insufficient cpu.`; the autoscaler raises
//! the ESS scaling group by exactly the nodes they need; ESS creates an
//! ECS instance whose UserData joins it with the bootstrap token; the node
//! becomes Ready and the pods run. When the workload is deleted and the
//! new node's reservation falls under the scale-down threshold, it is
//! drained (tainted unschedulable, its pods evicted and rescheduled
//! elsewhere), its instance released and the Node deleted.
//!
//! The requests are computed from what the cluster reserves already (the
//! add-ons), so that: a base workload keeps every original node above the
//! threshold; each original node holds exactly one web pod and the last
//! one does not fit anywhere; a worker pod created next does not fit
//! either, but fits on the node being added for the web pod (it must not
//! raise the group again while that node boots), and fits on an original
//! node once the web pods are gone.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};

use super::util::{condition, create, items, json_of, name, node_ready};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S09";
pub const TITLE: &str = "autoscale-by-reservation";

/// `ackemu up` flags: node autoscaling on.
pub const UP_ARGS: &[&str] = &["--autoscaler"];
/// Worker nodes the cluster starts with.
pub const NODES: usize = 2;
/// Margin, in millicores, above a bound a request must exceed.
const MARGIN_M: i64 = 10;

/// A CPU quantity in millicores (`2`, `1500m`, `0.5`).
pub fn milli_cpu(q: &str) -> Option<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as i64)
}

/// The CPU a pod reserves: the sum of its containers' requests, or its
/// largest init container's when that is larger.
fn pod_request_m(p: &Value) -> i64 {
    let sum = |k: &str| -> Vec<i64> {
        p["spec"][k]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                c["resources"]["requests"]["cpu"]
                    .as_str()
                    .and_then(milli_cpu)
                    .unwrap_or(0)
            })
            .collect()
    };
    let main: i64 = sum("containers").iter().sum();
    let init = sum("initContainers").into_iter().max().unwrap_or(0);
    main.max(init)
}

/// The requests the scenario uses, from the nodes' free CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub base_m: i64,
    pub web_m: i64,
    pub worker_m: i64,
}

/// `alloc_m` is the smallest node allocatable (new nodes have the same
/// type), `free_m` each original node's free CPU.
pub fn plan(alloc_m: i64, free_m: &[i64]) -> anyhow::Result<Plan> {
    let (fmin, fmax) = (
        *free_m.iter().min().context("no nodes")?,
        *free_m.iter().max().context("no nodes")?,
    );
    // One base pod per node, reserving at least half of it.
    let base_m = (alloc_m / 2 + MARGIN_M).max(fmax / 2 + MARGIN_M);
    anyhow::ensure!(
        base_m <= fmin,
        "a node has only {fmin}m free: cannot reserve half of {alloc_m}m on every node"
    );
    let g: Vec<i64> = free_m.iter().map(|f| f - base_m).collect();
    let (gmin, gmax) = (*g.iter().min().unwrap_or(&0), *g.iter().max().unwrap_or(&0));
    // One web pod per node, never two.
    let web_m = gmax / 2 + MARGIN_M;
    anyhow::ensure!(
        web_m <= gmin,
        "free CPU {g:?} too uneven for one web pod per node"
    );
    // The worker fits no original node next to a web pod, fits on one
    // without it, and fits on the new node beside the last web pod.
    let hmax = gmax - web_m;
    let worker_m = hmax + MARGIN_M;
    anyhow::ensure!(
        worker_m <= gmin && web_m + worker_m <= alloc_m && 2 * worker_m < alloc_m,
        "no worker request fits the plan (free {g:?}, web {web_m}m, node {alloc_m}m)"
    );
    Ok(Plan {
        base_m,
        web_m,
        worker_m,
    })
}

fn deployment(name: &str, replicas: u32, cpu_m: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app",
                    "resources": {"requests": {"cpu": format!("{cpu_m}m")}}}]}}}})
}

/// Live pods of app `app`: (name, node, ready).
async fn pods_of(c: &impl Cluster, app: &str) -> anyhow::Result<Vec<(String, String, bool)>> {
    let v = json_of(c, &["get", "pods", "-l", &format!("app={app}")]).await?;
    Ok(items(&v)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                name(p).to_owned(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                condition(p, "Ready"),
            )
        })
        .collect())
}

/// Events with `reason` about objects whose name starts with `prefix`:
/// (object name, message).
async fn events(
    c: &impl Cluster,
    ns: &str,
    reason: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let v = json_of(
        c,
        &[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            &format!("reason={reason}"),
        ],
    )
    .await?;
    Ok(items(&v)
        .filter_map(|e| {
            let obj = e["involvedObject"]["name"].as_str()?;
            obj.starts_with(prefix).then(|| {
                (
                    obj.to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect())
}

/// The group's desired capacity and instance ids.
async fn group(c: &impl Cluster, gid: &str) -> anyhow::Result<(u64, Vec<String>)> {
    let ids = serde_json::to_string(&[gid])?;
    let g: Value = serde_json::from_str(
        &c.cloud("ess", "DescribeScalingGroups", &[("ScalingGroupIds", &ids)])
            .await?
            .ok("DescribeScalingGroups")?,
    )?;
    let desired = g["ScalingGroups"]["ScalingGroup"][0]["DesiredCapacity"]
        .as_u64()
        .context("DescribeScalingGroups without DesiredCapacity")?;
    let inst: Value = serde_json::from_str(
        &c.cloud(
            "ess",
            "DescribeScalingInstances",
            &[("ScalingGroupId", gid)],
        )
        .await?
        .ok("DescribeScalingInstances")?,
    )?;
    let ids = inst["ScalingInstances"]["ScalingInstance"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["InstanceId"].as_str().map(str::to_owned))
        .collect();
    Ok((desired, ids))
}

/// Ready nodes with their allocatable CPU and the CPU reserved on them.
async fn reservation(c: &impl Cluster) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let nodes = json_of(c, &["get", "nodes"]).await?;
    let pods = json_of(c, &["get", "pods", "-A"]).await?;
    let mut out = BTreeMap::new();
    for n in items(&nodes).filter(|n| condition(n, "Ready")) {
        let alloc = n["status"]["allocatable"]["cpu"]
            .as_str()
            .and_then(milli_cpu)
            .unwrap_or(0);
        out.insert(name(n).to_owned(), (alloc, 0));
    }
    for p in items(&pods) {
        let phase = p["status"]["phase"].as_str().unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if let Some((_, used)) = p["spec"]["nodeName"].as_str().and_then(|n| out.get_mut(n)) {
            *used += pod_request_m(p);
        }
    }
    Ok(out)
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let gid = c
        .cloud_id("scaling_group")
        .context("the workers' scaling group")?;
    let nodes = r
        .eventually(
            "the workers are Ready and the add-ons run",
            Duration::from_secs(900),
            || async move {
                let res = reservation(c).await?;
                let sys = json_of(c, &["-n", "kube-system", "get", "pods"]).await?;
                let all_ready = items(&sys).all(|p| condition(p, "Ready"));
                Ok(
                    (res.len() == NODES && all_ready && items(&sys).count() > 0).then(|| {
                        let detail = res
                            .iter()
                            .map(|(n, (a, u))| format!("{n}: {u}m of {a}m reserved"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        (res, detail)
                    }),
                )
            },
        )
        .await?;
    let alloc = nodes.values().map(|(a, _)| *a).min().unwrap_or(0);
    let free: Vec<i64> = nodes.values().map(|(a, u)| a - u).collect();
    let p = plan(alloc, &free)?;
    r.step(
        "requests planned from the free allocatable",
        format!(
            "base {}m per node, web {}m ×{}, worker {}m",
            p.base_m,
            p.web_m,
            NODES + 1,
            p.worker_m
        ),
    );
    let (before, old_instances) = group(c, &gid).await?;
    anyhow::ensure!(
        before == NODES as u64,
        "scaling group {gid} wants {before} instances, expected {NODES}"
    );
    create(c, &deployment("s09-base", NODES as u32, p.base_m)).await?;
    r.eventually(
        "the base workload reserves over half of every node",
        Duration::from_secs(600),
        || async move {
            let pods = pods_of(c, "s09-base").await?;
            let on: std::collections::BTreeSet<&str> =
                pods.iter().map(|(_, n, _)| n.as_str()).collect();
            Ok(
                (pods.len() == NODES && pods.iter().all(|x| x.2) && on.len() == NODES)
                    .then(|| ((), format!("{} pods on {} nodes", pods.len(), on.len()))),
            )
        },
    )
    .await?;

    r.phase(Phase::Inject);
    create(c, &deployment("s09-web", NODES as u32 + 1, p.web_m)).await?;
    r.step(
        "deployment s09-web requests more CPU than is free",
        format!("{} replicas × {}m", NODES + 1, p.web_m),
    );

    r.phase(Phase::Observe);
    let want = format!("0/{NODES} nodes are available: {NODES} Insufficient cpu.");
    let pending = r
        .eventually(
            "a web pod is Pending: the scheduler's FailedScheduling event",
            Duration::from_secs(600),
            || {
                let want = want.clone();
                async move {
                    let evs = events(c, "default", "FailedScheduling", "s09-web").await?;
                    let live = pods_of(c, "s09-web").await?;
                    Ok(evs
                        .into_iter()
                        .find(|(pod, m)| {
                            m.contains(&want)
                                && live.iter().any(|(n, node, _)| n == pod && node.is_empty())
                        })
                        .map(|(pod, m)| (pod.clone(), format!("{pod}: {m}"))))
                }
            },
        )
        .await?;
    create(c, &deployment("s09-worker", 1, p.worker_m)).await?;
    r.step(
        "deployment s09-worker created while the web pod is Pending",
        format!("1 replica × {}m", p.worker_m),
    );
    let plan_text = format!("[{{{gid} {NODES}->{} (max: ", NODES + 1);
    r.eventually(
        "the autoscaler triggers a scale-up for the Pending pod",
        Duration::from_secs(600),
        || {
            let (pending, plan_text) = (pending.clone(), plan_text.clone());
            async move {
                let evs = events(c, "default", "TriggeredScaleUp", &pending).await?;
                Ok(evs
                    .into_iter()
                    .find(|(_, m)| m.contains(&plan_text))
                    .map(|(pod, m)| ((), format!("{pod}: {m}"))))
            }
        },
    )
    .await?;
    let new_instance = r
        .eventually(
            "ESS creates one ECS instance",
            Duration::from_secs(600),
            || {
                let (gid, old) = (gid.clone(), old_instances.clone());
                async move {
                    let (desired, ids) = group(c, &gid).await?;
                    let fresh: Vec<&String> = ids.iter().filter(|i| !old.contains(i)).collect();
                    Ok((desired == NODES as u64 + 1 && fresh.len() == 1).then(|| {
                        let id = fresh[0].clone();
                        let d = format!("{gid} DesiredCapacity {desired}, new instance {id}");
                        (id, d)
                    }))
                }
            },
        )
        .await?;
    let ud: Value = serde_json::from_str(
        &c.cloud("ecs", "DescribeUserData", &[("InstanceId", &new_instance)])
            .await?
            .ok("DescribeUserData")?,
    )?;
    let ud = ud["UserData"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    anyhow::ensure!(
        ud.contains("ackemu-node\" attach") && ud.contains("--token "),
        "the new instance's UserData does not join with a bootstrap token: {ud}"
    );
    let token_id = ud
        .split_whitespace()
        .skip_while(|w| *w != "--token")
        .nth(1)
        .and_then(|t| t.split('.').next())
        .unwrap_or("")
        .to_owned();
    r.step(
        "its UserData attaches the node with the bootstrap token",
        format!("{new_instance}: ackemu-node attach --token {token_id}.<secret>"),
    );
    node_ready(
        c,
        r,
        "the new node registers and becomes Ready",
        &new_instance,
    )
    .await?;
    r.eventually(
        "the Pending pods run, on the new node",
        Duration::from_secs(900),
        || {
            let (id, pending) = (new_instance.clone(), pending.clone());
            async move {
                let web = pods_of(c, "s09-web").await?;
                let worker = pods_of(c, "s09-worker").await?;
                let all = web.iter().chain(worker.iter());
                let ok = web.len() == NODES + 1
                    && worker.len() == 1
                    && all.clone().all(|x| x.2)
                    && worker[0].1 == id
                    && web.iter().any(|(n, node, _)| *n == pending && *node == id);
                Ok(ok.then(|| {
                    let d = all
                        .map(|(p, n, _)| format!("{p} on {n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    ((), d)
                }))
            }
        },
    )
    .await?;
    // The worker pod waited for the node the web pod triggered: no second
    // scale-up while that node booted.
    let (desired, ids) = group(c, &gid).await?;
    anyhow::ensure!(
        desired == NODES as u64 + 1 && ids.len() == NODES + 1,
        "the group over-scaled: DesiredCapacity {desired}, instances {ids:?}"
    );
    r.step(
        "exactly one node was added",
        format!("{gid} DesiredCapacity {desired}"),
    );
    let log = c.logs("cluster-autoscaler").await?;
    let want_log = format!(
        "Final scale-up plan: [{{{gid} {NODES}->{} (max: ",
        NODES + 1
    );
    let line = log
        .lines()
        .find(|l| l.contains(&want_log))
        .with_context(|| format!("cluster-autoscaler log lacks {want_log:?}"))?;
    anyhow::ensure!(
        log.contains(&format!(
            "Scale-up: setting group {gid} size to {}",
            NODES + 1
        )),
        "cluster-autoscaler log lacks the Scale-up line"
    );
    r.step("cluster-autoscaler log", line.trim().to_owned());

    r.phase(Phase::Heal);
    c.kubectl(&["delete", "deployment", "s09-web"])
        .await?
        .ok("deleting deployment s09-web")?;
    r.step(
        "the web workload is deleted",
        format!("node {new_instance} now reserves {}m", p.worker_m),
    );

    r.phase(Phase::Recover);
    r.eventually(
        "the autoscaler marks the node unschedulable",
        Duration::from_secs(1800),
        || {
            let id = new_instance.clone();
            async move {
                let evs = events(c, "default", "ScaleDown", &id).await?;
                Ok(evs
                    .into_iter()
                    .find(|(n, m)| {
                        *n == id && m.contains("marked the node as toBeDeleted/unschedulable")
                    })
                    .map(|(n, m)| ((), format!("{n}: {m}"))))
            }
        },
    )
    .await?;
    r.eventually(
        "its pod is evicted and runs on another node",
        Duration::from_secs(900),
        || {
            let id = new_instance.clone();
            async move {
                let evicted = events(c, "default", "ScaleDown", "s09-worker").await?;
                let worker = pods_of(c, "s09-worker").await?;
                let moved = worker.len() == 1 && worker[0].2 && worker[0].1 != id;
                Ok(evicted
                    .into_iter()
                    .find(|(_, m)| m.contains("deleting pod for node scale down"))
                    .filter(|_| moved)
                    .map(|(pod, m)| {
                        (
                            (),
                            format!("{pod}: {m}; now {} on {}", worker[0].0, worker[0].1),
                        )
                    }))
            }
        },
    )
    .await?;
    r.eventually(
        "the instance is released from the scaling group",
        Duration::from_secs(900),
        || {
            let (gid, id) = (gid.clone(), new_instance.clone());
            async move {
                let (desired, ids) = group(c, &gid).await?;
                let out: Value = serde_json::from_str(
                    &c.cloud(
                        "ecs",
                        "DescribeInstances",
                        &[("InstanceIds", &serde_json::to_string(&[&id])?)],
                    )
                    .await?
                    .ok("DescribeInstances")?,
                )?;
                let gone = out["Instances"]["Instance"]
                    .as_array()
                    .is_none_or(|a| a.is_empty());
                Ok(
                    (desired == NODES as u64 && !ids.contains(&id) && gone).then(|| {
                        (
                            (),
                            format!("{id} released; {gid} DesiredCapacity {desired}"),
                        )
                    }),
                )
            }
        },
    )
    .await?;
    r.eventually("the Node is deleted", Duration::from_secs(1800), || {
        let id = new_instance.clone();
        async move {
            let out = c.kubectl(&["get", "node", &id]).await?;
            Ok((!out.ok && out.text().contains("NotFound"))
                .then(|| ((), format!("node {id} is gone"))))
        }
    })
    .await?;
    let log = c.logs("cluster-autoscaler").await?;
    let line = log
        .lines()
        .find(|l| l.contains(&format!("Scale-down: removing node {new_instance}")))
        .context("cluster-autoscaler log lacks the Scale-down line")?;
    r.step("cluster-autoscaler log", line.trim().to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(milli_cpu("2"), Some(2000));
        assert_eq!(milli_cpu("1500m"), Some(1500));
        assert_eq!(milli_cpu("0.5"), Some(500));
        assert_eq!(milli_cpu("x"), None);
    }

    #[test]
    fn plans_fit_the_story() {
        for free in [[1700, 1700], [1800, 2000], [1900, 1800], [2000, 2000]] {
            let p = plan(2000, &free).unwrap();
            for f in free {
                let g = f - p.base_m;
                assert!(2 * p.base_m > f && p.base_m <= f, "{p:?} {f}");
                assert!(p.web_m <= g && 2 * p.web_m > g, "{p:?} {f}");
                assert!(p.worker_m > g - p.web_m && p.worker_m <= g, "{p:?} {f}");
            }
            assert!(p.base_m * 2 >= 2000 && p.web_m + p.worker_m <= 2000);
            assert!(p.worker_m * 2 < 2000, "{p:?}");
        }
        assert!(plan(2000, &[900, 2000]).is_err());
    }
}
