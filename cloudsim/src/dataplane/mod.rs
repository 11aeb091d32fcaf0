//! The VPC data plane (`--hypervisor local`): ECS instances as network
//! namespaces whose `eth0` is a TUN device owned by a virtual-NIC process
//! (`ackemu-vnic`), the packet fabric those NICs send every packet to (UDP
//! datagrams on loopback), the cloud-services namespace where metadata,
//! the cloud API, the registry and SLB VIPs answer on the wire, and the
//! SLB proxy with its health checks.
//!
//! Pure cores: [`packet`] (IPv4 parsing), [`lpm`] (longest prefix),
//! [`view`] (the compiled cloud state), [`decide`] (the per-packet
//! decision: route, security groups, conntrack), [`stats`] (counters and
//! the drop log), `slb::{Wrr, HealthState}`. Everything else is I/O at the
//! edge.
//!
//! Nothing emulated is ever routed in the host's namespace: instance and
//! cloud addresses exist only inside namespaces created here; the underlay
//! is 127.0.0.1 (`--hypervisor compose`: the compose network between
//! containers, [`compose`]).

pub mod batch;
pub mod compose;
pub mod decide;
pub mod fabric;
pub mod forward;
pub mod local;
pub mod lpm;
pub mod netns;
pub mod packet;
pub mod services;
pub mod slb;
pub mod stats;
pub mod view;
pub mod vnic;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::tasks::Tasks;

use self::compose::{ComposeBackend, ComposeConfig};
use self::fabric::{Fabric, FabricConfig};
use self::local::{LocalBackend, LocalConfig};
use self::netns::{DataplaneError, Result};
use self::services::CloudServices;
use crate::cloud::Cloud;
use crate::sg::ConntrackTimeouts;

#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub netns_prefix: String,
    pub fabric_listen: SocketAddr,
    pub mtu: usize,
    pub conntrack_max: usize,
    pub drop_log: usize,
    pub vnic_binary: PathBuf,
    pub run_dir: PathBuf,
    pub stop_grace: Duration,
    pub socket_buffer_bytes: usize,
    /// Empty polls the fabric and the NICs make after traffic before they
    /// sleep (fewer wakeups per hop, a little CPU).
    pub spin_polls: usize,
    pub v: u8,
    /// `Some`: instances run in docker-compose's ECS containers instead of
    /// namespaces on this machine.
    pub compose: Option<ComposeConfig>,
}

/// Where instances run.
#[derive(Clone)]
pub enum InstanceBackend {
    /// Namespaces on this machine.
    Local(LocalBackend),
    /// docker-compose's ECS containers.
    Compose(ComposeBackend),
}

impl InstanceBackend {
    /// As the lifecycle drives it.
    pub fn hypervisor(&self) -> std::sync::Arc<dyn crate::hypervisor::HypervisorBackend> {
        match self {
            InstanceBackend::Local(b) => std::sync::Arc::new(b.clone()),
            InstanceBackend::Compose(b) => std::sync::Arc::new(b.clone()),
        }
    }

    /// Powers off every instance (`ids` and any the backend knows of).
    pub async fn power_off_all(&self, ids: Vec<String>) {
        match self {
            InstanceBackend::Local(b) => b.power_off_all(ids).await,
            InstanceBackend::Compose(b) => b.power_off_all().await,
        }
    }
}

/// The running data plane.
pub struct DataPlane {
    pub fabric: Fabric,
    pub services: CloudServices,
    pub backend: InstanceBackend,
}

/// Whether this process can build the data plane (root, `/dev/net/tun`,
/// `ip`); the reason when not.
pub fn preflight() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the local hypervisor needs root (network namespaces and tun devices)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("the local hypervisor needs /dev/net/tun".into());
    }
    let ip_ok = std::process::Command::new("ip")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ip_ok {
        return Err("the local hypervisor needs iproute2's `ip`".into());
    }
    Ok(())
}

impl DataPlane {
    /// Creates the cloud-services namespace, starts the fabric and the SLB
    /// data plane, and builds the local backend.
    pub async fn start(cloud: &Cloud, tasks: &Tasks, cfg: DataPlaneConfig) -> Result<DataPlane> {
        preflight().map_err(|m| DataplaneError::new("starting the data plane", m))?;
        if cfg.compose.is_none() && !cfg.vnic_binary.exists() {
            return Err(DataplaneError::new(
                "starting the data plane",
                format!(
                    "the nic binary {} does not exist (--vnic-binary)",
                    cfg.vnic_binary.display()
                ),
            ));
        }
        let cloud_ns = format!("{}cloud", cfg.netns_prefix);
        let (services, tun) = CloudServices::create(tasks, &cloud_ns, cfg.mtu).await?;
        let fabric = Fabric::start(
            cloud.clone(),
            tasks,
            FabricConfig {
                listen: cfg.fabric_listen,
                mtu: cfg.mtu.max(576) + 64,
                conntrack_max: cfg.conntrack_max,
                timeouts: ConntrackTimeouts::DEFAULT,
                drop_log: cfg.drop_log,
                socket_buffer_bytes: cfg.socket_buffer_bytes,
                cloud_addrs: services::service_addrs(),
                spin_polls: cfg.spin_polls,
            },
            Some(tun),
        )
        .await?;
        cloud.set_fabric(fabric.clone());
        let backend = match cfg.compose.clone() {
            None => InstanceBackend::Local(LocalBackend::new(
                LocalConfig {
                    netns_prefix: cfg.netns_prefix.clone(),
                    run_dir: cfg.run_dir.clone(),
                    vnic_binary: cfg.vnic_binary.clone(),
                    mtu: cfg.mtu,
                    stop_grace: cfg.stop_grace,
                    socket_buffer_bytes: cfg.socket_buffer_bytes,
                    spin_polls: cfg.spin_polls,
                    v: cfg.v,
                },
                fabric.clone(),
                cloud.clone(),
            )),
            Some(c) => InstanceBackend::Compose(
                ComposeBackend::new(c, fabric.clone(), cloud.clone())
                    .map_err(|e| DataplaneError::new("the compose hypervisor", e))?,
            ),
        };
        let (c, s, t) = (cloud.clone(), services.clone(), tasks.clone());
        tasks.spawn("slb/dataplane", slb::run(c, s, t));
        Ok(DataPlane {
            fabric,
            services,
            backend,
        })
    }
}
