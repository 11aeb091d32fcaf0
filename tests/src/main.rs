//! `ackemu-e2e`: run SCENARIOS.md against fresh local clusters.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ackemu-e2e", about = "The ackemu end-to-end scenario runner")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The scenarios the runner reproduces.
    List,
    /// Run scenarios (ids such as S13, or `all`), each on a fresh cluster.
    Run {
        /// Scenario ids, or `all`.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Cluster time per real time.
        #[arg(long, default_value_t = 60.0)]
        time_scale: f64,
        /// Where the clusters live (one directory per scenario).
        #[arg(long, default_value = ".ackemu-e2e")]
        work_dir: PathBuf,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// The launcher (default: `ackemu` next to this binary).
        #[arg(long)]
        ackemu: Option<PathBuf>,
        /// Keep the data directories of passing scenarios too.
        #[arg(long)]
        keep: bool,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    match Args::parse().command {
        Command::List => {
            for s in ackemu_tests::scenarios::ALL {
                println!("{:<5} {}", s.id, s.title);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Run {
            ids,
            time_scale,
            work_dir,
            junit,
            ackemu,
            keep,
        } => {
            let ackemu = match ackemu {
                Some(p) => p,
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("ackemu"))
                    .ok_or_else(|| anyhow::anyhow!("locating ackemu"))?,
            };
            let chosen: Vec<_> = if ids.iter().any(|i| i == "all") {
                ackemu_tests::scenarios::ALL.iter().collect()
            } else {
                ids.iter()
                    .map(|i| ackemu_tests::find(i))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut runs = Vec::new();
            for s in chosen {
                let dir = work_dir.join(s.id.to_lowercase());
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                runs.push(ackemu_tests::run_local(s, &ackemu, &dir, time_scale, !keep).await);
            }
            println!("\n{}", ackemu_tests::report::table(&runs));
            if let Some(p) = junit {
                std::fs::write(&p, ackemu_tests::report::junit(&runs))?;
                println!("JUnit report: {}", p.display());
            }
            Ok(if runs.iter().all(|r| r.passed()) {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
    }
}
