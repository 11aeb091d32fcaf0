//! The process environment every component's `run(config, env)` receives,
//! and the command-line flags every binary shares.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::admin::{self, AdminState, Health};
use crate::clock::{Clock, ClockConfig, parse_signed_duration_ms};
use crate::clock_global::set_process_clock;
use crate::tasks::{Tasks, shutdown_signal};
use crate::{failpoint, logging};

/// Flags shared by every ackemu binary (`#[command(flatten)]` them).
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Cluster time runs this many times faster than real time.
    #[arg(long, default_value_t = 1.0, env = "ACKEMU_TIME_SCALE")]
    pub time_scale: f64,
    /// The cluster epoch (unix ms) shared by all processes of a cluster;
    /// defaults to this process's start.
    #[arg(long, env = "ACKEMU_CLUSTER_EPOCH_MS")]
    pub cluster_epoch_ms: Option<i64>,
    /// Initial wall-clock offset (e.g. `400d`, `-5m`); a container gets its
    /// node's through `ACKEMU_CLOCK_OFFSET`.
    #[arg(
        long,
        default_value = "0",
        allow_hyphen_values = true,
        env = "ACKEMU_CLOCK_OFFSET"
    )]
    pub clock_offset: String,
    /// Address of the admin port (FaultService gRPC, /metrics, /healthz,
    /// /readyz, /debug/tasks).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// klog verbosity.
    #[arg(long = "v", default_value_t = 0)]
    pub v: u8,
    /// Log JSON lines instead of klog text.
    #[arg(long)]
    pub log_json: bool,
    /// Failpoints to set at start-up: `name=spec;name=spec`.
    #[arg(long, env = "ACKEMU_FAILPOINTS")]
    pub failpoints: Option<String>,
    /// Seed for probabilistic failpoints.
    #[arg(long, env = "ACKEMU_FAILPOINT_SEED")]
    pub failpoint_seed: Option<u64>,
}

impl Default for CommonArgs {
    fn default() -> Self {
        CommonArgs {
            time_scale: 1.0,
            cluster_epoch_ms: None,
            clock_offset: "0".into(),
            admin_listen: None,
            v: 0,
            log_json: false,
            failpoints: None,
            failpoint_seed: None,
        }
    }
}

impl CommonArgs {
    /// The clock these flags describe.
    pub fn clock_config(&self) -> anyhow::Result<ClockConfig> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            anyhow::bail!(
                "invalid --time-scale {}: expected a positive number",
                self.time_scale
            );
        }
        let now = ClockConfig::real_now();
        Ok(ClockConfig {
            time_scale: self.time_scale,
            epoch_unix_ms: self.cluster_epoch_ms.unwrap_or(now.epoch_unix_ms),
            offset_ms: parse_signed_duration_ms(&self.clock_offset)
                .map_err(|e| anyhow::anyhow!("--clock-offset: {e}"))?,
        })
    }

    /// The environment that gives a program this clock (epoch, scale,
    /// offset): what a node's runtime hands its containers, whose clock is
    /// the node's.
    pub fn clock_env(clock: &Clock) -> Vec<(&'static str, String)> {
        vec![
            ("ACKEMU_TIME_SCALE", clock.time_scale().to_string()),
            ("ACKEMU_CLUSTER_EPOCH_MS", clock.epoch_unix_ms().to_string()),
            ("ACKEMU_CLOCK_OFFSET", format!("{}ms", clock.offset_ms())),
        ]
    }

    /// The flags to pass a child process of the same cluster so it shares
    /// this clock (epoch, scale, offset).
    pub fn clock_flags(clock: &Clock) -> Vec<String> {
        vec![
            format!("--time-scale={}", clock.time_scale()),
            format!("--cluster-epoch-ms={}", clock.epoch_unix_ms()),
            format!("--clock-offset={}ms", clock.offset_ms()),
        ]
    }
}

/// What a component's `run` gets.
#[derive(Clone, Debug)]
pub struct Env {
    /// Cluster time.
    pub clock: Clock,
    /// Task spawner; its token is cancelled on SIGTERM/SIGINT.
    pub tasks: Tasks,
    /// `/healthz` and `/readyz`.
    pub health: Health,
    /// Component name (logs, metrics).
    pub component: String,
    /// Where the admin server listens, if it runs.
    pub admin_addr: Option<SocketAddr>,
}

impl Env {
    /// Set up a process: clock, logging, metrics, failpoints, admin server,
    /// and SIGTERM/SIGINT → cancellation.
    pub async fn init(component: &str, args: &CommonArgs) -> anyhow::Result<Env> {
        let clock = Clock::new(args.clock_config()?);
        set_process_clock(clock.clone());
        logging::init(&logging::LogConfig {
            v: args.v,
            json: args.log_json,
        });
        admin::metrics_handle();
        if let Some(seed) = args.failpoint_seed {
            failpoint::set_seed(seed);
        }
        if let Some(spec) = &args.failpoints {
            failpoint::configure_from_str(spec).context("--failpoints / ACKEMU_FAILPOINTS")?;
        }
        let tasks = Tasks::new(clock.clone());
        let health = Health::default();
        let mut admin_addr = None;
        if let Some(addr) = args.admin_listen {
            let (listener, bound) = admin::bind(addr)
                .await
                .with_context(|| format!("binding admin port {addr}"))?;
            admin_addr = Some(bound);
            let state = AdminState {
                clock: clock.clone(),
                health: health.clone(),
                component: component.to_string(),
            };
            let stop = tasks.token();
            tasks.spawn("admin/serve", async move {
                if let Err(e) = admin::serve(listener, state, stop).await {
                    tracing::error!("admin server failed: {e}");
                }
            });
            tracing::info!("{component}: admin server listening on {bound}");
        }
        let token = tasks.token();
        tasks.spawn("signal/shutdown", async move {
            tokio::select! {
                () = shutdown_signal() => token.cancel(),
                () = token.cancelled() => {}
            }
        });
        Ok(Env {
            clock,
            tasks,
            health,
            component: component.to_string(),
            admin_addr,
        })
    }

    /// An environment for tests and in-process use: no admin server, no
    /// global logging, no signal handling.
    pub fn for_test(clock: Clock) -> Env {
        Env {
            tasks: Tasks::new(clock.clone()),
            clock,
            health: Health::default(),
            component: "test".into(),
            admin_addr: None,
        }
    }
}
