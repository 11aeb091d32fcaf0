//! `pilot`: mesh discovery. It watches Services and Endpoints and serves
//! the resulting clusters (CDS) and listeners (LDS) on `--grpcAddr`
//! (:15010) to sidecars that ask with their node identity
//! (`sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`). The protocol is
//! xDS's state machine over HTTP long-polls: `GET /xds/<cds|lds>?node=…&
//! version=…&nonce=…[&error=…]` answers when the config version differs
//! from the one the sidecar holds (the request after a response is its
//! ACK, or NACK with `error`). Pushes, ACKs and NACKs are counted
//! (`pilot_xds_pushes{type=…}`, `pilot_total_xds_rejects` on the
//! monitoring port; connected proxies on `/debug/adsz`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_kube::client::ListParams;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::kube::istio_log;

/// `pilot` flags (Istio 1.x `pilot-discovery discovery` names).
#[derive(Parser, Debug, Clone)]
#[command(name = "pilot")]
pub struct Args {
    /// Use this kubeconfig instead of the in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Discovery (xDS) address.
    #[arg(
        long = "grpcAddr",
        alias = "grpc-addr",
        default_value = "0.0.0.0:15010"
    )]
    pub grpc_addr: String,
    /// Debug address (`/debug/adsz`).
    #[arg(long = "httpAddr", alias = "http-addr", default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Monitoring address (`/metrics`).
    #[arg(
        long = "monitoringAddr",
        alias = "monitoring-addr",
        default_value = "0.0.0.0:15014"
    )]
    pub monitoring_addr: String,
    /// The cluster domain.
    #[arg(long = "domain", default_value = "cluster.local")]
    pub domain: String,
    /// How long a discovery request waits for a change (cluster time).
    #[arg(long, default_value = "30s", value_parser = super::duration)]
    pub long_poll: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The pushed configuration: (version, clusters, listeners).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub version: u64,
    pub clusters: Vec<Value>,
    pub listeners: Vec<Value>,
}

/// Clusters and listeners for the mesh's Services (pure).
pub fn build(
    domain: &str,
    services: &[Service],
    endpoints: &[Endpoints],
) -> (Vec<Value>, Vec<Value>) {
    let eps: BTreeMap<(String, String), &Endpoints> = endpoints
        .iter()
        .filter_map(|e| Some(((e.metadata.namespace.clone()?, e.metadata.name.clone()?), e)))
        .collect();
    let (mut clusters, mut listeners) = (Vec::new(), Vec::new());
    for s in services {
        let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) else {
            continue;
        };
        let spec = s.spec.clone().unwrap_or_default();
        let host = format!("{name}.{ns}.svc.{domain}");
        let addrs: Vec<String> = eps
            .get(&(ns.clone(), name.clone()))
            .and_then(|e| e.subsets.clone())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|ss| ss.addresses.unwrap_or_default())
            .map(|a| a.ip)
            .collect();
        for p in spec.ports.unwrap_or_default() {
            let cluster = format!("outbound|{}||{host}", p.port);
            clusters.push(json!({"name": cluster, "type": "EDS", "endpoints": addrs}));
            let ip = spec
                .cluster_ip
                .clone()
                .filter(|i| i != "None" && !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            listeners.push(json!({"name": format!("{ip}_{}", p.port), "address": ip, "port": p.port, "cluster": cluster}));
        }
    }
    (clusters, listeners)
}

struct Proxy {
    node: String,
    connected_at: String,
    acked: BTreeMap<String, String>,
}

struct Ctx {
    config: watch::Receiver<Config>,
    pushes: BTreeMap<&'static str, AtomicU64>,
    rejects: AtomicU64,
    proxies: Mutex<BTreeMap<String, Proxy>>,
    clock: ackemu_base::clock::Clock,
    long_poll: Duration,
}

/// `pilot [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args =
        Args::try_parse_from(std::iter::once("pilot".to_string()).chain(args.iter().cloned()))?;
    let env = Env::init("pilot", &args.common).await?;
    let clock = env.clock.clone();
    let client = crate::kube::connect(args.kubeconfig.as_deref(), &clock, &env.tasks)?;
    let mut svcs =
        crate::kube::reflect::<Service>(&client, None, ListParams::default(), &env.tasks)?;
    let mut eps =
        crate::kube::reflect::<Endpoints>(&client, None, ListParams::default(), &env.tasks)?;
    let (tx, rx) = watch::channel(Config::default());
    let domain = args.domain.clone();
    let token = env.tasks.token();
    env.tasks.spawn("pilot/config", async move {
        loop {
            if *svcs.synced.borrow() && *eps.synced.borrow() {
                let (c, l) = build(
                    &domain,
                    &crate::kube::typed(&svcs.store),
                    &crate::kube::typed(&eps.store),
                );
                tx.send_if_modified(|cur| {
                    if cur.version > 0 && cur.clusters == c && cur.listeners == l {
                        return false;
                    }
                    *cur = Config {
                        version: cur.version + 1,
                        clusters: c,
                        listeners: l,
                    };
                    true
                });
            }
            let alive = tokio::select! {
                biased;
                () = token.cancelled() => return,
                n = svcs.notifications.recv() => n.is_some(),
                n = eps.notifications.recv() => n.is_some(),
                r = svcs.synced.changed() => r.is_ok(),
                r = eps.synced.changed() => r.is_ok(),
            };
            if !alive {
                return;
            }
            while svcs.notifications.try_recv().is_ok() || eps.notifications.try_recv().is_ok() {}
        }
    });
    let ctx = Arc::new(Ctx {
        config: rx,
        pushes: [("cds", AtomicU64::new(0)), ("lds", AtomicU64::new(0))]
            .into_iter()
            .collect(),
        rejects: AtomicU64::new(0),
        proxies: Mutex::new(BTreeMap::new()),
        clock: clock.clone(),
        long_poll: args.long_poll,
    });
    let xds = Router::new()
        .route("/xds/{type}", get(discovery))
        .with_state(ctx.clone());
    let a = crate::dns::serve_http(&args.grpc_addr, xds, &env).await?;
    let debug = Router::new()
        .route("/debug/adsz", get(adsz))
        .with_state(ctx.clone());
    let d = crate::dns::serve_http(&args.http_addr, debug, &env).await?;
    let mon = Router::new()
        .route("/metrics", get(metrics))
        .with_state(ctx.clone());
    let m = crate::dns::serve_http(&args.monitoring_addr, mon, &env).await?;
    istio_log(
        &clock,
        "info",
        &format!("Discovery service started at {a} (debug {d}, monitoring {m})"),
    );
    println!("pilot discovery on {a}");
    env.health.set_ready(true);
    env.tasks.cancelled().await;
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn discovery(
    State(ctx): State<Arc<Ctx>>,
    Path(ty): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(counter) = ctx.pushes.get(ty.as_str()) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown type {ty:?}: expected cds or lds"),
        )
            .into_response();
    };
    let Some(node) = q.get("node").filter(|n| n.split('~').count() == 4) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing node id: expected <type>~<ip>~<id>~<domain>",
        )
            .into_response();
    };
    let have = q.get("version").cloned().unwrap_or_default();
    {
        let mut proxies = ctx.proxies.lock();
        let p = proxies.entry(node.clone()).or_insert_with(|| Proxy {
            node: node.clone(),
            connected_at: ctx.clock.wall_chrono().to_rfc3339(),
            acked: BTreeMap::new(),
        });
        if let Some(err) = q.get("error").filter(|e| !e.is_empty()) {
            ctx.rejects.fetch_add(1, Ordering::Relaxed);
            istio_log(
                &ctx.clock,
                "warn",
                &format!("ADS:{}: ACK ERROR {node} {err}", ty.to_uppercase()),
            );
        } else if !have.is_empty() {
            p.acked.insert(ty.clone(), have.clone());
        }
    }
    let mut rx = ctx.config.clone();
    let differs = |c: &Config| c.version > 0 && c.version.to_string() != have;
    let wait = rx.wait_for(differs);
    let cfg = match ctx.clock.timeout(ctx.long_poll, wait).await {
        Ok(Ok(c)) => c.clone(),
        // Nothing new: the sidecar asks again.
        _ => return StatusCode::NO_CONTENT.into_response(),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let resources = if ty == "cds" {
        cfg.clusters
    } else {
        cfg.listeners
    };
    let body = json!({
        "versionInfo": cfg.version.to_string(),
        "nonce": format!("{}-{}", ty, cfg.version),
        "typeUrl": if ty == "cds" { "type.googleapis.com/envoy.api.v2.Cluster" } else { "type.googleapis.com/envoy.api.v2.Listener" },
        "resources": resources,
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn adsz(State(ctx): State<Arc<Ctx>>) -> Response {
    let proxies = ctx.proxies.lock();
    let clients: Vec<Value> = proxies
        .values()
        .map(|p| json!({"node": p.node, "connectedAt": p.connected_at, "acked": p.acked}))
        .collect();
    axum::Json(json!({"totalClients": clients.len(), "clients": clients})).into_response()
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> String {
    let mut out = String::from(
        "# HELP pilot_xds_pushes Pilot build and send errors for lds, rds, cds and eds.\n# TYPE pilot_xds_pushes counter\n",
    );
    for (t, c) in &ctx.pushes {
        out.push_str(&format!(
            "pilot_xds_pushes{{type=\"{t}\"}} {}\n",
            c.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "# TYPE pilot_total_xds_rejects counter\npilot_total_xds_rejects {}\n# TYPE pilot_xds gauge\npilot_xds {}\n",
        ctx.rejects.load(Ordering::Relaxed),
        ctx.proxies.lock().len()
    ));
    out
}
