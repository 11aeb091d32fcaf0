//! `ackemu`: the command-line front door.
//!
//! Subcommands exist only once they work: `up`/`down`/`status`/`logs` of a
//! local cluster, `ssh` (a command on an instance), `chaos` (failpoints,
//! clock offsets, task dumps and process faults), `cloud` (the fake cloud's OpenAPI, aliyun-CLI style)
//! and `scenario` (the end-to-end runner, `ackemu-e2e`).

use clap::{Parser, Subcommand};

mod chaos;
mod cluster;

#[derive(Parser, Debug)]
#[command(
    name = "ackemu",
    version,
    about = "Emulate a managed Kubernetes cluster on a fake cloud, and break it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start (or resume) a local cluster in a data directory.
    Up(cluster::UpArgs),
    /// Stop the local cluster's processes (and with --purge delete its data).
    Down(cluster::DownArgs),
    /// The local cluster's processes and their health.
    Status(cluster::DataDirArg),
    /// A component's log.
    Logs(cluster::LogsArgs),
    /// Run a command on an ECS instance of the cluster, as over ssh:
    /// `ackemu ssh i-xxx -- ackemu-node systemctl daemon-reexec`.
    Ssh(cluster::node::SshArgs),
    /// Inject faults into running processes: failpoints, clock offsets, task dumps.
    Chaos(chaos::ChaosArgs),
    /// The end-to-end scenarios (SCENARIOS.md): `ackemu scenario list`, `ackemu scenario run S13`.
    #[command(disable_help_flag = true)]
    Scenario {
        /// Arguments of `ackemu-e2e` (`list`, `run <ids> [--time-scale N] [--junit FILE]`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Forward TCP between the host's loopback and instances' namespaces (used by `up`).
    #[command(hide = true)]
    Forward(cluster::forward::ForwardArgs),
    /// Run a master component and start it again when it exits (used by `up`).
    #[command(hide = true)]
    Supervise(cluster::supervise::SuperviseArgs),
    /// Create the join token's objects and the add-ons in a running cluster
    /// (what `up` does; used by the docker-compose set-up).
    #[command(hide = true)]
    Kubeinit(cluster::kubeinit::KubeinitArgs),
    /// Call the fake cloud like the aliyun CLI: `ackemu cloud vpc DescribeVpcs --RegionId cn-hangzhou`.
    Cloud(ackemu_cloudsim::cli::Args),
}

/// `ackemu scenario …`: the scenario runner next to this binary.
fn scenario(args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let bin = cluster::process::binary("ackemu-e2e")?;
    let err = std::process::Command::new(&bin).args(args).exec();
    Err(anyhow::anyhow!("running {}: {err}", bin.display()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cluster::up(args).await,
        Command::Down(args) => cluster::down(args).await,
        Command::Status(args) => cluster::status(args).await,
        Command::Logs(args) => cluster::logs(args),
        Command::Ssh(args) => cluster::node::ssh(args),
        Command::Chaos(args) => chaos::run(args).await,
        Command::Cloud(args) => {
            let clock = cluster::cloud_clock(args.profile_file.as_deref());
            ackemu_cloudsim::cli::run_with_clock(args, clock).await
        }
        Command::Forward(args) => cluster::forward::run(args).await,
        Command::Supervise(args) => cluster::supervise::run(args).await,
        Command::Kubeinit(args) => cluster::kubeinit::run(args).await,
        Command::Scenario { args } => scenario(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
