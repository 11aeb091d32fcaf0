//! The VPC fabric's I/O: one UDP socket on the underlay (loopback) that
//! every virtual NIC sends its packets to, plus the TUN device of the
//! cloud-services namespace. A dedicated thread runs a single-threaded
//! tokio loop over both (readiness through `AsyncFd`), receives in batches
//! (`recvmmsg`), decides each packet with [`Decider`] against the compiled
//! [`View`], and forwards in batches (`sendmmsg`) straight from the receive
//! buffers.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackemu_base::tasks::Tasks;
use parking_lot::Mutex;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tun_tap::Iface;

use super::batch::{self, BATCH, RecvBatch, SendHeaders};
use super::decide::{Decider, Forward, Now, Source};
use super::netns::{DataplaneError, Result};
use super::packet::Malformed;
use super::stats::{DropReason, DropRecord, Stats};
use super::view::{View, Zones};
use super::wire;
use crate::cloud::Cloud;
use crate::sg::{Conntrack, ConntrackTimeouts};

#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// The underlay address NICs send to (loopback).
    pub listen: SocketAddr,
    /// Largest packet (the ENI MTU).
    pub mtu: usize,
    pub conntrack_max: usize,
    pub timeouts: ConntrackTimeouts,
    /// Drop records kept.
    pub drop_log: usize,
    /// Underlay socket buffers, bytes.
    pub socket_buffer_bytes: usize,
    /// Addresses the cloud-services namespace answers.
    pub cloud_addrs: Vec<Ipv4Addr>,
    /// Empty polls before the loop sleeps again after traffic (0: at once).
    pub spin_polls: usize,
}

#[derive(Default)]
struct Attachments {
    /// Instances whose NIC may attach (booting or running).
    allowed: HashSet<String>,
    attached: HashMap<String, SocketAddrV4>,
}

struct Shared {
    stats: Mutex<Stats>,
    attach: Mutex<Attachments>,
    /// Bumped when an attachment is withdrawn, so the loop recompiles.
    generation: AtomicU64,
    addr: SocketAddrV4,
}

/// A handle on the running fabric (cheap to clone).
#[derive(Clone)]
pub struct Fabric {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl Fabric {
    /// Binds the underlay socket and starts the fabric thread; it stops
    /// when `tasks`' token is cancelled.
    pub async fn start(
        cloud: Cloud,
        tasks: &Tasks,
        cfg: FabricConfig,
        cloud_tun: Option<Iface>,
    ) -> Result<Fabric> {
        let sock = std::net::UdpSocket::bind(cfg.listen)
            .map_err(|e| DataplaneError::new(format!("binding fabric {}", cfg.listen), e))?;
        sock.set_nonblocking(true)
            .map_err(|e| DataplaneError::new("fabric socket", e))?;
        set_buffers(&sock, cfg.socket_buffer_bytes);
        let addr = match sock.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            other => {
                return Err(DataplaneError::new(
                    "fabric socket",
                    format!("expected an ipv4 address, got {other:?}"),
                ));
            }
        };
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats::new(cfg.drop_log)),
            attach: Mutex::new(Attachments::default()),
            generation: AtomicU64::new(0),
            addr,
        });
        if let Some(t) = &cloud_tun {
            t.set_non_blocking()
                .map_err(|e| DataplaneError::new("cloud tun", e))?;
        }
        let token = tasks.token();
        let sh = shared.clone();
        let clock = cloud.clock().clone();
        tasks.spawn_thread("fabric", move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("fabric: building its runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let udp = match tokio::net::UdpSocket::from_std(sock) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::error!("fabric: registering its socket: {e}");
                        return;
                    }
                };
                let tun = match cloud_tun.map(register_tun).transpose() {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!("fabric: registering the cloud tun: {e}");
                        return;
                    }
                };
                let mut core = Core {
                    cloud,
                    shared: sh,
                    view: View::default(),
                    zones: Zones::default(),
                    seen_gen: u64::MAX,
                    decider: Decider::new(Conntrack::with_timeouts(
                        cfg.conntrack_max,
                        cfg.timeouts,
                    )),
                    signing_key: String::new(),
                    cloud_addrs: cfg.cloud_addrs.clone(),
                    clock,
                    mtu: cfg.mtu,
                    spin_polls: cfg.spin_polls,
                };
                let mut bufs = Buffers {
                    udp: RecvBatch::new(cfg.mtu),
                    tun: RecvBatch::new(cfg.mtu),
                    hdrs: SendHeaders::default(),
                };
                run_loop(&mut core, &mut bufs, &udp, tun.as_ref(), token).await;
            });
        });
        tracing::info!("fabric listening on {addr}");
        Ok(Fabric { shared })
    }

    /// The underlay address NICs send to.
    pub fn addr(&self) -> SocketAddrV4 {
        self.shared.addr
    }

    /// Lets `instance`'s NIC attach (its hellos are accepted).
    pub fn expect(&self, instance: &str) {
        self.shared
            .attach
            .lock()
            .allowed
            .insert(instance.to_owned());
    }

    /// Detaches `instance`'s NIC: no packet goes to or comes from it until
    /// it is expected again.
    pub fn detach(&self, instance: &str) {
        let mut a = self.shared.attach.lock();
        a.allowed.remove(instance);
        a.attached.remove(instance);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Where `instance`'s NIC is, once attached.
    pub fn attachment(&self, instance: &str) -> Option<SocketAddrV4> {
        self.shared.attach.lock().attached.get(instance).copied()
    }

    pub fn with_stats<R>(&self, f: impl FnOnce(&Stats) -> R) -> R {
        f(&self.shared.stats.lock())
    }
}

/// Wraps a TUN device for readiness.
#[allow(unsafe_code)]
pub fn register_tun(tun: Iface) -> std::io::Result<AsyncFd<Iface>> {
    // SAFETY: `Iface` owns its file descriptor (a `File`) and nothing
    // closes or replaces it while the `AsyncFd` owns the `Iface`.
    unsafe { AsyncFd::register(tun) }.map_err(|e| e.into_parts().1)
}

/// Larger socket buffers (forced past `rmem_max` when root) so bursts of a
/// fast TCP stream are not dropped on the underlay.
pub fn set_buffers(sock: &std::net::UdpSocket, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &bytes);
    }
    if setsockopt(sock, sockopt::SndBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &bytes);
    }
}

struct Core {
    cloud: Cloud,
    shared: Arc<Shared>,
    view: View,
    zones: Zones,
    seen_gen: u64,
    decider: Decider,
    signing_key: String,
    cloud_addrs: Vec<Ipv4Addr>,
    clock: ackemu_base::clock::Clock,
    mtu: usize,
    spin_polls: usize,
}

struct Buffers {
    udp: RecvBatch,
    tun: RecvBatch,
    hdrs: SendHeaders,
}

impl Core {
    /// Recompiles the view when the cloud state or the attachments changed.
    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let s = self.cloud.snapshot();
        if s.revision == self.view.revision && generation == self.seen_gen {
            return;
        }
        let attached = self.shared.attach.lock().attached.clone();
        self.view = View::compile(&s, &mut self.zones, &attached, &self.cloud_addrs);
        self.signing_key.clone_from(&s.signing_key);
        self.seen_gen = generation;
    }

    fn now(&self) -> Now {
        Now {
            mono_ms: self.clock.now().as_millis() as u64,
            wall_ms: self.clock.wall_unix_ms(),
        }
    }

    fn hello(&mut self, instance: &str, from: SocketAddrV4) {
        let mut a = self.shared.attach.lock();
        if !a.allowed.contains(instance) {
            return;
        }
        if a.attached.get(instance) != Some(&from) {
            tracing::info!("fabric: nic of {instance} attached from {from}");
            a.attached.insert(instance.to_owned(), from);
            drop(a);
            if !self.view.attach(instance, from) {
                // Not in the view yet (created after the last compile).
                self.seen_gen = u64::MAX;
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = self.now();
        self.decider.conntrack.sweep(now.mono_ms);
        let mut st = self.shared.stats.lock();
        st.conntrack_flows = self.decider.conntrack.len();
        st.conntrack_capacity = self.decider.conntrack.capacity();
        st.attached_nics = self.view.attached_count();
        metrics::counter!("ackemu_fabric_forwarded_packets_total").absolute(st.forwarded_packets);
        metrics::counter!("ackemu_fabric_dropped_packets_total").absolute(st.dropped_total());
        metrics::gauge!("ackemu_fabric_conntrack_flows").set(st.conntrack_flows as f64);
    }

    /// Decides and forwards one received batch.
    fn process(
        &mut self,
        batch: &RecvBatch,
        from_cloud: bool,
        tun: Option<&Iface>,
        udp_fd: RawFd,
        hdrs: &mut SendHeaders,
    ) {
        let now = self.now();
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let mut sends = [(0usize, 0usize, unspecified); BATCH];
        let mut k = 0;
        let mut hellos: Vec<(String, SocketAddrV4)> = Vec::new();
        {
            let mut stats = self.shared.stats.lock();
            for i in 0..batch.len() {
                let (data, from, truncated) = batch.get(i);
                let src = if from_cloud {
                    Source::Cloud
                } else {
                    if wire::is_hello(data) {
                        if let (Some(id), Some(f)) =
                            (wire::verify_hello(data, &self.signing_key), from)
                        {
                            hellos.push((id.to_owned(), f));
                        }
                        continue;
                    }
                    match from.and_then(|f| self.view.eni_by_underlay(&f)) {
                        Some(e) => Source::Eni(e),
                        None => {
                            stats.drop_packet(DropRecord {
                                time_unix_ms: now.wall_ms,
                                reason: DropReason::UnknownSource,
                                source_instance: None,
                                destination_instance: None,
                                flow: None,
                            });
                            continue;
                        }
                    }
                };
                if truncated {
                    let src_instance = match src {
                        Source::Eni(e) => Some(self.view.enis[e].instance_id.clone()),
                        Source::Cloud => None,
                    };
                    stats.drop_packet(DropRecord {
                        time_unix_ms: now.wall_ms,
                        reason: DropReason::Malformed(Malformed::TooLarge { limit: self.mtu }),
                        source_instance: src_instance,
                        destination_instance: None,
                        flow: None,
                    });
                    continue;
                }
                match self.decider.decide(&self.view, &mut stats, src, data, &now) {
                    Forward::Eni { idx, len } => {
                        if let Some(u) = self.view.enis[idx].underlay {
                            sends[k] = (i, len, u);
                            k += 1;
                        }
                    }
                    Forward::Cloud { len } => {
                        let res = match tun {
                            Some(t) => t.send(&data[..len]).map(|_| ()),
                            None => Err(std::io::Error::other("no cloud-services namespace")),
                        };
                        if let Err(e) = res {
                            stats.drop_packet(DropRecord {
                                time_unix_ms: now.wall_ms,
                                reason: DropReason::DeliveryFailed(format!(
                                    "writing to the cloud-services tun: {e}"
                                )),
                                source_instance: None,
                                destination_instance: None,
                                flow: None,
                            });
                        }
                    }
                    Forward::Drop => {}
                }
            }
        }
        if k > 0 {
            let mut pkts: [(&[u8], Option<SocketAddrV4>); BATCH] = [(&[][..], None); BATCH];
            for (j, (i, len, to)) in sends[..k].iter().enumerate() {
                pkts[j] = (&batch.get(*i).0[..*len], Some(*to));
            }
            let mut done = 0;
            while done < k {
                match batch::send(hdrs, udp_fd, &pkts[done..k]) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // The underlay refused: count the rest as failed
                        // deliveries (TCP will retransmit).
                        let mut stats = self.shared.stats.lock();
                        for _ in done..k {
                            stats.drop_packet(DropRecord {
                                time_unix_ms: now.wall_ms,
                                reason: DropReason::DeliveryFailed(format!(
                                    "sending on the underlay: {e}"
                                )),
                                source_instance: None,
                                destination_instance: None,
                                flow: None,
                            });
                        }
                        break;
                    }
                }
            }
        }
        for (id, from) in hellos {
            self.hello(&id, from);
        }
    }
}

/// Rounds of batches handled per readiness event before yielding to the
/// other source (fairness between NICs and the cloud side).
const ROUNDS: usize = 16;

/// One batch from the underlay; `direct` bypasses tokio's readiness (while
/// spinning). Returns the datagrams handled.
fn udp_round(
    core: &mut Core,
    bufs: &mut Buffers,
    udp: &tokio::net::UdpSocket,
    tun: Option<&AsyncFd<Iface>>,
    direct: bool,
) -> usize {
    let fd = udp.as_raw_fd();
    let rb = &mut bufs.udp;
    let r = if direct {
        rb.recv(fd)
    } else {
        udp.try_io(Interest::READABLE, || rb.recv(fd))
    };
    match r {
        Ok(n) => {
            core.process(
                &bufs.udp,
                false,
                tun.map(|t| t.get_ref()),
                fd,
                &mut bufs.hdrs,
            );
            n
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => {
            tracing::warn!("fabric: receiving: {e}");
            0
        }
    }
}

/// One batch from the cloud-services TUN.
fn tun_round(
    core: &mut Core,
    bufs: &mut Buffers,
    udp_fd: RawFd,
    tun: &AsyncFd<Iface>,
    direct: bool,
) -> usize {
    bufs.tun.clear();
    let mut n = 0;
    while n < BATCH {
        let slot = bufs.tun.slot_mut(n);
        let r = if direct {
            tun.get_ref().recv(slot)
        } else {
            tun.try_io(Interest::READABLE, |t| t.recv(slot))
        };
        match r {
            Ok(len) => {
                bufs.tun.set_len(n, len);
                n += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::warn!("fabric: reading the cloud tun: {e}");
                break;
            }
        }
    }
    if n > 0 {
        core.process(&bufs.tun, true, Some(tun.get_ref()), udp_fd, &mut bufs.hdrs);
    }
    n
}

async fn run_loop(
    core: &mut Core,
    bufs: &mut Buffers,
    udp: &tokio::net::UdpSocket,
    tun: Option<&AsyncFd<Iface>>,
    token: CancellationToken,
) {
    let udp_fd = udp.as_raw_fd();
    let mut tick = core.clock.interval(Duration::from_secs(1));
    let spin = core.spin_polls;
    loop {
        let woke = tokio::select! {
            () = token.cancelled() => break,
            r = udp.readable() => {
                if let Err(e) = r {
                    tracing::error!("fabric: underlay socket failed: {e}");
                    break;
                }
                true
            }
            g = async {
                match tun {
                    Some(t) => t.readable().await.map(drop),
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = g {
                    tracing::error!("fabric: cloud tun failed: {e}");
                    break;
                }
                true
            }
            _ = tick.tick() => {
                core.refresh();
                core.housekeeping();
                false
            }
        };
        if !woke {
            continue;
        }
        core.refresh();
        for _ in 0..ROUNDS {
            let a = udp_round(core, bufs, udp, tun, false);
            let b = tun.map_or(0, |t| tun_round(core, bufs, udp_fd, t, false));
            if a < BATCH && b < BATCH {
                break;
            }
        }
        // Spin a little: replies to what was just forwarded come back
        // within microseconds, and catching them here saves a wakeup.
        let mut idle = 0;
        while idle < spin && !token.is_cancelled() {
            let n = udp_round(core, bufs, udp, tun, true)
                + tun.map_or(0, |t| tun_round(core, bufs, udp_fd, t, true));
            if n == 0 {
                idle += 1;
                std::thread::yield_now();
            } else {
                idle = 0;
            }
        }
    }
    tracing::info!("fabric stopped");
}
