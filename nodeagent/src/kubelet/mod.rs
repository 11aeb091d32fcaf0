//! `ackemu-node kubelet`: the node agent that runs the pods bound to its
//! node, on the CRI-shaped runtime, with Kubernetes' behaviour where users
//! look: node registration, status and Lease; PLEG (relist every 1s, healthy
//! while the last relist is younger than 3m) and the `skipping pod
//! synchronization - [PLEG is not healthy: …]` line; one worker per pod
//! (sandbox, init containers, containers, env, resolv.conf, service-account
//! token, restart policies with CrashLoopBackOff, probes, graceful
//! termination) and the pod status; Events with the kubelet's reasons.
//!
//! Decisions are pure: [`pleg`] (events and health), [`node`] (objects and
//! conditions), [`podsync`] (what to start and kill), [`podstatus`] (the API
//! status), [`backoff`], [`podenv`] (service variables, DNS), [`probe`]
//! thresholds. [`pods`] and the loops here do the IO.

pub mod backoff;
pub mod cri;
pub mod events;
pub mod goduration;
pub mod images;
pub mod node;
pub mod pleg;
pub mod podenv;
pub mod pods;
pub mod podstatus;
pub mod podsync;
pub mod probe;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::parse_duration;
use ackemu_base::{CommonArgs, Env};
use ackemu_kube::client::{Client, ClientConfig};
use anyhow::Context as _;

use crate::paths::NodePaths;

/// The Kubernetes version this kubelet reports.
pub const KUBELET_VERSION: &str = "v1.33.1";

/// `ackemu-node kubelet` flags (named as the real kubelet's).
#[derive(clap::Args, Debug)]
pub struct KubeletArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// Kubeconfig with the node's credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The node's name (default: the hostname).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP (default: the first non-loopback IPv4 address).
    #[arg(long)]
    node_ip: Option<String>,
    /// The runtime's socket (`unix:///…` or a path; default `<run-dir>/runtime.sock`).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Cluster DNS server IPs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "172.19.0.10")]
    cluster_dns: Vec<String>,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The kubelet's state directory (pods' volumes, resolv.conf, hosts).
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// Where container logs go (`<dir>/<ns>_<pod>_<uid>/<container>/<n>.log`).
    #[arg(long, default_value = "/var/log/pods")]
    pod_logs_dir: PathBuf,
    /// The resolv.conf pods with `dnsPolicy: Default` get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Labels to register the node with (`k=v,…`).
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints to register the node with (`key=value:Effect,…`).
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// CPU capacity (from the instance type).
    #[arg(long, default_value = "2")]
    capacity_cpu: String,
    /// Memory capacity (from the instance type).
    #[arg(long, default_value = "8Gi")]
    capacity_memory: String,
    /// Ephemeral-storage capacity (the system disk).
    #[arg(long, default_value = "40Gi")]
    capacity_ephemeral_storage: String,
    /// Maximum pods.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Node status update period (cluster time).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    node_status_update_frequency: Duration,
    /// Node Lease duration in seconds (renewed every quarter of it).
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: i64,
    /// PLEG relist period (cluster time).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pleg_relist_period: Duration,
    /// PLEG health threshold (cluster time).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pleg_relist_threshold: Duration,
    /// The kubelet API port.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// The kubelet API address.
    #[arg(long, default_value = "0.0.0.0")]
    address: String,
    /// Serving certificate of the kubelet API (PEM; self-signed when absent).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA for client certificates of the kubelet API.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Authenticate bearer tokens on the kubelet API with `TokenReview`s.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false,
          action = clap::ArgAction::Set)]
    authentication_token_webhook: bool,
    /// How long `TokenReview` answers are kept (cluster time).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    authentication_token_webhook_cache_ttl: Duration,
    /// How long allowed `SubjectAccessReview` answers are kept.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    authorization_webhook_cache_authorized_ttl: Duration,
    /// How long denied `SubjectAccessReview` answers are kept.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    authorization_webhook_cache_unauthorized_ttl: Duration,
}

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Kubeconfig.
    pub kubeconfig: PathBuf,
    /// Node name.
    pub node_name: String,
    /// Node IP.
    pub node_ip: String,
    /// Runtime socket path.
    pub runtime_socket: PathBuf,
    /// Cluster DNS.
    pub cluster_dns: Vec<String>,
    /// Cluster domain.
    pub cluster_domain: String,
    /// Root dir.
    pub root_dir: PathBuf,
    /// Pod log dir.
    pub pod_logs_dir: PathBuf,
    /// Host resolv.conf.
    pub resolv_conf: PathBuf,
    /// Node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<serde_json::Value>,
    /// capacity.
    pub capacity: BTreeMap<String, String>,
    /// allocatable.
    pub allocatable: BTreeMap<String, String>,
    /// Status period.
    pub node_status_update_frequency: Duration,
    /// Lease duration (s).
    pub node_lease_duration_seconds: i64,
    /// Relist period.
    pub pleg_relist_period: Duration,
    /// Relist threshold.
    pub pleg_relist_threshold: Duration,
    /// Kubelet API port.
    pub port: u16,
    /// Kubelet API address.
    pub address: String,
    /// Serving cert.
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key.
    pub tls_private_key_file: Option<PathBuf>,
    /// Client CA.
    pub client_ca_file: Option<PathBuf>,
    /// `--authentication-token-webhook`.
    pub authentication_token_webhook: bool,
    /// Review caches.
    pub webhook_cache: crate::server::auth::WebhookCacheConfig,
}

fn detect_ip() -> String {
    // `ip -4 -o addr show scope global`: `2: eth0    inet 192.168.0.10/24 …`.
    std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                let mut f = l.split_whitespace();
                f.find(|w| *w == "inet")?;
                f.next()?.split('/').next().map(str::to_owned)
            })
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Memory minus the kubelet's default hard eviction threshold (100Mi).
fn allocatable_memory(cap: &str) -> anyhow::Result<String> {
    let q: ackemu_kube::Quantity = cap
        .parse()
        .map_err(|e| anyhow::anyhow!("--capacity-memory {cap:?}: {e}"))?;
    let bytes = q.value() - 100 * 1024 * 1024;
    Ok(format!("{}Ki", bytes.max(0) / 1024))
}

impl KubeletConfig {
    /// From flags.
    pub fn from_args(a: &KubeletArgs) -> anyhow::Result<KubeletConfig> {
        let node_name = match &a.hostname_override {
            Some(h) => h.to_lowercase(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .context("reading the hostname")?
                .trim()
                .to_lowercase(),
        };
        let runtime_socket = match &a.container_runtime_endpoint {
            Some(e) => PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)),
            None => a.paths.runtime_socket(),
        };
        let capacity = BTreeMap::from([
            ("cpu".to_string(), a.capacity_cpu.clone()),
            ("memory".to_string(), a.capacity_memory.clone()),
            (
                "ephemeral-storage".to_string(),
                a.capacity_ephemeral_storage.clone(),
            ),
            ("pods".to_string(), a.max_pods.to_string()),
            ("hugepages-1Gi".to_string(), "0".to_string()),
            ("hugepages-2Mi".to_string(), "0".to_string()),
        ]);
        let mut allocatable = capacity.clone();
        allocatable.insert("memory".into(), allocatable_memory(&a.capacity_memory)?);
        if let Ok(q) = a
            .capacity_ephemeral_storage
            .parse::<ackemu_kube::Quantity>()
        {
            // nodefs.available<10%.
            let b = q.value();
            allocatable.insert("ephemeral-storage".into(), (b - b / 10).to_string());
        }
        Ok(KubeletConfig {
            kubeconfig: a.kubeconfig.clone(),
            node_ip: a.node_ip.clone().unwrap_or_else(detect_ip),
            node_name,
            runtime_socket,
            cluster_dns: a
                .cluster_dns
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            cluster_domain: a.cluster_domain.clone(),
            root_dir: a.root_dir.clone(),
            pod_logs_dir: a.pod_logs_dir.clone(),
            resolv_conf: a.resolv_conf.clone(),
            node_labels: node::parse_labels(&a.node_labels).map_err(anyhow::Error::msg)?,
            taints: node::parse_taints(&a.register_with_taints).map_err(anyhow::Error::msg)?,
            capacity,
            allocatable,
            node_status_update_frequency: a.node_status_update_frequency,
            node_lease_duration_seconds: a.node_lease_duration_seconds,
            pleg_relist_period: a.pleg_relist_period,
            pleg_relist_threshold: a.pleg_relist_threshold,
            port: a.port,
            address: a.address.clone(),
            tls_cert_file: a.tls_cert_file.clone(),
            tls_private_key_file: a.tls_private_key_file.clone(),
            client_ca_file: a.client_ca_file.clone(),
            authentication_token_webhook: a.authentication_token_webhook,
            webhook_cache: crate::server::auth::WebhookCacheConfig {
                token_ttl: a.authentication_token_webhook_cache_ttl,
                authorized_ttl: a.authorization_webhook_cache_authorized_ttl,
                unauthorized_ttl: a.authorization_webhook_cache_unauthorized_ttl,
                ..Default::default()
            },
        })
    }
}

/// Process entry for the `kubelet` role.
pub fn main(args: KubeletArgs) -> anyhow::Result<()> {
    crate::daemon_runtime()?.block_on(async {
        let env = Env::init("kubelet", &args.common).await?;
        let config = KubeletConfig::from_args(&args)?;
        run(config, env).await
    })
}

fn node_info(runtime: &ackemu_proto::ackemu::node::v1::VersionResponse) -> serde_json::Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    serde_json::json!({
        "machineID": read("/etc/machine-id"),
        "systemUUID": read("/sys/class/dmi/id/product_uuid"),
        "bootID": read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": kernel,
        "osImage": os_image,
        "containerRuntimeVersion": format!("{}://{}", runtime.runtime_name, runtime.runtime_version),
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": "amd64",
    })
}

/// The kubelet API (`crate::server`) on `--address:--port`.
async fn start_server(
    cfg: &KubeletConfig,
    client: &Client,
    kubelet: &pods::Kubelet,
    env: &Env,
) -> anyhow::Result<()> {
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let serving = match (read(&cfg.tls_cert_file)?, read(&cfg.tls_private_key_file)?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    let listen: std::net::SocketAddr = format!("{}:{}", cfg.address, cfg.port)
        .parse()
        .with_context(|| format!("invalid --address {:?} / --port {}", cfg.address, cfg.port))?;
    let server = crate::server::serve(
        crate::server::ServerConfig {
            listen,
            node_name: cfg.node_name.clone(),
            runtime_socket: cfg.runtime_socket.clone(),
            client_ca_pem: read(&cfg.client_ca_file)?,
            serving,
            serving_ips: cfg.node_ip.parse().into_iter().collect(),
            anonymous_auth: false,
        },
        crate::server::Auth {
            tokens: cfg.authentication_token_webhook.then(|| {
                crate::server::auth::TokenReviewer::new(
                    client.clone(),
                    env.clock.clone(),
                    cfg.webhook_cache,
                ) as Arc<dyn crate::server::auth::TokenAuthenticator>
            }),
            authorizer: crate::server::auth::SubjectAccessReviewer::new(
                client.clone(),
                env.clock.clone(),
                cfg.webhook_cache,
            ),
        },
        Arc::new(kubelet.clone()),
        &env.tasks,
        &env.clock,
        env.tasks.token(),
    )
    .await
    .context("starting the kubelet API")?;
    tracing::info!(
        "Starting to listen address=\"{}\" port={}",
        server.local_addr.ip(),
        server.local_addr.port()
    );
    Ok(())
}

/// Run the kubelet until told to stop.
pub async fn run(config: KubeletConfig, env: Env) -> anyhow::Result<()> {
    let cfg = Arc::new(config);
    let clock = env.clock.clone();
    let tasks = env.tasks.clone();
    let stop = tasks.token();
    std::fs::create_dir_all(cfg.root_dir.join("pods"))
        .with_context(|| format!("creating {}", cfg.root_dir.display()))?;
    let client_cfg = ClientConfig::from_kubeconfig(&cfg.kubeconfig)
        .with_context(|| format!("loading {}", cfg.kubeconfig.display()))?;
    let client = Client::new(client_cfg, clock.clone(), tasks.clone())?;
    let cri = cri::Cri::new(&cfg.runtime_socket);
    tracing::info!(
        "Starting kubelet {KUBELET_VERSION} node=\"{}\" runtime=\"{}\"",
        cfg.node_name,
        cfg.runtime_socket.display()
    );
    let version = loop {
        match cri.version().await {
            Ok(v) => break v,
            Err(e) => tracing::warn!(
                "Container runtime not yet available at {}: {e}",
                cfg.runtime_socket.display()
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = clock.sleep(Duration::from_secs(1)) => {}
        }
    };
    tracing::info!(
        "Container runtime initialized containerRuntime=\"{}\" version=\"{}\" apiVersion=\"{}\"",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version
    );
    let recorder =
        events::Recorder::start(client.clone(), &cfg.node_name, clock.clone(), &tasks, 1000);
    let spec = node::NodeSpec {
        name: cfg.node_name.clone(),
        ip: cfg.node_ip.clone(),
        hostname: cfg.node_name.clone(),
        labels: cfg.node_labels.clone(),
        taints: cfg.taints.clone(),
        capacity: cfg.capacity.clone(),
        allocatable: cfg.allocatable.clone(),
        kubelet_port: cfg.port,
        node_info: node_info(&version),
    };
    let kubelet = pods::Kubelet::new(
        cfg.clone(),
        &env,
        client.clone(),
        cri.clone(),
        recorder.clone(),
        version.runtime_name.clone(),
    );
    kubelet.start_runtime_check();
    kubelet.start_pleg();
    start_server(&cfg, &client, &kubelet, &env).await?;
    let Some(node_uid) = node::register(&client, &spec, &clock, &stop).await else {
        return Ok(());
    };
    recorder.record(
        &events::ObjectRef::node(&cfg.node_name),
        events::Kind::Normal,
        "Starting",
        "Starting kubelet.",
    );
    for (reason, status) in [
        ("NodeHasSufficientMemory", "NodeHasSufficientMemory"),
        ("NodeHasNoDiskPressure", "NodeHasNoDiskPressure"),
        ("NodeHasSufficientPID", "NodeHasSufficientPID"),
    ] {
        recorder.record(
            &events::ObjectRef::node(&cfg.node_name),
            events::Kind::Normal,
            reason,
            &format!("Node {} status is now: {status}", cfg.node_name),
        );
    }
    kubelet.start_node_status(spec, node_uid);
    env.health.set_ready(true);
    kubelet.run().await;
    Ok(())
}
