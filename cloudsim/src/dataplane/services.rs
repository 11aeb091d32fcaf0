//! The cloud-services namespace: where the cloud answers on the wire.
//! Its TUN device `eth0` is attached to the fabric directly (the fabric
//! thread reads and writes it), it holds the service addresses in
//! 100.64.0.0/10 (metadata 100.100.100.200, the cloud API, the registry,
//! the SLB source address) and every SLB VIP, and cloudsim's own servers
//! listen on sockets opened inside it — so callers are seen with their real
//! ENI addresses, and a security group that denies 100.64.0.0/10 really
//! cuts an instance off.

use std::net::{Ipv4Addr, SocketAddrV4};

use ackemu_base::tasks::Tasks;
use tun_tap::{Iface, Mode};

use super::netns::{self, DataplaneError, NsThread, Result};

/// Instance metadata (HTTP :80).
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
/// The cloud API, gRPC (h2c) on :80 — every product.
pub const CLOUD_API_ADDR: Ipv4Addr = Ipv4Addr::new(100, 100, 0, 10);
/// The container registry, Docker Registry v2 over HTTP :80.
pub const REGISTRY_ADDR: Ipv4Addr = Ipv4Addr::new(100, 100, 0, 20);
/// Where SLB connections to backends and health checks come from (Alibaba's
/// load balancers use local addresses in 100.64.0.0/10 the same way).
pub const SLB_SOURCE_ADDR: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 1);
/// Port of the service addresses.
pub const SERVICE_PORT: u16 = 80;

pub fn service_addrs() -> Vec<Ipv4Addr> {
    vec![
        METADATA_ADDR,
        CLOUD_API_ADDR,
        REGISTRY_ADDR,
        SLB_SOURCE_ADDR,
    ]
}

/// The namespace and a thread parked in it.
#[derive(Clone)]
pub struct CloudServices {
    pub netns: String,
    thread: NsThread,
}

impl CloudServices {
    /// (Re)creates namespace `name` with its TUN device; returns the device
    /// for the fabric.
    pub async fn create(tasks: &Tasks, name: &str, mtu: usize) -> Result<(CloudServices, Iface)> {
        netns::del(name).await?;
        netns::add(name).await?;
        let thread = NsThread::start(tasks, name).await?;
        let tun = thread
            .run(|| {
                let t = Iface::without_packet_info("eth0", Mode::Tun)?;
                let _ = std::fs::write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "1");
                Ok::<_, std::io::Error>(t)
            })
            .await?
            .map_err(|e| DataplaneError::new("creating the cloud-services tun", e))?;
        let mtu = mtu.to_string();
        netns::ip(&["-n", name, "link", "set", "eth0", "mtu", &mtu, "up"]).await?;
        for a in service_addrs() {
            netns::ip(&["-n", name, "addr", "add", &format!("{a}/32"), "dev", "eth0"]).await?;
        }
        netns::ip(&["-n", name, "route", "replace", "default", "dev", "eth0"]).await?;
        Ok((
            CloudServices {
                netns: name.to_owned(),
                thread,
            },
            tun,
        ))
    }

    /// A listening socket inside the namespace.
    pub async fn listen(&self, addr: SocketAddrV4) -> Result<tokio::net::TcpListener> {
        let l = self
            .thread
            .run(move || {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(l)
            })
            .await?
            .map_err(|e| {
                DataplaneError::new(format!("listening on {addr} in the cloud namespace"), e)
            })?;
        tokio::net::TcpListener::from_std(l)
            .map_err(|e| DataplaneError::new(format!("registering listener {addr}"), e))
    }

    /// An unconnected TCP socket bound to `from` inside the namespace.
    pub async fn socket(&self, from: SocketAddrV4) -> Result<tokio::net::TcpSocket> {
        self.thread
            .run(move || {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(from.into())?;
                Ok::<_, std::io::Error>(s)
            })
            .await?
            .map_err(|e| DataplaneError::new(format!("opening a socket from {from}"), e))
    }

    pub async fn add_addr(&self, a: Ipv4Addr) -> Result<()> {
        netns::ip(&[
            "-n",
            &self.netns,
            "addr",
            "replace",
            &format!("{a}/32"),
            "dev",
            "eth0",
        ])
        .await
    }

    pub async fn del_addr(&self, a: Ipv4Addr) -> Result<()> {
        netns::ip(&[
            "-n",
            &self.netns,
            "addr",
            "del",
            &format!("{a}/32"),
            "dev",
            "eth0",
        ])
        .await
    }

    /// Removes the namespace (its TUN goes with it once the fabric closes
    /// the device).
    pub async fn destroy(&self) -> Result<()> {
        netns::del(&self.netns).await
    }
}
