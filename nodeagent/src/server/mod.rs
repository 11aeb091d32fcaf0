//! The kubelet's HTTPS API (`:10250`) as a library the kubelet serves:
//! `/healthz`, `/pods`, `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}` (WebSocket, `v5.channel.k8s.io` /
//! `v4.channel.k8s.io`) and `/stats/summary` — the paths the API server
//! proxies `kubectl logs/exec` to and metrics-server scrapes.
//!
//! TLS with the node's serving certificate (from files, or self-signed at
//! start as the real kubelet does without one); clients present x509
//! certificates from `--client-ca-file` (CN = user, O = groups) or a bearer
//! token an [`auth::TokenAuthenticator`] accepts (the API server's
//! `TokenReview` in the kubelet), and every request is authorized by an
//! [`auth::Authorizer`] — the API server's `SubjectAccessReview` in the
//! kubelet — before it is served. Everything
//! about containers comes from the runtime over its socket.

pub mod auth;
pub mod exec;
pub mod logs;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{self, CertSpec};
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::Pod;
use ackemu_proto::ackemu::node::v1 as pb;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pb::runtime_service_client::RuntimeServiceClient;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use auth::{Authorizer, Decision, TokenAuthenticator, User};

/// What [`serve`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `0.0.0.0:10250` on a node.
    pub listen: SocketAddr,
    /// The node's name (the `name` of every review).
    pub node_name: String,
    /// The runtime's CRI socket.
    pub runtime_socket: PathBuf,
    /// `--client-ca-file` (PEM); without it no client certificate is
    /// accepted.
    pub client_ca_pem: Option<String>,
    /// `--tls-cert-file` / `--tls-private-key-file` (PEM); `None`
    /// self-signs one at start.
    pub serving: Option<(String, String)>,
    /// Addresses put in a self-signed certificate.
    pub serving_ips: Vec<IpAddr>,
    /// `--anonymous-auth`: requests without a certificate are
    /// `system:anonymous` (then authorized) instead of 401.
    pub anonymous_auth: bool,
}

/// The pods the kubelet runs (`/pods`, and the containers `/containerLogs`
/// and `/exec` accept).
pub trait PodProvider: Send + Sync + 'static {
    /// The pods bound to this node that the kubelet knows.
    fn pods(&self) -> Vec<Pod>;
}

/// Serving failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the port.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// Certificates.
    #[error("kubelet serving tls: {0}")]
    Tls(#[from] pki::PkiError),
}

/// A running server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Its serving certificate (PEM), e.g. the self-signed one.
    pub cert_pem: String,
}

struct AppState {
    node: String,
    cri: RuntimeServiceClient<Channel>,
    pods: Arc<dyn PodProvider>,
    authorizer: Arc<dyn Authorizer>,
    tokens: Option<Arc<dyn TokenAuthenticator>>,
    anonymous: bool,
    clock: Clock,
    tasks: Tasks,
    samples: stats::Samples,
    start_time: String,
}

/// The authenticated caller of a connection (none without a certificate).
#[derive(Clone)]
struct Peer(Option<User>);

fn self_signed(
    node: &str,
    ips: &[IpAddr],
    clock: &Clock,
) -> Result<(String, String), pki::PkiError> {
    let year = Duration::from_secs(365 * 86400);
    let ca = pki::Ca::generate(
        &format!("{node}-ca@{}", clock.wall_unix_ms() / 1000),
        clock,
        year,
    )?;
    let mut ips = ips.to_vec();
    if !ips.iter().any(|i| i.is_loopback()) {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let c = ca.issue(&CertSpec::server(node, &[node], &ips, year), clock)?;
    Ok((format!("{}{}", c.cert_pem, ca.cert_pem()), c.key_pem))
}

/// Who is asked about callers: `tokens` authenticates bearer tokens
/// (`--authentication-token-webhook`; `None` refuses them), `authorizer`
/// decides every request.
#[derive(Clone)]
pub struct Auth {
    /// The token authenticator.
    pub tokens: Option<Arc<dyn TokenAuthenticator>>,
    /// The authorizer.
    pub authorizer: Arc<dyn Authorizer>,
}

/// Bind and serve until `cancel` fires; returns once listening.
pub async fn serve(
    cfg: ServerConfig,
    auth: Auth,
    pods: Arc<dyn PodProvider>,
    tasks: &Tasks,
    clock: &Clock,
    cancel: CancellationToken,
) -> Result<Server, ServerError> {
    let (cert, key) = match &cfg.serving {
        Some(ck) => ck.clone(),
        None => self_signed(&cfg.node_name, &cfg.serving_ips, clock)?,
    };
    let client_auth = if cfg.client_ca_pem.is_some() {
        pki::ClientAuth::Optional
    } else {
        pki::ClientAuth::None
    };
    let tls = pki::server_tls_config(
        &cert,
        &key,
        cfg.client_ca_pem.as_deref(),
        client_auth,
        clock,
        &[b"h2", b"http/1.1"],
    )?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let state = Arc::new(AppState {
        node: cfg.node_name.clone(),
        cri: RuntimeServiceClient::new(crate::uds::channel(&cfg.runtime_socket)),
        pods,
        authorizer: auth.authorizer,
        tokens: auth.tokens,
        anonymous: cfg.anonymous_auth,
        clock: clock.clone(),
        tasks: tasks.clone(),
        samples: stats::Samples::default(),
        start_time: rfc3339(clock.wall_chrono()),
    });
    start_sampler(state.clone(), cancel.clone());
    let app = router(state);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let t = tasks.clone();
    tracing::info!("kubelet: serving the kubelet API on https://{local_addr}");
    tasks.spawn("kubelet-server/accept", async move {
        loop {
            let (tcp, peer_addr) = tokio::select! {
                () = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("kubelet server: accept: {e}");
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let cancel = cancel.clone();
            t.spawn(format!("kubelet-server/conn {peer_addr}"), async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::info!("http: TLS handshake error from {peer_addr}: {e}");
                        return;
                    }
                };
                let user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| pki::identity_of(der).ok())
                    .map(|id| User::from_cert(&id.common_name, &id.organizations));
                let peer = Peer(user);
                let svc = tower::ServiceExt::map_request(
                    app,
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        req
                    },
                );
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                tokio::select! {
                    _ = conn => {}
                    () = cancel.cancelled() => {}
                }
            });
        }
    });
    Ok(Server {
        local_addr,
        cert_pem: cert,
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::handler).post(exec::handler),
        )
        .route("/stats/summary", get(summary))
        .route("/stats/summary/", get(summary))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authn_authz,
        ))
        .with_state(state)
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn authn_authz(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    // Certificate, then token, then anonymous; a token that fails review
    // is a 401 even with anonymous access on (the apiserver's
    // fail-on-error union). Without the webhook a token is not looked at.
    let user = match (peer, bearer.zip(st.tokens.as_ref())) {
        (Some(u), _) => u,
        (None, Some((token, tokens))) => match tokens.authenticate(&token).await {
            Ok(Some(u)) => u,
            Ok(None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized\n"),
            Err(e) => {
                tracing::error!("Unable to authenticate the request due to an error: {e}");
                return text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            }
        },
        (None, None) if st.anonymous => User::anonymous(),
        (None, None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized\n"),
    };
    let a = auth::attributes(user, req.method().as_str(), req.uri().path(), &st.node);
    match st.authorizer.authorize(&a).await {
        Ok(Decision::Allow) => next.run(req).await,
        Ok(Decision::Deny(reason)) => {
            tracing::info!(
                "kubelet server: forbidden {} {} for {}: {reason}",
                a.verb,
                a.path,
                a.user.name
            );
            text(StatusCode::FORBIDDEN, auth::forbidden_text(&a))
        }
        Err(e) => {
            tracing::error!(
                "kubelet server: authorization error for {}: {e}",
                a.user.name
            );
            text(StatusCode::INTERNAL_SERVER_ERROR, auth::error_text(&a))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, an empty token is none), as the apiserver's bearer
/// token authenticator parses it.
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(2, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ns_to_rfc3339(ns: i64) -> String {
    rfc3339(chrono::DateTime::from_timestamp_nanos(ns))
}

async fn pods(State(st): State<Arc<AppState>>) -> Response {
    let items: Vec<Value> = st
        .pods
        .pods()
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .map(|mut v| {
            v["apiVersion"] = json!("v1");
            v["kind"] = json!("Pod");
            v
        })
        .collect();
    let body = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Query pairs, percent-decoded (`+` is a space), repeated keys kept.
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(kv), String::new()),
        })
        .collect()
}

/// The pod and the checked container name, or the kubelet's 404.
fn find_pod(st: &AppState, ns: &str, pod: &str, container: &str) -> Result<Pod, Response> {
    let Some(p) = st.pods.pods().into_iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(pod)
    }) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("pod {pod:?} does not exist\n"),
        ));
    };
    let known = p.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| c.name == container)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
            || s.ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    });
    if !known {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod:?}\n"),
        ));
    }
    Ok(p)
}

/// The runtime's instances of a pod's container, newest attempt first.
async fn instances(
    st: &AppState,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<pb::Container>, Response> {
    let filter = pb::ContainerFilter {
        label_selector: [
            ("io.kubernetes.pod.namespace".to_string(), ns.to_string()),
            ("io.kubernetes.pod.name".to_string(), pod.to_string()),
            (
                "io.kubernetes.container.name".to_string(),
                container.to_string(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let mut cs = st
        .cri
        .clone()
        .list_containers(pb::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to list containers: {}\n", e.message()),
            )
        })?
        .into_inner()
        .containers;
    cs.sort_by_key(|c| {
        std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
    });
    Ok(cs)
}

async fn container_logs(
    State(st): State<Arc<AppState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let opts = match logs::LogOptions::parse(&query_pairs(req.uri().query())) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if let Err(r) = find_pod(&st, &ns, &pod, &container) {
        return r;
    }
    let cs = match instances(&st, &ns, &pod, &container).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let chosen = if opts.previous {
        match cs.get(1) {
            Some(c) => c.clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container {container:?} in pod {pod:?} not found\n"
                    ),
                );
            }
        }
    } else {
        match cs.first() {
            Some(c) => c.clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating\n"
                    ),
                );
            }
        }
    };
    let status = match st
        .cri
        .clone()
        .container_status(pb::ContainerStatusRequest {
            container_id: chosen.id.clone(),
            verbose: false,
        })
        .await
    {
        Ok(s) => s.into_inner().status.unwrap_or_default(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "failed to get container status {:?}: {}\n",
                    chosen.id,
                    e.message()
                ),
            );
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let st2 = st.clone();
    st.tasks.spawn(
        format!("kubelet-server/logs {ns}/{pod}/{container}"),
        stream_log(st2, chosen.id, PathBuf::from(status.log_path), opts, tx),
    );
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn still_running(st: &AppState, id: &str) -> bool {
    let r = st
        .cri
        .clone()
        .list_containers(pb::ListContainersRequest {
            filter: Some(pb::ContainerFilter {
                id: id.to_string(),
                ..Default::default()
            }),
        })
        .await;
    match r {
        Ok(r) => r
            .into_inner()
            .containers
            .iter()
            .any(|c| c.state == pb::ContainerState::ContainerRunning as i32),
        Err(_) => false,
    }
}

async fn stream_log(
    st: Arc<AppState>,
    id: String,
    path: PathBuf,
    opts: logs::LogOptions,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut w = logs::Writer::new(&opts, st.clock.wall_chrono());
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "failed to open log file {:?}: {e}",
                    path.display()
                ))))
                .await;
            return;
        }
    };
    let mut start = 0u64;
    if let Some(n) = opts.tail_lines {
        let mut all = Vec::new();
        if f.read_to_end(&mut all).await.is_err() {
            return;
        }
        start = logs::tail_offset(&all, n) as u64;
    }
    if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let out = w.line(&line);
                if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                    return;
                }
                if w.done() {
                    return;
                }
            }
            continue;
        }
        // At the end of the file.
        if !opts.follow || !still_running(&st, &id).await {
            // One more read: lines written just before the exit.
            if opts.follow {
                continue_final(&mut f, &mut pending, &mut w, &tx).await;
            }
            return;
        }
        tokio::select! {
            () = st.clock.sleep(st.clock.to_cluster(Duration::from_millis(100))) => {}
            () = tx.closed() => return,
        }
    }
}

async fn continue_final(
    f: &mut tokio::fs::File,
    pending: &mut Vec<u8>,
    w: &mut logs::Writer,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    use tokio::io::AsyncReadExt as _;
    let mut rest = Vec::new();
    if f.read_to_end(&mut rest).await.is_err() {
        return;
    }
    pending.extend_from_slice(&rest);
    for line in pending.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let out = w.line(&String::from_utf8_lossy(line));
        if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
            return;
        }
        if w.done() {
            return;
        }
    }
}

fn start_sampler(st: Arc<AppState>, cancel: CancellationToken) {
    let tasks = st.tasks.clone();
    tasks.spawn("kubelet-server/stats sampler", async move {
        let mut tick = st.clock.interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let _ = build_summary(&st).await;
        }
    });
}

async fn summary(State(st): State<Arc<AppState>>) -> Response {
    let body = build_summary(&st).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn build_summary(st: &AppState) -> Value {
    let mut cri = st.cri.clone();
    let now = st.clock.now();
    let time = rfc3339(st.clock.wall_chrono());
    let node = stats::node_usage();
    let node_rate = st.samples.rate(&st.clock, "", now, node.cpu_ns);
    let sandboxes = cri
        .list_pod_sandbox(pb::ListPodSandboxRequest {
            filter: Some(pb::PodSandboxFilter {
                state: Some(pb::PodSandboxStateValue {
                    state: pb::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    let containers = cri
        .list_containers(pb::ListContainersRequest {
            filter: Some(pb::ContainerFilter {
                state: Some(pb::ContainerStateValue {
                    state: pb::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    st.samples
        .retain(&containers.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
    let mut pods = Vec::new();
    for sb in &sandboxes {
        let meta = sb.metadata.clone().unwrap_or_default();
        let mut ctrs = Vec::new();
        let (mut pod_cpu, mut pod_rss, mut pod_rate) = (0u64, 0u64, Some(0u64));
        for c in containers.iter().filter(|c| c.pod_sandbox_id == sb.id) {
            let status = st
                .clock
                .timeout(
                    Duration::from_secs(2),
                    cri.container_status(pb::ContainerStatusRequest {
                        container_id: c.id.clone(),
                        verbose: false,
                    }),
                )
                .await;
            let Ok(Ok(status)) = status else { continue };
            let status = status.into_inner();
            let Some(pid) = status.info.get("pid").and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let u = stats::group_usage(pid);
            let rate = st.samples.rate(&st.clock, &c.id, now, u.cpu_ns);
            pod_cpu += u.cpu_ns;
            pod_rss += u.rss_bytes;
            pod_rate = pod_rate.zip(rate).map(|(a, b)| a + b);
            let started = status.status.as_ref().map_or(0, |s| s.started_at);
            ctrs.push(json!({
                "name": c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                "startTime": ns_to_rfc3339(started),
                "cpu": stats::cpu_json(&time, u.cpu_ns, rate),
                "memory": stats::memory_json(&time, u.rss_bytes, None),
            }));
        }
        if ctrs.is_empty() {
            pod_rate = None;
        }
        pods.push(json!({
            "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
            "startTime": ns_to_rfc3339(sb.created_at),
            "containers": ctrs,
            "cpu": stats::cpu_json(&time, pod_cpu, pod_rate),
            "memory": stats::memory_json(&time, pod_rss, None),
        }));
    }
    json!({
        "node": {
            "nodeName": st.node,
            "startTime": st.start_time,
            "cpu": stats::cpu_json(&time, node.cpu_ns, node_rate),
            "memory": {
                "time": time,
                "availableBytes": node.available,
                "usageBytes": node.usage,
                "workingSetBytes": node.working_set,
                "rssBytes": node.rss,
                "pageFaults": 0,
                "majorPageFaults": 0,
            },
            "systemContainers": [],
        },
        "pods": pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_parse_like_the_apiserver() {
        assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn queries_decode_with_repeated_keys() {
        let q = query_pairs(Some(
            "command=sh&command=-c&command=echo+a%20b%3B&stdout=1&tty",
        ));
        assert_eq!(
            q,
            vec![
                ("command".to_string(), "sh".to_string()),
                ("command".to_string(), "-c".to_string()),
                ("command".to_string(), "echo a b;".to_string()),
                ("stdout".to_string(), "1".to_string()),
                ("tty".to_string(), String::new()),
            ]
        );
        assert_eq!(
            query_pairs(Some("a=%zz&b=%4")),
            vec![
                ("a".to_string(), "%zz".to_string()),
                ("b".to_string(), "%4".to_string())
            ]
        );
    }
}
