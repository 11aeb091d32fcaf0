//! `ackemu-node cnid`: the node's CNI daemon (terwayd/flanneld-like).
//!
//! Every ADD/DEL/CHECK runs as a named task and takes **one lock** around
//! all its netlink work, as terwayd did. When a netlink receive never
//! returns (failpoint `cnid/netlink/recv=hang`), the task holding the lock
//! waits forever and every later request queues behind it — and each of
//! them keeps a plugin process (and, above it, the runtime) waiting: S02.
//! The task dump (`curl --unix-socket <socket> http://localhost/debug/tasks`,
//! or the admin port) lists the requests oldest wait first: the first row is
//! the holder, parked in its netlink receive. `--netlink-timeout` is the
//! article's fix: every netlink operation gives up after that long, the
//! request fails and the lock is released.

pub mod ipam;
pub mod net;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::{Tasks, wait_on};
use ackemu_base::{CommonArgs, Env};
use ackemu_proto::ackemu::node::v1 as pb;
use anyhow::Context as _;
use ipnet::Ipv4Net;
use tokio::sync::Mutex;

use crate::cni::types::{self, CniError, CniResult, code};
use crate::paths::NodePaths;
use ipam::{Allocation, Ipam};
use net::{NetError, Netlink};

/// `ackemu-node cnid` flags.
#[derive(clap::Args, Debug)]
pub struct CnidArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// The daemon's socket (default `<run-dir>/cnid.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The node's pod CIDR (from the Node's `spec.podCIDR`).
    #[arg(long)]
    pod_cidr: Ipv4Net,
    /// The bridge pods are attached to.
    #[arg(long, default_value = "cni0")]
    bridge: String,
    /// Where IPAM state is persisted.
    #[arg(long, default_value = "/var/lib/ackemu/cni")]
    data_dir: PathBuf,
    /// Directory of named network namespaces the daemon may create.
    #[arg(long, default_value = "/run/netns")]
    netns_dir: PathBuf,
    /// Give up on any netlink operation after this long (cluster time),
    /// releasing the lock: the article's fix. Unset: wait forever.
    #[arg(long, value_parser = ackemu_base::clock::parse_duration)]
    netlink_timeout: Option<Duration>,
}

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct CnidConfig {
    /// Socket path.
    pub socket: PathBuf,
    /// Pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// Bridge name.
    pub bridge: String,
    /// IPAM state directory.
    pub data_dir: PathBuf,
    /// Namespaces directory.
    pub netns_dir: PathBuf,
    /// Per-operation netlink timeout.
    pub netlink_timeout: Option<Duration>,
}

/// Process entry for the `cnid` role.
pub fn main(args: CnidArgs) -> anyhow::Result<()> {
    crate::daemon_runtime()?.block_on(async {
        let env = Env::init("cnid", &args.common).await?;
        let config = CnidConfig {
            socket: args
                .socket
                .clone()
                .unwrap_or_else(|| args.paths.cnid_socket()),
            pod_cidr: args.pod_cidr,
            bridge: args.bridge.clone(),
            data_dir: args.data_dir.clone(),
            netns_dir: args.netns_dir.clone(),
            netlink_timeout: args.netlink_timeout,
        };
        run(config, env).await
    })
}

/// Serve until told to stop.
pub async fn run(config: CnidConfig, env: Env) -> anyhow::Result<()> {
    let daemon = Daemon::new(&config, &env)?;
    let listener = crate::uds::bind(&config.socket)
        .with_context(|| format!("binding {}", config.socket.display()))?;
    let router = tonic::service::Routes::new(crate::grpc::cnid::server(daemon))
        .into_axum_router()
        .merge(crate::uds::debug_routes());
    tracing::info!(
        "cnid: serving {} for pod CIDR {} on bridge {}{}",
        config.socket.display(),
        config.pod_cidr,
        config.bridge,
        match config.netlink_timeout {
            Some(t) => format!(", netlink timeout {t:?}"),
            None => String::new(),
        }
    );
    env.health.set_ready(true);
    crate::uds::serve(
        listener,
        config.socket.clone(),
        router,
        env.tasks.token(),
        &env.clock,
    )
    .await?;
    Ok(())
}

struct State {
    ipam: Ipam,
    node: Netlink,
}

/// The daemon core: one lock around IPAM and every netlink operation.
#[derive(Clone)]
pub struct Daemon {
    cfg: Arc<CnidConfig>,
    state: Arc<Mutex<State>>,
    tasks: Tasks,
    clock: Clock,
}

/// Which operation.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// ADD
    Add,
    /// DEL
    Del,
    /// CHECK
    Check,
}

impl Daemon {
    /// Load IPAM state and open the node's netlink socket.
    pub fn new(cfg: &CnidConfig, env: &Env) -> anyhow::Result<Daemon> {
        let ipam = Ipam::load(&cfg.data_dir.join("ipam.json"), cfg.pod_cidr)?;
        let node = Netlink::here(&env.tasks, env.clock.clone(), cfg.netlink_timeout)?;
        Ok(Daemon {
            cfg: Arc::new(cfg.clone()),
            state: Arc::new(Mutex::new(State { ipam, node })),
            tasks: env.tasks.clone(),
            clock: env.clock.clone(),
        })
    }

    /// Handle one request as a named task (so it shows in the task dump
    /// with what it waits on), and wait for it.
    pub async fn handle(&self, op: Op, req: pb::CniRequest) -> pb::CniReply {
        let short: String = req.container_id.chars().take(12).collect();
        let name = format!(
            "cnid {} {short} (plugin pid {})",
            match op {
                Op::Add => "ADD",
                Op::Del => "DEL",
                Op::Check => "CHECK",
            },
            req.plugin_pid
        );
        let me = self.clone();
        let h = self.tasks.spawn(name, async move {
            let mut state = wait_on("cnid: the daemon lock", me.state.lock()).await;
            match op {
                Op::Add => me.add(&mut state, &req).await,
                Op::Del => me.del(&mut state, &req).await.map(|()| String::new()),
                Op::Check => me.check(&mut state, &req).await.map(|()| String::new()),
            }
        });
        let outcome = match h.await {
            Ok(r) => r,
            Err(e) => Err(CniError::new(
                code::IO_FAILURE,
                format!("cnid request task failed: {e}"),
            )),
        };
        pb::CniReply {
            outcome: Some(match outcome {
                Ok(j) => pb::cni_reply::Outcome::ResultJson(j),
                Err(e) => pb::cni_reply::Outcome::Error(pb::CniError {
                    code: e.code,
                    msg: e.msg,
                    details: e.details,
                }),
            }),
        }
    }

    fn save(&self, state: &State) -> Result<(), CniError> {
        state
            .ipam
            .save(&self.cfg.data_dir.join("ipam.json"))
            .map_err(|e| CniError::new(code::IO_FAILURE, e.to_string()))
    }

    async fn add(&self, state: &mut State, req: &pb::CniRequest) -> Result<String, CniError> {
        let conf = types::parse_netconf(&req.netconf_json)?;
        let netns = PathBuf::from(&req.netns);
        let mut created = false;
        if !netns.exists() {
            if !net::under(&netns, &self.cfg.netns_dir) {
                return Err(CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!(
                        "network namespace {} does not exist and is not under {}",
                        netns.display(),
                        self.cfg.netns_dir.display()
                    ),
                ));
            }
            net::create_netns(&self.tasks, &netns)
                .await
                .map_err(net_err)?;
            created = true;
        }
        let existing = state
            .ipam
            .find(&req.container_id, &req.ifname)
            .map(|(_, a)| a.created_netns);
        let ip = state
            .ipam
            .allocate(Allocation {
                container_id: req.container_id.clone(),
                ifname: req.ifname.clone(),
                netns: req.netns.clone(),
                created_netns: created || existing.unwrap_or(false),
            })
            .map_err(|e| CniError::new(code::IPAM_EXHAUSTED, e.to_string()))?;
        self.save(state)?;
        match self.wire(state, req, &netns, ip).await {
            Ok(mac) => {
                let subnet = state.ipam.subnet();
                let result = CniResult {
                    cni_version: conf.cni_version,
                    interfaces: vec![
                        types::Interface {
                            name: net::veth_names(&req.container_id, &req.ifname).0,
                            mac: String::new(),
                            sandbox: String::new(),
                        },
                        types::Interface {
                            name: req.ifname.clone(),
                            mac,
                            sandbox: req.netns.clone(),
                        },
                    ],
                    ips: vec![types::IpConfig {
                        address: format!("{ip}/{}", subnet.prefix_len()),
                        gateway: state.ipam.gateway().to_string(),
                        interface: 1,
                    }],
                    routes: vec![types::Route {
                        dst: "0.0.0.0/0".into(),
                        gw: state.ipam.gateway().to_string(),
                    }],
                    dns: serde_json::json!({}),
                };
                tracing::info!(
                    "cnid: ADD {} {} -> {ip} in {}",
                    req.container_id,
                    req.ifname,
                    req.netns
                );
                Ok(serde_json::to_string(&result).unwrap_or_default())
            }
            Err(e) => {
                tracing::warn!("cnid: ADD {} failed: {e}; rolling back", req.container_id);
                let (host, _) = net::veth_names(&req.container_id, &req.ifname);
                if let Err(re) = state.node.del_link(&host).await {
                    tracing::warn!("cnid: rollback of {host} failed: {re}");
                }
                if let Some((_, a)) = state.ipam.release(&req.container_id, &req.ifname)
                    && a.created_netns
                    && let Err(re) = net::delete_netns(&netns)
                {
                    tracing::warn!("cnid: removing {}: {re}", netns.display());
                }
                self.save(state)?;
                Err(net_err(e))
            }
        }
    }

    /// The netlink part of ADD; returns the pod interface's MAC.
    async fn wire(
        &self,
        state: &mut State,
        req: &pb::CniRequest,
        netns: &Path,
        ip: Ipv4Addr,
    ) -> Result<String, NetError> {
        let subnet = state.ipam.subnet();
        let gateway = state.ipam.gateway();
        let bridge = state
            .node
            .ensure_bridge(&self.cfg.bridge, gateway, subnet.prefix_len())
            .await?;
        let (host, tmp) = net::veth_names(&req.container_id, &req.ifname);
        // A half-done earlier ADD of the same container.
        state.node.del_link(&host).await?;
        state.node.add_veth(&host, &tmp).await?;
        let ns = File::open(netns).map_err(|e| NetError::Setup {
            what: format!("opening {}", netns.display()),
            message: e.to_string(),
        })?;
        state.node.set_netns(&tmp, &ns).await?;
        state.node.attach_up(&host, bridge).await?;
        let pod = Netlink::in_netns(
            &self.tasks,
            self.clock.clone(),
            self.cfg.netlink_timeout,
            netns,
        )
        .await?;
        pod.configure_pod_if(&tmp, &req.ifname, ip, subnet.prefix_len(), gateway)
            .await
    }

    async fn del(&self, state: &mut State, req: &pb::CniRequest) -> Result<(), CniError> {
        let (host, _) = net::veth_names(&req.container_id, &req.ifname);
        state.node.del_link(&host).await.map_err(net_err)?;
        if let Some((ip, a)) = state.ipam.release(&req.container_id, &req.ifname) {
            if a.created_netns {
                net::delete_netns(Path::new(&a.netns)).map_err(net_err)?;
            }
            self.save(state)?;
            tracing::info!(
                "cnid: DEL {} {} released {ip}",
                req.container_id,
                req.ifname
            );
        }
        Ok(())
    }

    async fn check(&self, state: &mut State, req: &pb::CniRequest) -> Result<(), CniError> {
        let Some((ip, _)) = state.ipam.find(&req.container_id, &req.ifname) else {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "no address allocated to {} {}",
                    req.container_id, req.ifname
                ),
            ));
        };
        let (host, _) = net::veth_names(&req.container_id, &req.ifname);
        if state.node.link(&host).await.map_err(net_err)?.is_none() {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!("host veth {host} is missing"),
            ));
        }
        let pod = Netlink::in_netns(
            &self.tasks,
            self.clock.clone(),
            self.cfg.netlink_timeout,
            Path::new(&req.netns),
        )
        .await
        .map_err(net_err)?;
        let addrs = pod.addresses(&req.ifname).await.map_err(net_err)?;
        if !addrs.contains(&ip) {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!("{} in {} lacks {ip} (has {addrs:?})", req.ifname, req.netns),
            ));
        }
        Ok(())
    }
}

fn net_err(e: NetError) -> CniError {
    let c = match &e {
        NetError::Timeout { .. } => code::TRY_AGAIN_LATER,
        _ => code::NETLINK,
    };
    CniError::new(c, e.to_string())
}
