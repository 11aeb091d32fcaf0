//! Drives [`crate::nodeipam`], [`crate::nodelifecycle`] and taint-based
//! eviction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_kube::api::coordination::v1::Lease;
use ackemu_kube::api::core::v1::{Node, Pod};
use parking_lot::Mutex;
use serde_json::json;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::nodeipam::{IpamAction, IpamConfig, RangeAllocator};
use crate::nodelifecycle::{
    EvictionAction, LifecycleAction, LifecycleConfig, NODE_LEASE_NAMESPACE, NodeLifecycle,
    Observed, TaintEviction, apply_taints, disruption_condition, mark_pod_not_ready,
};
use crate::util::{meta, pod as podutil};

pub fn start_ipam(ctx: &Ctx, workers: usize, cfg: IpamConfig) {
    let alloc: Arc<Mutex<Option<RangeAllocator>>> = Arc::new(Mutex::new(None));
    let q = Queue::new("nodeipam", ctx);
    {
        let q = q.clone();
        let a = alloc.clone();
        ctx.inf.nodes.on(move |c| match c {
            Change::Add(n) | Change::Update(_, n) => q.add(meta::name(&n.metadata)),
            Change::Delete(n) => {
                if let Some(a) = a.lock().as_mut() {
                    a.node_deleted(n);
                }
            }
        });
    }
    let c2 = ctx.clone();
    let cfg = Arc::new(cfg);
    q.run(workers, move |name| {
        let (ctx, alloc, cfg) = (c2.clone(), alloc.clone(), cfg.clone());
        async move {
            ctx.inf.nodes.wait_synced().await;
            let Some(node) = ctx.inf.nodes.get(&name) else {
                return Ok(Next::Done);
            };
            let actions = {
                let mut g = alloc.lock();
                if g.is_none() {
                    let nodes: Vec<Node> =
                        ctx.inf.nodes.list().iter().map(|n| (**n).clone()).collect();
                    let (a, errs) =
                        RangeAllocator::new(&cfg, &nodes).map_err(|e| format!("node ipam: {e}"))?;
                    for (n, e) in errs {
                        tracing::error!("node ipam: node {n}: {e}");
                    }
                    *g = Some(a);
                }
                g.as_mut().expect("built above").reconcile(&node)
            };
            for a in actions {
                match a {
                    IpamAction::SetPodCidrs { node, cidrs } => {
                        let list: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
                        let patch = json!({"spec": {"podCIDR": list[0], "podCIDRs": list}});
                        if let Err(e) =
                            rest::patch::<Node>(&ctx.client, None, &node, "", &patch).await
                        {
                            if let Some(a) = alloc.lock().as_mut() {
                                a.patch_failed(&node);
                            }
                            return Err(format!("setting podCIDRs of node {node}: {e}"));
                        }
                        tracing::info!("node ipam: set node {node} podCIDRs to {list:?}");
                    }
                    IpamAction::Event(e) => ctx.event("nodeipam-controller", e),
                }
            }
            Ok(Next::Done)
        }
    });
}

pub(crate) async fn patch_taints(
    ctx: &Ctx,
    node: &str,
    add: &[ackemu_kube::api::core::v1::Taint],
    remove: &[ackemu_kube::api::core::v1::Taint],
) -> Result<(), String> {
    // `PatchNodeTaints`: the whole new list as a patch without a
    // resourceVersion, so the kubelet's status heartbeats in between do
    // not make it conflict.
    let api = ctx.client.api::<Node>(None).map_err(|e| e.to_string())?;
    let n = match api.get(node).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(format!("getting node {node}: {e}")),
    };
    let cur = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let new = apply_taints(&cur, add, remove, ctx.now().wall);
    if new == cur {
        return Ok(());
    }
    let taints = if new.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(&new).map_err(|e| e.to_string())?
    };
    match super::rest::patch::<Node>(
        &ctx.client,
        None,
        node,
        "",
        &serde_json::json!({"spec": {"taints": taints}}),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(format!("updating taints of node {node}: {e}")),
    }
}

pub fn start_lifecycle(ctx: &Ctx, cfg: LifecycleConfig) {
    let leases = ctx.inf.leases.clone();
    leases.require();
    ctx.inf.nodes.require();
    ctx.inf.pods.require();
    let core = Arc::new(Mutex::new(NodeLifecycle::new(cfg.clone())));
    let eviction = Arc::new(Mutex::new(TaintEviction::new()));
    // Taint-based eviction: per pod.
    let q = Queue::new("tainteviction", ctx);
    {
        let q = q.clone();
        let ev = eviction.clone();
        ctx.inf.pods.on(move |c| match c {
            Change::Add(p) | Change::Update(_, p) => {
                if !podutil::node_name(p).is_empty() {
                    q.add(&meta::key(&p.metadata));
                }
            }
            Change::Delete(p) => {
                ev.lock().pod_deleted(&meta::key(&p.metadata));
            }
        });
    }
    {
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.nodes.on(move |c| {
            if let Change::Update(old, new) = c
                && crate::util::fit::node_taints(old) != crate::util::fit::node_taints(new)
            {
                let name = meta::name(&new.metadata);
                for p in c2.inf.pods.list() {
                    if podutil::node_name(&p) == name {
                        q.add(&meta::key(&p.metadata));
                    }
                }
            }
        });
    }
    let (c2, ev2) = (ctx.clone(), eviction.clone());
    q.run(2, move |key| {
        let (ctx, ev) = (c2.clone(), ev2.clone());
        async move {
            let Some(pod) = ctx.inf.pods.get(&key) else {
                ev.lock().pod_deleted(&key);
                return Ok(Next::Done);
            };
            let taints = ctx
                .inf
                .nodes
                .get(podutil::node_name(&pod))
                .map(|n| crate::util::fit::node_taints(&n).to_vec())
                .unwrap_or_default();
            let now = ctx.now();
            let (actions, wake) = {
                let mut e = ev.lock();
                let a = e.reconcile_pod(&pod, &taints, now);
                (a, e.scheduled_at(&key))
            };
            evict(&ctx, actions).await?;
            Ok(match wake {
                Some(t) => Next::After(
                    t.saturating_duration_since(now.mono)
                        .max(Duration::from_millis(100)),
                ),
                None => Next::Done,
            })
        }
    });
    // The monitor loop.
    let c2 = ctx.clone();
    let token = ctx.tasks.token();
    ctx.tasks.spawn("node lifecycle monitor", async move {
        c2.inf.nodes.wait_synced().await;
        let mut tick = c2.clock.interval(cfg.node_monitor_period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => return,
            }
            let nodes = c2.inf.nodes.list();
            let lease_objs: Vec<Arc<Lease>> = c2.inf.leases.list_ns(NODE_LEASE_NAMESPACE);
            let pods = c2.inf.pods.list();
            let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
            for p in &pods {
                if !podutil::node_name(p).is_empty() {
                    by_node
                        .entry(podutil::node_name(p).to_owned())
                        .or_default()
                        .push(p);
                }
            }
            let obs = Observed {
                nodes: nodes.iter().map(|n| n.as_ref()).collect(),
                leases: lease_objs
                    .iter()
                    .map(|l| (meta::name(&l.metadata).to_owned(), l.as_ref()))
                    .collect(),
                pods_by_node: by_node,
            };
            let now = c2.now();
            let actions = core.lock().monitor(&obs, now);
            for a in actions {
                if let Err(e) = lifecycle_action(&c2, &core, &pods, a).await {
                    tracing::warn!("node lifecycle: {e}");
                }
            }
            let due = eviction.lock().fire(now);
            if let Err(e) = evict(&c2, due).await {
                tracing::warn!("taint eviction: {e}");
            }
        }
    });
}

async fn lifecycle_action(
    ctx: &Ctx,
    core: &Mutex<NodeLifecycle>,
    pods: &[Arc<Pod>],
    a: LifecycleAction,
) -> Result<(), String> {
    match a {
        LifecycleAction::UpdateNodeStatus(n) => {
            let name = meta::name(&n.metadata).to_owned();
            rest::update(&ctx.client, None, &name, "status", n.as_ref())
                .await
                .map(|_| ())
                .map_err(|e| format!("updating status of node {name}: {e}"))
        }
        LifecycleAction::PatchTaints { node, add, remove } => {
            patch_taints(ctx, &node, &add, &remove).await
        }
        LifecycleAction::MarkPodNotReady {
            namespace,
            name,
            node,
        } => {
            let Some(p) = pods.iter().find(|p| {
                meta::namespace(&p.metadata) == namespace && meta::name(&p.metadata) == name
            }) else {
                return Ok(());
            };
            let Some(updated) = mark_pod_not_ready(p, ctx.now().wall) else {
                return Ok(());
            };
            if let Err(e) =
                rest::update(&ctx.client, Some(&namespace), &name, "status", &updated).await
            {
                core.lock().mark_pods_failed(&node);
                return Err(format!("marking pod {namespace}/{name} not ready: {e}"));
            }
            ctx.event(
                "node-controller",
                crate::util::Event::warning(
                    crate::util::ObjectRef::new("v1", "Pod", &p.metadata),
                    "NodeNotReady",
                    "Node is not ready",
                ),
            );
            Ok(())
        }
        LifecycleAction::Event(e) => {
            ctx.event("node-controller", e);
            Ok(())
        }
    }
}

async fn evict(ctx: &Ctx, actions: Vec<EvictionAction>) -> Result<(), String> {
    for a in actions {
        match a {
            EvictionAction::Event(e) => ctx.event("taint-eviction-controller", e),
            EvictionAction::DeletePod {
                namespace,
                name,
                uid,
            } => {
                let cond = disruption_condition(ctx.now().wall);
                if let Some(p) = ctx.inf.pods.get(&format!("{namespace}/{name}")) {
                    let mut conds = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.clone())
                        .unwrap_or_default();
                    conds.retain(|c| c.type_ != "DisruptionTarget");
                    conds.push(cond);
                    let _ = rest::patch::<Pod>(
                        &ctx.client,
                        Some(&namespace),
                        &name,
                        "status",
                        &json!({"status": {"conditions": conds}}),
                    )
                    .await;
                }
                let info = rest::info_of::<Pod>(&ctx.client).map_err(|e| e.to_string())?;
                rest::delete(
                    &ctx.client,
                    &info,
                    Some(&namespace),
                    &name,
                    rest::Del {
                        uid: Some(&uid),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("evicting pod {namespace}/{name}: {e}"))?;
            }
        }
    }
    Ok(())
}
