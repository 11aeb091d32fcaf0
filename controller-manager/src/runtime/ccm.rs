//! The cloud-controller-manager's drivers: the route controller (a
//! periodic pass keeping the VPC route table equal to the nodes'
//! podCIDRs), the service controller (a keyed queue of LoadBalancer
//! Services → SLBs) and the cloud node controllers (initialization of
//! `uninitialized` nodes, deletion of nodes whose ECS is gone). The
//! decisions are [`crate::cloud`]'s; this module turns them into Vpc, Slb
//! and Ecs calls and API writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_kube::api::core::v1::{Node, Service};
use ackemu_kube::api::discovery::v1::EndpointSlice;
use ackemu_kube::client::{ClientConfig, ClientError};
use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::informer::Change;
use super::{Ctx, Next, Queue, rest};
use crate::cloud::node::{self as cnode, NodeLifecycleAction};
use crate::cloud::route::{self, CloudRoute, RouteAction};
use crate::cloud::service::{self as csvc, LbAction, LbState};
use crate::cloud::{Instance, instance_id, internal_ip};
use crate::cloudapi::{CloudClient, CloudError, CloudSettings, Product, items};
use crate::util::{Event, ObjectRef, meta};

/// Controllers of this binary (`--controllers`).
pub const CCM_CONTROLLERS: &[&str] = &["route", "service", "cloud-node", "cloud-node-lifecycle"];

#[derive(Clone, Debug)]
pub struct CcmConfig {
    pub client: ClientConfig,
    pub cloud: CloudSettings,
    pub controllers: Vec<String>,
    pub cluster_cidrs: Vec<IpNet>,
    /// `--configure-cloud-routes`.
    pub configure_cloud_routes: bool,
    /// `--route-reconciliation-period`.
    pub route_reconciliation_period: Duration,
    /// `--node-monitor-period` of the cloud node lifecycle controller.
    pub node_monitor_period: Duration,
    /// `--concurrent-service-syncs`.
    pub service_workers: usize,
    pub queue_capacity: usize,
    pub leader_elect: bool,
    pub sync_timeout: Duration,
}

impl CcmConfig {
    pub fn new(client: ClientConfig, cloud: CloudSettings) -> CcmConfig {
        CcmConfig {
            client,
            cloud,
            controllers: vec!["*".into()],
            cluster_cidrs: Vec::new(),
            configure_cloud_routes: true,
            route_reconciliation_period: Duration::from_secs(10),
            node_monitor_period: Duration::from_secs(5),
            service_workers: 1,
            queue_capacity: 10_000,
            leader_elect: false,
            sync_timeout: Duration::from_secs(60),
        }
    }

    fn enabled(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == "*" || c == name)
            && !self.controllers.iter().any(|c| c == &format!("-{name}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CcmError {
    #[error("connecting to the API server: {0}")]
    Client(#[from] ClientError),
    #[error("cloud client: {0}")]
    Cloud(#[from] CloudError),
    #[error("unknown controller {0:?}: expected one of {CCM_CONTROLLERS:?}")]
    UnknownController(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What the drivers share besides [`Ctx`].
#[derive(Clone)]
pub struct CloudCtx {
    pub cloud: CloudClient,
    pub settings: Arc<CloudSettings>,
}

/// Starts the enabled controllers; returns once the caches have synced.
pub async fn start(config: CcmConfig, env: &Env) -> Result<Ctx, CcmError> {
    for c in &config.controllers {
        let name = c.trim_start_matches('-');
        if name != "*" && !CCM_CONTROLLERS.contains(&name) {
            return Err(CcmError::UnknownController(c.clone()));
        }
    }
    if config.cloud.vpc_id.is_empty() && config.enabled("route") && config.configure_cloud_routes {
        return Err(CcmError::Config(
            "the route controller needs --vpc-id (or vpcid in --cloud-config)".into(),
        ));
    }
    let ctx = super::context(&config.client, env, config.queue_capacity)?;
    let cc = CloudCtx {
        cloud: CloudClient::new(
            &config.cloud.endpoint,
            config.cloud.source.clone(),
            env.clock.clone(),
            env.tasks.clone(),
        )?,
        settings: Arc::new(config.cloud.clone()),
    };
    if config.enabled("route") && config.configure_cloud_routes {
        if config.cluster_cidrs.is_empty() {
            return Err(CcmError::Config(
                "--configure-cloud-routes needs --cluster-cidr".into(),
            ));
        }
        start_routes(&ctx, &cc, &config);
    }
    if config.enabled("service") {
        start_services(&ctx, &cc, config.service_workers);
    }
    if config.enabled("cloud-node") {
        start_node_init(&ctx, &cc);
    }
    if config.enabled("cloud-node-lifecycle") {
        start_node_lifecycle(&ctx, &cc, config.node_monitor_period);
    }
    super::start_informers(&ctx, config.sync_timeout).await;
    env.health.set_ready(true);
    Ok(ctx)
}

/// `run`: elect on `kube-system/cloud-controller-manager`, start, serve.
pub async fn run(config: CcmConfig, env: Env) -> Result<(), CcmError> {
    if config.leader_elect
        && !super::elect(&config.client, &env, "cloud-controller-manager").await?
    {
        return Ok(());
    }
    let _ctx = start(config, &env).await?;
    super::serve_until_stopped(&env).await;
    Ok(())
}

// ------------------------------------------------------------------ routes

/// The route table(s) of the cluster's VPC: `DescribeVpcs` → VRouter →
/// `DescribeRouteTables`, as Alibaba's route controller looks them up on
/// every pass (so a VPC it may not describe stops it, S03).
async fn route_tables(cc: &CloudCtx) -> Result<Vec<String>, String> {
    let vpc = &cc.settings.vpc_id;
    let v = cc
        .cloud
        .call_with(Product::Vpc, "DescribeVpcs", &[("VpcId", vpc)])
        .await
        .map_err(|e| format!("cannot find VPC {vpc}: DescribeVpcs: {e}"))?;
    let Some(found) = items(&v, "Vpcs", "Vpc")
        .iter()
        .find(|x| x["VpcId"] == vpc.as_str())
    else {
        return Err(format!(
            "cannot find VPC {vpc}: DescribeVpcs returned no such VPC"
        ));
    };
    if !cc.settings.route_table_ids.is_empty() {
        return Ok(cc.settings.route_table_ids.clone());
    }
    let vrouter = found["VRouterId"].as_str().unwrap_or_default();
    let t = cc
        .cloud
        .call_with(
            Product::Vpc,
            "DescribeRouteTables",
            &[("VRouterId", vrouter)],
        )
        .await
        .map_err(|e| format!("cannot describe the route tables of VRouter {vrouter}: {e}"))?;
    let ids: Vec<String> = items(&t, "RouteTables", "RouteTable")
        .iter()
        .filter_map(|x| x["RouteTableId"].as_str().map(str::to_owned))
        .collect();
    if ids.is_empty() {
        return Err(format!("VRouter {vrouter} of VPC {vpc} has no route table"));
    }
    Ok(ids)
}

async fn list_routes(cc: &CloudCtx, table: &str) -> Result<Vec<CloudRoute>, String> {
    let t = cc
        .cloud
        .call_with(
            Product::Vpc,
            "DescribeRouteTables",
            &[("RouteTableId", table)],
        )
        .await
        .map_err(|e| format!("DescribeRouteTables {table}: {e}"))?;
    let mut out = Vec::new();
    for rt in items(&t, "RouteTables", "RouteTable") {
        for e in items(rt, "RouteEntrys", "RouteEntry") {
            let Some(dst) = e["DestinationCidrBlock"]
                .as_str()
                .and_then(|d| d.parse::<IpNet>().ok())
            else {
                continue;
            };
            let custom = e["Type"] == "Custom" && e["NextHopType"] == "Instance";
            out.push(CloudRoute {
                destination: dst,
                instance_id: if custom {
                    e["InstanceId"].as_str().unwrap_or_default().to_owned()
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(out)
}

/// Strategic-merge patch of one node condition (merged by `type`).
async fn patch_node_condition(
    ctx: &Ctx,
    node: &str,
    cond: &ackemu_kube::api::core::v1::NodeCondition,
) -> Result<(), ClientError> {
    let body = json!({"status": {"conditions": [cond]}});
    ctx.client
        .request(
            "PATCH",
            &format!("/api/v1/nodes/{node}/status"),
            Some((
                "application/strategic-merge-patch+json",
                body.to_string().into_bytes(),
            )),
        )
        .await
        .map(|_| ())
}

/// One reconcile of every route table; `Err` says why it stopped.
async fn route_pass(ctx: &Ctx, cc: &CloudCtx, cidrs: &[IpNet]) -> Result<(), String> {
    let tables = route_tables(cc)
        .await
        .map_err(|e| format!("error listing routes: {e}"))?;
    let nodes = ctx.inf.nodes.list();
    let refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let mut created: BTreeMap<String, bool> = BTreeMap::new();
    let mut first_err: Option<String> = None;
    for table in &tables {
        let routes = list_routes(cc, table)
            .await
            .map_err(|e| format!("error listing routes: {e}"))?;
        let plan = route::reconcile(&refs, &routes, cidrs);
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for a in plan.actions {
            match a {
                RouteAction::Delete {
                    destination,
                    instance_id,
                } => {
                    let d = destination.to_string();
                    match cc
                        .cloud
                        .call_with(
                            Product::Vpc,
                            "DeleteRouteEntry",
                            &[
                                ("RouteTableId", table),
                                ("DestinationCidrBlock", &d),
                                ("NextHopId", &instance_id),
                            ],
                        )
                        .await
                    {
                        Ok(_) => tracing::info!(
                            "route controller: deleted route {d} -> {instance_id} from route table {table}"
                        ),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            let m = format!("Could not delete route {d} -> {instance_id}: {e}");
                            tracing::error!("route controller: {m}");
                            first_err.get_or_insert(m);
                        }
                    }
                }
                RouteAction::Create {
                    node,
                    name_hint,
                    destination,
                    instance_id,
                } => {
                    let d = destination.to_string();
                    match cc
                        .cloud
                        .call_with(
                            Product::Vpc,
                            "CreateRouteEntry",
                            &[
                                ("RouteTableId", table),
                                ("DestinationCidrBlock", &d),
                                ("NextHopType", "Instance"),
                                ("NextHopId", &instance_id),
                                ("RouteEntryName", &name_hint),
                            ],
                        )
                        .await
                    {
                        Ok(_) => tracing::info!(
                            "route controller: created route for node {node} {d} with hint {name_hint} after {table}"
                        ),
                        Err(e) => {
                            let m = format!(
                                "Could not create route {name_hint} {d} for node {node}: {e}"
                            );
                            tracing::error!("route controller: {m}");
                            if let Some(n) = ctx.inf.nodes.get(&node) {
                                ctx.event(
                                    "route_controller",
                                    route::failed_event(&n, destination, &e.to_string()),
                                );
                            }
                            failed.insert(node);
                            first_err.get_or_insert(m);
                        }
                    }
                }
            }
        }
        let after = list_routes(cc, table)
            .await
            .map_err(|e| format!("error listing routes: {e}"))?;
        for (n, ok) in route::routes_created(&refs, &after) {
            let ok = ok && !failed.contains(&n);
            let e = created.entry(n).or_insert(true);
            *e = *e && ok;
        }
    }
    let now = ctx.now();
    for (name, ok) in created {
        let Some(n) = ctx.inf.nodes.get(&name) else {
            continue;
        };
        if let Some(cond) = route::network_condition(&n, ok, now)
            && let Err(e) = patch_node_condition(ctx, &name, &cond).await
        {
            tracing::warn!("route controller: updating NetworkUnavailable of node {name}: {e}");
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn start_routes(ctx: &Ctx, cc: &CloudCtx, config: &CcmConfig) {
    let kick = Arc::new(Notify::new());
    {
        let kick = kick.clone();
        ctx.inf.nodes.on(move |c| {
            let relevant = match c {
                Change::Add(_) | Change::Delete(_) => true,
                Change::Update(o, n) => {
                    o.spec.as_ref().map(|s| (&s.pod_cidrs, &s.provider_id))
                        != n.spec.as_ref().map(|s| (&s.pod_cidrs, &s.provider_id))
                }
            };
            if relevant {
                kick.notify_one();
            }
        });
    }
    let (ctx, cc) = (ctx.clone(), cc.clone());
    let period = config.route_reconciliation_period;
    let cidrs = config.cluster_cidrs.clone();
    let token = ctx.tasks.token();
    ctx.tasks.clone().spawn("route controller", async move {
        ctx.inf.nodes.wait_synced().await;
        tracing::info!(
            "Starting route controller (VPC {}, period {period:?})",
            cc.settings.vpc_id
        );
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match route_pass(&ctx, &cc, &cidrs).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    period
                }
                Err(e) => {
                    tracing::error!("Couldn't reconcile node routes: {e}");
                    let w = backoff.min(period);
                    backoff = (backoff * 2).min(period);
                    w
                }
            };
            tokio::select! {
                () = ctx.clock.sleep(wait) => {}
                () = kick.notified() => {}
                () = token.cancelled() => return,
            }
        }
    });
}

// ---------------------------------------------------------------- services

const ANNOTATION_VSWITCH: &str = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-vswitch-id";

async fn describe_lb(cc: &CloudCtx, name: &str) -> Result<Option<LbState>, CloudError> {
    let v = cc
        .cloud
        .call_with(
            Product::Slb,
            "DescribeLoadBalancers",
            &[("LoadBalancerName", name)],
        )
        .await?;
    let Some(lb) = items(&v, "LoadBalancers", "LoadBalancer").first() else {
        return Ok(None);
    };
    let id = lb["LoadBalancerId"].as_str().unwrap_or_default().to_owned();
    let a = cc
        .cloud
        .call_with(
            Product::Slb,
            "DescribeLoadBalancerAttribute",
            &[("LoadBalancerId", &id)],
        )
        .await?;
    let listeners = items(&a, "ListenerPortsAndProtocol", "ListenerPortAndProtocol")
        .iter()
        .filter_map(|l| {
            Some((
                l["ListenerPort"].as_u64()? as u16,
                (
                    l["BackendServerPort"].as_u64()? as u16,
                    l["Status"] == "running",
                ),
            ))
        })
        .collect();
    let backends = items(&a, "BackendServers", "BackendServer")
        .iter()
        .filter_map(|b| b["ServerId"].as_str().map(str::to_owned))
        .collect();
    Ok(Some(LbState {
        id,
        address: a["Address"].as_str().unwrap_or_default().to_owned(),
        listeners,
        backends,
    }))
}

/// The VSwitch a new SLB gets its address from: the Service's annotation,
/// the configured one, or the VSwitch of a backend instance.
async fn lb_vswitch(cc: &CloudCtx, svc: &Service, backends: &[String]) -> Result<String, String> {
    if let Some(v) = meta::annotation(&svc.metadata, ANNOTATION_VSWITCH) {
        return Ok(v.to_owned());
    }
    if !cc.settings.vswitch_id.is_empty() {
        return Ok(cc.settings.vswitch_id.clone());
    }
    let Some(first) = backends.first() else {
        return Err("no VSwitch for the load balancer: set --vswitch-id, or the annotation \
             service.beta.kubernetes.io/alibaba-cloud-loadbalancer-vswitch-id, or wait for a ready node"
            .into());
    };
    let ids = serde_json::to_string(&[first]).unwrap_or_default();
    let v = cc
        .cloud
        .call_with(Product::Ecs, "DescribeInstances", &[("InstanceIds", &ids)])
        .await
        .map_err(|e| e.to_string())?;
    items(&v, "Instances", "Instance")
        .first()
        .and_then(|i| i["VpcAttributes"]["VSwitchId"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no VSwitch for the load balancer: instance {first} not found"))
}

fn backend_list(ids: &[String]) -> String {
    let v: Vec<Value> = ids
        .iter()
        .map(|i| json!({"ServerId": i, "Weight": csvc::DEFAULT_WEIGHT}))
        .collect();
    Value::Array(v).to_string()
}

async fn set_finalizers(ctx: &Ctx, svc: &Service, add: bool) -> Result<(), String> {
    let (ns, name) = (meta::namespace(&svc.metadata), meta::name(&svc.metadata));
    let api = ctx
        .client
        .api::<Service>(Some(ns))
        .map_err(|e| e.to_string())?;
    for _ in 0..3 {
        let cur = match api.get(name).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(format!("getting service {ns}/{name}: {e}")),
        };
        let mut f = cur.metadata.finalizers.clone().unwrap_or_default();
        let has = f.iter().any(|x| x == csvc::FINALIZER_LB_CLEANUP);
        if has == add {
            return Ok(());
        }
        if add {
            f.push(csvc::FINALIZER_LB_CLEANUP.into());
        } else {
            f.retain(|x| x != csvc::FINALIZER_LB_CLEANUP);
        }
        let patch = json!({"metadata": {"finalizers": f, "resourceVersion": cur.metadata.resource_version}});
        match rest::patch::<Service>(&ctx.client, Some(ns), name, "", &patch).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(format!("updating finalizers of service {ns}/{name}: {e}")),
        }
    }
    Err(format!(
        "updating finalizers of service {ns}/{name}: conflicts"
    ))
}

/// `syncLoadBalancerIfNeeded` for one Service.
async fn sync_service(ctx: &Ctx, cc: &CloudCtx, key: &str) -> Result<Next, String> {
    let Some(svc) = ctx.inf.services.get(key) else {
        return Ok(Next::Done);
    };
    if !csvc::is_load_balancer(&svc) && !csvc::needs_cleanup(&svc) {
        return Ok(Next::Done);
    }
    let nodes = ctx.inf.nodes.list();
    let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let name = meta::name(&svc.metadata).to_owned();
    let slices: Vec<Arc<EndpointSlice>> = ctx
        .inf
        .endpointslices
        .list_ns(meta::namespace(&svc.metadata))
        .into_iter()
        .filter(|s| {
            meta::labels(&s.metadata)
                .get("kubernetes.io/service-name")
                .is_some_and(|n| *n == name)
        })
        .collect();
    let slice_refs: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
    let want = csvc::desired(&svc, &node_refs, &slice_refs);
    let fail = |e: String| {
        ctx.event(
            "service-controller",
            csvc::failed_event(&svc, &format!("failed to ensure load balancer: {e}")),
        );
        e
    };
    for _round in 0..3 {
        let current = describe_lb(cc, &csvc::lb_name(&svc))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let actions = csvc::plan(&svc, want.clone(), current.as_ref());
        let mut created = false;
        for a in actions {
            match a {
                LbAction::Event(e) => ctx.event("service-controller", e),
                LbAction::AddFinalizer => set_finalizers(ctx, &svc, true).await.map_err(fail)?,
                LbAction::RemoveFinalizer => {
                    set_finalizers(ctx, &svc, false).await.map_err(fail)?
                }
                LbAction::CreateLoadBalancer { name } => {
                    let backends: Vec<String> = want
                        .as_ref()
                        .map(|w| w.backends.iter().cloned().collect())
                        .unwrap_or_default();
                    let vsw = lb_vswitch(cc, &svc, &backends).await.map_err(fail)?;
                    let r = cc
                        .cloud
                        .call_with(
                            Product::Slb,
                            "CreateLoadBalancer",
                            &[
                                ("LoadBalancerName", &name),
                                ("VSwitchId", &vsw),
                                ("AddressType", "intranet"),
                            ],
                        )
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    tracing::info!(
                        "service controller: created load balancer {} ({}) for service {key}",
                        r["LoadBalancerId"].as_str().unwrap_or_default(),
                        r["Address"].as_str().unwrap_or_default()
                    );
                    created = true;
                }
                LbAction::CreateListener {
                    lb,
                    port,
                    backend_port,
                } => {
                    let (p, bp) = (port.to_string(), backend_port.to_string());
                    cc.cloud
                        .call_with(
                            Product::Slb,
                            "CreateLoadBalancerTCPListener",
                            &[
                                ("LoadBalancerId", &lb),
                                ("ListenerPort", &p),
                                ("BackendServerPort", &bp),
                            ],
                        )
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                LbAction::SetListener {
                    lb,
                    port,
                    backend_port,
                } => {
                    let (p, bp) = (port.to_string(), backend_port.to_string());
                    cc.cloud
                        .call_with(
                            Product::Slb,
                            "SetLoadBalancerTCPListenerAttribute",
                            &[
                                ("LoadBalancerId", &lb),
                                ("ListenerPort", &p),
                                ("BackendServerPort", &bp),
                            ],
                        )
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                LbAction::StartListener { lb, port } => {
                    let p = port.to_string();
                    cc.cloud
                        .call_with(
                            Product::Slb,
                            "StartLoadBalancerListener",
                            &[("LoadBalancerId", &lb), ("ListenerPort", &p)],
                        )
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                LbAction::DeleteListener { lb, port } => {
                    let p = port.to_string();
                    cc.cloud
                        .call_with(
                            Product::Slb,
                            "DeleteLoadBalancerListener",
                            &[("LoadBalancerId", &lb), ("ListenerPort", &p)],
                        )
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                LbAction::SetBackends { lb, add, remove } => {
                    if !remove.is_empty() {
                        cc.cloud
                            .call_with(
                                Product::Slb,
                                "RemoveBackendServers",
                                &[
                                    ("LoadBalancerId", &lb),
                                    ("BackendServers", &backend_list(&remove)),
                                ],
                            )
                            .await
                            .map_err(|e| fail(e.to_string()))?;
                    }
                    if !add.is_empty() {
                        cc.cloud
                            .call_with(
                                Product::Slb,
                                "AddBackendServers",
                                &[
                                    ("LoadBalancerId", &lb),
                                    ("BackendServers", &backend_list(&add)),
                                ],
                            )
                            .await
                            .map_err(|e| fail(e.to_string()))?;
                    }
                }
                LbAction::UpdateStatus(st) => {
                    let ns = meta::namespace(&svc.metadata);
                    let patch = json!({"status": {"loadBalancer": st}});
                    rest::patch::<Service>(&ctx.client, Some(ns), &name, "status", &patch)
                        .await
                        .map_err(|e| fail(format!("updating status of service {key}: {e}")))?;
                }
                LbAction::DeleteLoadBalancer { lb } => {
                    match cc
                        .cloud
                        .call_with(
                            Product::Slb,
                            "DeleteLoadBalancer",
                            &[("LoadBalancerId", &lb)],
                        )
                        .await
                    {
                        Ok(_) => tracing::info!(
                            "service controller: deleted load balancer {lb} of service {key}"
                        ),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(fail(e.to_string())),
                    }
                }
            }
        }
        if !created {
            break;
        }
    }
    Ok(Next::Done)
}

fn start_services(ctx: &Ctx, cc: &CloudCtx, workers: usize) {
    let q = Queue::new("service", ctx);
    {
        let q = q.clone();
        ctx.inf.services.on(move |c| {
            let s = match c {
                Change::Add(s) | Change::Update(_, s) | Change::Delete(s) => s,
            };
            if csvc::is_load_balancer(s)
                || meta::has_finalizer(&s.metadata, csvc::FINALIZER_LB_CLEANUP)
            {
                q.add(&meta::key(&s.metadata));
            }
        });
    }
    {
        let (q, c2) = (q.clone(), ctx.clone());
        ctx.inf.nodes.on(move |c| {
            let changed = match c {
                Change::Add(n) | Change::Delete(n) => csvc::eligible(n),
                Change::Update(o, n) => csvc::eligible(o) != csvc::eligible(n),
            };
            if changed {
                for s in c2.inf.services.list() {
                    if csvc::is_load_balancer(&s) {
                        q.add(&meta::key(&s.metadata));
                    }
                }
            }
        });
    }
    {
        let q = q.clone();
        ctx.inf.endpointslices.on(move |c| {
            let s = match c {
                Change::Add(s) | Change::Update(_, s) | Change::Delete(s) => s,
            };
            if let Some(svc) = meta::labels(&s.metadata).get("kubernetes.io/service-name") {
                q.add(&format!("{}/{svc}", meta::namespace(&s.metadata)));
            }
        });
    }
    let (c2, cc) = (ctx.clone(), cc.clone());
    q.run(workers, move |key| {
        let (ctx, cc) = (c2.clone(), cc.clone());
        async move {
            ctx.inf.services.wait_synced().await;
            ctx.inf.nodes.wait_synced().await;
            sync_service(&ctx, &cc, &key).await
        }
    });
}

// ------------------------------------------------------------------- nodes

fn parse_instance(v: &Value) -> Instance {
    let s = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    Instance {
        id: s(&v["InstanceId"]),
        status: s(&v["Status"]),
        instance_type: s(&v["InstanceType"]),
        region: s(&v["RegionId"]),
        zone: s(&v["ZoneId"]),
        private_ip: s(&v["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]),
        hostname: s(&v["HostName"]),
    }
}

async fn describe_instances(
    cc: &CloudCtx,
    params: &[(&str, &str)],
) -> Result<Vec<Instance>, CloudError> {
    let v = cc
        .cloud
        .call_with(Product::Ecs, "DescribeInstances", params)
        .await?;
    Ok(items(&v, "Instances", "Instance")
        .iter()
        .map(parse_instance)
        .collect())
}

/// The instance behind a node: by providerID, else by InternalIP or name
/// among the VPC's instances.
async fn find_instance(cc: &CloudCtx, node: &Node) -> Result<Option<Instance>, CloudError> {
    if let Some(id) = instance_id(node) {
        let ids = serde_json::to_string(&[&id]).unwrap_or_default();
        return Ok(describe_instances(cc, &[("InstanceIds", &ids)])
            .await?
            .into_iter()
            .find(|i| i.id == id));
    }
    let mut params: Vec<(&str, &str)> = Vec::new();
    if !cc.settings.vpc_id.is_empty() {
        params.push(("VpcId", &cc.settings.vpc_id));
    }
    let all = describe_instances(cc, &params).await?;
    let name = meta::name(&node.metadata);
    let ip = internal_ip(node);
    Ok(all.into_iter().find(|i| {
        ip.as_deref() == Some(i.private_ip.as_str())
            || i.hostname == name
            || name
                .rsplit_once('.')
                .is_some_and(|(_, x)| x == i.private_ip)
            || name == i.private_ip
    }))
}

async fn init_node(ctx: &Ctx, cc: &CloudCtx, name: &str) -> Result<Next, String> {
    let Some(node) = ctx.inf.nodes.get(name) else {
        return Ok(Next::Done);
    };
    if !cnode::uninitialized(&node) {
        return Ok(Next::Done);
    }
    let inst = find_instance(cc, &node)
        .await
        .map_err(|e| format!("failed to initialize node {name}: {e}"))?;
    let Some(inst) = inst else {
        return Err(format!(
            "failed to initialize node {name}: failed to get instance metadata: instance not found"
        ));
    };
    let Some(done) = cnode::initialize(&node, &inst) else {
        return Ok(Next::Done);
    };
    let spec = done.spec.clone().unwrap_or_default();
    let patch = json!({
        "metadata": {"labels": done.metadata.labels, "resourceVersion": node.metadata.resource_version},
        "spec": {"providerID": spec.provider_id, "taints": spec.taints.unwrap_or_default()},
    });
    rest::patch::<Node>(&ctx.client, None, name, "", &patch)
        .await
        .map_err(|e| format!("failed to initialize node {name}: {e}"))?;
    let addrs = done.status.as_ref().and_then(|s| s.addresses.clone());
    rest::patch::<Node>(
        &ctx.client,
        None,
        name,
        "status",
        &json!({"status": {"addresses": addrs}}),
    )
    .await
    .map_err(|e| format!("failed to set addresses of node {name}: {e}"))?;
    tracing::info!(
        "Successfully initialized node {name} with cloud provider (instance {}, type {}, zone {})",
        inst.id,
        inst.instance_type,
        inst.zone
    );
    Ok(Next::Done)
}

fn start_node_init(ctx: &Ctx, cc: &CloudCtx) {
    let q = Queue::new("cloud-node", ctx);
    {
        let q = q.clone();
        ctx.inf.nodes.on(move |c| {
            if let Change::Add(n) | Change::Update(_, n) = c
                && cnode::uninitialized(n)
            {
                q.add(meta::name(&n.metadata));
            }
        });
    }
    let (c2, cc) = (ctx.clone(), cc.clone());
    q.run(1, move |name| {
        let (ctx, cc) = (c2.clone(), cc.clone());
        async move {
            ctx.inf.nodes.wait_synced().await;
            init_node(&ctx, &cc, &name).await
        }
    });
}

async fn lifecycle_pass(ctx: &Ctx, cc: &CloudCtx) -> Result<(), String> {
    let nodes = ctx.inf.nodes.list();
    let not_ready: Vec<(Arc<Node>, String)> = nodes
        .iter()
        .filter(|n| {
            crate::nodelifecycle::node_condition(n, "Ready").is_none_or(|c| c.status != "True")
        })
        .filter_map(|n| instance_id(n).map(|id| (n.clone(), id)))
        .collect();
    let mut found: BTreeMap<String, Instance> = BTreeMap::new();
    if !not_ready.is_empty() {
        let ids: Vec<&str> = not_ready.iter().map(|(_, id)| id.as_str()).collect();
        let ids = serde_json::to_string(&ids).unwrap_or_default();
        for i in describe_instances(cc, &[("InstanceIds", &ids)])
            .await
            .map_err(|e| format!("error checking the existence of nodes' instances: {e}"))?
        {
            found.insert(i.id.clone(), i);
        }
    }
    let by_name: BTreeMap<&str, &str> = not_ready
        .iter()
        .map(|(n, id)| (meta::name(&n.metadata), id.as_str()))
        .collect();
    for n in &nodes {
        let name = meta::name(&n.metadata);
        let inst = by_name.get(name).and_then(|id| found.get(*id));
        if !by_name.contains_key(name) && instance_id(n).is_none() {
            continue;
        }
        for a in cnode::lifecycle(n, inst) {
            match a {
                NodeLifecycleAction::Event(e) => ctx.event("cloud-node-lifecycle-controller", e),
                NodeLifecycleAction::DeleteNode { name, uid } => {
                    let info = rest::info_of::<Node>(&ctx.client).map_err(|e| e.to_string())?;
                    rest::delete(&ctx.client, &info, None, &name, rest::Del::uid(&uid))
                        .await
                        .map_err(|e| format!("deleting node {name}: {e}"))?;
                    tracing::info!(
                        "cloud node lifecycle: deleted node {name} because its instance does not exist in the cloud provider"
                    );
                }
                NodeLifecycleAction::PatchTaints { node, add, remove } => {
                    super::nodes::patch_taints(ctx, &node, &add, &remove).await?
                }
            }
        }
    }
    Ok(())
}

fn start_node_lifecycle(ctx: &Ctx, cc: &CloudCtx, period: Duration) {
    ctx.inf.nodes.require();
    let (ctx, cc) = (ctx.clone(), cc.clone());
    let token = ctx.tasks.token();
    ctx.tasks.clone().spawn("cloud node lifecycle", async move {
        ctx.inf.nodes.wait_synced().await;
        let mut tick = ctx.clock.interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => return,
            }
            if let Err(e) = lifecycle_pass(&ctx, &cc).await {
                tracing::error!("cloud node lifecycle: {e}");
            }
        }
    });
}

/// An Event about a node (for drivers outside this module).
pub fn node_event(node: &Node, reason: &str, message: String) -> Event {
    let mut r = ObjectRef::new("v1", "Node", &node.metadata);
    r.uid = r.name.clone();
    Event::normal(r, reason, message)
}
