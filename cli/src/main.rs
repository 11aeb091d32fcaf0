//! `ackemu`: the command-line front door.
//!
//! Subcommands exist only once they work. Today: `ackemu chaos` (failpoints,
//! clock offset and task dumps of any running ackemu process, through its
//! admin port's `FaultService`) and `ackemu cloud` (the fake cloud's
//! OpenAPI, aliyun-CLI style).

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
    /// Inject faults into running processes: failpoints, clock offsets, task dumps.
    Chaos(chaos::ChaosArgs),
    /// Forward TCP between the host's loopback and instances' namespaces (used by `up`).
    #[command(hide = true)]
    Forward(cluster::forward::ForwardArgs),
    /// Call the fake cloud like the aliyun CLI: `ackemu cloud vpc DescribeVpcs --RegionId cn-hangzhou`.
    Cloud(ackemu_cloudsim::cli::Args),
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cluster::up(args).await,
        Command::Down(args) => cluster::down(args).await,
        Command::Status(args) => cluster::status(args).await,
        Command::Logs(args) => cluster::logs(args),
        Command::Chaos(args) => chaos::run(args).await,
        Command::Cloud(args) => ackemu_cloudsim::cli::run(args).await,
        Command::Forward(args) => cluster::forward::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
