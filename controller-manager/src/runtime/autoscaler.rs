//! The cluster autoscaler's driver: every scan interval it reads the ESS
//! scaling groups (size bounds, desired capacity, instances, the active
//! scaling configuration as the template node), runs
//! [`crate::autoscaler::Autoscaler::run_once`] over the informers' nodes
//! and pods, and performs its decisions — `ModifyScalingGroup
//! DesiredCapacity` to scale up; taint, evict and `RemoveInstances` to
//! scale down — then writes the `cluster-autoscaler-status` ConfigMap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_kube::api::core::v1::{ConfigMap, Node, Pod, Taint};
use ackemu_kube::client::ClientConfig;
use ackemu_kube::meta::ObjectMeta;
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use parking_lot::Mutex;
use serde_json::json;

use super::Ctx;
use super::ccm::{CcmError, node_event};
use crate::autoscaler::{
    Autoscaler, AutoscalerConfig, NodeGroup, STATUS_CONFIGMAP, ScaleAction, TAINT_TO_BE_DELETED,
    render_status,
};
use crate::cloud::instance_id;
use crate::cloudapi::{CloudClient, CloudError, CloudSettings, Product, items};
use crate::util::fit::EFFECT_NO_SCHEDULE;
use crate::util::{Event, ObjectRef, meta};

/// `--nodes=min:max:<group-id>` (or a bare group id: bounds from ESS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub id: String,
    pub min: Option<usize>,
    pub max: Option<usize>,
}

impl std::str::FromStr for GroupSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupSpec, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |x: &str| {
            x.parse::<usize>()
                .map_err(|_| format!("--nodes {s:?}: {x:?} is not a number (expected min:max:id)"))
        };
        match parts[..] {
            [id] if !id.is_empty() => Ok(GroupSpec {
                id: id.into(),
                min: None,
                max: None,
            }),
            [min, max, id] if !id.is_empty() => {
                let (min, max) = (num(min)?, num(max)?);
                if min > max {
                    return Err(format!("--nodes {s:?}: min {min} is above max {max}"));
                }
                Ok(GroupSpec {
                    id: id.into(),
                    min: Some(min),
                    max: Some(max),
                })
            }
            _ => Err(format!(
                "--nodes {s:?}: expected min:max:<scaling-group-id>"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AutoscalerRunConfig {
    pub client: ClientConfig,
    pub cloud: CloudSettings,
    pub groups: Vec<GroupSpec>,
    pub core: AutoscalerConfig,
    /// `--scan-interval`.
    pub scan_interval: Duration,
    /// `--max-nodes-total` (0: no limit).
    pub max_nodes_total: usize,
    /// `--write-status-configmap`.
    pub write_status_configmap: bool,
    pub leader_elect: bool,
    pub sync_timeout: Duration,
}

impl AutoscalerRunConfig {
    pub fn new(client: ClientConfig, cloud: CloudSettings, groups: Vec<GroupSpec>) -> Self {
        AutoscalerRunConfig {
            client,
            cloud,
            groups,
            core: AutoscalerConfig::default(),
            scan_interval: Duration::from_secs(10),
            max_nodes_total: 0,
            write_status_configmap: true,
            leader_elect: false,
            sync_timeout: Duration::from_secs(60),
        }
    }
}

/// `--labels a=b,c=d` in a scaling configuration's UserData (the seed's
/// `attach_node.sh … --labels k8s.io/cluster-autoscaler=true,…`).
pub fn user_data_labels(user_data: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let words: Vec<&str> = user_data.split_whitespace().collect();
    for w in words.windows(2) {
        if w[0] == "--labels" {
            for kv in w[1].split(',') {
                if let Some((k, v)) = kv.split_once('=') {
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    out
}

/// The node a scaling configuration would register.
pub fn template_node(
    group: &str,
    instance_type: &str,
    cpu: u64,
    memory_gib: f64,
    labels: BTreeMap<String, String>,
) -> Node {
    let mut l = labels;
    l.insert(
        "node.kubernetes.io/instance-type".into(),
        instance_type.to_owned(),
    );
    l.insert("kubernetes.io/os".into(), "linux".into());
    let mem_mi = (memory_gib * 1024.0) as u64;
    let alloc = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(format!("{mem_mi}Mi"))),
        ("pods".to_string(), Quantity("110".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(format!("template-node-for-{group}")),
            labels: Some(l),
            ..Default::default()
        },
        spec: Some(Default::default()),
        status: Some(ackemu_kube::api::core::v1::NodeStatus {
            allocatable: Some(alloc.clone()),
            capacity: Some(alloc),
            conditions: Some(vec![ackemu_kube::api::core::v1::NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

struct Cloud {
    client: CloudClient,
    /// Instance type → (cores, GiB).
    types: Mutex<BTreeMap<String, (u64, f64)>>,
}

async fn instance_type(c: &Cloud, t: &str) -> Result<(u64, f64), CloudError> {
    if let Some(x) = c.types.lock().get(t) {
        return Ok(*x);
    }
    let v = c
        .client
        .call_with(Product::Ecs, "DescribeInstanceTypes", &[])
        .await?;
    let mut m = c.types.lock();
    for it in items(&v, "InstanceTypes", "InstanceType") {
        if let Some(id) = it["InstanceTypeId"].as_str() {
            m.insert(
                id.to_owned(),
                (
                    it["CpuCoreCount"].as_u64().unwrap_or(0),
                    it["MemorySize"].as_f64().unwrap_or(0.0),
                ),
            );
        }
    }
    Ok(m.get(t).copied().unwrap_or((0, 0.0)))
}

/// One group as ESS reports it, with the nodes that belong to it.
async fn describe_group(
    c: &Cloud,
    spec: &GroupSpec,
    nodes: &[Arc<Node>],
) -> Result<NodeGroup, String> {
    let gid = &spec.id;
    let ids = serde_json::to_string(&[gid]).unwrap_or_default();
    let v = c
        .client
        .call_with(
            Product::Ess,
            "DescribeScalingGroups",
            &[("ScalingGroupIds", &ids)],
        )
        .await
        .map_err(|e| format!("describing scaling group {gid}: {e}"))?;
    let g = items(&v, "ScalingGroups", "ScalingGroup")
        .iter()
        .find(|g| g["ScalingGroupId"] == gid.as_str())
        .cloned()
        .ok_or_else(|| format!("scaling group {gid} not found"))?;
    let n = |k: &str| g[k].as_u64().map(|x| x as usize);
    let total = n("TotalCapacity").unwrap_or(0);
    let target = n("DesiredCapacity").unwrap_or(total);
    let inst = c
        .client
        .call_with(
            Product::Ess,
            "DescribeScalingInstances",
            &[("ScalingGroupId", gid)],
        )
        .await
        .map_err(|e| format!("listing instances of scaling group {gid}: {e}"))?;
    let members: Vec<String> = items(&inst, "ScalingInstances", "ScalingInstance")
        .iter()
        .filter_map(|i| i["InstanceId"].as_str().map(str::to_owned))
        .collect();
    let confs = c
        .client
        .call_with(
            Product::Ess,
            "DescribeScalingConfigurations",
            &[("ScalingGroupId", gid)],
        )
        .await
        .map_err(|e| format!("describing scaling configurations of {gid}: {e}"))?;
    let active = g["ActiveScalingConfigurationId"]
        .as_str()
        .unwrap_or_default();
    let conf = items(&confs, "ScalingConfigurations", "ScalingConfiguration")
        .iter()
        .find(|x| x["ScalingConfigurationId"] == active)
        .cloned()
        .ok_or_else(|| format!("scaling group {gid} has no active scaling configuration"))?;
    let itype = conf["InstanceType"].as_str().unwrap_or_default();
    let (cpu, mem) = instance_type(c, itype)
        .await
        .map_err(|e| format!("describing instance type {itype}: {e}"))?;
    let mut labels: BTreeMap<String, String> = conf["Tags"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !k.starts_with("acs:"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let ud = conf["UserData"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    labels.extend(user_data_labels(&ud));
    let nodes = nodes
        .iter()
        .filter_map(|node| {
            let id = instance_id(node)?;
            members
                .contains(&id)
                .then(|| (meta::name(&node.metadata).to_owned(), id))
        })
        .collect();
    Ok(NodeGroup {
        id: gid.clone(),
        min: spec.min.or(n("MinSize")).unwrap_or(0),
        max: spec.max.or(n("MaxSize")).unwrap_or(0),
        target,
        template: template_node(gid, itype, cpu, mem, labels),
        nodes,
    })
}

fn pod_ref(p: &Pod) -> ObjectRef {
    ObjectRef::new("v1", "Pod", &p.metadata)
}

async fn scale_down(
    ctx: &Ctx,
    c: &Cloud,
    group: &str,
    node: &str,
    instance: &str,
    evict: &[crate::replicaset::PodRef],
) -> Result<(), String> {
    let Some(n) = ctx.inf.nodes.get(node) else {
        return Ok(());
    };
    let taint = Taint {
        key: TAINT_TO_BE_DELETED.into(),
        value: Some(ctx.clock.wall_unix_ms().div_euclid(1000).to_string()),
        effect: EFFECT_NO_SCHEDULE.into(),
        time_added: None,
    };
    super::nodes::patch_taints(ctx, node, std::slice::from_ref(&taint), &[]).await?;
    ctx.event(
        "cluster-autoscaler",
        node_event(
            &n,
            "ScaleDown",
            "marked the node as toBeDeleted/unschedulable".into(),
        ),
    );
    for p in evict {
        let (ns, name) = (p.namespace.as_str(), p.name.as_str());
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns}});
        match ctx
            .client
            .request(
                "POST",
                &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                let _ = super::nodes::patch_taints(ctx, node, &[], &[taint]).await;
                return Err(format!("evicting pod {ns}/{name} from node {node}: {e}"));
            }
        }
        if let Some(pod) = ctx.inf.pods.get(&format!("{ns}/{name}")) {
            ctx.event(
                "cluster-autoscaler",
                Event::normal(
                    pod_ref(&pod),
                    "ScaleDown",
                    "deleting pod for node scale down",
                ),
            );
        }
    }
    let r = c
        .client
        .call_with(
            Product::Ess,
            "RemoveInstances",
            &[("ScalingGroupId", group), ("InstanceId.1", instance)],
        )
        .await;
    if let Err(e) = r {
        let _ = super::nodes::patch_taints(ctx, node, &[], &[taint]).await;
        ctx.event(
            "cluster-autoscaler",
            Event::warning(
                {
                    let mut r = ObjectRef::new("v1", "Node", &n.metadata);
                    r.uid = r.name.clone();
                    r
                },
                "ScaleDownFailed",
                format!("failed to delete the node: {e}"),
            ),
        );
        return Err(format!("removing instance {instance} from {group}: {e}"));
    }
    tracing::info!("Scale-down: removed node {node} (instance {instance}) from group {group}");
    ctx.event(
        "cluster-autoscaler",
        node_event(&n, "ScaleDown", "node removed by cluster autoscaler".into()),
    );
    Ok(())
}

async fn write_status(ctx: &Ctx, text: String) -> Result<(), String> {
    let api = ctx
        .client
        .api::<ConfigMap>(Some("kube-system"))
        .map_err(|e| e.to_string())?;
    let now = jiff::Timestamp::from_millisecond(ctx.clock.wall_unix_ms())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let ann = BTreeMap::from([(
        "cluster-autoscaler.kubernetes.io/last-updated".to_string(),
        ackemu_kube::duration::format_timestamp(now),
    )]);
    match api.get(STATUS_CONFIGMAP).await {
        Ok(mut cm) => {
            cm.data = Some(BTreeMap::from([("status".to_string(), text)]));
            cm.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .extend(ann);
            api.replace(STATUS_CONFIGMAP, &cm)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(e) if e.is_not_found() => api
            .create(&ConfigMap {
                metadata: ObjectMeta {
                    name: Some(STATUS_CONFIGMAP.into()),
                    namespace: Some("kube-system".into()),
                    annotations: Some(ann),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([("status".to_string(), text)])),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn pass(
    ctx: &Ctx,
    c: &Cloud,
    core: &Mutex<Autoscaler>,
    cfg: &AutoscalerRunConfig,
) -> Result<(), String> {
    let nodes = ctx.inf.nodes.list();
    let pods = ctx.inf.pods.list();
    let mut groups = Vec::new();
    for g in &cfg.groups {
        groups.push(describe_group(c, g, &nodes).await?);
    }
    if cfg.max_nodes_total > 0 {
        let mut room = cfg.max_nodes_total.saturating_sub(
            nodes.len().max(
                groups
                    .iter()
                    .map(|g| g.target.max(g.nodes.len()))
                    .sum::<usize>(),
            ),
        );
        for g in &mut groups {
            let cap = g.target + room;
            if g.max > cap {
                g.max = cap.max(g.target);
            }
            room = room.saturating_sub(g.max - g.target);
        }
    }
    let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let now = ctx.now();
    let (actions, report) = core.lock().run_once(&node_refs, &pod_refs, &groups, now);
    let mut first_err = None;
    for a in actions {
        match a {
            ScaleAction::Event(e) => ctx.event("cluster-autoscaler", e),
            ScaleAction::IncreaseSize { group, from, to } => {
                let max = groups
                    .iter()
                    .find(|g| g.id == group)
                    .map(|g| g.max)
                    .unwrap_or(to);
                tracing::info!("Estimated {} nodes needed in {group}", to - from);
                tracing::info!("Final scale-up plan: [{{{group} {from}->{to} (max: {max})}}]");
                tracing::info!("Scale-up: setting group {group} size to {to}");
                let to_s = to.to_string();
                if let Err(e) = c
                    .client
                    .call_with(
                        Product::Ess,
                        "ModifyScalingGroup",
                        &[("ScalingGroupId", &group), ("DesiredCapacity", &to_s)],
                    )
                    .await
                {
                    let m = format!("failed to increase node group {group} size to {to}: {e}");
                    tracing::error!("{m}");
                    first_err.get_or_insert(m);
                }
            }
            ScaleAction::ScaleDown {
                group,
                node,
                instance_id,
                evict,
            } => {
                let u = report.utilization.get(&node).copied().unwrap_or(0.0);
                let names: Vec<String> = evict
                    .iter()
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .collect();
                if names.is_empty() {
                    tracing::info!("Scale-down: removing empty node {node}");
                } else {
                    tracing::info!(
                        "Scale-down: removing node {node}, utilization: {u:.2}, pods to reschedule: {}",
                        names.join(",")
                    );
                }
                if let Err(e) = scale_down(ctx, c, &group, &node, &instance_id, &evict).await {
                    tracing::error!("Failed to scale down: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    for n in &report.unneeded {
        if let Some(since) = core.lock().unneeded_since(n) {
            ackemu_base::v!(
                2,
                "{n} was unneeded for {}",
                ackemu_base::tasks::fmt_dur(now.mono.saturating_duration_since(since))
            );
        }
    }
    if cfg.write_status_configmap
        && let Err(e) = write_status(ctx, render_status(&node_refs, &groups, &report, now)).await
    {
        tracing::warn!("writing the {STATUS_CONFIGMAP} ConfigMap: {e}");
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Starts the autoscaler loop; returns once the caches have synced.
pub async fn start(config: AutoscalerRunConfig, env: &Env) -> Result<Ctx, CcmError> {
    if config.groups.is_empty() {
        return Err(CcmError::Config(
            "no node group: pass --nodes=min:max:<scaling-group-id> or --scaling-group-id".into(),
        ));
    }
    let ctx = super::context(&config.client, env, 1000)?;
    ctx.inf.nodes.require();
    ctx.inf.pods.require();
    let c = Arc::new(Cloud {
        client: CloudClient::new(
            &config.cloud.endpoint,
            config.cloud.source.clone(),
            env.clock.clone(),
            env.tasks.clone(),
        )?,
        types: Mutex::new(BTreeMap::new()),
    });
    super::start_informers(&ctx, config.sync_timeout).await;
    let core = Arc::new(Mutex::new(Autoscaler::new(config.core.clone())));
    let (c2, cfg) = (ctx.clone(), Arc::new(config));
    let token = ctx.tasks.token();
    ctx.tasks.spawn("cluster autoscaler", async move {
        tracing::info!(
            "cluster autoscaler: node groups {:?}, scan interval {:?}",
            cfg.groups.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
            cfg.scan_interval
        );
        let mut tick = c2.clock.interval(cfg.scan_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => return,
            }
            if let Err(e) = pass(&c2, &c, &core, &cfg).await {
                tracing::error!("Failed to run autoscaler loop: {e}");
            }
        }
    });
    env.health.set_ready(true);
    Ok(ctx)
}

/// `run`: elect on `kube-system/cluster-autoscaler`, start, serve.
pub async fn run(config: AutoscalerRunConfig, env: Env) -> Result<(), CcmError> {
    if config.leader_elect && !super::elect(&config.client, &env, "cluster-autoscaler").await? {
        return Ok(());
    }
    let _ctx = start(config, &env).await?;
    super::serve_until_stopped(&env).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_specs() {
        assert_eq!(
            "1:5:asg-1".parse::<GroupSpec>(),
            Ok(GroupSpec {
                id: "asg-1".into(),
                min: Some(1),
                max: Some(5)
            })
        );
        assert_eq!("asg-2".parse::<GroupSpec>().map(|g| g.min), Ok(None));
        assert!("5:1:asg".parse::<GroupSpec>().is_err());
        assert!("x:1:asg".parse::<GroupSpec>().is_err());
        assert!("1:2".parse::<GroupSpec>().is_err());
    }

    #[test]
    fn labels_from_the_seed_user_data() {
        let ud = "#!/bin/sh\ncurl http:///public/pkg/run/attach/1.12.6-aliyun.1/attach_node.sh | bash -s -- --openapi-token x --ess true --labels k8s.io/cluster-autoscaler=true,workload_type=cpu,k8s.aliyun.com=true\n";
        let l = user_data_labels(ud);
        assert_eq!(l["k8s.io/cluster-autoscaler"], "true");
        assert_eq!(l["workload_type"], "cpu");
        assert_eq!(l.len(), 3);
        let t = template_node("asg-1", "ecs.g6.large", 2, 8.0, l);
        let a = crate::util::fit::node_allocatable(&t);
        assert_eq!((a.milli_cpu, a.memory), (2000, 8 << 30));
    }
}
