//! `ackemu-e2e`: run SCENARIOS.md against fresh local (or compose) clusters.

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
        /// Where each scenario's cluster runs: `local` (`ackemu up`) or
        /// `compose` (the workspace's docker-compose.yml; the image
        /// `ackemu:dev` is rebuilt from the binaries next to the launcher
        /// when they are newer).
        #[arg(long, default_value = "local", value_parser = ["local", "compose"])]
        backend: String,
        /// compose: the compose network's /24 (must not be in use).
        #[arg(long, default_value = "10.213.0")]
        subnet_prefix: String,
    },
    /// The generic chaos mode: seeded random process and network faults
    /// under Kubernetes-shaped load on a fresh cluster, then a fault-free
    /// phase checking the invariants (no pod bound twice, Deployments
    /// converge, endpoints match ready pods, routes match podCIDRs, no
    /// acknowledged write lost, store members agree).
    Chaos {
        /// Seeds the faults, their targets and the load.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many faults, one after the other.
        #[arg(long, default_value_t = 6)]
        faults: u32,
        /// Workers of the cluster.
        #[arg(long, default_value_t = 2)]
        nodes: u32,
        /// How long a fault lasts at most, in cluster time.
        #[arg(long, default_value = "120s", value_parser = ackemu_base::clock::parse_duration)]
        fault_duration: std::time::Duration,
        /// Cluster time per real time.
        #[arg(long, default_value_t = 60.0)]
        time_scale: f64,
        /// Where the cluster lives.
        #[arg(long, default_value = ".ackemu-e2e")]
        work_dir: PathBuf,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// The launcher (default: `ackemu` next to this binary).
        #[arg(long)]
        ackemu: Option<PathBuf>,
        /// Keep the data directory when the run passes too.
        #[arg(long)]
        keep: bool,
    },
    /// Measure, print, assert nothing: `ackemu up` to all nodes Ready,
    /// each scenario's wall time and the suite's.
    Bench {
        /// Workers of the measured `ackemu up`.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// How many times to bring a cluster up.
        #[arg(long, default_value_t = 3)]
        up_runs: u32,
        /// Scenarios to time (`all`, ids, or `none`).
        #[arg(long, value_delimiter = ',', default_value = "all")]
        scenarios: Vec<String>,
        /// Cluster time per real time.
        #[arg(long, default_value_t = 60.0)]
        time_scale: f64,
        /// Where the clusters live.
        #[arg(long, default_value = ".ackemu-bench")]
        work_dir: PathBuf,
        /// The launcher (default: `ackemu` next to this binary).
        #[arg(long)]
        ackemu: Option<PathBuf>,
    },
}

fn launcher(ackemu: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match ackemu {
        Some(p) => Ok(p),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("ackemu"))
            .ok_or_else(|| anyhow::anyhow!("locating ackemu")),
    }
}

fn choose(ids: &[String]) -> anyhow::Result<Vec<&'static ackemu_tests::scenario::Scenario>> {
    if ids.iter().any(|i| i == "all") {
        return Ok(ackemu_tests::scenarios::ALL.iter().collect());
    }
    ids.iter()
        .filter(|i| *i != "none")
        .map(|i| ackemu_tests::find(i))
        .collect()
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
            backend,
            subnet_prefix,
        } => {
            let ackemu = launcher(ackemu)?;
            let chosen = choose(&ids)?;
            let mut runs = Vec::new();
            for s in chosen {
                let dir = work_dir.join(s.id.to_lowercase());
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                let run = if backend == "compose" {
                    let base = ackemu_tests::compose::ComposeOptions::new(
                        ackemu_tests::compose::workspace_root(),
                        dir,
                        &format!("ackemu-{}", s.id.to_lowercase()),
                        &subnet_prefix,
                        time_scale,
                    );
                    ackemu_tests::run_compose(s, &ackemu, &base, !keep).await
                } else {
                    ackemu_tests::run_local(s, &ackemu, &dir, time_scale, !keep).await
                };
                runs.push(run);
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
        Command::Chaos {
            seed,
            faults,
            nodes,
            fault_duration,
            time_scale,
            work_dir,
            junit,
            ackemu,
            keep,
        } => {
            let ackemu = launcher(ackemu)?;
            let o = ackemu_tests::chaos::ChaosOptions {
                seed,
                faults,
                nodes,
                fault_duration,
            };
            let dir = work_dir.join("chaos");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            let run = ackemu_tests::chaos_local(&o, &ackemu, &dir, time_scale, !keep).await;
            let runs = [run];
            println!("\n{}", ackemu_tests::report::table(&runs));
            if let Some(p) = junit {
                std::fs::write(&p, ackemu_tests::report::junit(&runs))?;
                println!("JUnit report: {}", p.display());
            }
            Ok(if runs[0].passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Bench {
            nodes,
            up_runs,
            scenarios,
            time_scale,
            work_dir,
            ackemu,
        } => {
            use ackemu_tests::bench;
            let ackemu = launcher(ackemu)?;
            let chosen = choose(&scenarios)?;
            let mut up = Vec::new();
            for i in 0..up_runs {
                let s = bench::measure_up(&ackemu, &work_dir.join("up"), nodes, time_scale).await?;
                println!(
                    "up run {}: {:.1}s to {} Ready",
                    i + 1,
                    s.to_ready.as_secs_f64(),
                    s.ready_nodes
                );
                up.push(s);
            }
            let clock = ackemu_base::clock::Clock::real();
            let start = clock.now();
            let runs = bench::run_scenarios(&ackemu, &work_dir, &chosen, time_scale).await?;
            let suite = clock.now().saturating_duration_since(start);
            println!("\n{}", bench::report(&up, nodes, &runs, suite, time_scale));
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
