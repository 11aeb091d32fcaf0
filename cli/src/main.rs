//! `ackemu`: the command-line front door.
//!
//! Subcommands exist only once they work. Today: `ackemu chaos` (failpoints,
//! clock offset and task dumps of any running ackemu process, through its
//! admin port's `FaultService`) and `ackemu cloud` (the fake cloud's
//! OpenAPI, aliyun-CLI style).

use clap::{Parser, Subcommand};

mod chaos;

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
    /// Inject faults into running processes: failpoints, clock offsets, task dumps.
    Chaos(chaos::ChaosArgs),
    /// Call the fake cloud like the aliyun CLI: `ackemu cloud vpc DescribeVpcs --RegionId cn-hangzhou`.
    Cloud(ackemu_cloudsim::cli::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Chaos(args) => chaos::run(args).await,
        Command::Cloud(args) => ackemu_cloudsim::cli::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
