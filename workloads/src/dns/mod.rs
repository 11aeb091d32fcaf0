//! Cluster DNS (the CoreDNS `kubernetes` plugin's behaviour): the zone
//! (pure), the UDP/TCP server that serves it, and the feed that rebuilds it
//! from Services, Endpoints and Pods watched through the API.

pub mod feed;
pub mod server;
pub mod zone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ackemu_base::{CommonArgs, Env};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;

/// `dns` flags.
#[derive(Parser, Debug)]
#[command(
    name = "dns",
    about = "cluster DNS: *.svc.<cluster-domain> from the API"
)]
pub struct Args {
    /// DNS address (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// The cluster domain.
    #[arg(long, alias = "domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Serve a fixed zone from this JSON file ({services, endpoints})
    /// instead of watching the API.
    #[arg(long)]
    pub static_zone: Option<PathBuf>,
    /// Reach the API server with this kubeconfig instead of the pod's
    /// service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Pod records: insecure, verified or disabled.
    #[arg(long, default_value = "insecure")]
    pub pods: zone::PodsMode,
    /// Resolvers for names outside the cluster domain.
    #[arg(long)]
    pub upstream: Vec<SocketAddr>,
    /// Readiness (`/ready`, CoreDNS `ready` plugin); empty to disable.
    #[arg(long, default_value = "0.0.0.0:8181")]
    pub ready_listen: String,
    /// Liveness (`/health`, CoreDNS `health` plugin); empty to disable.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_listen: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `dns [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args =
        Args::try_parse_from(std::iter::once("dns".to_string()).chain(args.iter().cloned()))?;
    let env = Env::init("coredns", &args.common).await?;
    let cfg = server::Config {
        upstreams: args.upstream.clone(),
        ..server::Config::default()
    };
    let (handle, ready) = match &args.static_zone {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let z: StaticZone =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let zone = zone::Zone::build(&args.cluster_domain, &z.services, &z.endpoints);
            let (tx, rx) = tokio::sync::watch::channel(true);
            drop(tx);
            (server::ZoneHandle::new(zone), rx)
        }
        None => {
            let client = crate::kube::connect(args.kubeconfig.as_deref(), &env.clock, &env.tasks)?;
            let handle = server::ZoneHandle::new(zone::Zone::new(&args.cluster_domain));
            let ready = feed::start(
                &client,
                feed::Config {
                    domain: args.cluster_domain.clone(),
                    pods: args.pods,
                },
                handle.clone(),
                &env.tasks,
            )?;
            (handle, ready)
        }
    };
    let bound = server::serve(args.listen, handle, cfg, &env.tasks)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
    if !args.ready_listen.is_empty() {
        let ready = ready.clone();
        let app = Router::new().route(
            "/ready",
            get(move || {
                let ok = *ready.borrow();
                async move {
                    if ok {
                        (StatusCode::OK, "OK".to_string())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "kubernetes".to_string())
                    }
                }
            }),
        );
        let addr = serve_http(&args.ready_listen, app, &env).await?;
        println!("ready on {addr}");
    }
    if !args.health_listen.is_empty() {
        let app = Router::new().route("/health", get(|| async { "OK" }));
        let addr = serve_http(&args.health_listen, app, &env).await?;
        println!("health on {addr}");
    }
    println!("serving DNS for {} on {bound}", args.cluster_domain);
    env.tasks.cancelled().await;
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Bind `addr` and serve `app` until shutdown; returns the bound address.
pub(crate) async fn serve_http(addr: &str, app: Router, env: &Env) -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))?;
    let bound = l.local_addr()?;
    let token = env.tasks.token();
    env.tasks.spawn(format!("http {bound}"), async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    Ok(bound)
}

/// A zone file for `dns --static-zone`.
#[derive(serde::Deserialize)]
struct StaticZone {
    #[serde(default)]
    services: Vec<k8s_openapi::api::core::v1::Service>,
    #[serde(default)]
    endpoints: Vec<k8s_openapi::api::core::v1::Endpoints>,
}
