//! `ackemu-cluster-autoscaler`: flags → [`ackemu_controller_manager::runtime::autoscaler::run`].

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_controller_manager::cloudapi::CloudArgs;
use ackemu_controller_manager::runtime::autoscaler::{AutoscalerRunConfig, GroupSpec, run};
use ackemu_kube::client::ClientConfig;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu-cluster-autoscaler",
    about = "Sizes ESS scaling groups by pods' requests (cluster-autoscaler)"
)]
struct Args {
    /// Kubeconfig with the API server address and credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Node groups, `min:max:<scaling-group-id>` (repeatable).
    #[arg(long)]
    nodes: Vec<GroupSpec>,
    /// A node group whose bounds are the scaling group's MinSize/MaxSize.
    #[arg(long)]
    scaling_group_id: Vec<String>,
    #[arg(long, default_value_t = 0.5)]
    scale_down_utilization_threshold: f64,
    #[arg(long, default_value = "10m")]
    scale_down_unneeded_time: humantime::Duration,
    #[arg(long, default_value = "10m")]
    scale_down_delay_after_add: humantime::Duration,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scale_down_enabled: bool,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    skip_nodes_with_system_pods: bool,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    skip_nodes_with_local_storage: bool,
    #[arg(long, default_value_t = 10)]
    max_empty_bulk_delete: usize,
    #[arg(long, default_value = "10s")]
    scan_interval: humantime::Duration,
    /// Upper bound on nodes in the cluster (0: none).
    #[arg(long, default_value_t = 0)]
    max_nodes_total: usize,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    write_status_configmap: bool,
    /// Elect a leader through the `kube-system/cluster-autoscaler` Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::init("cluster-autoscaler", &args.common).await?;
    let cloud = args.cloud.resolve().map_err(anyhow::Error::msg)?;
    let mut groups = args.nodes;
    groups.extend(args.scaling_group_id.into_iter().map(|id| GroupSpec {
        id,
        min: None,
        max: None,
    }));
    let mut config = AutoscalerRunConfig::new(
        ClientConfig::from_kubeconfig(&args.kubeconfig)?,
        cloud,
        groups,
    );
    let c = &mut config.core;
    c.scale_down_utilization_threshold = args.scale_down_utilization_threshold;
    c.scale_down_unneeded_time = Duration::from(args.scale_down_unneeded_time);
    c.scale_down_delay_after_add = Duration::from(args.scale_down_delay_after_add);
    c.scale_down_enabled = args.scale_down_enabled;
    c.skip_nodes_with_system_pods = args.skip_nodes_with_system_pods;
    c.skip_nodes_with_local_storage = args.skip_nodes_with_local_storage;
    c.max_empty_bulk_delete = args.max_empty_bulk_delete;
    config.scan_interval = Duration::from(args.scan_interval);
    config.max_nodes_total = args.max_nodes_total;
    config.write_status_configmap = args.write_status_configmap;
    config.leader_elect = args.leader_elect;
    run(config, env).await?;
    Ok(())
}
