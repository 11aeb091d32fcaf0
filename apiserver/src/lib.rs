//! `ackemu-apiserver`: the Kubernetes API of an ackemu cluster.
//!
//! Owns: the HTTPS REST API kubectl and client libraries use (discovery,
//! CRUD, patch, watch, Table output), authentication by client certificate,
//! RBAC authorization, the semantics of the built-in kinds on create,
//! update and delete, and storage on any store speaking the etcd v3 API
//! (`ackemu-store` or a real etcd) with kube-apiserver's key layout.
//!
//! Must not know: how the store replicates, what controllers, schedulers or
//! nodes do with objects, or the cloud. It talks to the store only through
//! the etcd v3 gRPC API and to everyone else only through HTTP.

pub mod admission;
pub mod aggregator;
pub mod alloc;
pub mod api;
pub mod cache;
pub mod etcd;
pub mod grpc;
pub mod kubelet;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod reqinfo;
pub mod server;
pub mod status;
pub mod storage;
pub mod tokens;
pub mod webhook;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::pki::{self, Ca, CertSpec, ClientAuth, IssuedCert};
use ackemu_kube::KeyLayout;
use anyhow::Context as _;
use serde_json::{Value, json};

pub use api::{Api, ApiConfig};
pub use cache::CacheConfig;

use crate::objects::CreateContext;
use crate::rbac::UserInfo;

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTPS listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// The internal gRPC `ResourceService` (TLS, client certificates from
    /// the cluster CA); `None` serves no gRPC.
    pub grpc_listen: Option<SocketAddr>,
    /// Store endpoints (`host:port`), etcd v3 API.
    pub store_endpoints: Vec<String>,
    /// Key prefix in the store (`--etcd-prefix`).
    pub etcd_prefix: String,
    /// Directory with `ca.crt`/`ca.key` (created if missing) and the
    /// serving certificate.
    pub pki_dir: PathBuf,
    /// Where to write the admin kubeconfig (`kubernetes-admin`, `system:masters`).
    pub admin_kubeconfig: Option<PathBuf>,
    /// Extra DNS names and IPs for the serving certificate.
    pub serving_names: Vec<String>,
    /// Per-call store timeout.
    pub store_timeout: Duration,
    pub api: ApiConfig,
    pub cache: CacheConfig,
    pub kubelet: KubeletOptions,
}

/// How to reach kubelets (`--kubelet-*` flags).
#[derive(Clone, Debug)]
pub struct KubeletOptions {
    /// Client certificate for kubelets (PEM file); with `client_key`. When
    /// absent the cluster CA issues one (CN `kube-apiserver-kubelet-client`,
    /// O `system:masters`), written to `<pki-dir>/apiserver-kubelet-client.{crt,key}`.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// CA bundle that kubelet serving certificates are verified against;
    /// without it they are not verified (kube-apiserver's default).
    pub certificate_authority: Option<PathBuf>,
    /// Node address types in order of preference.
    pub preferred_address_types: Vec<String>,
    /// Connect timeout (cluster time).
    pub dial_timeout: Duration,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        Self {
            client_certificate: None,
            client_key: None,
            certificate_authority: None,
            preferred_address_types: kubelet::DEFAULT_ADDRESS_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            dial_timeout: Duration::from_secs(30),
        }
    }
}

/// The CN of the certificate the API server presents to kubelets.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Builds the kubelet client from the options, issuing a client
/// certificate from the cluster CA when none is given.
fn kubelet_client(
    opts: &KubeletOptions,
    ca: &Ca,
    pki_dir: &std::path::Path,
    clock: &ackemu_base::clock::Clock,
) -> anyhow::Result<kubelet::Kubelets> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let (cert, key) = match (&opts.client_certificate, &opts.client_key) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => {
            let issued = ca.issue(
                &CertSpec::client(KUBELET_CLIENT_CN, &["system:masters"], CERT_VALIDITY),
                clock,
            )?;
            pki::write_private(
                &pki_dir.join("apiserver-kubelet-client.crt"),
                &issued.cert_pem,
            )?;
            pki::write_private(
                &pki_dir.join("apiserver-kubelet-client.key"),
                &issued.key_pem,
            )?;
            (issued.cert_pem, issued.key_pem)
        }
        _ => anyhow::bail!(
            "--kubelet-client-certificate and --kubelet-client-key must be given together"
        ),
    };
    let mut cfg = kubelet::KubeletConfig::new(cert, key);
    cfg.ca_pem = opts.certificate_authority.as_ref().map(read).transpose()?;
    cfg.preferred_address_types = opts.preferred_address_types.clone();
    cfg.dial_timeout = opts.dial_timeout;
    Ok(kubelet::Kubelets::new(cfg, clock)?)
}

impl Config {
    /// A configuration for one local apiserver on loopback.
    pub fn local(store_endpoints: Vec<String>, pki_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            store_endpoints,
            etcd_prefix: ackemu_kube::keys::DEFAULT_ROOT.to_owned(),
            admin_kubeconfig: Some(pki_dir.join("admin.kubeconfig")),
            pki_dir,
            serving_names: Vec::new(),
            store_timeout: Duration::from_secs(10),
            api: ApiConfig::default(),
            cache: CacheConfig::default(),
            kubelet: KubeletOptions::default(),
        }
    }
}

/// A started API server.
pub struct Server {
    pub addr: SocketAddr,
    /// Where the gRPC `ResourceService` listens.
    pub grpc_addr: Option<SocketAddr>,
    pub api: Arc<Api>,
    pub ca_pem: String,
    pub admin_kubeconfig: Option<PathBuf>,
}

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86400);
/// The control plane's own certificates (serving, admin, kubelet client).
/// A managed control plane's certificates are the provider's to rotate;
/// five years keeps a cluster from outliving them when its clock is moved
/// a year ahead (S08 expires the mesh's one-year CA, not the cluster's).
const CERT_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86400);

/// Starts serving and returns once the listener is bound and the cluster's
/// default objects exist.
pub async fn start(config: Config, env: &Env) -> anyhow::Result<Server> {
    let clock = env.clock.clone();
    let tasks = env.tasks.clone();
    std::fs::create_dir_all(&config.pki_dir)
        .with_context(|| format!("creating {}", config.pki_dir.display()))?;
    let ca = Ca::load_or_create(&config.pki_dir, "kubernetes", &clock, CA_VALIDITY)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut dns = vec![
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), addr.ip()];
    for n in &config.serving_names {
        match n.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(n.clone()),
        }
    }
    ips.dedup();
    let dns_refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    let serving = ca.issue(
        &CertSpec::server("kube-apiserver", &dns_refs, &ips, CERT_VALIDITY),
        &clock,
    )?;
    let tls = pki::server_tls_config(
        &serving.cert_pem,
        &serving.key_pem,
        Some(ca.cert_pem()),
        ClientAuth::Optional,
        &clock,
        &[],
    )?;

    let etcd = etcd::Etcd::connect(&config.store_endpoints, config.store_timeout, tasks.clone())?;
    let storage = storage::Storage::new(
        etcd,
        KeyLayout::new(&config.etcd_prefix),
        tasks.clone(),
        clock.clone(),
        config.cache.clone(),
    );
    let mut api_cfg = config.api.clone();
    api_cfg.advertise_address = addr.to_string();
    let signer = tokens::TokenSigner::load_or_create(&config.pki_dir)
        .context("service-account signing key")?;
    let api = Api::new(storage, clock.clone(), tasks.clone(), api_cfg);
    api.set_token_signer(signer);
    api.set_kubelets(
        kubelet_client(&config.kubelet, &ca, &config.pki_dir, &clock).context("kubelet client")?,
    );
    bootstrap(&api)
        .await
        .context("creating the cluster's default objects")?;
    load_crds(&api)
        .await
        .context("loading custom resource definitions")?;
    warm_authorizer(&api)
        .await
        .context("loading the RBAC policy")?;

    if let Some(path) = &config.admin_kubeconfig {
        let admin = ca.issue(
            &CertSpec::client("kubernetes-admin", &["system:masters"], CERT_VALIDITY),
            &clock,
        )?;
        write_kubeconfig(
            path,
            &format!("https://{addr}"),
            ca.cert_pem(),
            "kubernetes-admin",
            admin,
        )?;
    }
    let check_api = api.clone();
    let check_tasks = tasks.clone();
    tasks.spawn("apiservice-availability", async move {
        let mut tick = check_api
            .clock
            .interval(check_api.cfg.apiservice_check_interval);
        let token = check_tasks.token();
        loop {
            tokio::select! {
                _ = tick.tick() => check_api.check_apiservices().await,
                () = token.cancelled() => return,
            }
        }
    });
    let grpc_addr = match config.grpc_listen {
        Some(listen) => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let grpc_addr = l.local_addr()?;
            let grpc_tls = pki::server_tls_config(
                &serving.cert_pem,
                &serving.key_pem,
                Some(ca.cert_pem()),
                ClientAuth::Optional,
                &clock,
                &[b"h2"],
            )?;
            let svc = grpc::ResourceServiceServer::new(grpc::ResourceGrpc::new(api.clone()))
                .max_decoding_message_size(api.cfg.max_body_bytes + 64 * 1024);
            let stop = tasks.token();
            tasks.spawn("apiserver-grpc", async move {
                if let Err(e) = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        pki::grpc::incoming(l, grpc_tls),
                        stop.cancelled_owned(),
                    )
                    .await
                {
                    tracing::error!("grpc server on {grpc_addr}: {e}");
                }
            });
            tracing::info!("serving the internal ResourceService on {grpc_addr}");
            Some(grpc_addr)
        }
        None => None,
    };
    let serve_api = api.clone();
    let serve_tasks = tasks.clone();
    tasks.spawn("apiserver-https", async move {
        server::serve(serve_api, listener, tls, serve_tasks).await
    });
    env.health.set_ready(true);
    tracing::info!("serving the Kubernetes API on https://{addr}");
    Ok(Server {
        addr,
        grpc_addr,
        api,
        ca_pem: ca.cert_pem().to_owned(),
        admin_kubeconfig: config.admin_kubeconfig.clone(),
    })
}

/// Writes a kubeconfig for `user` with a client certificate.
pub fn write_kubeconfig(
    path: &std::path::Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    cert: IssuedCert,
) -> anyhow::Result<()> {
    let spec = pki::kubeconfig::Spec {
        cluster_name: "ackemu".to_owned(),
        server: server.to_owned(),
        ca_pem: ca_pem.to_owned(),
        user_name: user.to_owned(),
        client_cert: Some(cert),
        token: None,
        namespace: None,
    };
    pki::kubeconfig::write(path, &spec)?;
    Ok(())
}

/// Runs until the process is asked to stop.
pub async fn run(config: Config, env: Env) -> anyhow::Result<()> {
    let _server = start(config, &env).await?;
    env.tasks.token().cancelled().await;
    env.tasks.shutdown().await;
    Ok(())
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
           "rules": rules})
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

/// The objects every cluster starts with: system namespaces and the
/// bootstrap RBAC policy (`cluster-admin` for `system:masters`, discovery
/// and self-review for authenticated users, health and version for all).
async fn bootstrap(api: &Api) -> anyhow::Result<()> {
    let mut objs: Vec<(&str, &str, Value)> = Vec::new();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        objs.push((
            "",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        ));
    }
    let rbac = "rbac.authorization.k8s.io";
    objs.push((
        rbac,
        "clusterroles",
        cluster_role(
            "cluster-admin",
            json!([
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
    ));
    objs.push((rbac, "clusterroles", cluster_role("system:discovery", json!([
        {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]))));
    objs.push((rbac, "clusterroles", cluster_role("system:basic-user", json!([
        {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]))));
    objs.push((rbac, "clusterroles", cluster_role("system:public-info-viewer", json!([
        {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]))));
    objs.push((
        rbac,
        "clusterrolebindings",
        cluster_role_binding("cluster-admin", "cluster-admin", &["system:masters"]),
    ));
    objs.push((
        rbac,
        "clusterrolebindings",
        cluster_role_binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
    ));
    objs.push((
        rbac,
        "clusterrolebindings",
        cluster_role_binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
    ));
    objs.push((
        rbac,
        "clusterrolebindings",
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ));
    // The `kubernetes` Service: the first service address, pointing at us.
    let advertise: SocketAddr = api
        .cfg
        .advertise_address
        .parse()
        .context("advertise address is ip:port")?;
    let first = api.cfg.service_ranges.first().to_string();
    objs.push(("", "services", json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": first, "clusterIPs": [first], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.port()}]}})));
    objs.push(("", "endpoints", json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.ip().to_string()}],
                     "ports": [{"name": "https", "port": advertise.port(), "protocol": "TCP"}]}]})));
    // ... and its EndpointSlice, which kube-apiserver's endpoint reconciler
    // keeps beside the Endpoints (kube-proxy reads only slices).
    objs.push((
        "discovery.k8s.io",
        "endpointslices",
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [advertise.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": advertise.port(), "protocol": "TCP"}]}),
    ));
    // A Local APIService for every built-in group version, as kube-aggregator keeps.
    for (group, versions) in api.registry.read().groups() {
        for v in versions {
            let name = if group.is_empty() {
                v.clone()
            } else {
                format!("{v}.{group}")
            };
            objs.push(("apiregistration.k8s.io", "apiservices", json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": group, "version": v, "groupPriorityMinimum": 18000, "versionPriority": 15}})));
        }
    }
    let system = UserInfo::authenticated("system:apiserver", &["system:masters".to_owned()]);
    for (group, resource, obj) in objs {
        let info = api
            .registry
            .read()
            .preferred(group, resource)
            .cloned()
            .context("bootstrap resource is registered")?;
        let now = jiff::Timestamp::from_second(api.clock.wall_unix_ms() / 1000)?.to_string();
        let uid = uuid::Uuid::new_v4().to_string();
        let ctx = CreateContext {
            now: &now,
            uid: &uid,
            suffix: "",
            user: &system,
        };
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let obj =
            objects::prepare_create(&info, obj, &ns, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        match api.storage.create(&info, &ns, &name, obj).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => anyhow::bail!("creating {resource} {name}: {e}"),
        }
    }
    Ok(())
}

/// Fills the RBAC caches before the first request is authorized.
async fn warm_authorizer(api: &Api) -> anyhow::Result<()> {
    let rev = api.storage.etcd().current_revision().await?;
    for res in [
        "clusterroles",
        "clusterrolebindings",
        "roles",
        "rolebindings",
    ] {
        let info = api
            .registry
            .read()
            .preferred("rbac.authorization.k8s.io", res)
            .cloned()
            .context("rbac is registered")?;
        let cache = api
            .storage
            .cache(&info)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cache
            .wait_for(rev.max(1), &api.clock, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

async fn load_crds(api: &Api) -> anyhow::Result<()> {
    let info = api
        .registry
        .read()
        .preferred("apiextensions.k8s.io", "customresourcedefinitions")
        .cloned()
        .context("CRDs are registered")?;
    let list = api
        .storage
        .list(&info, None, &storage::ListOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for crd in &list.items {
        api.crd_changed(crd);
    }
    Ok(())
}
