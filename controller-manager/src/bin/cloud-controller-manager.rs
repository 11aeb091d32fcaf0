//! `ackemu-cloud-controller-manager`: flags → [`ackemu_controller_manager::runtime::ccm::run`].

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_controller_manager::cloudapi::CloudArgs;
use ackemu_controller_manager::runtime::ccm::{CcmConfig, run};
use ackemu_kube::client::ClientConfig;
use clap::Parser;
use ipnet::IpNet;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu-cloud-controller-manager",
    about = "Route, service (SLB) and cloud node controllers of an ackemu cluster"
)]
struct Args {
    /// Kubeconfig with the API server address and credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Controllers: `*`, `name`, `-name` of route, service, cloud-node,
    /// cloud-node-lifecycle.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// The cluster's VPC (overrides `vpcid` of --cloud-config).
    #[arg(long)]
    vpc_id: Option<String>,
    /// VSwitch new SLBs take their address from (default: a backend's).
    #[arg(long)]
    vswitch_id: Option<String>,
    /// Route tables to manage (default: the VPC's VRouter's tables).
    #[arg(long, value_delimiter = ',')]
    route_table_id: Vec<String>,
    /// The pod network (comma separated), e.g. 172.16.0.0/16.
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<IpNet>,
    /// Run the route controller.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    configure_cloud_routes: bool,
    #[arg(long, default_value = "10s")]
    route_reconciliation_period: humantime::Duration,
    /// How often the cloud node lifecycle controller checks not-ready nodes.
    #[arg(long, default_value = "5s")]
    node_monitor_period: humantime::Duration,
    #[arg(long, default_value_t = 1)]
    concurrent_service_syncs: usize,
    /// Elect a leader through the `kube-system/cloud-controller-manager` Lease.
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
    let env = Env::init("cloud-controller-manager", &args.common).await?;
    let mut cloud = args.cloud.resolve().map_err(anyhow::Error::msg)?;
    if let Some(v) = args.vpc_id {
        cloud.vpc_id = v;
    }
    if let Some(v) = args.vswitch_id {
        cloud.vswitch_id = v;
    }
    if !args.route_table_id.is_empty() {
        cloud.route_table_ids = args.route_table_id;
    }
    let mut config = CcmConfig::new(ClientConfig::from_kubeconfig(&args.kubeconfig)?, cloud);
    config.controllers = args.controllers;
    config.cluster_cidrs = args.cluster_cidr;
    config.configure_cloud_routes = args.configure_cloud_routes;
    config.route_reconciliation_period = Duration::from(args.route_reconciliation_period);
    config.node_monitor_period = Duration::from(args.node_monitor_period);
    config.service_workers = args.concurrent_service_syncs;
    config.leader_elect = args.leader_elect;
    run(config, env).await?;
    Ok(())
}
