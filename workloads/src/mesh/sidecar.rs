//! `sidecar`: the `istio-proxy` container — pilot-agent and an envoy-like
//! proxy in one process. It resolves `--discoveryAddress`
//! (`istio-pilot.istio-system:15010`) through the pod's resolv.conf at
//! start and every `--dns-refresh-rate`, long-polls Pilot for clusters
//! (CDS) and listeners (LDS), accepting or rejecting each update as Envoy
//! counts them (`cluster_manager.cds.update_success`/`_rejected`, …, on the
//! admin port's `/stats`). pilot-agent's `/healthz/ready` on `--statusPort`
//! (15020) answers 200 once both were received, else 503 with Istio's
//! `Envoy proxy is NOT ready: config not received from Pilot (is Pilot
//! running?): …` text, which it also logs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::{CommonArgs, Env};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::kube::istio_log;

/// `sidecar` flags (pilot-agent's names).
#[derive(Parser, Debug, Clone)]
#[command(name = "sidecar")]
pub struct Args {
    /// Pilot's discovery address.
    #[arg(
        long = "discoveryAddress",
        alias = "discovery-address",
        default_value = "istio-pilot.istio-system:15010"
    )]
    pub discovery_address: String,
    /// pilot-agent's status port (`/healthz/ready`).
    #[arg(long = "statusPort", alias = "status-port", default_value_t = 15020)]
    pub status_port: u16,
    /// Address the status port binds.
    #[arg(long, default_value = "0.0.0.0")]
    pub status_bind_address: String,
    /// Envoy's admin address (`/stats`, `/server_info`, `/config_dump`).
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_address: String,
    /// How often the discovery address is resolved again (cluster time).
    #[arg(long, default_value = "5s", value_parser = super::duration)]
    pub dns_refresh_rate: Duration,
    /// The cluster domain (for the node id).
    #[arg(long, default_value = "cluster.local")]
    pub domain: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Default)]
struct Counters {
    success: AtomicU64,
    rejected: AtomicU64,
}

struct Ctx {
    cds: Counters,
    lds: Counters,
    config: RwLock<(Value, Value)>,
    clock: Clock,
    /// Last readiness log line (logged on change and every probe, like pilot-agent).
    last: Mutex<String>,
}

impl Ctx {
    fn not_ready(&self) -> Option<String> {
        let (cs, cr) = (
            self.cds.success.load(Ordering::Relaxed),
            self.cds.rejected.load(Ordering::Relaxed),
        );
        let (ls, lr) = (
            self.lds.success.load(Ordering::Relaxed),
            self.lds.rejected.load(Ordering::Relaxed),
        );
        (cs == 0 || ls == 0).then(|| {
            format!(
                "config not received from Pilot (is Pilot running?): cds updates: {cs} successful, {cr} rejected; lds updates: {ls} successful, {lr} rejected"
            )
        })
    }
}

/// Whether an update is acceptable to Envoy: every resource has a name.
fn accept(resources: &Value) -> Result<(), String> {
    let list = resources.as_array().ok_or("resources is not a list")?;
    for r in list {
        if r["name"].as_str().is_none_or(str::is_empty) {
            return Err("resource without a name".into());
        }
    }
    Ok(())
}

/// `sidecar [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args =
        Args::try_parse_from(std::iter::once("sidecar".to_string()).chain(args.iter().cloned()))?;
    let env = Env::init("sidecar", &args.common).await?;
    let clock = env.clock.clone();
    let ns = crate::kube::own_namespace(None, "default");
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "sidecar".into());
    let ip = std::env::var("INSTANCE_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let node = format!("sidecar~{ip}~{pod}.{ns}~{ns}.svc.{}", args.domain);
    let ctx = Arc::new(Ctx {
        cds: Counters::default(),
        lds: Counters::default(),
        config: RwLock::new((json!([]), json!([]))),
        clock: clock.clone(),
        last: Mutex::new(String::new()),
    });
    let status = Router::new()
        .route("/healthz/ready", get(ready))
        .with_state(ctx.clone());
    let s = crate::dns::serve_http(
        &format!("{}:{}", args.status_bind_address, args.status_port),
        status,
        &env,
    )
    .await?;
    let admin = Router::new()
        .route("/stats", get(stats))
        .route(
            "/server_info",
            get(|| async { axum::Json(json!({"state": "LIVE"})) }),
        )
        .route("/config_dump", get(config_dump))
        .with_state(ctx.clone());
    let a = crate::dns::serve_http(&args.admin_address, admin, &env).await?;
    istio_log(
        &clock,
        "info",
        &format!("pilot-agent status server on {s}, envoy admin on {a}, node {node}"),
    );
    println!("sidecar status on {s}");

    let (host, port) = args.discovery_address.rsplit_once(':').ok_or_else(|| {
        anyhow::anyhow!(
            "--discoveryAddress {:?}: expected host:port",
            args.discovery_address
        )
    })?;
    let port: u16 = port
        .parse()
        .map_err(|e| anyhow::anyhow!("--discoveryAddress port: {e}"))?;
    let resolved: Arc<RwLock<Option<SocketAddr>>> = Arc::new(RwLock::new(None));
    {
        let (host, resolved, clock, token) = (
            host.to_owned(),
            resolved.clone(),
            clock.clone(),
            env.tasks.token(),
        );
        let rate = args.dns_refresh_rate;
        env.tasks.spawn("sidecar/dns", async move {
            let mut tick = clock.interval(rate);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = token.cancelled() => return,
                }
                let r = crate::toolbox::wget::resolve(&host)
                    .await
                    .map(|ip| SocketAddr::new(ip, port));
                if r.is_none() {
                    istio_log(&clock, "warn", &format!("dns resolution for {host} failed"));
                }
                *resolved.write() = r;
            }
        });
    }
    for ty in ["cds", "lds"] {
        let (ctx, resolved, node, token) = (
            ctx.clone(),
            resolved.clone(),
            node.clone(),
            env.tasks.token(),
        );
        let tasks = env.tasks.clone();
        env.tasks.spawn(format!("sidecar/{ty}"), async move {
            let mut version = String::new();
            let mut error = String::new();
            loop {
                if token.is_cancelled() {
                    return;
                }
                let Some(addr) = *resolved.read() else {
                    ctx.clock.sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let url = format!(
                    "http://{addr}/xds/{ty}?node={}&version={}&error={}",
                    enc(&node),
                    enc(&version),
                    enc(&error)
                );
                let _ = &tasks;
                match crate::toolbox::wget::fetch(&url, Duration::from_secs(60)).await {
                    Ok((200, body)) => {
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let counters = if ty == "cds" { &ctx.cds } else { &ctx.lds };
                        match accept(&v["resources"]) {
                            Ok(()) => {
                                counters.success.fetch_add(1, Ordering::Relaxed);
                                version = v["versionInfo"].as_str().unwrap_or("").to_owned();
                                error.clear();
                                let mut c = ctx.config.write();
                                if ty == "cds" {
                                    c.0 = v["resources"].clone()
                                } else {
                                    c.1 = v["resources"].clone()
                                }
                            }
                            Err(e) => {
                                counters.rejected.fetch_add(1, Ordering::Relaxed);
                                error = e;
                            }
                        }
                    }
                    Ok((204, _)) => {}
                    Ok((code, _)) => {
                        istio_log(
                            &ctx.clock,
                            "warn",
                            &format!("{ty} request to {addr} failed: HTTP {code}"),
                        );
                        ctx.clock.sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        istio_log(
                            &ctx.clock,
                            "warn",
                            &format!("gRPC config stream closed: 14, {e}"),
                        );
                        ctx.clock.sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    env.tasks.cancelled().await;
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.not_ready() {
        None => StatusCode::OK.into_response(),
        Some(why) => {
            let msg = format!("Envoy proxy is NOT ready: {why}");
            istio_log(&ctx.clock, "warn", &msg);
            *ctx.last.lock() = msg.clone();
            (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
        }
    }
}

async fn stats(State(ctx): State<Arc<Ctx>>) -> String {
    let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
    format!(
        "cluster_manager.cds.update_rejected: {}\ncluster_manager.cds.update_success: {}\nlistener_manager.lds.update_rejected: {}\nlistener_manager.lds.update_success: {}\nserver.state: 0\n",
        l(&ctx.cds.rejected),
        l(&ctx.cds.success),
        l(&ctx.lds.rejected),
        l(&ctx.lds.success)
    )
}

async fn config_dump(State(ctx): State<Arc<Ctx>>) -> axum::Json<Value> {
    let c = ctx.config.read();
    axum::Json(json!({"configs": [{"clusters": c.0}, {"listeners": c.1}]}))
}
