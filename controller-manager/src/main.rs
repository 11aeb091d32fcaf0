//! `ackemu-controller-manager`: flags → [`ackemu_controller_manager::runtime::run`].

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_controller_manager::nodeipam::IpamConfig;
use ackemu_controller_manager::runtime::{Config, run};
use ackemu_kube::client::ClientConfig;
use anyhow::Context as _;
use clap::Parser;
use ipnet::IpNet;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu-controller-manager",
    about = "The controllers of an ackemu cluster (kube-controller-manager)"
)]
struct Args {
    /// Kubeconfig with the API server address and credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Controllers to run: `*` for all, `name` to enable, `-name` to disable.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Workers per controller.
    #[arg(long, default_value_t = 5)]
    concurrent_syncs: usize,
    /// Capacity of each controller's work queue.
    #[arg(long, default_value_t = 10_000)]
    queue_capacity: usize,
    /// Elect a leader through the `kube-system/kube-controller-manager` Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Assign podCIDRs to nodes from `--cluster-cidr`.
    #[arg(long)]
    allocate_node_cidrs: bool,
    /// The pod network (comma separated, one per family), e.g. 172.16.0.0/16.
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<IpNet>,
    /// IPv4 podCIDR mask per node (the seed article's example uses 25).
    #[arg(long, alias = "node-cidr-mask-size", default_value_t = 24)]
    node_cidr_mask_size_ipv4: u8,
    #[arg(long, default_value_t = 64)]
    node_cidr_mask_size_ipv6: u8,
    /// Service ranges never handed to nodes.
    #[arg(long, value_delimiter = ',')]
    service_cluster_ip_range: Vec<IpNet>,
    /// Node health: unresponsive this long (cluster time) → Unknown.
    #[arg(long, default_value = "50s")]
    node_monitor_grace_period: humantime::Duration,
    #[arg(long, default_value = "60s")]
    node_startup_grace_period: humantime::Duration,
    #[arg(long, default_value = "5s")]
    node_monitor_period: humantime::Duration,
    /// NoExecute taints per second in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// The CA that signs approved CSRs (PEM files).
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    #[arg(long, default_value = "8760h")]
    cluster_signing_duration: humantime::Duration,
    /// CA bundle published as kube-root-ca.crt (default: the kubeconfig's CA).
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Key that signs legacy service-account token Secrets (PKCS#8 EC).
    #[arg(long)]
    service_account_private_key_file: Option<PathBuf>,
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    #[command(flatten)]
    common: CommonArgs,
}

fn read(p: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    p.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::init("controller-manager", &args.common).await?;
    let mut config = Config::new(ClientConfig::from_kubeconfig(&args.kubeconfig)?);
    config.controllers = args.controllers;
    config.workers = args.concurrent_syncs;
    config.queue_capacity = args.queue_capacity;
    config.leader_elect = args.leader_elect;
    if args.allocate_node_cidrs {
        anyhow::ensure!(
            !args.cluster_cidr.is_empty(),
            "--allocate-node-cidrs needs --cluster-cidr"
        );
        let mut ipam = IpamConfig::new(args.cluster_cidr, args.node_cidr_mask_size_ipv4);
        ipam.node_mask_ipv6 = args.node_cidr_mask_size_ipv6;
        ipam.service_cidrs = args.service_cluster_ip_range;
        config.ipam = Some(ipam);
    }
    let l = &mut config.lifecycle;
    l.node_monitor_grace_period = Duration::from(args.node_monitor_grace_period);
    l.node_startup_grace_period = Duration::from(args.node_startup_grace_period);
    l.node_monitor_period = Duration::from(args.node_monitor_period);
    l.eviction_limiter_qps = args.node_eviction_rate;
    l.secondary_eviction_limiter_qps = args.secondary_node_eviction_rate;
    l.large_cluster_threshold = args.large_cluster_size_threshold;
    l.unhealthy_zone_threshold = args.unhealthy_zone_threshold;
    config.signing = match (
        read(&args.cluster_signing_cert_file)?,
        read(&args.cluster_signing_key_file)?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            anyhow::bail!("--cluster-signing-cert-file and --cluster-signing-key-file go together")
        }
    };
    config.signing_duration = Duration::from(args.cluster_signing_duration);
    config.root_ca_pem = read(&args.root_ca_file)?;
    config.sa_key_pem = read(&args.service_account_private_key_file)?;
    config.terminated_pod_gc_threshold = args.terminated_pod_gc_threshold;
    run(config, env).await?;
    Ok(())
}
