//! `ackemu-node systemctl …` and `ackemu-node busctl …`: command-line
//! clients of systemd. They use the private socket by default, as root's
//! `systemctl` does, so they keep working when the system bus' cookie has
//! overflowed.

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::{Tasks, fmt_dur};
use ackemu_proto::ackemu::node::v1 as pb;

use super::client::BusClient;
use super::cookie::COOKIE_MAX;
use crate::paths::NodePaths;

/// Which socket a client uses.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    #[command(flatten)]
    paths: NodePaths,
    /// Talk over the system bus instead of systemd's private socket.
    #[arg(long)]
    system_bus: bool,
    /// Explicit socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn path(&self) -> PathBuf {
        match (&self.socket, self.system_bus) {
            (Some(p), _) => p.clone(),
            (None, true) => self.paths.bus_socket(),
            (None, false) => self.paths.private_socket(),
        }
    }
}

/// `systemctl` flags.
#[derive(clap::Args, Debug)]
pub struct SystemctlArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    cmd: SystemctlCmd,
}

/// `systemctl` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum SystemctlCmd {
    /// Overall state (with the bus cookie), or one unit's.
    Status {
        /// Unit name.
        unit: Option<String>,
    },
    /// Start a unit.
    Start {
        /// Unit name.
        unit: String,
    },
    /// Stop a unit (a scope's processes get SIGTERM).
    Stop {
        /// Unit name.
        unit: String,
    },
    /// Restart a unit.
    Restart {
        /// Unit name.
        unit: String,
    },
    /// Exit 0 when the unit is active.
    IsActive {
        /// Unit name.
        unit: String,
    },
    /// List loaded units.
    ListUnits,
    /// Re-execute systemd: the bus loop restarts and the cookie starts over.
    DaemonReexec,
}

/// `busctl` flags.
#[derive(clap::Args, Debug)]
pub struct BusctlArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    cmd: Option<BusctlCmd>,
}

/// `busctl` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum BusctlCmd {
    /// systemd's bus cookie, seal failures and the calls it left unanswered.
    Status,
    /// Connections on the bus.
    List,
}

async fn connect(target: &Target) -> anyhow::Result<BusClient> {
    let tasks = Tasks::new(Clock::real());
    Ok(BusClient::connect(&target.path(), "systemctl", &tasks).await?)
}

/// Entry of `ackemu-node systemctl`.
pub fn systemctl(args: SystemctlArgs) -> anyhow::Result<i32> {
    crate::client_runtime()?.block_on(async move {
        let bus = connect(&args.target).await?;
        match args.cmd {
            SystemctlCmd::Status { unit: None } => {
                let s = bus.bus_status().await?;
                print!("{}", render_overview(&s));
                Ok(0)
            }
            SystemctlCmd::Status { unit: Some(u) } => match bus.get_unit(&u).await {
                Ok(info) => {
                    print!("{}", render_unit(&info));
                    Ok(if info.active_state == "active" { 0 } else { 3 })
                }
                Err(e) if e.remote_name() == Some(super::names::ERR_NO_SUCH_UNIT) => {
                    eprintln!("Unit {u} could not be found.");
                    Ok(4)
                }
                Err(e) => Err(e.into()),
            },
            SystemctlCmd::Start { unit } => job("start", bus.start_unit(&unit).await, &unit),
            SystemctlCmd::Stop { unit } => job("stop", bus.stop_unit(&unit).await, &unit),
            SystemctlCmd::Restart { unit } => job("restart", bus.restart_unit(&unit).await, &unit),
            SystemctlCmd::IsActive { unit } => {
                let state = match bus.get_unit(&unit).await {
                    Ok(i) => i.active_state,
                    Err(_) => "inactive".into(),
                };
                println!("{state}");
                Ok(if state == "active" { 0 } else { 3 })
            }
            SystemctlCmd::ListUnits => {
                let units = bus.list_units().await?;
                println!(
                    "{:<60} {:<8} {:<12} {:<12}",
                    "UNIT", "LOAD", "ACTIVE", "SUB"
                );
                for u in &units {
                    println!(
                        "{:<60} {:<8} {:<12} {:<12}",
                        u.name, u.load_state, u.active_state, u.sub_state
                    );
                }
                println!("\n{} loaded units listed.", units.len());
                Ok(0)
            }
            SystemctlCmd::DaemonReexec => {
                bus.reexecute().await?;
                Ok(0)
            }
        }
    })
}

fn job(verb: &str, r: Result<String, super::client::BusError>, unit: &str) -> anyhow::Result<i32> {
    match r {
        Ok(result) if result == "done" => Ok(0),
        Ok(result) => {
            eprintln!("Job for {unit} failed ({verb}: {result}).");
            Ok(1)
        }
        Err(e) => {
            eprintln!("Failed to {verb} {unit}: {e}");
            Ok(if e.remote_name() == Some(super::names::ERR_NO_SUCH_UNIT) {
                5
            } else {
                1
            })
        }
    }
}

/// Entry of `ackemu-node busctl`.
pub fn busctl(args: BusctlArgs) -> anyhow::Result<i32> {
    crate::client_runtime()?.block_on(async move {
        let bus = connect(&args.target).await?;
        let s = bus.bus_status().await?;
        match args.cmd.unwrap_or(BusctlCmd::Status) {
            BusctlCmd::Status => print!("{}", render_bus_status(&s)),
            BusctlCmd::List => print!("{}", render_connections(&s)),
        }
        Ok(0)
    })
}

fn cookie_line(s: &pb::BusStatus) -> String {
    if s.cookie > COOKIE_MAX {
        format!(
            "cookie {:#x} > 0xffffffff: messages cannot be sealed (EOPNOTSUPP)",
            s.cookie
        )
    } else {
        format!("cookie {:#x}", s.cookie)
    }
}

/// `systemctl status` without a unit.
pub fn render_overview(s: &pb::BusStatus) -> String {
    let state = if s.cookie > COOKIE_MAX || !s.pending.is_empty() {
        "degraded"
    } else {
        "running"
    };
    format!(
        "● node\n    State: {state}\n    Units: {} loaded\n     Jobs: {} issued\n  Reexecs: {}\n      Bus: {}; {} pending callers\n",
        s.units,
        s.jobs_total,
        s.reexecs,
        cookie_line(s),
        s.pending.len()
    )
}

/// `systemctl status <unit>`.
pub fn render_unit(u: &pb::UnitInfo) -> String {
    let dot = match u.active_state.as_str() {
        "active" => "●",
        "failed" => "×",
        _ => "○",
    };
    let mut out = format!("{dot} {}", u.name);
    if !u.description.is_empty() {
        out.push_str(&format!(" - {}", u.description));
    }
    out.push('\n');
    let loaded = if u.transient {
        "loaded (transient)".to_string()
    } else if u.fragment_path.is_empty() {
        u.load_state.clone()
    } else {
        format!(
            "{} ({}; {})",
            u.load_state,
            u.fragment_path,
            if u.enabled { "enabled" } else { "disabled" }
        )
    };
    out.push_str(&format!("     Loaded: {loaded}\n"));
    out.push_str(&format!(
        "     Active: {} ({}); result {}\n",
        u.active_state, u.sub_state, u.result
    ));
    if !u.slice.is_empty() {
        out.push_str(&format!("      Slice: {}\n", u.slice));
    }
    if u.main_pid != 0 {
        out.push_str(&format!("   Main PID: {}\n", u.main_pid));
    }
    if !u.pids.is_empty() {
        let pids: Vec<String> = u.pids.iter().map(u32::to_string).collect();
        out.push_str(&format!("      Tasks: {}\n", pids.join(" ")));
    }
    if u.restarts > 0 {
        out.push_str(&format!("   Restarts: {}\n", u.restarts));
    }
    out
}

/// `busctl status`: the cookie and the callers systemd left waiting.
pub fn render_bus_status(s: &pb::BusStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!("Cookie={:#x}\n", s.cookie));
    out.push_str(&format!(
        "CookieOverflow={}\n",
        if s.cookie > COOKIE_MAX {
            "yes (cookie > 0xffffffff: sd_bus_message_seal fails with EOPNOTSUPP)"
        } else {
            "no"
        }
    ));
    out.push_str(&format!(
        "CookieFix={}\n",
        if s.cookie_fix { "yes" } else { "no" }
    ));
    out.push_str(&format!("MessagesSealed={}\n", s.messages_sealed));
    out.push_str(&format!("SealFailures={}\n", s.seal_failures));
    if !s.last_seal_error.is_empty() {
        out.push_str(&format!("LastSealError={}\n", s.last_seal_error));
    }
    out.push_str(&format!("Reexecs={}\n", s.reexecs));
    out.push_str(&format!("Connections={}\n", s.connections.len()));
    out.push_str(&format!("PendingCalls={}\n", s.pending.len()));
    if !s.pending.is_empty() {
        out.push_str(&format!(
            "  {:<8} {:<8} {:<16} {:<20} {:<48} {:<7} {:<12} {}\n",
            "SENDER", "PID", "COMM", "MEMBER", "UNIT", "SERIAL", "WAITING", "REASON"
        ));
        for p in &s.pending {
            out.push_str(&format!(
                "  {:<8} {:<8} {:<16} {:<20} {:<48} {:<7} {:<12} {}\n",
                p.sender,
                p.pid,
                p.comm,
                p.member,
                p.unit,
                p.serial,
                fmt_dur(Duration::from_millis(p.waiting_ms)),
                p.reason
            ));
        }
    }
    out
}

fn render_connections(s: &pb::BusStatus) -> String {
    let mut out = format!(
        "{:<10} {:<8} {:<16} {:<10}\n",
        "NAME", "PID", "COMM", "SUBSCRIBED"
    );
    out.push_str(&format!(
        "{:<10} {:<8} {:<16} {:<10}\n",
        super::names::SYSTEMD_UNIQUE,
        std::process::id(),
        "systemd",
        "-"
    ));
    for c in &s.connections {
        out.push_str(&format!(
            "{:<10} {:<8} {:<16} {:<10}\n",
            c.unique_name,
            c.pid,
            c.comm,
            if c.subscribed { "yes" } else { "no" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowed_cookie_is_called_out() {
        let s = pb::BusStatus {
            cookie: 0x1_0000_0002,
            pending: vec![pb::PendingCall {
                sender: ":1.7".into(),
                pid: 42,
                comm: "ackemu-node".into(),
                member: "StartTransientUnit".into(),
                unit: "libcontainer_42_systemd_test_default.slice".into(),
                serial: 3,
                waiting_ms: 180_100,
                reason: "reply not sent: cookie 0x100000000 > 0xffffffff: Operation not supported (EOPNOTSUPP)".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render_bus_status(&s);
        assert!(text.contains("Cookie=0x100000002"), "{text}");
        assert!(text.contains("cookie > 0xffffffff"), "{text}");
        assert!(text.contains("3m0.1s"), "{text}");
        assert!(render_overview(&s).contains("State: degraded"));
        let ok = pb::BusStatus {
            cookie: 0x8000_0003,
            ..Default::default()
        };
        assert!(render_bus_status(&ok).contains("CookieOverflow=no"));
    }
}
