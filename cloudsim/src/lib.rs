//! ackemu-cloudsim: the fake cloud — ECS, VPC, security groups, RAM + STS +
//! instance metadata, SLB, ESS and a container registry — and, with
//! `--hypervisor local`, its data plane ([`dataplane`]): instances as
//! network namespaces on TUN devices, the packet fabric, the cloud services
//! and SLB VIPs on the wire.
//!
//! It owns the cloud's state (persisted, every mutation all-or-nothing), the
//! OpenAPI-like actions with their error codes, authentication (AccessKey
//! and STS signatures), RAM authorization of every call, the audit trail,
//! failpoints `cloud/<product>/<Action>`, the instance lifecycle driving a
//! [`hypervisor::HypervisorBackend`], and the pure decision cores the data
//! plane calls per packet ([`sg`], [`route`], [`dataplane::decide`]).
//!
//! It must not know about Kubernetes: nodes, pods and clusters are what
//! other components build on top of ECS instances, routes and SLBs.

pub mod actions;
pub mod auth;
pub mod cidr;
pub mod cli;
pub mod cloud;
pub mod dataplane;
pub mod error;
pub mod grpc;
pub mod http;
pub mod hypervisor;
pub mod lifecycle;
pub mod model;
pub mod params;
pub mod ram;
pub mod route;
pub mod sg;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use anyhow::Context as _;

use crate::cloud::{Cloud, CloudConfig};
use crate::hypervisor::{HypervisorBackend, RecordingBackend};
use crate::model::Quotas;

/// Flags of `ackemu-cloudsim`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ackemu-cloudsim",
    about = "The fake cloud: ECS, VPC, SG, RAM/STS/metadata, SLB, ESS, registry"
)]
pub struct Config {
    /// Where the state snapshot and the audit trail live.
    #[arg(long, default_value = ".ackemu/cloudsim")]
    pub data_dir: PathBuf,
    /// gRPC API (every product and the trail).
    #[arg(long, default_value = "127.0.0.1:18600")]
    pub grpc_listen: SocketAddr,
    /// Instance metadata service (HTTP).
    #[arg(long, default_value = "127.0.0.1:18680")]
    pub metadata_listen: SocketAddr,
    /// Container registry, Docker Registry v2 protocol (HTTP).
    #[arg(long, default_value = "127.0.0.1:18500")]
    pub registry_listen: SocketAddr,
    /// `service` of registry tokens and challenges.
    #[arg(long, default_value = "registry.ackemu.local")]
    pub registry_service: String,
    /// Write the account's root AccessKey as a CLI profile file here.
    #[arg(long)]
    pub admin_profile_file: Option<PathBuf>,
    /// Write the bound addresses as JSON here once listening.
    #[arg(long)]
    pub listen_file: Option<PathBuf>,
    /// Hypervisor backend: `recording` (records calls; with
    /// --hypervisor-log also as JSON lines), `local` (instances are
    /// network namespaces on TUN devices behind the VPC fabric; needs root)
    /// or `compose` (the same, each instance in one of docker-compose's ECS
    /// containers, see --compose-hosts).
    #[arg(long, default_value = "recording")]
    pub hypervisor: String,
    /// `compose`: the ECS containers' host agents (`ecs-0:7070,…`), in
    /// the order instances are assigned to them.
    #[arg(long, value_delimiter = ',')]
    pub compose_hosts: Vec<String>,
    /// `compose`: the fabric's address as the ECS containers reach it
    /// (--fabric-listen is usually 0.0.0.0:PORT there).
    #[arg(long)]
    pub fabric_advertise: Option<std::net::SocketAddrV4>,
    /// `local`: namespaces are `<prefix><instance-id>` and `<prefix>cloud`.
    #[arg(long, default_value = "ackemu-")]
    pub netns_prefix: String,
    /// `local`: the fabric's underlay address (NICs send here; keep it
    /// fixed so running instances survive a cloudsim restart).
    #[arg(long, default_value = "127.0.0.1:18690")]
    pub fabric_listen: SocketAddr,
    /// `local`: the ENI MTU (Alibaba: 1500; 8500 with jumbo frames).
    #[arg(long, default_value_t = 1500)]
    pub eni_mtu: usize,
    /// `local`: tracked flows before new ones are dropped.
    #[arg(long, default_value_t = 262_144)]
    pub fabric_conntrack_max: usize,
    /// `local`: drop records kept for DescribeFabricDrops.
    #[arg(long, default_value_t = 4096)]
    pub fabric_drop_log: usize,
    /// `local`: the NIC binary (default: `ackemu-vnic` next to this one).
    #[arg(long)]
    pub vnic_binary: Option<PathBuf>,
    /// `local`: what happens to running instances when cloudsim exits:
    /// `stop` (power them off) or `keep` (they run on; a restarted
    /// cloudsim adopts them).
    #[arg(long, default_value = "stop")]
    pub on_exit: String,
    /// `local`: empty polls the fabric and the NICs make after traffic
    /// before sleeping (0: sleep at once; more: lower latency, more CPU).
    #[arg(long, default_value_t = 16)]
    pub dataplane_spin_polls: usize,
    /// `local`: time an instance's processes get between SIGTERM and
    /// SIGKILL when it stops.
    #[arg(long, default_value = "3s", value_parser = humantime_duration)]
    pub instance_stop_grace: Duration,
    #[arg(long)]
    pub hypervisor_log: Option<PathBuf>,
    /// Cluster time an instance spends Starting before it boots.
    #[arg(long, default_value = "2s", value_parser = humantime_duration)]
    pub instance_start_delay: Duration,
    /// Custom route entries per route table.
    #[arg(long, default_value_t = crate::route::DEFAULT_ROUTE_ENTRY_QUOTA)]
    pub route_entry_quota: usize,
    /// Calls per second per AccessKey before Throttling.User (0: off).
    #[arg(long, default_value_t = 200.0)]
    pub throttle_qps: f64,
    #[arg(long, default_value_t = 400.0)]
    pub throttle_burst: f64,
    /// Let loopback callers of the metadata service on --metadata-listen
    /// name their instance address in X-Forwarded-For (tests, host-side
    /// tools). On the wire (`local`) it sees callers' ENI addresses.
    #[arg(long)]
    pub metadata_trust_forwarded_for: bool,
    /// Concurrent instance lifecycle operations.
    #[arg(long, default_value_t = 16)]
    pub lifecycle_concurrency: usize,
    #[command(flatten)]
    pub common: ackemu_base::CommonArgs,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    ackemu_base::clock::parse_duration(s)
}

/// Writes `text` to `path` atomically (temp file + rename).
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Runs cloudsim until the environment's token is cancelled.
pub async fn run(config: Config, env: Env) -> anyhow::Result<()> {
    let backend = match config.hypervisor.as_str() {
        "recording" => Backend::Given(Arc::new(match &config.hypervisor_log {
            Some(p) => RecordingBackend::with_log(p.clone()),
            None => RecordingBackend::new(),
        })),
        "local" => Backend::Local,
        "compose" => {
            if config.compose_hosts.is_empty() || config.fabric_advertise.is_none() {
                anyhow::bail!("--hypervisor compose needs --compose-hosts and --fabric-advertise");
            }
            Backend::Local
        }
        other => {
            anyhow::bail!("unknown --hypervisor {other:?}: expected recording, local or compose")
        }
    };
    if !matches!(config.on_exit.as_str(), "stop" | "keep") {
        anyhow::bail!(
            "unknown --on-exit {:?}: expected stop or keep",
            config.on_exit
        );
    }
    serve(config, env, backend).await
}

/// [`run`] with a given backend (tests, the local backend).
pub async fn run_with_backend(
    config: Config,
    env: Env,
    backend: Arc<dyn HypervisorBackend>,
) -> anyhow::Result<()> {
    serve(config, env, Backend::Given(backend)).await
}

enum Backend {
    Given(Arc<dyn HypervisorBackend>),
    /// Built once the cloud is open (it needs the state and the fabric).
    Local,
}

async fn serve(config: Config, env: Env, backend: Backend) -> anyhow::Result<()> {
    let store = store::Store::open(&config.data_dir)?;
    let cloud_config = CloudConfig {
        throttle_qps: config.throttle_qps,
        throttle_burst: config.throttle_burst,
        instance_start_delay: config.instance_start_delay,
        ..CloudConfig::default()
    };
    let quota = config.route_entry_quota;
    let now_ms = env.clock.wall_unix_ms();
    let (cloud, effects) = Cloud::open(
        store,
        env.clock.clone(),
        env.tasks.clone(),
        cloud_config,
        |s, rng| {
            s.quotas = Quotas {
                route_entries_per_table: quota,
                ..Quotas::default()
            };
            let key = actions::ram::new_access_key(rng, None, now_ms);
            s.access_keys.insert(key.id.clone(), key);
        },
    )
    .context("opening cloud state")?;
    // The quota flag applies on every start.
    cloud
        .mutate(|s, _| {
            let changed = s.quotas.route_entries_per_table != quota;
            s.quotas.route_entries_per_table = quota;
            Ok((changed, ()))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let grpc = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding {}", config.grpc_listen))?;
    let meta = tokio::net::TcpListener::bind(config.metadata_listen)
        .await
        .with_context(|| format!("binding {}", config.metadata_listen))?;
    let regl = tokio::net::TcpListener::bind(config.registry_listen)
        .await
        .with_context(|| format!("binding {}", config.registry_listen))?;
    let (grpc_addr, meta_addr, reg_addr) =
        (grpc.local_addr()?, meta.local_addr()?, regl.local_addr()?);

    if let Some(path) = &config.admin_profile_file {
        let s = cloud.snapshot();
        let root = s
            .access_keys
            .values()
            .find(|k| k.user.is_none())
            .context("the account has no root AccessKey")?;
        let profile = cli::ProfileFile::single(cli::Profile {
            name: "default".into(),
            mode: "AK".into(),
            access_key_id: root.id.clone(),
            access_key_secret: root.secret.clone(),
            sts_token: None,
            region_id: s.region.clone(),
            endpoint: format!("http://{grpc_addr}"),
        });
        write_file(path, &serde_json::to_string_pretty(&profile)?)?;
    }

    let tasks = env.tasks.clone();
    let token = tasks.token();
    let (backend, dataplane): (Arc<dyn HypervisorBackend>, Option<dataplane::DataPlane>) =
        match backend {
            Backend::Given(b) => (b, None),
            Backend::Local => {
                let vnic_binary = match &config.vnic_binary {
                    Some(p) => p.clone(),
                    None => std::env::current_exe()
                        .context("locating this binary")?
                        .with_file_name("ackemu-vnic"),
                };
                let dp = dataplane::DataPlane::start(
                    &cloud,
                    &tasks,
                    dataplane::DataPlaneConfig {
                        netns_prefix: config.netns_prefix.clone(),
                        fabric_listen: config.fabric_listen,
                        mtu: config.eni_mtu,
                        conntrack_max: config.fabric_conntrack_max,
                        drop_log: config.fabric_drop_log,
                        vnic_binary,
                        run_dir: config.data_dir.join("instances"),
                        stop_grace: config.instance_stop_grace,
                        socket_buffer_bytes: 4 << 20,
                        spin_polls: config.dataplane_spin_polls,
                        v: config.common.v,
                        compose: match (config.hypervisor.as_str(), config.fabric_advertise) {
                            ("compose", Some(advertise)) => {
                                Some(dataplane::compose::ComposeConfig {
                                    hosts: config.compose_hosts.clone(),
                                    fabric_advertise: advertise,
                                    netns_prefix: config.netns_prefix.clone(),
                                    assignments_file: config.data_dir.join("compose-hosts.json"),
                                    mtu: config.eni_mtu,
                                    stop_grace: config.instance_stop_grace,
                                    socket_buffer_bytes: 4 << 20,
                                    spin_polls: config.dataplane_spin_polls,
                                    v: config.common.v,
                                })
                            }
                            _ => None,
                        },
                    },
                )
                .await
                .with_context(|| {
                    format!(
                        "starting the data plane (--hypervisor {})",
                        config.hypervisor
                    )
                })?;
                (dp.backend.hypervisor(), Some(dp))
            }
        };
    cloud.set_hypervisor(backend.clone());
    lifecycle::recover(&cloud).await;
    let rc = cloud.clone();
    let rb = backend.clone();
    tasks.spawn("cloud/lifecycle/resume", async move {
        lifecycle::resume_running(&rc, rb).await
    });
    let lc = cloud.clone();
    let conc = config.lifecycle_concurrency;
    tasks.spawn("cloud/lifecycle", async move {
        lifecycle::run(lc, backend, effects, conc).await
    });

    let routes = grpc::routes(&cloud);
    let t = token.clone();
    tasks.spawn("cloud/grpc", async move {
        let incoming = tokio_stream_shim::TcpIncoming(grpc);
        if let Err(e) = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, t.cancelled_owned())
            .await
        {
            tracing::error!("cloud grpc server failed: {e}");
        }
    });
    let meta_router = http::metadata_router(http::MetadataState {
        cloud: cloud.clone(),
        trust_forwarded_for: config.metadata_trust_forwarded_for,
    });
    let t = token.clone();
    tasks.spawn("cloud/metadata", async move {
        let svc = meta_router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(meta, svc)
            .with_graceful_shutdown(t.cancelled_owned())
            .await
        {
            tracing::error!("metadata server failed: {e}");
        }
    });
    let reg_router = http::registry_router(http::RegistryState {
        cloud: cloud.clone(),
        service: config.registry_service.clone(),
        token_ttl_s: 300,
    });
    let t = token.clone();
    tasks.spawn("cloud/registry", async move {
        if let Err(e) = axum::serve(regl, reg_router)
            .with_graceful_shutdown(t.cancelled_owned())
            .await
        {
            tracing::error!("registry server failed: {e}");
        }
    });

    let mut listen_json = serde_json::json!({"grpc": grpc_addr.to_string(), "metadata": meta_addr.to_string(), "registry": reg_addr.to_string()});
    if let Some(dp) = &dataplane {
        serve_on_the_wire(&cloud, &tasks, dp, &config).await?;
        listen_json["fabric"] = serde_json::json!(dp.fabric.addr().to_string());
        listen_json["cloud_netns"] = serde_json::json!(dp.services.netns);
    }
    if let Some(path) = &config.listen_file {
        write_file(path, &listen_json.to_string())?;
    }
    tracing::info!(
        "cloudsim: grpc {grpc_addr}, metadata {meta_addr}, registry {reg_addr}, data {}",
        config.data_dir.display()
    );
    env.health.set_ready(true);
    token.cancelled().await;
    env.health.set_ready(false);
    if let Some(dp) = dataplane {
        if config.on_exit == "stop" {
            let ids: Vec<String> = cloud.snapshot().instances.keys().cloned().collect();
            dp.backend.power_off_all(ids).await;
        }
        if let Err(e) = dp.services.destroy().await {
            tracing::warn!("removing the cloud-services namespace: {e}");
        }
    }
    Ok(())
}

/// The metadata service, the cloud API and the registry at their cloud
/// addresses inside the cloud-services namespace (callers are seen with
/// their ENI addresses).
async fn serve_on_the_wire(
    cloud: &cloud::Cloud,
    tasks: &ackemu_base::tasks::Tasks,
    dp: &dataplane::DataPlane,
    config: &Config,
) -> anyhow::Result<()> {
    use dataplane::services::{CLOUD_API_ADDR, METADATA_ADDR, REGISTRY_ADDR, SERVICE_PORT};
    use std::net::SocketAddrV4;
    let token = tasks.token();
    let meta = dp
        .services
        .listen(SocketAddrV4::new(METADATA_ADDR, SERVICE_PORT))
        .await?;
    let router = http::metadata_router(http::MetadataState {
        cloud: cloud.clone(),
        trust_forwarded_for: false,
    });
    let t = token.clone();
    tasks.spawn("cloud/wire/metadata", async move {
        let svc = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(meta, svc)
            .with_graceful_shutdown(t.cancelled_owned())
            .await
        {
            tracing::error!("metadata server (wire) failed: {e}");
        }
    });
    let api = dp
        .services
        .listen(SocketAddrV4::new(CLOUD_API_ADDR, SERVICE_PORT))
        .await?;
    let routes = grpc::routes(cloud);
    let t = token.clone();
    tasks.spawn("cloud/wire/grpc", async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(tokio_stream_shim::TcpIncoming(api), t.cancelled_owned())
            .await
        {
            tracing::error!("cloud grpc server (wire) failed: {e}");
        }
    });
    let reg = dp
        .services
        .listen(SocketAddrV4::new(REGISTRY_ADDR, SERVICE_PORT))
        .await?;
    let router = http::registry_router(http::RegistryState {
        cloud: cloud.clone(),
        service: config.registry_service.clone(),
        token_ttl_s: 300,
    });
    let t = token.clone();
    tasks.spawn("cloud/wire/registry", async move {
        if let Err(e) = axum::serve(reg, router)
            .with_graceful_shutdown(t.cancelled_owned())
            .await
        {
            tracing::error!("registry server (wire) failed: {e}");
        }
    });
    tracing::info!(
        "cloud services on the wire: metadata {METADATA_ADDR}:{SERVICE_PORT}, api {CLOUD_API_ADDR}:{SERVICE_PORT}, registry {REGISTRY_ADDR}:{SERVICE_PORT} in namespace {}",
        dp.services.netns
    );
    Ok(())
}

/// Adapts a bound listener to tonic's incoming stream without extra crates.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct TcpIncoming(pub tokio::net::TcpListener);

    impl futures::Stream for TcpIncoming {
        type Item = std::io::Result<tokio::net::TcpStream>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.0.poll_accept(cx) {
                Poll::Ready(Ok((s, _))) => Poll::Ready(Some(Ok(s))),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}
