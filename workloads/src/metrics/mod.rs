//! metrics-server: an aggregated API server for `metrics.k8s.io/v1beta1`
//! over HTTPS. Every `--metric-resolution` it scrapes each Node's kubelet
//! `/stats/summary` (address by `--kubelet-preferred-address-types`, port
//! `--kubelet-port` or the node's `kubeletEndpoint`) with its service-account
//! credentials, and serves NodeMetrics/PodMetrics from the latest points.
//! Callers come through the API server's aggregator: the front-proxy
//! headers name the user (trusted only with a verified client certificate
//! when `--requestheader-client-ca-file` is set), and every request is
//! authorized with a SubjectAccessReview, as metrics-server delegates it.

pub mod summary;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_base::tasks::Tasks;
use ackemu_base::{CommonArgs, Env};
use ackemu_kube::LabelSelector;
use ackemu_kube::client::informer::Store;
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;
use k8s_openapi::api::core::v1::{Node, Pod};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::https::{self, PeerCert, ServingCert};
use summary::{NodeScrape, Summary};

/// `metrics-server` flags (metrics-server's names).
#[derive(Parser, Debug, Clone)]
#[command(name = "metrics-server")]
pub struct Args {
    /// The HTTPS port.
    #[arg(long, default_value_t = 10250)]
    pub secure_port: u16,
    /// The address to serve on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Serving certificate (PEM); a self-signed one is generated without it.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Use this kubeconfig instead of the pod's service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Scrape interval (cluster time).
    #[arg(long, default_value = "15s", value_parser = ackemu_base::clock::parse_duration)]
    pub metric_resolution: Duration,
    /// Do not verify kubelets' serving certificates.
    #[arg(long)]
    pub kubelet_insecure_tls: bool,
    /// CA bundle for kubelets' serving certificates (default: the cluster CA).
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// The kubelet port.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Use the port in the Node's status.daemonEndpoints.kubeletEndpoint.
    #[arg(long)]
    pub kubelet_use_node_status_port: bool,
    /// Node address types to try, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "InternalIP,ExternalIP,Hostname"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// CA that front-proxy client certificates must chain to before the
    /// request headers are trusted.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Header naming the user.
    #[arg(long, default_value = "X-Remote-User")]
    pub requestheader_username_headers: String,
    /// Header naming the groups.
    #[arg(long, default_value = "X-Remote-Group")]
    pub requestheader_group_headers: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The latest points, per node.
#[derive(Default)]
struct Points {
    nodes: BTreeMap<String, NodeScrape>,
    /// When the first complete scrape round finished.
    ready: bool,
}

struct Ctx {
    client: Client,
    clock: Clock,
    window: String,
    nodes: Store,
    pods: Store,
    points: RwLock<Points>,
    user_header: String,
    group_header: String,
    verify_front_proxy: bool,
    /// (user, groups, attributes) → (allowed, when).
    authz_cache: Mutex<BTreeMap<String, (bool, ClusterInstant)>>,
}

/// `metrics-server [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args = Args::try_parse_from(
        std::iter::once("metrics-server".to_string()).chain(args.iter().cloned()),
    )?;
    let env = Env::init("metrics-server", &args.common).await?;
    let bound = start(&args, &env).await?;
    println!("metrics-server serving securely on {bound}");
    env.tasks.cancelled().await;
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The client configuration this program uses.
fn client_config(args: &Args) -> anyhow::Result<ClientConfig> {
    Ok(match &args.kubeconfig {
        Some(p) => ClientConfig::from_kubeconfig(p)?,
        None => ClientConfig::in_cluster()?,
    })
}

/// Start the informers, the scraper and the HTTPS server; returns the
/// bound address.
async fn start(args: &Args, env: &Env) -> anyhow::Result<SocketAddr> {
    let client = crate::kube::connect(args.kubeconfig.as_deref(), &env.clock, &env.tasks)?;
    let cfg = client_config(args)?;
    let nodes = crate::kube::reflect::<Node>(&client, None, ListParams::default(), &env.tasks)?;
    let pods = crate::kube::reflect::<Pod>(&client, None, ListParams::default(), &env.tasks)?;
    let (cert, key) = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(c), Some(k)) => (std::fs::read_to_string(c)?, std::fs::read_to_string(k)?),
        (None, None) => {
            tracing::info!("Generated self-signed cert");
            let c = https::self_signed(
                "metrics-server",
                &[
                    "metrics-server".into(),
                    "metrics-server.kube-system".into(),
                    "metrics-server.kube-system.svc".into(),
                    "localhost".into(),
                    "127.0.0.1".into(),
                ],
                &env.clock,
            )?;
            (c.cert_pem, c.key_pem)
        }
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    let front_proxy_ca = match &args.requestheader_client_ca_file {
        Some(p) => Some(std::fs::read_to_string(p)?),
        None => {
            tracing::warn!(
                "no --requestheader-client-ca-file: trusting {} headers without a client certificate",
                args.requestheader_username_headers
            );
            None
        }
    };
    let serving = ServingCert::new(&cert, &key, front_proxy_ca.as_deref(), &env.clock)?;
    let ctx = Arc::new(Ctx {
        client,
        clock: env.clock.clone(),
        window: summary::go_duration(args.metric_resolution),
        nodes: nodes.store.clone(),
        pods: pods.store.clone(),
        points: RwLock::new(Points::default()),
        user_header: args.requestheader_username_headers.to_ascii_lowercase(),
        group_header: args.requestheader_group_headers.to_ascii_lowercase(),
        verify_front_proxy: front_proxy_ca.is_some(),
        authz_cache: Mutex::new(BTreeMap::new()),
    });
    let (listener, bound) =
        https::bind(&format!("{}:{}", args.bind_address, args.secure_port)).await?;
    https::serve(
        listener,
        serving,
        router(ctx.clone()),
        &env.tasks,
        "metrics-server",
    );
    let scraper = Arc::new(Scraper {
        ctx: ctx.clone(),
        cfg,
        sa_token_file: args
            .kubeconfig
            .is_none()
            .then(|| crate::kube::service_account_dir().join("token")),
        kubelet_tls: Arc::new(kubelet_tls(args, &env.clock)?),
        args: args.clone(),
        tasks: env.tasks.clone(),
    });
    let mut synced = nodes.synced.clone();
    let token = env.tasks.token();
    let health = env.health.clone();
    env.tasks.spawn("metrics-server/scrape", async move {
        let _ = synced.wait_for(|s| *s).await;
        let mut tick = scraper.ctx.clock.interval(scraper.args.metric_resolution);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => return,
            }
            scraper.round().await;
            health.set_ready(true);
        }
    });
    Ok(bound)
}

fn kubelet_tls(args: &Args, clock: &Clock) -> anyhow::Result<rustls::ClientConfig> {
    if args.kubelet_insecure_tls {
        return https::client_config(None, None, clock);
    }
    let ca = match &args.kubelet_certificate_authority {
        Some(p) => std::fs::read_to_string(p)?,
        None => client_config(args)?.ca_pem,
    };
    let cfg = client_config(args)?;
    let cert = cfg
        .client_cert
        .as_ref()
        .map(|(c, k)| (c.as_str(), k.as_str()));
    https::client_config(Some(&ca), cert, clock)
}

struct Scraper {
    ctx: Arc<Ctx>,
    cfg: ClientConfig,
    sa_token_file: Option<PathBuf>,
    kubelet_tls: Arc<rustls::ClientConfig>,
    args: Args,
    tasks: Tasks,
}

impl Scraper {
    /// The credentials kubelets see: the service-account token (re-read
    /// each round, it rotates), or the kubeconfig's.
    fn bearer(&self) -> Option<String> {
        match &self.sa_token_file {
            Some(p) => std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned()),
            None => self.cfg.token.clone(),
        }
    }

    /// The kubelet address of a node.
    fn address(&self, node: &Node) -> Option<(String, String)> {
        let status = node.status.as_ref()?;
        let addrs = status.addresses.as_ref()?;
        let host = self
            .args
            .kubelet_preferred_address_types
            .iter()
            .find_map(|t| {
                addrs
                    .iter()
                    .find(|a| &a.type_ == t)
                    .map(|a| a.address.clone())
            })?;
        let port = if self.args.kubelet_use_node_status_port {
            status
                .daemon_endpoints
                .as_ref()
                .and_then(|d| d.kubelet_endpoint.as_ref())
                .map(|e| e.port)
                .filter(|p| *p > 0)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(self.args.kubelet_port)
        } else {
            self.args.kubelet_port
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some((authority, host))
    }

    async fn scrape(&self, node: &Node) -> anyhow::Result<NodeScrape> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (addr, host) = self.address(node).ok_or_else(|| {
            anyhow::anyhow!(
                "no address of types {:?}",
                self.args.kubelet_preferred_address_types
            )
        })?;
        let mut headers = vec![("accept", "application/json".to_string())];
        if let Some(t) = self.bearer() {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let path = "/stats/summary?only_cpu_and_memory=true";
        let resp = https::request(
            self.kubelet_tls.clone(),
            &addr,
            &host,
            "GET",
            path,
            &headers,
            Bytes::new(),
            &self.ctx.clock,
            &self.tasks,
            self.args.metric_resolution,
        )
        .await
        .map_err(|e| anyhow::anyhow!("unable to fetch metrics from node {name}: {e:#}"))?;
        if resp.status != 200 {
            anyhow::bail!(
                "unable to fetch metrics from node {name}: request failed, status: \"{}\"",
                resp.status
            );
        }
        let s: Summary = serde_json::from_slice(&resp.body)
            .map_err(|e| anyhow::anyhow!("decoding the summary of node {name}: {e}"))?;
        Ok(summary::decode(&s))
    }

    /// One round: every node, concurrently; a failed node keeps no stale
    /// points (metrics-server drops nodes it could not scrape).
    async fn round(self: &Arc<Self>) {
        let nodes: Vec<Node> = crate::kube::typed(&self.ctx.nodes);
        let handles: Vec<_> = nodes
            .into_iter()
            .map(|n| {
                let me = self.clone();
                let name = n.metadata.name.clone().unwrap_or_default();
                self.tasks
                    .spawn(format!("metrics-server/scrape {name}"), async move {
                        let r = me.scrape(&n).await;
                        (name, r)
                    })
            })
            .collect();
        let mut fresh = BTreeMap::new();
        for h in handles {
            match h.await {
                Ok((name, Ok(s))) => {
                    fresh.insert(name, s);
                }
                Ok((name, Err(e))) => {
                    tracing::error!("Failed to scrape node {name:?}: {e:#}")
                }
                Err(e) => tracing::error!("scrape task: {e}"),
            }
        }
        let mut p = self.ctx.points.write();
        p.nodes = fresh;
        p.ready = true;
    }
}

fn router(ctx: Arc<Ctx>) -> Router {
    let ok = || async { "ok" };
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(readyz))
        .route("/apis", get(api_group_list))
        .route("/apis/metrics.k8s.io", get(api_group))
        .route("/apis/metrics.k8s.io/v1beta1", get(resource_list))
        .route("/apis/metrics.k8s.io/v1beta1/nodes", get(list_nodes))
        .route("/apis/metrics.k8s.io/v1beta1/nodes/{name}", get(get_node))
        .route("/apis/metrics.k8s.io/v1beta1/pods", get(list_all_pods))
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            get(list_pods),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}",
            get(get_pod),
        )
        .with_state(ctx)
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> Response {
    if ctx.points.read().ready {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]metric-storage-ready failed: reason withheld\nreadyz check failed",
        )
            .into_response()
    }
}

fn group_json() -> Value {
    json!({"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
           "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}})
}

async fn api_group_list() -> Response {
    let mut g = group_json();
    g["kind"] = json!("APIGroup");
    json_ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_json()]}))
}

async fn api_group() -> Response {
    let mut g = group_json();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    json_ok(g)
}

async fn resource_list() -> Response {
    json_ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "metrics.k8s.io/v1beta1",
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ]
    }))
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "details": details, "code": code.as_u16()})
        .to_string(),
    )
        .into_response()
}

/// The request's user, from the front-proxy headers.
fn user_of(ctx: &Ctx, headers: &HeaderMap, peer: &PeerCert) -> Option<(String, Vec<String>)> {
    if ctx.verify_front_proxy && peer.0.is_none() {
        return None;
    }
    let user = headers.get(&ctx.user_header)?.to_str().ok()?.to_owned();
    if user.is_empty() {
        return None;
    }
    let groups = headers
        .get_all(&ctx.group_header)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    Some((user, groups))
}

/// Authenticate and authorize (SubjectAccessReview, cached 10s).
async fn authorize(
    ctx: &Ctx,
    headers: &HeaderMap,
    peer: &PeerCert,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Response> {
    let Some((user, groups)) = user_of(ctx, headers, peer) else {
        return Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
            json!({}),
        ));
    };
    let key = format!(
        "{user}|{}|{verb}|{resource}|{namespace}|{name}",
        groups.join(",")
    );
    let now = ctx.clock.now();
    let ttl = Duration::from_secs(10);
    let cached = ctx
        .authz_cache
        .lock()
        .get(&key)
        .filter(|(_, at)| now.saturating_duration_since(*at) < ttl)
        .map(|(a, _)| *a);
    let allowed = match cached {
        Some(a) => a,
        None => {
            let mut attrs = json!({"group": "metrics.k8s.io", "version": "v1beta1", "resource": resource, "verb": verb});
            if !namespace.is_empty() {
                attrs["namespace"] = json!(namespace);
            }
            if !name.is_empty() {
                attrs["name"] = json!(name);
            }
            let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                             "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}});
            let r = ctx
                .client
                .request(
                    "POST",
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    Some(("application/json", sar.to_string().into_bytes())),
                )
                .await;
            let allowed = match r {
                Ok(v) => v["status"]["allowed"].as_bool().unwrap_or(false),
                Err(e) => {
                    tracing::error!("authorization webhook: {e}");
                    return Err(status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        format!("Internal error occurred: {e}"),
                        json!({}),
                    ));
                }
            };
            ctx.authz_cache.lock().insert(key, (allowed, now));
            allowed
        }
    };
    if allowed {
        return Ok(());
    }
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    Err(status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{resource}.metrics.k8s.io{} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"metrics.k8s.io\" {scope}",
            if name.is_empty() {
                String::new()
            } else {
                format!(" \"{name}\"")
            }
        ),
        json!({"group": "metrics.k8s.io", "kind": resource, "name": name}),
    ))
}

fn now_rfc3339(clock: &Clock) -> String {
    clock
        .wall_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn selector(q: &BTreeMap<String, String>) -> Result<LabelSelector, Response> {
    match q.get("labelSelector").filter(|s| !s.is_empty()) {
        None => Ok(LabelSelector::everything()),
        Some(s) => LabelSelector::parse(s).map_err(|e| {
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("unable to parse requirement: {e}"),
                json!({}),
            )
        }),
    }
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn node_items(ctx: &Ctx, sel: &LabelSelector, only: Option<&str>) -> Vec<Value> {
    let created = now_rfc3339(&ctx.clock);
    let nodes = ctx.nodes.read();
    let points = ctx.points.read();
    points
        .nodes
        .iter()
        .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
        .filter_map(|(name, s)| {
            let obj = nodes.get(name)?;
            if !sel.matches(&labels_of(obj)) {
                return None;
            }
            let u = s.node.as_ref()?;
            Some(summary::node_metrics(
                name,
                &obj["metadata"]["labels"],
                u,
                &ctx.window,
                &created,
            ))
        })
        .collect()
}

fn pod_items(ctx: &Ctx, ns: Option<&str>, sel: &LabelSelector, only: Option<&str>) -> Vec<Value> {
    let created = now_rfc3339(&ctx.clock);
    let pods = ctx.pods.read();
    let points = ctx.points.read();
    let mut out: Vec<Value> = points
        .nodes
        .values()
        .flat_map(|s| s.pods.iter())
        .filter(|((pns, pname), _)| {
            ns.is_none_or(|n| n == pns) && only.is_none_or(|o| o == pname.as_str())
        })
        .filter_map(|((pns, pname), cs)| {
            // Only pods the API still has (metrics-server joins with its pod informer).
            let obj = pods.get(&format!("{pns}/{pname}"))?;
            if !sel.matches(&labels_of(obj)) {
                return None;
            }
            Some(summary::pod_metrics(
                pns,
                pname,
                &obj["metadata"]["labels"],
                cs,
                &ctx.window,
                &created,
            ))
        })
        .collect();
    out.sort_by(|a, b| {
        let k = |v: &Value| {
            (
                v["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                v["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            )
        };
        k(a).cmp(&k(b))
    });
    out
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    json_ok(
        json!({"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
    )
}

async fn list_nodes(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerCert>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&ctx, &headers, &peer, "list", "nodes", "", "").await {
        return r;
    }
    match selector(&q) {
        Ok(sel) => list("NodeMetricsList", node_items(&ctx, &sel, None)),
        Err(r) => r,
    }
}

async fn get_node(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerCert>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorize(&ctx, &headers, &peer, "get", "nodes", "", &name).await {
        return r;
    }
    match node_items(&ctx, &LabelSelector::everything(), Some(&name)).pop() {
        Some(v) => json_ok(v),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("nodemetrics.metrics.k8s.io \"{name}\" not found"),
            json!({"name": name, "group": "metrics.k8s.io", "kind": "nodemetrics"}),
        ),
    }
}

async fn list_all_pods(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerCert>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&ctx, &headers, &peer, "list", "pods", "", "").await {
        return r;
    }
    match selector(&q) {
        Ok(sel) => list("PodMetricsList", pod_items(&ctx, None, &sel, None)),
        Err(r) => r,
    }
}

async fn list_pods(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerCert>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&ctx, &headers, &peer, "list", "pods", &ns, "").await {
        return r;
    }
    match selector(&q) {
        Ok(sel) => list("PodMetricsList", pod_items(&ctx, Some(&ns), &sel, None)),
        Err(r) => r,
    }
}

async fn get_pod(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    axum::Extension(peer): axum::Extension<PeerCert>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorize(&ctx, &headers, &peer, "get", "pods", &ns, &name).await {
        return r;
    }
    match pod_items(&ctx, Some(&ns), &LabelSelector::everything(), Some(&name)).pop() {
        Some(v) => json_ok(v),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("podmetrics.metrics.k8s.io \"{ns}/{name}\" not found"),
            json!({"name": format!("{ns}/{name}"), "group": "metrics.k8s.io", "kind": "podmetrics"}),
        ),
    }
}
