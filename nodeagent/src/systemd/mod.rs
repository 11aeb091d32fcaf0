//! `ackemu-node systemd`: the node's service manager behind a message bus.
//!
//! - [`supervisor`] runs `.service` units from `--unit-dir` (restart policy,
//!   start limit, stop timeout), their output appended to `--log-dir`.
//! - [`manager`] is systemd's single event loop: it owns units, jobs and
//!   transient slices/scopes, and answers calls arriving on two sockets —
//!   the *system bus* (`dbus/system_bus_socket`, one systemd connection and
//!   so **one cookie** for every client, as with dbus-daemon) and the
//!   *private socket* (`systemd/private`, one cookie per connection, which
//!   is why `systemctl daemon-reexec` still works after the overflow).
//! - [`cookie`] is the sealing counter; [`client`] is the bus client runc and
//!   `systemctl`/`busctl` ([`ctl`]) use.

pub mod client;
pub mod cookie;
pub mod ctl;
pub mod manager;
pub mod supervisor;
pub mod unitfile;

use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use anyhow::Context as _;

use crate::paths::NodePaths;

/// Well-known bus names, paths and interfaces.
pub mod names {
    /// The bus daemon itself.
    pub const BUS: &str = "org.freedesktop.DBus";
    /// systemd's well-known name.
    pub const SYSTEMD: &str = "org.freedesktop.systemd1";
    /// systemd's manager object.
    pub const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
    /// The manager interface.
    pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
    /// ackemu's debugging interface (what gdb gave the article's author).
    pub const DEBUG: &str = "ackemu.Debug";
    /// The unique name systemd's own connection holds.
    pub const SYSTEMD_UNIQUE: &str = ":1.1";
    /// The error a caller gets when systemd goes away without replying.
    pub const ERR_NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
    /// Unknown unit.
    pub const ERR_NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
    /// Transient unit already present.
    pub const ERR_UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
    /// Bad arguments.
    pub const ERR_INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    /// Unknown member.
    pub const ERR_UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
}

/// `ackemu-node systemd` flags.
#[derive(clap::Args, Debug)]
pub struct SystemdArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// The system bus socket (default `<run-dir>/dbus/system_bus_socket`).
    #[arg(long)]
    bus_socket: Option<PathBuf>,
    /// systemd's private socket (default `<run-dir>/systemd/private`).
    #[arg(long)]
    private_socket: Option<PathBuf>,
    /// Directory of `.service` unit files; enabled ones start at boot.
    #[arg(long)]
    unit_dir: Option<PathBuf>,
    /// Where units' output is appended (`<unit>.log`); default `<run-dir>/journal`.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The article's fix: wrap the cookie to 0x80000000 after 0xffffffff and
    /// skip cookies still in use, instead of failing with EOPNOTSUPP.
    #[arg(long)]
    cookie_fix: bool,
    /// The last cookie already used on the system bus at start (hex `0x…` or
    /// decimal), to reach the overflow without months of churn.
    #[arg(long, value_parser = crate::proc::parse_u64, default_value = "0")]
    initial_cookie: u64,
    /// Capacity of the event queue and of each connection's outgoing queue.
    #[arg(long, default_value_t = 1024)]
    queue_len: usize,
    /// How often scopes whose processes all exited are collected (cluster time).
    #[arg(long, value_parser = ackemu_base::clock::parse_duration, default_value = "5s")]
    gc_interval: Duration,
}

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct SystemdConfig {
    /// System bus socket path.
    pub bus_socket: PathBuf,
    /// Private socket path.
    pub private_socket: PathBuf,
    /// Unit files.
    pub unit_dir: Option<PathBuf>,
    /// Unit output.
    pub log_dir: PathBuf,
    /// The wrap-around fix.
    pub cookie_fix: bool,
    /// Starting value of the system bus cookie.
    pub initial_cookie: u64,
    /// Queue capacities.
    pub queue_len: usize,
    /// Scope garbage collection period.
    pub gc_interval: Duration,
}

impl SystemdArgs {
    fn config(&self) -> SystemdConfig {
        SystemdConfig {
            bus_socket: self
                .bus_socket
                .clone()
                .unwrap_or_else(|| self.paths.bus_socket()),
            private_socket: self
                .private_socket
                .clone()
                .unwrap_or_else(|| self.paths.private_socket()),
            unit_dir: self.unit_dir.clone(),
            log_dir: self
                .log_dir
                .clone()
                .unwrap_or_else(|| self.paths.run_dir.join("journal")),
            cookie_fix: self.cookie_fix,
            initial_cookie: self.initial_cookie,
            queue_len: self.queue_len.max(1),
            gc_interval: self.gc_interval,
        }
    }
}

/// Process entry for the `systemd` role.
pub fn main(args: SystemdArgs) -> anyhow::Result<()> {
    crate::daemon_runtime()?.block_on(async {
        let env = Env::init("systemd", &args.common).await?;
        run(args.config(), env).await
    })
}

/// Run systemd until the process is told to stop.
pub async fn run(config: SystemdConfig, env: Env) -> anyhow::Result<()> {
    let units = match &config.unit_dir {
        Some(dir) => supervisor::load_units(dir)
            .with_context(|| format!("loading units from {}", dir.display()))?,
        None => Vec::new(),
    };
    std::fs::create_dir_all(&config.log_dir)
        .with_context(|| format!("creating {}", config.log_dir.display()))?;
    let handle = manager::start(&config, &env, units)?;
    env.health.set_ready(true);
    tracing::info!(
        "systemd: bus on {}, private socket {}, cookie {:#x}{}",
        config.bus_socket.display(),
        config.private_socket.display(),
        config.initial_cookie,
        if config.cookie_fix {
            " (cookie fix on)"
        } else {
            ""
        }
    );
    env.tasks.cancelled().await;
    tracing::info!("systemd: stopping units and exiting");
    let drained = env
        .clock
        .timeout(Duration::from_secs(30), handle.stopped())
        .await;
    if drained.is_err() {
        tracing::warn!("systemd: units did not stop within 30s; exiting anyway");
    }
    Ok(())
}
