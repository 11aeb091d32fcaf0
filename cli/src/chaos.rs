//! `ackemu chaos`: faults applied to running processes through the
//! `FaultService` every ackemu process serves on its admin port.

use std::time::Duration;

use ackemu_base::clock::parse_signed_duration_ms;
use ackemu_base::tasks::fmt_dur;
use ackemu_proto::ackemu::fault::v1 as pb;
use ackemu_proto::ackemu::fault::v1::fault_service_client::FaultServiceClient;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use tonic::transport::Channel;

#[derive(Args, Debug)]
pub struct ChaosArgs {
    #[command(subcommand)]
    command: ChaosCommand,
}

#[derive(Args, Debug, Clone)]
struct Target {
    /// The process: its admin address (`--admin-listen`, e.g. 127.0.0.1:9090),
    /// a component of the cluster in `--data-dir` (`apiserver`, `store-1`),
    /// or a process on a worker, `<instance-id>/<role>` (`systemd`, `cnid`,
    /// `runtime`, `kubelet`, `proxy`), reached inside the instance's
    /// network namespace.
    #[arg(long)]
    target: String,
    #[command(flatten)]
    dir: crate::cluster::DataDirArg,
}

/// Where a target's admin port is.
struct Admin {
    /// The instance namespace to dial from (`None`: the host's).
    netns: Option<String>,
    /// `host:port` or a URI.
    addr: String,
}

impl Target {
    /// The admin address: `--target` itself, the component's from the
    /// cluster state, or a node role's from the node's `admin.json`.
    fn admin(&self) -> anyhow::Result<Admin> {
        if self.target.contains("://") || self.target.parse::<std::net::SocketAddr>().is_ok() {
            return Ok(Admin {
                netns: None,
                addr: self.target.clone(),
            });
        }
        if let Some((instance, role)) = self.target.split_once('/') {
            let (netns, addr) = crate::cluster::node_admin(&self.dir.data_dir, instance, role)?;
            return Ok(Admin {
                netns: Some(netns),
                addr,
            });
        }
        let (_, p) = crate::cluster::component(&self.dir.data_dir, &self.target)?;
        Ok(Admin {
            netns: None,
            addr: p.admin,
        })
    }
}

#[derive(Subcommand, Debug)]
enum ChaosCommand {
    /// Failpoints: named places in a process where a fault can be switched on.
    Failpoint {
        #[command(subcommand)]
        command: FailpointCommand,
    },
    /// Read or move a process's cluster clock (wall time only; timers are unaffected).
    Clock {
        #[command(flatten)]
        target: Target,
        /// New offset from true cluster time: `400d`, `-5m`, `0` to reset.
        #[arg(long, allow_hyphen_values = true)]
        offset: Option<String>,
    },
    /// What every task of a process is waiting on, the longest wait first.
    Tasks {
        #[command(flatten)]
        target: Target,
    },
    /// Process faults on a component of the local cluster: `kill` (SIGKILL),
    /// `term`, `stop` (SIGSTOP: it hangs, holding its sockets), `cont`,
    /// `restart` (stop it if running, start it again with its flags).
    Process {
        /// kill | term | stop | cont | restart
        action: String,
        /// Component name as `ackemu status` lists it.
        component: String,
        #[command(flatten)]
        dir: crate::cluster::DataDirArg,
    },
}

#[derive(Subcommand, Debug)]
enum FailpointCommand {
    /// Every failpoint the process knows, with its action and counters.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Switch a failpoint on: off | return[(msg)] | delay(d) | hang | panic[(msg)],
    /// optionally prefixed by `p%` (probability) and `n*` (next n hits).
    Set {
        #[command(flatten)]
        target: Target,
        /// Failpoint name, e.g. `systemd/bus/seal`.
        name: String,
        /// Action spec, e.g. `return(eio)`, `25%delay(1s)`, `hang`.
        action: String,
    },
    /// Switch a failpoint off, releasing callers parked on it.
    Clear {
        #[command(flatten)]
        target: Target,
        /// Failpoint name.
        name: String,
    },
}

async fn connect(target: &Target) -> anyhow::Result<FaultServiceClient<Channel>> {
    let admin = target.admin()?;
    let uri = if admin.addr.contains("://") {
        admin.addr.clone()
    } else {
        format!("http://{}", admin.addr)
    };
    let endpoint = Channel::from_shared(uri.clone())
        .with_context(|| format!("invalid --target {:?}: expected host:port", target.target))?
        .connect_timeout(Duration::from_secs(5));
    let channel = match admin.netns {
        None => endpoint.connect().await,
        Some(ns) => {
            // Dialled from inside the instance: its loopback is not the host's.
            let addr: std::net::SocketAddr = admin
                .addr
                .parse()
                .with_context(|| format!("admin address {:?} of {}", admin.addr, target.target))?;
            let ep = crate::cluster::forward::Endpoint {
                netns: Some(ns),
                addr,
            };
            let tasks = ackemu_base::tasks::Tasks::new(ackemu_base::clock::Clock::real());
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let (ep, tasks) = (ep.clone(), tasks.clone());
                    async move {
                        crate::cluster::forward::connect(&tasks, &ep)
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                            .map_err(std::io::Error::other)
                    }
                }))
                .await
        }
    }
    .with_context(|| format!("cannot reach the admin port of {} at {uri}", target.target))?;
    Ok(FaultServiceClient::new(channel))
}

fn status_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

fn print_clock(c: &pb::ClockState) {
    println!("time-scale:   {}", c.time_scale);
    println!("offset:       {}ms", c.offset_ms);
    println!(
        "cluster wall: {} (unix ms {})",
        format_unix_ms(c.wall_unix_ms),
        c.wall_unix_ms
    );
    println!(
        "monotonic:    {}",
        fmt_dur(Duration::from_millis(c.monotonic_ms))
    );
}

fn format_unix_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    match args.command {
        ChaosCommand::Process {
            action,
            component,
            dir,
        } => crate::cluster::process_fault(&dir.data_dir, &component, &action).await?,
        ChaosCommand::Failpoint { command } => match command {
            FailpointCommand::List { target } => {
                let mut c = connect(&target).await?;
                let list = c
                    .list_failpoints(pb::ListFailpointsRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!(
                    "{:<40} {:<24} {:>8} {:>8} {:>7}",
                    "NAME", "ACTION", "HITS", "FIRED", "PARKED"
                );
                for f in list.failpoints {
                    println!(
                        "{:<40} {:<24} {:>8} {:>8} {:>7}",
                        f.name, f.action, f.hits, f.fired, f.parked
                    );
                }
            }
            FailpointCommand::Set {
                target,
                name,
                action,
            } => {
                let mut c = connect(&target).await?;
                let r = c
                    .set_failpoint(pb::SetFailpointRequest { name, action })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                if let Some(f) = r.failpoint {
                    println!(
                        "failpoint {} set to {} on {}",
                        f.name, f.action, target.target
                    );
                }
            }
            FailpointCommand::Clear { target, name } => {
                let mut c = connect(&target).await?;
                let r = c
                    .clear_failpoint(pb::ClearFailpointRequest { name: name.clone() })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                if r.was_active {
                    println!("failpoint {name} cleared on {}", target.target);
                } else {
                    println!("failpoint {name} was not active on {}", target.target);
                }
            }
        },
        ChaosCommand::Clock { target, offset } => {
            let mut c = connect(&target).await?;
            let state = match offset {
                Some(o) => {
                    let ms = parse_signed_duration_ms(&o)
                        .map_err(|e| anyhow::anyhow!("--offset: {e}"))?;
                    c.set_clock_offset(pb::SetClockOffsetRequest { offset_ms: ms })
                        .await
                        .map_err(status_error)?
                        .into_inner()
                }
                None => c
                    .get_clock(pb::GetClockRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            };
            print_clock(&state);
        }
        ChaosCommand::Tasks { target } => {
            let mut c = connect(&target).await?;
            let d = c
                .dump_tasks(pb::DumpTasksRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            for t in d.tasks {
                if t.waiting_on.is_empty() {
                    println!(
                        "#{:<6} {:<7} {:<40} running/idle (age {})",
                        t.id,
                        t.kind,
                        t.name,
                        fmt_dur(Duration::from_millis(t.age_ms))
                    );
                } else {
                    println!(
                        "#{:<6} {:<7} {:<40} waiting {} on {} (age {})",
                        t.id,
                        t.kind,
                        t.name,
                        fmt_dur(Duration::from_millis(t.waiting_ms)),
                        t.waiting_on,
                        fmt_dur(Duration::from_millis(t.age_ms))
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_ms_as_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
