//! `ackemu-apiserver`: flags → [`ackemu_apiserver::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ackemu_apiserver::{ApiConfig, CacheConfig, Config, KubeletOptions};
use ackemu_base::{CommonArgs, Env};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu-apiserver",
    about = "The Kubernetes API server of an ackemu cluster"
)]
struct Args {
    /// HTTPS address to serve the Kubernetes API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    secure_listen: SocketAddr,
    /// Address of the internal gRPC ResourceService (TLS, cluster-CA client
    /// certificates or bearer tokens), e.g. 127.0.0.1:6444; "off" (the
    /// default) serves none.
    #[arg(long, default_value = "off")]
    grpc_listen: String,
    /// Store endpoints speaking the etcd v3 API (ackemu-store or etcd), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    store_endpoints: Vec<String>,
    /// Key prefix in the store.
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
    /// Directory holding the cluster CA (created if missing) and certificates.
    #[arg(long)]
    pki_dir: PathBuf,
    /// Write an admin kubeconfig (user kubernetes-admin, group system:masters) here.
    #[arg(long)]
    admin_kubeconfig: Option<PathBuf>,
    /// Extra names and IPs for the serving certificate, comma separated.
    #[arg(long, value_delimiter = ',')]
    serving_names: Vec<String>,
    /// The Kubernetes version reported by /version.
    #[arg(long, default_value = "v1.33.1")]
    kubernetes_version: String,
    /// Non-mutating requests in flight before 429.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests in flight before 429.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Watch bookmark interval (cluster time), e.g. 60s.
    #[arg(long, default_value = "60s")]
    bookmark_interval: humantime::Duration,
    /// Events each watch cache keeps for watches from older resourceVersions.
    #[arg(long, default_value_t = 1000)]
    watch_cache_events: usize,
    /// Append audit events (audit.k8s.io/v1 Event, level Metadata, JSON lines) here.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Timeout of one store call (cluster time), e.g. 10s.
    #[arg(long, default_value = "10s")]
    store_timeout: humantime::Duration,
    /// Client certificate (PEM) the API server presents to kubelets; with
    /// --kubelet-client-key. Default: one issued by the cluster CA
    /// (CN kube-apiserver-kubelet-client, O system:masters).
    #[arg(long)]
    kubelet_client_certificate: Option<PathBuf>,
    /// Private key (PEM) of --kubelet-client-certificate.
    #[arg(long)]
    kubelet_client_key: Option<PathBuf>,
    /// CA bundle (PEM) to verify kubelet serving certificates; without it
    /// they are not verified.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types to dial kubelets on, in order of preference.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "InternalIP,ExternalIP,Hostname"
    )]
    kubelet_preferred_address_types: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::init("apiserver", &args.common).await?;
    let config = Config {
        listen: args.secure_listen,
        grpc_listen: match args.grpc_listen.as_str() {
            "off" | "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .map_err(|e| anyhow::anyhow!("--grpc-listen {a:?}: {e}"))?,
            ),
        },
        store_endpoints: args.store_endpoints,
        etcd_prefix: args.etcd_prefix,
        pki_dir: args.pki_dir,
        admin_kubeconfig: args.admin_kubeconfig,
        serving_names: args.serving_names,
        store_timeout: Duration::from(args.store_timeout),
        api: ApiConfig {
            git_version: args.kubernetes_version,
            max_requests_in_flight: args.max_requests_inflight,
            max_mutating_requests_in_flight: args.max_mutating_requests_inflight,
            bookmark_interval: Duration::from(args.bookmark_interval),
            audit_log: args.audit_log_path,
            ..ApiConfig::default()
        },
        cache: CacheConfig {
            window_events: args.watch_cache_events,
            ..CacheConfig::default()
        },
        kubelet: KubeletOptions {
            client_certificate: args.kubelet_client_certificate,
            client_key: args.kubelet_client_key,
            certificate_authority: args.kubelet_certificate_authority,
            preferred_address_types: args.kubelet_preferred_address_types,
            ..KubeletOptions::default()
        },
    };
    ackemu_apiserver::run(config, env).await
}
