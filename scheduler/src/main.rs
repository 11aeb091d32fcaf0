//! `ackemu-scheduler`: flags → [`ackemu_scheduler::runtime::run`].

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_kube::client::ClientConfig;
use ackemu_scheduler::runtime::{Config, SHUTDOWN_GRACE, run};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu-scheduler",
    about = "The scheduler of an ackemu cluster (kube-scheduler)"
)]
struct Args {
    /// Kubeconfig with the API server address and credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Schedule only pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Elect a leader through the `kube-system/kube-scheduler` Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a non-leader waits after the last renewal before taking over
    /// (cluster time).
    #[arg(long, default_value = "15s")]
    leader_elect_lease_duration: humantime::Duration,
    /// How long the leader retries renewing before it gives up.
    #[arg(long, default_value = "10s")]
    leader_elect_renew_deadline: humantime::Duration,
    /// Time between acquire/renew attempts.
    #[arg(long, default_value = "2s")]
    leader_elect_retry_period: humantime::Duration,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    /// Percentage of nodes to find feasible before scoring; 0 = adaptive.
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Initial and maximum backoff of a pod that failed to schedule.
    #[arg(long, default_value = "1s")]
    pod_initial_backoff: humantime::Duration,
    #[arg(long, default_value = "10s")]
    pod_max_backoff: humantime::Duration,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 64)]
    parallel_bindings: usize,
    /// Seed of the RNG breaking score ties (random by default).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.percentage_of_nodes_to_score <= 100,
        "--percentage-of-nodes-to-score {}: expected 0 to 100",
        args.percentage_of_nodes_to_score
    );
    anyhow::ensure!(
        args.leader_elect_renew_deadline.as_ref() < args.leader_elect_lease_duration.as_ref(),
        "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
    );
    let env = Env::init("scheduler", &args.common).await?;
    let mut config = Config::new(ClientConfig::from_kubeconfig(&args.kubeconfig)?);
    config.scheduler_name = args.scheduler_name;
    config.leader_elect = args.leader_elect;
    config.lease_duration = Duration::from(args.leader_elect_lease_duration);
    config.renew_deadline = Duration::from(args.leader_elect_renew_deadline);
    config.retry_period = Duration::from(args.leader_elect_retry_period);
    config.lease_namespace = args.leader_elect_resource_namespace;
    config.lease_name = args.leader_elect_resource_name;
    config.percentage_of_nodes_to_score = args.percentage_of_nodes_to_score;
    config.queue.initial_backoff = Duration::from(args.pod_initial_backoff);
    config.queue.max_backoff = Duration::from(args.pod_max_backoff);
    config.parallel_bindings = args.parallel_bindings;
    config.trace = args.common.v >= 10;
    config.seed = args.seed;
    let (tasks, clock) = (env.tasks.clone(), env.clock.clone());
    let result = run(config, env).await;
    // Bounded: an open API connection's task ends only when the server
    // closes it.
    if clock
        .timeout(SHUTDOWN_GRACE, tasks.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tasks still running after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    result?;
    Ok(())
}
